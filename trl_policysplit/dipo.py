"""DiPO (arXiv 2604.13902) as a drop-in `GRPOConfig`/`GRPOTrainer` replacement.

An [`AdvantageShapingTrainer`] with other config defaults: the reallocation itself lives in one place and the same
flag works on [`PolicySplitConfig`] and [`AsymGRPOConfig`].
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .shaping_config import AdvantageShapingConfig, inherited_help
from .shaping_trainer import AdvantageShapingTrainer


@dataclass
class DiPOConfig(AdvantageShapingConfig):
    """GRPOConfig for [`DiPOTrainer`]: GRPO advantages plus perplexity-based reward reallocation (ppl_alpha 0.1)."""

    perplexity_reallocation: bool = field(default=True, metadata=inherited_help("perplexity_reallocation"))


class DiPOTrainer(AdvantageShapingTrainer):
    """Drop-in replacement for `GRPOTrainer` with DiPO's perplexity-based reward reallocation; takes a
    [`DiPOConfig`]."""

    _tag_names = ["trl", "grpo", "dipo"]
    _name = "DiPO"
    _config_class = DiPOConfig
