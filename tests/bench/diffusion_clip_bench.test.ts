/** The DiffusionCLIP bench's scoring helpers: SDEdit at equal preservation, and style progress on a region. */
import { describe, expect, it } from 'vitest';
import { successAtPreservation } from '../../src/bench/diffusion_clip.js';
import { gaussianBlur, regionProgress } from '../../src/bench/diffusion_clip_multi.js';
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
    expect(regionProgress(from, from, to, region, 0)).toBe(0);
    expect(regionProgress(to, from, to, region, 0)).toBe(1);
    const half = new NDArray(Float32Array.from([0.5, 9, 0.5, 9, 0.5, 9]), [1, 3, 1, 2]);
    expect(regionProgress(half, from, to, region, 0)).toBeCloseTo(0.5, 10);
    // A change orthogonal to to − from does not count.
    const orthogonal = new NDArray(Float32Array.from([0.3, 0, -0.3, 0, 0, 0]), [1, 3, 1, 2]);
    expect(regionProgress(orthogonal, from, to, region, 0)).toBeCloseTo(0, 10);
  });
});

describe('regionProgress through its low-pass', () => {
  it('counts a change of shading, and much less of a blur of the same image', () => {
    // A sharp 16 × 16 square (the "flat" artwork) and the same square shaded left to right (the "glossy" one).
    const size = 16;
    const flat = new Float32Array(3 * size * size);
    const shaded = new Float32Array(3 * size * size);
    const region = new Float32Array(size * size);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const inside = x >= 4 && x < 12 && y >= 4 && y < 12;
          flat[(c * size + y) * size + x] = inside ? 0.8 : 0.2;
          shaded[(c * size + y) * size + x] = inside ? 0.5 + (0.5 * (x - 4)) / 7 : 0.2;
          if (c === 0) region[y * size + x] = inside ? 1 : 0;
        }
    const shape = [1, 3, size, size];
    const from = new NDArray(flat, shape);
    const to = new NDArray(shaded, shape);
    const mask = new NDArray(region, [1, 1, size, size]);
    expect(regionProgress(to, from, to, mask)).toBeCloseTo(1, 6);
    const blurred = gaussianBlur(from, 1);
    const raw = regionProgress(blurred, from, to, mask, 0);
    const lowPassed = regionProgress(blurred, from, to, mask);
    expect(Math.abs(lowPassed)).toBeLessThan(Math.abs(raw));
  });
  it('blurs a constant image to itself', () => {
    const flat = NDArray.full([1, 3, 5, 7], 0.25);
    expect(Math.max(...gaussianBlur(flat, 2).data.map((v) => Math.abs(v - 0.25)))).toBeLessThan(1e-6);
  });
});
