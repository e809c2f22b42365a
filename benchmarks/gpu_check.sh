#!/usr/bin/env bash
# GPU checks for the local backend, in one go (~4-6 minutes on an H100/H200), the result that matters first:
#   1. benchmarks/local_throughput.py on the Llama-3.2-1B shape (baseline Trainer vs ours)
#   2. the tests marked `gpu` (varlen kernel vs SDPA, bf16 + compiled training, a pause and resume, QLoRA when
#      bitsandbytes is there, log lines read a step late without waiting for the next step)
# Installs nothing: it needs only what the `local` extra names (torch, transformers, peft, accelerate,
# safetensors; pytest for step 2), which GPU images usually have; the QLoRA test also needs bitsandbytes (skipped
# without it: put a wheel on PYTHONPATH first). Logs and JSON go to $OUT (default /tmp/fth-gpu); extra arguments
# go to the benchmark (e.g. --tokens-per-step 16384,32768, or --profile DIR for the kernel breakdown).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/fth-gpu}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"

if ! "$PY" -c "import torch, transformers, peft, accelerate, safetensors" 2>/dev/null; then
    echo "missing packages: pip install -e '.[local]' (torch, transformers, peft, accelerate, safetensors)"
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'cuda', torch.cuda.is_available())"

status=0
timeout "${BENCH_TIMEOUT:-300}" "$PY" benchmarks/local_throughput.py --json "$OUT/local_throughput.json" "$@" \
    2>&1 | tee "$OUT/local_throughput.log" || status=1
if "$PY" -c "import pytest" 2>/dev/null; then
    timeout "${TEST_TIMEOUT:-200}" "$PY" -m pytest tests/local/test_gpu.py -m gpu -q -p no:cacheprovider \
        -o addopts="" 2>&1 | tee "$OUT/gpu_tests.log" || status=1
else
    echo "pytest not installed: skipping the gpu tests"
fi
exit $status
