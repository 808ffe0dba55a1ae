"""Learning benchmark: what each method does to a small model under the same budget (`benchmark.py learning`).

    python scripts/benchmark.py learning --output-dir DIR     # 4 methods x 3 seeds x 48 steps, level 2: hours on CPU
    python scripts/benchmark.py learning --quick               # the pipeline end to end, a few minutes on 2 cores
    python scripts/benchmark.py learning --steps 200 --seeds 0 1 2 --num-samples 16   # on a GPU

Every method trains with the demo recipe (`recipes/demo/smollm2_arithmetic_cpu.yaml`: SmolLM2-135M-Instruct, the
built-in arithmetic task, 2 questions x 4 completions per step) at ``--level`` (default 2) plus its own flags, for
the same number of steps and seeds, each run in its own processes (`scripts/train.py`, then `scripts/evaluate.py`
on the held-out questions). The untrained model is evaluated once per seed as the "before" row. Within a seed the
methods run one after the other, so drift of a shared machine spreads over all of them. Resumable: each finished run
is stored in ``DIR/runs/<method>-seed<s>.json`` as it ends, and the same command takes stored runs instead of
running them again, then re-aggregates; ``statistics`` in the report holds the means with 95 % CIs over seeds, the
paired differences against GRPO and the claims decided by their CIs (the testbed's code, `testbed.decide_claims`).

Reported (the claims of the papers that a small run can show): the high-entropy mode's token entropy above the
normal mode's; the inter-mode KL growing from near 0; distinct correct completions per question in each mode;
held-out pass@1 and pass@k of the normal mode against the baselines; for AsymGRPO the fraction of groups solved by
none. Output, in ``--output-dir``: ``learning.json`` (settings, machine, every run, means over seeds, claims, and
``averaging``: how each number is averaged), ``learning.md`` (the table and the claims, as they came out) and
``learning.png`` (curves over the steps).

A Policy Split run's training entropy is its per-mode ``policy_split/<mode>/entropy``: TRL's ``entropy`` averages
every loss row, the cross pairs included, which is no policy a user samples from. Its inter-mode KL is the paper's
per-sequence average (``KL_KEYS``); the token-weighted one (``..._token``) is kept in ``learning.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from trl_policysplit.tools.optional import require
from trl_policysplit.tools.plotting import load_log_history, series

from . import testbed
from .common import REPO, REWARD_FUNCS, REWARD_WEIGHTS, device_description, finite_or_none, subprocess_env

RECIPE = "recipes/demo/smollm2_arithmetic_cpu.yaml"
ENTROPY_COEF = 0.01  # ours: TRL's default is 0 (off) and the papers do not tune it for this task
# The asymmetric rule maps the weighted reward's range to [0, 1]; the recipe's rewards sum to at most 1.25.
REWARD_RANGE = ["--reward_range", "0", str(sum(REWARD_WEIGHTS))]

# name -> training flags on top of the recipe.
METHODS: dict[str, list[str]] = {
    "grpo": ["--trainer", "grpo"],
    "grpo_entropy_bonus": ["--trainer", "grpo", "--entropy_coef", str(ENTROPY_COEF)],
    "asym_grpo": ["--trainer", "asym_grpo", *REWARD_RANGE],
    "policy_split": ["--trainer", "policy_split"],
    "policy_split_asym_dipo": [
        "--trainer",
        "policy_split",
        "--asymmetric_advantages",
        "true",
        "--perplexity_reallocation",
        "true",
        *REWARD_RANGE,
    ],
}
POLICY_SPLIT_METHODS = ("policy_split", "policy_split_asym_dipo")
BASELINES = ("grpo", "grpo_entropy_bonus", "asym_grpo")  # single-mode methods the Policy Split ones are held against
UNTRAINED = "untrained"

# Logged training metrics summarized per run (first, last, mean of the last TAIL steps); absent ones are null.
TRAIN_KEYS = (
    "reward",
    "entropy",
    "frac_reward_zero_std",
    "advantage/frac_groups_solved_none",
    "policy_split/normal/reward",
    "policy_split/high_entropy/reward",
    "policy_split/normal/entropy",
    "policy_split/high_entropy/entropy",
    "policy_split/kl_normal_to_high_entropy",
    "policy_split/kl_high_entropy_to_normal",
    "policy_split/kl_normal_to_high_entropy_token",
    "policy_split/kl_high_entropy_to_normal_token",
    "policy_split/normal/distinct_correct",
    "policy_split/high_entropy/distinct_correct",
)
TAIL = 3
# The inter-mode KL as the paper averages it (per completion, then over completions): the one the claims and the
# table read. The token-weighted versions are summarized too, for comparison.
KL_KEYS = ("policy_split/kl_normal_to_high_entropy", "policy_split/kl_high_entropy_to_normal")
# A method's training entropy: per mode for Policy Split (see the module docstring), TRL's `entropy` otherwise.
SPLIT_ENTROPY_KEYS = ("policy_split/normal/entropy", "policy_split/high_entropy/entropy")
# How the report's numbers are averaged, written into learning.json. Training metrics are logged once per batch and
# averaged over the logging step by TRL; the summaries' first/last N are means over steps; `means` are over seeds.
AVERAGING: dict[str, str] = {
    "train/policy_split/kl_<from>_to_<to>": (
        "the paper's: each completion of the <from> mode averaged over its tokens, then the mean over those "
        "completions (all processes' rows)"
    ),
    "train/policy_split/kl_<from>_to_<to>_token": "token-weighted over the <from> mode's completions' tokens",
    "train/policy_split/<mode>/entropy": (
        "token-weighted over the mode's own rollouts in the loss forward (cross pairs left out); a Policy Split "
        "run's training entropy"
    ),
    "train/entropy": (
        "TRL's: token-weighted over every loss row; under Policy Split that includes the cross pairs (completions "
        "behind the other mode's prompt), so it is not the entropy of either mode and the report does not use it for "
        "Policy Split methods"
    ),
    "train/reward, train/policy_split/<mode>/reward": "mean over completions",
    "train/advantage/frac_groups_solved_none": "fraction of question groups",
    "eval/<mode>/<metric>": "as the evaluation report's `averaging` says (scripts/evaluate.py)",
}

DEFAULTS: dict[str, Any] = {
    "model": "smollm2-135m-instruct",
    "level": 2,  # two-digit sums and differences: room to learn once the answer format is learned
    "steps": 48,
    "seeds": [0, 1, 2],
    "num_samples": 8,
    "num_questions": 100,  # held-out questions (the task's test split is built this large)
    "max_completion_length": None,  # the recipe's 64
    "methods": ["grpo", "asym_grpo", "policy_split", "policy_split_asym_dipo"],
}
QUICK: dict[str, Any] = {
    **DEFAULTS,
    "level": 1,
    "steps": 2,
    "seeds": [0],
    "num_samples": 2,
    "num_questions": 4,
    "methods": list(METHODS),
}


# ----------------------------------------------------------------------------------------------------------------
# Aggregation (pure: histories and reports in, numbers and text out)


def _mean(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are numbers; None when there are none (the metric does not apply)."""
    numbers = [float(v) for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(numbers) if numbers else None


def summarize_series(values: Sequence[float], tail: int = TAIL) -> dict[str, float | int | None]:
    """Start and end of a short, noisy curve: first and last value, the means of the first and last ``tail``
    values, and the standard deviation of all values (the step-to-step noise a trend must clear)."""
    return {
        "first": values[0] if values else None,
        "last": values[-1] if values else None,
        f"first{tail}": _mean(values[:tail]) if values else None,
        f"last{tail}": _mean(values[-tail:]) if values else None,
        "std": statistics.pstdev(values) if len(values) > 1 else None,
        "points": len(values),
    }


def train_summary(history: Sequence[Mapping[str, Any]], keys: Sequence[str] = TRAIN_KEYS) -> dict[str, Any]:
    """Per key of a run's log history its `summarize_series`, all values null where the trainer does not log it."""
    return {key: summarize_series(series(history, key)[1]) for key in keys}


def train_series(history: Sequence[Mapping[str, Any]], keys: Sequence[str] = TRAIN_KEYS) -> dict[str, list]:
    """``[[step, value], ...]`` per logged key, kept in the report so the curves can be redrawn without the runs."""
    found = {key: series(history, key) for key in keys}
    return {key: [[s, v] for s, v in zip(*found[key], strict=True)] for key in keys if found[key][0]}


def flatten(result: Mapping[str, Any]) -> dict[str, float | None]:
    """One run's numbers under flat names (``train/<key>/<stat>``, ``eval/<mode>/<metric>``, ``time/<phase>``)."""
    flat: dict[str, float | None] = {}
    for key, stats in result.get("train", {}).items():
        for stat, value in stats.items():
            if stat != "points":
                flat[f"train/{key}/{stat}"] = value
    for mode, metrics in result.get("eval", {}).items():
        for name, value in metrics.items():
            flat[f"eval/{mode}/{name}"] = value
    for name in ("train_s", "eval_s", "median_step_s"):
        if name in result:
            flat[f"time/{name}"] = result[name]
    return flat


def mean_over_seeds(results: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Per flat name, the mean over the runs (seeds) where it is a number; null where it never is."""
    flats = [flatten(result) for result in results]
    names = list(dict.fromkeys(name for flat in flats for name in flat))
    return {name: _mean([flat.get(name) for flat in flats]) for name in names}


def mean_curve(curves: Sequence[Sequence[Sequence[float]]]) -> tuple[list[int], list[float]]:
    """Per step, the mean over the seeds' ``[[step, value], ...]`` curves that logged that step."""
    by_step: dict[int, list[float]] = {}
    for curve in curves:
        for step, value in curve:
            by_step.setdefault(int(step), []).append(float(value))
    steps = sorted(by_step)
    return steps, [statistics.fmean(by_step[step]) for step in steps]


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _verdict(holds: bool | None) -> str:
    return "n/a" if holds is None else "holds" if holds else "**does not hold**"


def _above(a: float | None, b: float | None) -> bool | None:
    return None if a is None or b is None else a > b


def claims(means: Mapping[str, Mapping[str, float | None]], k: int) -> list[dict[str, Any]]:
    """The papers' claims that a small run can show, each checked on the means over seeds: text and verdict.

    ``means`` maps a method (and ``untrained``) to its `mean_over_seeds`; ``k`` is the k of the reported pass@k.
    Missing methods are skipped; a claim whose numbers are missing gets verdict null.
    """
    found: list[dict[str, Any]] = []

    def add(claim: str, holds: bool | None, detail: str) -> None:
        found.append({"claim": claim, "holds": holds, "detail": detail})

    split = [method for method in POLICY_SPLIT_METHODS if method in means]
    baselines = [method for method in (*BASELINES, UNTRAINED) if method in means]
    for method in split:
        m = means[method]
        he, normal = m.get("eval/high_entropy/entropy"), m.get("eval/normal/entropy")
        he_t = m.get(f"train/policy_split/high_entropy/entropy/last{TAIL}")
        normal_t = m.get(f"train/policy_split/normal/entropy/last{TAIL}")
        add(
            f"{method}: the high-entropy mode's token entropy is above the normal mode's (held-out)",
            _above(he, normal),
            f"held-out {_f(he)} vs {_f(normal)} nats/token; training (each mode's own rollouts), last {TAIL} steps "
            f"{_f(he_t)} vs {_f(normal_t)}",
        )
        parts, grows = [], []
        for key, label in zip(KL_KEYS, ("normal→HE", "HE→normal"), strict=True):
            first, last = m.get(f"train/{key}/first{TAIL}"), m.get(f"train/{key}/last{TAIL}")
            noise = m.get(f"train/{key}/std")
            parts.append(f"{label} {_f(first)} → {_f(last)} (std {_f(noise)})")
            # A rise smaller than the curve's own step-to-step spread is not growth.
            grows.append(None if None in (first, last, noise) else last - first > noise)
        add(
            f"{method}: the inter-mode KL grows from near 0 over training",
            None if None in grows else all(grows),
            "per-sequence KL as in the paper, mean of the first {0} → mean of the last {0} steps, nats/token, must "
            "rise by more than the standard deviation over all steps: {1}".format(TAIL, "; ".join(parts)),
        )
        dn, dh = m.get("eval/normal/distinct_correct"), m.get("eval/high_entropy/distinct_correct")
        reference = ", ".join(f"{b} {_f(means[b].get('eval/normal/distinct_correct'), 2)}" for b in baselines)
        add(
            f"{method}: distinct correct completions per question, high-entropy mode above normal mode",
            _above(dh, dn),
            f"held-out: normal {_f(dn, 2)}, high entropy {_f(dh, 2)} (normal mode of {reference})",
        )
        for metric in ("pass@1", f"pass@{k}"):
            own = m.get(f"eval/normal/{metric}")
            others = {b: means[b].get(f"eval/normal/{metric}") for b in baselines}
            beaten = [_above(own, value) for value in others.values()]
            add(
                f"{method}: normal-mode held-out {metric} above every baseline",
                None if own is None or None in beaten or not beaten else all(beaten),
                f"{_f(own)} vs " + ", ".join(f"{b} {_f(v)}" for b, v in others.items()),
            )
    if "grpo" in means:
        grpo_none = means["grpo"].get(f"train/advantage/frac_groups_solved_none/last{TAIL}")
        for method in ("asym_grpo", "policy_split_asym_dipo"):
            if method in means:
                own = means[method].get(f"train/advantage/frac_groups_solved_none/last{TAIL}")
                add(
                    f"{method}: fewer training groups solved by none than GRPO",
                    _above(grpo_none, own),
                    f"fraction of groups with no correct completion, mean of the last {TAIL} steps: "
                    f"{_f(own)} vs GRPO {_f(grpo_none)}",
                )
    return found


def testbed_metrics(run: Mapping[str, Any]) -> dict[str, float | None]:
    """A learning run's numbers under the testbed's names, so that both studies decide the same claims the same
    way (`testbed.decide_claims`: CIs over seeds, paired against GRPO)."""
    metrics: dict[str, float | None] = {}
    for mode, values in run.get("eval", {}).items():
        for name, value in values.items():
            metrics[f"{mode}/{name}"] = value
    normal, high = metrics.get("normal/entropy"), metrics.get("high_entropy/entropy")
    metrics["entropy_ratio"] = high / normal if normal and high is not None else None
    return {**metrics, **testbed.train_metrics(run.get("series", {}))}


def ci_report(runs: Sequence[Mapping[str, Any]], untrained: Sequence[Mapping[str, Any]], k: int) -> dict[str, Any]:
    """Means with 95 % CIs over seeds, paired differences against GRPO, and the claims decided by their CIs."""
    aggregated = testbed.aggregate([*untrained, *runs], testbed_metrics)
    metrics = ("normal/pass@1", f"normal/pass@{k}", "normal/distinct_correct", "normal/entropy")
    return {
        "methods": aggregated["methods"],
        "paired_against_grpo": testbed.paired_against(aggregated, metrics, "grpo"),
        "claims": testbed.decide_claims(aggregated, k),
    }


def markdown_table(
    means: Mapping[str, Mapping[str, float | None]], seeds: int | Mapping[str, int], steps: int, k: int
) -> str:
    """One row per method (the untrained model first): held-out metrics, training curves' ends, wall time.
    ``seeds``: the number of seeds averaged, or that number per method (a partial study)."""
    header = (
        f"| method | seeds | steps | pass@1 | pass@{k} | HE pass@1 | HE pass@{k} | entropy normal / HE (held-out) "
        f"| KL normal→HE (per sequence) first {TAIL} → last {TAIL} "
        f"| KL HE→normal (per sequence) first {TAIL} → last {TAIL} "
        "| distinct correct normal / HE "
        f"| solved by none (train, last {TAIL}) | train reward first → last {TAIL} | wall s (train + eval) |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for method, m in means.items():
        trained = method != UNTRAINED

        def arrow(key: str, start: str = "first", m: Mapping[str, float | None] = m) -> str:
            first, last = m.get(f"train/{key}/{start}"), m.get(f"train/{key}/last{TAIL}")
            return "–" if first is None and last is None else f"{_f(first)} → {_f(last)}"

        wall = [m.get("time/train_s"), m.get("time/eval_s")]
        cells = [
            method,
            str(seeds[method] if isinstance(seeds, Mapping) else seeds),
            str(steps) if trained else "0",
            _f(m.get("eval/normal/pass@1")),
            _f(m.get(f"eval/normal/pass@{k}")),
            _f(m.get("eval/high_entropy/pass@1")),
            _f(m.get(f"eval/high_entropy/pass@{k}")),
            f"{_f(m.get('eval/normal/entropy'))} / {_f(m.get('eval/high_entropy/entropy'))}",
            arrow(KL_KEYS[0], f"first{TAIL}"),
            arrow(KL_KEYS[1], f"first{TAIL}"),
            f"{_f(m.get('eval/normal/distinct_correct'), 2)} / {_f(m.get('eval/high_entropy/distinct_correct'), 2)}",
            _f(m.get(f"train/advantage/frac_groups_solved_none/last{TAIL}")),
            arrow("reward"),
            " + ".join(_f(value, 0) for value in wall if value is not None) or "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _seed_counts(settings: Mapping[str, Any]) -> int | dict[str, int]:
    """Seeds per method: all of them, or per method in a report that records it (a partial study)."""
    if "seeds_per_method" not in settings:
        return len(settings["seeds"])
    return {method: len(seeds) for method, seeds in settings["seeds_per_method"].items()}


def _partial_lines(settings: Mapping[str, Any]) -> list[str]:
    """The markdown's note on a partial report (``--report-only`` before every run finished); none otherwise."""
    missing = settings.get("missing_runs")
    if not missing:
        return []
    total = len(settings["seeds"]) * (len(settings["methods"]) + 1)
    return [
        f"- **Partial**: {total - len(missing)} of {total} runs; not run yet, so left out: {', '.join(missing)}. "
        "Means, CIs and paired differences are over the seeds each method has.",
    ]


def format_markdown(report: Mapping[str, Any]) -> str:
    """The whole learning.md: what ran, where and how long, the table, the claims as they came out."""
    s = report["settings"]
    k = s["k"][-1]
    seeds = len(s["seeds"])
    lines = [
        "# Learning benchmark",
        "",
        f"`{s['command']}` ({s['date']})",
        "",
        f"- Machine: {s['machine']}; load average at start {s['load_average_at_start']}.",
        f"- Model {s['model']}, recipe `{s['recipe']}` (arithmetic level {s.get('level', 1)}, 80 training "
        "questions, dataset seed 0), "
        f"{s['steps']} steps per run, seeds {s['seeds']}; held-out: {s['num_questions'] or 'all 20'} questions x "
        f"{s['num_samples']} samples at temperature 1 in each mode, pass@{k} unbiased, evaluation seed = run seed.",
        f"- Wall time {report['wall_time_s'] / 60:.1f} min for this command; the reported runs' own processes "
        f"took {report.get('runs_wall_time_s', 0.0) / 60:.1f} min in all (they may span several commands).",
        *_partial_lines(s),
        "- Methods (flags on top of the recipe): "
        + "; ".join(f"`{m}`: `{' '.join(s['methods'][m])}`" for m in s["methods"])
        + f". The entropy coefficient {ENTROPY_COEF} and the reward range [0, {sum(REWARD_WEIGHTS)}] are ours.",
        "- Values are means over the seeds (`learning.json` has every run). Training columns come from the logged "
        "metrics of the run's own rollouts, not the held-out set; KL is only logged by Policy Split.",
        "- Averaging: the KL columns are the paper's (each completion's mean over its tokens, then the mean over "
        "the mode's completions; the token-weighted `_token` versions are in `learning.json`); held-out entropy is "
        "token-weighted over all samples of a mode; pass@k, distinct correct per question, averaged over questions. "
        "Policy Split's training entropy is per mode (`policy_split/<mode>/entropy`, the mode's own rollouts), never "
        "TRL's `entropy`, which also averages the cross pairs. `learning.json` lists every number's averaging.",
        "",
        markdown_table(report["means"], _seed_counts(s), s["steps"], k),
        "",
    ]
    statistics_ = report.get("statistics")
    if statistics_:
        lines += [
            "## Claims decided by 95 % CIs over seeds (holds only when the CI excludes the opposite)",
            "",
            *(
                f"- **{c['verdict']}**: {c['claim']}. Evidence: {testbed.evidence_text(c['evidence'])}"
                for c in statistics_["claims"]
            ),
            "",
            "Paired differences against GRPO (same seed), mean [95 % CI]: "
            + "; ".join(
                f"{method} " + ", ".join(f"{m} {testbed.format_ci(v)}" for m, v in values.items())
                for method, values in statistics_["paired_against_grpo"].items()
            ),
            "",
        ]
    lines += ["## Descriptive checks on the means over seeds", ""]
    lines += [f"- {c['claim']}: {_verdict(c['holds'])} ({c['detail']})" for c in report["claims"]]
    questions = s["num_questions"] or 20
    lines += [
        "",
        f"With {seeds} seed(s) and {questions} held-out questions, a pass@1 difference of less than about "
        f"{1 / math.sqrt(questions):.2f} (one standard error at p = 0.5, {questions} questions) is noise.",
        "",
        "![learning curves](learning.png)",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Plots


def plot_learning(report: Mapping[str, Any], output: str | Path) -> None:
    """Reward, entropy, solved-by-none and inter-mode KL over the steps (mean over seeds), held-out pass@k bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    runs = report["runs"]
    methods = list(dict.fromkeys(run["method"] for run in runs))
    colors = {method: f"C{index}" for index, method in enumerate(methods)}
    figure = Figure(figsize=(16, 8.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 3).ravel()

    def curves(axis: Any, key: str, methods_: Sequence[str], suffix: str = "", style: str = "-") -> None:
        for method in methods_:
            found = [run["series"][key] for run in runs if run["method"] == method and key in run["series"]]
            if found:
                xs, ys = mean_curve(found)
                axis.plot(xs, ys, style, color=colors[method], label=method + suffix, marker="o", markersize=3)

    split = [m for m in methods if m in POLICY_SPLIT_METHODS]
    curves(axes[0], "reward", methods)
    # TRL's `entropy` of a Policy Split run averages the cross pairs too: its normal mode's entropy stands there.
    curves(axes[1], "entropy", [m for m in methods if m not in POLICY_SPLIT_METHODS])
    curves(axes[1], SPLIT_ENTROPY_KEYS[0], split, " (normal mode)")
    curves(axes[2], "advantage/frac_groups_solved_none", methods)
    curves(axes[3], KL_KEYS[0], split, " normal→HE")
    curves(axes[3], KL_KEYS[1], split, " HE→normal", "--")
    curves(axes[4], SPLIT_ENTROPY_KEYS[0], split, " normal")
    curves(axes[4], SPLIT_ENTROPY_KEYS[1], split, " high entropy", "--")
    titles = (
        ("Training reward (all completions)", "reward"),
        ("Training token entropy (Policy Split: normal mode)", "nats / token"),
        ("Training groups solved by none", "fraction of groups"),
        ("Inter-mode KL estimate, per sequence (Policy Split)", "nats / token"),
        ("Training token entropy per mode (Policy Split)", "nats / token"),
    )
    for axis, (title, ylabel) in zip(axes, titles, strict=False):
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("step")
        axis.set_ylabel(ylabel)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)

    k = report["settings"]["k"][-1]
    names = [UNTRAINED, *methods]
    bars = [
        (f"{mode_label} pass@{kk}", [report["means"].get(name, {}).get(f"eval/{mode}/pass@{kk}") for name in names])
        for mode, mode_label in (("normal", "normal"), ("high_entropy", "HE"))
        for kk in (1, k)
    ]
    width = 0.8 / len(bars)
    axis = axes[5]
    for index, (label, values) in enumerate(bars):
        xs = [i + (index - (len(bars) - 1) / 2) * width for i in range(len(names))]
        axis.bar(xs, [v if v is not None else 0.0 for v in values], width, label=label)
    axis.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
    axis.set_ylim(0, 1)
    axis.set_title("Held-out pass@k (mean over seeds)", fontsize=10)
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3, axis="y")
    s = report["settings"]
    figure.suptitle(f"{s['model']}, arithmetic: {s['steps']} steps, seeds {s['seeds']}")
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, format="png", dpi=90)


# ----------------------------------------------------------------------------------------------------------------
# Orchestration


def _run(command: list[str], log_path: Path, env: Mapping[str, str]) -> float:
    """Run one step of the benchmark in its own process, its output to ``log_path``; returns its wall seconds."""
    started = time.perf_counter()
    with log_path.open("w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if completed.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"exit {completed.returncode} of: {' '.join(command)}\nend of its log {log_path}:\n{tail}")
    return time.perf_counter() - started


def _eval_command(checkpoint: str, modes: Sequence[str], options: Mapping[str, Any], seed: int, out: Path) -> list:
    command = [sys.executable, str(REPO / "scripts" / "evaluate.py"), checkpoint, "--modes", *modes]
    command += ["--num-samples", str(options["num_samples"]), "--k", *map(str, options["k"])]
    command += ["--seed", str(seed), "--device", options["device"], "--output", str(out)]
    if options["num_questions"]:
        command += ["--num-questions", str(options["num_questions"])]
    if options["max_completion_length"]:
        command += ["--max-new-tokens", str(options["max_completion_length"])]
    return command


def run_learning(options: Mapping[str, Any], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and evaluate every method for every seed, write learning.json/.md/.png; return the report."""
    import torch

    device = options["device"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    options = {**options, "device": device, "k": sorted({1, options["num_samples"]})}
    output_dir = Path(options["output_dir"]).resolve()
    (output_dir / "logs").mkdir(parents=True, exist_ok=True)
    env = subprocess_env()
    common = ["--config", str(REPO / RECIPE), "--max_steps", str(options["steps"])]
    # The task's held-out split is built with as many questions as are evaluated (at least the recipe's 20).
    num_test = max(options["num_questions"] or 20, 20)
    task_args = ["--arithmetic_level", str(options["level"]), "--arithmetic_num_test", str(num_test)]
    common += task_args
    if options["model"] != DEFAULTS["model"]:
        common += ["--model_name_or_path", options["model"]]
    if options["max_completion_length"]:
        common += ["--max_completion_length", str(options["max_completion_length"])]
    if device == "cuda":
        common += ["--use_cpu", "false"]
    settings = {
        "command": options["command"],
        "date": datetime.date.today().isoformat(),
        # --report-only runs nothing here: the stored runs do not record their threads, so do not claim this process's.
        "machine": (
            f"not recorded by the stored runs (this --report-only command: {device_description(device, None)})"
            if options["report_only"]
            else device_description(device, None)
        ),
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        "model": options["model"],
        "recipe": RECIPE,
        "level": options["level"],
        "steps": options["steps"],
        "seeds": options["seeds"],
        "num_samples": options["num_samples"],
        "k": options["k"],
        "num_questions": options["num_questions"],
        "max_completion_length": options["max_completion_length"] or 64,
        "methods": {method: METHODS[method] for method in options["methods"]},
        "common_train_args": common,
        "entropy_coef": {"value": ENTROPY_COEF, "source": "ours"},
        "reward_weights": REWARD_WEIGHTS,
        "quick": options["quick"],
    }
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    untrained: list[dict[str, Any]] = []
    total = len(options["seeds"]) * (len(options["methods"]) + 1)
    done = 0
    missing: list[str] = []  # with --report-only: the runs not stored yet, left out of the report
    # Every finished run is stored as it ends; a re-run with the same settings takes it instead of running again.
    stored_dir = output_dir / "runs"
    stored_dir.mkdir(exist_ok=True)
    signature = {key: settings[key] for key in ("model", "level", "steps", "num_samples", "k", "num_questions")}
    signature["max_completion_length"] = settings["max_completion_length"]

    def stored(name: str, method: str) -> dict[str, Any] | None:
        path = stored_dir / f"{name}.json"
        if not path.is_file():
            return None
        result = json.loads(path.read_text())
        same = result.get("signature") == signature and result.get("flags") == METHODS.get(method)
        return result if same else None

    def store(name: str, method: str, result: dict[str, Any]) -> None:
        record = {**result, "signature": signature, "flags": METHODS.get(method)}
        (stored_dir / f"{name}.json").write_text(json.dumps(finite_or_none(record)) + "\n")

    for seed in options["seeds"]:
        name = f"{UNTRAINED}-seed{seed}"
        result = stored(name, UNTRAINED)
        if result is None and options["report_only"]:
            missing.append(name)
        elif result is None:
            out = output_dir / f"{name}.json"
            command = _eval_command(options["model"], ["normal", "high_entropy"], options, seed, out)
            command += ["--reward-funcs", *REWARD_FUNCS, "--reward-weights", *map(str, REWARD_WEIGHTS)]
            command += ["--arithmetic-level", str(options["level"]), "--arithmetic-num-test", str(num_test)]
            eval_s = _run(command, output_dir / "logs" / f"{name}-eval.log", env)
            result = {"method": UNTRAINED, "seed": seed, "eval_s": eval_s, **_read_eval(out)}
            store(name, UNTRAINED, result)
            log(f"[learning] {done + 1}/{total} {UNTRAINED} seed {seed}: evaluated in {eval_s:.0f} s")
        else:
            log(f"[learning] {done + 1}/{total} {name}: stored run taken from {stored_dir}")
        if result is not None:
            untrained.append({k: v for k, v in result.items() if k not in ("signature", "flags")})
        done += 1
        for method in options["methods"]:
            name = f"{method}-seed{seed}"
            result = stored(name, method)
            if result is not None:
                runs.append({k: v for k, v in result.items() if k not in ("signature", "flags")})
                done += 1
                log(f"[learning] {done}/{total} {name}: stored run taken from {stored_dir}")
                continue
            if options["report_only"]:
                missing.append(name)
                done += 1
                continue
            run_dir = output_dir / name
            train_args = [*common, *METHODS[method], "--output_dir", str(run_dir), "--seed", str(seed)]
            train_command = [sys.executable, str(REPO / "scripts" / "train.py"), *train_args]
            train_s = _run(train_command, output_dir / "logs" / f"{name}-train.log", env)
            modes = ["normal", "high_entropy"] if method in POLICY_SPLIT_METHODS else ["normal"]
            out = run_dir / "eval" / "test.json"
            eval_command = _eval_command(str(run_dir), modes, options, seed, out)
            eval_s = _run(eval_command, output_dir / "logs" / f"{name}-eval.log", env)
            history = load_log_history(run_dir)
            step_times = series(history, "step_time")[1]
            runs.append(
                result := {
                    "method": method,
                    "seed": seed,
                    "output_dir": str(run_dir),
                    "train_args": train_args,
                    "train_s": train_s,
                    "eval_s": eval_s,
                    "median_step_s": statistics.median(step_times) if step_times else None,
                    "train": train_summary(history),
                    **_read_eval(out),
                    "series": train_series(history),
                }
            )
            store(name, method, result)
            done += 1
            log(f"[learning] {done}/{total} {name}: trained in {train_s:.0f} s, evaluated in {eval_s:.0f} s")
    if options["report_only"] and not (runs or untrained):
        raise ValueError(f"--report-only: no stored run in {stored_dir} has these settings (steps, level, samples...)")
    if missing:
        log(f"[learning] --report-only: {len(missing)} of {total} runs not stored yet, left out: {' '.join(missing)}")
    settings["missing_runs"] = missing
    found = {UNTRAINED: untrained, **{m: [r for r in runs if r["method"] == m] for m in options["methods"]}}
    means = {method: mean_over_seeds(results) for method, results in found.items() if results}
    settings["seeds_per_method"] = {method: [r["seed"] for r in results] for method, results in found.items()}
    report = {
        "benchmark": "learning",
        "settings": settings,
        "wall_time_s": time.perf_counter() - started,
        # A resumed or --report-only invocation times only itself; this sums every reported run's own processes.
        "runs_wall_time_s": sum(r.get(key, 0.0) for r in (*untrained, *runs) for key in ("train_s", "eval_s")),
        "means": means,
        "claims": claims(means, options["k"][-1]),
        "statistics": ci_report(runs, untrained, options["k"][-1]),
        "averaging": AVERAGING,
        "untrained": untrained,
        "runs": runs,
    }
    report = finite_or_none(report)
    (output_dir / "learning.json").write_text(json.dumps(report, indent=1) + "\n")
    (output_dir / "learning.md").write_text(format_markdown(report))
    plot_learning(report, output_dir / "learning.png")
    return report


def _read_eval(path: Path) -> dict[str, Any]:
    """The per-mode metrics of an evaluation report (`evaluation.run`'s JSON)."""
    return {"eval": json.loads(path.read_text())["metrics"]}


# ----------------------------------------------------------------------------------------------------------------
# Command line (a subcommand of scripts/benchmark.py)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="2 steps, 1 seed, 2 samples, 4 questions: a smoke run")
    parser.add_argument("--model", help="built-in smollm2-135m-instruct (default), a hub id or a local directory")
    parser.add_argument("--level", type=int, choices=(1, 2, 3), help="arithmetic level (default 2)")
    parser.add_argument("--steps", type=int, help="optimizer steps per run (default 48)")
    parser.add_argument("--seeds", type=int, nargs="+", help="training and evaluation seeds (default 0 1 2)")
    parser.add_argument("--num-samples", type=int, help="held-out samples per question and mode, n of pass@n (8)")
    parser.add_argument("--num-questions", type=int, help="held-out questions (default 100)")
    parser.add_argument("--max-completion-length", type=int, help="tokens per completion (default: the recipe's 64)")
    parser.add_argument(
        "--methods", nargs="+", choices=list(METHODS), help=f"default: {' '.join(DEFAULTS['methods'])}"
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--output-dir", default="runs/benchmark-learning")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: report the runs stored in OUTPUT_DIR/runs so far, naming the missing ones (partial)",
    )


def resolve_options(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    """Command-line values, with --quick's or the full defaults where a flag is not given."""
    defaults = QUICK if args.quick else DEFAULTS
    options = {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in defaults.items()}
    options["methods"] = list(dict.fromkeys(options["methods"]))
    for flag, value in (("--steps", options["steps"]), ("--num-samples", options["num_samples"])):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    require("matplotlib", "the learning benchmark's report (its plot)")  # before minutes of training, not after
    options.update(
        quick=args.quick,
        report_only=args.report_only,
        device=args.device,
        output_dir=args.output_dir,
        command="python scripts/benchmark.py " + " ".join(argv),
    )
    return options


def main(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run the benchmark; print the table and where the files are."""
    try:
        report = run_learning(resolve_options(args, argv))
    except (ValueError, RuntimeError) as error:
        print(f"benchmark learning: error: {error}", file=sys.stderr)
        return 2
    s = report["settings"]
    print(f"\n{s['machine']}; {s['steps']} steps, seeds {s['seeds']}; wall time {report['wall_time_s']:.0f} s")
    print(markdown_table(report["means"], _seed_counts(s), s["steps"], s["k"][-1]))
    for claim in report["claims"]:
        print(f"- {claim['claim']}: {_verdict(claim['holds'])} ({claim['detail']})")
    print(f"[benchmark] {Path(args.output_dir) / 'learning.md'}, learning.json, learning.png")
    return 0
