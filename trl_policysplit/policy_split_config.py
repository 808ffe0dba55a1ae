"""Configuration of the Policy Split trainer: GRPOConfig plus the dual-mode knobs (ALGORITHMS.md §1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .functional import CROSS_IMPORTANCE_SAMPLING, NORMALIZATIONS
from .modes import DEFAULT_HIGH_ENTROPY_PROMPT
from .shaping_config import AdvantageShapingConfig

ENTROPY_ESTIMATORS = ("surprisal", "entropy")
COMPLETIONS_PER_MODE = ("half", "num_generations")


@dataclass
class PolicySplitConfig(AdvantageShapingConfig):
    """GRPOConfig for [`PolicySplitTrainer`]: one model trained in a normal and a high-entropy mode.

    By default `num_generations` completions per question are split evenly between the modes (so it must be even);
    `completions_per_mode="num_generations"` samples `num_generations` per mode instead, as the authors do.
    Every field below is validated at construction; a wrong value raises `ValueError` naming the field.
    """

    high_entropy_prompt: str = field(
        default=DEFAULT_HIGH_ENTROPY_PROMPT,
        metadata={
            "help": "Instruction that turns a prompt into its high-entropy version (added as a system message)."
        },
    )
    completions_per_mode: str = field(
        default="half",
        metadata={
            "help": "'half' (ours): num_generations // 2 completions per mode, GRPO's generation budget. "
            "'num_generations' (the authors' setting): num_generations per mode, so 2x GRPO's generation and "
            "training rows per question; the trainer runs with twice the num_generations (and the eval group), "
            "gradient_accumulation_steps, steps_per_generation and generation batch, so prompts per optimizer step "
            "and updates per generation stay as set."
        },
    )
    share_rollouts: bool = field(
        default=True,
        metadata={
            "help": "Train every completion under both contexts (4n sequences per question, groups of 2n). False is "
            "the per-mode ablation: each mode trains only its own n completions, grouped by mode."
        },
    )
    alpha: float = field(
        default=0.5,
        metadata={
            "help": "Weight of a context's own surprisal in the internal reward; 1 - alpha weighs the other mode's "
            "surprisal, which adds (1 - alpha) * KL between the modes. In [0, 1]."
        },
    )
    eta_high: float = field(
        default=0.0,
        metadata={
            "help": "Coefficient of the entropy bonus on high-entropy-context rows (>= 0). The default 0 is the "
            "testbed ablation's pick (docs/BENCHMARKS.md section 3: every bonus that separated the modes cost the "
            "normal mode accuracy there); 0.2 with mode_kl_coef > 0 runs the paper's regularization within a band."
        },
    )
    eta_normal: float = field(
        default=0.0,
        metadata={"help": "Coefficient of the entropy penalty on normal-context rows (>= 0)."},
    )
    kappa: float = field(
        default=1.0,
        metadata={
            "help": "Clamp the internal reward to [-|A|/kappa, |A|/kappa] (kappa > 1: it never flips the sign of the "
            "advantage). 0 disables the clamp. >= 0."
        },
    )
    cross_importance_sampling: str = field(
        default="none",
        metadata={
            "help": "Drift guard (ours): weight each cross row (a completion trained under the mode that did not "
            "sample it) by the truncated probability ratio of its training context to its sampling context. "
            "'token_truncate': per token, 'sequence_truncate': one ratio per completion (the product over its "
            "tokens), both capped at cross_importance_cap; 'none': weight 1 (the authors' code)."
        },
    )
    cross_importance_cap: float = field(
        default=2.0,
        metadata={"help": "Upper bound of the cross rows' importance weights (> 0)."},
    )
    eta_high_target_kl: float = field(
        default=0.0,
        metadata={
            "help": "Drift guard (ours): > 0 adapts eta_high after every generation batch to hold the training "
            "inter-mode KL (HE -> normal, per sequence, the paper's measure) near this value, like PPO's adaptive KL "
            "controller (eta_high is the start value). 0: eta_high stays fixed."
        },
    )
    eta_high_adapt_rate: float = field(
        default=1.0,
        metadata={
            "help": "Gain of the eta_high controller: each batch multiplies eta_high by "
            "1 - rate * clip(KL / target - 1, -0.2, 0.2). In (0, 5)."
        },
    )
    eta_high_max: float | None = field(
        default=None,
        metadata={
            "help": "Upper bound of the adapted eta_high (>= eta_high). None: eta_high itself, so the controller only "
            "lowers the bonus while the KL is above target and restores it below."
        },
    )
    mode_kl_coef: float = field(
        default=0.0,
        metadata={
            "help": "Drift guard (ours): a restoring force, -mode_kl_coef * (log p_HE - log p_normal) added to every "
            "high-entropy-context token's advantage (the KL-in-reward of RLHF with the normal mode as reference, from "
            "the scoring forward's log-probs: no reference model). >= 0; 0 disables."
        },
    )
    bonus_normalization: str = field(
        default="zscore",
        metadata={"help": "Per-group normalization of the internal reward: 'zscore', 'range' or 'none'."},
    )
    bonus_low_quantile: float = field(
        default=0.0,
        metadata={
            "help": "Zero the internal reward of tokens below this quantile of their group's raw values. [0, 1)."
        },
    )
    bonus_uniform_reward_groups_only: bool = field(
        default=False,
        metadata={
            "help": "Keep the internal reward only in groups whose rewards are all equal. Needs kappa = 0, since the "
            "clamp zeroes it wherever the advantage is 0."
        },
    )
    entropy_estimator: str = field(
        default="surprisal",
        metadata={
            "help": "'surprisal' uses -log p of the sampled token (as the reference code); 'entropy' uses the full "
            "per-token entropy of the temperature-scaled distribution."
        },
    )
    keep_grpo_micro_batch: bool = field(
        default=True,
        metadata={
            "help": "With share_rollouts every completion is trained under both prompts, which would double the "
            "rows of each loss micro-batch. True (default, ours) keeps GRPO's micro-batch of "
            "per_device_train_batch_size rows: half as many completions per micro-batch (each under both prompts) "
            "and twice the gradient_accumulation_steps and steps_per_generation, so the same generation and optimizer "
            "batches and the same gradient up to float order (exactly so for the grpo, dapo, dr_grpo and luspo loss "
            "types; bnpo's token mean is taken per micro-batch). Needs an even per_device_train_batch_size, else it "
            "is left as set. False: 2x rows per micro-batch (GRPO's step count, 2x its activation memory)."
        },
    )

    def _validate(self) -> None:
        # Our checks run first so that an odd `num_generations` gets the Policy Split message, not a batch one.
        self._validate_policy_split()
        super()._validate()

    def _validate_policy_split(self) -> None:
        if self.completions_per_mode not in COMPLETIONS_PER_MODE:
            raise ValueError(
                f"completions_per_mode must be one of {COMPLETIONS_PER_MODE}, got {self.completions_per_mode!r}."
            )
        if self.completions_per_mode == "half":
            if self.num_generations % 2 != 0:
                raise ValueError(
                    f"num_generations must be even for Policy Split (half per mode), got {self.num_generations}; "
                    f"set num_generations={self.num_generations + 1}, or completions_per_mode='num_generations' for "
                    "num_generations per mode."
                )
            if self.num_generations_eval is not None and (
                self.num_generations_eval < 2 or self.num_generations_eval % 2 != 0
            ):
                raise ValueError(
                    f"num_generations_eval must be even and >= 2 for Policy Split, got {self.num_generations_eval}."
                )
        if self.cross_importance_sampling not in CROSS_IMPORTANCE_SAMPLING:
            raise ValueError(
                f"cross_importance_sampling must be one of {CROSS_IMPORTANCE_SAMPLING}, "
                f"got {self.cross_importance_sampling!r}."
            )
        if self.cross_importance_sampling != "none" and not self.share_rollouts:
            raise ValueError(
                "cross_importance_sampling weights the cross rows, which share_rollouts=False does not train; set "
                "cross_importance_sampling='none' or share_rollouts=True."
            )
        if not self.cross_importance_cap > 0:
            raise ValueError(f"cross_importance_cap must be > 0, got {self.cross_importance_cap}.")
        if not self.eta_high_target_kl >= 0:
            raise ValueError(f"eta_high_target_kl must be >= 0 (0: fixed eta_high), got {self.eta_high_target_kl}.")
        if self.eta_high_target_kl > 0:
            if not self.eta_high > 0:
                raise ValueError(
                    "eta_high_target_kl adapts eta_high multiplicatively, which cannot leave 0; set eta_high > 0 as "
                    "its start value."
                )
            if not 0 < self.eta_high_adapt_rate < 5:
                raise ValueError(f"eta_high_adapt_rate must be in (0, 5), got {self.eta_high_adapt_rate}.")
            if self.eta_high_max is not None and not self.eta_high_max >= self.eta_high:
                raise ValueError(
                    f"eta_high_max ({self.eta_high_max}) must be >= eta_high ({self.eta_high}), its start value."
                )
        if not self.mode_kl_coef >= 0:
            raise ValueError(f"mode_kl_coef must be >= 0 (0: no penalty), got {self.mode_kl_coef}.")
        if not isinstance(self.high_entropy_prompt, str) or not self.high_entropy_prompt.strip():
            raise ValueError("high_entropy_prompt must be a non-empty instruction; leave it unset for the default.")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}.")
        for name in ("eta_high", "eta_normal", "kappa"):
            if not getattr(self, name) >= 0:  # NaN too
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.bonus_normalization not in NORMALIZATIONS:
            raise ValueError(f"bonus_normalization must be one of {NORMALIZATIONS}, got {self.bonus_normalization!r}.")
        if self.entropy_estimator not in ENTROPY_ESTIMATORS:
            raise ValueError(f"entropy_estimator must be one of {ENTROPY_ESTIMATORS}, got {self.entropy_estimator!r}.")
        if not 0.0 <= self.bonus_low_quantile < 1.0:
            raise ValueError(f"bonus_low_quantile must be in [0, 1), got {self.bonus_low_quantile}.")
        if self.bonus_uniform_reward_groups_only and self.kappa > 0:
            raise ValueError(
                "bonus_uniform_reward_groups_only=True keeps the internal reward only where the advantage is 0, "
                f"where the clamp with kappa={self.kappa} removes it; set kappa=0."
            )
