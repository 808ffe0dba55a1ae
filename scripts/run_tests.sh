#!/usr/bin/env bash
# Set up the environment and run the whole test suite (lint, unit, integration and multi-process tests).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "[tests] ruff"
.venv/bin/ruff check trl_policysplit benchmarks tests scripts
echo "[tests] pytest"
status=0
.venv/bin/python -m pytest -p no:cacheprovider "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "[tests] pytest collected no tests: failing" >&2
    exit 1
fi
exit "$status"
