"""AsymGRPO (arXiv 2604.04894) as a drop-in `GRPOConfig`/`GRPOTrainer` replacement.

An [`AdvantageShapingTrainer`] with other config defaults: the shaping itself lives in one place and the same flag
works on [`PolicySplitConfig`]. DiPO's classes, built the same way, are in `dipo.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .shaping_config import AdvantageShapingConfig, inherited_help
from .shaping_trainer import AdvantageShapingTrainer


@dataclass
class AsymGRPOConfig(AdvantageShapingConfig):
    """GRPOConfig for [`AsymGRPOTrainer`]: the asymmetric advantage rule is on (beta_pos 0.9, beta_neg 0.4)."""

    asymmetric_advantages: bool = field(default=True, metadata=inherited_help("asymmetric_advantages"))


class AsymGRPOTrainer(AdvantageShapingTrainer):
    """Drop-in replacement for `GRPOTrainer` with AsymGRPO's asymmetric advantages; takes an [`AsymGRPOConfig`]."""

    _tag_names = ["trl", "grpo", "asym-grpo"]
    _name = "AsymGRPO"
    _config_class = AsymGRPOConfig
