#!/usr/bin/env bash
# The CUDA path of the trainer in one short timed run (training/gpu_check.py):
# Megatron-Core GPT with the stock CUDA layer spec, bf16, tokens/s and MFU
# against the GPU's dense bf16 peak. Prints one JSON line.
#
#   scripts/gpu_check.sh                    # 12 layers x 768, seq 1024, batch 16, 20 timed steps
#   scripts/gpu_check.sh --layers 24 --hidden 1024 --heads 16
#   GPU_PEAK_TFLOPS=989 scripts/gpu_check.sh   # a GPU the peak table does not know
#
# Without CUDA it says so and exits 0 having measured nothing. GPU_CHECK_TIMEOUT
# (default 600 s) bounds the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
timeout "${GPU_CHECK_TIMEOUT:-600}" "$PY" -m training.gpu_check "$@"
echo "gpu_check: $(( $(date +%s) - start )) s wall" >&2
