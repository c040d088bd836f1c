// Runs ONNX models with onnxruntime-node (the runtime EditKit uses) for export.py's PyTorch-vs-ONNX checks.
// (This machine's Python has no onnxruntime.)
//
//   node training/emoji/ort_run.mjs MANIFEST.json
//
// MANIFEST: { "cases": [ { "model": path, "out": dir, "inputs": { name: { "file": raw.bin, "dtype": "float32"
// | "float16" | "int32" | "int64", "shape": [...] } }, "outputs": [names] } ] }
// Each output is written to <out>/<name>.bin (float32 little-endian) with <out>/outputs.json giving the shapes.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';

const ARRAYS = { float32: Float32Array, int32: Int32Array, int64: BigInt64Array, float16: Uint16Array };

function load(spec) {
  const buf = readFileSync(spec.file);
  const Ctor = ARRAYS[spec.dtype];
  const data = new Ctor(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  return new ort.Tensor(spec.dtype, data, spec.shape);
}

function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

const manifest = JSON.parse(readFileSync(process.argv[2], 'utf8'));
for (const c of manifest.cases) {
  const session = await ort.InferenceSession.create(c.model, { intraOpNumThreads: 2, graphOptimizationLevel: 'all' });
  const feeds = {};
  for (const [name, spec] of Object.entries(c.inputs)) feeds[name] = load(spec);
  const t = performance.now();
  const out = await session.run(feeds, c.outputs);
  const ms = performance.now() - t;
  mkdirSync(c.out, { recursive: true });
  const shapes = {};
  for (const name of c.outputs) {
    const tensor = out[name];
    let data = tensor.data;
    if (tensor.type === 'float16') data = Float32Array.from(data, halfToFloat);
    else if (tensor.type !== 'float32') data = Float32Array.from(data, Number);
    writeFileSync(join(c.out, `${name.replace(/[^A-Za-z0-9_.-]/g, '_')}.bin`), Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    shapes[name] = { shape: tensor.dims, dtype: tensor.type };
  }
  writeFileSync(join(c.out, 'outputs.json'), JSON.stringify({ shapes, ms }));
  await session.release();
}
