"""The cost benchmark: its aggregation on hand-made records, its timers, and a smoke run on the tiny offline model.

No speed thresholds: the CI machine's timings say nothing about the methods.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import learning
from benchmarks import overhead as benchmark
from benchmarks.benchmark import main
from benchmarks.common import finite_or_none
from benchmarks.overhead import (
    PHASES,
    PhaseTimer,
    build_report,
    cycle_means,
    format_table,
    interleaved_order,
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


def _run(
    name: str, step_times: list[float], peak: float, growth: float, shaping: float = 0.0, tokens: int = 100
) -> dict:
    steps = [_step(0, 100.0, warmup=True)]  # a slow warm-up step that must not count
    steps += [_step(i + 1, t, generation_s=t / 2, shaping_s=shaping) for i, t in enumerate(step_times)]
    for step in steps:
        step["loss_tokens"] = tokens  # padded tokens through the loss forward
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


def test_micro_batch_rows_hold_a_steps_completions():
    assert benchmark.micro_batch_rows({"questions_per_step": 2, "num_generations": 4}) == 8


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
        _run("policy_split", [3.6, 3.4], 600.0, 80.0, shaping=0.01, tokens=220),
        _run("grpo", [2.0, 2.2], 500.0, 40.0),
        _run("asym_grpo", [2.0, 2.0], 500.0, 40.0, shaping=0.001),
        _run("grpo", [1.8, 2.0], 500.0, 40.0),
        _run("dipo", [2.4, 2.4], 500.0, 44.0, shaping=0.001),
    ]
    report = build_report(runs, METHODS)
    assert report["grpo"]["step_time_s"] == 2.0
    split = report["policy_split"]
    assert split["baseline"] == "grpo"
    assert split["step_time_ratio"] == pytest.approx(1.75)
    assert split["peak_memory_ratio"] == pytest.approx(1.2)
    assert split["memory_growth_ratio"] == split["rss_growth_ratio"] == pytest.approx(2.0)
    assert split["shaping_fraction"] == pytest.approx(0.01 / 3.5, rel=0.05)
    assert split["step_time_ratio_per_round"] == [pytest.approx(1.75)]  # against the GRPO run right before it
    # Floor: GRPO generates half its step (g = 0.5) and the loss sees 2.2x its padded tokens: 0.5 + 0.5 * 2.2.
    assert split["floor_inputs"] == {
        "generation_share": pytest.approx(0.5),
        "loss_token_ratio": pytest.approx(2.2),
        "w": pytest.approx(1.1),
    }
    assert split["floor"] == pytest.approx(1.6)
    assert split["floor_ratio"] == pytest.approx(1.75 / 1.6)
    assert split["floor_ratio_per_round"] == [pytest.approx(1.75 / 1.6)]  # the GRPO run right before: same numbers
    assert split["within_targets"] == {"floor_ratio": True, "peak_memory_ratio": True, "shaping_fraction": True}
    assert "floor" not in report["asym_grpo"]
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
        "--trainers",
        *METHODS,
        "policy_split_doubled_micro_batch",
        "--output",
        str(output),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "policy_split" in completed.stdout  # the table

    report = json.loads(output.read_text())
    assert report["order"] == [
        "grpo",
        "policy_split",
        "grpo",
        "asym_grpo",
        "grpo",
        "dipo",
        "grpo",
        "policy_split_doubled_micro_batch",
    ]
    assert report["settings"]["num_generations"] == 4 and report["settings"]["max_completion_length"] == 8
    assert report["grpo"]["step_time_s"] > 0 and report["grpo"]["phases"]["generation_s"] > 0
    for method in (*METHODS, "policy_split_doubled_micro_batch"):
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
    assert report["policy_split"]["phases"]["scoring_s"] > 0  # its scoring forward of the cross pairs
    assert report["dipo"]["phases"]["scoring_s"] == 0  # its perplexities come from the sampler: no forward of its own
    assert report["grpo"]["phases"]["scoring_s"] == 0
    assert len(report["runs"]) == 8 and all(len(run["steps"]) == 2 for run in report["runs"])
    for method in ("policy_split", "policy_split_doubled_micro_batch"):
        floor = report[method]
        assert floor["floor"] > 1 and floor["floor_ratio"] > 0
        assert 1.9 < floor["floor_inputs"]["loss_token_ratio"] < 3  # 2 rows per completion, a little longer
    # By default Policy Split keeps GRPO's micro-batch: half the completions, each under both prompts, twice the
    # accumulation steps; the opt-out trains both prompts' rows in one micro-batch. Same generation batch.
    batches = {run["name"]: run["batch"] for run in report["runs"]}
    kept, doubled, grpo = batches["policy_split"], batches["policy_split_doubled_micro_batch"], batches["grpo"]
    assert kept["per_device_train_batch_size"] * 2 == doubled["per_device_train_batch_size"]
    assert kept["gradient_accumulation_steps"] == 2 * doubled["gradient_accumulation_steps"]
    assert kept["generation_batch_size"] == doubled["generation_batch_size"] == grpo["generation_batch_size"]


# ----------------------------------------------------------------------------------------------------------------
# Learning benchmark: aggregation on hand-made histories, and a smoke run


def _history() -> list[dict]:
    nan = float("nan")
    return [
        {"step": 1, "reward": 0.0, "entropy": 2.0, "policy_split/kl_normal_to_high_entropy": 0.01},
        {"step": 2, "reward": 0.5, "entropy": None, "policy_split/kl_normal_to_high_entropy": 0.03},
        {"step": 3, "reward": 1.0, "entropy": 1.0, "policy_split/kl_normal_to_high_entropy": 0.05},
        {"step": 4, "reward": 0.25, "entropy": 1.5, "policy_split/kl_normal_to_high_entropy": nan},
        {"step": 4, "train_runtime": 10.0, "reward": 99.0},  # the end-of-training summary: not a step
    ]


def test_summarize_series_gives_first_last_and_the_mean_of_the_last_three():
    assert learning.summarize_series([1.0, 2.0, 3.0, 4.0]) == {
        "first": 1.0,
        "last": 4.0,
        "first3": 2.0,
        "last3": 3.0,
        "std": pytest.approx(math.sqrt(1.25)),
        "points": 4,
    }
    one = {"first": 5.0, "last": 5.0, "first3": 5.0, "last3": 5.0, "std": None, "points": 1}
    assert learning.summarize_series([5.0]) == one
    empty = {"first": None, "last": None, "first3": None, "last3": None, "std": None, "points": 0}
    assert learning.summarize_series([]) == empty


def test_train_summary_skips_missing_values_and_the_summary_event():
    summary = learning.train_summary(_history())
    assert summary["reward"]["last3"] == pytest.approx(1.75 / 3) and summary["reward"]["first3"] == 0.5
    assert summary["reward"]["first"] == 0.0 and summary["reward"]["last"] == 0.25
    assert summary["reward"]["points"] == 4
    entropy = summary["entropy"]  # None at step 2
    assert (entropy["first"], entropy["last"], entropy["last3"], entropy["points"]) == (2.0, 1.5, 1.5, 3)
    kl = summary["policy_split/kl_normal_to_high_entropy"]  # NaN at step 4
    assert (kl["first"], kl["last"], kl["last3"], kl["points"]) == (0.01, 0.05, pytest.approx(0.03), 3)
    assert kl["std"] == pytest.approx(statistics.pstdev([0.01, 0.03, 0.05]))
    assert set(summary["advantage/frac_groups_solved_none"].values()) == {None, 0}
    curves = learning.train_series(_history())
    assert set(curves) == {"reward", "entropy", "policy_split/kl_normal_to_high_entropy"}
    assert curves["entropy"] == [[1, 2.0], [3, 1.0], [4, 1.5]]


def test_means_over_seeds_ignore_metrics_a_run_lacks():
    runs = [
        {
            "train": {"reward": {"first": 0.0, "last": 1.0, "last3": 0.5, "points": 3}},
            "eval": {"normal": {"pass@1": 0.5}},
            "train_s": 10.0,
        },
        {
            "train": {"reward": {"first": 0.5, "last": None, "last3": 0.25, "points": 1}},
            "eval": {"normal": {"pass@1": 0.25}, "high_entropy": {"pass@1": None}},
            "train_s": 20.0,
        },
    ]
    assert learning.flatten(runs[0]) == {
        "train/reward/first": 0.0,
        "train/reward/last": 1.0,
        "train/reward/last3": 0.5,
        "eval/normal/pass@1": 0.5,
        "time/train_s": 10.0,
    }
    means = learning.mean_over_seeds(runs)
    assert means["train/reward/first"] == 0.25 and means["train/reward/last"] == 1.0
    assert means["train/reward/last3"] == 0.375 and means["eval/normal/pass@1"] == 0.375
    assert means["eval/high_entropy/pass@1"] is None and means["time/train_s"] == 15.0
    assert learning.mean_curve([[[1, 1.0], [2, 3.0]], [[1, 3.0]]]) == ([1, 2], [2.0, 3.0])


def _means() -> dict:
    """Means over seeds as `mean_over_seeds` gives them, by hand: Policy Split and two baselines."""
    return {
        "untrained": {"eval/normal/pass@1": 0.1, "eval/normal/pass@4": 0.3, "eval/normal/distinct_correct": 0.4},
        "grpo": {
            "eval/normal/pass@1": 0.5,
            "eval/normal/pass@4": 0.8,
            "eval/normal/distinct_correct": 1.0,
            "train/advantage/frac_groups_solved_none/last3": 0.5,
            "train/reward/first": 0.1,
            "train/reward/last3": 0.6,
            "time/train_s": 300.0,
            "time/eval_s": 50.0,
        },
        "asym_grpo": {"eval/normal/pass@1": 0.4, "train/advantage/frac_groups_solved_none/last3": 0.25},
        "policy_split": {
            "eval/normal/pass@1": 0.6,
            "eval/normal/pass@4": 0.75,
            "eval/high_entropy/pass@1": 0.55,
            "eval/normal/entropy": 0.3,
            "eval/high_entropy/entropy": 0.7,
            "eval/normal/distinct_correct": 0.9,
            "eval/high_entropy/distinct_correct": 1.1,
            "train/policy_split/normal/entropy/last3": 0.5,
            "train/policy_split/high_entropy/entropy/last3": 0.9,
            "train/policy_split/kl_normal_to_high_entropy/first3": 0.01,
            "train/policy_split/kl_normal_to_high_entropy/last3": 0.05,
            "train/policy_split/kl_normal_to_high_entropy/std": 0.02,
            "train/policy_split/kl_high_entropy_to_normal/first3": 0.02,
            "train/policy_split/kl_high_entropy_to_normal/last3": 0.01,
            "train/policy_split/kl_high_entropy_to_normal/std": 0.005,
        },
    }


def test_claims_are_checked_on_the_means_as_they_came_out():
    found = {claim["claim"].split(": ", 1)[1]: claim for claim in learning.claims(_means(), k=4)}
    assert found["the high-entropy mode's token entropy is above the normal mode's (held-out)"]["holds"] is True
    assert found["the inter-mode KL grows from near 0 over training"]["holds"] is False  # HE→normal fell
    assert (
        "normal→HE 0.010 → 0.050 (std 0.020); HE→normal 0.020 → 0.010 (std 0.005)"
        in found["the inter-mode KL grows from near 0 over training"]["detail"]
    )
    # Both directions rising, but one by less than its own step-to-step spread: not growth.
    means = _means()
    means["policy_split"]["train/policy_split/kl_high_entropy_to_normal/last3"] = 0.024
    means["policy_split"]["train/policy_split/kl_high_entropy_to_normal/std"] = 0.025
    kl_claim = next(c for c in learning.claims(means, k=4) if "KL grows" in c["claim"])
    assert kl_claim["holds"] is False
    means["policy_split"]["train/policy_split/kl_high_entropy_to_normal/std"] = 0.003
    kl_claim = next(c for c in learning.claims(means, k=4) if "KL grows" in c["claim"])
    assert kl_claim["holds"] is True
    assert found["distinct correct completions per question, high-entropy mode above normal mode"]["holds"] is True
    # pass@1 0.6 beats grpo 0.5, asym_grpo 0.4 and untrained 0.1; pass@4 0.75 loses to grpo's 0.8, and asym_grpo
    # has no pass@4, so that comparison is undecided.
    assert found["normal-mode held-out pass@1 above every baseline"]["holds"] is True
    assert found["normal-mode held-out pass@4 above every baseline"]["holds"] is None
    asym = found["fewer training groups solved by none than GRPO"]
    assert asym["holds"] is True and "0.250 vs GRPO 0.500" in asym["detail"]
    means = _means()
    means["asym_grpo"]["eval/normal/pass@4"] = 0.5
    found = {claim["claim"].split(": ", 1)[1]: claim for claim in learning.claims(means, k=4)}
    assert found["normal-mode held-out pass@4 above every baseline"]["holds"] is False
    assert learning.claims({"grpo": _means()["grpo"]}, k=4) == []  # nothing to claim without the methods


def test_markdown_table_has_a_row_per_method_and_dashes_where_a_metric_does_not_apply():
    table = learning.markdown_table(_means(), seeds=1, steps=16, k=4).splitlines()
    assert len(table) == 2 + 4
    columns = table[0].count("|")
    assert all(line.count("|") == columns for line in table)
    grpo = [cell.strip() for cell in table[3].split("|")[1:-1]]
    assert grpo[:6] == ["grpo", "1", "16", "0.500", "0.800", "–"]
    assert grpo[8] == "–" and grpo[-3:] == ["0.500", "0.100 → 0.600", "300 + 50"]
    split = [cell.strip() for cell in table[5].split("|")[1:-1]]
    assert split[7] == "0.300 / 0.700" and split[8] == "0.010 → 0.050"


def test_plot_learning_writes_a_png(tmp_path):
    runs = [
        {"method": method, "seed": 0, "series": learning.train_series(_history())}
        for method in ("grpo", "policy_split")
    ]
    report = {
        "settings": {"model": "tiny", "steps": 4, "seeds": [0], "k": [1, 4]},
        "runs": runs,
        "means": _means(),
    }
    learning.plot_learning(report, tmp_path / "learning.png")
    assert (tmp_path / "learning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learning_rejects_a_zero_budget(capsys):
    assert main(["learning", "--steps", "0"]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err


def test_learning_quick_on_the_tiny_model_writes_json_markdown_and_png(tiny_model_dir, tmp_path):
    # Five processes (one evaluation of the untrained model, two trainings, two evaluations): about 30 s on 2 cores.
    output = tmp_path / "learning"
    command = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "learning", "--quick", "--model"]
    command += [tiny_model_dir, "--methods", "grpo", "policy_split", "--max-completion-length", "16"]
    command += ["--output-dir", str(output)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| policy_split | 1 | 2 |" in completed.stdout  # the table

    report = json.loads((output / "learning.json").read_text())
    settings = report["settings"]
    assert settings["steps"] == 2 and settings["seeds"] == [0] and settings["k"] == [1, 2]
    assert settings["num_questions"] == 4 and settings["methods"] == {
        m: learning.METHODS[m] for m in ("grpo", "policy_split")
    }
    assert settings["machine"].startswith("cpu") and report["wall_time_s"] > 0
    own = [r["eval_s"] for r in report["untrained"]] + [r["train_s"] + r["eval_s"] for r in report["runs"]]
    assert report["runs_wall_time_s"] == pytest.approx(sum(own))
    assert [(run["method"], run["seed"]) for run in report["runs"]] == [("grpo", 0), ("policy_split", 0)]
    assert [run["seed"] for run in report["untrained"]] == [0]
    assert set(report["untrained"][0]["eval"]) == {"normal", "high_entropy"}
    grpo, split = report["runs"]
    for run in report["runs"]:
        assert run["train_s"] > 0 and run["eval_s"] > 0 and run["median_step_s"] > 0
        assert set(run["train"]) == set(learning.TRAIN_KEYS)
        for key in ("reward", "entropy", "advantage/frac_groups_solved_none", "frac_reward_zero_std"):
            assert run["train"][key]["points"] == 2 and math.isfinite(run["train"][key]["last3"]), (run["method"], key)
        for metric in ("pass@1", "pass@2", "entropy", "distinct_correct"):
            assert math.isfinite(run["eval"]["normal"][metric]), (run["method"], metric)
    assert set(grpo["eval"]) == {"normal"} and set(split["eval"]) == {"normal", "high_entropy"}
    for key in learning.KL_KEYS + ("policy_split/high_entropy/entropy",):
        assert set(grpo["train"][key].values()) == {None, 0} and grpo["train"][key]["points"] == 0  # does not apply
        assert math.isfinite(split["train"][key]["first"]) and math.isfinite(split["train"][key]["last3"])
    assert set(report["means"]) == {"untrained", "grpo", "policy_split"}
    assert report["means"]["grpo"]["eval/normal/pass@1"] == grpo["eval"]["normal"]["pass@1"]
    assert "eval/high_entropy/pass@1" not in report["means"]["grpo"]  # a single-mode run has no HE evaluation
    assert {claim["holds"] for claim in report["claims"]} <= {True, False, None} and len(report["claims"]) == 5

    markdown = (output / "learning.md").read_text()
    assert "| untrained | 1 | 0 |" in markdown and "| grpo | 1 | 2 |" in markdown and "learning.png" in markdown
    assert "## Claims decided by 95 % CIs over seeds" in markdown
    assert "## Descriptive checks on the means over seeds" in markdown
    assert (output / "learning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    statistics = report["statistics"]
    assert set(statistics["methods"]) == {"untrained", "grpo", "policy_split"}
    assert statistics["methods"]["grpo"]["normal/pass@1"]["mean"] == grpo["eval"]["normal"]["pass@1"]
    assert {claim["verdict"] for claim in statistics["claims"]} <= {"holds", "fails", "inconclusive"}
    assert any(claim["claim"].startswith("policy_split: normal-mode pass@1") for claim in statistics["claims"])

    # Resumable: every finished run was stored; the same command takes them instead of training again.
    again = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("stored run taken") == 3
    rerun = json.loads((output / "learning.json").read_text())
    assert rerun["means"] == report["means"]

    # --report-only runs nothing: with a stored run taken away and a seed never run, it reports what is stored.
    (output / "runs" / "policy_split-seed0.json").unlink()
    partial = subprocess.run(
        [*command, "--report-only", "--seeds", "0", "1"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert partial.returncode == 0, partial.stderr[-3000:]
    assert "trained in" not in partial.stdout and "evaluated in" not in partial.stdout
    report = json.loads((output / "learning.json").read_text())
    missing = ["policy_split-seed0", "untrained-seed1", "grpo-seed1", "policy_split-seed1"]
    assert report["settings"]["missing_runs"] == missing
    assert report["settings"]["seeds_per_method"] == {"untrained": [0], "grpo": [0], "policy_split": []}
    assert set(report["means"]) == {"untrained", "grpo"} and report["means"]["grpo"] == rerun["means"]["grpo"]
    assert report["runs_wall_time_s"] == pytest.approx(sum(own) - split["train_s"] - split["eval_s"])
    assert report["settings"]["machine"].startswith("not recorded by the stored runs")
    markdown = (output / "learning.md").read_text()
    assert "**Partial**: 2 of 6 runs" in markdown and "policy_split-seed0, untrained-seed1" in markdown
    assert "| grpo | 1 | 2 |" in markdown
    empty = subprocess.run(
        [*command, "--report-only", "--steps", "3"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert empty.returncode == 2 and "no stored run" in empty.stderr


def test_overhead_runs_a_random_weight_architecture_with_a_local_tokenizer(tiny_model_dir, tmp_path):
    """The GPU benchmark's model path (`--model random-qwen3-*`), on the tiny variant: nothing downloaded."""
    from transformers import AutoConfig, AutoTokenizer

    from benchmarks.random_model import build_random_model, suppressed_token_ids

    model_dir = build_random_model("random-qwen3-tiny", tiny_model_dir, tmp_path / "random", "float32")
    config = AutoConfig.from_pretrained(model_dir)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("qwen3", 2, 64)
    vocab = len(AutoTokenizer.from_pretrained(model_dir))
    assert config.vocab_size > vocab and suppressed_token_ids(model_dir) == list(range(vocab, config.vocab_size))

    output = tmp_path / "overhead.json"
    command = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "overhead", "--model", "random-qwen3-tiny"]
    command += ["--tokenizer", tiny_model_dir, "--trainers", "dipo", "--rounds", "1", "--steps", "1", "--warmup", "1"]
    command += ["--max-completion-length", "8", "--dtype", "float32", "--output", str(output)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRL_POLICYSPLIT_CACHE": str(tmp_path / "cache")}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["settings"]["random_weights"] is True
    assert report["settings"]["model_path"].startswith(str(tmp_path / "cache"))
    assert report["dipo"]["step_time_s"] > 0
