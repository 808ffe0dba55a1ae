"""Policy Split (arXiv 2604.11510) as a thin GRPOTrainer subclass.

TRL generates, scores and computes the base advantage over each question's ``2n`` completions; this class
tags half of each group as high-entropy (their prompt gets the instruction), then post-processes TRL's
batch: it adds the cross pairs (every completion behind the other mode's prompt, same token ids), scores
them once without gradient when a setting reads them before the loss (`_cross_logps_needed`; not at the
defaults), and turns the advantages into per-token advantages with the clamped internal reward
(`functional.policy_split_step`). TRL's own loss (every ``loss_type``) then trains on the result.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from typing import Any, NamedTuple

import torch
from transformers.utils import logging
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import pad, use_adapter

from ._trl import pad_token_id, rebuild_deepspeed_config
from .distributed import gather_padded, local_rows
from .functional import (
    CrossPairInputs,
    DualModeAdvantages,
    DualModeSettings,
    adapted_coefficient,
    cross_pair_inputs,
    grpo_advantages,
    kl_high_entropy_to_normal,
    mode_entropy_sums,
    mode_kl_parts,
    mode_kl_shares,
    policy_split_mode_metrics,
    policy_split_modes,
    policy_split_step,
)
from .memory import release_free_heap
from .model_card import high_entropy_section, used_methods
from .modes import HIGH_ENTROPY, NORMAL, template_default_system_prompt, to_high_entropy
from .policy_split_config import PolicySplitConfig
from .shaping_trainer import AdvantageShapingTrainer, LossRecord, loss_mask

# Where the question's own (normal-mode) prompt travels with a row; reward functions never see this key.
_NORMAL_PROMPT_KEY = "_policy_split_normal_prompt"
# Tensor keys this trainer adds to TRL's batch: the context a row is trained under, and cross pairs.
CONTEXT_KEY = "policy_split_context"
IS_CROSS_KEY = "policy_split_is_cross"
BASE_ADVANTAGE_KEY = "policy_split_base_advantages"
SAMPLED_LOGPS_KEY = "policy_split_sampled_logps"  # each row's completion under the context it was sampled in
KL_SHARES_KEY = "policy_split_kl_shares"  # each cross row's weight in its mode's KL means (`mode_kl_shares`)
ETA_HIGH_FILE = "policy_split_eta_high.json"  # the adapted eta_high, saved with each checkpoint
logger = logging.get_logger(__name__)
_UNSUPPORTED_BATCH_KEYS = ("pixel_values", "image_grid_thw", "num_images", "token_type_ids", "mm_token_type_ids")


class ContextScores(NamedTuple):
    """The sampling policy's view of each generated completion under its own and the other mode's prompt."""

    own_logps: torch.Tensor
    cross_logps: torch.Tensor | None  # None when nothing reads them before the loss (`_cross_logps_needed`)
    entropies: torch.Tensor | None  # own rows then cross rows, with entropy_estimator="entropy"
    cross_ref_logps: torch.Tensor | None  # the reference model's, for TRL's KL term on the cross rows


class PolicySplitTrainer(AdvantageShapingTrainer):
    """Drop-in replacement for `GRPOTrainer` that trains a normal and a high-entropy mode of one model.

    Takes the same arguments as `GRPOTrainer`, with a [`PolicySplitConfig`] as `args`. Reward functions
    receive the question's normal prompt and a `mode` column (`"normal"` or `"high_entropy"`).
    """

    _tag_names = ["trl", "grpo", "policy-split"]
    _name = "PolicySplit"
    _config_class = PolicySplitConfig

    def __init__(self, model: Any, reward_funcs: Any = None, args: PolicySplitConfig | None = None, *a, **kw):
        bound = inspect.signature(GRPOTrainer.__init__).bind(self, model, reward_funcs, args, *a, **kw)
        for unsupported in ("rollout_func", "environment_factory"):
            if bound.arguments.get(unsupported) is not None:
                raise ValueError(
                    f"PolicySplitTrainer does not support `{unsupported}` yet: the cross pairs are rebuilt from the "
                    "dataset prompt, which a custom rollout or environment may change. Remove it."
                )
        super().__init__(model, reward_funcs, args, *a, **kw)
        # Rows per no-grad scoring forward: GRPO's micro-batch as the user set it (the run's may be halved).
        self.scoring_batch_size = self.requested_args.per_device_train_batch_size
        # The template's own default system text, kept in the high-entropy prompt (modes differ by the instruction).
        self.default_system_prompt = template_default_system_prompt(
            self.processing_class,
            chat_template=self.chat_template,
            tools=self.tools or None,
            **self.chat_template_kwargs,
        )
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
        requested, args = args, super()._trainer_args(args)
        rows = args.per_device_train_batch_size
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
            fixed = rebuild_deepspeed_config(requested, adjusted)
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
        is_high = policy_split_modes(len(inputs), group_size, self.accelerator.process_index * len(inputs))
        tagged = [self._tag_row(row, high) for row, high in zip(inputs, is_high.tolist(), strict=True)]
        return super()._generate_and_score_completions(tagged)

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

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        # A group holds n prompts of each mode, so vLLM server mode (which keeps every `num_generations`-th prompt
        # and samples that many completions from it) must deduplicate per mode. Tool turns ask for 1: keep it.
        if num_generations > 1:
            num_generations //= 2
        return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Rewards depend on the question and the completion, not on the context: score with the normal prompt.
        normal_prompts = [row[_NORMAL_PROMPT_KEY] for row in inputs]
        reward_inputs = [{k: v for k, v in row.items() if k != _NORMAL_PROMPT_KEY} for row in inputs]
        return super()._calculate_rewards(reward_inputs, normal_prompts, completions, completion_ids_list)

    def _after_generation(
        self, output: dict[str, Any], inputs: list[dict[str, Any]], rewards_per_func: torch.Tensor
    ) -> dict[str, Any]:
        """Add cross pairs, score every row once and replace the advantages by per-token dual-mode ones."""
        unsupported = [key for key in _UNSUPPORTED_BATCH_KEYS if key in output]
        if unsupported:
            raise NotImplementedError(
                f"PolicySplitTrainer does not support multimodal batches yet (found {unsupported})."
            )
        args = self.args
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        device = self.accelerator.device
        is_high = torch.tensor([row["mode"] == HIGH_ENTROPY for row in inputs], dtype=torch.bool, device=device)
        cross = cross_pair_inputs(
            output["prompt_ids"],
            output["prompt_mask"],
            *self._cross_prompts(inputs, is_high),
            output["completion_ids"],
            output["completion_mask"],
            pad_token_id(self),
        )
        scores = self._score_both_contexts(output, cross, mode, cross_needed=self._cross_logps_needed(output, mode))
        # The base advantage (GRPO's or the asymmetric rule, plus DiPO's term) over each question's group.
        advantage_group = group_size if args.share_rollouts else group_size // 2
        base = None if args.share_rollouts else self._per_mode_grpo_advantages(rewards_per_func, advantage_group)
        output, base, rewards = self._shape_advantages(
            output, rewards_per_func, mode, advantage_group, scores.own_logps, base
        )
        # The internal reward is normalized over whole question groups: every process's rows.
        every = every_process_rows(output, scores, is_high, base)
        if mode == "train" and args.eta_high_target_kl > 0:
            self._adapt_eta_high(every)
        advantages, metrics = policy_split_step(
            every.base,
            rewards,
            every.own_logps,
            every.cross_logps,
            every.mask,
            every.is_high,
            group_size,
            DualModeSettings.from_config(args, self.eta_high),
            every.own_entropies,
            every.cross_entropies,
        )
        metrics |= policy_split_mode_metrics(
            rewards,
            every.completion_ids,
            every.mask,
            every.is_high,
            every.own_logps,
            every.cross_logps,
            group_size,
            args.correct_reward_threshold,
            args.share_rollouts,
        )
        if mode == "train":
            metrics["policy_split/eta_high"] = self.eta_high
        self._log_metrics(mode, metrics)
        batch = training_batch(output, cross, scores, is_high, advantages)
        if SAMPLED_LOGPS_KEY in batch:  # the KL comes from the loss forwards: each cross row's share of it
            shares = local_rows(mode_kl_shares(every.mask, every.is_high), output["completion_ids"].size(0))
            batch[KL_SHARES_KEY] = torch.cat([torch.zeros_like(shares), shares])
        return batch

    def _per_mode_grpo_advantages(self, rewards_per_func: torch.Tensor, group_size: int) -> torch.Tensor:
        """The per-mode ablation's base advantage: GRPO's over each mode's n rows (TRL's groups hold both modes)."""
        scale, aggregation = self.scale_rewards, self.args.multi_objective_aggregation
        return grpo_advantages(rewards_per_func, self.reward_weights, group_size, scale, aggregation)

    def _adapt_eta_high(self, every: EveryProcessRows) -> None:
        """The drift guard: this batch's inter-mode KL (every process's HE completions) sets the eta it trains with."""
        args = self.args
        kl = kl_high_entropy_to_normal(every.own_logps, every.cross_logps, every.mask, every.is_high)
        maximum = args.eta_high if args.eta_high_max is None else args.eta_high_max
        self.eta_high = adapted_coefficient(
            self.eta_high, kl, args.eta_high_target_kl, args.eta_high_adapt_rate, maximum
        )

    def _cross_prompts(self, tagged: list[dict[str, Any]], is_high: torch.Tensor):
        """Token ids of each row's other-mode prompt, tokenized exactly as TRL tokenizes prompts."""
        prompts = [
            row[_NORMAL_PROMPT_KEY] if high else self._to_high_entropy(row[_NORMAL_PROMPT_KEY])
            for row, high in zip(tagged, is_high.tolist(), strict=True)
        ]
        prompt_ids, _, _ = self._tokenize_prompts(prompts)
        ids = [torch.tensor(p) for p in prompt_ids]
        device = self.accelerator.device
        padded = pad(ids, pad_token_id(self), "left", self.pad_to_multiple_of).to(device)
        mask = pad([torch.ones_like(p) for p in ids], 0, "left", self.pad_to_multiple_of).to(device)
        return padded, mask

    def _cross_logps_needed(self, output: dict[str, Any], mode: str) -> bool:
        """Whether this batch needs the cross pairs' log-probs before the loss. Not when nothing reads them then:
        training on-policy (TRL takes no old log-probs, and the cross rows' old ones are their loss forward's), with
        no surprisal in the advantages (`DualModeSettings.reads_cross_surprisals`, the defaults), no controller and
        no TRL option reading sampling log-probs, and the generated rows' log-probs known from sampling on every
        process. The inter-mode KL is then logged from the loss forward (`functional.mode_kl_sums`)."""
        args = self.args
        settings = DualModeSettings.from_config(args, self.eta_high)
        if (
            mode != "train"
            or not args.share_rollouts
            or settings.reads_cross_surprisals
            or args.eta_high_target_kl > 0
            or "old_per_token_logps" in output
            or self.off_policy_mask_threshold is not None
        ):
            return True
        known = torch.tensor([self._known_sampling_logps(output) is not None], device=self.accelerator.device)
        return not bool(self.accelerator.gather(known).all())  # every process must take the same forwards

    def _score_both_contexts(
        self, output: dict[str, Any], cross: CrossPairInputs, mode: str, cross_needed: bool = True
    ) -> ContextScores:
        """One no-grad forward of the rows it needs: the cross pairs (unless not ``cross_needed``), and the generated
        rows too unless their log-probs are known (TRL's old ones, or the sampler's: see `sampling.py`) and no
        entropy is needed. The reference model's log-probs of the cross pairs, for TRL's KL term, in any case."""
        args = self.args
        rows, logits_to_keep = output["completion_ids"].shape
        batch_size = self.scoring_batch_size if mode == "train" else args.per_device_eval_batch_size
        known_own_logps = self._known_sampling_logps(output)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, args.gradient_checkpointing_kwargs):
            if not cross_needed:
                own_logps, cross_logps, entropies = known_own_logps, None, None
            elif known_own_logps is None or args.entropy_estimator == "entropy":
                logps, entropies = self._score(cross.input_ids, cross.attention_mask, logits_to_keep, batch_size)
                own_logps, cross_logps = logps[:rows], logps[rows:]
            else:  # only the cross pairs are new
                cross_logps, entropies = self._score(
                    cross.input_ids[rows:], cross.attention_mask[rows:], logits_to_keep, batch_size
                )
                own_logps = known_own_logps
            cross_ref_logps = None
            if self.beta != 0.0 and args.share_rollouts:
                cross_ref_logps = self._reference_logps(
                    cross.input_ids[rows:], cross.attention_mask[rows:], logits_to_keep, batch_size
                )
        return ContextScores(own_logps, cross_logps, entropies, cross_ref_logps)

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

    # ----------------------------------------------------------------------------------------------------------
    # The loss: TRL logs the entropy of all rows; split it by mode over each mode's own rollouts

    def _after_loss(self, record: LossRecord) -> None:
        mode = "train" if self.model.training else "eval"
        if mode == "train" and torch.is_grad_enabled() and self.accelerator.device.type == "cpu":
            # The backward of this micro-batch is the step's peak; the previous micro-batch's freed activations are
            # still resident around the accumulated gradients: hand them back first (see `memory.py`).
            release_free_heap()
        inputs = record.inputs
        if CONTEXT_KEY not in inputs:
            return
        mask, context, is_cross = loss_mask(inputs), inputs[CONTEXT_KEY], inputs[IS_CROSS_KEY]
        # A mode absent from every process's micro-batch logs NaN, which TRL's `log` leaves out of the average.
        sums = {} if record.entropies is None else mode_entropy_sums(record.entropies, mask, context, is_cross)
        self._log_token_means(mode, sums)
        if SAMPLED_LOGPS_KEY in inputs and record.logps is not None:  # no scoring forward: the KL from this one
            parts = mode_kl_parts(
                inputs[SAMPLED_LOGPS_KEY], record.logps, mask, context, is_cross, inputs[KL_SHARES_KEY]
            )
            totals = self.accelerator.reduce(torch.stack(list(parts.values())), reduction="sum")
            # TRL averages what each loss call logs; a generation batch's parts are spread over its
            # steps_per_generation slices (each trained num_iterations times): scaled so the average is their sum.
            totals = (totals * self.args.steps_per_generation).tolist()
            self._log_metrics(mode, dict(zip(parts, totals, strict=True)))

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


