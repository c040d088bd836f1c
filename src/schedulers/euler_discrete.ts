import { NDArray } from '../runtime/ndarray.js';
import {
  alphasCumprodFromConfig,
  checkNumInferenceSteps,
  interpolateAt,
  linspace,
  resolveEulerDiscreteConfig,
  spacedTimesteps,
  withFiniteTerminalSigma,
  type EulerDiscreteConfig,
} from './config.js';
import type { Scheduler, SchedulerStepOptions, SchedulerStepOutput } from './scheduler.js';

/**
 * diffusers' EulerDiscreteScheduler (Karras et al., "Elucidating the Design Space", Algorithm 2 without churn).
 *
 * Works in σ-space: x = x₀ + σ·ε with σ = sqrt((1 − ᾱ)/ᾱ) linearly interpolated at the (possibly fractional)
 * timesteps, so the UNet input is scaled by 1/sqrt(σ² + 1) and the initial noise by `initNoiseSigma`.
 * Stateful (step index): visit the timesteps in order; for img2img call `setBeginIndex` after `setTimesteps`.
 */
export class EulerDiscreteScheduler implements Scheduler {
  readonly name: string = 'euler';
  readonly config: Readonly<EulerDiscreteConfig>;
  readonly order = 1;
  readonly alphasCumprod: Float64Array;
  private readonly trainSigmas: Float64Array;
  private currentTimesteps: number[];
  private sigmas: Float64Array;
  private inferenceSteps: number | undefined;
  private stepIndex: number | undefined;
  private beginIndex: number | undefined;

  constructor(config: unknown = {}) {
    this.config = Object.freeze(resolveEulerDiscreteConfig(config));
    this.alphasCumprod = withFiniteTerminalSigma(alphasCumprodFromConfig(this.config), this.config);
    this.trainSigmas = this.alphasCumprod.map((a) => Math.sqrt((1 - a) / a));
    // Before setTimesteps diffusers uses the whole training schedule, which addNoise-style callers rely on.
    const n = this.config.num_train_timesteps;
    this.currentTimesteps = linspace(0, n - 1, n)
      .reverse()
      .map(Math.fround);
    this.sigmas = Float64Array.from([...this.trainSigmas].reverse().concat(0));
  }

  get timesteps(): readonly number[] {
    return this.currentTimesteps;
  }

  get numInferenceSteps(): number | undefined {
    return this.inferenceSteps;
  }

  /** σ at each timestep, then the final σ (0 for final_sigmas_type "zero"). */
  get sigmaSchedule(): Float64Array {
    return this.sigmas;
  }

  /**
   * σ_max for linspace/trailing spacing; sqrt(σ_max² + 1) for leading, whose first timestep is below the
   * noisiest one (diffusers' convention, kept so latents match its pipelines).
   */
  get initNoiseSigma(): number {
    const maxSigma = this.sigmas.reduce((m, s) => Math.max(m, s), 0);
    return this.config.timestep_spacing === 'leading' ? Math.sqrt(maxSigma * maxSigma + 1) : maxSigma;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { num_train_timesteps, timestep_spacing, steps_offset, final_sigmas_type } = this.config;
    checkNumInferenceSteps(numInferenceSteps, num_train_timesteps, 'EulerDiscreteScheduler');
    // diffusers keeps timesteps in float32 (linspace ones are fractional), and interpolates σ at those values.
    const timesteps = spacedTimesteps(
      timestep_spacing,
      num_train_timesteps,
      numInferenceSteps,
      steps_offset,
      false,
    );
    const finalSigma = final_sigmas_type === 'zero' ? 0 : this.trainSigmas[0];
    this.sigmas = Float64Array.from([
      ...timesteps.map((t) => interpolateAt(this.trainSigmas, t)),
      finalSigma,
    ]);
    this.currentTimesteps = timesteps;
    this.inferenceSteps = numInferenceSteps;
    this.stepIndex = undefined;
    this.beginIndex = undefined;
  }

