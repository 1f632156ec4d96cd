#!/usr/bin/env bash
# Builds the whole test suite with sanitizers and runs it:
#
#   bash tools/sanitize.sh address   # AddressSanitizer + UndefinedBehaviorSanitizer (g++), build-asan
#   bash tools/sanitize.sh thread    # ThreadSanitizer (clang++, LLVM OpenMP + Archer), build-tsan
#
# Any report fails its test: ASan aborts, UBSan is built not to recover,
# TSan halts on the first race. OpenMP hides its synchronization from TSan
# unless the runtime tells it: the thread build uses LLVM's libomp (clang's
# -fopenmp) with the Archer tool (libarcher.so from Debian's libomp-14-dev)
# loaded through OMP_TOOL_LIBRARIES; GCC's libgomp has no such tool and
# gives only false reports. Not run under the sanitizers: the install test
# (it links an uninstrumented application against the instrumented
# libraries) and, under TSan, the ONNX export tests' runtime (node) and
# the report's browser, which are other programs. Under TSan the quick
# suite runs (the end-to-end cases take hours at TSan's 5-15x slowdown).
# Under ASan, which slows the engine about 25-fold, the whole-run tests
# evaluate on 10 val images per class (PACKPTQ_TEST_VAL_PER_CLASS, see
# tests/fixture_runs.h): the models they check are the same, only the
# accuracies come from fewer images. The recorded model hashes belong to the
# release flags, so test_reproducible repeats each run instead.
# PACKPTQ_SANITIZE_FILTER=REGEX narrows either run further.
# Exit status: CTest's.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
exclude="^install: "
case "$mode" in
  address)
    build=build-asan
    flags=(-DPACKPTQ_SANITIZE=ON -DCMAKE_CXX_COMPILER=g++)
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    export PACKPTQ_TEST_VAL_PER_CLASS="${PACKPTQ_TEST_VAL_PER_CLASS:-10}"
    ;;
  thread)
    build=build-tsan
    archer=/usr/lib/llvm-14/lib/libarcher.so
    [ -f "$archer" ] || { echo "sanitize: $archer missing (apt-get install libomp-14-dev)" >&2; exit 1; }
    flags=(-DPACKPTQ_TSAN=ON -DCMAKE_CXX_COMPILER=clang++ -DPACKPTQ_ONNX=OFF)
    export OMP_TOOL_LIBRARIES="$archer"
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$PWD/tools/tsan.supp"
    # The end-to-end runs of whole fixtures, the 224 px nets and the browser.
    exclude="$exclude|report: |test_nets_.*224 px|test_quantize_cli|test_quantize_api|test_default_run|test_reproducible|test_resume|test_analysis|test_report"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPACKPTQ_CUDA=OFF "${flags[@]}" >/dev/null
cmake --build "$build" -j "$(nproc)"
filter=()
[ -n "${PACKPTQ_SANITIZE_FILTER:-}" ] && filter=(-R "$PACKPTQ_SANITIZE_FILTER")
OMP_WAIT_POLICY=passive ctest --test-dir "$build" --output-on-failure --parallel "$(nproc)" \
  --timeout 7200 -E "$exclude" "${filter[@]}"
