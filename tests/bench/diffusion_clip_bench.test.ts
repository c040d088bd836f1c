/** The DiffusionCLIP bench's scoring helpers: SDEdit at equal preservation, and style progress on a region. */
import { describe, expect, it } from 'vitest';
import { successAtPreservation } from '../../src/bench/diffusion_clip.js';
import { regionProgress } from '../../src/bench/diffusion_clip_multi.js';
import { NDArray } from '../../src/runtime/ndarray.js';

describe('successAtPreservation', () => {
  const sweep = [
    { objectPsnr: 19, success: 0, objectsKept: 0.8 },
    { objectPsnr: 13, success: 0.6, objectsKept: 0.5 },
    { objectPsnr: 15, success: 0.2, objectsKept: 0.7 },
  ];
  it('interpolates linearly along the sweep sorted by PSNR', () => {
    expect(successAtPreservation(sweep, 14)).toBeCloseTo(0.4, 10);
    expect(successAtPreservation(sweep, 17)).toBeCloseTo(0.1, 10);
    expect(successAtPreservation(sweep, 14, 'objectsKept')).toBeCloseTo(0.6, 10);
  });
  it('holds the end points outside the sweep, and is NaN without one', () => {
    expect(successAtPreservation(sweep, 25)).toBe(0);
    expect(successAtPreservation(sweep, 10)).toBe(0.6);
    expect(successAtPreservation([], 15)).toBeNaN();
  });
});

describe('regionProgress', () => {
  const from = new NDArray(Float32Array.from([0, 0, 0, 0, 0, 0]), [1, 3, 1, 2]);
  const to = new NDArray(Float32Array.from([1, 1, 1, 1, 1, 1]), [1, 3, 1, 2]);
  const region = new NDArray(Float32Array.from([1, 0]), [1, 1, 1, 2]);
  it('is 0 unchanged, 1 at the target, the projection in between, and ignores pixels outside the region', () => {
    expect(regionProgress(from, from, to, region)).toBe(0);
    expect(regionProgress(to, from, to, region)).toBe(1);
    const half = new NDArray(Float32Array.from([0.5, 9, 0.5, 9, 0.5, 9]), [1, 3, 1, 2]);
    expect(regionProgress(half, from, to, region)).toBeCloseTo(0.5, 10);
    // A change orthogonal to to − from does not count.
    const orthogonal = new NDArray(Float32Array.from([0.3, 0, -0.3, 0, 0, 0]), [1, 3, 1, 2]);
    expect(regionProgress(orthogonal, from, to, region)).toBeCloseTo(0, 10);
  });
});
