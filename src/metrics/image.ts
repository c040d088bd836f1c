import type { NDArray } from '../runtime/ndarray.js';

/**
 * Peak signal-to-noise ratio in dB between images in [0, 1] ([1, C, H, W]), optionally only where `region`
 * ([1, 1, H, W], 1 = counted) is set — e.g. the background outside an edit's ground-truth mask.
 * Identical inputs give Infinity.
 */
export function psnr(a: NDArray, b: NDArray, region?: NDArray): number {
  if (a.shape.join(',') !== b.shape.join(','))
    throw new Error(`psnr: shapes [${a.shape}] and [${b.shape}] differ`);
  const mse = regionMean(a, b, region, (d) => d * d);
  return mse === 0 ? Infinity : 10 * Math.log10(1 / mse);
}

/** Intersection over union of two binary masks (values ≥ 0.5 count as set). Two empty masks give 1. */
export function maskIoU(a: NDArray, b: NDArray): number {
  if (a.size !== b.size) throw new Error(`maskIoU: sizes ${a.size} and ${b.size} differ`);
  let intersection = 0;
  let union = 0;
  for (let i = 0; i < a.size; i++) {
    const x = a.data[i] >= 0.5;
    const y = b.data[i] >= 0.5;
    if (x && y) intersection++;
    if (x || y) union++;
  }
  return union === 0 ? 1 : intersection / union;
}

/** Mean absolute error in [0, 1] units, optionally within a region. */
export function meanAbsoluteError(a: NDArray, b: NDArray, region?: NDArray): number {
  return regionMean(a, b, region, Math.abs);
}

/** Mean of f(a − b) over channels and the pixels `region` ([1, 1, H, W]) weights; NaN for an empty region. */
function regionMean(a: NDArray, b: NDArray, region: NDArray | undefined, f: (d: number) => number): number {
  const [, channels, height, width] = a.shape;
  const plane = height * width;
  let sum = 0;
  let count = 0;
  for (let c = 0; c < channels; c++) {
    for (let p = 0; p < plane; p++) {
      const weight = region ? region.data[p] : 1;
      if (weight <= 0) continue;
      sum += weight * f(a.data[c * plane + p] - b.data[c * plane + p]);
      count += weight;
    }
  }
  return count === 0 ? NaN : sum / count;
}
