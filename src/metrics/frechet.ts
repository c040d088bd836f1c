/**
 * Fréchet distance between Gaussians fitted to two feature sets (the FID formula, Heusel et al. 2017):
 * ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½).
 *
 * Tr((Σ₁Σ₂)^½) is computed as Tr((Σ₁^½ Σ₂ Σ₁^½)^½), whose argument is symmetric positive semi-definite, so both
 * square roots come from symmetric eigendecompositions (Jacobi) — stable in float64 without a complex sqrtm.
 */
export function frechetDistance(
  featuresA: readonly Float32Array[],
  featuresB: readonly Float32Array[],
): number {
  const a = gaussian(featuresA);
  const b = gaussian(featuresB);
  const d = a.mean.length;
  let meanTerm = 0;
  for (let i = 0; i < d; i++) meanTerm += (a.mean[i] - b.mean[i]) ** 2;
  const rootA = symmetricSqrt(a.cov, d);
  const inner = multiply(multiply(rootA, b.cov, d), rootA, d);
  const rootInner = symmetricSqrt(inner, d);
  let trace = 0;
  for (let i = 0; i < d; i++) trace += a.cov[i * d + i] + b.cov[i * d + i] - 2 * rootInner[i * d + i];
  return meanTerm + trace;
}

function gaussian(features: readonly Float32Array[]): { mean: Float64Array; cov: Float64Array } {
  if (features.length < 2) throw new Error('frechetDistance needs at least two feature vectors per set');
  const d = features[0].length;
  const mean = new Float64Array(d);
  for (const f of features) for (let i = 0; i < d; i++) mean[i] += f[i] / features.length;
  const cov = new Float64Array(d * d);
  for (const f of features) {
    for (let i = 0; i < d; i++) {
      const di = f[i] - mean[i];
      for (let j = i; j < d; j++) cov[i * d + j] += (di * (f[j] - mean[j])) / (features.length - 1);
    }
  }
  for (let i = 0; i < d; i++) for (let j = 0; j < i; j++) cov[i * d + j] = cov[j * d + i];
  return { mean, cov };
}

function multiply(x: Float64Array, y: Float64Array, d: number): Float64Array {
  const out = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let k = 0; k < d; k++) {
      const xik = x[i * d + k];
      if (xik === 0) continue;
      for (let j = 0; j < d; j++) out[i * d + j] += xik * y[k * d + j];
    }
  }
  return out;
}

/** Square root of a symmetric PSD matrix via cyclic Jacobi eigendecomposition; tiny negative eigenvalues → 0. */
export function symmetricSqrt(matrix: Float64Array, d: number): Float64Array {
  const a = Float64Array.from(matrix);
  const v = new Float64Array(d * d);
  for (let i = 0; i < d; i++) v[i * d + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < d; p++) for (let q = p + 1; q < d; q++) off += a[p * d + q] ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < d; p++) {
      for (let q = p + 1; q < d; q++) {
        const apq = a[p * d + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * d + q] - a[p * d + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < d; k++) {
          const akp = a[k * d + p];
          const akq = a[k * d + q];
          a[k * d + p] = c * akp - s * akq;
          a[k * d + q] = s * akp + c * akq;
        }
        for (let k = 0; k < d; k++) {
          const apk = a[p * d + k];
          const aqk = a[q * d + k];
          a[p * d + k] = c * apk - s * aqk;
          a[q * d + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < d; k++) {
          const vkp = v[k * d + p];
          const vkq = v[k * d + q];
          v[k * d + p] = c * vkp - s * vkq;
          v[k * d + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const out = new Float64Array(d * d);
  for (let k = 0; k < d; k++) {
    const root = Math.sqrt(Math.max(0, a[k * d + k]));
    for (let i = 0; i < d; i++) {
      const vik = v[i * d + k] * root;
      for (let j = 0; j < d; j++) out[i * d + j] += vik * v[j * d + k];
    }
  }
  return out;
}
