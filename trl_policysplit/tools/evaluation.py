"""Evaluate a checkpoint in both Policy Split modes: pass@k, token entropy and diversity on a held-out split.

    python scripts/evaluate.py runs/demo                     # -> runs/demo/eval/test.json
    python scripts/evaluate.py smollm2-135m-instruct --num-samples 8 --k 1 4 8 --output base.json

A training run's directory (one holding ``trl_policysplit_run.json``) supplies the dataset, the held-out split, the
reward functions and the high-entropy instruction; flags override them. Any other model is evaluated on the built-in
arithmetic task's test split with the ``arithmetic`` reward.

For each mode, every question gets ``--num-samples`` sampled completions (``model.generate``, temperature sampling
with no top-k/top-p truncation, as the trainers sample). A completion is correct when the (weighted) sum of its
rewards exceeds ``--correct-threshold``. Metrics per mode:

- ``pass@1``: mean correctness over all samples; ``pass@k``: the unbiased estimator of Chen et al. 2021
  (arXiv 2107.03374), ``1 - C(n - c, k) / C(n, k)`` averaged over questions;
- ``entropy``: mean entropy (nats) of the sampling distribution (softmax of the logits at the sampling temperature)
  over the generated tokens, up to and including EOS, token-weighted (long completions weigh more);
- ``distinct_correct``: distinct correct completions (stripped text) per question;
- ``distinct_1``/``distinct_2``: unique / total whitespace n-grams over a question's completions, averaged;
- ``mean_length``: completion length in tokens (EOS included); ``mean_reward`` and ``reward/<name>``.

The report's ``averaging`` (and the lines under the printed table) says how each number is averaged (`AVERAGING`).

``python scripts/evaluate.py compare BEFORE.json AFTER.json`` prints a before/after table of two reports
(`compare_reports`: pass@1, pass@4 and entropy per mode by default).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from ..functional import weighted_total_reward
from ..modes import (
    DEFAULT_HIGH_ENTROPY_PROMPT,
    HIGH_ENTROPY,
    MODES,
    NORMAL,
    template_default_system_prompt,
    to_high_entropy,
)
from .cli import (
    BUILTIN_MODELS,
    RUN_INFO_FILE,
    CLIError,
    ScriptArguments,
    build_reward_funcs,
    finite_or_none,
    load_model_and_tokenizer,
    load_split,
    needs_answer,
    resolve_model,
)

DEFAULT_KS = (1, 4, 8)
# Sequences per generate call: on CPU a step of 64 rows costs far less than 4 steps of 16 (the weights are read once).
DEFAULT_BATCH_SIZE = 64
# How `compute_mode_metrics` averages each metric of a mode; ``pass@k`` and ``reward/<name>`` stand for every k / name.
AVERAGING: dict[str, str] = {
    "pass@1": "per sample (correct or not), mean over all samples (equal to per question then over questions)",
    "pass@k": "per question (unbiased estimate from its samples), then mean over questions",
    "mean_reward": "per sample (weighted sum of its rewards), mean over the samples with a reward",
    "reward/<name>": "per sample, mean over the samples with that reward",
    "entropy": "token-weighted: mean over all generated tokens of all samples (not per sample first)",
    "distinct_correct": "per question (distinct correct texts among its samples), then mean over questions",
    "distinct_1": "per question (unique / total 1-grams over its samples), then mean over questions",
    "distinct_2": "per question (unique / total 2-grams over its samples), then mean over questions",
    "mean_length": "per sample (tokens), mean over all samples",
}

# ----------------------------------------------------------------------------------------------------------------
# Metrics (pure functions)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct: ``1 - C(n - c, k) / C(n, k)``.

    Computed as ``1 - prod_{i = n - c + 1}^{n} (1 - k / i)`` (Chen et al. 2021, arXiv 2107.03374), which never forms
    the large binomial coefficients.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams / all n-grams over ``texts`` (whitespace tokens; n-grams do not cross texts); 0 when none."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    ngrams = []
    for text in texts:
        tokens = text.split()
        ngrams.extend(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return len(set(ngrams)) / len(ngrams) if ngrams else 0.0


def total_rewards(rewards: Any, weights: Sequence[float] | None = None) -> np.ndarray:
    """(questions, samples) totals from (questions, samples) or per-function (questions, samples, functions) rewards.

    Like TRL, a missing (None/NaN) reward counts as nothing; a sample whose rewards are all missing gets NaN.
    """
    rewards = np.asarray(rewards, dtype=float)
    if rewards.ndim == 2:
        return rewards
    if rewards.ndim != 3:
        raise ValueError(f"rewards must have shape (questions, samples[, functions]), got {rewards.shape}")
    weights = np.ones(rewards.shape[-1]) if weights is None else np.asarray(weights, dtype=float)
    return weighted_total_reward(torch.from_numpy(rewards), torch.from_numpy(weights)).numpy()


def compute_mode_metrics(
    rewards: Any,
    texts: Sequence[Sequence[str]],
    token_entropies: Sequence[Sequence[Sequence[float]]],
    lengths: Sequence[Sequence[int]],
    ks: Sequence[int] = DEFAULT_KS,
    threshold: float = 0.5,
    reward_weights: Sequence[float] | None = None,
    reward_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Metrics of one mode from its samples, all indexed [question][sample].

    ``rewards``: totals (questions, samples) or per function (questions, samples, functions), summed with
    ``reward_weights``; a sample is correct when its total exceeds ``threshold``. ``token_entropies``: the entropy of
    every generated token of every sample; ``lengths``: the completions' lengths in tokens. pass@k is reported for
    each k in ``ks`` not above the number of samples.
    """
    per_function = np.asarray(rewards, dtype=float)
    totals = total_rewards(per_function, reward_weights)
    num_questions, num_samples = totals.shape
    if num_questions == 0 or num_samples == 0:
        raise ValueError("need at least one question and one sample")
    if len(texts) != num_questions or any(len(row) != num_samples for row in texts):
        raise ValueError(f"texts must be {num_questions} x {num_samples} like the rewards")
    correct = np.nan_to_num(totals, nan=-np.inf) > threshold
    num_correct = correct.sum(axis=1)

    metrics: dict[str, float] = {"pass@1": float(correct.mean())}
    for k in sorted(set(ks)):
        if k <= num_samples:
            metrics[f"pass@{k}"] = float(np.mean([pass_at_k(num_samples, int(c), k) for c in num_correct]))
    metrics["mean_reward"] = _nanmean(totals)
    if per_function.ndim == 3:
        names = reward_names or [f"reward_{i}" for i in range(per_function.shape[-1])]
        for index, name in enumerate(names):
            metrics[f"reward/{name}"] = _nanmean(per_function[..., index])
    entropy_sum = sum(float(np.sum(sample)) for row in token_entropies for sample in row)
    entropy_count = sum(len(sample) for row in token_entropies for sample in row)
    metrics["entropy"] = entropy_sum / entropy_count if entropy_count else math.nan
    distinct_correct = [
        len({text.strip() for text, ok in zip(row, ok_row, strict=True) if ok})
        for row, ok_row in zip(texts, correct, strict=True)
    ]
    metrics["distinct_correct"] = float(np.mean(distinct_correct))
    metrics["distinct_1"] = float(np.mean([distinct_n(row, 1) for row in texts]))
    metrics["distinct_2"] = float(np.mean([distinct_n(row, 2) for row in texts]))
    metrics["mean_length"] = float(np.mean(np.asarray(lengths, dtype=float)))
    return metrics


