"""The cost benchmark: its aggregation on hand-made records, its timers, and a smoke run on the tiny offline model.

No speed thresholds: the CI machine's timings say nothing about the methods.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trl_policysplit import benchmark
from trl_policysplit.benchmark import (
    PHASES,
    PhaseTimer,
    build_report,
    cycle_means,
    finite_or_none,
    format_table,
    interleaved_order,
    main,
    ratio,
    steps_per_cycle,
    summarize,
    timed_functional_core,
)

REPO = Path(__file__).resolve().parent.parent
METHODS = ("policy_split", "asym_grpo", "dipo")


def _step(index: int, step_s: float, warmup: bool = False, cycle: int | None = None, **phases: float) -> dict:
    values = {phase: phases.get(phase, 0.0) for phase in PHASES}
    return {"step": index, "cycle": index if cycle is None else cycle, "warmup": warmup, "step_s": step_s, **values}


def _run(name: str, step_times: list[float], peak: float, growth: float, shaping: float = 0.0) -> dict:
    steps = [_step(0, 100.0, warmup=True)]  # a slow warm-up step that must not count
    steps += [_step(i + 1, t, generation_s=t / 2, shaping_s=shaping) for i, t in enumerate(step_times)]
    memory = {"peak_memory_mb": peak, "memory_growth_mb": growth, "peak_rss_mb": peak, "rss_growth_mb": growth}
    return {"name": name, "steps": steps, "memory": memory}


# ----------------------------------------------------------------------------------------------------------------
# Aggregation


def test_steps_per_cycle_follows_trls_generation_schedule():
    assert steps_per_cycle(1, None, 1) == 1  # a generation every optimizer step
    assert steps_per_cycle(1, None, 2) == 2  # num_iterations=2: generate, reuse
    assert steps_per_cycle(4, None, 1) == 1
    assert steps_per_cycle(1, 2, 1) == 2
    assert steps_per_cycle(2, 4, 1) == 2
    assert steps_per_cycle(4, 2, 1) == 1


def test_cycle_means_drop_warmup_and_average_each_cycle():
    steps = [
        _step(0, 9.0, warmup=True, cycle=0),
        _step(1, 9.0, warmup=True, cycle=0),
        _step(2, 3.0, cycle=1, loss_s=1.0),
        _step(3, 1.0, cycle=1, loss_s=0.0),
        _step(4, 5.0, cycle=2, loss_s=2.0),
        _step(5, 3.0, cycle=2, loss_s=2.0),
    ]
    means = cycle_means(steps)
    assert [mean["step_s"] for mean in means] == [2.0, 4.0]
    assert [mean["loss_s"] for mean in means] == [0.5, 2.0]


def test_summarize_takes_medians_over_the_steps_of_all_runs():
    runs = [_run("grpo", [1.0, 3.0], 500.0, 40.0), _run("grpo", [2.0], 520.0, 60.0)]
    summary = summarize(runs)
    assert summary["runs"] == 2 and summary["measured_steps"] == 3
    assert summary["step_time_s"] == 2.0
    assert summary["phases"]["generation_s"] == 1.0
    assert summary["peak_memory_mb"] == 510.0 and summary["memory_growth_mb"] == 50.0
    with pytest.raises(ValueError, match="no measured steps"):
        summarize([{"name": "grpo", "steps": [_step(0, 1.0, warmup=True)], "memory": {}}])


def test_report_gives_ratios_to_grpo_and_checks_targets():
    runs = [
        _run("grpo", [2.0, 2.0], 500.0, 40.0),
        _run("policy_split", [2.6, 2.4], 600.0, 80.0, shaping=0.01),
        _run("grpo", [2.0, 2.2], 500.0, 40.0),
        _run("asym_grpo", [2.0, 2.0], 500.0, 40.0, shaping=0.001),
        _run("grpo", [1.8, 2.0], 500.0, 40.0),
        _run("dipo", [2.4, 2.4], 500.0, 44.0, shaping=0.001),
    ]
    report = build_report(runs, METHODS)
    assert report["grpo"]["step_time_s"] == 2.0
    split = report["policy_split"]
    assert split["baseline"] == "grpo"
    assert split["step_time_ratio"] == pytest.approx(1.25)
    assert split["peak_memory_ratio"] == pytest.approx(1.2)
    assert split["memory_growth_ratio"] == split["rss_growth_ratio"] == pytest.approx(2.0)
    assert split["shaping_fraction"] == pytest.approx(0.01 / 2.5, rel=0.05)
    assert split["step_time_ratio_per_round"] == [pytest.approx(1.25)]  # against the GRPO run right before it
    assert split["within_targets"] == {"step_time_ratio": True, "peak_memory_ratio": True, "shaping_fraction": True}
    assert report["asym_grpo"]["step_time_ratio"] == pytest.approx(1.0)
    assert report["asym_grpo"]["step_time_ratio_per_round"] == [pytest.approx(2.0 / 2.1)]
    assert report["dipo"]["step_time_ratio"] == pytest.approx(1.2)
    assert report["dipo"]["within_targets"]["step_time_ratio"] is False  # over 1.05

    table = format_table(report, ["grpo", *METHODS])
    assert len(table.splitlines()) == 2 + 4 and "MISSED" in table


def test_interleaved_order_pairs_each_method_with_its_baseline():
    assert (
        interleaved_order(["policy_split", "dipo_old_logps"], 2)
        == [["grpo", "policy_split", "grpo_old_logps", "dipo_old_logps"]] * 2
    )


def test_ratio_and_json_safety():
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(1.0, 0.0))
    assert finite_or_none({"a": [math.nan, 1.0], "b": math.inf}) == {"a": [None, 1.0], "b": None}


# ----------------------------------------------------------------------------------------------------------------
# Timers


def test_phase_timer_charges_nested_time_to_the_innermost_phase(monkeypatch):
    clock = iter([0.0, 1.0, 3.0, 10.0])  # outer starts, inner starts, inner ends, outer ends
    monkeypatch.setattr(benchmark.time, "perf_counter", lambda: next(clock))
    timer = PhaseTimer()
    with timer.region("loss"):
        with timer.region("generation"):
            pass
    assert timer.take() == {"loss": 8.0, "generation": 2.0}
    assert timer.take() == {}


def test_phase_timer_wrap_can_be_conditional():
    timer = PhaseTimer()
    enabled = {"on": False}
    wrapped = timer.wrap(lambda x: x + 1, "scoring", when=lambda: enabled["on"])
    assert wrapped(1) == 2 and "scoring" not in timer.take()
    enabled["on"] = True
    assert wrapped(1) == 2 and timer.take()["scoring"] >= 0.0


def test_functional_core_calls_are_timed_where_the_trainers_look_them_up_and_restored():
    from trl_policysplit import functional, policy_split_trainer, shaping_trainer

    original = policy_split_trainer.clamp_by_advantage
    timer = PhaseTimer()
    with timed_functional_core(timer) as names:
        assert "functional.clamp_by_advantage" in names
        assert "functional.asym_advantages" in names
        assert "distributed.dual_mode_internal_rewards_across_processes" in names
        assert policy_split_trainer.clamp_by_advantage is not original
        assert shaping_trainer.asym_advantages is not functional.asym_advantages
        import torch

        policy_split_trainer.clamp_by_advantage(torch.ones(2, 3), torch.ones(2), 1.0)
        assert timer.take()["shaping"] > 0.0
    assert policy_split_trainer.clamp_by_advantage is original
    assert functional.clamp_by_advantage is original  # the core module itself is never touched


def test_learning_is_reserved(capsys):
    assert main(["learning"]) == 2
    assert "not implemented yet" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# Smoke run


def test_overhead_quick_on_the_tiny_model_writes_a_well_formed_report(tiny_model_dir, tmp_path):
    # Six training processes, mostly importing torch and TRL: about 40 s on 2 CPU cores.
    output = tmp_path / "overhead.json"
    command = [
        sys.executable,
        str(REPO / "scripts" / "benchmark.py"),
        "overhead",
        "--quick",
        "--model",
        tiny_model_dir,
        "--rounds",
        "1",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--max-completion-length",
        "8",
        "--threads",
        "1",
        "--output",
        str(output),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "policy_split" in completed.stdout  # the table

    report = json.loads(output.read_text())
    assert report["order"] == ["grpo", "policy_split", "grpo", "asym_grpo", "grpo", "dipo"]
    assert report["settings"]["num_generations"] == 4 and report["settings"]["max_completion_length"] == 8
    assert report["grpo"]["step_time_s"] > 0 and report["grpo"]["phases"]["generation_s"] > 0
    for method in METHODS:
        entry = report[method]
        for key in ("step_time_ratio", "peak_memory_ratio", "memory_growth_ratio", "step_time_s", "shaping_fraction"):
            assert entry[key] is not None and math.isfinite(entry[key]), (method, key)
        assert entry["step_time_ratio"] > 0 and entry["peak_memory_ratio"] > 0
        assert set(entry["phases"]) == set(PHASES)
        for phase in ("generation_s", "scoring_s", "loss_s", "shaping_s"):
            assert entry["phases"][phase] >= 0, (method, phase)
        assert entry["phases"]["generation_s"] > 0 and entry["phases"]["loss_s"] > 0
        assert set(entry["within_targets"]) == set(entry["targets"])
    assert report["policy_split"]["phases"]["shaping_s"] > 0  # its functional core ran
    assert report["policy_split"]["phases"]["scoring_s"] > 0  # its scoring forward under both contexts
    assert report["dipo"]["phases"]["scoring_s"] > 0  # no old log-probs from TRL here: DiPO's own forward
    assert report["grpo"]["phases"]["scoring_s"] == 0
    assert len(report["runs"]) == 6 and all(len(run["steps"]) == 2 for run in report["runs"])
