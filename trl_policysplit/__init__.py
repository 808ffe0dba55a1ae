"""Exploration methods for RL of LLMs as drop-in TRL trainers: Policy Split, AsymGRPO, DiPO."""

from . import functional, modes
from .asym_grpo import AsymGRPOConfig, AsymGRPOTrainer, DiPOConfig, DiPOTrainer
from .modes import DEFAULT_HIGH_ENTROPY_PROMPT, to_high_entropy
from .policy_split_config import PolicySplitConfig
from .policy_split_trainer import PolicySplitTrainer
from .shaping_config import AdvantageShapingConfig
from .shaping_trainer import AdvantageShapingTrainer

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_HIGH_ENTROPY_PROMPT",
    "AdvantageShapingConfig",
    "AdvantageShapingTrainer",
    "AsymGRPOConfig",
    "AsymGRPOTrainer",
    "DiPOConfig",
    "DiPOTrainer",
    "PolicySplitConfig",
    "PolicySplitTrainer",
    "functional",
    "modes",
    "to_high_entropy",
]