def metric_averaging(names: Sequence[str]) -> dict[str, str]:
    """`AVERAGING` for the metrics named (e.g. ``pass@4``, ``reward/format``), in their order."""
    averaging = {}
    for name in names:
        key = "pass@k" if name.startswith("pass@") and name != "pass@1" else name
        key = "reward/<name>" if name.startswith("reward/") else key
        averaging[name] = AVERAGING.get(key, "see the evaluation module docstring")
    return averaging


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.mean(values[~np.isnan(values)])) if (~np.isnan(values)).any() else math.nan


# ----------------------------------------------------------------------------------------------------------------
# Generation and scoring


def build_prompts(
    prompts: Sequence[Any],
    mode: str,
    instruction: str = DEFAULT_HIGH_ENTROPY_PROMPT,
    default_system_prompt: str | None = None,
) -> list[Any]:
    """The prompts of one mode: as given (normal) or with the high-entropy instruction (`to_high_entropy`, which
    keeps the chat template's ``default_system_prompt`` as the trainer does)."""
    if mode == NORMAL:
        return list(prompts)
    if mode == HIGH_ENTROPY:
        return [to_high_entropy(prompt, instruction, default_system_prompt) for prompt in prompts]
    raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")


def _is_conversational(prompt: Any) -> bool:
    return isinstance(prompt, list) and bool(prompt) and isinstance(prompt[0], dict) and "role" in prompt[0]


def _eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every eos id the model declares and the tokenizer's, as the trainers stop on them."""
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids = [tokenizer.eos_token_id, *ids]
    return ids


def _tokenize(tokenizer: Any, prompts: Sequence[Any]) -> list[list[int]]:
    if _is_conversational(prompts[0]):
        try:
            encoded = tokenizer.apply_chat_template(
                list(prompts), add_generation_prompt=True, tokenize=True, return_dict=True
            )
        except ValueError as error:  # e.g. no chat template
            raise CLIError(f"cannot apply the tokenizer's chat template to the prompts ({error})") from None
        ids = encoded["input_ids"]
    else:
        ids = tokenizer(list(prompts))["input_ids"]
    return [list(map(int, row)) for row in ids]


def token_entropies(scores: Sequence[Any]) -> Any:
    """(batch, steps) entropies in nats of softmax(scores) per generation step; -inf scores (masked) are fine."""
    import torch

    return torch.stack([_entropy(step) for step in scores], dim=1)


def _entropy(logits: Any) -> Any:
    """Entropy in nats of softmax(logits) over the last dimension, in float32; -inf logits count as probability 0."""
    import torch

    log_probs = torch.log_softmax(logits.float(), dim=-1)
    finite = log_probs.clamp(min=torch.finfo(log_probs.dtype).min)
    return -(log_probs.exp() * finite).sum(dim=-1)


class EntropyRecorder(LogitsProcessor):
    """A logits processor that records each step's sampling entropy and leaves the scores as they are.

    ``generate(output_scores=True)`` would keep a (batch, vocabulary) tensor per step (about 200 MB per 16 x 64
    tokens of a 49k-token vocabulary) only for these (batch,) numbers. Custom processors run before generate's
    temperature warper, so the recorder divides by the temperature itself; the evaluation samples without top-k,
    top-p or min-p, so this is the distribution tokens are drawn from.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = temperature
        self.steps: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.steps.append(_entropy(scores / self.temperature))
        return scores

    def entropies(self) -> Any:
        """(batch, steps) entropies of the generate call since the recorder was made."""
        import torch

        return torch.stack(self.steps, dim=1)


def completion_lengths(completions: Any, eos_ids: Any) -> Any:
    """Tokens of each generated row up to and including its first EOS (all of them when it has none).

    Padding after EOS is left out even when the pad token is the EOS token.
    """
    import torch

    is_eos = torch.isin(completions, torch.as_tensor(eos_ids, device=completions.device))
    steps = completions.shape[1]
    first_eos = is_eos.int().argmax(dim=1)
    return torch.where(is_eos.any(dim=1), first_eos + 1, torch.full_like(first_eos, steps))


def sample_completions(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Any],
    num_samples: int,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    progress: Any = None,
) -> dict[str, list[list[Any]]]:
    """Sample ``num_samples`` completions per prompt, batched over (prompt, sample) pairs with left padding.

    Returns, indexed [prompt][sample]: ``texts`` (decoded, special tokens skipped), ``ids`` (up to and including the
    first EOS), ``lengths`` and ``entropies`` (per token, at the sampling temperature). ``progress``: a tqdm bar
    advanced by each batch's samples.
    """
    import torch
    from transformers import GenerationConfig, set_seed

    eos_ids = _eos_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    generation_config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=temperature,
        top_k=0,
        top_p=1.0,
        min_p=None,
        repetition_penalty=1.0,
        pad_token_id=pad_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_ids,
        return_dict_in_generate=True,
        disable_compile=True,
    )
    prompt_ids = _tokenize(tokenizer, prompts)
    pairs = [(question, sample) for question in range(len(prompts)) for sample in range(num_samples)]
    result: dict[str, list[list[Any]]] = {
        key: [[None] * num_samples for _ in prompts] for key in ("texts", "ids", "lengths", "entropies")
    }
    device = next(model.parameters()).device
    eos = torch.tensor(eos_ids, device=device)
    set_seed(seed)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start : start + batch_size]
            rows = [prompt_ids[question] for question, _ in batch]
            width = max(len(row) for row in rows)
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
            for index, row in enumerate(rows):
                input_ids[index, width - len(row) :] = torch.tensor(row)
                attention_mask[index, width - len(row) :] = 1
            recorder = EntropyRecorder(temperature)
            with torch.inference_mode():
                output = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    generation_config=generation_config,
                    logits_processor=LogitsProcessorList([recorder]),
                )
            completions = output.sequences[:, width:]
            entropies = recorder.entropies()
            lengths = completion_lengths(completions, eos)
            for index, (question, sample) in enumerate(batch):
                length = int(lengths[index])
                ids = completions[index, :length].tolist()
                result["ids"][question][sample] = ids
                result["lengths"][question][sample] = length
                result["entropies"][question][sample] = entropies[index, :length].tolist()
                result["texts"][question][sample] = tokenizer.decode(ids, skip_special_tokens=True)
            if progress is not None:
                progress.update(len(batch))
    finally:
        model.train(was_training)
    return result


def score_completions(
    reward_funcs: Sequence[Callable[..., list]],
    prompts: Sequence[Any],
    texts: Sequence[Sequence[str]],
    completion_ids: Sequence[Sequence[list[int]]],
    columns: dict[str, Sequence[Any]] | None = None,
) -> np.ndarray:
    """(questions, samples, functions) rewards, calling each function as TRL's trainers do (None becomes NaN).

    Conversational prompts get their completions as ``[{"role": "assistant", "content": text}]``; ``columns`` are
    the dataset's other columns, repeated per sample and passed as keyword arguments (e.g. ``answer=[...]``).
    """
    num_samples = len(texts[0])
    conversational = _is_conversational(prompts[0])
    flat_prompts = [prompt for prompt in prompts for _ in range(num_samples)]
    flat_texts = [text for row in texts for text in row]
    completions = [[{"role": "assistant", "content": text}] for text in flat_texts] if conversational else flat_texts
    kwargs = {
        name: [value for value in values for _ in range(num_samples)] for name, values in (columns or {}).items()
    }
    kwargs.update(trainer_state=None, log_extra=lambda *a, **k: None, log_metric=lambda *a, **k: None)
    flat_ids = [ids for row in completion_ids for ids in row]
    rewards = np.empty((len(flat_texts), len(reward_funcs)))
    for index, function in enumerate(reward_funcs):
        values = function(prompts=flat_prompts, completions=completions, completion_ids=flat_ids, **kwargs)
        if len(values) != len(flat_texts):
            raise CLIError(
                f"the reward {_name(function)} returned {len(values)} rewards for {len(flat_texts)} completions"
            )
        rewards[:, index] = [math.nan if value is None else float(value) for value in values]
    return rewards.reshape(len(prompts), num_samples, len(reward_funcs))


def _name(function: Callable[..., Any]) -> str:
    return getattr(function, "__name__", type(function).__name__)


def evaluate_model(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    reward_funcs: Sequence[Callable[..., list]],
    *,
    modes: Sequence[str] = MODES,
    num_samples: int = 8,
    ks: Sequence[int] = DEFAULT_KS,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    high_entropy_prompt: str = DEFAULT_HIGH_ENTROPY_PROMPT,
    correct_threshold: float = 0.5,
    reward_weights: Sequence[float] | None = None,
    reward_names: Sequence[str] | None = None,
    show_progress: bool = False,
) -> dict[str, dict[str, Any]]:
    """Sample, score and measure every mode on a dataset with a ``prompt`` column (other columns go to rewards).

    Returns ``{"metrics": {mode: {...}}, "per_question": {mode: {"num_correct": [...]}}}``. Every mode starts from
    the same seed. ``show_progress``: a progress bar on stderr over questions x samples x modes.
    """
    base_prompts = list(dataset["prompt"])
    columns = {name: list(dataset[name]) for name in dataset.column_names if name != "prompt"}
    names = list(reward_names) if reward_names is not None else [_name(f) for f in reward_funcs]
    metrics, per_question = {}, {}
    default_system_prompt = template_default_system_prompt(tokenizer)
    progress = tqdm(
        total=len(modes) * len(base_prompts) * num_samples,
        desc="evaluating",
        unit="sample",
        disable=not show_progress,
        file=sys.stderr,
    )
    for mode in modes:
        progress.set_postfix_str(f"mode={mode}")
        prompts = build_prompts(base_prompts, mode, high_entropy_prompt, default_system_prompt)
        samples = sample_completions(
            model, tokenizer, prompts, num_samples, temperature, max_new_tokens, batch_size, seed, progress
        )
        # As in training: rewards see the question's own (normal) prompt and a `mode` column.
        mode_columns = {**columns, "mode": [mode] * len(base_prompts)}
        rewards = score_completions(reward_funcs, base_prompts, samples["texts"], samples["ids"], mode_columns)
        metrics[mode] = compute_mode_metrics(
            rewards,
            samples["texts"],
            samples["entropies"],
            samples["lengths"],
            ks,
            correct_threshold,
            reward_weights,
            names,
        )
        totals = total_rewards(rewards, reward_weights)
        per_question[mode] = {
            "num_correct": [int(c) for c in (np.nan_to_num(totals, nan=-np.inf) > correct_threshold).sum(1)]
        }
    progress.close()
    return {"metrics": metrics, "per_question": per_question}


# ----------------------------------------------------------------------------------------------------------------
# Command line


@dataclass
class EvalSettings:
    """Everything an evaluation uses, resolved from the flags and the run's ``trl_policysplit_run.json``."""

    checkpoint: str
    script_args: ScriptArguments
    split: str
    high_entropy_prompt: str
    reward_weights: list[float] | None
    run_info: str | None
    notes: list[str]


