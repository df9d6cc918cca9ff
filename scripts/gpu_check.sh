#!/bin/bash
# Unattended GPU check (one H100/H200, no internet, at most 8 minutes): hf backend vs batched generate at a 7B
# shape, vLLM if installed, a Table 2 full-finetuning step of a ~1B shape with accelerate + FSDP, and
# `raftlab study --quick` on CUDA. Writes one JSON (default gpu_check.json; see scripts/gpu_check.py).
#   bash scripts/gpu_check.sh [--out FILE] [--budget-s 450] [--dry-run]
# Without CUDA it stops at once with exit code 2 (use --dry-run to check the script on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
exec timeout --signal=TERM --kill-after=10 480 "$PYTHON" scripts/gpu_check.py "$@"
