"""Exploration methods for RL of LLMs as drop-in TRL trainers: Policy Split, AsymGRPO, DiPO."""

from . import _trl

_trl.check_private_surface()  # before the trainers: a TRL that changed a hook they override fails here, in one line

from . import functional, modes  # noqa: E402
from .asym_grpo import AsymGRPOConfig, AsymGRPOTrainer  # noqa: E402
from .dipo import DiPOConfig, DiPOTrainer  # noqa: E402
from .modes import DEFAULT_HIGH_ENTROPY_PROMPT, to_high_entropy  # noqa: E402
from .policy_split_config import PolicySplitConfig  # noqa: E402
from .policy_split_trainer import PolicySplitTrainer  # noqa: E402
from .shaping_config import AdvantageShapingConfig  # noqa: E402
from .shaping_trainer import AdvantageShapingTrainer  # noqa: E402

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
