"""Configuration of the Policy Split trainer: GRPOConfig plus the dual-mode knobs (ALGORITHMS.md §1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .functional import NORMALIZATIONS
from .modes import DEFAULT_HIGH_ENTROPY_PROMPT
from .shaping_config import AdvantageShapingConfig

ENTROPY_ESTIMATORS = ("surprisal", "entropy")


@dataclass
class PolicySplitConfig(AdvantageShapingConfig):
    """GRPOConfig for [`PolicySplitTrainer`]: one model trained in a normal and a high-entropy mode.

    `num_generations` completions per question are split evenly between the modes, so it must be even.
    Every field below is validated at construction; a wrong value raises `ValueError` naming the field.
    """

    high_entropy_prompt: str = field(
        default=DEFAULT_HIGH_ENTROPY_PROMPT,
        metadata={
            "help": "Instruction that turns a prompt into its high-entropy version (added as a system message)."
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
        default=0.2,
        metadata={"help": "Coefficient of the entropy bonus on high-entropy-context rows (>= 0)."},
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
        if self.num_generations % 2 != 0:
            raise ValueError(
                f"num_generations must be even for Policy Split (half per mode), got {self.num_generations}; "
                f"set num_generations={self.num_generations + 1}."
            )
        if self.num_generations_eval is not None and (
            self.num_generations_eval < 2 or self.num_generations_eval % 2 != 0
        ):
            raise ValueError(
                f"num_generations_eval must be even and >= 2 for Policy Split, got {self.num_generations_eval}."
            )
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
