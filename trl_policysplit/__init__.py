"""Exploration methods for RL of LLMs as drop-in TRL trainers: Policy Split, AsymGRPO, DiPO."""

from . import functional, modes
from .modes import DEFAULT_HIGH_ENTROPY_PROMPT, to_high_entropy
from .policy_split_config import PolicySplitConfig
from .policy_split_trainer import PolicySplitTrainer

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_HIGH_ENTROPY_PROMPT",
    "PolicySplitConfig",
    "PolicySplitTrainer",
    "functional",
    "modes",
    "to_high_entropy",
]
