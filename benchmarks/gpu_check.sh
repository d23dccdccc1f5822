#!/usr/bin/env bash
# The GPU check: the cuda-marked tests, then the throughput table (benchmarks/gpu_throughput.py); under 8 minutes on
# one GPU. Run from the repository root with the package installed (make setup):
#   bash benchmarks/gpu_check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name())"
$PY -m pytest -q -m cuda -p no:xdist -o addopts="" tests/test_cuda.py 2>&1 | tee "$OUT/tests.txt"
$PY benchmarks/gpu_throughput.py --out "$OUT/throughput.md"
