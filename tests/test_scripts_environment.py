"""The scripts under scripts/, run by a Python without the package (a fresh shell), say how to run them instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "plot.py", "benchmark.py"])
def test_without_the_package_a_script_says_how_to_run_it(script: str, tmp_path) -> None:
    # -S: no site-packages, so no trl_policysplit (as the system Python of a fresh shell); no PYTHONPATH either.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    completed = subprocess.run(
        [sys.executable, "-S", str(REPO / "scripts" / script), "runs/demo"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert completed.returncode == 2
    assert completed.stdout == ""
    message = completed.stderr.strip()
    assert "\n" not in message and message.startswith(f"{script}: error: trl_policysplit is not installed for ")
    assert "`source .venv/bin/activate`" in message and f"`.venv/bin/python scripts/{script} ...`" in message


def test_setup_reads_torch_version_without_importing_torch() -> None:
    """Importing torch before numpy is installed prints `UserWarning: Failed to initialize NumPy`: the set-up reads
    the installed version from the package metadata instead."""
    import importlib.metadata

    setup = (REPO / "scripts" / "setup_env.sh").read_text()
    assert "import torch" not in setup
    helper = next(line for line in setup.splitlines() if line.startswith("torch_version()"))
    completed = subprocess.run(
        ["bash", "-c", f"PY={sys.executable}; {helper}; torch_version"], capture_output=True, text=True, timeout=60
    )
    assert completed.stdout.strip() == importlib.metadata.version("torch") and completed.stderr == ""
