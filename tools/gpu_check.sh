#!/usr/bin/env bash
# Checks of the CUDA backend on a machine with an NVIDIA GPU (CUDA toolkit,
# cuBLAS and cuDNN under /usr/local/cuda): builds with the backend, runs the
# whole test suite (the CUDA-vs-CPU cases of test_backends then run instead
# of reporting Skipped), and quantizes one fixture on --device cuda and on
# the CPU with the same flags, comparing packs and top-1 (within 0.5).
# Usage: bash tools/gpu_check.sh [OUT] [fixture]      (default runs/gpu_check resnet18_w16)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/gpu_check}"
fixture="${2:-resnet18_w16}"
fixtures_dir="${PACKPTQ_FIXTURES:-../shared/fixtures}"
mkdir -p "$out"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
bash tools/setup_debian.sh build
build/tools/packptq --version | tee "$out/version.txt"
grep -q "cpu, cuda$" "$out/version.txt" ||
  { echo "the CUDA backend was not built (no nvcc, cuBLAS or cuDNN found) or sees no GPU"; exit 1; }

# The ONNX export tests install ONNX Runtime from the npm registry, which a
# GPU machine without network cannot reach; the export does not touch the GPU.
OMP_WAIT_POLICY=passive ctest --test-dir build --output-on-failure --parallel "$(nproc)" \
  --timeout 2400 -E onnx 2>&1 | tee "$out/ctest.txt"
if grep -q "skipped: no CUDA device" build/Testing/Temporary/LastTest.log; then
  echo "CUDA cases were skipped although a GPU is present"; exit 1
fi

model="$fixtures_dir/models/$fixture"
name=$(sed -n 's/.*"model_name": *"\([^"]*\)".*/\1/p' "$model/config.json")
for device in cpu cuda; do
  build/tools/packptq quantize --dataset_path "$fixtures_dir/fashion32" --model_name "$name" \
    --weights "$model/model.safetensors" --model_config "$model/config.json" \
    --weight_bits 4 --activation_bits 4 --weight_channel_wise --calibration_iterations 500 \
    --device "$device" --output_dir "$out/$device" --report_json "$out/$device.json" |
    tail -1
done
python3 - "$out/cpu.json" "$out/cuda.json" <<'PY'
import json, sys
cpu, cuda = (json.load(open(p)) for p in sys.argv[1:3])
same_packs = [p["units"] for p in cpu["packs"]] == [p["units"] for p in cuda["packs"]]
gap = abs(cpu["quant_top1"] - cuda["quant_top1"])
print(f"packs equal: {same_packs}; top-1 cpu {cpu['quant_top1']} cuda {cuda['quant_top1']} "
      f"(gap {gap:.2f}); wall cpu {cpu['timing']['total']:.1f} s, cuda {cuda['timing']['total']:.1f} s")
sys.exit(0 if same_packs and gap <= 0.5 else 1)
PY
