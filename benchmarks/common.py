"""What the studies share: the demo task's rewards, the machine's description, strict-JSON reports."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from trl_policysplit.tools.cli import finite_or_none  # noqa: F401  (re-exported: the studies' reports)

REPO = Path(__file__).resolve().parent.parent  # this folder lives in the repository, next to recipes/ and scripts/
REWARD_FUNCS = ["arithmetic", "format"]
REWARD_WEIGHTS = [1.0, 0.25]  # the demo recipe's


def device_description(device: str, threads: int | None) -> str:
    import torch

    if device == "cuda":
        return f"cuda: {torch.cuda.get_device_name()} (torch {torch.__version__})"
    return (
        f"cpu: {platform.machine()}, {os.cpu_count()} cores, {threads or torch.get_num_threads()} torch threads "
        f"per run (torch {torch.__version__})"
    )


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a study's worker process: this repository importable, no tokenizer threads, ``extra``."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }
