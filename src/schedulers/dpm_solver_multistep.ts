import { NDArray } from '../runtime/ndarray.js';
import {
  alphasCumprodFromConfig,
  checkNumInferenceSteps,
  interpolateAt,
  linspace,
  arangeFloat,
  resolveDPMSolverMultistepConfig,
  roundHalfToEven,
  withFiniteTerminalSigma,
  type DPMSolverMultistepConfig,
} from './config.js';
import type { Scheduler, SchedulerStepOptions, SchedulerStepOutput } from './scheduler.js';

/**
 * diffusers' DPMSolverMultistepScheduler with algorithm_type "dpmsolver++" ("DPM++ 2M"; Lu et al.,
 * "DPM-Solver++", Algorithm 2), on σ = sqrt((1 − ᾱ)/ᾱ) interpolated at the inference timesteps.
 *
 * Stateful: it keeps the previous data prediction x̂₀ and a step index, so a run must start with
 * `setTimesteps` and visit the timesteps in order. For img2img, call `setBeginIndex` after `setTimesteps`.
 * `order` is 1 as in diffusers: one model evaluation per timestep, whatever `solver_order`.
 */
export class DPMSolverMultistepScheduler implements Scheduler {
  readonly name: string = 'dpm++2m';
  readonly config: Readonly<DPMSolverMultistepConfig>;
  readonly order = 1;
  readonly initNoiseSigma = 1;
  readonly alphasCumprod: Float64Array;
  private currentTimesteps: number[] = [];
  private sigmas = new Float64Array(0);
  private inferenceSteps: number | undefined;
  private previousDataPrediction: NDArray | undefined;
  private lowerOrderCount = 0;
  private stepIndex: number | undefined;
  private beginIndex: number | undefined;

  constructor(config: unknown = {}) {
    this.config = Object.freeze(resolveDPMSolverMultistepConfig(config));
    this.alphasCumprod = withFiniteTerminalSigma(alphasCumprodFromConfig(this.config), this.config);
    const n = this.config.num_train_timesteps;
    this.currentTimesteps = linspace(0, n - 1, n).reverse();
  }

  get timesteps(): readonly number[] {
    return this.currentTimesteps;
  }

  get numInferenceSteps(): number | undefined {
    return this.inferenceSteps;
  }

  /** σ at each inference timestep, then the final σ (0 for final_sigmas_type "zero"). */
  get sigmaSchedule(): Float64Array {
    return this.sigmas;
  }

  setTimesteps(numInferenceSteps: number): void {
    const { num_train_timesteps: trainSteps, timestep_spacing, steps_offset } = this.config;
    checkNumInferenceSteps(numInferenceSteps, trainSteps, 'DPMSolverMultistepScheduler');
    // lambda_min_clipped drops the noisiest timesteps whose log-SNR λ is below it (cosine schedules need this).
    const lastTimestep = trainSteps - this.countLambdasBelow(this.config.lambda_min_clipped);
    let timesteps: number[];
    if (timestep_spacing === 'linspace') {
      timesteps = linspace(0, lastTimestep - 1, numInferenceSteps + 1)
        .map(roundHalfToEven)
        .reverse()
        .slice(0, -1);
    } else if (timestep_spacing === 'leading') {
      const stepRatio = Math.floor(lastTimestep / (numInferenceSteps + 1));
      timesteps = Array.from(
        { length: numInferenceSteps },
        (_, i) => (numInferenceSteps - i) * stepRatio + steps_offset,
      );
    } else {
      const stepRatio = trainSteps / numInferenceSteps;
      const count = Math.min(numInferenceSteps, Math.ceil(lastTimestep / stepRatio));
      timesteps = arangeFloat(lastTimestep, -stepRatio, count).map((t) => roundHalfToEven(t) - 1);
    }

    const trainSigmas = this.alphasCumprod.map((a) => Math.sqrt((1 - a) / a));
    const finalSigma = this.config.final_sigmas_type === 'zero' ? 0 : trainSigmas[0];
    this.sigmas = Float64Array.from([...timesteps.map((t) => interpolateAt(trainSigmas, t)), finalSigma]);
    this.currentTimesteps = timesteps;
    this.inferenceSteps = timesteps.length;
    this.previousDataPrediction = undefined;
    this.lowerOrderCount = 0;
    this.stepIndex = undefined;
    this.beginIndex = undefined;
  }

  setBeginIndex(beginIndex: number): void {
    if (!Number.isInteger(beginIndex) || beginIndex < 0 || beginIndex >= this.currentTimesteps.length) {
      throw new Error(
        `DPMSolverMultistepScheduler.setBeginIndex: index must be in [0, ${this.currentTimesteps.length - 1}], got ${beginIndex}`,
      );
    }
    this.beginIndex = beginIndex;
  }

  scaleModelInput(sample: NDArray, _timestep: number): NDArray {
    return sample;
  }

