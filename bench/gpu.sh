#!/usr/bin/env bash
# The GPU checks in one run, under 8 minutes on one CUDA GPU (see bench/gpu.py):
#   bash bench/gpu.sh            # on a GPU machine: training step, peak memory, Whisper, ser.predict
#   bash bench/gpu.sh --smoke    # the same sections on the CPU with tiny sizes (the suite runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec "${PYTHON:-python}" bench/gpu.py "$@"
