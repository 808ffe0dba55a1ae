"""The one place where advantages are shaped: AsymGRPO's rule (ALGORITHMS.md §2) and DiPO's perplexity-based
reward reallocation (§3), for every trainer of the package.

TRL computes rewards and GRPO advantages; this class post-processes them from the rewards of all processes
(which TRL gathers anyway), so a question's group may span processes and every process takes the same
decisions. Policy Split calls [`AdvantageShapingTrainer._shape_advantages`] itself, after its scoring forward,
so that DiPO reuses those log-probs.
"""

from __future__ import annotations

import math
import os
from collections import deque
from typing import Any

import torch
from accelerate.utils import is_peft_model
from transformers.utils import logging
from trl import GRPOConfig, GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing

from ._trl import check_instance
from .diagnostics import dipo_warnings
from .distributed import local_rows
from .functional import (
    asym_advantages,
    clip_cov_mask,
    entropy_advantage_bonus,
    group_normalized_advantages,
    kl_cov_mask,
    perplexity_threshold,
    reallocated_rewards,
    sequence_perplexity,
    token_covariance,
    uniform_reward_groups,
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
_RANGE_TOLERANCE = 1e-6


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


class AdvantageShapingTrainer(GRPOTrainer):
    """`GRPOTrainer` whose advantages follow the config's shaping flags (asymmetric rule, DiPO reallocation).

    With both flags off it trains exactly like `GRPOTrainer`. Subclasses set `_config_class`.
    """

    _config_class: type[AdvantageShapingConfig] = AdvantageShapingConfig
    # The micro-batch whose loss is being computed, while its policy forward has not run yet (see `_compute_loss`).
    _loss_inputs: dict[str, Any] | None = None
    _kl_cov_penalty: torch.Tensor | None = None
    # Policy Split shapes after its own scoring forward (to reuse its log-probs), not right after generation.
    _shape_after_generation = True
    # DiPO warns once per reason when it cannot act: non-binary rewards, or no valid split for this many batches.
    dipo_warn_after_batches = 8
    _dipo_batches_without_split = 0
    _dipo_warned: frozenset[str] = frozenset()

    def __init__(self, model: Any, reward_funcs: Any = None, args: AdvantageShapingConfig | None = None, *a, **kw):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = self._config_class(output_dir=f"{str(name).rstrip('/').split('/')[-1]}-{self._name}")
        if not isinstance(args, self._config_class):
            if not isinstance(args, GRPOConfig) or isinstance(args, AdvantageShapingConfig):
                raise ValueError(
                    f"{type(self).__name__} needs `args` to be a {self._config_class.__name__} or a GRPOConfig, got "
                    f"{type(args).__name__}; build it with {self._config_class.__name__}(...) and the same arguments."
                )
            args = self._config_class.from_grpo_config(args)
            logger.info(
                "%s got a plain GRPOConfig: using it as a %s, every field kept and the method's own at defaults.",
                type(self).__name__,
                self._config_class.__name__,
            )
        args = self._trainer_args(args)
        with vllm_setup(args, model):
            super().__init__(model, reward_funcs, args, *a, **kw)
        check_instance(self)
        if args.policy_loss == "kl_cov" and not args.kl_cov_keep_ppo_clip:
            # The reference KL-Cov loss is -A * ratio (no clip) plus its penalty: open TRL's clip range fully.
            self.epsilon_low = self.epsilon_high = math.inf
        self._rewards_per_func: torch.Tensor | None = None
        self.perplexity_queue = PerplexityQueue(args.ppl_queue_batches)
        self._covariance_draws = 0  # seeds Clip-Cov's random token choice reproducibly
        self._warned_unfollowed_generation = False

    def _trainer_args(self, args: AdvantageShapingConfig) -> AdvantageShapingConfig:
        """The arguments the trainer runs with; a subclass may return an adjusted copy (never edits the user's)."""
        return args

    # ----------------------------------------------------------------------------------------------------------
    # Hooks into GRPOTrainer

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # TRL gathers every process's rewards here; keep them to reshape advantages over whole groups.
        self._rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._rewards_per_func

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

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        recorded = self._records_sampler_logps()
        output = super()._generate_and_score_completions(inputs)
        sampled = output.get("sampling_per_token_logps")
        if recorded and sampled is not None and torch.isnan(sampled).any():
            # A turn went unrecorded: without vLLM, TRL itself has no sampling log-probs, so the batch goes on as in
            # plain TRL (the shaping's forward and TRL's off-policy mask use computed ones instead).
            del output["sampling_per_token_logps"]
        if self._shape_after_generation:
            mode = "train" if self.model.training else "eval"
            group_size = self.num_generations if mode == "train" else self.num_generations_eval
            output = self._shape_advantages(output, mode, group_size)
        return output

    def _compute_loss(self, model, inputs):
        args = self.args
        if args.policy_loss == "ppo" and args.entropy_advantage_alpha == 0:
            return super()._compute_loss(model, inputs)
        # TRL's loss reads the advantages after its policy forward, which `_get_per_token_logps_and_entropies`
        # intercepts: the loss-shaping rules (ALGORITHMS.md §4) act there, on a copy of the micro-batch, so a batch
        # reused by num_iterations > 1 is never shaped twice.
        self._loss_inputs = dict(inputs)
        try:
            loss = super()._compute_loss(model, self._loss_inputs)
        finally:
            self._loss_inputs = None
        if self._kl_cov_penalty is not None:
            loss = loss + self._kl_cov_penalty
            self._kl_cov_penalty = None
        return loss

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        logps, entropies, aux_loss = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        inputs, self._loss_inputs = self._loss_inputs, None  # only the loss's own policy forward
        if inputs is not None:
            logps = self._shape_loss(inputs, logps, entropies)
        return logps, entropies, aux_loss

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
    # Shaping

    def _total_rewards(self) -> torch.Tensor:
        """Weighted reward of every generated completion of all processes; NaN where nothing scored it."""
        return weighted_total_reward(self._rewards_per_func, self.reward_weights)

    def _shape_advantages(
        self, output: dict[str, Any], mode: str, group_size: int, logps: torch.Tensor | None = None
    ) -> dict[str, Any]:
        """Replace TRL's 1-D advantages by the shaped ones; ``logps`` are the sampling policy's, when at hand."""
        args = self.args
        rows = output["advantages"].size(0)
        rewards = self._total_rewards()
        if args.asymmetric_advantages:
            if args.reward_range is not None:
                self._check_reward_range(rewards)
            advantages = asym_advantages(rewards, group_size, args.beta_pos, args.beta_neg, args.reward_range)
            advantages = advantages.to(output["advantages"].dtype)
        else:
            advantages = self.accelerator.gather(output["advantages"])
        correct = rewards > args.correct_reward_threshold  # NaN compares False
        if args.perplexity_reallocation and mode == "train":
            if logps is None:
                logps = self._sampling_logps(output, mode)
            ppl = self.accelerator.gather(sequence_perplexity(logps, loss_mask(output)))
            advantages = advantages + self._reallocation_advantages(rewards, correct, ppl, group_size, mode)
        self._log_shaping_metrics(mode, advantages, rewards, correct, group_size)
        if args.asymmetric_advantages or (args.perplexity_reallocation and mode == "train"):
            output["advantages"] = local_rows(advantages, rows)
            self._replace_logged_advantages(advantages)
        return output

    def _reallocation_advantages(
        self, rewards: torch.Tensor, correct: torch.Tensor, ppl: torch.Tensor, group_size: int, mode: str
    ) -> torch.Tensor:
        """``ppl_alpha`` times the advantage rule on DiPO's reallocated rewards, 0 outside active groups."""
        args = self.args
        scored = ~torch.isnan(rewards)
        self.perplexity_queue.push(ppl[scored], correct[scored])
        tau, valid = self.perplexity_queue.threshold()
        self._warn_if_dipo_cannot_act(valid)
        reallocated, active = reallocated_rewards(correct, ppl, group_size, tau if valid else None)
        # Only groups with no signal of their own: every completion scored and all rewards equal.
        fully_scored = scored.reshape(-1, group_size).all(dim=1).repeat_interleave(group_size)
        active = active & uniform_reward_groups(rewards, group_size) & fully_scored
        if args.asymmetric_advantages:
            rule = asym_advantages(reallocated, group_size, args.beta_pos, args.beta_neg)
        else:
            rule = group_normalized_advantages(reallocated, group_size, scale=self.scale_rewards != "none")
        group_active = active.reshape(-1, group_size)[:, 0]
        group_correct = correct.reshape(-1, group_size)[:, 0]
        metrics = self._metrics[mode]
        metrics["dipo/threshold"].append(tau if tau is not None else math.nan)
        metrics["dipo/valid_split"].append(float(valid))
        metrics["dipo/frac_groups_up"].append((group_active & ~group_correct).float().mean().item())
        metrics["dipo/frac_groups_down"].append((group_active & group_correct).float().mean().item())
        metrics["dipo/queue_size"].append(float(len(self.perplexity_queue)))
        return (args.ppl_alpha * rule * active).to(rewards.dtype)

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

    def _warn_if_dipo_cannot_act(self, valid: bool) -> None:
        """Warn once per reason (main process) when DiPO cannot act, instead of silently training like GRPO."""
        self._dipo_batches_without_split = 0 if valid else self._dipo_batches_without_split + 1
        messages = dipo_warnings(
            self._rewards_per_func,
            self.reward_weights,
            self.reward_func_names,
            self.args.correct_reward_threshold,
            self._dipo_batches_without_split,
            self.dipo_warn_after_batches,
        )
        for reason, message in messages.items():
            if reason not in self._dipo_warned:
                self._dipo_warned = self._dipo_warned | {reason}
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

    def _check_reward_range(self, rewards: torch.Tensor) -> None:
        low, high = self.args.reward_range
        outside = ~torch.isnan(rewards) & ((rewards < low - _RANGE_TOLERANCE) | (rewards > high + _RANGE_TOLERANCE))
        if not outside.any():
            return
        row = int(torch.nonzero(outside)[0].item())
        weights = self.reward_weights.tolist()
        parts = ", ".join(
            f"{name}={value:g} (weight {weight:g})"
            for name, value, weight in zip(
                self.reward_func_names, self._rewards_per_func[row].tolist(), weights, strict=True
            )
        )
        raise ValueError(
            f"At step {self.state.global_step}, a completion's total reward {rewards[row].item():g} is outside "
            f"reward_range={[low, high]} (reward functions: {parts}). The asymmetric rule maps reward_range to "
            "[0, 1]: "
            "set reward_range to the [min, max] your weighted rewards can take."
        )

    def _log_shaping_metrics(
        self, mode: str, advantages: torch.Tensor, rewards: torch.Tensor, correct: torch.Tensor, group_size: int
    ) -> None:
        """Means of the positive and negative advantages, and the share of groups solved by none or all."""
        metrics = self._metrics[mode]
        positive, negative = advantages[advantages > 0], advantages[advantages < 0]
        metrics["advantage/pos_mean"].append(positive.mean().item() if positive.numel() else math.nan)
        metrics["advantage/neg_mean"].append(negative.mean().item() if negative.numel() else math.nan)
        scored = ~torch.isnan(rewards).reshape(-1, group_size)
        hits = correct.reshape(-1, group_size)
        has_scored = scored.any(dim=1)
        metrics["advantage/frac_groups_solved_none"].append((has_scored & ~hits.any(dim=1)).float().mean().item())
        metrics["advantage/frac_groups_solved_all"].append(
            (has_scored & (hits | ~scored).all(dim=1)).float().mean().item()
        )

    def _shape_loss(self, inputs: dict[str, Any], logps: torch.Tensor, entropies: torch.Tensor) -> torch.Tensor:
        """Entropy advantage, Clip-Cov or KL-Cov on one micro-batch; returns the log-probs the loss will use."""
        args = self.args
        mode = "train" if self.model.training else "eval"
        mask = loss_mask(inputs)
        if args.entropy_advantage_alpha > 0:
            bonus = entropy_advantage_bonus(
                entropies, inputs["advantages"], args.entropy_advantage_alpha, args.entropy_advantage_kappa
            )
            advantages = inputs["advantages"]
            advantages = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
            inputs["advantages"] = advantages + bonus.to(advantages.dtype)
            self._metrics[mode]["entropy_advantage/mean_bonus"].append(self._global_token_mean(bonus, mask))
        if args.policy_loss == "ppo":
            return logps
        advantages = inputs["advantages"]
        old_logps = inputs.get("old_per_token_logps")
        old_logps = logps.detach() if old_logps is None else old_logps
        if args.policy_loss == "clip_cov":
            # Tokens PPO already clips get no gradient anyway; the reference implementation draws among the others.
            ratio = torch.exp(logps.detach() - old_logps)
            token_adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
            clipped = (ratio > 1 + self.epsilon_high) & (token_adv > 0)
            clipped |= (ratio < 1 - self.epsilon_low) & (token_adv < 0)
            generator = torch.Generator().manual_seed(args.seed * 1_000_003 + self._covariance_draws)
            self._covariance_draws += 1
            selected = clip_cov_mask(
                logps, advantages, mask, args.clip_cov_ratio, args.clip_cov_lb, args.clip_cov_ub, ~clipped, generator
            )
            logps = torch.where(selected, logps.detach(), logps)
        else:
            selected = kl_cov_mask(logps, advantages, mask, args.kl_cov_ratio)
            penalty = args.kl_cov_coef * (logps - old_logps).abs() * selected
            # Averaged over the micro-batch's tokens, as the reference implementation's token-mean loss.
            accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1
            self._kl_cov_penalty = (penalty * mask).sum() / mask.sum().clamp(min=1) / accumulation
        metrics = self._metrics[mode]
        if args.policy_loss == "kl_cov":
            # 0 on a rollout's first update (logp == old_logp): the penalty acts only from the second update on.
            metrics["kl_cov/penalty"].append(self._global_token_mean(penalty, mask))
        metrics[f"{args.policy_loss}/frac_tokens"].append(self._global_token_mean(selected.float(), mask))
        covariance = token_covariance(logps, advantages, mask)
        metrics[f"{args.policy_loss}/mean_covariance"].append(self._global_token_mean(covariance, mask))
        return logps

    def _global_token_mean(self, values: torch.Tensor, mask: torch.Tensor) -> float:
        """Mean over the valid tokens of every process (sums and counts)."""
        valid = mask.bool()
        stats = torch.stack([values.detach().float().masked_fill(~valid, 0.0).sum(), valid.sum().float()])
        total, count = self.accelerator.reduce(stats, reduction="sum").tolist()
        return total / count if count > 0 else math.nan

    def _replace_logged_advantages(self, advantages: torch.Tensor) -> None:
        """TRL keeps the advantages it computed for its completions table; show the shaped ones instead."""
        logged = self._logs["advantages"]
        for _ in range(min(advantages.numel(), len(logged))):
            logged.pop()
        logged.extend(advantages.tolist())

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
        # TRL reads these class attributes; shadow them on the instance for this one call.
        shadowed = {name: self.__dict__[name] for name in card if name in self.__dict__}
        self.__dict__.update(card)
        try:
            super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        finally:
            for name in card:
                del self.__dict__[name]
            self.__dict__.update(shadowed)
        if not self.is_world_process_zero():
            return
        path = os.path.join(self.args.output_dir, "README.md")
        source = self.model.config._name_or_path
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
