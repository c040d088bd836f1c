/**
 * ModelProto I/O: external data (the runtime fixture exported by torch, and files written by saveModel),
 * tensor conversions (raw_data vs typed fields, float16/bfloat16, int64), and failure messages.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DataType,
  decodeModel,
  loadModel,
  makeTensor,
  onnx,
  saveModel,
  serializeModel,
  setTensorValues,
  tensorBytes,
  tensorToBigInt64,
  tensorToFloat32,
  tensorToFloat64,
  tensorToNumbers,
  type ModelProto,
  graphOf,
} from '../../src/autodiff/onnx_io.js';
import { float32ToFloat16Bits } from '../../src/runtime/float16.js';
import { readNpy } from '../../src/util/npy.js';
import { randTensor, TinyModel, values } from './harness.js';

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'runtime', 'external_matmul.onnx');
const scratch = mkdtempSync(join(tmpdir(), 'editkit-onnxio-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function model(): ModelProto {
  const m = new TinyModel({ opset: 17, dtype: 'float32' });
  const big = m.randInit('big', [32, 16], 1);
  const small = m.init(
    'small',
    [16],
    Array.from({ length: 16 }, (_, i) => i / 10),
  );
  const other = m.randInit('other', [16, 8], 2);
  m.output(
    m.node(
      'MatMul',
      [m.node('Add', [m.node('MatMul', [m.input('x', [2, 32]), big]), small]), other],
      undefined,
      ['y'],
    ),
  );
  return m.model();
}

async function run(bytesOrPath: Uint8Array | string, feeds: Record<string, ort.Tensor>) {
  const session =
    typeof bytesOrPath === 'string'
      ? await ort.InferenceSession.create(bytesOrPath)
      : await ort.InferenceSession.create(bytesOrPath);
  const out = await session.run(feeds);
  await session.release();
  return out;
}

describe('loadModel', () => {
  it('resolves external data relative to the model folder', async () => {
    const m = await loadModel(FIXTURE);
    const w = graphOf(m).initializer[0];
    expect(w.dataLocation).toBe(onnx.TensorProto.DataLocation.DEFAULT);
    expect(w.externalData).toEqual([]);
    const expected = await readNpy(
      join(import.meta.dirname, '..', 'fixtures', 'runtime', 'external_matmul_weight.npy'),
    );
    expect(Array.from(tensorToFloat32(w))).toEqual(Array.from(expected.data as Float32Array));
    // The in-memory model runs from a buffer and agrees with ONNX Runtime reading the files itself.
    const x = randTensor('float32', [2, 64], 1);
    const fromBuffer = await run(serializeModel(m), { x });
    const fromFile = await run(FIXTURE, { x });
    expect(values(fromBuffer.y)).toEqual(values(fromFile.y));
  });

  it('can leave external references alone, and serializeModel then refuses', async () => {
    const m = await loadModel(FIXTURE, { externalData: false });
    expect(graphOf(m).initializer[0].dataLocation).toBe(onnx.TensorProto.DataLocation.EXTERNAL);
    expect(() => serializeModel(m)).toThrow(/external data; load the model with loadModel/);
  });

  it('reports bad external references clearly', async () => {
    const base = await loadModel(FIXTURE, { externalData: false });
    const write = (name: string, mutate: (m: ModelProto) => void) => {
      const copy = decodeModel(onnx.ModelProto.encode(base).finish());
      mutate(copy);
      const p = join(scratch, name);
      writeFileSync(p, onnx.ModelProto.encode(copy).finish());
      return p;
    };
    const missing = write(
      'missing.onnx',
      (m) => (graphOf(m).initializer[0].externalData[0].value = 'nope.bin'),
    );
    await expect(loadModel(missing)).rejects.toThrow(/'nope.bin' that cannot be opened/);
    const outside = write(
      'outside.onnx',
      (m) => (graphOf(m).initializer[0].externalData[0].value = '../secret.bin'),
    );
    await expect(loadModel(outside)).rejects.toThrow(/outside the model's folder/);
    writeFileSync(join(scratch, 'short.bin'), new Uint8Array(100));
    const short = write('short.onnx', (m) => {
      graphOf(m).initializer[0].externalData[0].value = 'short.bin';
      graphOf(m).initializer[0].externalData[2].value = '100';
    });
    await expect(loadModel(short)).rejects.toThrow(/needs 8192 bytes but its external data has length 100/);
    writeFileSync(join(scratch, 'garbage.onnx'), new Uint8Array([0xff, 0xff, 0xff, 0x07]));
    await expect(loadModel(join(scratch, 'garbage.onnx'))).rejects.toThrow(/not a valid ONNX model/);
  });
});

describe('saveModel', () => {
  it('writes small models inline', async () => {
    const p = join(scratch, 'inline.onnx');
    const m = model();
    await saveModel(m, p);
    const back = await loadModel(p);
    expect(graphOf(back).initializer.map((t) => t.name)).toEqual(['big', 'small', 'other']);
    expect(Array.from(tensorToFloat32(graphOf(back).initializer[0]))).toEqual(
      Array.from(tensorToFloat32(graphOf(m).initializer[0])),
    );
  });

  it('moves initializers above a threshold to one aligned external file, without changing the model', async () => {
    const p = join(scratch, 'split.onnx');
    const m = model();
    const before = serializeModel(m);
    await saveModel(m, p, { externalDataThreshold: 256 });
    expect(serializeModel(m)).toEqual(before);
    const raw = decodeModel(readFileSync(p));
    const locations = graphOf(raw).initializer.map((t) =>
      Object.fromEntries(t.externalData.map((e) => [e.key, e.value])),
    );
    expect(locations[0]).toEqual({ location: 'split.onnx_data', offset: '0', length: String(32 * 16 * 4) });
    expect(locations[1]).toEqual({});
    expect(Number(locations[2].offset) % 64).toBe(0);
    expect(statSync(join(scratch, 'split.onnx_data')).size).toBe(Number(locations[2].offset) + 16 * 8 * 4);
    // ONNX Runtime reads the pair from disk; loadModel reads it back into memory.
    const x = randTensor('float32', [2, 32], 3);
    const fromDisk = await run(p, { x });
    const fromMemory = await run(serializeModel(await loadModel(p)), { x });
    const original = await run(before, { x });
    expect(values(fromDisk.y)).toEqual(values(original.y));
    expect(values(fromMemory.y)).toEqual(values(original.y));
  });

  it('names the data file as asked (weights.pb)', async () => {
    const dir = mkdtempSync(join(scratch, 'pb-'));
    await saveModel(model(), join(dir, 'model.onnx'), {
      externalDataThreshold: 0,
      externalDataFile: 'weights.pb',
    });
    expect(statSync(join(dir, 'weights.pb')).size).toBeGreaterThan(0);
    const back = await loadModel(join(dir, 'model.onnx'));
    expect(graphOf(back).initializer.every((t) => t.rawData.length > 0)).toBe(true);
    await expect(
      saveModel(model(), join(dir, 'x.onnx'), { externalDataThreshold: 0, externalDataFile: '../x' }),
    ).rejects.toThrow(/plain file name/);
  });
});

describe('tensor helpers', () => {
  it('reads typed fields and raw_data alike', () => {
    const f = onnx.TensorProto.create({
      name: 'f',
      dataType: DataType.FLOAT,
      dims: [3],
      floatData: [1.5, -2, 3],
    });
    const d = onnx.TensorProto.create({
      name: 'd',
      dataType: DataType.DOUBLE,
      dims: [2],
      doubleData: [0.1, 1e300],
    });
    const i = onnx.TensorProto.create({
      name: 'i',
      dataType: DataType.INT64,
      dims: [2],
      int64Data: [-5, 2 ** 40],
    });
    const h = onnx.TensorProto.create({
      name: 'h',
      dataType: DataType.FLOAT16,
      dims: [2],
      int32Data: [float32ToFloat16Bits(0.5), float32ToFloat16Bits(-3)],
    });
    const b = onnx.TensorProto.create({
      name: 'b',
      dataType: DataType.BOOL,
      dims: [3],
      int32Data: [1, 0, 1],
    });
    expect(Array.from(tensorToFloat32(f))).toEqual([1.5, -2, 3]);
    expect(Array.from(tensorToFloat64(d))).toEqual([0.1, 1e300]);
    expect(Array.from(tensorToBigInt64(i))).toEqual([-5n, 2n ** 40n]);
    expect(Array.from(tensorToFloat32(h))).toEqual([0.5, -3]);
    expect(tensorToNumbers(b)).toEqual([1, 0, 1]);
    expect(tensorBytes(f)).toEqual(tensorBytes(makeTensor('f', DataType.FLOAT, [3], [1.5, -2, 3])));
    expect(() =>
      tensorBytes(
        onnx.TensorProto.create({ name: 'bad', dataType: DataType.FLOAT, dims: [3], floatData: [1] }),
      ),
    ).toThrow(/has 1 values in float_data/);
  });

  it('converts when making tensors (float16 and bfloat16 rounding, int64 saturation)', () => {
    expect(Array.from(tensorToFloat32(makeTensor('h', DataType.FLOAT16, [3], [0.1, 65504, 1e6])))).toEqual([
      0.0999755859375,
      65504,
      Infinity,
    ]);
    expect(Array.from(tensorToFloat32(makeTensor('bf', DataType.BFLOAT16, [2], [1.00390625, -2.5])))).toEqual(
      [1, -2.5],
    );
    expect(Array.from(tensorToBigInt64(makeTensor('i', DataType.INT64, [2], [2 ** 63, -1e30])))).toEqual([
      2n ** 63n - 1n,
      -(2n ** 63n),
    ]);
    expect(() => makeTensor('x', DataType.FLOAT, [2, 2], [1, 2, 3])).toThrow(/3 values for shape \[2, 2\]/);
  });

  it('setTensorValues replaces the values in the tensor type', () => {
    const t = onnx.TensorProto.create({
      name: 'w',
      dataType: DataType.FLOAT16,
      dims: [2],
      int32Data: [0, 0],
    });
    setTensorValues(t, Float32Array.from([1.25, -0.5]));
    expect(t.int32Data).toEqual([]);
    expect(Array.from(tensorToFloat32(t))).toEqual([1.25, -0.5]);
  });
});
