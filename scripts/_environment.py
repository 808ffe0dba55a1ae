"""Imported first by every script here: when `trl_policysplit` is not importable (a fresh shell, another Python),
say in one line how to run the script instead of a traceback."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def require_package(script: str) -> None:
    if importlib.util.find_spec("trl_policysplit") is not None:
        return
    venv = Path(__file__).resolve().parent.parent / ".venv"
    setup = "" if venv.is_dir() else "bash scripts/setup_env.sh, then "
    sys.stderr.write(
        f"{script}: error: trl_policysplit is not installed for {sys.executable}; {setup}run "
        f"`source .venv/bin/activate` in this shell, or `.venv/bin/python scripts/{script} ...`\n"
    )
    raise SystemExit(2)
