"""What the studies share: the demo task's rewards, the machine's description, strict-JSON reports."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]  # the repository: recipes/ and scripts/ live here
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


def finite_or_none(value: Any) -> Any:
    """The report with NaN and infinities as null, so that the file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    return value


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a study's worker process: this repository importable, no tokenizer threads, ``extra``."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }
