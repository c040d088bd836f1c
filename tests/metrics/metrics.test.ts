import { describe, expect, it } from 'vitest';
import { frechetDistance, symmetricSqrt } from '../../src/metrics/frechet.js';
import { maskIoU, psnr } from '../../src/metrics/image.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import { Generator } from '../../src/runtime/random.js';

describe('image metrics', () => {
  it('PSNR of a uniform 0.1 error is 20 dB, and counts only the region', () => {
    const a = NDArray.full([1, 3, 4, 4], 0.5);
    const b = a.map((v, i) => (i % 16 < 8 ? v + 0.1 : v + 0.3));
    const top = new NDArray(
      Float32Array.from({ length: 16 }, (_, i) => (i < 8 ? 1 : 0)),
      [1, 1, 4, 4],
    );
    expect(psnr(a, b, top)).toBeCloseTo(20, 4);
    expect(psnr(a, a)).toBe(Infinity);
  });

  it('mask IoU', () => {
    const a = new NDArray(Float32Array.from([1, 1, 0, 0]), [1, 1, 2, 2]);
    const b = new NDArray(Float32Array.from([1, 0, 1, 0]), [1, 1, 2, 2]);
    expect(maskIoU(a, b)).toBeCloseTo(1 / 3);
    expect(maskIoU(NDArray.zeros([4]), NDArray.zeros([4]))).toBe(1);
  });
});

describe('Fréchet distance', () => {
  it('square root of a symmetric PSD matrix squares back', () => {
    const m = Float64Array.from([4, 1, 0.5, 1, 3, 0.2, 0.5, 0.2, 2]);
    const r = symmetricSqrt(m, 3);
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 3; j++) {
        let s = 0;
        for (let k = 0; k < 3; k++) s += r[i * 3 + k] * r[k * 3 + j];
        expect(s).toBeCloseTo(m[i * 3 + j], 10);
      }
    }
  });

  it('matches the closed form for isotropic Gaussians: ‖Δμ‖² + d(σ₁ − σ₂)²', () => {
    const gen = new Generator(3);
    const d = 4;
    const sample = (mu: number, sigma: number) =>
      Array.from({ length: 20000 }, () => Float32Array.from({ length: d }, () => mu + sigma * gen.normal()));
    const fd = frechetDistance(sample(0, 1), sample(0.5, 2));
    expect(fd).toBeCloseTo(d * 0.25 + d * 1, 0);
    expect(frechetDistance(sample(0, 1), sample(0, 1))).toBeLessThan(0.02);
  });
});
