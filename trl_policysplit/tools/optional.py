"""Optional packages: a missing one is one line that names the extra to install, checked before any work starts."""

from __future__ import annotations

import importlib.util

# module -> (distribution, extra of this package that installs it)
OPTIONAL: dict[str, tuple[str, str]] = {
    "matplotlib": ("matplotlib", "demo"),
    "gguf": ("gguf", "demo"),
    "deepspeed": ("deepspeed", "deepspeed"),
    "vllm": ("vllm", "vllm"),
}


class MissingOptionalPackage(RuntimeError):
    """An optional package a command needs is not installed."""


def require(module: str, purpose: str) -> None:
    """Raise `MissingOptionalPackage` (one line: what needs it and the pip command) when `module` is missing."""
    if importlib.util.find_spec(module) is not None:
        return
    distribution, extra = OPTIONAL[module]
    raise MissingOptionalPackage(
        f"{purpose} needs {distribution}, which is not installed: pip install 'trl-policysplit[{extra}]' "
        f"(or pip install {distribution})"
    )