def read_run_info(checkpoint: str) -> dict[str, Any] | None:
    """The run description a training run saved next to its model, or None when ``checkpoint`` has none."""
    path = Path(checkpoint, RUN_INFO_FILE)
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CLIError(f"cannot read {path}: {error}") from None
    if not isinstance(info, dict) or not isinstance(info.get("script_args", {}), dict):
        raise CLIError(f"{path} is not a run description (a JSON object with 'script_args')")
    return info


def resolve_settings(args: argparse.Namespace) -> EvalSettings:
    """Dataset, split, rewards and instruction: flags first, then the run's saved settings, then the defaults."""
    notes: list[str] = []
    info = read_run_info(args.checkpoint)
    if info is not None:
        known = {f.name for f in fields(ScriptArguments)}
        saved = {key: value for key, value in info.get("script_args", {}).items() if key in known}
        script_args = ScriptArguments(**saved)
    else:
        script_args = ScriptArguments(dataset_name="arithmetic", reward_funcs=["arithmetic"])
    overrides = {
        "dataset_name": args.dataset_name,
        "prompt_column": args.prompt_column,
        "answer_column": args.answer_column,
        "reward_funcs": args.reward_funcs,
        "arithmetic_level": getattr(args, "arithmetic_level", None),
        "arithmetic_num_test": getattr(args, "arithmetic_num_test", None),
    }
    script_args = replace(script_args, **{key: value for key, value in overrides.items() if value is not None})
    split = args.split or script_args.dataset_test_split
    if not split:
        raise CLIError("the run has no held-out split (dataset_test_split); pass --split")
    instruction = args.high_entropy_prompt or (info or {}).get("high_entropy_prompt") or DEFAULT_HIGH_ENTROPY_PROMPT

    weights = args.reward_weights
    if weights is None and info is not None and args.reward_funcs is None:
        weights = info.get("reward_weights")
        if weights is None and len(script_args.reward_funcs) > 1:
            notes.append(
                f"the run's reward weights are not in {RUN_INFO_FILE}: correctness sums "
                f"{', '.join(script_args.reward_funcs)} with weight 1 (set --reward-weights)"
            )
    if weights is not None and len(weights) != len(script_args.reward_funcs):
        raise CLIError(
            f"{len(weights)} reward weights for {len(script_args.reward_funcs)} reward functions "
            f"({', '.join(script_args.reward_funcs)})"
        )
    return EvalSettings(
        checkpoint=args.checkpoint,
        script_args=script_args,
        split=split,
        high_entropy_prompt=instruction,
        reward_weights=[float(w) for w in weights] if weights is not None else None,
        run_info=str(Path(args.checkpoint, RUN_INFO_FILE)) if info is not None else None,
        notes=notes,
    )


