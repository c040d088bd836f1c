import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../../src/runtime/float16.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import { Generator } from '../../src/runtime/random.js';
import { IntArray, ModelSession } from '../../src/runtime/session.js';
import { parseDevice, resolveDevice } from '../../src/runtime/device.js';
import { ModelError, UserError } from '../../src/util/errors.js';
import { readNpy } from '../../src/util/npy.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'runtime');
const scratch = mkdtempSync(join(tmpdir(), 'editkit-session-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('float16 conversion', () => {
  it('round-trips representable values exactly and rounds to nearest even', () => {
    for (const v of [0, -0, 1, -2, 0.5, 65504, 6.103515625e-5, 5.960464477539063e-8, 1024.5]) {
      expect(float16BitsToFloat32(float32ToFloat16Bits(v))).toBe(Math.fround(v) === 1024.5 ? 1024 : v);
    }
    expect(float16BitsToFloat32(float32ToFloat16Bits(1e6))).toBe(Infinity);
    expect(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(NaN)))).toBe(true);
    // 1 + 2^-11 is exactly halfway between 1 and the next half; ties go to the even mantissa (1).
    expect(float16BitsToFloat32(float32ToFloat16Bits(1 + 2 ** -11))).toBe(1);
    expect(float16BitsToFloat32(float32ToFloat16Bits(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
  });

  it('keeps relative error below 2^-11 over a wide range', () => {
    const gen = new Generator(1);
    for (let i = 0; i < 2000; i++) {
      const v = gen.normal() * 10 ** Math.floor(gen.random() * 8 - 4);
      if (Math.abs(v) < 6.2e-5) continue; // subnormal range has absolute, not relative, precision
      const back = float16BitsToFloat32(float32ToFloat16Bits(v));
      expect(Math.abs(back - v) / Math.abs(v)).toBeLessThanOrEqual(2 ** -11);
    }
  });
});

describe('Generator', () => {
  it('is reproducible for a seed and differs between seeds', () => {
    const a = new Generator(42).randn([1000]);
    const b = new Generator(42).randn([1000]);
    const c = new Generator(43).randn([1000]);
    expect(a.data).toEqual(b.data);
    expect(a.maxAbsDiff(c)).toBeGreaterThan(0.5);
  });

  it('draws standard normals', () => {
    const x = new Generator(7).randn([200_000]).data;
    const mean = x.reduce((s, v) => s + v, 0) / x.length;
    const variance = x.reduce((s, v) => s + (v - mean) ** 2, 0) / x.length;
    expect(Math.abs(mean)).toBeLessThan(0.01);
    expect(Math.abs(variance - 1)).toBeLessThan(0.01);
  });
});

describe('ModelSession', () => {
  it('converts float32 ↔ float16 at the boundary of an fp16 model', async () => {
    const session = await ModelSession.create(join(FIXTURES, 'fp16_double.onnx'), { device: 'cpu' });
    expect(session.input('x').type).toBe('float16');
    const x = new NDArray(Float32Array.from([1.5, -2.25, 1000, 0.1]), [4]);
    const { y } = await session.run({ x });
    expect(Array.from(y.data)).toEqual([3, -4.5, 2000, float16BitsToFloat32(float32ToFloat16Bits(0.1)) * 2]);
    await session.release();
  });

  it.each(['ids_int32', 'ids_int64'])('feeds integer ids to %s', async (name) => {
    const session = await ModelSession.create(join(FIXTURES, `${name}.onnx`), { device: 'cpu' });
    const { values } = await session.run({
      input_ids: new IntArray(Int32Array.from([49406, 320, 49407]), [1, 3]),
    });
    expect(Array.from(values.data)).toEqual([49406, 320, 49407]);
    expect(values.shape).toEqual([1, 3]);
    await session.release();
  });

  it('loads external weight files next to the model', async () => {
    const session = await ModelSession.create(join(FIXTURES, 'external_matmul.onnx'), { device: 'cpu' });
    const weight = await readNpy(join(FIXTURES, 'external_matmul_weight.npy'));
    const x = new Generator(3).randn([2, 64]);
    const { y } = await session.run({ x });
    for (let r = 0; r < 2; r++) {
      for (let c = 0; c < 32; c++) {
        let expected = 0;
        for (let k = 0; k < 64; k++) expected += x.data[r * 64 + k] * weight.data[k * 32 + c];
        expect(y.data[r * 32 + c]).toBeCloseTo(expected, 4);
      }
    }
    await session.release();
  });

  it('names the model when the external weight file is missing', async () => {
    const path = join(scratch, 'external_matmul.onnx');
    copyFileSync(join(FIXTURES, 'external_matmul.onnx'), path);
    await expect(ModelSession.create(path, { device: 'cpu' })).rejects.toThrow(ModelError);
    await expect(ModelSession.create(path, { device: 'cpu' })).rejects.toThrow(/external_matmul/);
  });

  it('gives a ModelError for a missing or corrupt file', async () => {
    await expect(ModelSession.create(join(scratch, 'nope.onnx'), { device: 'cpu' })).rejects.toThrow(
      /nope\.onnx' does not exist/,
    );
    const corrupt = join(scratch, 'corrupt.onnx');
    (await import('node:fs')).writeFileSync(corrupt, 'not a model');
    await expect(ModelSession.create(corrupt, { device: 'cpu' })).rejects.toThrow(ModelError);
  });

  it('unloads its weights between uses and loads them again for the next run; refuses after release', async () => {
    const session = await ModelSession.create(join(FIXTURES, 'external_matmul.onnx'), { device: 'cpu' });
    const x = new Generator(5).randn([2, 64]);
    const before = (await session.run({ x })).y;
    expect(await session.unload()).toBe(true);
    expect(session.isLoaded).toBe(false);
    expect(await session.unload()).toBe(false);
    expect(session.input('x').shape).toEqual(['n', 64]);
    const [a, b] = await Promise.all([session.run({ x }), session.run({ x })]);
    expect(session.isLoaded).toBe(true);
    expect(Array.from(a.y.data)).toEqual(Array.from(before.data));
    expect(Array.from(b.y.data)).toEqual(Array.from(before.data));
    // Not while a run is in progress.
    const running = session.run({ x });
    expect(await session.unload()).toBe(false);
    await running;
    await session.release();
    await expect(session.run({ x })).rejects.toThrow(/released/);
    await session.release();
  });

  it('rejects unknown input names with the list of real ones', async () => {
    const session = await ModelSession.create(join(FIXTURES, 'ids_int64.onnx'), { device: 'cpu' });
    await expect(session.run({ ids: new IntArray(Int32Array.from([1]), [1, 1]) })).rejects.toThrow(
      /input_ids/,
    );
    await session.release();
  });
});

describe('devices', () => {
  it('parses device names and rejects others', () => {
    expect(parseDevice('webgpu')).toBe('webgpu');
    expect(() => parseDevice('tpu')).toThrow(UserError);
  });

  it('resolves auto to a usable device', async () => {
    const device = await resolveDevice('auto');
    expect(['cpu', 'webgpu', 'cuda']).toContain(device);
    const session = await ModelSession.create(join(FIXTURES, 'ids_int32.onnx'), { device });
    await session.release();
  });

  it('explains a missing WebGPU adapter in one line (machines without a GPU)', async () => {
    const device = await resolveDevice('auto');
    if (device === 'webgpu') return; // a GPU machine: nothing to explain
    // A Vulkan driver chosen by hand (SwiftShader, say) gives WebGPU an adapter that 'auto' does not pick.
    if (process.env.VK_ICD_FILENAMES) return;
    await expect(ModelSession.create(join(FIXTURES, 'ids_int32.onnx'), { device: 'webgpu' })).rejects.toThrow(
      /no WebGPU adapter|no Vulkan loader/,
    );
  });
});

describe('NDArray', () => {
  it('concatenates channels per batch item', () => {
    const a = new NDArray(Float32Array.from([1, 2, 3, 4]), [2, 1, 1, 2]);
    const b = new NDArray(Float32Array.from([5, 6, 7, 8, 9, 10, 11, 12]), [2, 2, 1, 2]);
    const c = NDArray.concatChannels([a, b]);
    expect(c.shape).toEqual([2, 3, 1, 2]);
    expect(Array.from(c.data)).toEqual([1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12]);
  });

  it('rejects data that does not fit the shape', () => {
    expect(() => new NDArray(new Float32Array(3), [2, 2])).toThrow(/needs 4/);
  });
});
