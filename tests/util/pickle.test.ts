/**
 * The pickle reader against pickles Python wrote (tests/fixtures/dragbench/make_fixture.py: protocols 2, 4 and 5,
 * NumPy arrays and scalars), the writer's round trip, and refusal of anything that would run code.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NumpyArray, parsePickle, PickleDict, PickleTuple, writePickle } from '../../src/util/pickle.js';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'dragbench');
const read = (name: string) => parsePickle(readFileSync(join(fixtures, name)));

describe('pickle reader', () => {
  it('reads a protocol-4 DragBench meta_data.pkl: prompt, points (ints and NumPy ints), uint8 mask', () => {
    const meta = read('cases/objects/red_square/meta_data.pkl');
    expect(meta).toBeInstanceOf(PickleDict);
    const dict = meta as PickleDict;
    expect(dict.get('prompt')).toBe('a red square on a blue background');
    expect(dict.get('points')).toEqual([
      [14, 16],
      [26, 30],
      [8, 12],
      [20, 24],
    ]);
    const mask = dict.get('mask') as NumpyArray;
    expect(mask).toBeInstanceOf(NumpyArray);
    expect(mask.dtype).toBe('uint8');
    expect(mask.shape).toEqual([48, 40]);
    // mask[4:40, 2:36] = 255
    expect(mask.data[4 * 40 + 2]).toBe(255);
    expect(mask.data[3 * 40 + 2]).toBe(0);
    expect(mask.data[39 * 40 + 35]).toBe(255);
    expect(mask.data[39 * 40 + 36]).toBe(0);
    expect(mask.data.reduce((a, b) => a + b, 0)).toBe(36 * 34 * 255);
  });

  it('reads protocol 2 (bytes through _codecs.encode), big ints, tuples and floats', () => {
    const d = read('protocol2.pkl') as PickleDict;
    const mask = d.get('mask') as NumpyArray;
    expect(mask.shape).toEqual([3, 5]);
    expect(Array.from(mask.data)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(d.get('scale')).toBe(0.5);
    expect(d.get('big')).toBe(2 ** 40);
    expect(d.get('neg')).toBe(-3);
    expect((d.get('t') as PickleTuple).items).toEqual([1, 'x']);
  });

  it('reads protocol 5 arrays (numpy _frombuffer)', () => {
    const f = (read('protocol5.pkl') as PickleDict).get('f32') as NumpyArray;
    expect(f.dtype).toBe('float32');
    expect(f.shape).toEqual([2, 3]);
    expect(Array.from(f.data)).toEqual([0, 0.25, 0.5, 0.75, 1, 1.25]);
  });

  it('refuses a pickle that names any other callable, and truncated input, with one-line errors', () => {
    expect(() => read('evil.pkl')).toThrow(/'os\.system', which EditKit does not load/);
    const bytes = readFileSync(join(fixtures, 'cases/objects/red_square/meta_data.pkl'));
    expect(() => parsePickle(bytes.subarray(0, 40))).toThrow(/truncated pickle/);
    expect(() => parsePickle(Uint8Array.from([0x80, 4, 0xff]))).toThrow(/unsupported pickle opcode 0xff/);
  });
});

describe('pickle writer', () => {
  it('round-trips dicts, lists, strings, ints of every size, floats and NumPy arrays', () => {
    const mask = new NumpyArray('uint8', [2, 3], Float64Array.from([0, 255, 1, 128, 3, 200]));
    const f64 = new NumpyArray('float64', [2], Float64Array.from([0.1, -2.5]));
    const i64 = new NumpyArray('int64', [3], Float64Array.from([-1, 2 ** 40, 7]));
    const bytes = writePickle({
      prompt: 'héllo ✓',
      points: [
        [1, 2],
        [300, 70000],
        [-5, 2 ** 33],
      ],
      mask,
      f64,
      i64,
      x: 0.1,
      flags: [true, false, null],
    });
    const d = parsePickle(bytes) as PickleDict;
    expect(d.get('prompt')).toBe('héllo ✓');
    expect(d.get('points')).toEqual([
      [1, 2],
      [300, 70000],
      [-5, 2 ** 33],
    ]);
    for (const [name, want] of [
      ['mask', mask],
      ['f64', f64],
      ['i64', i64],
    ] as const) {
      const got = d.get(name) as NumpyArray;
      expect(got.dtype).toBe(want.dtype);
      expect(got.shape).toEqual(want.shape);
      expect(Array.from(got.data)).toEqual(Array.from(want.data));
    }
    expect(d.get('x')).toBe(0.1);
    expect(d.get('flags')).toEqual([true, false, null]);
  });

  it('writes a 512×512 mask (bytes ≥ 0x80 as latin-1) without overflowing the stack', () => {
    const data = Float64Array.from({ length: 512 * 512 }, (_, i) => (i % 7 === 0 ? 255 : i % 256));
    const back = (
      parsePickle(writePickle({ mask: new NumpyArray('uint8', [512, 512], data) })) as PickleDict
    ).get('mask') as NumpyArray;
    expect(back.shape).toEqual([512, 512]);
    expect(Array.from(back.data)).toEqual(Array.from(data));
  });
});
