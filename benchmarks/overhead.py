"""Cost benchmark: step time, peak memory and a per-phase breakdown of each trainer, as ratios to `GRPOTrainer`.

    python scripts/benchmark.py overhead --quick --output overhead.json

Every trainer gets the same model, data, seed, `num_generations` and batch settings. Each run is its own process
(so peak memory is per trainer) and runs are interleaved, GRPO then a method, GRPO then the next method, ..., round
after round, so that drift of a shared machine hits GRPO and the methods alike. The first steps of each run are
warm-up; the report takes medians over the remaining steps of all rounds.

Phases of a step (seconds, exclusive: a nested phase is charged to the innermost one):

- ``generation_s``: TRL's `_generate` (tokenize, sample, decode);
- ``scoring_s``: forward passes without gradient (`_get_per_token_logps_and_entropies` under `torch.no_grad`):
  Policy Split's scoring of every row under both contexts, DiPO's sampling log-probs, TRL's old/ref log-probs;
- ``loss_s``: `training_step` minus the batch preparation it does first, i.e. the loss forward and backward;
- ``shaping_s``: every call into the functional core (`functional.py`, `distributed.py`) from the trainers;
- ``other_s``: the rest of the step: rewards, tokenizing, batch plumbing, metrics, the optimizer step.

Each number is its own median, so the phases need not add up to the step time exactly.

``--vllm colocate`` generates with a colocated vLLM engine in every run (`use_vllm=True`; on CPU through
`trl_policysplit.vllm_cpu`, for `GRPOTrainer` too), completions forced to full length with vLLM's `min_tokens`.

Memory, per run: on CPU the peak RSS while training (the kernel's high-water mark, reset when training starts), which
the model and the libraries dominate, and the growth of RSS over its value when training starts (after the model is
loaded): what the trainer itself adds. On GPU the same from `torch.cuda.max_memory_allocated`.

The JSON report: ``device``, ``settings``, ``order`` (every run, in the order they ran), ``grpo`` (medians), and per
method ``step_time_ratio``, ``peak_memory_ratio``, ``memory_growth_ratio`` (to its baseline, ``grpo``), the medians
(``step_time_s``, ``phases``, ``shaping_fraction``, memory in MB), ``step_time_ratio_per_round`` (against the baseline
run just before it), ``targets`` and ``within_targets`` (the issue's cost targets); ``runs`` holds the raw records.

``dipo_old_logps`` (in the full run, not in --quick) is DiPO against GRPO with num_iterations=2, where TRL computes
old log-probs for both; plain ``dipo`` takes its perplexities from the sampler (no forward of its own). Such runs
repeat a generate-then-reuse cycle, and each cycle's mean counts as one step. ``policy_split_doubled_micro_batch``
(full run) is Policy Split's opt-out ``keep_grpo_micro_batch=False``: both prompts' rows in one micro-batch. The
optional ``policy_split_no_sampler_logps`` scores the generated rows again with a forward (``sampler_logprobs=False``).

For Policy Split the report adds its cost floor (`cost_floor`): ``floor`` = ``g + (1 - g) * 2w`` with ``g`` the
generation share of GRPO's step and ``2w`` the ratio of padded tokens through the loss, and ``floor_ratio``, the
step-time ratio over the floor (pooled medians), and ``floor_ratio_per_round`` against the GRPO run just before it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib
import inspect
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .common import REWARD_FUNCS, REWARD_WEIGHTS, device_description, finite_or_none, subprocess_env

# name -> (trainer of `cli.TRAINERS`, config overrides). `*_old_logps` runs use num_iterations=2, where TRL computes
# old log-probs itself (DiPO's cost target is stated with and without them).
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "grpo": ("grpo", {}),
    "policy_split": ("policy_split", {}),
    "asym_grpo": ("asym_grpo", {}),
    "dipo": ("dipo", {}),
    "grpo_old_logps": ("grpo", {"num_iterations": 2}),
    "dipo_old_logps": ("dipo", {"num_iterations": 2}),
    # The opt-out of the default: every completion under both prompts in one micro-batch (2x rows per loss forward).
    "policy_split_doubled_micro_batch": ("policy_split", {"keep_grpo_micro_batch": False}),
    # Before the sampler's log-probs: the generated rows scored again by a no-grad forward (for comparison).
    "policy_split_no_sampler_logps": ("policy_split", {"sampler_logprobs": False}),
}
METHODS = ("policy_split", "asym_grpo", "dipo", "dipo_old_logps", "policy_split_doubled_micro_batch")
OPTIONAL_METHODS = ("policy_split_no_sampler_logps",)
BASELINES = {"dipo_old_logps": "grpo_old_logps"}
# Runs whose cost floor is reported: Policy Split trains every completion under both prompts (see `cost_floor`).
FLOOR_RUNS = ("policy_split", "policy_split_doubled_micro_batch", "policy_split_no_sampler_logps")
VLLM_MAX_MODEL_LENGTH = 1024  # prompt + completion; a short context keeps the engine's KV cache small on CPU
PHASES = ("generation_s", "scoring_s", "loss_s", "shaping_s", "other_s")
# The cost targets (ratios to GRPO; floor_ratio: to Policy Split's floor; shaping_fraction: functional-core
# seconds over step seconds). The paper's 1.4x GRPO is stated for its own regime, see docs/BENCHMARKS.md.
TARGETS: dict[str, dict[str, float]] = {
    "policy_split": {"floor_ratio": 1.10, "peak_memory_ratio": 1.25, "shaping_fraction": 0.01},
    "asym_grpo": {"step_time_ratio": 1.01, "shaping_fraction": 0.01},
    "dipo": {"step_time_ratio": 1.05, "shaping_fraction": 0.01},
    "dipo_old_logps": {"step_time_ratio": 1.05, "shaping_fraction": 0.01},
}
# Where the trainers call the functional core; rebinding these module globals times every call.
TRAINER_MODULES = (
    "trl_policysplit.policy_split_trainer",
    "trl_policysplit.shaping_trainer",
    "trl_policysplit.asym_grpo",
)
FUNCTIONAL_MODULES = ("trl_policysplit.functional", "trl_policysplit.distributed")

DEFAULTS: dict[str, Any] = {
    "model": "smollm2-135m-instruct",
    "rounds": 3,
    "steps": 4,
    "warmup": 1,
    "num_generations": 4,
    "questions_per_step": 2,
    "max_completion_length": 64,
    "gradient_accumulation_steps": 1,
    "threads": 1,
    "trainers": list(METHODS),
}
QUICK: dict[str, Any] = {
    **DEFAULTS,
    "rounds": 1,
    "steps": 2,
    "max_completion_length": 32,
    "trainers": ["policy_split", "asym_grpo", "dipo"],
}


# ----------------------------------------------------------------------------------------------------------------
# Aggregation (pure: records in, numbers out)


def micro_batch_rows(settings: Mapping[str, Any]) -> int:
    """Rows per device micro-batch: all completions of a step's questions (one micro-batch per generation)."""
    return settings["questions_per_step"] * settings["num_generations"]


