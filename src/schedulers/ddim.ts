import { NDArray, shapeSize } from '../runtime/ndarray.js';
import {
  alphasCumprodFromConfig,
  checkNumInferenceSteps,
  resolveDDIMConfig,
  spacedTimesteps,
  type DDIMConfig,
  type PredictionType,
} from './config.js';
import type { Scheduler, SchedulerStepOptions, SchedulerStepOutput } from './scheduler.js';

/**
 * diffusers' DDIMScheduler (Song et al., "Denoising Diffusion Implicit Models", eq. 12 and 16).
 *
 * Stateless between steps: the previous timestep is always `t − num_train_timesteps // numInferenceSteps`,
 * whatever the spacing, exactly as diffusers does.
 */
export class DDIMScheduler implements Scheduler {
  readonly name: string = 'ddim';
  readonly config: Readonly<DDIMConfig>;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly alphasCumprod: Float64Array;
  /** ᾱ used for the step that lands before timestep 0. */
  readonly finalAlphaCumprod: number;
  private currentTimesteps: number[];
  private inferenceSteps: number | undefined;

  constructor(config: unknown = {}) {
    this.config = Object.freeze(resolveDDIMConfig(config));
    this.alphasCumprod = alphasCumprodFromConfig(this.config);
    this.finalAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
    const n = this.config.num_train_timesteps;
    this.currentTimesteps = Array.from({ length: n }, (_, i) => n - 1 - i);
  }

  get timesteps(): readonly number[] {
    return this.currentTimesteps;
  }

  get numInferenceSteps(): number | undefined {
    return this.inferenceSteps;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { num_train_timesteps, timestep_spacing, steps_offset } = this.config;
    checkNumInferenceSteps(numInferenceSteps, num_train_timesteps, 'DDIMScheduler');
    this.inferenceSteps = numInferenceSteps;
    this.currentTimesteps = spacedTimesteps(
      timestep_spacing,
      num_train_timesteps,
      numInferenceSteps,
      steps_offset,
      true,
    );
  }

  scaleModelInput(sample: NDArray, _timestep: number): NDArray {
    return sample;
  }

  step(
    modelOutput: NDArray,
    timestep: number,
    sample: NDArray,
    options: SchedulerStepOptions = {},
  ): SchedulerStepOutput {
    const numInferenceSteps = this.requireTimesteps();
    const eta = options.eta ?? 0;
    if (!(eta >= 0)) throw new Error(`DDIMScheduler.step: eta must be ≥ 0, got ${eta}`);
    const alphaProdT = this.alphaAt(timestep, 'step');
    const prevTimestep = timestep - Math.floor(this.config.num_train_timesteps / numInferenceSteps);
    const alphaProdPrev = prevTimestep >= 0 ? this.alphasCumprod[prevTimestep] : this.finalAlphaCumprod;

    // Formula (16): σ_t(η) = η · sqrt((1 − ᾱ_prev)/(1 − ᾱ_t)) · sqrt(1 − ᾱ_t/ᾱ_prev).
    const variance = ((1 - alphaProdPrev) / (1 - alphaProdT)) * (1 - alphaProdT / alphaProdPrev);
    const stdDev = eta * Math.sqrt(variance);
    const noise = stdDev > 0 ? stepNoise(options, sample.shape, 'DDIMScheduler') : undefined;
    // η > 1 would make the direction's coefficient imaginary; diffusers returns NaN there, we clamp it to 0.
    const directionScale = Math.sqrt(Math.max(0, 1 - alphaProdPrev - stdDev * stdDev));

    return ddimUpdate({
      modelOutput,
      sample,
      predictionType: this.config.prediction_type,
      alphaProdT,
      alphaProdNext: alphaProdPrev,
      clipRange: this.config.clip_sample ? this.config.clip_sample_range : undefined,
      directionScale,
      noise,
      noiseScale: stdDev,
    });
  }

