#!/usr/bin/env bash
# The GPU checks in one go (under 10 minutes on one H100/H200): the `gpu` tests, then the GPU benchmark.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, after `make test` has built .venv
#
# Writes benchmarks/results/gpu_check.log (everything printed) and appends the benchmark's figures to
# benchmarks/results/gpu_throughput.json, which benchmarks/RESULTS.md cites.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
LOG=benchmarks/results/gpu_check.log
mkdir -p benchmarks/results
{
    echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: none"
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
    HF_HUB_OFFLINE=1 timeout 300 "$PY" -m pytest -m gpu -v -p no:cacheprovider tests/test_gpu.py
    tests=$?
    HF_HUB_OFFLINE=1 timeout 240 "$PY" benchmarks/gpu_throughput.py
    bench=$?
    echo "# gpu tests exit $tests, benchmark exit $bench"
    [ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
} 2>&1 | tee "$LOG"