def steps_per_cycle(gradient_accumulation_steps: int, steps_per_generation: int | None, num_iterations: int) -> int:
    """Optimizer steps after which the generate/reuse pattern repeats (1 unless a generation is reused)."""
    generate_every = (steps_per_generation or gradient_accumulation_steps) * num_iterations
    return math.lcm(gradient_accumulation_steps, generate_every) // gradient_accumulation_steps


def cycle_means(steps: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Measured (non-warm-up) steps averaged per cycle, so that generation and reuse steps weigh alike.

    Each step is ``{"cycle": int, "warmup": bool, "step_s": float, <phase>: float, ...}``; numeric fields are
    averaged. With one step per cycle this is the measured steps themselves.
    """
    groups: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for step in steps:
        if not step.get("warmup", False):
            groups[step["cycle"]].append(step)
    means = []
    for cycle in sorted(groups):
        rows = groups[cycle]
        keys = [
            key for key, value in rows[0].items() if isinstance(value, float | int) and not isinstance(value, bool)
        ]
        means.append({key: statistics.fmean(float(row[key]) for row in rows) for key in keys if key != "cycle"})
    return means


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Medians over the measured steps (cycles) of all runs of one trainer, and over the runs' memory peaks."""
    cycles = [cycle for run in runs for cycle in cycle_means(run["steps"])]
    if not cycles:
        raise ValueError(f"no measured steps in the runs of {runs[0]['name'] if runs else '?'}; lower --warmup")
    summary: dict[str, Any] = {
        "runs": len(runs),
        "measured_steps": len(cycles),
        "step_time_s": statistics.median(cycle["step_s"] for cycle in cycles),
        "phases": {phase: statistics.median(cycle.get(phase, 0.0) for cycle in cycles) for phase in PHASES},
        "shaping_fraction": statistics.median(cycle.get("shaping_s", 0.0) / cycle["step_s"] for cycle in cycles),
    }
    if all("loss_tokens" in cycle for cycle in cycles):  # padded tokens through the loss forward, per step
        summary["loss_tokens"] = statistics.median(cycle["loss_tokens"] for cycle in cycles)
    for key in ("peak_memory_mb", "memory_growth_mb", "peak_rss_mb", "rss_growth_mb"):
        values = [run["memory"][key] for run in runs if run["memory"].get(key) is not None]
        if values:
            summary[key] = statistics.median(values)
    return summary


def ratio(value: float, baseline: float) -> float:
    """``value / baseline``; NaN when the baseline is not positive (nothing to compare with)."""
    return value / baseline if baseline > 0 else math.nan


def paired_summaries(
    runs: Sequence[Mapping[str, Any]], method: str, baseline: str
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Per round: the summaries of the method's run and of the baseline run just before it in the order."""
    pairs = []
    previous: Mapping[str, Any] | None = None
    for run in runs:
        if run["name"] == method and previous is not None and previous["name"] == baseline:
            pairs.append((summarize([run]), summarize([previous])))
        previous = run
    return pairs


def paired_step_ratios(runs: Sequence[Mapping[str, Any]], method: str, baseline: str) -> list[float]:
    """Per round: the method's median step time over that of the baseline run just before it in the order."""
    return [ratio(run["step_time_s"], base["step_time_s"]) for run, base in paired_summaries(runs, method, baseline)]


def compare(method: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, float]:
    """The method's cost relative to its baseline's."""
    ratios = {
        "step_time_ratio": ratio(method["step_time_s"], baseline["step_time_s"]),
        "peak_memory_ratio": ratio(method.get("peak_memory_mb", math.nan), baseline.get("peak_memory_mb", math.nan)),
        "memory_growth_ratio": ratio(
            method.get("memory_growth_mb", math.nan), baseline.get("memory_growth_mb", math.nan)
        ),
    }
    if "rss_growth_mb" in method and "rss_growth_mb" in baseline:
        ratios["rss_growth_ratio"] = ratio(method["rss_growth_mb"], baseline["rss_growth_mb"])
    return ratios


def cost_floor(method: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, float]:
    """Policy Split's cost floor against GRPO, from the two runs' measured phases and padded loss tokens.

    Policy Split generates what GRPO generates and trains every completion under both prompts, so no implementation
    can take less than ``g + (1 - g) * 2w`` of GRPO's step: ``g`` is generation's share of GRPO's step, ``2w`` the
    ratio of padded tokens through the loss (2 rows per completion, each ``w`` times as long from the instruction).
    ``floor_ratio`` is the measured step-time ratio over that floor: 1.0 would be no work beyond the method's own.
    """
    share = ratio(baseline["phases"]["generation_s"], baseline["step_time_s"])
    tokens = ratio(method.get("loss_tokens", math.nan), baseline.get("loss_tokens", math.nan))
    floor = share + (1 - share) * tokens
    return {
        "floor": floor,
        "floor_ratio": ratio(ratio(method["step_time_s"], baseline["step_time_s"]), floor),
        "floor_inputs": {"generation_share": share, "loss_token_ratio": tokens, "w": tokens / 2},
    }


def paired_floor_ratios(runs: Sequence[Mapping[str, Any]], method: str, baseline: str) -> list[float]:
    """Per round: the floor ratio against the baseline run just before it (robust to drift between rounds)."""
    return [cost_floor(run, base)["floor_ratio"] for run, base in paired_summaries(runs, method, baseline)]


def within_targets(name: str, entry: Mapping[str, Any]) -> dict[str, bool]:
    """Each of the issue's targets for this method: is the measured value at most the target?"""
    return {key: bool(entry[key] <= limit) for key, limit in TARGETS.get(name, {}).items()}


def interleaved_order(methods: Sequence[str], rounds: int) -> list[list[str]]:
    """Run names of each round: the method's baseline right before each method."""
    return [[item for method in methods for item in (BASELINES.get(method, "grpo"), method)] for _ in range(rounds)]


def build_report(runs: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> dict[str, Any]:
    """Per baseline its medians, per method its medians and ratios to its baseline (see the module docstring)."""
    by_name: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for run in runs:
        by_name[run["name"]].append(run)
    report: dict[str, Any] = {}
    for method in methods:
        baseline = BASELINES.get(method, "grpo")
        if baseline not in report:
            report[baseline] = summarize(by_name[baseline])
        summary = summarize(by_name[method])
        entry = {"baseline": baseline, **compare(summary, report[baseline]), **summary}
        if method in FLOOR_RUNS:
            entry.update(cost_floor(summary, report[baseline]))
            entry["floor_ratio_per_round"] = paired_floor_ratios(runs, method, baseline)
        entry["step_time_ratio_per_round"] = paired_step_ratios(runs, method, baseline)
        entry["targets"] = TARGETS.get(method, {})
        entry["within_targets"] = within_targets(method, entry)
        report[method] = entry
    return report


def format_table(report: Mapping[str, Any], names: Sequence[str]) -> str:
    """A fixed-width table of the report: one row per trainer, baselines first."""
    header = (
        f"{'trainer':<33}{'step s':>8}{'x base':>8}{'peak MB':>9}{'x base':>8}{'grow MB':>9}{'x base':>8}"
        f"{'gen s':>8}{'score s':>8}{'loss s':>8}{'shape ms':>9}{'other s':>8}{'shape %':>8}{'floor':>7}"
        f"{'x floor':>8}  targets"
    )
    lines = [header, "-" * len(header)]
    for name in names:
        entry = report[name]
        phases = entry["phases"]
        targets = ", ".join(
            f"{key.replace('_ratio', '').replace('_fraction', '')} {'ok' if ok else 'MISSED'}"
            for key, ok in entry.get("within_targets", {}).items()
        )
        lines.append(
            f"{name:<33}{entry['step_time_s']:>8.3f}{entry.get('step_time_ratio', 1.0):>8.3f}"
            f"{entry.get('peak_memory_mb', math.nan):>9.0f}{entry.get('peak_memory_ratio', 1.0):>8.3f}"
            f"{entry.get('memory_growth_mb', math.nan):>9.0f}{entry.get('memory_growth_ratio', 1.0):>8.3f}"
            f"{phases['generation_s']:>8.3f}{phases['scoring_s']:>8.3f}{phases['loss_s']:>8.3f}"
            f"{phases['shaping_s'] * 1000:>9.2f}{phases['other_s']:>8.3f}{entry['shaping_fraction'] * 100:>8.3f}"
            f"{entry.get('floor', math.nan):>7.3f}{entry.get('floor_ratio', math.nan):>8.3f}  {targets}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Worker: one trainer, one process


class PhaseTimer:
    """Exclusive wall time per phase: time in a nested region is charged to the innermost region only."""

    def __init__(self, synchronize: Callable[[], None] | None = None) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)  # e.g. padded tokens through the loss, since `take`
        self._stack: list[list[Any]] = []  # [phase, seconds spent in nested regions]
        self._synchronize = synchronize or (lambda: None)

    @contextlib.contextmanager
    def region(self, phase: str) -> Iterator[None]:
        self._synchronize()  # on GPU, charge queued kernels to the region that launched them
        start = time.perf_counter()
        self._stack.append([phase, 0.0])
        try:
            yield
        finally:
            self._synchronize()
            elapsed = time.perf_counter() - start
            _, nested = self._stack.pop()
            self.totals[phase] += elapsed - nested
            if self._stack:
                self._stack[-1][1] += elapsed

    def wrap(self, function: Callable, phase: str, when: Callable[[], bool] | None = None) -> Callable:
        @functools.wraps(function)
        def timed(*args, **kwargs):
            if when is not None and not when():
                return function(*args, **kwargs)
            with self.region(phase):
                return function(*args, **kwargs)

        return timed

    def take(self) -> dict[str, float]:
        """The totals since the last call, and start afresh."""
        totals, self.totals = dict(self.totals), defaultdict(float)
        totals.update(self.counts)
        self.counts = defaultdict(int)
        return totals


@contextlib.contextmanager
def timed_functional_core(timer: PhaseTimer) -> Iterator[list[str]]:
    """Charge every functional-core call of the trainer modules to ``shaping``; yields the wrapped names."""
    core = {importlib.import_module(name).__name__ for name in FUNCTIONAL_MODULES}
    patched: list[tuple[Any, str, Any]] = []
    for module_name in TRAINER_MODULES:
        module = importlib.import_module(module_name)
        for attribute, value in list(vars(module).items()):
            if inspect.isfunction(value) and value.__module__ in core:
                patched.append((module, attribute, value))
                setattr(module, attribute, timer.wrap(value, "shaping"))
    try:
        yield sorted({f"{value.__module__.rsplit('.', 1)[-1]}.{value.__name__}" for _, _, value in patched})
    finally:
        for module, attribute, value in patched:
            setattr(module, attribute, value)


def instrument(trainer: Any, timer: PhaseTimer) -> None:
    """Time the trainer's phases by wrapping its methods on the instance (TRL calls them through ``self``)."""
    import torch

    compute_loss = trainer._compute_loss

    def counted_loss(model, inputs):
        timer.counts["loss_tokens"] += inputs["prompt_ids"].numel() + inputs["completion_ids"].numel()
        return compute_loss(model, inputs)

    trainer._compute_loss = counted_loss
    trainer.training_step = timer.wrap(trainer.training_step, "loss")
    trainer._prepare_inputs = timer.wrap(trainer._prepare_inputs, "prepare")
    trainer._generate = timer.wrap(trainer._generate, "generation")
    trainer._get_per_token_logps_and_entropies = timer.wrap(
        trainer._get_per_token_logps_and_entropies, "scoring", when=lambda: not torch.is_grad_enabled()
    )


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (Linux), so the peak is that of training, not of model loading."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _max_rss_mb() -> float:
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 1024 / 1024 if sys.platform == "darwin" else maxrss / 1024  # bytes on macOS, KiB on Linux


def _step_recorder(timer: PhaseTimer, synchronize: Callable[[], None], cycle: int, warmup_steps: int) -> Any:
    from transformers import TrainerCallback

    class StepRecorder(TrainerCallback):
        """Wall time and phase totals of each optimizer step; memory at the start and the peak of training."""

        def __init__(self) -> None:
            self.steps: list[dict[str, Any]] = []
            self.memory: dict[str, Any] = {}
            self._start = 0.0

        def on_train_begin(self, args, state, control, **kwargs):
            import torch

            gc.collect()
            self.memory["rss_at_train_start_mb"] = _proc_status_mb("VmRSS")
            self.memory["rss_peak_scope"] = "training" if _reset_peak_rss() else "process"
            if torch.cuda.is_available() and args.device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                self.memory["cuda_at_train_start_mb"] = torch.cuda.memory_allocated() / 2**20

        def on_step_begin(self, args, state, control, **kwargs):
            synchronize()
            timer.take()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            synchronize()
            step_s = time.perf_counter() - self._start
            totals = timer.take()
            index = len(self.steps)
            record = {"step": index, "cycle": index // cycle, "warmup": index < warmup_steps, "step_s": step_s}
            for phase in ("generation", "scoring", "loss", "shaping"):
                record[f"{phase}_s"] = totals.get(phase, 0.0)
            record["other_s"] = step_s - sum(
                record[f"{phase}_s"] for phase in ("generation", "scoring", "loss", "shaping")
            )
            record["loss_tokens"] = totals.get("loss_tokens", 0)
            self.steps.append(record)

        def on_train_end(self, args, state, control, **kwargs):
            import torch

            memory = self.memory
            hwm = _proc_status_mb("VmHWM") if memory["rss_peak_scope"] == "training" else None
            memory["peak_rss_mb"] = hwm if hwm is not None else _max_rss_mb()
            memory["process_peak_rss_mb"] = _max_rss_mb()
            start = memory["rss_at_train_start_mb"]
            memory["rss_growth_mb"] = memory["peak_rss_mb"] - start if start is not None else None
            if "cuda_at_train_start_mb" in memory:
                memory["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
                memory["cuda_growth_mb"] = memory["cuda_peak_mb"] - memory["cuda_at_train_start_mb"]
                memory["peak_memory_mb"], memory["memory_growth_mb"] = memory["cuda_peak_mb"], memory["cuda_growth_mb"]
            else:
                memory["peak_memory_mb"], memory["memory_growth_mb"] = memory["peak_rss_mb"], memory["rss_growth_mb"]

    return StepRecorder()


def run_worker(name: str, settings: Mapping[str, Any], result_path: str) -> None:
    """Train one run of the benchmark and write its per-step records and memory to ``result_path`` (JSON)."""
    import torch
    from trl import ModelConfig

    from trl_policysplit.tools import cli
    from trl_policysplit.vllm_cpu import cpu_weight_sync

    if settings["device"] == "cpu" and settings.get("threads"):
        torch.set_num_threads(settings["threads"])
    trainer_name, overrides = RUNS[name]
    if trainer_name == "grpo":  # the reference is TRL's own class, not the CLI's grpo (which adds opt-in flags)
        from trl import GRPOConfig, GRPOTrainer

        config_class, trainer_class = GRPOConfig, GRPOTrainer
    else:
        config_class, trainer_class = cli.TRAINERS[trainer_name]
    on_gpu = settings["device"] == "cuda"
    synchronize = torch.cuda.synchronize if on_gpu else (lambda: None)
    ga = settings["gradient_accumulation_steps"]
    cycle = steps_per_cycle(ga, overrides.get("steps_per_generation"), overrides.get("num_iterations", 1))
    warmup_steps = cycle * math.ceil(settings["warmup"] / cycle)
    max_steps = warmup_steps + cycle * math.ceil(settings["steps"] / cycle)
    length = settings["max_completion_length"]

    values: dict[str, Any] = {
        "output_dir": str(Path(result_path).with_suffix("")) + "-out",
        "max_steps": max_steps,
        "per_device_train_batch_size": micro_batch_rows(settings),
        "gradient_accumulation_steps": ga,
        "num_generations": settings["num_generations"],
        "max_completion_length": length,
        "temperature": 1.0,
        "learning_rate": 1e-5,
        "lr_scheduler_type": "constant",
        "beta": 0.0,
        "seed": settings["seed"],
        "reward_weights": REWARD_WEIGHTS,
        "bf16": on_gpu,
        "use_cpu": not on_gpu,
        "activation_checkpointing": False,
        "save_strategy": "no",
        "report_to": "none",
        "logging_steps": 1,
        "disable_tqdm": True,
        "model_init_kwargs": {"dtype": settings["dtype"]},
        **overrides,
    }
    if settings.get("vllm"):  # generation by a colocated vLLM engine (CPU: through `vllm_cpu`'s weight sync)
        values.update(use_vllm=True, vllm_mode=settings["vllm"], vllm_max_model_length=VLLM_MAX_MODEL_LENGTH)
    generation_kwargs: dict[str, Any] = {}
    if settings["fixed_length"]:  # same tokens per step for every trainer, whatever the policy learns
        generation_kwargs["min_tokens" if settings.get("vllm") else "min_new_tokens"] = length
    if settings.get("random_weights"):  # the architecture's vocabulary is larger than the local tokenizer's
        from .random_model import suppressed_token_ids

        generation_kwargs["suppress_tokens"] = suppressed_token_ids(settings["model_path"]) or None
    if generation_kwargs:
        values["generation_kwargs"] = generation_kwargs
    if "reward_range" in {f.name for f in config_class.__dataclass_fields__.values()}:
        values["reward_range"] = [0.0, sum(REWARD_WEIGHTS)]  # the asymmetric rule maps the total reward to [0, 1]
    config = config_class(**values)

    timer = PhaseTimer(synchronize if on_gpu else None)
    recorder = _step_recorder(timer, synchronize, cycle, warmup_steps)
    # TRL's GRPOTrainer gets the CPU weight sync the package's trainers use by themselves (a no-op on CUDA).
    with cpu_weight_sync() if settings.get("vllm") else contextlib.nullcontext():
        trainer = trainer_class(
            model=settings["model_path"],
            reward_funcs=cli.build_reward_funcs(REWARD_FUNCS),
            args=config,
            train_dataset=cli.load_split(cli.ScriptArguments(), "train"),
            processing_class=cli.load_tokenizer(settings["model_path"], ModelConfig()),
            callbacks=[recorder],
        )
    instrument(trainer, timer)
    with timed_functional_core(timer) as wrapped:
        trainer.train()
    result = {
        "name": name,
        "trainer": trainer_name,
        "overrides": overrides,
        "batch": {  # as the trainer ran them (Policy Split splits micro-batches, keeping the generation batch)
            "per_device_train_batch_size": trainer.args.per_device_train_batch_size,
            "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
            "steps_per_generation": trainer.args.steps_per_generation,
            "generation_batch_size": trainer.args.generation_batch_size,
        },
        "steps_per_cycle": cycle,
        "steps": recorder.steps,
        "memory": recorder.memory,
        "shaping_functions": wrapped,
    }
    Path(result_path).write_text(json.dumps(result, indent=1) + "\n")


# ----------------------------------------------------------------------------------------------------------------
# Orchestration


def _run_subprocess(name: str, settings: Mapping[str, Any], workdir: Path, index: int) -> dict[str, Any]:
    result_path = workdir / f"{index:03d}-{name}.json"
    log_path = workdir / f"{index:03d}-{name}.log"
    env = subprocess_env()
    if settings["device"] == "cpu" and settings.get("threads"):
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(settings["threads"])
    if settings["device"] == "cpu" and settings.get("vllm"):  # the engine shares the trainer's cores: no pinning
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    command = [
        sys.executable,
        "-m",
        "benchmarks.overhead",
        "_worker",
        name,
        json.dumps(settings),
        str(result_path),
    ]
    with log_path.open("w") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if completed.returncode != 0:
        lines = log_path.read_text().splitlines(keepends=True)
        # Triton (a requirement of vLLM's CPU build) prints leak reports at exit, after the error.
        lines = lines[: next((i for i, line in enumerate(lines) if line.startswith("nanobind: leaked")), len(lines))]
        tail = "".join(lines[-30:])
        raise RuntimeError(f"the {name} run failed (exit {completed.returncode}); end of its log {log_path}:\n{tail}")
    return {**json.loads(result_path.read_text()), "index": index}


def run_overhead(options: Mapping[str, Any], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the interleaved benchmark and return the report (see the module docstring for its fields)."""
    import torch

    from trl_policysplit.tools.cli import resolve_model
    from trl_policysplit.tools.smollm2 import default_cache_dir

    from .random_model import build_random_model, is_random_model

    if options["num_generations"] % 2:
        raise ValueError(
            f"--num-generations must be even (Policy Split trains half per mode), got {options['num_generations']}"
        )
    device = options["device"]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = options["dtype"] or ("bfloat16" if device == "cuda" else "float32")
    if options.get("vllm") and is_random_model(options["model"]):
        raise ValueError("--vllm needs a model with its own tokenizer: random-* models suppress tokens vLLM samples")
    if is_random_model(options["model"]):  # a real architecture's shapes, random weights: nothing to download
        tokenizer_dir = resolve_model(options.get("tokenizer") or DEFAULTS["model"])
        cache = default_cache_dir().parent / f"{options['model']}-{dtype}"
        model_path = build_random_model(options["model"], tokenizer_dir, cache, dtype)
    else:
        model_path = resolve_model(options["model"])
    settings = {
        "model": options["model"],
        "model_path": model_path,
        "random_weights": is_random_model(options["model"]),
        "device": device,
        "dtype": dtype,
        "dataset": "arithmetic (built-in, level 1, 80 training questions, dataset seed 0)",
        "reward_funcs": REWARD_FUNCS,
        "reward_weights": REWARD_WEIGHTS,
        "num_generations": options["num_generations"],
        "questions_per_step": options["questions_per_step"],
        "per_device_train_batch_size": options["questions_per_step"] * options["num_generations"],
        "gradient_accumulation_steps": options["gradient_accumulation_steps"],
        "threads": options["threads"],
        "max_completion_length": options["max_completion_length"],
        "fixed_length": options["fixed_length"],
        "vllm": options.get("vllm"),
        "temperature": 1.0,
        "learning_rate": 1e-5,
        "beta": 0.0,
        "seed": options["seed"],
        "rounds": options["rounds"],
        "warmup": options["warmup"],
        "steps": options["steps"],
        "quick": options["quick"],
        "run_overrides": {name: RUNS[name][1] for name in RUNS},
    }
    methods = list(dict.fromkeys(options["trainers"]))
    rounds = interleaved_order(methods, options["rounds"])
    order = [name for names in rounds for name in names]
    started = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory(prefix="trl-policysplit-benchmark-") as workdir:
        for index, name in enumerate(order):
            run_started = time.perf_counter()
            run = _run_subprocess(name, settings, Path(workdir), index)
            run["round"] = index // len(rounds[0])
            runs.append(run)
            steps = [step["step_s"] for step in run["steps"] if not step["warmup"]]
            log(
                f"[benchmark] run {index + 1}/{len(order)} (round {run['round'] + 1}) {name}: "
                f"{time.perf_counter() - run_started:.1f} s, step {statistics.median(steps):.3f} s, "
                f"peak {run['memory']['peak_memory_mb']:.0f} MB"
            )
    report = {
        "benchmark": "overhead",
        "device": device_description(device, options["threads"]),
        "memory_metric": (
            "peak_memory_mb: torch.cuda.max_memory_allocated during training"
            if device == "cuda"
            else "peak_memory_mb: peak RSS during training (VmHWM, reset when training starts; whole-process "
            "ru_maxrss where it cannot be reset), dominated by the model and libraries on CPU"
        )
        + "; memory_growth_mb: that peak minus the memory at the start of training (after the model is loaded), "
        "what the trainer's own buffers add. Ratios are to the baseline's medians.",
        "settings": settings,
        "order": order,
        "order_per_round": rounds[0],
        "wall_time_s": time.perf_counter() - started,
        **build_report(runs, methods),
        "runs": runs,
    }
    return report


def _resolve_options(args: argparse.Namespace) -> dict[str, Any]:
    """Command-line values, with --quick's or the full defaults where a flag is not given."""
    defaults = QUICK if args.quick else DEFAULTS
    options = {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in defaults.items()}
    options.update(
        quick=args.quick,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
        fixed_length=args.fixed_length,
        tokenizer=args.tokenizer,
        vllm=args.vllm,
    )
    return options


def add_arguments(overhead: argparse.ArgumentParser) -> None:
    overhead.add_argument("--quick", action="store_true", help="small settings: a few minutes on 2 CPU cores")
    overhead.add_argument(
        "--model",
        help="built-in smollm2-135m-instruct (default), a hub id, a local directory, or random-qwen3-0.6b/1.7b/8b: "
        "that architecture with random weights (cost depends on shapes only; nothing is downloaded)",
    )
    overhead.add_argument(
        "--tokenizer", help="tokenizer directory of a random-* model (default: the built-in SmolLM2's)"
    )
    overhead.add_argument("--rounds", type=int, help="rounds of (GRPO, method) pairs")
    overhead.add_argument("--steps", type=int, help="measured optimizer steps per run")
    overhead.add_argument("--warmup", type=int, help="steps skipped at the start of each run")
    overhead.add_argument("--num-generations", type=int, help="completions per question (even)")
    overhead.add_argument("--questions-per-step", type=int, help="questions per device batch")
    overhead.add_argument("--max-completion-length", type=int, help="tokens per completion")
    overhead.add_argument("--gradient-accumulation-steps", type=int, help="micro-batches per optimizer step")
    overhead.add_argument(
        "--threads",
        type=int,
        help="torch threads per run on CPU; default 1: on a shared machine, more threads stall each other and the "
        "timings swing by several times; 0: torch's default",
    )
    overhead.add_argument(
        "--trainers", nargs="+", choices=(*METHODS, *OPTIONAL_METHODS), help="methods to compare with GRPO"
    )
    overhead.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    overhead.add_argument("--dtype", help="model dtype (default: float32 on CPU, bfloat16 on GPU)")
    overhead.add_argument("--seed", type=int, default=0)
    overhead.add_argument(
        "--variable-length",
        dest="fixed_length",
        action="store_false",
        help="let completions stop at EOS (default: min_new_tokens = max length, the same tokens for every trainer)",
    )
    overhead.add_argument(
        "--vllm",
        choices=("colocate",),
        help="generate with a colocated vLLM engine (use_vllm=True); on CPU needs vllm-cpu, see README 'vLLM'",
    )
    overhead.add_argument("--output", help="write the JSON report here")


def describe() -> str:
    """The subcommand's description, with its defaults."""
    return (
        "Step time, peak memory and per-phase seconds of each trainer as ratios to GRPOTrainer; runs are "
        "interleaved (GRPO, method, GRPO, method, ...) in separate processes. Defaults: "
        + ", ".join(f"{key} {value}" for key, value in DEFAULTS.items())
        + "; --quick: "
        + ", ".join(f"{key} {value}" for key, value in QUICK.items() if DEFAULTS[key] != value)
    )


def main(args: argparse.Namespace) -> int:
    from trl_policysplit.tools.cli import CLIError

    try:
        report = run_overhead(_resolve_options(args))
    except (CLIError, ValueError, RuntimeError) as error:
        print(f"benchmark: error: {error}", file=sys.stderr)
        return 2
    names = [name for name in report if isinstance(report[name], dict) and "step_time_s" in report[name]]
    order = " ".join(report["order_per_round"])
    print(f"\n{report['device']}; wall time {report['wall_time_s']:.0f} s; order per round: {order}")
    print(format_table(report, names))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(finite_or_none(report), indent=1) + "\n")
        print(f"[benchmark] report: {args.output}")
    return 0


if __name__ == "__main__":  # one run in its own process, started by `run_overhead`
    _, _command, _name, _settings, _result_path = sys.argv
    run_worker(_name, json.loads(_settings), _result_path)
