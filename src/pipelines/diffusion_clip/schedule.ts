/**
 * DiffusionCLIP's deterministic DDIM over a partial schedule (the reference `seq_inv`, `seq_train`, `seq_test`):
 * n timesteps spread evenly over [0, t₀] (`int(linspace(0, 1, n) · t₀)`); inversion walks them up from the clean
 * image, generation walks them down and takes one last step to ā = 1 (the reference's t_next = −1).
 */
import type { NDArray } from '../../runtime/ndarray.js';
import { UserError } from '../../util/errors.js';

/** int(linspace(0, 1, n) · t₀), as the reference builds its sequences. */
export function diffusionClipTimesteps(t0: number, n: number): number[] {
  if (!Number.isInteger(n) || n < 2) throw new UserError(`DiffusionCLIP needs at least 2 steps, got ${n}`);
  if (!Number.isInteger(t0) || t0 < 1)
    throw new UserError(`t₀ must be a positive integer timestep, got ${t0}`);
  return Array.from({ length: n }, (_, k) => Math.trunc((k / (n - 1)) * t0));
}

/** ā at `t`, with ā(−1) = 1 (the clean image). */
export function alphaBar(alphasCumprod: ArrayLike<number>, t: number): number {
  return t < 0 ? 1 : alphasCumprod[t];
}

/**
 * The coefficients of one deterministic DDIM move from ā to ā_next (up or down the schedule):
 * x_next = a · x + b · ε, and x̂₀ = c_x · x + c_ε · ε.
 */
export function ddimCoefficients(
  alpha: number,
  alphaNext: number,
): { a: number; b: number; x0: [number, number] } {
  const sa = Math.sqrt(alpha);
  const sn = Math.sqrt(alphaNext);
  return {
    a: sn / sa,
    b: Math.sqrt(1 - alphaNext) - (sn * Math.sqrt(1 - alpha)) / sa,
    x0: [1 / sa, -Math.sqrt(1 - alpha) / sa],
  };
}

/** x_next = a · x + b · ε. */
export function ddimMove(x: NDArray, eps: NDArray, alpha: number, alphaNext: number): NDArray {
  const { a, b } = ddimCoefficients(alpha, alphaNext);
  return x.axpby(a, eps, b);
}
