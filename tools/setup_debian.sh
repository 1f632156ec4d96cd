#!/usr/bin/env bash
# Installs packptq's build dependencies from Debian packages and builds it.
# Usage: bash tools/setup_debian.sh [build-dir]   (default: build)
# Runs as root or through sudo; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ninja-build pkg-config
  libeigen3-dev          # GEMM and linear algebra
  doctest-dev            # unit tests
  nlohmann-json3-dev     # config.json, reports, safetensors headers
  libturbojpeg0-dev      # JPEG decoding
  libzip-dev             # PyTorch zip checkpoints
  zlib1g-dev             # Fashion-MNIST .gz files of the default run
  dataset-fashion-mnist  # data of the built-in default run
  libonnx-dev libprotobuf-dev  # ONNX export (an optional library of its own)
  # For the tests only: the run report rendered in a browser and its screenshots checked.
  chromium imagemagick
)
# ONNX Runtime for node (tests/onnx, from the npm registry) runs the ONNX
# exports in the tests: Debian's node and npm unless the machine has them.
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi

build_dir="${1:-build}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$build_dir" --parallel "$(nproc)"