class EveryProcessRows(NamedTuple):
    """This generation batch's tensors of every process, rows in global order (whole question groups), padded to
    the widest process: the inputs of Policy Split's group steps."""

    base: torch.Tensor
    own_logps: torch.Tensor
    cross_logps: torch.Tensor | None  # None when the batch needs none before the loss
    mask: torch.Tensor
    is_high: torch.Tensor
    completion_ids: torch.Tensor  # -1 past each completion, for the distinct-correct count
    own_entropies: torch.Tensor | None
    cross_entropies: torch.Tensor | None


def every_process_rows(
    output: dict[str, Any], scores: ContextScores, is_high: torch.Tensor, base: torch.Tensor
) -> EveryProcessRows:
    """Gather what the group steps read from every process (one all-gather each; a no-op on one process). ``base``:
    every process's base advantages, which the shaping already holds."""
    mask = loss_mask(output)
    rows = mask.size(0)
    entropies = scores.entropies
    return EveryProcessRows(
        base=base,
        own_logps=gather_padded(scores.own_logps.float()),
        cross_logps=None if scores.cross_logps is None else gather_padded(scores.cross_logps.float()),
        mask=gather_padded(mask.long()),
        is_high=gather_padded(is_high),
        completion_ids=gather_padded(output["completion_ids"].masked_fill(mask == 0, -1), pad_value=-1),
        own_entropies=None if entropies is None else gather_padded(entropies[:rows].float()),
        cross_entropies=None if entropies is None else gather_padded(entropies[rows:].float()),
    )


