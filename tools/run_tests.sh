#!/usr/bin/env bash
# Builds packptq (installing its Debian dependencies if needed) and runs the
# whole test suite with CTest. Fixtures are read from ../shared/fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_debian.sh build
# Tests run side by side, two OpenMP threads each (set per test by CTest);
# threads waiting at a barrier sleep instead of spinning on the shared cores.
export OMP_WAIT_POLICY=passive
ctest --test-dir build --output-on-failure --parallel "$(nproc)" --timeout 2400
