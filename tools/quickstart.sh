#!/usr/bin/env bash
# The README's first command: installs the Debian packages packptq needs,
# builds it into build/, then runs the built-in default (Fashion-MNIST ->
# ResNet-18 trained here -> Pack-PTQ W4A4; no ImageNet, no download).
# Arguments go to `packptq default` (e.g. --threads 2; --help lists them).
# Usage: bash tools/quickstart.sh [flags]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup_debian.sh build
exec ./build/tools/packptq default "$@"
