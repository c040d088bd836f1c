import type { NDArray } from '../runtime/ndarray.js';
import {
  alphasCumprodFromConfig,
  checkNumInferenceSteps,
  resolveDDIMInverseConfig,
  spacedTimesteps,
  type DDIMConfig,
} from './config.js';
import { alphaAtTimestep, ddimUpdate } from './ddim.js';
import type { Scheduler, SchedulerStepOptions, SchedulerStepOutput } from './scheduler.js';

/**
 * diffusers' DDIMInverseScheduler: deterministic DDIM run backwards, clean latents → noise (DDIM inversion).
 *
 * Timesteps ascend. `step(ε, t, x)` moves x from the noise level of `t − num_train_timesteps // n` (or the
 * initial ᾱ, 1 with set_alpha_to_one, ᾱ_0 otherwise, when that is negative) up to the level of `t`, which is
 * exactly the reverse of DDIMScheduler's step at `t` when ε is the same.
 *
 * Beyond diffusers: `timestep_spacing: "linspace"` is accepted (diffusers raises) and gives the ascending
 * version of DDIMScheduler's linspace timesteps, so any bundle's config can be inverted.
 */
export class DDIMInverseScheduler implements Scheduler {
  readonly name: string = 'ddim-inverse';
  readonly config: Readonly<DDIMConfig>;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly alphasCumprod: Float64Array;
  /** ᾱ the first inversion step starts from. */
  readonly initialAlphaCumprod: number;
  private currentTimesteps: number[];
  private inferenceSteps: number | undefined;

  constructor(config: unknown = {}) {
    this.config = Object.freeze(resolveDDIMInverseConfig(config));
    this.alphasCumprod = alphasCumprodFromConfig(this.config);
    this.initialAlphaCumprod = this.config.set_alpha_to_one ? 1 : this.alphasCumprod[0];
    this.currentTimesteps = Array.from({ length: this.config.num_train_timesteps }, (_, i) => i);
  }

  get timesteps(): readonly number[] {
    return this.currentTimesteps;
  }

  get numInferenceSteps(): number | undefined {
    return this.inferenceSteps;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { num_train_timesteps, timestep_spacing, steps_offset } = this.config;
    checkNumInferenceSteps(numInferenceSteps, num_train_timesteps, 'DDIMInverseScheduler');
    this.inferenceSteps = numInferenceSteps;
    this.currentTimesteps = spacedTimesteps(
      timestep_spacing,
      num_train_timesteps,
      numInferenceSteps,
      steps_offset,
      true,
    ).reverse();
  }

  scaleModelInput(sample: NDArray, _timestep: number): NDArray {
    return sample;
  }

  /** Inversion is deterministic: `options` (η, noise) are ignored. */
  step(
    modelOutput: NDArray,
    timestep: number,
    sample: NDArray,
    _options?: SchedulerStepOptions,
  ): SchedulerStepOutput {
    if (this.inferenceSteps === undefined) {
      throw new Error('DDIMInverseScheduler.step: call setTimesteps(numInferenceSteps) before step');
    }
    const { num_train_timesteps } = this.config;
    const alphaProdNext = alphaAtTimestep(this.alphasCumprod, timestep, 'DDIMInverseScheduler.step');
    const from = Math.min(
      timestep - Math.floor(num_train_timesteps / this.inferenceSteps),
      num_train_timesteps - 1,
    );
    const alphaProdT = from >= 0 ? this.alphasCumprod[from] : this.initialAlphaCumprod;
    return ddimUpdate({
      modelOutput,
      sample,
      predictionType: this.config.prediction_type,
      alphaProdT,
      alphaProdNext,
      clipRange: this.config.clip_sample ? this.config.clip_sample_range : undefined,
      directionScale: Math.sqrt(1 - alphaProdNext),
      noise: undefined,
      noiseScale: 0,
    });
  }

  /** q(x_t | x_0); diffusers' inverse scheduler has no add_noise, this is DDIMScheduler's. */
  addNoise(original: NDArray, noise: NDArray, timestep: number): NDArray {
    const alphaProd = alphaAtTimestep(this.alphasCumprod, timestep, 'DDIMInverseScheduler.addNoise');
    return original.axpby(Math.sqrt(alphaProd), noise, Math.sqrt(1 - alphaProd));
  }
}
