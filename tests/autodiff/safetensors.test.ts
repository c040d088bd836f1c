/** The safetensors reader/writer: layout per the format description, conversions and validation. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  float32ToSafeTensor,
  parseSafetensors,
  readSafetensors,
  safeTensorToFloat32,
  serializeSafetensors,
  writeSafetensors,
} from '../../src/autodiff/safetensors.js';

const scratch = mkdtempSync(join(tmpdir(), 'editkit-safetensors-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('safetensors', () => {
  it('writes the documented layout: u64 header length, JSON header padded to 8, packed data in name order', () => {
    const bytes = serializeSafetensors(
      {
        b: float32ToSafeTensor(Float32Array.from([1, 2]), [2]),
        a: { dtype: 'I64', shape: [1], data: new Uint8Array(new BigInt64Array([-3n]).buffer) },
      },
      { format: 'pt' },
    );
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    expect(header).toEqual({
      __metadata__: { format: 'pt' },
      a: { dtype: 'I64', shape: [1], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
    });
    expect(bytes.byteLength).toBe(8 + n + 16);
    const back = parseSafetensors(bytes);
    expect(back.metadata).toEqual({ format: 'pt' });
    expect(Array.from(safeTensorToFloat32(back.tensors.get('b')!))).toEqual([1, 2]);
    expect(Array.from(safeTensorToFloat32(back.tensors.get('a')!))).toEqual([-3]);
  });

  it('reads a file written by hand from the format description', () => {
    const header = '{"w":{"dtype":"F16","shape":[2,1],"data_offsets":[0,4]}}';
    const h = new TextEncoder().encode(header);
    const bytes = new Uint8Array(8 + h.length + 4);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(h.length), true);
    bytes.set(h, 8);
    bytes.set([0x00, 0x3c, 0x00, 0xc0], 8 + h.length); // 1.0, -2.0 in float16
    const t = parseSafetensors(bytes).tensors.get('w')!;
    expect(t.shape).toEqual([2, 1]);
    expect(Array.from(safeTensorToFloat32(t))).toEqual([1, -2]);
  });

  it('round-trips F16/BF16 and files on disk', async () => {
    const v = Float32Array.from([0.5, -1.25, 3]);
    const p = join(scratch, 'x.safetensors');
    await writeSafetensors(
      p,
      new Map([
        ['h', float32ToSafeTensor(v, [3], 'F16')],
        ['bf', float32ToSafeTensor(v, [1, 3], 'BF16')],
      ]),
    );
    const file = await readSafetensors(p);
    expect(Array.from(safeTensorToFloat32(file.tensors.get('h')!))).toEqual([0.5, -1.25, 3]);
    expect(Array.from(safeTensorToFloat32(file.tensors.get('bf')!))).toEqual([0.5, -1.25, 3]);
  });

  it('rejects malformed files', () => {
    const good = serializeSafetensors({ w: float32ToSafeTensor(Float32Array.from([1, 2, 3, 4]), [2, 2]) });
    expect(() => parseSafetensors(good.subarray(0, 4))).toThrow(/too short/);
    expect(() => parseSafetensors(good.subarray(0, good.byteLength - 4))).toThrow(/outside the data/);
    const bad = good.slice();
    new DataView(bad.buffer).setBigUint64(0, 10n ** 12n, true);
    expect(() => parseSafetensors(bad)).toThrow(/header length/);
    expect(() => serializeSafetensors({ w: { dtype: 'F32', shape: [3], data: new Uint8Array(8) } })).toThrow(
      /has 8 bytes, needs 12/,
    );
  });
});
