"""Plots of a training run's logged metrics (per-mode reward, entropy, inter-mode KL, shaping statistics).

Kept free of torch / TRL imports (standard library plus matplotlib, imported lazily) so that ``scripts/plot.py``
can load this file on its own and plot a run in about a second, and so the package never needs matplotlib.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .optional import require

METRICS_JSONL = "metrics.jsonl"
TRAINER_STATE = "trainer_state.json"
# A bare list of log events, as written by json.dump(trainer.state.log_history).
LOG_HISTORY = "log_history.json"
# Keys that mark the Trainer's end-of-training summary, which carries a step but no per-step metrics.
SUMMARY_KEYS = ("train_runtime", "total_flos")
_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")
# Weight of TensorBoard's smoothing slider: each smoothed point keeps 60 % of the previous one.
SMOOTHING = 0.6
ZERO_EVERY_STEP = "zero at every step"


class RunLogError(ValueError):
    """No usable training log: nothing found, unreadable, or without training steps or plottable metrics."""


@dataclass(frozen=True)
class Panel:
    """One subplot: the metrics it shows and the fallbacks used when none of them was logged.

    ``dashed`` keys are drawn dashed, each in the colour of the key at the same position in ``keys``. Fallbacks are
    not used in a run that logged any key starting with ``no_fallback_prefix`` (a metric that exists there but
    means something else). ``caption``: one line under the title for panels whose meaning is not obvious.
    """

    name: str
    title: str
    ylabel: str
    keys: tuple[tuple[str, str], ...]  # (log key, legend label)
    fallback: tuple[tuple[str, str], ...] = ()
    dashed: tuple[tuple[str, str], ...] = ()
    no_fallback_prefix: str | None = None
    caption: str = ""


def _per_mode(metric: str) -> tuple[tuple[str, str], ...]:
    return ((f"policy_split/normal/{metric}", "normal"), (f"policy_split/high_entropy/{metric}", "high entropy"))


PANELS: tuple[Panel, ...] = (
    Panel("reward", "Reward", "reward", _per_mode("reward"), (("reward", "all completions"),)),
    # TRL's `entropy` averages every loss row; under Policy Split these include the cross pairs (completions behind
    # the other mode's prompt), so it is no policy's training entropy there: only plain runs fall back to it.
    Panel(
        "entropy",
        "Token entropy",
        "nats / token",
        _per_mode("entropy"),
        (("entropy", "all completions"),),
        no_fallback_prefix="policy_split/",
    ),
    Panel(
        "surprisal",
        "Surprisal of the sampled tokens",
        "nats / token",
        _per_mode("surprisal"),
        caption="-log p of each sampled token under its own mode's prompt",
    ),
    Panel(
        "inter_mode_kl",
        "Inter-mode KL estimate (dashed: token-weighted)",
        "nats / token",
        # The paper's averaging: each completion's mean over its tokens, then the mean over completions.
        (
            ("policy_split/kl_normal_to_high_entropy", "normal → high entropy"),
            ("policy_split/kl_high_entropy_to_normal", "high entropy → normal"),
        ),
        dashed=(
            ("policy_split/kl_normal_to_high_entropy_token", "normal → high entropy, token-weighted"),
            ("policy_split/kl_high_entropy_to_normal_token", "high entropy → normal, token-weighted"),
        ),
        caption="surprisal gap of a mode's completions under the other mode's prompt: how far the modes drift apart",
    ),
    Panel(
        "distinct_correct",
        "Distinct correct completions per group",
        "count",
        _per_mode("distinct_correct"),
        caption="different correct token sequences per question (correct: reward above correct_reward_threshold)",
    ),
    Panel(
        "completion_length",
        "Completion length",
        "tokens",
        _per_mode("completion_length"),
        (("completions/mean_length", "all completions"),),
    ),
    Panel(
        "advantage",
        "Mean advantage by sign",
        "advantage",
        (("advantage/pos_mean", "positive"), ("advantage/neg_mean", "negative")),
        caption="mean of the positive and of the negative advantages of each batch (AsymGRPO skews them)",
    ),
    Panel(
        "groups_solved",
        "Groups solved by none / all completions",
        "fraction of groups",
        (
            ("advantage/frac_groups_solved_none", "solved by none"),
            ("advantage/frac_groups_solved_all", "solved by all"),
        ),
        caption="questions whose completions are all wrong / all correct: no GRPO signal there",
    ),
    Panel(
        "dipo_threshold",
        "DiPO perplexity threshold",
        "perplexity",
        (("dipo/threshold", "threshold"),),
        caption="perplexity that best separates correct (below) from wrong (above) completions",
    ),
    Panel(
        "dipo_groups",
        "DiPO reallocation",
        "fraction",
        (
            ("dipo/valid_split", "valid split"),
            ("dipo/frac_groups_up", "groups pushed up"),
            ("dipo/frac_groups_down", "groups pushed down"),
        ),
        caption="valid split: the threshold is used; pushed up / down: all-wrong / all-correct groups reallocated",
    ),
    Panel(
        "clamp_frac",
        "Intrinsic-reward clamp fraction",
        "fraction of tokens",
        (("policy_split/clamp_frac", "all"),),
        caption="share of trained tokens whose entropy term hit its ±|A|/kappa limit",
    ),
)


def find_log_file(path: str | Path) -> Path:
    """The log file of a run: ``path`` itself, or the best log inside the run directory ``path``.

    A directory is searched for metrics.jsonl, then trainer_state.json, then log_history.json, then the
    trainer_state.json of its latest checkpoint-N (by N; a checkpoint still being written may lack one).
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise RunLogError(f"no such file or directory: {path}")
    for name in (METRICS_JSONL, TRAINER_STATE, LOG_HISTORY):
        if (path / name).is_file():
            return path / name
    checkpoints = [(int(m.group(1)), p) for p in path.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    for _, checkpoint in sorted(checkpoints, reverse=True):
        if (checkpoint / TRAINER_STATE).is_file():
            return checkpoint / TRAINER_STATE
    raise RunLogError(
        f"no {METRICS_JSONL}, {TRAINER_STATE} or {LOG_HISTORY} in {path} or in a checkpoint-* subdirectory"
    )


def _read_jsonl(file: Path) -> list[dict[str, Any]]:
    lines = [(number, line) for number, line in enumerate(file.read_text().splitlines(), 1) if line.strip()]
    history = []
    for index, (number, line) in enumerate(lines):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            if index == len(lines) - 1:  # a run still writing its last line: plot what is complete
                break
            raise RunLogError(f"{file}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(entry, dict):
            raise RunLogError(f"{file}:{number}: expected a JSON object, got {type(entry).__name__}")
        history.append(entry)
    return history


def load_log_history(path: str | Path) -> list[dict[str, Any]]:
    """The Trainer's log events of a run, from metrics.jsonl, trainer_state.json or a bare log_history list.

    ``path`` is a log file or a run directory (see ``find_log_file``). Entries are returned as logged, summaries
    and eval events included; ``series`` picks the per-step values.
    """
    file = find_log_file(path)
    if file.suffix == ".jsonl":
        return _read_jsonl(file)
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise RunLogError(f"{file}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if isinstance(data, dict) and isinstance(data.get("log_history"), list):
        data = data["log_history"]
    if not isinstance(data, list):
        raise RunLogError(f"{file}: expected a trainer_state.json with a log_history list, or a list of log events")
    return [entry for entry in data if isinstance(entry, dict)]


def _step(entry: dict[str, Any]) -> int | None:
    """The global step of a per-step log event; None for summaries and events without a step."""
    if any(key in entry for key in SUMMARY_KEYS):
        return None
    step = entry.get("step", entry.get("global_step"))
    if isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step) or step != int(step):
        return None
    return int(step)


def _value(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None  # None (an empty metric), NaN / inf, or anything not a number


def training_steps(history: Sequence[dict[str, Any]]) -> list[int]:
    """The distinct steps that have a per-step log event, ascending."""
    return sorted({step for entry in history if (step := _step(entry)) is not None})


def series(history: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Steps and values of ``key``, ascending by step, skipping None / NaN / inf and events without a step.

    A step logged twice (a run resumed from a checkpoint appends to the same metrics.jsonl) keeps the later value,
    which is the one the resumed run trained with.
    """
    by_step: dict[int, float] = {}
    for entry in history:
        step = _step(entry)
        value = _value(entry.get(key))
        if step is not None and value is not None:
            by_step[step] = value
    steps = sorted(by_step)
    return steps, [by_step[step] for step in steps]


def _panel_series(
    history: Sequence[dict[str, Any]], panel: Panel
) -> list[tuple[str, str, list[int], list[float], str, str]]:
    """The series a panel draws, as (key, label, steps, values, colour, line style): its own keys (and dashed ones)
    with points, else its fallbacks with points unless the run logged a key under ``panel.no_fallback_prefix``."""
    prefix = panel.no_fallback_prefix
    own = [(key, label, index, "-") for index, (key, label) in enumerate(panel.keys)]
    own += [(key, label, index, "--") for index, (key, label) in enumerate(panel.dashed)]
    groups = [own]
    if not (prefix and any(key.startswith(prefix) for entry in history for key in entry)):
        groups.append([(key, label, index, "-") for index, (key, label) in enumerate(panel.fallback)])
    for keys in groups:
        found = [(key, label, *series(history, key), f"C{index}", style) for key, label, index, style in keys]
        found = [item for item in found if item[2]]
        if found:
            return found
    return []


def ema(values: Sequence[float], weight: float = SMOOTHING) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so that early points are not pulled to 0.

    ``smoothed_t = avg_t / (1 - weight**t)`` with ``avg_t = weight * avg_(t-1) + (1 - weight) * value_t``; weight 0
    returns the values.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    smoothed, average = [], 0.0
    for count, value in enumerate(values, 1):
        average = weight * average + (1.0 - weight) * value
        smoothed.append(average / (1.0 - weight**count))
    return smoothed


def plot_run(path: str | Path, output: str | Path | None = None, smoothing: float = SMOOTHING) -> dict[str, Any]:
    """Plot a run's metrics to a PNG grid and write a JSON summary next to it (same stem); return the summary.

    Only panels whose metrics were logged are drawn, so a plain GRPO run gets its reward / entropy / length
    panels. Each series is a line smoothed by `ema` (``smoothing``) over its faint raw points; a series that is
    zero at every step is left out (the panel says so, the summary lists it under ``left_out``). ``output``
    defaults to ``<run dir>/plots/training.png``, the run dir being ``path`` or the log's directory.
    """
    require("matplotlib", "plotting a run")
    ema([], smoothing)  # a bad weight fails before any work
    file = find_log_file(path)
    history = load_log_history(file)
    steps = training_steps(history)
    if not steps:
        raise RunLogError(f"{file}: no training steps (no log event with a step and per-step metrics)")
    drawn = [(panel, found) for panel in PANELS if (found := _panel_series(history, panel))]
    if not drawn:
        known = ", ".join(key for panel in PANELS for key, _ in panel.keys + panel.dashed + panel.fallback)
        raise RunLogError(f"{file}: none of the plotted metrics was logged ({known})")

    run_dir = Path(path) if Path(path).is_dir() else file.parent
    output = Path(output) if output is not None else run_dir / "plots" / "training.png"
    if output.suffix.lower() != ".png":
        raise RunLogError(f"output must be a .png file, got {output}")
    summary_file = output.with_suffix(".json")

    # Figure + FigureCanvasAgg instead of pyplot: no global backend switch and no figure left open in the caller.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    ncols = min(3, len(drawn))
    nrows = math.ceil(len(drawn) / ncols)
    figure = Figure(figsize=(5.2 * ncols, 3.4 * nrows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    summary_series: dict[str, dict[str, Any]] = {}
    left_out: dict[str, dict[str, str]] = {}
    for axis, (panel, found) in zip(axes, drawn, strict=False):
        zero = [item for item in found if all(value == 0 for value in item[3])]
        for key, label, *_ in zero:
            left_out[key] = {"panel": panel.name, "label": label, "reason": ZERO_EVERY_STEP}
        for key, label, xs, ys, color, style in (item for item in found if item not in zero):
            # Raw points faint, the smoothed line on top; a single point stays visible as a marker.
            axis.plot(xs, ys, linestyle="none", color=color, marker="o", markersize=3, alpha=0.3)
            smoothed = ema(ys, smoothing)
            axis.plot(xs, smoothed, style, color=color, label=label, marker="o" if len(xs) == 1 else None)
            summary_series[key] = {
                "panel": panel.name,
                "label": label,
                "points": len(xs),
                "first_step": xs[0],
                "last_step": xs[-1],
                "first": ys[0],
                "last": ys[-1],
                "smoothed_last": smoothed[-1],
            }
        axis.set_title(panel.title, fontsize=10, pad=14 if panel.caption else None)
        if panel.caption:
            axis.text(0.5, 1.01, panel.caption, transform=axis.transAxes, ha="center", va="bottom", fontsize=6.5,
                      color="0.35")  # fmt: skip
        if zero:
            labels = ", ".join(label for _, label, *_ in zero)
            empty = len(zero) == len(found)  # an empty panel says why in its middle, else in a corner
            x, y, align = (0.5, 0.5, "center") if empty else (0.02, 0.03, "left")
            note = f"not drawn, {ZERO_EVERY_STEP}:\n{labels}"
            axis.text(x, y, note, ha=align, transform=axis.transAxes, fontsize=7, color="0.35")
            if empty:
                axis.set_xlim(steps[0] - 0.5, steps[-1] + 0.5)
        axis.set_xlabel("step")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(panel.ylabel)
        axis.grid(alpha=0.3)
        if len(zero) < len(found):
            axis.legend(fontsize=8)
    for axis in axes[len(drawn) :]:
        axis.set_visible(False)
    figure.suptitle(f"{run_dir.name or run_dir.resolve().name}: steps {steps[0]}–{steps[-1]}")

    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, format="png", dpi=100)
    summary = {
        "source": str(file),
        "image": str(output),
        "steps": {"first": steps[0], "last": steps[-1], "count": len(steps)},
        "panels": [panel.name for panel, _ in drawn],
        "smoothing": {"method": "ema (TensorBoard's, debiased)", "weight": smoothing},
        "series": summary_series,
        "left_out": left_out,
        "captions": {panel.name: panel.caption for panel, _ in drawn if panel.caption},
    }
    summary_file.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary
