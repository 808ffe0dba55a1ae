"""Advantage- and loss-shaping knobs shared by every trainer of the package: AsymGRPO (ALGORITHMS.md §2),
perplexity-based reward allocation, DiPO (§3), and the entropy-guided baselines TRL lacks (§4: Clip-Cov, KL-Cov,
entropy advantage). Each is a flag, so they compose with each other and with Policy Split."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields

from trl import GRPOConfig

POLICY_LOSSES = ("ppo", "clip_cov", "kl_cov")
# TRL loss types whose ratio is clipped to [1 - epsilon, 1 + epsilon_high]: the ones KL-Cov can take the clip off.
PPO_CLIPPED_LOSSES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")


@dataclass
class AdvantageShapingConfig(GRPOConfig):
    """GRPOConfig plus the asymmetric advantage rule and perplexity-based reward reallocation.

    Both are off here; [`AsymGRPOConfig`] turns the asymmetric rule on. Every field is validated at
    construction: a wrong value raises `ValueError` naming the field.
    """

    asymmetric_advantages: bool = field(
        default=False,
        metadata={
            "help": "Replace GRPO's group normalization by AsymGRPO's rule (arXiv 2604.04894): "
            "((1-p)/p)**beta_pos for correct and -(p/(1-p))**beta_neg for wrong completions."
        },
    )
    beta_pos: float = field(
        default=0.9,
        metadata={"help": "AsymGRPO exponent of positive advantages (paper: 0.9). 0.5 with beta_neg 0.5 is GRPO."},
    )
    beta_neg: float = field(
        default=0.4,
        metadata={"help": "AsymGRPO exponent of negative advantages (paper: 0.4)."},
    )
    reward_range: list[float] | None = field(
        default=None,
        metadata={
            "help": "[low, high] of the total (weighted) reward, mapped to [0, 1] for the asymmetric rule; a reward "
            "outside it is an error. Unset (default, ours): each group's own [min, max], which is the paper's rule "
            "for 0/1 rewards and works for any scored reward (reward models, penalties, weighted sums)."
        },
    )
    perplexity_reallocation: bool = field(
        default=False,
        metadata={
            "help": "DiPO (arXiv 2604.13902): in groups that are all wrong or all correct, reallocate the reward by "
            "sequence perplexity and add ppl_alpha times the advantage of the reallocated rewards."
        },
    )
    ppl_alpha: float = field(
        default=0.1,
        metadata={"help": "Weight of the reallocated-reward objective (paper: 0.1, its best value). >= 0."},
    )
    ppl_queue_batches: int = field(
        default=2,
        metadata={
            "help": "Generation batches of (perplexity, correct) pairs kept to fit the perplexity threshold (>= 1)."
        },
    )
    correct_reward_threshold: float = field(
        default=0.5,
        metadata={
            "help": "A completion is correct when its total (weighted) reward is above this: used by DiPO and by "
            "the solved-by-none/all and distinct-correct metrics. With non-binary rewards, set it to the reward that "
            "means success; DiPO warns once when its rewards are not binary-like or it finds no valid split."
        },
    )

    policy_loss: str = field(
        default="ppo",
        metadata={
            "help": "'ppo': TRL's loss_type as is. 'clip_cov' / 'kl_cov' (arXiv 2505.22617): detach the gradient of "
            "a random fraction of high-covariance tokens, or add a KL penalty to the top fraction by covariance. "
            "One of them at a time.",
            "choices": list(POLICY_LOSSES),
        },
    )
    clip_cov_ratio: float = field(
        default=2e-4,
        metadata={"help": "Fraction of valid tokens Clip-Cov detaches (reference implementation: 2e-4). In (0, 1]."},
    )
    clip_cov_lb: float = field(
        default=1.0, metadata={"help": "Lower bound of the covariance band Clip-Cov draws from (reference: 1)."}
    )
    clip_cov_ub: float = field(
        default=5.0, metadata={"help": "Upper bound of the covariance band Clip-Cov draws from (reference: 5)."}
    )
    kl_cov_ratio: float = field(
        default=2e-3,
        metadata={
            "help": "Fraction of valid tokens, top by covariance, that KL-Cov penalizes (paper: 2e-3 for 7B models, "
            "2e-4 for 32B). In (0, 1]."
        },
    )
    kl_cov_coef: float = field(
        default=1.0, metadata={"help": "Coefficient of KL-Cov's |logp - old_logp| penalty (reference: 1). >= 0."}
    )
    kl_cov_keep_ppo_clip: bool = field(
        default=False,
        metadata={
            "help": "Keep PPO's ratio clipping under KL-Cov. The reference implementation (arXiv 2505.22617) drops "
            "it: its loss is -A * ratio plus the penalty, so the default False removes TRL's clip while policy_loss "
            "is 'kl_cov' (needs a clipped loss_type: grpo, bnpo, dr_grpo, dapo or luspo)."
        },
    )
    entropy_advantage_alpha: float = field(
        default=0.0,
        metadata={
            "help": "Entropy-based advantage (arXiv 2506.14758): A_t += min(alpha * H_t, |A_t| / kappa) with H "
            "detached (paper: 0.4). 0 turns it off. >= 0."
        },
    )
    entropy_advantage_kappa: float = field(
        default=2.0, metadata={"help": "Clamp of the entropy advantage: at most |A_t| / kappa (paper: 2). > 0."}
    )
    sampler_logprobs: bool = field(
        default=True,
        metadata={
            "help": "Take the generated tokens' log-probs (DiPO's perplexities, Policy Split's own rows) from the "
            "sampler instead of a no-grad forward: recorded from the model's logits during transformers' generate, "
            "or vLLM's when no top-p/top-k/min-p/repetition penalty changes them. Same values up to float error "
            "(vLLM's numerics may differ more). False recomputes them with a forward, as the reference code does."
        },
    )

    def __post_init__(self) -> None:
        self._validate()
        super().__post_init__()

    def _validate(self) -> None:
        """Checks of this class's own fields; subclasses add theirs (also run on an upgraded `GRPOConfig`)."""
        self._validate_shaping()

    @classmethod
    def from_grpo_config(cls, args: GRPOConfig) -> AdvantageShapingConfig:
        """This config class with every field of ``args`` kept as set (TRL already post-processed them) and this
        class's own fields at their defaults, validated. Lets a trainer take a plain `GRPOConfig` (drop-in)."""
        upgraded = object.__new__(cls)
        upgraded.__dict__.update(vars(args))
        for spec in fields(cls):
            if spec.name in upgraded.__dict__:
                continue
            if spec.default_factory is not MISSING:
                setattr(upgraded, spec.name, spec.default_factory())
            elif spec.default is not MISSING:
                setattr(upgraded, spec.name, spec.default)
        upgraded._validate()
        return upgraded

    def _validate_shaping(self) -> None:
        for name in ("beta_pos", "beta_neg", "ppl_alpha"):
            if not getattr(self, name) >= 0:  # NaN too
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.reward_range is not None:
            reward_range = list(self.reward_range)
            if len(reward_range) != 2 or not float(reward_range[0]) < float(reward_range[1]):
                raise ValueError(
                    f"reward_range must be [low, high] with low < high, got {self.reward_range}; e.g. "
                    "reward_range=[0, 1], or leave it unset for each group's own range."
                )
            self.reward_range = [float(value) for value in reward_range]
        if int(self.ppl_queue_batches) != self.ppl_queue_batches or self.ppl_queue_batches < 1:
            raise ValueError(f"ppl_queue_batches must be an integer >= 1, got {self.ppl_queue_batches}.")
        if self.policy_loss not in POLICY_LOSSES:
            raise ValueError(
                f"policy_loss must be one of {POLICY_LOSSES}, got {self.policy_loss!r}; Clip-Cov and KL-Cov are "
                "alternative losses and cannot be combined."
            )
        for name in ("clip_cov_ratio", "kl_cov_ratio"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}.")
        if not self.clip_cov_lb < self.clip_cov_ub:
            raise ValueError(f"clip_cov_lb must be below clip_cov_ub, got {self.clip_cov_lb} >= {self.clip_cov_ub}.")
        for name in ("kl_cov_coef", "entropy_advantage_alpha"):
            if not getattr(self, name) >= 0:  # NaN too
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if not self.entropy_advantage_kappa > 0:
            raise ValueError(f"entropy_advantage_kappa must be > 0, got {self.entropy_advantage_kappa}.")
        if self.policy_loss == "kl_cov" and not self.kl_cov_keep_ppo_clip and self.loss_type not in PPO_CLIPPED_LOSSES:
            raise ValueError(
                f"policy_loss='kl_cov' removes PPO's ratio clip, which loss_type={self.loss_type!r} does not use; set "
                f"loss_type to one of {PPO_CLIPPED_LOSSES}, or kl_cov_keep_ppo_clip=True to keep {self.loss_type!r} "
                "as it is."
            )
        if self.asymmetric_advantages and self.multi_objective_aggregation == "normalize_then_sum":
            raise ValueError(
                "asymmetric_advantages=True replaces the normalization of the weighted reward sum, which "
                "multi_objective_aggregation='normalize_then_sum' does not compute; set "
                "multi_objective_aggregation='sum_then_normalize'."
            )


def inherited_help(name: str) -> dict:
    """The base field's help text, for a subclass that only changes its default."""
    return AdvantageShapingConfig.__dataclass_fields__[name].metadata
