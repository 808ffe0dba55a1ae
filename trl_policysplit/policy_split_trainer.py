"""Policy Split (arXiv 2604.11510) as a thin GRPOTrainer subclass.

TRL generates, scores and computes the base advantage over each question's ``2n`` completions; this class
tags half of each group as high-entropy (their prompt gets the instruction), then post-processes TRL's
batch: it adds the cross pairs (every completion behind the other mode's prompt, same token ids), scores
all rows once without gradient, and turns the advantages into per-token advantages with the clamped
internal reward. TRL's own loss (every ``loss_type``) then trains on the result.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from transformers.utils import logging
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import pad, use_adapter

from .distributed import GatheredRows, dual_mode_internal_rewards_across_processes, gather_padded, local_rows
from .functional import (
    adapted_coefficient,
    clamp_by_advantage,
    cross_importance_weights,
    distinct_correct_per_group,
    inter_mode_kl_penalty,
    mean_of_sequence_means,
    uniform_reward_groups,
)
from .model_card import high_entropy_section, used_methods
from .modes import HIGH_ENTROPY, MODES, NORMAL, template_default_system_prompt, to_high_entropy
from .policy_split_config import PolicySplitConfig
from .shaping_trainer import AdvantageShapingTrainer
from .shaping_trainer import loss_mask as _loss_mask

# Where the question's own (normal-mode) prompt travels with a row; reward functions never see this key.
_NORMAL_PROMPT_KEY = "_policy_split_normal_prompt"
# Tensor keys this trainer adds to TRL's batch: the context a row is trained under, and cross pairs.
CONTEXT_KEY = "policy_split_context"
IS_CROSS_KEY = "policy_split_is_cross"
BASE_ADVANTAGE_KEY = "policy_split_base_advantages"
ETA_HIGH_FILE = "policy_split_eta_high.json"  # the adapted eta_high, saved with each checkpoint
logger = logging.get_logger(__name__)
_UNSUPPORTED_BATCH_KEYS = ("pixel_values", "image_grid_thw", "num_images", "token_type_ids", "mm_token_type_ids")


class PolicySplitTrainer(AdvantageShapingTrainer):
    """Drop-in replacement for `GRPOTrainer` that trains a normal and a high-entropy mode of one model.

    Takes the same arguments as `GRPOTrainer`, with a [`PolicySplitConfig`] as `args`. Reward functions
    receive the question's normal prompt and a `mode` column (`"normal"` or `"high_entropy"`).
    """

    _tag_names = ["trl", "grpo", "policy-split"]
    _name = "PolicySplit"
    _config_class = PolicySplitConfig
    _shape_after_generation = False  # shaped in `_split_modes`, where DiPO reuses the scoring forward's log-probs

    def __init__(self, model: Any, reward_funcs: Any = None, args: PolicySplitConfig | None = None, *a, **kw):
        bound = inspect.signature(GRPOTrainer.__init__).bind(self, model, reward_funcs, args, *a, **kw)
        for unsupported in ("rollout_func", "environment_factory"):
            if bound.arguments.get(unsupported) is not None:
                raise ValueError(
                    f"PolicySplitTrainer does not support `{unsupported}` yet: the cross pairs are rebuilt from the "
                    "dataset prompt, which a custom rollout or environment may change. Remove it."
                )
        super().__init__(model, reward_funcs, args, *a, **kw)
        self._per_mode_generations = self.args.num_generations // 2
        # The template's own default system text, kept in the high-entropy prompt (modes differ by the instruction).
        self.default_system_prompt = template_default_system_prompt(
            self.processing_class,
            chat_template=self.chat_template,
            tools=self.tools or None,
            **self.chat_template_kwargs,
        )
        self._loss_entropies: torch.Tensor | None = None
        # The coefficient of the HE rows' bonus; adapted per generation batch when eta_high_target_kl > 0.
        self.eta_high = self.args.eta_high

    def _trainer_args(self, args: PolicySplitConfig) -> PolicySplitConfig:
        """The arguments the run uses, a copy when they change (the user's object is never edited).

        ``completions_per_mode="num_generations"``: twice the completions per question (``num_generations`` per mode),
        the generation batch, the accumulation steps and the generation's slices, so the prompts per optimizer step
        and the updates per generation stay as set. With shared rollouts and ``keep_grpo_micro_batch``: loss
        micro-batches of ``per_device_train_batch_size`` rows, half the completions per micro-batch (each under both
        prompts), twice the accumulation steps and the generation's slices.
        """
        rows = args.per_device_train_batch_size
        self._scoring_batch_size = rows  # rows per no-grad scoring forward: GRPO's micro-batch, as set
        samples = 2 if args.completions_per_mode == "num_generations" else 1
        split_micro_batch = args.share_rollouts and args.keep_grpo_micro_batch
        if split_micro_batch and rows % 2:
            logger.warning(
                "PolicySplitTrainer trains every completion under both prompts; with an odd "
                "per_device_train_batch_size=%d it cannot keep GRPO's micro-batch size, so each micro-batch holds %d "
                "rows. Set an even per_device_train_batch_size to keep GRPO's activation memory.",
                rows,
                2 * rows,
            )
            split_micro_batch = False
        micro = 2 if split_micro_batch else 1
        if samples == micro == 1:
            return args
        adjusted = copy.copy(args)
        adjusted.per_device_train_batch_size = rows // micro
        adjusted.gradient_accumulation_steps = args.gradient_accumulation_steps * micro * samples
        adjusted.steps_per_generation = args.steps_per_generation * micro * samples
        adjusted.generation_batch_size = args.generation_batch_size * samples
        adjusted.num_generations = args.num_generations * samples
        if args.num_generations_eval is not None:
            adjusted.num_generations_eval = args.num_generations_eval * samples
        adjusted.per_device_eval_batch_size = args.per_device_eval_batch_size * samples
        if getattr(args, "hf_deepspeed_config", None) is not None:  # DeepSpeed read the batch sizes at config time
            from accelerate.utils import DeepSpeedPlugin
            from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

            adjusted.hf_deepspeed_config = HfTrainerDeepSpeedConfig(args.deepspeed)
            adjusted.hf_deepspeed_config.trainer_config_process(adjusted)
            before = args.hf_deepspeed_config.mismatches
            fixed = [m for m in adjusted.hf_deepspeed_config.mismatches if m not in before]
            if fixed:  # else transformers fails later, naming values the user never set
                raise ValueError(
                    "PolicySplitTrainer runs per_device_train_batch_size "
                    f"{rows} -> {adjusted.per_device_train_batch_size} and gradient_accumulation_steps "
                    f"{args.gradient_accumulation_steps} -> {adjusted.gradient_accumulation_steps} "
                    f"(keep_grpo_micro_batch={args.keep_grpo_micro_batch}, completions_per_mode="
                    f"{args.completions_per_mode!r}), but the DeepSpeed config fixes them:\n" + "\n".join(fixed) + "\n"
                    'Set train_micro_batch_size_per_gpu and gradient_accumulation_steps to "auto" in the DeepSpeed '
                    "config, or keep_grpo_micro_batch=False and completions_per_mode='half'."
                )
            adjusted.deepspeed_plugin = DeepSpeedPlugin(hf_ds_config=adjusted.hf_deepspeed_config)
        logger.info(
            "PolicySplitTrainer runs %d completions per question (%d per mode) in micro-batches of %d rows: "
            "per_device_train_batch_size %d -> %d, gradient_accumulation_steps %d -> %d, steps_per_generation "
            "%d -> %d (same prompts per optimizer step and updates per generation).",
            adjusted.num_generations,
            adjusted.num_generations // 2,
            adjusted.per_device_train_batch_size * (2 if args.share_rollouts else 1),
            rows,
            adjusted.per_device_train_batch_size,
            args.gradient_accumulation_steps,
            adjusted.gradient_accumulation_steps,
            args.steps_per_generation,
            adjusted.steps_per_generation,
        )
        return adjusted

    # ----------------------------------------------------------------------------------------------------------
    # Generation and scoring

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        first_row = self.accelerator.process_index * len(inputs)
        is_high = [(first_row + i) % group_size >= group_size // 2 for i in range(len(inputs))]
        tagged = [self._tag_row(row, high) for row, high in zip(inputs, is_high, strict=True)]

        self._per_mode_generations = group_size // 2
        advantage_group = group_size if self.args.share_rollouts else group_size // 2
        with self._advantage_group_size(mode, advantage_group):
            output = super()._generate_and_score_completions(tagged)
        is_high_tensor = torch.tensor(is_high, dtype=torch.bool, device=self.accelerator.device)
        return self._split_modes(output, tagged, is_high_tensor, group_size, mode)

    def _needs_sampling_logps(self) -> bool:
        # The surprisal of every generated row under its own prompt, in training and evaluation alike.
        return self.args.entropy_estimator == "surprisal"

    def _tag_row(self, row: dict[str, Any], high_entropy: bool) -> dict[str, Any]:
        if "mode" in row:
            raise ValueError(
                "The dataset has a 'mode' column, which PolicySplitTrainer passes to reward functions; rename it."
            )
        prompt = row["prompt"]
        tagged = {**row, "mode": HIGH_ENTROPY if high_entropy else NORMAL, _NORMAL_PROMPT_KEY: prompt}
        if high_entropy:
            tagged["prompt"] = self._to_high_entropy(prompt)
        return tagged

    def _to_high_entropy(self, prompt: Any) -> Any:
        return to_high_entropy(prompt, self.args.high_entropy_prompt, self.default_system_prompt)

    @contextmanager
    def _advantage_group_size(self, mode: str, size: int):
        """TRL groups rewards by `num_generations`; the per-mode ablation groups each mode's n rows instead."""
        attribute = "num_generations" if mode == "train" else "num_generations_eval"
        original = getattr(self, attribute)
        setattr(self, attribute, size)
        try:
            yield
        finally:
            setattr(self, attribute, original)

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        # A group holds n prompts of each mode, so vLLM server mode (which keeps every `num_generations`-th prompt
        # and samples that many completions from it) must deduplicate per mode. Tool turns ask for 1: keep it.
        if num_generations > 1:
            num_generations = self._per_mode_generations
        return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Rewards depend on the question and the completion, not on the context: score with the normal prompt.
        normal_prompts = [row[_NORMAL_PROMPT_KEY] for row in inputs]
        reward_inputs = [{k: v for k, v in row.items() if k != _NORMAL_PROMPT_KEY} for row in inputs]
        return super()._calculate_rewards(reward_inputs, normal_prompts, completions, completion_ids_list)

    def _score(self, input_ids, attention_mask, logits_to_keep, batch_size, model=None):
        """Log-probs and entropies of completion tokens, without gradient."""
        logps, entropies, _ = self._get_per_token_logps_and_entropies(
            model if model is not None else self.model,
            input_ids,
            attention_mask,
            logits_to_keep,
            batch_size=batch_size,
            compute_entropy=self.args.entropy_estimator == "entropy",
        )
        return logps, entropies

    def _reference_logps(self, input_ids, attention_mask, logits_to_keep, batch_size) -> torch.Tensor:
        """Reference log-probs the way TRL takes them: the ref model, or the PEFT model with adapters off."""
        if self.ref_model is not None:
            return self._score(input_ids, attention_mask, logits_to_keep, batch_size, model=self.ref_model)[0]
        unwrapped = self.accelerator.unwrap_model(self.model)
        with use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
            return self._score(input_ids, attention_mask, logits_to_keep, batch_size)[0]

    def _cross_prompts(self, tagged: list[dict[str, Any]], is_high: torch.Tensor):
        """Token ids of each row's other-mode prompt, tokenized exactly as TRL tokenizes prompts."""
        prompts = [
            row[_NORMAL_PROMPT_KEY] if high else self._to_high_entropy(row[_NORMAL_PROMPT_KEY])
            for row, high in zip(tagged, is_high.tolist(), strict=True)
        ]
        prompt_ids, _, _ = self._tokenize_prompts(prompts)
        ids = [torch.tensor(p) for p in prompt_ids]
        device = self.accelerator.device
        padded = pad(ids, self._tokenizer.pad_token_id, "left", self.pad_to_multiple_of).to(device)
        mask = pad([torch.ones_like(p) for p in ids], 0, "left", self.pad_to_multiple_of).to(device)
        return padded, mask

    def _split_modes(
        self, output: dict[str, Any], tagged: list[dict[str, Any]], is_high: torch.Tensor, group_size: int, mode: str
    ) -> dict[str, Any]:
        """Add cross pairs, score every row once and replace the advantages by per-token dual-mode ones."""
        unsupported = [key for key in _UNSUPPORTED_BATCH_KEYS if key in output]
        if unsupported:
            raise NotImplementedError(
                f"PolicySplitTrainer does not support multimodal batches yet (found {unsupported})."
            )
        args = self.args
        completion_ids, completion_mask = output["completion_ids"], output["completion_mask"]
        rows, logits_to_keep = completion_ids.shape
        loss_mask = _loss_mask(output)
        batch_size = self._scoring_batch_size if mode == "train" else args.per_device_eval_batch_size

        cross_prompt_ids, cross_prompt_mask = self._cross_prompts(tagged, is_high)
        width = max(output["prompt_ids"].size(1), cross_prompt_ids.size(1))
        prompt_ids = torch.cat(
            [
                _left_pad(output["prompt_ids"], width, self._tokenizer.pad_token_id),
                _left_pad(cross_prompt_ids, width, self._tokenizer.pad_token_id),
            ]
        )
        prompt_mask = torch.cat([_left_pad(output["prompt_mask"], width, 0), _left_pad(cross_prompt_mask, width, 0)])
        both_completions = torch.cat([completion_ids, completion_ids])
        both_completion_masks = torch.cat([completion_mask, completion_mask])
        input_ids = torch.cat([prompt_ids, both_completions], dim=1)
        attention_mask = torch.cat([prompt_mask, both_completion_masks], dim=1)

        # The generated rows' log-probs under their own prompt: TRL's old ones, or the sampler's (see `sampling.py`).
        known_own_logps = self._known_sampling_logps(output)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, args.gradient_checkpointing_kwargs):
            if known_own_logps is None or args.entropy_estimator == "entropy":
                logps, entropies = self._score(input_ids, attention_mask, logits_to_keep, batch_size)
                own_logps, cross_logps = logps[:rows], logps[rows:]
            else:  # only the cross pairs are new
                cross_logps, entropies = self._score(
                    input_ids[rows:], attention_mask[rows:], logits_to_keep, batch_size
                )
                own_logps = known_own_logps
            cross_ref_logps = None
            if self.beta != 0.0 and args.share_rollouts:
                cross_ref_logps = self._reference_logps(
                    input_ids[rows:], attention_mask[rows:], logits_to_keep, batch_size
                )

        # The base advantage (GRPO's or the asymmetric rule, plus DiPO's term) over each question's group.
        advantage_group = group_size if args.share_rollouts else group_size // 2
        output = self._shape_advantages(output, mode, advantage_group, logps=own_logps)

        if mode == "train" and args.eta_high_target_kl > 0:
            # The drift guard: this batch's inter-mode KL (every process's HE completions) sets the eta it trains with.
            kl = self._kl_high_entropy_to_normal(own_logps, cross_logps, loss_mask, is_high)
            maximum = args.eta_high if args.eta_high_max is None else args.eta_high_max
            self.eta_high = adapted_coefficient(
                self.eta_high, kl, args.eta_high_target_kl, args.eta_high_adapt_rate, maximum
            )
        if mode == "train":
            self._metrics[mode]["policy_split/eta_high"].append(self.eta_high)

        if args.entropy_estimator == "entropy":
            estimate_own, estimate_cross = entropies[:rows], entropies[rows:]
        else:
            estimate_own, estimate_cross = -own_logps, -cross_logps
        own_reward, cross_reward, gathered = dual_mode_internal_rewards_across_processes(
            estimate_own,
            estimate_cross,
            loss_mask,
            is_high,
            group_size,
            alpha=args.alpha,
            eta_high=self.eta_high,
            eta_normal=args.eta_normal,
            normalization=args.bonus_normalization,
            low_quantile=args.bonus_low_quantile,
            share_rollouts=args.share_rollouts,
        )

        # Unscored completions carry no signal (TRL's NaN semantics); optionally keep the term in uniform groups only.
        rewards = self._total_rewards()
        keep = ~torch.isnan(rewards)
        if args.bonus_uniform_reward_groups_only:
            keep &= uniform_reward_groups(rewards, advantage_group)
        keep = local_rows(keep, rows).unsqueeze(1)
        base = output["advantages"]
        # The restoring force on HE-context rows, outside the clamp (it acts where A = 0 too): the own rows of HE
        # completions (Q2) and the cross rows of normal ones (Q4). Zero without mode_kl_coef.
        s_own, s_cross, high = -own_logps, -cross_logps, is_high.unsqueeze(1)
        own_penalty = inter_mode_kl_penalty(s_cross, s_own, loss_mask, args.mode_kl_coef) * high * keep
        cross_penalty = inter_mode_kl_penalty(s_own, s_cross, loss_mask, args.mode_kl_coef) * ~high * keep
        own_reward = own_reward * keep
        own_clamped = clamp_by_advantage(own_reward, base, args.kappa)
        advantages = base.unsqueeze(1) + own_clamped + own_penalty.to(own_clamped.dtype)
        clamp_stats = [_clamp_counts(own_reward, own_clamped, loss_mask, is_high)]

        output[BASE_ADVANTAGE_KEY] = base
        output[CONTEXT_KEY] = is_high.long()
        output[IS_CROSS_KEY] = torch.zeros_like(is_high)
        if not args.share_rollouts:
            output["advantages"] = advantages
        else:
            cross_reward = cross_reward * keep
            cross_clamped = clamp_by_advantage(cross_reward, base, args.kappa)
            clamp_stats.append(_clamp_counts(cross_reward, cross_clamped, loss_mask, ~is_high))
            cross_advantages = base.unsqueeze(1) + cross_clamped + cross_penalty.to(cross_clamped.dtype)
            if args.cross_importance_sampling != "none":
                # Off-policy correction of the cross rows, folded into their advantages: every TRL loss is linear in
                # a non-negative per-token scale of the advantage, and TRL reads its own IS slot only with vLLM.
                weights = cross_importance_weights(
                    own_logps, cross_logps, loss_mask, args.cross_importance_sampling, args.cross_importance_cap
                )
                cross_advantages = cross_advantages * weights.to(cross_advantages.dtype)
                self._log_cross_weights(mode, weights, loss_mask, is_high, args.cross_importance_cap)
            output = self._with_cross_pairs(output, prompt_ids, prompt_mask, cross_logps, cross_ref_logps)
            output["advantages"] = torch.cat([advantages, cross_advantages])

        surprisal = gathered if args.entropy_estimator == "surprisal" else None
        self._log_mode_metrics(
            mode,
            rewards,
            completion_ids,
            loss_mask,
            is_high,
            own_logps,
            cross_logps,
            surprisal,
            group_size,
            torch.stack(clamp_stats).sum(dim=0),
        )
        return output

    def _kl_high_entropy_to_normal(
        self, own_logps: torch.Tensor, cross_logps: torch.Tensor, loss_mask: torch.Tensor, is_high: torch.Tensor
    ) -> float:
        """Training KL(HE -> normal) of this generation batch, per sequence then over every process's HE completions
        (the paper's measure, as logged under ``policy_split/kl_high_entropy_to_normal``); NaN without any."""
        differences = gather_padded(own_logps.float() - cross_logps.float())  # s_N - s_H on the HE rows
        mask, high = gather_padded(loss_mask.long()), gather_padded(is_high)
        return mean_of_sequence_means(differences[high], mask[high]).item()

    def _log_cross_weights(
        self, mode: str, weights: torch.Tensor, loss_mask: torch.Tensor, is_high: torch.Tensor, cap: float
    ) -> None:
        """Mean importance weight of the cross rows' tokens per training context, and the share at the cap."""
        valid = loss_mask.bool()
        capped = (weights >= cap * (1 - 1e-6)) & valid
        # A cross row is trained under the other mode's prompt: normal completions under the HE one (Q4), and back.
        contexts = ((HIGH_ENTROPY, ~is_high.bool()), (NORMAL, is_high.bool()))
        stats = []
        for _, completions in contexts:
            rows = valid & completions.unsqueeze(1)
            stats.append(torch.stack([(weights * rows).sum(), (capped & rows).sum(), rows.sum()]).float())
        stats = self.accelerator.reduce(torch.stack(stats), reduction="sum")
        metrics = self._metrics[mode]
        for (total, at_cap, count), (name, _) in zip(stats, contexts, strict=True):
            metrics[f"policy_split/cross_is_weight/{name}_context"].append(_ratio(total, count))
            metrics[f"policy_split/cross_is_capped_frac/{name}_context"].append(_ratio(at_cap, count))

    def _with_cross_pairs(self, output, prompt_ids, prompt_mask, cross_logps, cross_ref_logps) -> dict[str, Any]:
        """Double TRL's batch: rows ``[generated..., cross pairs...]``, cross pair i reusing completion i's ids."""
        doubled = {key: value for key, value in output.items()}
        doubled["prompt_ids"], doubled["prompt_mask"] = prompt_ids, prompt_mask
        for key in ("completion_ids", "completion_mask", "tool_mask", BASE_ADVANTAGE_KEY):
            if key in output:
                doubled[key] = torch.cat([output[key], output[key]])
        doubled[CONTEXT_KEY] = torch.cat([output[CONTEXT_KEY], 1 - output[CONTEXT_KEY]])
        doubled[IS_CROSS_KEY] = torch.cat([output[IS_CROSS_KEY], torch.ones_like(output[IS_CROSS_KEY])])
        # The same tokens are trained twice, so token-normalized losses count them twice.
        doubled["num_items_in_batch"] = output["num_items_in_batch"] * 2
        # Cross pairs were not sampled under their context: their old log-probs come from the scoring forward, and
        # sampler-based corrections (vLLM importance sampling) are neutral for them.
        if "old_per_token_logps" in output:
            doubled["old_per_token_logps"] = torch.cat([output["old_per_token_logps"], cross_logps])
        if "sampling_per_token_logps" in output:
            doubled["sampling_per_token_logps"] = torch.cat([output["sampling_per_token_logps"], cross_logps])
        if "importance_sampling_ratio" in output:
            ratio = output["importance_sampling_ratio"]
            doubled["importance_sampling_ratio"] = torch.cat([ratio, torch.ones_like(ratio)])
        if "ref_per_token_logps" in output:
            doubled["ref_per_token_logps"] = torch.cat([output["ref_per_token_logps"], cross_ref_logps])
        return doubled

    # ----------------------------------------------------------------------------------------------------------
    # Metrics

    def _log_mode_metrics(
        self,
        mode: str,
        rewards: torch.Tensor,
        completion_ids: torch.Tensor,
        loss_mask: torch.Tensor,
        is_high: torch.Tensor,
        own_logps: torch.Tensor,
        cross_logps: torch.Tensor,
        gathered_surprisal: GatheredRows | None,
        group_size: int,
        clamp_counts: torch.Tensor,
    ) -> None:
        """Per-mode metrics of ALGORITHMS.md §1.5, computed from every process's rows (sums over counts).

        The inter-mode KL is logged twice: under ``policy_split/kl_<from>_to_<to>`` averaged as the paper does (each
        completion's mean over its tokens, then the mean over the mode's completions) and under ``..._token``
        token-weighted (the mode's token sum over its token count), which weighs long completions more.
        """
        if gathered_surprisal is not None:
            surprisal_own, surprisal_cross, mask, is_high = gathered_surprisal
        else:  # the internal reward used entropies: gather the surprisals for the KL estimates
            surprisal_own, surprisal_cross = gather_padded(-own_logps.float()), gather_padded(-cross_logps.float())
            mask, is_high = gather_padded(loss_mask.long()), gather_padded(is_high)
        mask = mask.float()
        ids = gather_padded(completion_ids.masked_fill(loss_mask == 0, -1), pad_value=-1)
        correct = rewards > self.args.correct_reward_threshold  # NaN compares False
        lengths = mask.sum(dim=1)
        cross_minus_own = (surprisal_cross - surprisal_own) * mask
        clamp_counts = self.accelerator.reduce(clamp_counts, reduction="sum")
        metrics = self._metrics[mode]
        for index, name in enumerate(MODES):
            rows = is_high if name == HIGH_ENTROPY else ~is_high
            tokens = lengths[rows].sum()
            prefix = f"policy_split/{name}"
            metrics[f"{prefix}/completions"].append(rows.sum().item())
            metrics[f"{prefix}/train_sequences"].append(rows.sum().item() * (2 if self.args.share_rollouts else 1))
            metrics[f"{prefix}/reward"].append(torch.nanmean(rewards[rows]).item())
            metrics[f"{prefix}/completion_length"].append(lengths[rows].mean().item())
            metrics[f"{prefix}/surprisal"].append(_ratio((surprisal_own * mask)[rows].sum(), tokens))
            distinct = distinct_correct_per_group(ids, mask, correct & rows, group_size)
            metrics[f"{prefix}/distinct_correct"].append(distinct.float().mean().item())
            kl_name = "kl_normal_to_high_entropy" if name == NORMAL else "kl_high_entropy_to_normal"
            metrics[f"policy_split/{kl_name}"].append(mean_of_sequence_means(cross_minus_own[rows], mask[rows]).item())
            metrics[f"policy_split/{kl_name}_token"].append(_ratio(cross_minus_own[rows].sum(), tokens))
            metrics[f"{prefix}/clamp_frac"].append(_ratio(clamp_counts[index, 0], clamp_counts[index, 1]))
        total = clamp_counts.sum(dim=0)
        metrics["policy_split/clamp_frac"].append(_ratio(total[0], total[1]))

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        logps, entropies, aux_loss = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        self._loss_entropies = entropies
        return logps, entropies, aux_loss

    def _compute_loss(self, model, inputs):
        loss = super()._compute_loss(model, inputs)
        # TRL logs the entropy of all rows; split it by mode over each mode's own rollouts (sums and counts).
        entropies = self._loss_entropies
        if entropies is not None and CONTEXT_KEY in inputs:
            own = (~inputs[IS_CROSS_KEY].bool()).unsqueeze(1) & _loss_mask(inputs).bool()
            high = inputs[CONTEXT_KEY].bool().unsqueeze(1)
            entropies = entropies.detach().float()
            stats = torch.stack(
                [torch.stack([(entropies * rows).sum(), rows.sum()]) for rows in (own & ~high, own & high)]
            ).float()
            stats = self.accelerator.reduce(stats, reduction="sum")
            mode = "train" if self.model.training else "eval"
            # A mode absent from this micro-batch logs NaN, which TRL's `log` leaves out of the average.
            for (total, count), name in zip(stats, MODES, strict=True):
                self._metrics[mode][f"policy_split/{name}/entropy"].append(_ratio(total, count))
        self._loss_entropies = None
        return loss

    # ----------------------------------------------------------------------------------------------------------
    # Checkpoints: the adapted eta_high resumes where it was

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.eta_high_target_kl > 0 and self.args.should_save:
            with open(os.path.join(output_dir, ETA_HIGH_FILE), "w") as handle:
                json.dump({"eta_high": self.eta_high}, handle)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None or self.args.eta_high_target_kl <= 0:
            return
        path = os.path.join(checkpoint, ETA_HIGH_FILE)
        if os.path.isfile(path):
            with open(path) as handle:
                self.eta_high = float(json.load(handle)["eta_high"])

    # ----------------------------------------------------------------------------------------------------------
    # Model card

    def _card_methods(self) -> list[tuple[str, list[str]]]:
        return used_methods(self.args, policy_split=True)

    def _card_sections(self) -> list[str]:
        section = high_entropy_section(self.args.high_entropy_prompt, self.default_system_prompt)
        return [*super()._card_sections(), section]


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> float:
    """``numerator / denominator`` as a float, NaN when there is nothing to average (TRL's log skips NaN)."""
    denominator = denominator.item()
    return numerator.item() / denominator if denominator > 0 else math.nan


def _left_pad(tensor: torch.Tensor, width: int, value: int) -> torch.Tensor:
    return F.pad(tensor, (width - tensor.size(1), 0), value=value)


def _clamp_counts(raw: torch.Tensor, clamped: torch.Tensor, mask: torch.Tensor, high_context: torch.Tensor):
    """``[[active, tokens] normal context, [active, tokens] HE context]`` for one set of rows."""
    valid = mask.bool()
    active = (raw != clamped) & valid
    high = high_context.bool().unsqueeze(1)
    return torch.stack(
        [
            torch.stack([(active & ~high).sum(), (valid & ~high).sum()]),
            torch.stack([(active & high).sum(), (valid & high).sum()]),
        ]
    ).float()