def default_output(checkpoint: str, split: str) -> str:
    if os.path.isdir(checkpoint):
        return os.path.join(checkpoint, "eval", f"{split}.json")
    return "eval_results.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "checkpoint", metavar="CHECKPOINT", help=f"model directory, hub id, or built-in {', '.join(BUILTIN_MODELS)}"
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--num-samples", type=int, default=8, help="completions per question (n of pass@k)")
    parser.add_argument("--k", type=int, nargs="+", default=list(DEFAULT_KS), help="k of pass@k (k <= n)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--num-questions", type=int, default=None, help="first N questions of the split (all)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="sequences per generate call")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--output", default=None, help="JSON file (default: <checkpoint>/eval/<split>.json)")
    parser.add_argument("--seed", type=int, default=0)
    data = parser.add_argument_group("data and rewards (default: the run's, else the built-in arithmetic task)")
    data.add_argument("--dataset-name", default=None)
    data.add_argument("--split", default=None, help="default: the run's dataset_test_split, else 'test'")
    data.add_argument("--prompt-column", default=None)
    data.add_argument("--answer-column", default=None)
    data.add_argument("--reward-funcs", nargs="+", default=None, help="built-in names or package.module:function")
    data.add_argument("--reward-weights", type=float, nargs="+", default=None, help="default: the run's, else 1")
    data.add_argument("--high-entropy-prompt", default=None, help="default: the run's, else the package default")
    data.add_argument("--correct-threshold", type=float, default=0.5, help="correct: reward sum > threshold")
    data.add_argument("--arithmetic-level", type=int, default=None, help="built-in task's level (default: the run's)")
    data.add_argument(
        "--arithmetic-num-test", type=int, default=None, help="built-in task's held-out questions (the run's)"
    )
    model = parser.add_argument_group("model")
    model.add_argument("--dtype", default=None, help="torch dtype to load the model in (default: float32)")
    model.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    return parser


