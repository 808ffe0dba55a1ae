"""scripts/plot.py and trl_policysplit.tools.plotting on synthetic logs: panels, summary numbers, lookup and errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trl_policysplit.tools import plotting

PIL_Image = pytest.importorskip("PIL.Image")

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "plot.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAN = math.nan
STEPS = [1, 2, 3, 4, 5]

# What TRL's GRPOTrainer logs by itself: the plain-GRPO panels use these as fallbacks.
GRPO = {
    "reward": [0.2, 0.25, 0.3, 0.5, 0.6],
    "entropy": [1.8, 1.7, 1.65, 1.6, 1.5],
    "completions/mean_length": [40.0, 38.0, 35.0, 30.0, 28.0],
}
# PolicySplitTrainer adds these on top of GRPO's; a None is a JSON null, a NaN a mode absent from a step.
POLICY_SPLIT = {
    "policy_split/normal/reward": [0.1, 0.2, 0.3, 0.4, 0.5],
    "policy_split/high_entropy/reward": [0.0, 0.1, None, 0.2, 0.35],
    "policy_split/normal/entropy": [1.5, 1.4, 1.3, 1.2, 1.1],
    "policy_split/high_entropy/entropy": [2.0, NAN, 2.1, 2.2, 2.4],
    "policy_split/normal/surprisal": [1.2, 1.1, 1.0, 0.9, 0.8],
    "policy_split/high_entropy/surprisal": [1.9, 2.0, 2.1, 2.05, 2.2],
    "policy_split/kl_normal_to_high_entropy": [0.01, 0.03, 0.05, 0.08, 0.12],
    "policy_split/kl_high_entropy_to_normal": [0.02, 0.04, 0.07, 0.09, 0.15],
    "policy_split/kl_normal_to_high_entropy_token": [0.012, 0.035, 0.06, 0.085, 0.13],
    "policy_split/kl_high_entropy_to_normal_token": [0.018, 0.041, 0.065, 0.1, 0.14],
    "policy_split/normal/distinct_correct": [1.0, 1.0, 2.0, 2.0, 3.0],
    "policy_split/high_entropy/distinct_correct": [0.0, 1.0, 1.0, 2.0, 2.5],
    "policy_split/normal/completion_length": [30.0, 29.0, 27.0, 25.0, 24.0],
    "policy_split/high_entropy/completion_length": [50.0, 48.0, 47.0, 45.0, 41.0],
    "policy_split/clamp_frac": [0.0, 0.05, 0.1, 0.1, 0.2],
}
# AdvantageShapingTrainer (AsymGRPO / DiPO): the DiPO threshold is NaN until its perplexity queue is full.
SHAPING = {
    "advantage/pos_mean": [0.5, 0.6, 0.55, 0.7, 0.8],
    "advantage/neg_mean": [-0.4, -0.5, -0.45, -0.3, -0.2],
    "advantage/frac_groups_solved_none": [0.5, 0.5, 0.25, 0.25, 0.0],
    "advantage/frac_groups_solved_all": [0.0, 0.0, 0.25, 0.5, 0.75],
    "dipo/threshold": [NAN, NAN, 3.5, 3.2, 3.0],
    "dipo/valid_split": [0.0, 0.0, 1.0, 1.0, 1.0],
    "dipo/frac_groups_up": [0.0, 0.0, 0.25, 0.0, 0.25],
    "dipo/frac_groups_down": [0.0, 0.0, 0.0, 0.25, 0.5],
}
RUNS = {
    "grpo": (GRPO, ["reward", "entropy", "completion_length"]),
    "policy_split": (
        GRPO | POLICY_SPLIT,
        ["reward", "entropy", "surprisal", "inter_mode_kl", "distinct_correct", "completion_length", "clamp_frac"],
    ),
    "shaping": (
        GRPO | SHAPING,
        ["reward", "entropy", "completion_length", "advantage", "groups_solved", "dipo_threshold", "dipo_groups"],
    ),
    "all": (GRPO | POLICY_SPLIT | SHAPING, [panel.name for panel in plotting.PANELS]),
}
FALLBACKS = {"reward", "entropy", "completions/mean_length"}


def make_history(values: dict[str, list[float | None]]) -> list[dict]:
    """Per-step log events as the HF Trainer writes them, then an eval event and the end-of-training summary."""
    history = [
        {"loss": 0.1 * step, "learning_rate": 1e-5, "epoch": step / 5, "step": step}
        | {key: column[index] for key, column in values.items()}
        for index, step in enumerate(STEPS)
    ]
    history.append({"eval_loss": 0.7, "epoch": 1.0, "step": 5})
    history.append({"train_runtime": 12.5, "train_loss": 0.3, "total_flos": 0.0, "epoch": 1.0, "step": 5})
    return history


def write_jsonl(directory: Path, history: list[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "metrics.jsonl"
    path.write_text("".join(json.dumps(entry) + "\n" for entry in history))  # NaN is written as NaN, as HF does
    return path


def write_trainer_state(directory: Path, history: list[dict]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "trainer_state.json"
    path.write_text(json.dumps({"global_step": STEPS[-1], "max_steps": STEPS[-1], "log_history": history}, indent=2))
    return path


def expected_series(values: dict[str, list[float | None]]) -> dict[str, dict]:
    """first / last / points of each key the plot should draw, from the columns written (None and NaN left out)."""
    plotted = [key for key in values if key.startswith(("policy_split/", "advantage/", "dipo/"))]
    policy_split_run = any(key.startswith("policy_split/") for key in values)
    for pooled, per_mode in (
        ("reward", "reward"),
        ("entropy", "entropy"),
        ("completions/mean_length", "completion_length"),
    ):
        # TRL's entropy includes Policy Split's cross pairs: never drawn for a Policy Split run.
        if f"policy_split/normal/{per_mode}" not in values and not (pooled == "entropy" and policy_split_run):
            plotted.append(pooled)
    expected = {}
    for key in plotted:
        points = [(step, v) for step, v in zip(STEPS, values[key], strict=True) if v is not None and not math.isnan(v)]
        expected[key] = {
            "points": len(points),
            "first_step": points[0][0],
            "last_step": points[-1][0],
            "first": points[0][1],
            "last": points[-1][1],
        }
    return expected


def check_png(path: Path, panels: int) -> None:
    """A real PNG, laid out as a grid of at most 3 columns (5.2 x 3.4 inches a panel at 100 dpi), with lines drawn."""
    assert path.read_bytes()[:8] == PNG_MAGIC
    with PIL_Image.open(path) as image:
        columns = min(3, panels)
        assert image.size == (520 * columns, 340 * math.ceil(panels / columns))
        pixels = np.asarray(image.convert("RGB"))
    # The first series of each panel is drawn in matplotlib's default C0 blue (#1f77b4), markers filled.
    assert (pixels == (0x1F, 0x77, 0xB4)).all(axis=-1).sum() > 50 * panels


def test_series_skips_null_nan_strings_summaries_and_events_without_a_step():
    history = [
        {"step": 3, "reward": 0.3},
        {"step": 1, "reward": 0.1},
        {"step": 2, "reward": None},
        {"step": 4, "reward": NAN},
        {"step": 5, "reward": "n/a"},
        {"step": 6, "reward": math.inf},
        {"step": 7, "loss": 1.0},
        {"reward": 0.9},  # no step
        {"step": 8, "reward": 0.8, "train_runtime": 3.0},  # end-of-training summary
        {"step": 9, "reward": 0.5},
    ]
    assert plotting.series(history, "reward") == ([1, 3, 9], [0.1, 0.3, 0.5])
    assert plotting.series(history, "absent") == ([], [])
    assert plotting.training_steps(history) == [1, 2, 3, 4, 5, 6, 7, 9]


def test_series_keeps_the_later_value_of_a_step_logged_twice():
    """A run resumed from checkpoint-2 appends steps 3-4 again to the same metrics.jsonl."""
    history = [{"step": s, "reward": v} for s, v in [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4), (3, 0.35), (4, 0.45)]]
    assert plotting.series(history, "reward") == ([1, 2, 3, 4], [0.1, 0.2, 0.35, 0.45])


def test_metrics_jsonl_and_trainer_state_give_the_same_history(tmp_path):
    history = make_history(GRPO | POLICY_SPLIT | SHAPING)
    from_jsonl = plotting.load_log_history(write_jsonl(tmp_path / "a", history))
    from_state = plotting.load_log_history(write_trainer_state(tmp_path / "b", history))
    assert [entry.get("step") for entry in from_jsonl] == [*STEPS, 5, 5]
    assert json.dumps(from_jsonl) == json.dumps(from_state) == json.dumps(history)  # NaN != NaN: compare text


# Each run once, alternating the two log formats: plotting is the slow part (~0.3-1 s a figure).
@pytest.mark.parametrize(
    ("run", "log_format"),
    [("grpo", "jsonl"), ("policy_split", "trainer_state"), ("shaping", "jsonl"), ("all", "trainer_state")],
)
def test_plot_run_draws_the_logged_panels_and_summarizes_them(tmp_path, run, log_format):
    values, panels = RUNS[run]
    run_dir = tmp_path / "run"
    (write_jsonl if log_format == "jsonl" else write_trainer_state)(run_dir, make_history(values))

    summary = plotting.plot_run(run_dir)

    png = run_dir / "plots" / "training.png"
    check_png(png, len(panels))
    assert json.loads(png.with_suffix(".json").read_text()) == summary
    assert summary["panels"] == panels
    assert summary["steps"] == {"first": 1, "last": 5, "count": 5}
    expected = expected_series(values)
    assert sorted(summary["series"]) == sorted(expected)
    for key, item in summary["series"].items():
        assert {k: item[k] for k in expected[key]} == expected[key], key
    if run in ("policy_split", "all"):
        assert not FALLBACKS & set(summary["series"])  # per-mode keys win over GRPO's pooled ones


def test_null_and_nan_points_are_left_out_of_the_summary(tmp_path):
    keys = ["policy_split/normal/reward", "policy_split/high_entropy/reward", "policy_split/high_entropy/entropy"]
    values = {key: POLICY_SPLIT[key] for key in keys} | {"dipo/threshold": SHAPING["dipo/threshold"]}
    summary = plotting.plot_run(write_jsonl(tmp_path, make_history(values)), tmp_path / "out.png")
    assert summary["panels"] == ["reward", "entropy", "dipo_threshold"]
    series = summary["series"]
    assert series["policy_split/normal/reward"] == {
        "panel": "reward",
        "label": "normal",
        "points": 5,
        "first_step": 1,
        "last_step": 5,
        "first": 0.1,
        "last": 0.5,
        "smoothed_last": pytest.approx(plotting.ema([0.1, 0.2, 0.3, 0.4, 0.5])[-1]),
    }
    assert series["policy_split/high_entropy/reward"]["points"] == 4  # null at step 3
    assert series["policy_split/high_entropy/entropy"]["points"] == 4  # NaN at step 2
    assert series["policy_split/high_entropy/entropy"]["last"] == 2.4
    assert {k: series["dipo/threshold"][k] for k in ("points", "first_step", "first", "last")} == {
        "points": 3,
        "first_step": 3,
        "first": 3.5,
        "last": 3.0,
    }
    assert (tmp_path / "out.png").read_bytes()[:8] == PNG_MAGIC
    assert json.loads((tmp_path / "out.json").read_text())["series"] == series


def test_all_null_per_mode_values_fall_back_to_the_pooled_metric(tmp_path):
    values = GRPO | {"policy_split/normal/reward": [None] * 5, "policy_split/high_entropy/reward": [NAN] * 5}
    summary = plotting.plot_run(write_jsonl(tmp_path, make_history(values)))
    # A Policy Split run: TRL's entropy (every loss row, cross pairs included) is not a fallback there.
    assert summary["panels"] == ["reward", "completion_length"]
    assert sorted(summary["series"]) == ["completions/mean_length", "reward"]
    assert (summary["series"]["reward"]["first"], summary["series"]["reward"]["last"]) == (0.2, 0.6)


def test_the_entropy_panel_shows_per_mode_entropies_and_trl_entropy_only_for_plain_runs(tmp_path):
    def entropy_series(name: str, values: dict) -> dict[str, str]:
        summary = plotting.plot_run(write_jsonl(tmp_path / name, make_history(values)))
        return {key: item["label"] for key, item in summary["series"].items() if item["panel"] == "entropy"}

    assert entropy_series("split", GRPO | POLICY_SPLIT) == {
        "policy_split/normal/entropy": "normal",
        "policy_split/high_entropy/entropy": "high entropy",
    }
    # Per-mode entropies logged but all missing: still no training entropy to show, TRL's pooled one is not it.
    missing = {"policy_split/normal/entropy": [None] * 5, "policy_split/high_entropy/entropy": [NAN] * 5}
    assert entropy_series("missing", GRPO | POLICY_SPLIT | missing) == {}
    assert entropy_series("grpo", GRPO) == {"entropy": "all completions"}


def test_the_kl_panel_draws_the_paper_averaging_solid_and_the_token_weighted_one_dashed_in_the_same_colour():
    panel = next(panel for panel in plotting.PANELS if panel.name == "inter_mode_kl")
    drawn = plotting._panel_series(make_history(POLICY_SPLIT), panel)
    assert [(key, color, style) for key, _, _, _, color, style in drawn] == [
        ("policy_split/kl_normal_to_high_entropy", "C0", "-"),
        ("policy_split/kl_high_entropy_to_normal", "C1", "-"),
        ("policy_split/kl_normal_to_high_entropy_token", "C0", "--"),
        ("policy_split/kl_high_entropy_to_normal_token", "C1", "--"),
    ]
    assert all(label.endswith("token-weighted") for _, label, *_ in drawn[2:])


def test_a_run_directory_prefers_metrics_jsonl_then_trainer_state_then_the_latest_checkpoint(tmp_path):
    run = tmp_path / "run"
    for n in (2, 9, 10):
        write_trainer_state(run / f"checkpoint-{n}", [{"step": n, "reward": float(n)}])
    (run / "checkpoint-11").mkdir()  # being written: no trainer_state.json yet
    assert plotting.find_log_file(run) == run / "checkpoint-10" / "trainer_state.json"  # 10 > 9, numerically
    assert plotting.plot_run(run)["series"]["reward"]["last"] == 10.0

    write_trainer_state(run, [{"step": 1, "reward": 1.5}])
    assert plotting.find_log_file(run) == run / "trainer_state.json"
    write_jsonl(run, [{"step": 1, "reward": 2.5}])
    assert plotting.find_log_file(run) == run / "metrics.jsonl"
    summary = plotting.plot_run(run)
    assert summary["source"] == str(run / "metrics.jsonl")
    assert summary["series"]["reward"]["last"] == 2.5


def test_a_truncated_last_line_is_ignored(tmp_path):
    """A run still writing metrics.jsonl: the complete lines are plotted."""
    log = write_jsonl(tmp_path, make_history(GRPO)[:3])
    log.write_text(log.read_text() + '{"step": 4, "rew')
    assert plotting.series(plotting.load_log_history(log), "reward") == ([1, 2, 3], [0.2, 0.25, 0.3])


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d / "missing", "no such file or directory"),
        (lambda d: d, "no metrics.jsonl, trainer_state.json or log_history.json"),
        (lambda d: write_jsonl(d, []), "no training steps"),
        (lambda d: write_jsonl(d, [{"train_runtime": 1.0, "reward": 0.5, "step": 5}]), "no training steps"),
        (lambda d: write_trainer_state(d, [{"loss": 1.0, "step": 1}]), "none of the plotted metrics"),
        (lambda d: (d / "metrics.jsonl").write_text('{"step": 1\n{"step": 2}\n') and d, "metrics.jsonl:1: not valid"),
        (lambda d: (d / "trainer_state.json").write_text('{"log_history": 3}') and d, "expected a trainer_state"),
    ],
    ids=["missing", "empty-dir", "empty-log", "summary-only", "no-known-metric", "bad-jsonl", "bad-state"],
)
def test_nothing_to_plot_raises_a_value_error(tmp_path, setup, message):
    path = setup(tmp_path)
    with pytest.raises(ValueError, match=message):
        plotting.plot_run(path, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


def test_the_output_must_be_a_png(tmp_path):
    log = write_jsonl(tmp_path, make_history(GRPO))
    with pytest.raises(ValueError, match="must be a .png"):
        plotting.plot_run(log, tmp_path / "out.json")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_cli_writes_the_png_and_the_summary(tmp_path):
    values, panels = RUNS["policy_split"]
    write_trainer_state(tmp_path / "run" / "checkpoint-5", make_history(values))
    output = tmp_path / "figures" / "ps.png"

    result = run_cli(str(tmp_path / "run"), "--output", str(output))

    assert result.returncode == 0, result.stderr
    assert str(output) in result.stdout
    check_png(output, len(panels))
    summary = json.loads(output.with_suffix(".json").read_text())
    assert summary["panels"] == panels
    assert summary["source"] == str(tmp_path / "run" / "checkpoint-5" / "trainer_state.json")
    assert summary["series"]["policy_split/kl_high_entropy_to_normal"]["last"] == 0.15


def test_cli_error_exits_2_with_a_one_line_message(tmp_path):
    result = run_cli(str(tmp_path))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("plot.py: error: no metrics.jsonl")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "plots").exists()


def test_ema_is_tensorboards_debiased_smoothing():
    # avg: 0.4, 0.24, 0.544, 0.3264 over debias 1 - 0.6**t: 0.4, 0.64, 0.784, 0.8704
    assert plotting.ema([1.0, 0.0, 1.0, 0.0], 0.6) == pytest.approx([1.0, 0.375, 0.544 / 0.784, 0.375])
    assert plotting.ema([3.0, 3.0, 3.0]) == pytest.approx([3.0, 3.0, 3.0])  # no pull towards 0 at the start
    assert plotting.ema([0.2, 0.9], 0.0) == [0.2, 0.9]
    with pytest.raises(ValueError, match=r"smoothing weight must be in \[0, 1\)"):
        plotting.ema([1.0], 1.0)


def test_series_zero_at_every_step_are_left_out_and_named_and_captions_explain_panels(tmp_path):
    values = GRPO | {
        "advantage/pos_mean": [0.5, 0.6, 0.55, 0.7, 0.8],
        "advantage/neg_mean": [-0.4, -0.5, -0.45, -0.3, -0.2],
        "dipo/valid_split": [0.0] * 5,  # DiPO never acted: nothing to draw, but the panel says why
        "dipo/frac_groups_up": [0.0] * 5,
        "dipo/frac_groups_down": [0.0, 0.0, 0.25, 0.0, 0.0],
        "policy_split/clamp_frac": [0.0, None, 0.0, 0.0, 0.0],
    }
    summary = plotting.plot_run(write_jsonl(tmp_path, make_history(values)), tmp_path / "out.png")
    # A policy_split/ key: TRL's pooled entropy is no fallback (see above).
    assert summary["panels"] == ["reward", "completion_length", "advantage", "dipo_groups", "clamp_frac"]
    assert summary["left_out"] == {
        "dipo/valid_split": {"panel": "dipo_groups", "label": "valid split", "reason": "zero at every step"},
        "dipo/frac_groups_up": {"panel": "dipo_groups", "label": "groups pushed up", "reason": "zero at every step"},
        "policy_split/clamp_frac": {"panel": "clamp_frac", "label": "all", "reason": "zero at every step"},
    }
    assert "dipo/frac_groups_down" in summary["series"] and not set(summary["left_out"]) & set(summary["series"])
    assert summary["smoothing"]["weight"] == plotting.SMOOTHING
    captions = summary["captions"]
    assert set(captions) == {"advantage", "dipo_groups", "clamp_frac"}  # reward, entropy, length need none
    assert "positive and of the negative advantages" in captions["advantage"]
    assert "|A|/kappa" in captions["clamp_frac"]


def test_cli_smoothing_flag_and_left_out_lines(tmp_path):
    write_jsonl(tmp_path, make_history(GRPO | {"dipo/valid_split": [0.0] * 5}))
    result = run_cli(str(tmp_path), "--smoothing", "0")
    assert result.returncode == 0, result.stderr
    assert "not drawn: dipo/valid_split (zero at every step)" in result.stdout
    summary = json.loads((tmp_path / "plots" / "training.json").read_text())
    assert summary["series"]["reward"]["smoothed_last"] == summary["series"]["reward"]["last"]  # weight 0: raw
    bad = run_cli(str(tmp_path), "--smoothing", "1.5")
    assert bad.returncode == 2 and bad.stderr.startswith("plot.py: error: smoothing weight must be in [0, 1)")
