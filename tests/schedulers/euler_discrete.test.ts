import { describe, expect, it } from 'vitest';
import { NDArray } from '../../src/runtime/ndarray.js';
import { Generator } from '../../src/runtime/random.js';
import { EulerDiscreteScheduler } from '../../src/schedulers/index.js';

const SD_BETAS = {
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  num_train_timesteps: 1000,
};
const SDXL_EULER = {
  _class_name: 'EulerDiscreteScheduler',
  ...SD_BETAS,
  interpolation_type: 'linear',
  prediction_type: 'epsilon',
  steps_offset: 1,
  timestep_spacing: 'leading',
  use_karras_sigmas: false,
};
const SHAPE = [1, 4, 2, 2];

function randn(seed: number): NDArray {
  return new Generator(seed).randn(SHAPE);
}

function expectArrayClose(actual: NDArray, expected: NDArray, tolerance = 1e-5): void {
  const scale = Math.max(1, ...Array.from(expected.data, Math.abs));
  expect(actual.maxAbsDiff(expected) / scale).toBeLessThan(tolerance);
}

function trainSigma(scheduler: EulerDiscreteScheduler, t: number): number {
  const a = scheduler.alphasCumprod[t];
  return Math.sqrt((1 - a) / a);
}

describe('EulerDiscreteScheduler', () => {
  it('starts from σ_max = 14.6146 with SD betas and linspace spacing', () => {
    const scheduler = new EulerDiscreteScheduler(SD_BETAS);
    expect(scheduler.config.timestep_spacing).toBe('linspace');
    scheduler.setTimesteps(50);
    expect(scheduler.initNoiseSigma).toBeCloseTo(14.6146, 4);
    expect(scheduler.timesteps[0]).toBe(999);
  });

  it('keeps linspace timesteps fractional, in float32, and interpolates σ between training steps', () => {
    const scheduler = new EulerDiscreteScheduler(SD_BETAS);
    scheduler.setTimesteps(50);
    expect(scheduler.timesteps[1]).toBe(Math.fround(999 - 999 / 49));
    expect(scheduler.timesteps[1]).toBeCloseTo(978.6122, 4);
    const t = scheduler.timesteps[1];
    const low = Math.floor(t);
    const expected =
      trainSigma(scheduler, low) + (t - low) * (trainSigma(scheduler, low + 1) - trainSigma(scheduler, low));
    expect(scheduler.sigmaSchedule[1]).toBeCloseTo(expected, 12);
    expect(scheduler.sigmaSchedule[50]).toBe(0);
  });

  it('with leading spacing starts at 981 and scales the initial noise by sqrt(σ² + 1)', () => {
    const scheduler = new EulerDiscreteScheduler(SDXL_EULER);
    scheduler.setTimesteps(50);
    expect(scheduler.timesteps[0]).toBe(981);
    expect(scheduler.timesteps.at(-1)).toBe(1);
    const sigma = trainSigma(scheduler, 981);
    expect(scheduler.initNoiseSigma).toBeCloseTo(Math.sqrt(sigma * sigma + 1), 10);
  });

  it('divides the model input by sqrt(σ² + 1) and takes x + ε·(σ_next − σ) for ε-prediction', () => {
    const scheduler = new EulerDiscreteScheduler(SDXL_EULER);
    scheduler.setTimesteps(10);
    const [t0, t1] = scheduler.timesteps;
    const sigma = trainSigma(scheduler, t0);
    const sigmaNext = trainSigma(scheduler, t1);
    const x = randn(1).scale(scheduler.initNoiseSigma);
    const eps = randn(2);
    expectArrayClose(scheduler.scaleModelInput(x, t0), x.scale(1 / Math.sqrt(sigma * sigma + 1)));
    const out = scheduler.step(eps, t0, x);
    expectArrayClose(out.prevSample, x.axpby(1, eps, sigmaNext - sigma));
    expectArrayClose(out.predOriginalSample, x.axpby(1, eps, -sigma));
    // The step index advanced: the next scaling uses σ at t1.
    expectArrayClose(scheduler.scaleModelInput(x, t1), x.scale(1 / Math.sqrt(sigmaNext * sigmaNext + 1)));
  });

  it('converts v_prediction made on the scaled input back to x₀', () => {
    const scheduler = new EulerDiscreteScheduler({ ...SDXL_EULER, prediction_type: 'v_prediction' });
    scheduler.setTimesteps(10);
    const t = scheduler.timesteps[3];
    scheduler.setBeginIndex(3);
    const sigma = scheduler.sigmaSchedule[3];
    const x0 = randn(3);
    const eps = randn(4);
    // In VP terms the UNet sees α·x₀ + s·ε with α = 1/sqrt(σ²+1), s = σ·α, and predicts v = α·ε − s·x₀.
    const alpha = 1 / Math.sqrt(sigma * sigma + 1);
    const v = eps.axpby(alpha, x0, -sigma * alpha);
    const out = scheduler.step(v, t, x0.axpby(1, eps, sigma));
    expectArrayClose(out.predOriginalSample, x0);
  });

  it('img2img: begin index picks the σ for addNoise (x₀ + σ·noise) and the first step', () => {
    const scheduler = new EulerDiscreteScheduler({ ...SDXL_EULER, timestep_spacing: 'trailing' });
    scheduler.setTimesteps(8);
    scheduler.setBeginIndex(3);
    const x0 = randn(5);
    const noise = randn(6);
    const sigma = scheduler.sigmaSchedule[3];
    expectArrayClose(scheduler.addNoise(x0, noise, scheduler.timesteps[3]), x0.axpby(1, noise, sigma));
    const out = scheduler.step(noise, scheduler.timesteps[3], x0.axpby(1, noise, sigma));
    expectArrayClose(out.prevSample, x0.axpby(1, noise, scheduler.sigmaSchedule[4]));
  });

  it('final_sigmas_type sigma_min ends at the smallest training σ', () => {
    const scheduler = new EulerDiscreteScheduler({ ...SDXL_EULER, final_sigmas_type: 'sigma_min' });
    scheduler.setTimesteps(5);
    expect(scheduler.sigmaSchedule[5]).toBeCloseTo(trainSigma(scheduler, 0), 12);
  });

  it('rejects timesteps that are not in the schedule and stepping past the end', () => {
    const scheduler = new EulerDiscreteScheduler(SDXL_EULER);
    scheduler.setTimesteps(2);
    expect(() => scheduler.scaleModelInput(randn(1), 500)).toThrow(/not one of the scheduler's timesteps/);
    let x = randn(1);
    for (const t of scheduler.timesteps) {
      x = scheduler.step(randn(2), t, scheduler.scaleModelInput(x, t)).prevSample;
    }
    expect(() => scheduler.step(randn(2), 1, x)).toThrow(/all 2 timesteps/);
  });
});
