#!/usr/bin/env bash
# Kernel throughput of packptq and of PyTorch (CPU) side by side, same shapes,
# same thread count, same run. Needs a built tree (build/) and Debian's
# python3-torch for the peer column; results go to docs/PERFORMANCE.md by hand.
# Usage: bash tools/bench_compare.sh [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-$(nproc)}"
echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $threads"
echo "== packptq"
OMP_WAIT_POLICY=passive build/tools/bench_kernels --threads "$threads"
echo "== PyTorch"
/usr/bin/python3 tools/bench_torch.py --threads "$threads"
