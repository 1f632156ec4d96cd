#!/usr/bin/env bash
# The benchmark programs at their smallest sizes: each runs every case it
# has and prints its figures (which are not checked: speed lives in the
# benchmarks, not in tests), and a bad flag gives the usage and exit 2.
# Usage: test_bench_tools.sh BENCH_KERNELS BENCH_RECON BENCH_INFER
set -euo pipefail
kernels="$1" recon="$2" infer="$3"
out=$(mktemp)
trap 'rm -f "$out"' EXIT

expect_lines() {  # expect_lines PATTERN COUNT WHAT
  local found
  found=$(grep -cE "$1" "$out" || true)
  if [[ "$found" != "$2" ]]; then
    echo "FAIL: $3: $found lines match '$1', expected $2" >&2
    cat "$out" >&2
    exit 1
  fi
}

"$kernels" --quick --threads 2 > "$out"
isas=$(grep -c '^kernels: ' "$out")
[[ "$isas" -ge 1 ]] || { echo "FAIL: bench_kernels timed no instruction set" >&2; exit 1; }
expect_lines '^  square 1024 .* GFLOP/s' "$isas" "bench_kernels: GEMMs"
expect_lines '^  depthwise 32ch 3x3 at 112x112 .*\|.*\|' "$isas" "bench_kernels: convolutions"
expect_lines ' ns/element$' $((7 * isas)) "bench_kernels: element-wise passes"

"$recon" --threads 2 --batch 1 --iterations 1 --units resnet18:layer1.0,mobilenetv2:features.2 > "$out"
expect_lines '^  (resnet18 +layer1\.0|mobilenetv2 +features\.2) .* ms/iteration$' 2 "bench_recon"

"$infer" --threads 2 --batch 1 --repeats 1 --models resnet18,deit_small > "$out"
expect_lines '^  (resnet18|deit_small) +batch +1 .* img/s' 2 "bench_infer"

for program in "$kernels" "$recon" "$infer"; do
  status=0
  "$program" --no-such-flag > /dev/null 2> "$out" || status=$?
  [[ "$status" == 2 ]] || { echo "FAIL: $program --no-such-flag exited $status, not 2" >&2; exit 1; }
  expect_lines '^usage: ' 1 "$program --no-such-flag"
done
echo "bench tools: all cases ran"
