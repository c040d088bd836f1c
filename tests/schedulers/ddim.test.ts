import { describe, expect, it } from 'vitest';
import { NDArray } from '../../src/runtime/ndarray.js';
import { Generator } from '../../src/runtime/random.js';
import { DDIMInverseScheduler, DDIMScheduler } from '../../src/schedulers/index.js';

const SD15 = {
  _class_name: 'PNDMScheduler',
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
};
const SHAPE = [1, 4, 2, 2];

function randn(seed: number): NDArray {
  return new Generator(seed).randn(SHAPE);
}

function expectArrayClose(actual: NDArray, expected: NDArray, tolerance = 1e-5): void {
  const scale = Math.max(1, ...Array.from(expected.data, Math.abs));
  expect(actual.maxAbsDiff(expected) / scale).toBeLessThan(tolerance);
}

describe('DDIMScheduler timesteps', () => {
  it('gives SD 1.5 its leading timesteps with steps_offset=1: 981, 961, …, 1 at 50 steps', () => {
    const scheduler = new DDIMScheduler(SD15);
    scheduler.setTimesteps(50);
    expect(scheduler.timesteps).toEqual(Array.from({ length: 50 }, (_, i) => 981 - 20 * i));
    expect(scheduler.numInferenceSteps).toBe(50);
  });

  it('rounds trailing timesteps half to even like numpy (937.5 → 938, 812.5 → 812)', () => {
    const scheduler = new DDIMScheduler({ ...SD15, timestep_spacing: 'trailing' });
    scheduler.setTimesteps(16);
    expect(scheduler.timesteps).toEqual([
      999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61,
    ]);
  });

  it('keeps exactly n trailing timesteps where numpy.arange would add a spurious one (n = 61)', () => {
    const scheduler = new DDIMScheduler({ ...SD15, timestep_spacing: 'trailing' });
    scheduler.setTimesteps(61);
    expect(scheduler.timesteps).toHaveLength(61);
    expect(scheduler.timesteps.slice(-3)).toEqual([48, 32, 15]);
  });

  it('rounds linspace timesteps to integers', () => {
    const scheduler = new DDIMScheduler({ ...SD15, timestep_spacing: 'linspace' });
    scheduler.setTimesteps(20);
    expect(scheduler.timesteps).toEqual([
      999, 946, 894, 841, 789, 736, 684, 631, 578, 526, 473, 421, 368, 315, 263, 210, 158, 105, 53, 0,
    ]);
  });

  it('rejects a step count outside [1, num_train_timesteps]', () => {
    const scheduler = new DDIMScheduler(SD15);
    expect(() => scheduler.setTimesteps(0)).toThrow(/numInferenceSteps/);
    expect(() => scheduler.setTimesteps(1001)).toThrow(/numInferenceSteps/);
    expect(() => scheduler.setTimesteps(2.5)).toThrow(/numInferenceSteps/);
  });
});

