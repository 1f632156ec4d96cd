#!/usr/bin/env bash
# Fuzzes the loaders of files that come from strangers with libFuzzer
# (Debian's clang, AddressSanitizer and UndefinedBehaviorSanitizer):
#
#   bash tools/fuzz.sh SECONDS [TARGET...]
#
# TARGETs (tests/fuzz/<target>.cpp), all by default, run one after another
# for SECONDS each:
#   fuzz_safetensors   safetensors header and tensors
#   fuzz_torch_zip     torch.save zip archives through the restricted unpickler
#   fuzz_torch_legacy  legacy torch.save streams through the same unpickler
#   fuzz_model_config  config.json, and the net it configures
#   fuzz_quant_model   packptq quantized model files
#   fuzz_jpeg          ImageFolder images: decoding and both transforms
#
# The targets are built in build-fuzz (cmake -DPACKPTQ_FUZZ=ON with clang++).
# Seed corpora are made from tests/data and the fixtures ($PACKPTQ_FIXTURES_DIR,
# default ../shared/fixtures); the quantized-model seeds are written by a
# small rtn run of packptq ($PACKPTQ_BIN, default build/tools/packptq, else
# the one built here). Each target's corpus grows in build-fuzz/corpus/<target>
# and is kept between runs. A crash, a sanitizer report, a timeout (25 s per
# input: the inputs take milliseconds to a second, more on a 2-core machine
# busy with other work) or running out of memory (2 GiB) is a bug: the input
# is left in build-fuzz/findings/<target>/ and the script goes on with the
# next target.
# Minimize an input with `build-fuzz/tests/fuzz/<target> -minimize_crash=1
# -runs=100000 INPUT`, fix the loader and add the input to
# tests/data/fuzz_regressions/ (tests/test_fuzz_regressions.cpp loads each).
# Exit status 1 when any target found something. Each target's last lines
# (executions, exec/s, cov:, ft:, corpus size) are printed at the end and
# kept in build-fuzz/findings/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(fuzz_safetensors fuzz_torch_zip fuzz_torch_legacy fuzz_model_config fuzz_quant_model
             fuzz_jpeg)
if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
seconds=$1
shift
targets=("${@:-${all_targets[@]}}")
for target in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $target "* ]] || { echo "unknown target '$target'" >&2; exit 2; }
done

build=build-fuzz
fixtures=${PACKPTQ_FIXTURES_DIR:-../shared/fixtures}
# -O1 keeps the sanitizers' reports readable and the build short.
cmake -S . -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" -DPACKPTQ_FUZZ=ON \
  -DPACKPTQ_BUILD_TESTS=OFF -DPACKPTQ_CUDA=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

# Seed files are copied in under their content's hash, as libFuzzer names its own.
seed() {
  local corpus=$1
  shift
  for file in "$@"; do cp "$file" "$corpus/$(sha1sum "$file" | cut -c1-40)"; done
}

quantized_seeds() {
  local out=$build/quantized_seed
  if ! compgen -G "$out/trained_models/*.safetensors" >/dev/null; then
    local packptq=${PACKPTQ_BIN:-build/tools/packptq}
    if [[ ! -x $packptq ]]; then
      cmake --build "$build" -j "$(nproc)" --target packptq
      packptq=$build/tools/packptq
    fi
    # The narrow network of the training-checkpoint tests: files of a few tens of KB.
    rm -rf "$out"
    OMP_NUM_THREADS=1 "$packptq" --dataset_path "$fixtures/fashion32" --model_name resnet18 \
      --model_config tests/data/training_checkpoints/config.json \
      --weights tests/data/training_checkpoints/bare.pth --method rtn --calibration_samples 16 \
      --analysis_images 0 --threads 1 --output_dir "$out" >/dev/null
  fi
  echo "$out"/trained_models/*.safetensors "$out"/inited_models/*.safetensors
}

make_seed_corpus() {
  local target=$1 corpus=$build/corpus/$1
  mkdir -p "$corpus"
  case $target in
    fuzz_safetensors)
      seed "$corpus" "$fixtures/models/resnet18_w16/golden.safetensors" $(quantized_seeds) ;;
    fuzz_torch_zip)
      seed "$corpus" $(ls tests/data/training_checkpoints/*.pth | grep -v _legacy) ;;
    fuzz_torch_legacy)
      seed "$corpus" tests/data/legacy_checkpoint.pth tests/data/training_checkpoints/*_legacy.pth ;;
    fuzz_model_config)
      # Without the fixtures' descriptive fields (parameter counts, file
      # lists), which would keep the target from building their nets.
      for config in "$fixtures"/models/*/config.json tests/data/training_checkpoints/config.json; do
        python3 -c 'import json, sys
c = json.load(open(sys.argv[1]))
for key in ("num_params", "num_state_dict_tensors", "train_steps", "golden_input_files"):
    c.pop(key, None)
json.dump(c, sys.stdout, indent=2)' "$config" >"$build/seed_config.json"
        seed "$corpus" "$build/seed_config.json"
      done ;;
    fuzz_quant_model)
      seed "$corpus" $(quantized_seeds) ;;
    fuzz_jpeg)
      seed "$corpus" tests/data/synthetic_*.jpg \
        $(find "$fixtures/fashion32/val" -name '*.jpg' | sort | awk 'NR % 50 == 1') ;;
  esac
}

# UBSan reports are bugs like ASan's: stop at the first one with its stack.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
found=0
for target in "${targets[@]}"; do
  make_seed_corpus "$target"
  findings=$build/findings/$target
  mkdir -p "$findings"
  echo "== $target: $seconds s"
  status=0
  OMP_NUM_THREADS=1 "$build/tests/fuzz/$target" "$build/corpus/$target" \
    -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$findings/" >"$build/findings/$target.log" 2>&1 || status=$?
  if [[ $status -ne 0 ]]; then
    found=1
    # The input of this run: libFuzzer names it crash-, oom-, timeout- or leak-<sha1>.
    echo "$target FOUND A BUG (exit $status): $(ls -t "$findings" | head -1)"
    grep -m3 -E 'ERROR|runtime error|SUMMARY' "$build/findings/$target.log" || true
  fi
  grep -E '^#[0-9]+.*(DONE|cov:)' "$build/findings/$target.log" | tail -1
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
    "$build/findings/$target.log" || true
  echo "corpus: $(ls "$build/corpus/$target" | wc -l) files"
done
exit "$found"
