import type { NDArray } from '../runtime/ndarray.js';
import type { Generator } from '../runtime/random.js';

/** What a denoising scheduler's `step` returns (diffusers' `prev_sample` and `pred_original_sample`). */
export interface SchedulerStepOutput {
  prevSample: NDArray;
  predOriginalSample: NDArray;
}

export interface SchedulerStepOptions {
  /** DDIM's η; 0 is deterministic DDIM, 1 is DDPM-like. Ignored by schedulers without it. */
  eta?: number;
  /** Source of the step's fresh noise, for stochastic steps. */
  generator?: Generator;
  /** Explicit noise for a stochastic step (overrides `generator`), for number-for-number comparison. */
  varianceNoise?: NDArray;
}

/**
 * The scheduler protocol the pipelines use, mirroring diffusers' SchedulerMixin in camelCase.
 *
 * Timesteps are integer training timesteps in [0, numTrainTimesteps); fractional ones (Euler with
 * interpolated sigmas) are allowed as numbers. `setTimesteps` must be called before `step`.
 */
export interface Scheduler {
  readonly name: string;
  /** Configuration after diffusers' defaults have been filled in. */
  readonly config: Readonly<Record<string, unknown>>;
  /** Multistep solvers consume `order` model evaluations per entry of timesteps in img2img slicing. */
  readonly order: number;
  /** Standard deviation of the initial noise: 1 for DDIM/DPM-Solver, σ_max-based for Euler. */
  readonly initNoiseSigma: number;
  readonly timesteps: readonly number[];
  readonly numInferenceSteps: number | undefined;
  readonly alphasCumprod: Float64Array;

  setTimesteps(numInferenceSteps: number): void;
  /** Input scaling some schedulers need before the UNet (Euler divides by sqrt(σ²+1)); identity for DDIM. */
  scaleModelInput(sample: NDArray, timestep: number): NDArray;
  step(
    modelOutput: NDArray,
    timestep: number,
    sample: NDArray,
    options?: SchedulerStepOptions,
  ): SchedulerStepOutput;
  /** Forward-diffuse clean `original` to `timestep` with `noise` (q(x_t | x_0)). */
  addNoise(original: NDArray, noise: NDArray, timestep: number): NDArray;
  /** Index of the step schedulers with state (multistep history, Euler's step index) start from; for img2img. */
  setBeginIndex?(beginIndex: number): void;
}
