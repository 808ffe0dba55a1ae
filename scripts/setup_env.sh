#!/usr/bin/env bash
# Create (or reuse) .venv in the repository root and install the package with its test and demo extras.
# Idempotent: a second run only checks that everything is installed. Called by the other scripts.
#
# Environment knobs:
#   PYTHON            interpreter used to create .venv (default: python3)
#   TORCH_SPEC        torch requirement (default: torch==2.13.0, the CPU build that lies on our machines' disk)
#   TORCH_INDEX_URL   extra index for torch, e.g. https://download.pytorch.org/whl/cpu with TORCH_SPEC=torch==2.13.0+cpu
#                     on a machine where plain PyPI would give a multi-GB CUDA build
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PY="$ROOT/.venv/bin/python"
if [ ! -x "$PY" ]; then
    echo "[setup] creating virtual environment in $ROOT/.venv"
    "$PYTHON" -m venv "$ROOT/.venv"
fi
PIP=("$PY" -m pip --disable-pip-version-check -q)
# torch first, pinned: installing it before the package keeps pip from resolving `torch` to another build.
# torch's version from its metadata, not by importing it: torch imported before numpy is installed warns.
torch_version() { "$PY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true; }
if [[ "$(torch_version)" != 2.13.0* ]]; then
    echo "[setup] installing $TORCH_SPEC"
    torch_args=("$TORCH_SPEC")
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        torch_args+=(--extra-index-url "$TORCH_INDEX_URL")
    fi
    "${PIP[@]}" install "${torch_args[@]}"
fi
# A dependency must never swap the installed torch for another build.
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==$(torch_version)" >"$CONSTRAINTS"
echo "[setup] installing trl-policysplit and its dependencies"
"${PIP[@]}" install -c "$CONSTRAINTS" -e "$ROOT[dev,demo]"