def training_batch(
    output: dict[str, Any],
    cross: CrossPairInputs,
    scores: ContextScores,
    is_high: torch.Tensor,
    advantages: DualModeAdvantages,
) -> dict[str, Any]:
    """TRL's batch with this process's per-token advantages, the rows' contexts and, with shared rollouts, the cross
    pairs appended (`with_cross_pairs`)."""
    rows, width = output["completion_ids"].shape
    output[BASE_ADVANTAGE_KEY] = output["advantages"]
    output[CONTEXT_KEY] = is_high.long()
    output[IS_CROSS_KEY] = torch.zeros_like(is_high)
    own = local_rows(advantages.own, rows, width)
    if advantages.cross is None:
        output["advantages"] = own
        return output
    output = with_cross_pairs(output, cross, scores.cross_logps, scores.cross_ref_logps)
    output["advantages"] = torch.cat([own, local_rows(advantages.cross, rows, width)])
    return output


def with_cross_pairs(
    output: dict[str, Any],
    cross: CrossPairInputs,
    cross_logps: torch.Tensor | None,
    cross_ref_logps: torch.Tensor | None,
) -> dict[str, Any]:
    """TRL's batch doubled: rows ``[generated..., cross pairs...]``, cross pair i reusing completion i's ids."""
    doubled = dict(output)
    doubled["prompt_ids"], doubled["prompt_mask"] = cross.prompt_ids, cross.prompt_mask
    for key in ("completion_ids", "completion_mask", "tool_mask", BASE_ADVANTAGE_KEY):
        if key in output:
            doubled[key] = torch.cat([output[key], output[key]])
    doubled[CONTEXT_KEY] = torch.cat([output[CONTEXT_KEY], 1 - output[CONTEXT_KEY]])
    doubled[IS_CROSS_KEY] = torch.cat([output[IS_CROSS_KEY], torch.ones_like(output[IS_CROSS_KEY])])
    # The same tokens are trained twice, so token-normalized losses count them twice.
    doubled["num_items_in_batch"] = output["num_items_in_batch"] * 2
    # Cross pairs were not sampled under their context: their old log-probs come from the scoring forward, and
    # sampler-based corrections (vLLM importance sampling) are neutral for them.
    if cross_logps is None:
        # Not scored: on-policy with nothing reading them, so TRL takes the cross rows' old log-probs from their loss
        # forward. What each row's completion had under the context it was sampled in, for the KL (`mode_kl_sums`);
        # TRL's own slot for them is read only by options that make the cross pairs needed.
        sampled = doubled.pop("sampling_per_token_logps")
        doubled[SAMPLED_LOGPS_KEY] = torch.cat([sampled, sampled])
    else:
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
