"""The one place where advantages are shaped: AsymGRPO's rule (ALGORITHMS.md §2) and DiPO's perplexity-based
reward reallocation (§3), for every trainer of the package.

TRL computes rewards and GRPO advantages; this class post-processes them from the rewards of all processes
(which TRL gathers anyway), so a question's group may span processes and every process takes the same
decisions. Policy Split calls `_shape_advantages` itself from `_after_generation`, after its scoring forward, so that
DiPO reuses those log-probs.

The math is in `functional.py`'s steps; this class only moves tensors between TRL's hooks and them.
"""

from __future__ import annotations

import copy
import math
import os
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from accelerate.utils import is_peft_model
from transformers.utils import logging
from trl import GRPOConfig, GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing

from ._trl import card_identity as trl_card_identity
from ._trl import check_instance, metrics, model_source, replace_logged_advantages
from .diagnostics import dipo_warnings
from .distributed import local_rows
from .functional import (
    advantage_metrics,
    asym_advantages,
    clip_cov_step,
    dipo_step,
    entropy_advantage_step,
    kl_cov_step,
    outside_reward_range,
    perplexity_threshold,
    sequence_perplexity,
    weighted_total_reward,
)
from .model_card import (
    add_card_sections,
    card_identity,
    fill_card_placeholders,
    local_base_model,
    methods_section,
    used_methods,
)
from .sampling import SampledTokenLogps
from .saving import retie_shared_weights
from .shaping_config import AdvantageShapingConfig
from .vllm_cpu import vllm_setup

logger = logging.get_logger(__name__)

PERPLEXITY_QUEUE_FILE = "perplexity_queue.pt"


