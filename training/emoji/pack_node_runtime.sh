#!/usr/bin/env bash
# Packs what the EmojiWorld renderer needs to run on a training machine that has no Node.js and no npm registry
# (e.g. the GPU machine): the node binary, the built world library (dist/world, dist/util) and the world's
# runtime dependencies (sharp with its linux-x64 libvips, zod). About 35 MB compressed.
#
#   training/emoji/pack_node_runtime.sh [OUT.tar.xz]        # default /tmp/editkit-node-runtime.tar.xz
#
# On the training machine, from the repository root:
#
#   mkdir -p /opt/editkit-node && tar -xJf editkit-node-runtime.tar.xz -C /opt/editkit-node
#   cp -r /opt/editkit-node/repo/. .          # dist/ and node_modules/ (both git-ignored)
#   export PATH=/opt/editkit-node/bin:$PATH
#   python3 training/train_all.py --out models/ --device cuda
#
# Without node_modules/onnxruntime-node, training/emoji/data.py renders through the world library's writeBatch
# ("lib" mode, byte-identical to `editkit world batch`) and export.py checks the ONNX files with Python's
# onnxruntime instead of onnxruntime-node.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:-/tmp/editkit-node-runtime.tar.xz}"
cd "$ROOT"
[ -f dist/world/batch.js ] || { echo "dist/world/batch.js missing: run npm run build first" >&2; exit 1; }
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/repo/node_modules/@img" "$STAGE/repo/dist"
cp "$(readlink -f "$(command -v node)")" "$STAGE/bin/node"
cp -r dist/world dist/util "$STAGE/repo/dist/"
for m in sharp zod detect-libc semver; do cp -r "node_modules/$m" "$STAGE/repo/node_modules/"; done
for m in colour sharp-linux-x64 sharp-libvips-linux-x64; do cp -r "node_modules/@img/$m" "$STAGE/repo/node_modules/@img/"; done
tar -C "$STAGE" -cf - bin repo | xz -6 -T0 > "$OUT"
echo "wrote $OUT ($(du -h "$OUT" | cut -f1))"
