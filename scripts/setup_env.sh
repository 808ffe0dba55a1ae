#!/usr/bin/env bash
# Create (or reuse) .venv in the repository root and install the package with its test and demo extras.
# Idempotent: a second run only checks that everything is installed. Sourced by the other scripts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    echo "[setup] creating virtual environment in $ROOT/.venv"
    "$PYTHON" -m venv "$ROOT/.venv"
fi
PIP=("$ROOT/.venv/bin/python" -m pip --disable-pip-version-check -q)
# torch first, pinned: the CPU build of 2.13.0 is what the project is tested with, and installing it before the
# package keeps pip from resolving `torch` to a multi-GB CUDA build.
if ! "$ROOT/.venv/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null; then
    echo "[setup] installing torch==2.13.0"
    "${PIP[@]}" install torch==2.13.0
fi
echo "[setup] installing trl-policysplit and its dependencies"
"${PIP[@]}" install -e "$ROOT[dev,demo]"
