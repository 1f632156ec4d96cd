#!/usr/bin/env bash
# The quality table of the fixtures: `packptq quantize` with the reference's
# evaluation settings (channel-wise weights, 1024 calibration images, batch
# 16, seed 1005, hard rounding) for each fixture, bit width and method, one
# run at a time. Each run leaves its log, models and report.json under
# OUT/<fixture>_w<bits>_<method>/; the table (top-1 and wall time) is printed
# at the end and written to OUT/table.md.
# Usage: bash tools/quality_table.sh [OUT] [iterations]
#   FIXTURES, BITS and METHODS (space-separated) narrow the sweep; SAMPLES
#   sets --calibration_samples; SEED replaces --seed 1005 (runs get an _s<seed>
#   suffix); MIXED=1 adds --enable_mixed_precision (a
#   quick smoke sweep: SAMPLES=32 MIXED=1 ... OUT 2); SOFT=1 adds
#   --keep_soft_rounding (suffix _soft); DATASET replaces the fixtures'
#   fashion32 folder.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/quality}"
iterations="${2:-2000}"
fixtures_dir="${PACKPTQ_FIXTURES:-../shared/fixtures}"
dataset="${DATASET:-$fixtures_dir/fashion32}"
fixtures=(${FIXTURES:-resnet18_w16 mobilenetv2_w050 deit_t32 swin_t32})
bits_list=(${BITS:-4 3})
methods=(${METHODS:-pack rtn qdrop brecq adaround})
threads="${THREADS:-$(nproc)}"
samples="${SAMPLES:-1024}"
seed="${SEED:-1005}"
extra=()
suffix=""
if [[ "$seed" != 1005 ]]; then suffix="_s$seed"; fi
if [[ "${MIXED:-0}" == 1 ]]; then extra=(--enable_mixed_precision); suffix="${suffix}_mixed"; fi
if [[ "${SOFT:-0}" == 1 ]]; then extra+=(--keep_soft_rounding); suffix="${suffix}_soft"; fi
mkdir -p "$out"

for bits in "${bits_list[@]}"; do
  for fixture in "${fixtures[@]}"; do
    for method in "${methods[@]}"; do
      run="$out/${fixture}_w${bits}_${method}${suffix}"
      if [[ -f "$run/report.json" ]]; then continue; fi  # resumable sweep
      model="$fixtures_dir/models/$fixture"
      name=$(sed -n 's/.*"model_name": *"\([^"]*\)".*/\1/p' "$model/config.json")
      echo "== $fixture W${bits}A${bits}${suffix} $method ($iterations iterations)"
      start=$(date +%s%N)
      build/tools/packptq quantize --dataset_path "$dataset" \
        --model_name "$name" --weights "$model/model.safetensors" \
        --model_config "$model/config.json" --weight_bits "$bits" --activation_bits "$bits" \
        --weight_channel_wise --calibration_samples "$samples" --calibration_iterations "$iterations" \
        --batch_size 16 --seed "$seed" --method "$method" --threads "$threads" \
        --output_dir "$run" --report_json "$run/report.tmp.json" "${extra[@]}" > "$run.stdout" 2>&1 ||
        { echo "failed: see $run.stdout"; exit 1; }
      end=$(date +%s%N)
      echo $(( (end - start) / 1000000000 )) > "$run/wall_seconds"
      mv "$run/report.tmp.json" "$run/report.json"
      grep -E "quantized top-1" "$run.stdout" | tail -1
    done
  done
done

# fixture | bits | FP32 | method top-1 (wall s) ...
{
  printf '| fixture | bits | FP32 |'
  for method in "${methods[@]}"; do printf ' %s |' "$method"; done
  printf '\n|---|---|---|'
  for method in "${methods[@]}"; do printf -- '---|'; done
  printf '\n'
  for bits in "${bits_list[@]}"; do
    for fixture in "${fixtures[@]}"; do
      fp32=$(sed -n 's/.*"fp32_top1": *\([0-9.]*\).*/\1/p' "$out/${fixture}_w${bits}_${methods[0]}${suffix}/report.json" | head -1)
      printf '| %s | W%sA%s%s | %s |' "$fixture" "$bits" "$bits" "$suffix" "$fp32"
      for method in "${methods[@]}"; do
        run="$out/${fixture}_w${bits}_${method}${suffix}"
        top1=$(sed -n 's/.*"quant_top1": *\([0-9.]*\).*/\1/p' "$run/report.json" | head -1)
        printf ' %s (%s s) |' "$top1" "$(cat "$run/wall_seconds")"
      done
      printf '\n'
    done
  done
} | tee "$out/table.md"