def _check_numbers(args: argparse.Namespace) -> None:
    for flag, value, low in (
        ("--num-samples", args.num_samples, 1),
        ("--max-new-tokens", args.max_new_tokens, 1),
        ("--batch-size", args.batch_size, 1),
        ("--num-questions", args.num_questions, 1),
    ):
        if value is not None and value < low:
            raise CLIError(f"{flag} must be at least {low}, got {value}")
    if any(k < 1 for k in args.k):
        raise CLIError(f"--k must be positive, got {args.k}")
    if not args.temperature > 0:
        raise CLIError(f"--temperature must be positive for sampling, got {args.temperature}")


def format_table(metrics: dict[str, dict[str, float]], averaging: dict[str, str] | None = None) -> str:
    """Rows metrics, columns modes; then, with ``averaging``, how each metric is averaged."""
    modes = list(metrics)
    names = list(dict.fromkeys(name for mode in modes for name in metrics[mode]))
    width = max(len(name) for name in names)
    columns = [max(len(mode), 8) for mode in modes]
    lines = [" ".join([" " * width, *(mode.rjust(w) for mode, w in zip(modes, columns, strict=True))])]
    for name in names:
        cells = []
        for mode, w in zip(modes, columns, strict=True):
            value = metrics[mode].get(name)
            cells.append(("-" if value is None or math.isnan(value) else f"{value:.3f}").rjust(w))
        lines.append(" ".join([name.ljust(width), *cells]))
    if averaging:
        lines.append("averaging:")
        lines += [f"  {name}: {averaging[name]}" for name in names if name in averaging]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate as the command line asks, write the JSON and return it."""
    from trl import ModelConfig

    _check_numbers(args)
    settings = resolve_settings(args)
    script_args = settings.script_args
    for note in settings.notes:
        print(f"evaluate: note: {note}", file=sys.stderr)
    reward_funcs = build_reward_funcs(script_args.reward_funcs)
    dataset = load_split(script_args, settings.split, needs_answer(script_args.reward_funcs))
    if len(dataset) == 0:
        raise CLIError(f"the split {settings.split!r} is empty")
    if args.num_questions is not None:
        dataset = dataset.select(range(min(args.num_questions, len(dataset))))
    ks = sorted({k for k in args.k if k <= args.num_samples})
    skipped = sorted({k for k in args.k if k > args.num_samples})
    if skipped:
        print(
            f"evaluate: note: pass@k needs k <= --num-samples ({args.num_samples}); skipped k={skipped}",
            file=sys.stderr,
        )

    try:
        model_path = resolve_model(args.checkpoint)
    except RuntimeError as error:  # the built-in model's weights are missing (raised as RuntimeError by smollm2.py)
        raise CLIError(f"cannot load {args.checkpoint}: {error}") from None
    model_args = ModelConfig(model_name_or_path=model_path)
    if args.dtype is not None:
        model_args.dtype = args.dtype
    model, tokenizer = load_model_and_tokenizer(model_args)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)

    results = evaluate_model(
        model,
        tokenizer,
        dataset,
        reward_funcs,
        modes=args.modes,
        num_samples=args.num_samples,
        ks=ks,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        high_entropy_prompt=settings.high_entropy_prompt,
        correct_threshold=args.correct_threshold,
        reward_weights=settings.reward_weights,
        reward_names=script_args.reward_funcs,
        show_progress=not args.no_progress,
    )
    output = args.output or default_output(args.checkpoint, settings.split)
    averaging = metric_averaging(list(dict.fromkeys(name for mode in results["metrics"].values() for name in mode)))
    report = {
        "settings": {
            "checkpoint": args.checkpoint,
            "model_path": model_path,
            "run_info": settings.run_info,
            "dataset_name": script_args.dataset_name,
            "split": settings.split,
            "num_questions": len(dataset),
            "num_samples": args.num_samples,
            "k": ks,
            "temperature": args.temperature,
            "max_new_tokens": args.max_new_tokens,
            "seed": args.seed,
            "modes": list(args.modes),
            "high_entropy_prompt": settings.high_entropy_prompt,
            "reward_funcs": list(script_args.reward_funcs),
            "reward_weights": settings.reward_weights,
            "correct_threshold": args.correct_threshold,
            "script_args": asdict(script_args),
        },
        "averaging": averaging,
        **results,
    }
    report = finite_or_none(report)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(report, indent=1) + "\n")
    print(format_table(results["metrics"], averaging))
    print(f"wrote {output}")
    return report


# ----------------------------------------------------------------------------------------------------------------
# Before / after


COMPARED_METRICS = ("pass@1", "pass@4", "entropy")
# Settings two reports must share for their numbers to be comparable.
_COMPARABLE_SETTINGS = ("dataset_name", "split", "num_questions", "num_samples", "temperature", "max_new_tokens")


def compare_reports(
    before: dict[str, Any],
    after: dict[str, Any],
    metrics: Sequence[str] = COMPARED_METRICS,
    labels: Sequence[str] = ("untrained", "trained"),
) -> str:
    """A before/after table of two evaluation reports (``run``'s JSON): a row per mode and metric, with the change.

    A metric or mode one report lacks shows "-"; settings that differ (other questions, samples, temperature) are
    listed under the table, since the numbers then measure different things.
    """
    modes = list(dict.fromkeys([*after.get("metrics", {}), *before.get("metrics", {})]))
    if not modes:
        raise ValueError("neither report has metrics")
    header = ["mode", "metric", labels[0], labels[1], "change"]
    rows = []
    for mode in modes:
        for metric in metrics:
            old = _metric(before, mode, metric)
            new = _metric(after, mode, metric)
            change = f"{new - old:+.3f}" if old is not None and new is not None else "-"
            rows.append([mode, metric, _cell(old), _cell(new), change])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [cell.ljust(width) if i < 2 else cell.rjust(width) for i, (cell, width) in pairs]
        lines.append("  ".join(cells).rstrip())
    old_settings, new_settings = before.get("settings", {}), after.get("settings", {})
    for key in _COMPARABLE_SETTINGS:
        old, new = old_settings.get(key), new_settings.get(key)
        if key in old_settings and key in new_settings and old != new:
            lines.append(f"note: {key} differs: {old} ({labels[0]}) vs {new} ({labels[1]})")
    return "\n".join(lines)


def _metric(report: dict[str, Any], mode: str, metric: str) -> float | None:
    value = report.get("metrics", {}).get(mode, {}).get(metric)
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def compare_main(argv: Sequence[str]) -> int:
    """``evaluate.py compare BEFORE.json AFTER.json``: print the before/after table of two reports."""
    parser = argparse.ArgumentParser(
        prog="evaluate compare", description="Before/after table of two evaluation reports (JSON written by evaluate)."
    )
    parser.add_argument("before", metavar="BEFORE.json")
    parser.add_argument("after", metavar="AFTER.json")
    parser.add_argument("--metrics", nargs="+", default=list(COMPARED_METRICS), help="metrics to show, per mode")
    parser.add_argument("--labels", nargs=2, default=["untrained", "trained"], metavar=("BEFORE", "AFTER"))
    args = parser.parse_args(argv)
    reports = []
    for path in (args.before, args.after):
        try:
            report = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            print(f"evaluate: error: cannot read the report {path}: {str(error).splitlines()[0]}", file=sys.stderr)
            return 2
        if not isinstance(report, dict) or not isinstance(report.get("metrics"), dict):
            print(f"evaluate: error: {path} is not an evaluation report (no 'metrics')", file=sys.stderr)
            return 2
        reports.append(report)
    print(compare_reports(*reports, metrics=args.metrics, labels=args.labels))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        return compare_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except CLIError as error:
        print(f"evaluate: error: {str(error).replace(chr(10), ' ')}", file=sys.stderr)
        return 2
    return 0
