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

/**
 * SSIM (Wang et al. 2004) between images in [0, 1] ([1, C, H, W]): the usual 11×11 Gaussian window (σ 1.5),
 * K₁ 0.01, K₂ 0.03, data range 1, computed per channel; the SSIM map is averaged over channels and over the pixels
 * `region` ([1, 1, H, W]) weights (the whole image without one). Identical inputs give 1. The window is cut at
 * the borders (normalised over the pixels inside), so every pixel has a value.
 */
export function ssim(a: NDArray, b: NDArray, region?: NDArray): number {
  if (a.shape.join(',') !== b.shape.join(','))
    throw new Error(`ssim: shapes [${a.shape}] and [${b.shape}] differ`);
  const [, channels, height, width] = a.shape;
  const plane = height * width;
  const radius = 5;
  const kernel = Array.from({ length: 2 * radius + 1 }, (_, i) =>
    Math.exp(-((i - radius) ** 2) / (2 * 1.5 * 1.5)),
  );
  const c1 = 0.01 ** 2;
  const c2 = 0.03 ** 2;
  // Separable blur with border renormalisation.
  const blur = (x: Float64Array): Float64Array => {
    const tmp = new Float64Array(plane);
    const out = new Float64Array(plane);
    for (let y = 0; y < height; y++)
      for (let xx = 0; xx < width; xx++) {
        let s = 0;
        let w = 0;
        for (let k = -radius; k <= radius; k++) {
          const q = xx + k;
          if (q < 0 || q >= width) continue;
          s += kernel[k + radius] * x[y * width + q];
          w += kernel[k + radius];
        }
        tmp[y * width + xx] = s / w;
      }
    for (let y = 0; y < height; y++)
      for (let xx = 0; xx < width; xx++) {
        let s = 0;
        let w = 0;
        for (let k = -radius; k <= radius; k++) {
          const q = y + k;
          if (q < 0 || q >= height) continue;
          s += kernel[k + radius] * tmp[q * width + xx];
          w += kernel[k + radius];
        }
        out[y * width + xx] = s / w;
      }
    return out;
  };
  let sum = 0;
  let count = 0;
  for (let c = 0; c < channels; c++) {
    const x = Float64Array.from(a.data.subarray(c * plane, (c + 1) * plane));
    const y = Float64Array.from(b.data.subarray(c * plane, (c + 1) * plane));
    const mx = blur(x);
    const my = blur(y);
    const sxx = blur(x.map((v) => v * v));
    const syy = blur(y.map((v) => v * v));
    const sxy = blur(x.map((v, i) => v * y[i]));
    for (let p = 0; p < plane; p++) {
      const weight = region ? region.data[p] : 1;
      if (weight <= 0) continue;
      const vx = sxx[p] - mx[p] ** 2;
      const vy = syy[p] - my[p] ** 2;
      const cov = sxy[p] - mx[p] * my[p];
      const value =
        ((2 * mx[p] * my[p] + c1) * (2 * cov + c2)) / ((mx[p] ** 2 + my[p] ** 2 + c1) * (vx + vy + c2));
      sum += weight * value;
      count += weight;
    }
  }
  return count === 0 ? NaN : sum / count;
}
