import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { NDArray } from '../../src/runtime/ndarray.js';
import { UserError } from '../../src/util/errors.js';
import { encodeNpy, parseNpy, readNpy, writeNpy } from '../../src/util/npy.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'npy');
const fixture = (name: string): string => join(FIXTURES, name);
// The array tests/fixtures/npy/README.md saves: arange(24).reshape(2, 3, 4) / 8 - 1.5.
const BASE = Array.from({ length: 24 }, (_, i) => i / 8 - 1.5);

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'editkit-npy-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('reading files written by numpy', () => {
  it.each(['f4.npy', 'f8.npy', 'f2.npy', 'v2.npy', 'v3.npy'])('%s', async (name) => {
    const arr = await readNpy(fixture(name));
    expect(arr.shape).toEqual([2, 3, 4]);
    expect([...arr.data]).toEqual(BASE);
  });

  it('converts int64, int32 and bool to float32', async () => {
    const i8 = await readNpy(fixture('i8.npy'));
    expect(i8.shape).toEqual([2, 3]);
    expect([...i8.data]).toEqual([-3, 0, 7, 2 ** 40, 5, -(2 ** 31)]);
    expect([...(await readNpy(fixture('i4.npy'))).data]).toEqual([-2, -1, 0, 1, 2]);
    const b1 = await readNpy(fixture('b1.npy'));
    expect(b1.shape).toEqual([2, 2]);
    expect([...b1.data]).toEqual([1, 0, 0, 1]);
  });

  it('reads 0-d and empty arrays', async () => {
    const scalar = await readNpy(fixture('scalar.npy'));
    expect(scalar.shape).toEqual([]);
    expect([...scalar.data]).toEqual([2.5]);
    const empty = await readNpy(fixture('empty.npy'));
    expect(empty.shape).toEqual([0, 3]);
    expect(empty.size).toBe(0);
  });

  it('refuses Fortran order and big-endian data with a UserError', async () => {
    await expect(readNpy(fixture('fortran.npy'))).rejects.toThrow(/Fortran order/);
    await expect(readNpy(fixture('fortran.npy'))).rejects.toBeInstanceOf(UserError);
    await expect(readNpy(fixture('big_endian.npy'))).rejects.toThrow(/little-endian/);
    await expect(readNpy(fixture('big_endian.npy'))).rejects.toBeInstanceOf(UserError);
  });
});

describe('encodeNpy', () => {
  it('writes exactly what numpy writes for a float32 C-order array', async () => {
    const expected = await readFile(fixture('f4.npy'));
    const encoded = encodeNpy(new NDArray(Float32Array.from(BASE), [2, 3, 4]));
    expect(Buffer.from(encoded).equals(expected)).toBe(true);
  });

  it.each([[[]], [[3]], [[1, 4, 8, 8]], [[0, 2]]])(
    'round-trips shape %j with 64-byte aligned data',
    (shape) => {
      const size = shape.reduce((a: number, b: number) => a * b, 1);
      const arr = new NDArray(
        Float32Array.from({ length: size }, (_, i) => Math.fround(Math.sin(i) * 1e3)),
        shape,
      );
      const bytes = encodeNpy(arr);
      const headerLength = bytes[8] | (bytes[9] << 8);
      expect((10 + headerLength) % 64).toBe(0);
      const back = parseNpy(bytes);
      expect(back.shape).toEqual(shape);
      expect([...back.data]).toEqual([...arr.data]);
    },
  );

  it('writes 1-d shapes as a Python 1-tuple', () => {
    const header = new TextDecoder().decode(encodeNpy(NDArray.zeros([5])).subarray(10, 80));
    expect(header).toContain("'shape': (5,)");
  });
});

describe('parseNpy', () => {
  it('reads from an unaligned view', async () => {
    const file = await readFile(fixture('f4.npy'));
    const shifted = new Uint8Array(file.length + 1);
    shifted.set(file, 1);
    expect([...parseNpy(shifted.subarray(1)).data]).toEqual(BASE);
  });

  it('refuses non-npy and truncated data, naming the source', async () => {
    expect(() => parseNpy(new TextEncoder().encode('PK\x03\x04 not npy'), 'x.npz')).toThrow(
      new UserError("array file 'x.npz' is not a NumPy .npy file (bad magic)"),
    );
    const file = await readFile(fixture('f4.npy'));
    expect(() => parseNpy(file.subarray(0, file.length - 4))).toThrow(/truncated/);
    expect(() => parseNpy(file.subarray(0, 40))).toThrow(/truncated/);
  });

  it('refuses unsupported dtypes', () => {
    const bytes = encodeNpy(NDArray.zeros([2]));
    const patched = Buffer.from(bytes);
    patched.write("'<c8'", patched.indexOf("'<f4'"), 'latin1');
    expect(() => parseNpy(patched)).toThrow(/unsupported dtype <c8/);
  });
});

describe('readNpy / writeNpy', () => {
  it('round-trips through a file, creating the directory, with no temporary files left', async () => {
    const arr = new NDArray(Float32Array.from([1, -2, 3.5, Number.NaN]), [2, 2]);
    const path = join(dir, 'nested', 'latents.npy');
    await writeNpy(path, arr);
    const back = await readNpy(path);
    expect(back.shape).toEqual([2, 2]);
    expect([...back.data]).toEqual([1, -2, 3.5, Number.NaN]);
    expect(await readdir(join(dir, 'nested'))).toEqual(['latents.npy']);
  });

  it('gives a UserError for a missing file', async () => {
    await expect(readNpy(join(dir, 'nope.npy'))).rejects.toThrow(/array file '.*nope\.npy' does not exist/);
  });

  it('gives a UserError for a file that is not npy', async () => {
    const path = join(dir, 'bad.npy');
    await writeFile(path, 'hello');
    await expect(readNpy(path)).rejects.toThrow(`array file '${path}' is not a NumPy .npy file`);
  });
});