class PerplexityQueue:
    """``(perplexity, correct)`` pairs of the last ``max_batches`` generation batches, the same on every process."""

    def __init__(self, max_batches: int) -> None:
        self.batches: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=max_batches)

    def push(self, ppl: torch.Tensor, correct: torch.Tensor) -> None:
        self.batches.append((ppl.detach().float().cpu(), correct.detach().bool().cpu()))

    def threshold(self) -> tuple[float | None, bool]:
        if not self.batches:
            return None, False
        ppl, correct = (torch.cat(part) for part in zip(*self.batches, strict=True))
        return perplexity_threshold(ppl, correct)

    def __len__(self) -> int:
        return sum(ppl.numel() for ppl, _ in self.batches)

    def state_dict(self) -> dict[str, Any]:
        return {"ppl": [ppl for ppl, _ in self.batches], "correct": [correct for _, correct in self.batches]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches.clear()
        for ppl, correct in zip(state["ppl"], state["correct"], strict=True):
            self.push(ppl, correct)


@dataclass
class GenerationRecord:
    """What TRL's hooks inside one `_generate_and_score_completions` call hand to the shaping after it: TRL passes
    nothing along but its own arguments, so `_calculate_rewards` writes here (see `AdvantageShapingTrainer._within`).
    """

    rewards_per_func: torch.Tensor | None = None  # every process's rows, as TRL gathered them


@dataclass
class LossRecord:
    """One micro-batch's `_compute_loss` call. TRL reads ``inputs["advantages"]`` after its policy forward, which the
    loss shaping intercepts (`_get_per_token_logps_and_entropies`): it edits this copy of the micro-batch (a batch
    reused by ``num_iterations > 1`` is never shaped twice) and leaves here what the loss call needs afterwards."""

    inputs: dict[str, Any]
    logps: torch.Tensor | None = None  # of the policy forward (detached), for Policy Split's KL when not scored
    entropies: torch.Tensor | None = None  # of the policy forward, for per-mode logging
    penalty: torch.Tensor | None = None  # KL-Cov's term, added to TRL's loss
    forwarded: bool = False  # only the loss's own policy forward is shaped


class ShapedAdvantages(NamedTuple):
    """`_shape_advantages`' result: the batch with this process's rows, and the group-level tensors it computed over
    every process's rows (Policy Split's own group step reads them instead of gathering them again)."""

    batch: dict[str, Any]
    advantages: torch.Tensor  # every process's base advantages, shaped
    rewards: torch.Tensor  # every process's weighted total rewards


class AdvantageShapingTrainer(GRPOTrainer):
    """`GRPOTrainer` whose advantages follow the config's shaping flags (asymmetric rule, DiPO reallocation).

    With both flags off it trains exactly like `GRPOTrainer`. Subclasses set `_config_class`. TRL's hooks call each
    other with fixed arguments, so the record of the call in progress (`GenerationRecord`, `LossRecord`) is the one
    thing kept on the instance between them, and only for the length of that call.
    """

    _config_class: type[AdvantageShapingConfig] = AdvantageShapingConfig
    # DiPO warns once per reason when it cannot act: non-binary rewards, or no valid split for this many batches.
    dipo_warn_after_batches = 8

    def __init__(self, model: Any, reward_funcs: Any = None, args: AdvantageShapingConfig | None = None, *a, **kw):
        requested = self._as_config(model, args)
        run_args = self._trainer_args(requested)
        with vllm_setup(run_args, model):
            super().__init__(model, reward_funcs, run_args, *a, **kw)
        check_instance(self)
        self.requested_args = requested  # the user's arguments; `self.args` are the ones the run uses
        self._call: GenerationRecord | LossRecord | None = None
        self.perplexity_queue = PerplexityQueue(requested.ppl_queue_batches)
        self.clip_cov_draws = 0  # Clip-Cov's random token choices so far: seeds the next one reproducibly
        self._dipo_batches_without_split = 0
        self._dipo_warned: set[str] = set()
        self._warned_unfollowed_generation = False

    @classmethod
    def _as_config(cls, model: Any, args: GRPOConfig | None) -> AdvantageShapingConfig:
        """The trainer's config class from ``args``: defaults when None, every field kept from a plain GRPOConfig."""
        if args is None:
            name = model_source(model).rstrip("/").split("/")[-1]
            return cls._config_class(output_dir=f"{name}-{cls._name}")
        if isinstance(args, cls._config_class):
            return args
        if not isinstance(args, GRPOConfig) or isinstance(args, AdvantageShapingConfig):
            raise ValueError(
                f"{cls.__name__} needs `args` to be a {cls._config_class.__name__} or a GRPOConfig, got "
                f"{type(args).__name__}; build it with {cls._config_class.__name__}(...) and the same arguments."
            )
        logger.info(
            "%s got a plain GRPOConfig: using it as a %s, every field kept and the method's own at defaults.",
            cls.__name__,
            cls._config_class.__name__,
        )
        return cls._config_class.from_grpo_config(args)

    def _trainer_args(self, args: AdvantageShapingConfig) -> AdvantageShapingConfig:
        """The arguments the run uses: a copy where they differ from the user's (whose object is never edited)."""
        if args.policy_loss == "kl_cov" and not args.kl_cov_keep_ppo_clip:
            # The reference KL-Cov loss is -A * ratio (no clip) plus its penalty: TRL's clip range fully open.
            args = copy.copy(args)
            args.epsilon = args.epsilon_high = math.inf
        return args

    @contextmanager
    def _within(self, record: GenerationRecord | LossRecord) -> Iterator[None]:
        """Make ``record`` the call in progress for the hooks TRL calls inside it."""
        outer, self._call = self._call, record
        try:
            yield
        finally:
            self._call = outer

    # ----------------------------------------------------------------------------------------------------------
    # Hooks into GRPOTrainer: generation

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        recorded = self._records_sampler_logps()
        record = GenerationRecord()
        with self._within(record):
            output = super()._generate_and_score_completions(inputs)
        sampled = output.get("sampling_per_token_logps")
        if recorded and sampled is not None and torch.isnan(sampled).any():
            # A turn went unrecorded: without vLLM, TRL itself has no sampling log-probs, so the batch goes on as in
            # plain TRL (the shaping's forward and TRL's off-policy mask use computed ones instead).
            del output["sampling_per_token_logps"]
        return self._after_generation(output, inputs, record.rewards_per_func)

    def _after_generation(
        self, output: dict[str, Any], inputs: list[dict[str, Any]], rewards_per_func: torch.Tensor
    ) -> dict[str, Any]:
        """TRL's scored batch -> the batch the loss trains on (Policy Split adds its cross pairs here)."""
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        return self._shape_advantages(output, rewards_per_func, mode, group_size).batch

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # TRL gathers every process's rewards here; the shaping needs them over whole groups.
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if isinstance(self._call, GenerationRecord):
            self._call.rewards_per_func = rewards_per_func
        return rewards_per_func

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        # vLLM returns the sampled tokens' log-probs itself; transformers' generate computes them without returning
        # them, so record them on the way (`sampling.SampledTokenLogps`) when a forward would otherwise redo them.
        if not self._records_sampler_logps():
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        unwrapped = self.accelerator.unwrap_model(self.model)
        generating = unwrapped.get_base_model() if is_peft_model(unwrapped) else unwrapped  # what generate calls
        with SampledTokenLogps(generating, self.temperature) as recorder:
            completion_ids, _ = super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        logprobs = recorder.per_row(completion_ids)
        if logprobs is None:
            if not self._warned_unfollowed_generation:
                self._warned_unfollowed_generation = True
                logger.warning(
                    "Could not record the sampled tokens' log-probs during generation (a generation mode with several "
                    "tokens per step?); computing them with a forward pass instead."
                )
            # NaN placeholders, not None: TRL's tool loop appends a later turn's log-probs to the first turn's, which
            # must both be lists. `_generate_and_score_completions` drops a batch holding any.
            logprobs = [[math.nan] * len(ids) for ids in completion_ids]
        return completion_ids, logprobs

    def _records_sampler_logps(self) -> bool:
        """Whether to record log-probs during transformers' generation (vLLM's come with its completions)."""
        if not self.args.sampler_logprobs or self.use_vllm or self.use_transformers_continuous_batching:
            return False
        # TRL computes old log-probs itself when a generation is reused or generation and updates are misaligned.
        generate_every = self.args.steps_per_generation * self.num_iterations
        trl_scores = self.args.gradient_accumulation_steps % generate_every != 0
        return self._needs_sampling_logps() and not trl_scores

    def _needs_sampling_logps(self) -> bool:
        """Whether the shaping reads the sampling policy's log-probs of the generated tokens (DiPO's perplexity)."""
        return self.args.perplexity_reallocation and self.model.training

    # ----------------------------------------------------------------------------------------------------------
    # Hooks into GRPOTrainer: the loss

    def _compute_loss(self, model, inputs):
        record = LossRecord(dict(inputs))
        with self._within(record):
            loss = super()._compute_loss(model, record.inputs)
        if record.penalty is not None:
            loss = loss + record.penalty
        self._after_loss(record)
        return loss

    def _after_loss(self, record: LossRecord) -> None:
        """What a subclass logs from a finished loss call (Policy Split: per-mode entropies)."""

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        logps, entropies, aux_loss = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        record = self._call
        if isinstance(record, LossRecord) and not record.forwarded:
            record.forwarded = True
            record.logps, record.entropies = logps.detach(), entropies
            logps = self._shape_loss(record, logps, entropies)
        return logps, entropies, aux_loss

    def _shape_loss(self, record: LossRecord, logps: torch.Tensor, entropies: torch.Tensor | None) -> torch.Tensor:
        """Entropy advantage, Clip-Cov or KL-Cov (ALGORITHMS.md §4) on one micro-batch; returns the log-probs the
        loss uses, and leaves shaped advantages and KL-Cov's penalty in ``record``."""
        args, inputs = self.args, record.inputs
        if args.policy_loss == "ppo" and args.entropy_advantage_alpha == 0:
            return logps
        mode = "train" if self.model.training else "eval"
        mask = loss_mask(inputs)
        sums: dict[str, torch.Tensor] = {}
        if args.entropy_advantage_alpha > 0:
            inputs["advantages"], step_sums = entropy_advantage_step(
                inputs["advantages"], entropies, mask, args.entropy_advantage_alpha, args.entropy_advantage_kappa
            )
            sums.update(step_sums)
        old_logps = inputs.get("old_per_token_logps")
        old_logps = logps.detach() if old_logps is None else old_logps
        if args.policy_loss == "clip_cov":
            generator = torch.Generator().manual_seed(args.seed * 1_000_003 + self.clip_cov_draws)
            self.clip_cov_draws += 1
            logps, step_sums = clip_cov_step(
                logps,
                old_logps,
                inputs["advantages"],
                mask,
                args.clip_cov_ratio,
                args.clip_cov_lb,
                args.clip_cov_ub,
                self.epsilon_low,
                self.epsilon_high,
                generator,
            )
            sums.update(step_sums)
        elif args.policy_loss == "kl_cov":
            penalty, step_sums = kl_cov_step(
                logps, old_logps, inputs["advantages"], mask, args.kl_cov_ratio, args.kl_cov_coef
            )
            accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1
            record.penalty = penalty / accumulation
            sums.update(step_sums)
        self._log_token_means(mode, sums)
        return logps

    # ----------------------------------------------------------------------------------------------------------
    # Checkpoints and saving

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.perplexity_reallocation and self.args.should_save:
            torch.save(self.perplexity_queue.state_dict(), os.path.join(output_dir, PERPLEXITY_QUEUE_FILE))

    def _save(self, output_dir: str | None = None, state_dict: dict[str, Any] | None = None) -> None:
        # Under DeepSpeed ZeRO-1/2 the state dict comes with every tensor cloned, so tied weights no longer share
        # storage and transformers would save them twice (an extra lm_head.weight): tie them again first.
        if state_dict is not None:
            state_dict = retie_shared_weights(state_dict, self.accelerator.unwrap_model(self.model))
        super()._save(output_dir, state_dict)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None or not self.args.perplexity_reallocation:
            return
        path = os.path.join(checkpoint, PERPLEXITY_QUEUE_FILE)
        if os.path.isfile(path):
            self.perplexity_queue.load_state_dict(torch.load(path, weights_only=True))

    # ----------------------------------------------------------------------------------------------------------
    # Advantage shaping (ALGORITHMS.md §2, §3)

    def _shape_advantages(
        self,
        output: dict[str, Any],
        rewards_per_func: torch.Tensor,
        mode: str,
        group_size: int,
        logps: torch.Tensor | None = None,
        base: torch.Tensor | None = None,
    ) -> ShapedAdvantages:
        """Replace TRL's advantages by the shaped ones, computed over every process's rows. ``logps``: the sampling
        policy's log-probs when at hand; ``base``: every process's base advantages when not TRL's."""
        args = self.args
        rows = output["advantages"].size(0)
        rewards = weighted_total_reward(rewards_per_func, self.reward_weights)
        correct = rewards > args.correct_reward_threshold  # NaN compares False
        replaced = base is not None
        advantages = self.accelerator.gather(output["advantages"]) if base is None else base
        metrics: dict[str, float] = {}
        if args.asymmetric_advantages:
            if args.reward_range is not None:
                self._check_reward_range(rewards, rewards_per_func)
            advantages = asym_advantages(rewards, group_size, args.beta_pos, args.beta_neg, args.reward_range)
            advantages, replaced = advantages.to(output["advantages"].dtype), True
        if args.perplexity_reallocation and mode == "train":
            logps = self._sampling_logps(output, mode) if logps is None else logps
            ppl = self.accelerator.gather(sequence_perplexity(logps, loss_mask(output)))
            scored = ~torch.isnan(rewards)
            self.perplexity_queue.push(ppl[scored], correct[scored])
            tau, valid = self.perplexity_queue.threshold()
            self._warn_if_dipo_cannot_act(valid, rewards_per_func)
            term, metrics = dipo_step(
                rewards,
                correct,
                ppl,
                group_size,
                tau,
                valid,
                args.ppl_alpha,
                args.asymmetric_advantages,
                args.beta_pos,
                args.beta_neg,
                scale=self.scale_rewards != "none",
            )
            metrics["dipo/queue_size"] = float(len(self.perplexity_queue))
            advantages, replaced = advantages + term, True
        metrics.update(advantage_metrics(advantages, rewards, correct, group_size))
        self._log_metrics(mode, metrics)
        if replaced:
            output["advantages"] = local_rows(advantages, rows)
            replace_logged_advantages(self, advantages)
        return ShapedAdvantages(output, advantages, rewards)

    def _known_sampling_logps(self, output: dict[str, Any]) -> torch.Tensor | None:
        """The sampling policy's log-probs of the generated tokens if no forward is needed: TRL's old log-probs,
        or the sampler's when they are the model's own (recorded during generate, or vLLM's without truncation)."""
        if output.get("old_per_token_logps") is not None:
            return output["old_per_token_logps"]
        sampled = output.get("sampling_per_token_logps")
        if sampled is None or not self._sampler_logps_are_model_logps():
            return None
        if torch.isnan(sampled.masked_fill(loss_mask(output) == 0, 0.0)).any():  # a token vLLM could not score
            return None
        return sampled

    def _sampler_logps_are_model_logps(self) -> bool:
        """vLLM reports the processed distribution's log-probs: the model's own only when nothing truncates or
        reweighs it (top-p, top-k, min-p, repetition penalty); the temperature is the training one on both sides."""
        if not self.args.sampler_logprobs:
            return False
        if not self.use_vllm:
            return True  # recorded from the model's raw logits (`SampledTokenLogps`)
        truncated = self.top_p < 1.0 or (self.top_k or 0) > 0 or (self.min_p or 0.0) > 0.0
        return not truncated and self.repetition_penalty == 1.0

    def _warn_if_dipo_cannot_act(self, valid: bool, rewards_per_func: torch.Tensor) -> None:
        """Warn once per reason (main process) when DiPO cannot act, instead of silently training like GRPO."""
        self._dipo_batches_without_split = 0 if valid else self._dipo_batches_without_split + 1
        messages = dipo_warnings(
            rewards_per_func,
            self.reward_weights,
            self.reward_func_names,
            self.args.correct_reward_threshold,
            self._dipo_batches_without_split,
            self.dipo_warn_after_batches,
        )
        for reason, message in messages.items():
            if reason not in self._dipo_warned:
                self._dipo_warned.add(reason)
                if self.accelerator.is_main_process:
                    logger.warning(message)

    def _sampling_logps(self, output: dict[str, Any], mode: str) -> torch.Tensor:
        """Log-probs of the generated tokens under the sampling policy: known ones (`_known_sampling_logps`), else
        one no-grad forward (every process runs it, as ZeRO-3 requires)."""
        known = self._known_sampling_logps(output)
        if known is not None:
            return known
        batch_size = self.args.per_device_train_batch_size if mode == "train" else self.args.per_device_eval_batch_size
        input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            logps, _, _ = self._get_per_token_logps_and_entropies(
                self.model, input_ids, attention_mask, output["completion_ids"].size(1), batch_size=batch_size
            )
        return logps

    def _check_reward_range(self, rewards: torch.Tensor, rewards_per_func: torch.Tensor) -> None:
        """A total reward outside ``reward_range`` is a config error: say which functions gave it."""
        outside = outside_reward_range(rewards, self.args.reward_range)
        if not outside.any():
            return
        row = int(torch.nonzero(outside)[0].item())
        parts = ", ".join(
            f"{name}={value:g} (weight {weight:g})"
            for name, value, weight in zip(
                self.reward_func_names, rewards_per_func[row].tolist(), self.reward_weights.tolist(), strict=True
            )
        )
        raise ValueError(
            f"At step {self.state.global_step}, a completion's total reward {rewards[row].item():g} is outside "
            f"reward_range={list(self.args.reward_range)} (reward functions: {parts}). The asymmetric rule maps "
            "reward_range to [0, 1]: set reward_range to the [min, max] your weighted rewards can take."
        )

    # ----------------------------------------------------------------------------------------------------------
    # Logging

    def _log_metrics(self, mode: str, values: dict[str, float]) -> None:
        store = metrics(self, mode)
        for name, value in values.items():
            store[name].append(value)

    def _log_token_means(self, mode: str, sums: dict[str, torch.Tensor]) -> None:
        """Log each ``[sum, count]`` of a step's `TokenSums` as its mean over every process's valid tokens (one
        all-reduce for all of them); NaN where no process has a token."""
        if not sums:
            return
        totals = self.accelerator.reduce(torch.stack(list(sums.values())), reduction="sum").tolist()
        self._log_metrics(
            mode, {name: t / c if c > 0 else math.nan for name, (t, c) in zip(sums, totals, strict=True)}
        )

    # ----------------------------------------------------------------------------------------------------------
    # Model card

    def _card_methods(self) -> list[tuple[str, list[str]]]:
        return used_methods(self.args)

    def _card_sections(self) -> list[str]:
        """Extra Markdown sections of the model card (Policy Split adds how to sample its high-entropy mode)."""
        return []

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """TRL's model card, naming and citing the methods the run used (GRPO's citation stays: they build on it),
        with a "Training methods" section (paper and settings of each) and the trainer's `_card_sections`; what TRL
        leaves as "None" (model name, a local base model) is filled in."""
        model_name = model_name or os.path.basename(os.path.normpath(self.args.output_dir))
        methods = self._card_methods()
        card = card_identity(methods, self._tag_names) if methods else {}  # none: GRPO itself, TRL's identity
        with trl_card_identity(self, card):  # TRL reads these class attributes
            super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        path = os.path.join(self.args.output_dir, "README.md")
        source = model_source(self.model)
        local = source if source and os.path.isdir(source) else None
        with open(path, encoding="utf-8", newline="") as file:
            text = file.read()
        base_model = local_base_model(local) if local else None
        text = fill_card_placeholders(text, model_name, base_model, local, self.hub_model_id or self.args.output_dir)
        with open(path, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        if methods:
            sections = [methods_section(type(self).__name__, self.args, methods), *self._card_sections()]
            add_card_sections(self.args.output_dir, sections)


def loss_mask(batch: dict[str, Any]) -> torch.Tensor:
    """Tokens the loss trains on: completion tokens, minus tool outputs (TRL's convention)."""
    mask = batch["completion_mask"]
    return mask if "tool_mask" not in batch else mask * batch["tool_mask"]
