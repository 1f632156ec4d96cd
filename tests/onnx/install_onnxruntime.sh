#!/usr/bin/env bash
# Installs ONNX Runtime for node (onnxruntime-node, the version pinned in
# package-lock.json) from the npm registry into DEST, with the runner
# run_onnx.mjs beside it: node DEST/run_onnx.mjs MODEL.onnx IN OUT.
# --ignore-scripts: the package ships its CPU binaries; its install script
# would only fetch GPU ones. Fails (exit 1) when node, npm or the registry is
# missing: the ONNX export tests need a real runtime, not a skip.
# Usage: bash tests/onnx/install_onnxruntime.sh DEST
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:?usage: install_onnxruntime.sh DEST}"
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "install_onnxruntime: $tool is not installed" >&2; exit 1; }
done
mkdir -p "$dest"
cp "$here/run_onnx.mjs" "$dest/"
if ! cmp -s "$here/package-lock.json" "$dest/package-lock.json" ||
   [ ! -f "$dest/node_modules/onnxruntime-node/package.json" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$dest/"
  (cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) || {
    echo "install_onnxruntime: npm ci of onnxruntime-node failed (is the npm registry reachable?)" >&2
    exit 1
  }
fi
(cd "$dest" && node --input-type=module -e "
  const ort = await import('onnxruntime-node');
  console.log('onnxruntime-node ' + ort.env.versions.common + ' in $dest');")