describe('DDIMScheduler.step', () => {
  const x0 = randn(1);
  const eps = randn(2);

  function noisy(scheduler: DDIMScheduler, t: number): NDArray {
    const a = scheduler.alphasCumprod[t];
    return x0.axpby(Math.sqrt(a), eps, Math.sqrt(1 - a));
  }

  it('recovers x₀ and moves along eq. 12 for an exact ε prediction', () => {
    const scheduler = new DDIMScheduler(SD15);
    scheduler.setTimesteps(50);
    const out = scheduler.step(eps, 501, noisy(scheduler, 501), { eta: 0 });
    expectArrayClose(out.predOriginalSample, x0);
    expectArrayClose(out.prevSample, noisy(scheduler, 481));
  });

  it('converts v_prediction (v = sqrt(ᾱ)ε − sqrt(1−ᾱ)x₀) to x₀ and ε', () => {
    const scheduler = new DDIMScheduler({ ...SD15, prediction_type: 'v_prediction' });
    scheduler.setTimesteps(50);
    const a = scheduler.alphasCumprod[741];
    const v = eps.axpby(Math.sqrt(a), x0, -Math.sqrt(1 - a));
    const out = scheduler.step(v, 741, noisy(scheduler, 741));
    expectArrayClose(out.predOriginalSample, x0);
    expectArrayClose(out.prevSample, noisy(scheduler, 721));
  });

  it('lands on x₀ at the last step when set_alpha_to_one is true', () => {
    const scheduler = new DDIMScheduler({ ...SD15, set_alpha_to_one: true, steps_offset: 0 });
    scheduler.setTimesteps(10);
    expect(scheduler.timesteps.at(-1)).toBe(0);
    const out = scheduler.step(eps, 0, noisy(scheduler, 0));
    expectArrayClose(out.prevSample, x0);
  });

  it('uses ᾱ_0 as the final ᾱ when set_alpha_to_one is false', () => {
    const scheduler = new DDIMScheduler(SD15);
    scheduler.setTimesteps(50);
    const out = scheduler.step(eps, 1, noisy(scheduler, 1));
    expectArrayClose(out.prevSample, noisy(scheduler, 0));
  });

  it('clips x̂₀ to clip_sample_range without re-deriving ε (diffusers default)', () => {
    const scheduler = new DDIMScheduler({ ...SD15, clip_sample: true, clip_sample_range: 0.5 });
    scheduler.setTimesteps(50);
    const out = scheduler.step(eps, 501, noisy(scheduler, 501));
    const aPrev = scheduler.alphasCumprod[481];
    const clipped = x0.map((v) => Math.min(0.5, Math.max(-0.5, v)));
    expectArrayClose(out.predOriginalSample, clipped);
    expectArrayClose(out.prevSample, clipped.axpby(Math.sqrt(aPrev), eps, Math.sqrt(1 - aPrev)));
  });

  it('adds σ_t(η)·noise for η > 0 (eq. 16), from varianceNoise or the generator', () => {
    const scheduler = new DDIMScheduler(SD15);
    scheduler.setTimesteps(50);
    const a = scheduler.alphasCumprod[501];
    const aPrev = scheduler.alphasCumprod[481];
    const eta = 0.7;
    const sigma = eta * Math.sqrt(((1 - aPrev) / (1 - a)) * (1 - a / aPrev));
    const z = randn(3);
    const expected = x0.axpby(Math.sqrt(aPrev), eps, Math.sqrt(1 - aPrev - sigma * sigma)).axpby(1, z, sigma);
    const sample = noisy(scheduler, 501);
    expectArrayClose(scheduler.step(eps, 501, sample, { eta, varianceNoise: z }).prevSample, expected);
    // varianceNoise wins over the generator; the generator draws the same stream as Generator.randn.
    expectArrayClose(
      scheduler.step(eps, 501, sample, { eta, varianceNoise: z, generator: new Generator(99) }).prevSample,
      expected,
    );
    expectArrayClose(
      scheduler.step(eps, 501, sample, { eta, generator: new Generator(3) }).prevSample,
      expected,
    );
  });

  it('refuses a stochastic step without a noise source, and misuse', () => {
    const scheduler = new DDIMScheduler(SD15);
    expect(() => scheduler.step(eps, 501, x0)).toThrow(/setTimesteps/);
    scheduler.setTimesteps(50);
    expect(() => scheduler.step(eps, 501, x0, { eta: 0.5 })).toThrow(/varianceNoise or options\.generator/);
    expect(() => scheduler.step(eps, 500.5, x0)).toThrow(/integer/);
    expect(() => scheduler.step(eps, 1000, x0)).toThrow(/integer in \[0, 999\]/);
    expect(() => scheduler.step(eps, 501, x0, { eta: -1 })).toThrow(/eta/);
    expect(() => scheduler.step(NDArray.zeros([2]), 501, x0)).toThrow(/differ in size/);
  });

  it('adds noise as q(x_t | x₀) = sqrt(ᾱ_t)·x₀ + sqrt(1 − ᾱ_t)·noise', () => {
    const scheduler = new DDIMScheduler(SD15);
    expectArrayClose(scheduler.addNoise(x0, eps, 321), noisy(scheduler, 321));
  });

  it('passes the model input through unscaled, with unit initial noise', () => {
    const scheduler = new DDIMScheduler(SD15);
    expect(scheduler.scaleModelInput(x0, 981)).toBe(x0);
    expect(scheduler.initNoiseSigma).toBe(1);
    expect(scheduler.order).toBe(1);
  });
});

