"""AsymGRPO (arXiv 2604.04894) and DiPO (arXiv 2604.13902) as drop-in `GRPOConfig`/`GRPOTrainer` replacements.

Both are [`AdvantageShapingTrainer`] with other config defaults: the shaping itself lives in one place and the
same flags work on [`PolicySplitConfig`].
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .shaping_config import AdvantageShapingConfig
from .shaping_trainer import AdvantageShapingTrainer


def _help(name: str):
    """The base field's help text, for a subclass that only changes its default."""
    return AdvantageShapingConfig.__dataclass_fields__[name].metadata


@dataclass
class AsymGRPOConfig(AdvantageShapingConfig):
    """GRPOConfig for [`AsymGRPOTrainer`]: the asymmetric advantage rule is on (beta_pos 0.9, beta_neg 0.4)."""

    asymmetric_advantages: bool = field(default=True, metadata=_help("asymmetric_advantages"))


class AsymGRPOTrainer(AdvantageShapingTrainer):
    """Drop-in replacement for `GRPOTrainer` with AsymGRPO's asymmetric advantages; takes an [`AsymGRPOConfig`]."""

    _tag_names = ["trl", "grpo", "asym-grpo"]
    _name = "AsymGRPO"
    _config_class = AsymGRPOConfig


@dataclass
class DiPOConfig(AdvantageShapingConfig):
    """GRPOConfig for [`DiPOTrainer`]: GRPO advantages plus perplexity-based reward reallocation (ppl_alpha 0.1)."""

    perplexity_reallocation: bool = field(default=True, metadata=_help("perplexity_reallocation"))


class DiPOTrainer(AdvantageShapingTrainer):
    """Drop-in replacement for `GRPOTrainer` with DiPO's perplexity-based reward reallocation; takes a
    [`DiPOConfig`]."""

    _tag_names = ["trl", "grpo", "dipo"]
    _name = "DiPO"
    _config_class = DiPOConfig