  addNoise(original: NDArray, noise: NDArray, timestep: number): NDArray {
    const alphaProd = this.alphaAt(timestep, 'addNoise');
    return original.axpby(Math.sqrt(alphaProd), noise, Math.sqrt(1 - alphaProd));
  }

  private requireTimesteps(): number {
    if (this.inferenceSteps === undefined) {
      throw new Error('DDIMScheduler.step: call setTimesteps(numInferenceSteps) before step');
    }
    return this.inferenceSteps;
  }

  private alphaAt(timestep: number, method: string): number {
    return alphaAtTimestep(this.alphasCumprod, timestep, `DDIMScheduler.${method}`);
  }
}

export function alphaAtTimestep(alphasCumprod: Float64Array, timestep: number, where: string): number {
  if (!Number.isInteger(timestep) || timestep < 0 || timestep >= alphasCumprod.length) {
    throw new Error(
      `${where}: timestep must be an integer in [0, ${alphasCumprod.length - 1}], got ${timestep}`,
    );
  }
  return alphasCumprod[timestep];
}

export function stepNoise(
  options: SchedulerStepOptions,
  shape: readonly number[],
  className: string,
): NDArray {
  if (options.varianceNoise !== undefined) {
    if (options.varianceNoise.size !== shapeSize(shape)) {
      throw new Error(
        `${className}.step: varianceNoise has shape [${options.varianceNoise.shape.join(', ')}], the sample [${shape.join(', ')}]`,
      );
    }
    return options.varianceNoise;
  }
  if (options.generator !== undefined) return options.generator.randn(shape);
  throw new Error(
    `${className}.step: a stochastic step (eta > 0) needs options.varianceNoise or options.generator`,
  );
}

/**
 * One DDIM update from noise level ᾱ_t to ᾱ_next (eq. 12), shared by the forward and inverse schedulers:
 * x_next = sqrt(ᾱ_next)·x̂₀ + directionScale·ε̂ + noiseScale·noise.
 */
export function ddimUpdate(args: {
  modelOutput: NDArray;
  sample: NDArray;
  predictionType: PredictionType;
  alphaProdT: number;
  alphaProdNext: number;
  clipRange: number | undefined;
  directionScale: number;
  noise: NDArray | undefined;
  noiseScale: number;
}): SchedulerStepOutput {
  const { modelOutput, sample, predictionType, alphaProdT, clipRange, directionScale, noise, noiseScale } =
    args;
  if (modelOutput.size !== sample.size) {
    throw new Error(
      `DDIM step: model output [${modelOutput.shape.join(', ')}] and sample [${sample.shape.join(', ')}] differ in size`,
    );
  }
  const sqrtAlpha = Math.sqrt(alphaProdT);
  const sqrtBeta = Math.sqrt(1 - alphaProdT);
  const sqrtAlphaNext = Math.sqrt(args.alphaProdNext);
  const x = sample.data;
  const m = modelOutput.data;
  const z = noise?.data;
  const predOriginal = new Float32Array(x.length);
  const prev = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    let x0: number;
    let eps: number;
    if (predictionType === 'epsilon') {
      x0 = (x[i] - sqrtBeta * m[i]) / sqrtAlpha;
      eps = m[i];
    } else if (predictionType === 'v_prediction') {
      x0 = sqrtAlpha * x[i] - sqrtBeta * m[i];
      eps = sqrtAlpha * m[i] + sqrtBeta * x[i];
    } else {
      x0 = m[i];
      eps = (x[i] - sqrtAlpha * x0) / sqrtBeta;
    }
    // Like diffusers, ε̂ is not recomputed from the clipped x̂₀ (use_clipped_model_output=False).
    if (clipRange !== undefined) x0 = Math.min(clipRange, Math.max(-clipRange, x0));
    predOriginal[i] = x0;
    let next = sqrtAlphaNext * x0 + directionScale * eps;
    if (z !== undefined) next += noiseScale * z[i];
    prev[i] = next;
  }
  return {
    prevSample: new NDArray(prev, sample.shape),
    predOriginalSample: new NDArray(predOriginal, sample.shape),
  };
}
