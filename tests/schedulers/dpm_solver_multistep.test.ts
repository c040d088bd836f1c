import { describe, expect, it } from 'vitest';
import { NDArray } from '../../src/runtime/ndarray.js';
import { Generator } from '../../src/runtime/random.js';
import { DPMSolverMultistepScheduler } from '../../src/schedulers/index.js';

const SD15_DPM = {
  _class_name: 'DPMSolverMultistepScheduler',
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  num_train_timesteps: 1000,
  steps_offset: 1,
};
const SHAPE = [1, 4, 2, 2];

function randn(seed: number): NDArray {
  return new Generator(seed).randn(SHAPE);
}

function expectArrayClose(actual: NDArray, expected: NDArray, tolerance = 1e-5): void {
  const scale = Math.max(1, ...Array.from(expected.data, Math.abs));
  expect(actual.maxAbsDiff(expected) / scale).toBeLessThan(tolerance);
}

describe('DPMSolverMultistepScheduler', () => {
  it('uses linspace timesteps by default: 999, 949, …, 50 at 20 steps (steps_offset ignored)', () => {
    const scheduler = new DPMSolverMultistepScheduler(SD15_DPM);
    scheduler.setTimesteps(20);
    expect(scheduler.timesteps).toEqual([
      999, 949, 899, 849, 799, 749, 699, 649, 599, 549, 500, 450, 400, 350, 300, 250, 200, 150, 100, 50,
    ]);
    expect(scheduler.sigmaSchedule).toHaveLength(21);
    expect(scheduler.sigmaSchedule[20]).toBe(0);
    expect(scheduler.order).toBe(1);
    expect(scheduler.initNoiseSigma).toBe(1);
  });

  it('computes leading timesteps over n + 1 intervals and adds steps_offset', () => {
    const scheduler = new DPMSolverMultistepScheduler({ ...SD15_DPM, timestep_spacing: 'leading' });
    scheduler.setTimesteps(15);
    expect(scheduler.timesteps).toEqual(Array.from({ length: 15 }, (_, i) => 931 - 62 * i));
  });

  it('drops timesteps whose log-SNR is below lambda_min_clipped', () => {
    const config = { beta_schedule: 'squaredcos_cap_v2', lambda_min_clipped: -5.1 };
    const scheduler = new DPMSolverMultistepScheduler(config);
    scheduler.setTimesteps(10);
    expect(scheduler.timesteps).toEqual([995, 896, 796, 696, 597, 498, 398, 298, 199, 100]);
  });

  it('takes a first step equal to DDIM between the same noise levels', () => {
    const scheduler = new DPMSolverMultistepScheduler(SD15_DPM);
    scheduler.setTimesteps(20);
    const [t0, t1] = scheduler.timesteps;
    const a0 = scheduler.alphasCumprod[t0];
    const a1 = scheduler.alphasCumprod[t1];
    const x = randn(1);
    const eps = randn(2);
    const out = scheduler.step(eps, t0, x);
    const x0 = x.axpby(1 / Math.sqrt(a0), eps, -Math.sqrt(1 - a0) / Math.sqrt(a0));
    expectArrayClose(out.predOriginalSample, x0);
    expectArrayClose(out.prevSample, x0.axpby(Math.sqrt(a1), eps, Math.sqrt(1 - a1)));
  });

  it('follows Algorithm 2 (2M) from the second step: D = (1 + 1/2r)·x̂₀ᵢ − (1/2r)·x̂₀ᵢ₋₁', () => {
    const scheduler = new DPMSolverMultistepScheduler(SD15_DPM);
    scheduler.setTimesteps(20);
    const [t0, t1, t2] = scheduler.timesteps;
    const first = scheduler.step(randn(2), t0, randn(1));
    const second = scheduler.step(randn(3), t1, first.prevSample);
    const alpha = (t: number): number => Math.sqrt(scheduler.alphasCumprod[t]);
    const sigma = (t: number): number => Math.sqrt(1 - scheduler.alphasCumprod[t]);
    const lambda = (t: number): number => Math.log(alpha(t) / sigma(t));
    const h = lambda(t2) - lambda(t1);
    const r = (lambda(t1) - lambda(t0)) / h;
    const d = second.predOriginalSample.axpby(1 + 1 / (2 * r), first.predOriginalSample, -1 / (2 * r));
    const expected = first.prevSample.axpby(sigma(t2) / sigma(t1), d, -alpha(t2) * Math.expm1(-h));
    expectArrayClose(second.prevSample, expected);
  });

  it('converts v_prediction to x̂₀', () => {
    const scheduler = new DPMSolverMultistepScheduler({ ...SD15_DPM, prediction_type: 'v_prediction' });
    scheduler.setTimesteps(20);
    const t = scheduler.timesteps[0];
    const a = scheduler.alphasCumprod[t];
    const x0 = randn(4);
    const eps = randn(5);
    const sample = x0.axpby(Math.sqrt(a), eps, Math.sqrt(1 - a));
    const v = eps.axpby(Math.sqrt(a), x0, -Math.sqrt(1 - a));
    expectArrayClose(scheduler.step(v, t, sample).predOriginalSample, x0);
  });

  it('ends on the data prediction when the final σ is zero, and refuses to step further', () => {
    const scheduler = new DPMSolverMultistepScheduler(SD15_DPM);
    scheduler.setTimesteps(3);
    let x = randn(1);
    let lastDataPrediction = x;
    scheduler.timesteps.forEach((t, k) => {
      const out = scheduler.step(randn(10 + k), t, x);
      x = out.prevSample;
      lastDataPrediction = out.predOriginalSample;
    });
    expect(x.maxAbsDiff(lastDataPrediction)).toBe(0);
    expect(() => scheduler.step(randn(2), 50, x)).toThrow(/all 3 timesteps/);
  });

  it('starts img2img at the begin index and noises with that index’s σ', () => {
    const scheduler = new DPMSolverMultistepScheduler(SD15_DPM);
    scheduler.setTimesteps(10);
    scheduler.setBeginIndex(4);
    const t = scheduler.timesteps[4];
    const a = scheduler.alphasCumprod[t];
    const x0 = randn(1);
    const noise = randn(2);
    // The begin index decides, not the timestep passed (as in diffusers).
    expectArrayClose(scheduler.addNoise(x0, noise, 12345), x0.axpby(Math.sqrt(a), noise, Math.sqrt(1 - a)));
    // setTimesteps forgets the begin index, so it must be set after it.
    scheduler.setTimesteps(10);
    const t0 = scheduler.timesteps[0];
    const a0 = scheduler.alphasCumprod[t0];
    expectArrayClose(scheduler.addNoise(x0, noise, t0), x0.axpby(Math.sqrt(a0), noise, Math.sqrt(1 - a0)));
    expect(() => scheduler.setBeginIndex(10)).toThrow(/setBeginIndex/);
  });

  it('requires setTimesteps before step and addNoise', () => {
    const scheduler = new DPMSolverMultistepScheduler(SD15_DPM);
    expect(() => scheduler.step(randn(1), 999, randn(2))).toThrow(/setTimesteps/);
    expect(() => scheduler.addNoise(randn(1), randn(2), 999)).toThrow(/setTimesteps/);
  });

  it('keeps a zero-terminal-SNR schedule finite by clamping ᾱ_T to 2^-24', () => {
    const scheduler = new DPMSolverMultistepScheduler({
      ...SD15_DPM,
      rescale_betas_zero_snr: true,
      prediction_type: 'v_prediction',
      timestep_spacing: 'trailing',
    });
    expect(scheduler.alphasCumprod[999]).toBe(2 ** -24);
    scheduler.setTimesteps(4);
    expect(scheduler.timesteps).toEqual([999, 749, 499, 249]);
    const out = scheduler.step(randn(1), 999, randn(2));
    expect(out.prevSample.data.every(Number.isFinite)).toBe(true);
  });
});