describe('DDIMInverseScheduler', () => {
  it('ascends through the forward timesteps: 1, 21, …, 981 for SD 1.5 at 50 steps', () => {
    const inverse = new DDIMInverseScheduler(SD15);
    inverse.setTimesteps(50);
    expect(inverse.timesteps).toEqual(Array.from({ length: 50 }, (_, i) => 1 + 20 * i));
  });

  it('ascends through trailing and linspace timesteps too', () => {
    const trailing = new DDIMInverseScheduler({ ...SD15, timestep_spacing: 'trailing' });
    trailing.setTimesteps(5);
    expect(trailing.timesteps).toEqual([199, 399, 599, 799, 999]);
    const linspace = new DDIMInverseScheduler({ ...SD15, timestep_spacing: 'linspace' });
    linspace.setTimesteps(5);
    expect(linspace.timesteps).toEqual([0, 250, 500, 749, 999]);
  });

  it('first step goes from the initial ᾱ (ᾱ_0 when set_alpha_to_one is false) to the first timestep', () => {
    const inverse = new DDIMInverseScheduler(SD15);
    inverse.setTimesteps(50);
    expect(inverse.initialAlphaCumprod).toBe(inverse.alphasCumprod[0]);
    const x0 = randn(4);
    const eps = randn(5);
    const a0 = inverse.alphasCumprod[0];
    const a1 = inverse.alphasCumprod[1];
    const start = x0.axpby(Math.sqrt(a0), eps, Math.sqrt(1 - a0));
    const out = inverse.step(eps, 1, start);
    expectArrayClose(out.predOriginalSample, x0);
    expectArrayClose(out.prevSample, x0.axpby(Math.sqrt(a1), eps, Math.sqrt(1 - a1)));
    expect(new DDIMInverseScheduler({ ...SD15, set_alpha_to_one: true }).initialAlphaCumprod).toBe(1);
  });

  for (const spacing of ['leading', 'trailing', 'linspace'] as const) {
    it(`inverts then reconstructs exactly with a constant ε (${spacing})`, () => {
      const config = { ...SD15, timestep_spacing: spacing };
      const inverse = new DDIMInverseScheduler(config);
      const forward = new DDIMScheduler(config);
      const steps = 25;
      inverse.setTimesteps(steps);
      forward.setTimesteps(steps);
      expect([...inverse.timesteps].reverse()).toEqual(forward.timesteps);

      const start = randn(6);
      const eps = randn(7);
      let x = start;
      for (const t of inverse.timesteps) x = inverse.step(eps, t, x).prevSample;
      expect(x.maxAbsDiff(start)).toBeGreaterThan(0.1);
      for (const t of forward.timesteps) x = forward.step(eps, t, x).prevSample;
      expectArrayClose(x, start, 1e-4);
    });
  }

  it('defaults clip_sample to true like diffusers when the config does not set it', () => {
    const inverse = new DDIMInverseScheduler({
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      beta_end: 0.012,
    });
    expect(inverse.config.clip_sample).toBe(true);
    expect(inverse.config.timestep_spacing).toBe('leading');
  });

  it('requires setTimesteps before step', () => {
    expect(() => new DDIMInverseScheduler(SD15).step(randn(1), 1, randn(2))).toThrow(/setTimesteps/);
  });
});