  setBeginIndex(beginIndex: number): void {
    if (!Number.isInteger(beginIndex) || beginIndex < 0 || beginIndex >= this.currentTimesteps.length) {
      throw new Error(
        `EulerDiscreteScheduler.setBeginIndex: index must be in [0, ${this.currentTimesteps.length - 1}], got ${beginIndex}`,
      );
    }
    this.beginIndex = beginIndex;
  }

  scaleModelInput(sample: NDArray, timestep: number): NDArray {
    this.stepIndex ??= this.initialStepIndex(timestep);
    const sigma = this.sigmaAt(this.stepIndex, 'scaleModelInput');
    return sample.scale(1 / Math.sqrt(sigma * sigma + 1));
  }

  /** Deterministic Euler step (s_churn = 0); `options` are ignored. */
  step(
    modelOutput: NDArray,
    timestep: number,
    sample: NDArray,
    _options?: SchedulerStepOptions,
  ): SchedulerStepOutput {
    if (modelOutput.size !== sample.size) {
      throw new Error(
        `EulerDiscreteScheduler.step: model output [${modelOutput.shape.join(', ')}] and sample [${sample.shape.join(', ')}] differ in size`,
      );
    }
    const index = this.stepIndex ?? this.initialStepIndex(timestep);
    const sigma = this.sigmaAt(index, 'step');
    const dt = this.sigmas[index + 1] - sigma;
    const x = sample.data;
    const m = modelOutput.data;
    const predOriginal = new Float32Array(x.length);
    const prev = new Float32Array(x.length);
    // v-prediction's denoiser: x₀ = c_skip·x + c_out·v with c_skip = 1/(σ²+1), c_out = −σ/sqrt(σ²+1).
    const cSkip = 1 / (sigma * sigma + 1);
    const cOut = -sigma / Math.sqrt(sigma * sigma + 1);
    for (let i = 0; i < x.length; i++) {
      let x0: number;
      if (this.config.prediction_type === 'epsilon') x0 = x[i] - sigma * m[i];
      else if (this.config.prediction_type === 'v_prediction') x0 = cSkip * x[i] + cOut * m[i];
      else x0 = m[i];
      predOriginal[i] = x0;
      const derivative = (x[i] - x0) / sigma;
      prev[i] = x[i] + derivative * dt;
    }
    this.stepIndex = index + 1;
    return {
      prevSample: new NDArray(prev, sample.shape),
      predOriginalSample: new NDArray(predOriginal, sample.shape),
    };
  }

  /**
   * x = x₀ + σ·noise at the σ diffusers picks: the current step index once stepping has begun (inpainting), else
   * the begin index (img2img), else the timestep's own index.
   */
  addNoise(original: NDArray, noise: NDArray, timestep: number): NDArray {
    const index =
      this.beginIndex === undefined ? this.indexForTimestep(timestep) : (this.stepIndex ?? this.beginIndex);
    return original.axpby(1, noise, this.sigmas[index]);
  }

  private initialStepIndex(timestep: number): number {
    return this.beginIndex ?? this.indexForTimestep(timestep);
  }

  /** The second match for a repeated timestep, so an img2img start does not skip a σ (as diffusers). */
  private indexForTimestep(timestep: number): number {
    const matches: number[] = [];
    this.currentTimesteps.forEach((t, i) => {
      if (t === timestep) matches.push(i);
    });
    if (matches.length === 0) {
      throw new Error(`EulerDiscreteScheduler: timestep ${timestep} is not one of the scheduler's timesteps`);
    }
    return matches.length > 1 ? matches[1] : matches[0];
  }

  private sigmaAt(index: number, method: string): number {
    if (index >= this.sigmas.length - 1) {
      throw new Error(
        `EulerDiscreteScheduler.${method}: all ${this.sigmas.length - 1} timesteps have been stepped; call setTimesteps again`,
      );
    }
    return this.sigmas[index];
  }
}
