#!/usr/bin/env bash
# The GPU-machine checks, batched into one device call (device time is scarce). Run on the GPU machine from the
# project root, after `npm ci && npm run build && ../shared/device/pack.sh` here, carrying [".device", "dist"]:
#
#   source .device/enter.sh && bash scripts/device/gpu_checks.sh
#
# Everything it prints also goes to $OUT/gpu_checks.log. Sections can be skipped with SKIP="parity bench ...".
set -uo pipefail
OUT=${OUT:-/tmp/editkit-gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_checks.log") 2>&1
skip() { [[ " ${SKIP:-} " == *" $1 "* ]]; }
MODEL=${MODEL:-}
model_args=()
[ -n "$MODEL" ] && model_args=(--model "$MODEL")

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
node --version

if ! skip tokenizer; then
  echo "== tokenizer: ids from transformers' CLIPTokenizer for the committed test vocabularies"
  python3 training/fixtures/make_tokenizer_fixtures.py ids && cp tests/fixtures/tokenizer/transformers_ids.json "$OUT/" || echo "tokenizer fixtures failed"
fi
if ! skip parity; then
  echo "== parity: CPU vs WebGPU (images, inversion, gradients)"
  node dist/bench/main.js parity "${model_args[@]}" --devices cpu,webgpu --steps 20
  node dist/bench/main.js parity --model tests/fixtures/bundles/tiny-sd --devices cpu,webgpu --steps 10
fi
if ! skip bench; then
  echo "== bench: pipeline latency and memory per device"
  node dist/bench/main.js pipeline "${model_args[@]}" --devices cpu,webgpu --steps 50
  echo "== bench: autodiff"
  node dist/bench/main.js autodiff "${model_args[@]}" --devices cpu,webgpu
fi
if ! skip sd15; then
  echo "== SD-1.5-size random-weight UNet: build, gradient model, run on WebGPU"
  python3 training/fixtures/make_sd15_size_unet.py --out /tmp/sd15-unet && \
    node dist/bench/main.js autodiff --unet /tmp/sd15-unet/model.onnx --devices webgpu --sizes 32,64 --variants latents --repeats 3
fi
ls -la "$OUT"
