#!/usr/bin/env bash
# Builds packptq (installing its Debian dependencies if needed) and runs the
# whole test suite with CTest. Fixtures are read from ../shared/fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_debian.sh build
ctest --test-dir build --output-on-failure --parallel "$(nproc)" --timeout 2400