  step(
    modelOutput: NDArray,
    timestep: number,
    sample: NDArray,
    _options?: SchedulerStepOptions,
  ): SchedulerStepOutput {
    if (this.inferenceSteps === undefined) {
      throw new Error('DPMSolverMultistepScheduler.step: call setTimesteps(numInferenceSteps) before step');
    }
    if (modelOutput.size !== sample.size) {
      throw new Error(
        `DPMSolverMultistepScheduler.step: model output [${modelOutput.shape.join(', ')}] and sample [${sample.shape.join(', ')}] differ in size`,
      );
    }
    const index = this.stepIndex ?? this.initialStepIndex(timestep);
    const count = this.currentTimesteps.length;
    if (index >= count) {
      throw new Error(
        `DPMSolverMultistepScheduler.step: all ${count} timesteps have been stepped; call setTimesteps again`,
      );
    }
    const { lower_order_final, euler_at_final, final_sigmas_type, solver_order } = this.config;
    // Lower orders at the end stabilise short schedules; a final σ of 0 needs first order (λ is infinite there).
    // diffusers' lower_order_second only demotes third order, which solver_order ≤ 2 never uses.
    const lowerOrderFinal =
      index === count - 1 &&
      (euler_at_final || (lower_order_final && count < 15) || final_sigmas_type === 'zero');

    const dataPrediction = this.dataPrediction(modelOutput, sample, this.sigmas[index]);
    const previous = this.previousDataPrediction;
    let prevSample: NDArray;
    if (solver_order === 1 || this.lowerOrderCount < 1 || lowerOrderFinal || previous === undefined) {
      prevSample = this.firstOrderUpdate(dataPrediction, sample, index);
    } else {
      prevSample = this.secondOrderUpdate(dataPrediction, previous, sample, index);
    }
    this.previousDataPrediction = dataPrediction;
    if (this.lowerOrderCount < solver_order) this.lowerOrderCount++;
    this.stepIndex = index + 1;
    return { prevSample, predOriginalSample: dataPrediction };
  }

  /**
   * Forward-diffuse to `timestep`'s σ: x = α·x₀ + σ_t·noise with α = 1/sqrt(σ²+1), σ_t = σ·α. Which σ follows
   * diffusers: the current step index once stepping has begun (inpainting), else the begin index (img2img),
   * else the timestep's own index.
   */
  addNoise(original: NDArray, noise: NDArray, timestep: number): NDArray {
    if (this.inferenceSteps === undefined) {
      throw new Error('DPMSolverMultistepScheduler.addNoise: call setTimesteps(numInferenceSteps) first');
    }
    const index =
      this.beginIndex === undefined ? this.indexForTimestep(timestep) : (this.stepIndex ?? this.beginIndex);
    const { alpha, sigma } = alphaSigma(this.sigmas[index]);
    return original.axpby(alpha, noise, sigma);
  }

  private countLambdasBelow(threshold: number): number {
    let count = 0;
    for (const a of this.alphasCumprod) {
      const lambda = Math.log(Math.sqrt(a)) - Math.log(Math.sqrt(1 - a));
      if (lambda < threshold) count++;
    }
    return count;
  }

  private initialStepIndex(timestep: number): number {
    return this.beginIndex ?? this.indexForTimestep(timestep);
  }

  /** diffusers' index_for_timestep: the second match for a repeated timestep, the last index when absent. */
  private indexForTimestep(timestep: number): number {
    const matches: number[] = [];
    this.currentTimesteps.forEach((t, i) => {
      if (t === timestep) matches.push(i);
    });
    if (matches.length === 0) return this.currentTimesteps.length - 1;
    return matches.length > 1 ? matches[1] : matches[0];
  }

  private dataPrediction(modelOutput: NDArray, sample: NDArray, sigma: number): NDArray {
    const { alpha, sigma: sigmaT } = alphaSigma(sigma);
    switch (this.config.prediction_type) {
      case 'epsilon':
        return sample.axpby(1 / alpha, modelOutput, -sigmaT / alpha);
      case 'v_prediction':
        return sample.axpby(alpha, modelOutput, -sigmaT);
      case 'sample':
        return modelOutput.clone();
    }
  }

  /** DPM-Solver++(1), i.e. DDIM in λ: x_t = (σ_t/σ_s)·x − α_t·(e^{−h} − 1)·x̂₀. */
  private firstOrderUpdate(dataPrediction: NDArray, sample: NDArray, index: number): NDArray {
    const s = alphaSigma(this.sigmas[index]);
    const t = alphaSigma(this.sigmas[index + 1]);
    if (t.sigma === 0) return dataPrediction.clone();
    const h = lambdaOf(t) - lambdaOf(s);
    return sample.axpby(t.sigma / s.sigma, dataPrediction, -t.alpha * Math.expm1(-h));
  }

  /** Multistep DPM-Solver++(2M): D = D₀ + c·(D₀ − D₁)/r₀ with c = ½ (midpoint) or from the heun variant. */
  private secondOrderUpdate(current: NDArray, previous: NDArray, sample: NDArray, index: number): NDArray {
    const t = alphaSigma(this.sigmas[index + 1]);
    const s0 = alphaSigma(this.sigmas[index]);
    const s1 = alphaSigma(this.sigmas[index - 1]);
    const h = lambdaOf(t) - lambdaOf(s0);
    const r0 = (lambdaOf(s0) - lambdaOf(s1)) / h;
    const expm1 = Math.expm1(-h);
    const sampleScale = t.sigma / s0.sigma;
    const d0Scale = -t.alpha * expm1;
    const d1Scale =
      this.config.solver_type === 'midpoint' ? -0.5 * t.alpha * expm1 : t.alpha * (expm1 / h + 1);
    // D1 = (m0 − m1)/r0, folded into the coefficients of m0 and m1.
    const currentScale = d0Scale + d1Scale / r0;
    const previousScale = -d1Scale / r0;
    const x = sample.data;
    const m0 = current.data;
    const m1 = previous.data;
    const out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++)
      out[i] = sampleScale * x[i] + currentScale * m0[i] + previousScale * m1[i];
    return new NDArray(out, sample.shape);
  }
}

function alphaSigma(sigma: number): { alpha: number; sigma: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  return { alpha, sigma: sigma * alpha };
}

function lambdaOf(point: { alpha: number; sigma: number }): number {
  return Math.log(point.alpha) - Math.log(point.sigma);
}
