#!/usr/bin/env bash
# Kernel throughput, reconstruction-step time and FP32 inference speed of
# packptq and of PyTorch (CPU, eager) side by side, same shapes, same thread
# count, same run. Needs a built tree (build/) and, for the peer column,
# Debian's python3-torch and python3-torchvision with libopenblas0-pthread
# (with Debian's default reference BLAS, torch's GEMMs are about 40x slower,
# which would flatter packptq); results go to docs/PERFORMANCE.md by hand.
# Usage: bash tools/bench_compare.sh [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-$(nproc)}"
echo "== machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $threads"
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)
echo "== BLAS behind PyTorch: $blas"
case "$blas" in
  *openblas*) ;;
  *)
    echo "bench_compare: PyTorch would run its GEMMs on $blas, not OpenBLAS: a peer 40x too slow." >&2
    echo "  Install it (apt-get install libopenblas0-pthread) or select it with" >&2
    echo "  update-alternatives --config libblas.so.3-x86_64-linux-gnu, then rerun." >&2
    exit 1
    ;;
esac
echo "== packptq"
OMP_WAIT_POLICY=passive build/tools/bench_kernels --threads "$threads"
echo "== PyTorch"
/usr/bin/python3 tools/bench_torch.py --threads "$threads"
# Every instruction set this CPU runs (bench_kernels loops over them itself).
isas=$(build/tools/packptq --version | sed -n 's/^cpu instruction sets: \(.*\) (in use.*/\1/p' | tr -d ,)
# per_isa TITLE PROGRAM: the packptq program once per instruction set.
per_isa() {
  for isa in $isas; do
    echo "== packptq $1, PACKPTQ_CPU_ISA=$isa"
    PACKPTQ_CPU_ISA=$isa OMP_WAIT_POLICY=passive "build/tools/$2" --threads "$threads"
  done
}
per_isa "reconstruction step" bench_recon
echo "== PyTorch reconstruction step"
/usr/bin/python3 tools/bench_torch.py --threads "$threads" --recon
per_isa "FP32 inference" bench_infer
echo "== PyTorch FP32 inference (torchvision's models)"
/usr/bin/python3 tools/bench_torch.py --threads "$threads" --infer
