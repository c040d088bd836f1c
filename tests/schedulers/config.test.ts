import { describe, expect, it } from 'vitest';
import {
  alphasCumprodFromConfig,
  betasFromConfig,
  resolveDDIMConfig,
  resolveDPMSolverMultistepConfig,
  resolveEulerDiscreteConfig,
  roundHalfToEven,
} from '../../src/schedulers/config.js';
import {
  createInverseScheduler,
  createScheduler,
  DDIMInverseScheduler,
  parseSchedulerConfig,
  SchedulerConfigError,
} from '../../src/schedulers/index.js';

const SD15 = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.6.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
};

/** The error a call throws, asserting it is a single line that names `key`. */
function configError(fn: () => unknown, key: string): string {
  let message = '';
  try {
    fn();
  } catch (error) {
    message = (error as Error).message;
  }
  expect(message, 'expected an error').not.toBe('');
  expect(message).not.toContain('\n');
  expect(message).toContain(`"${key}"`);
  return message;
}

describe('scheduler config parsing', () => {
  it('fills each class’s own diffusers defaults', () => {
    expect(resolveDDIMConfig({})).toMatchObject({
      num_train_timesteps: 1000,
      beta_schedule: 'linear',
      timestep_spacing: 'leading',
      clip_sample: true,
      set_alpha_to_one: true,
      steps_offset: 0,
      prediction_type: 'epsilon',
    });
    expect(resolveEulerDiscreteConfig({})).toMatchObject({
      timestep_spacing: 'linspace',
      final_sigmas_type: 'zero',
    });
    expect(resolveDPMSolverMultistepConfig({})).toMatchObject({
      timestep_spacing: 'linspace',
      solver_order: 2,
      solver_type: 'midpoint',
      lower_order_final: true,
      final_sigmas_type: 'zero',
      lambda_min_clipped: -Infinity,
    });
  });

  it('treats null as unset, ignores private and unknown keys, and honours _use_default_values', () => {
    const config = resolveEulerDiscreteConfig({
      ...SD15,
      timestep_spacing: 'leading',
      prediction_type: null,
      _use_default_values: ['timestep_spacing'],
    });
    expect(config.timestep_spacing).toBe('linspace');
    expect(config.prediction_type).toBe('epsilon');
    expect(config).not.toHaveProperty('skip_prk_steps');
    expect(parseSchedulerConfig(SD15).className).toBe('PNDMScheduler');
    expect(parseSchedulerConfig(SD15).values).not.toHaveProperty('_diffusers_version');
  });

  it('reads prediction_type "original_sample" as "sample"', () => {
    expect(resolveEulerDiscreteConfig({ prediction_type: 'original_sample' }).prediction_type).toBe('sample');
  });

  it('names the offending key in a one-line error', () => {
    expect(() => parseSchedulerConfig('DDIMScheduler')).toThrow(/expected a JSON object/);
    expect(() => parseSchedulerConfig([])).toThrow(/got an array/);
    expect(configError(() => resolveDDIMConfig({ beta_schedule: 'cosine' }), 'beta_schedule')).toMatch(
      /must be one of "linear", "scaled_linear", "squaredcos_cap_v2" \(got "cosine"\)/,
    );
    configError(() => resolveDDIMConfig({ num_train_timesteps: -5 }), 'num_train_timesteps');
    configError(() => resolveDDIMConfig({ num_train_timesteps: 10.5 }), 'num_train_timesteps');
    configError(() => resolveDDIMConfig({ steps_offset: '1' }), 'steps_offset');
    configError(() => resolveDDIMConfig({ clip_sample: 'no' }), 'clip_sample');
    configError(() => resolveDDIMConfig({ prediction_type: 'noise' }), 'prediction_type');
    configError(() => resolveDDIMConfig({ timestep_spacing: 'uniform' }), 'timestep_spacing');
    configError(() => resolveDDIMConfig({ trained_betas: [0.1, 0.2] }), 'trained_betas');
    configError(() => resolveDDIMConfig({ trained_betas: ['a'] }), 'trained_betas');
    expect(() => resolveDDIMConfig({ trained_betas: [0.1, 0.2] })).toThrow(SchedulerConfigError);
  });

  it('rejects options it does not implement, naming them', () => {
    configError(() => resolveDDIMConfig({ thresholding: true }), 'thresholding');
    configError(
      () => resolveDPMSolverMultistepConfig({ algorithm_type: 'sde-dpmsolver++' }),
      'algorithm_type',
    );
    configError(() => resolveDPMSolverMultistepConfig({ solver_order: 3 }), 'solver_order');
    configError(() => resolveDPMSolverMultistepConfig({ use_karras_sigmas: true }), 'use_karras_sigmas');
    configError(() => resolveDPMSolverMultistepConfig({ variance_type: 'learned_range' }), 'variance_type');
    configError(() => resolveEulerDiscreteConfig({ use_karras_sigmas: true }), 'use_karras_sigmas');
    configError(() => resolveEulerDiscreteConfig({ interpolation_type: 'log_linear' }), 'interpolation_type');
    configError(
      () => resolveEulerDiscreteConfig({ timestep_type: 'continuous', prediction_type: 'v_prediction' }),
      'timestep_type',
    );
    // Flags that are off are fine, and DDIM ignores the sigma-schedule flags it does not have.
    expect(() => resolveEulerDiscreteConfig({ use_karras_sigmas: false })).not.toThrow();
    expect(() => resolveDDIMConfig({ use_karras_sigmas: true })).not.toThrow();
  });

  it('maps DEIS/UniPC solver names to DPM-Solver++ midpoint as diffusers does', () => {
    const config = resolveDPMSolverMultistepConfig({ algorithm_type: 'deis', solver_type: 'bh2' });
    expect(config.algorithm_type).toBe('dpmsolver++');
    expect(config.solver_type).toBe('midpoint');
  });
});

describe('noise schedule', () => {
  it('builds SD’s scaled_linear schedule: ᾱ_0 = 1 − 0.00085, ᾱ_999 ≈ 0.00466', () => {
    const alphas = alphasCumprodFromConfig(resolveDDIMConfig(SD15));
    expect(alphas).toBeInstanceOf(Float64Array);
    expect(alphas[0]).toBeCloseTo(0.99915, 14);
    expect(alphas[999]).toBeCloseTo(0.0046601, 6);
  });

  it('builds the linear and cosine schedules', () => {
    const linear = betasFromConfig(resolveDDIMConfig({}));
    expect(linear[0]).toBeCloseTo(0.0001, 15);
    expect(linear[999]).toBeCloseTo(0.02, 15);
    const cosine = betasFromConfig(resolveDDIMConfig({ beta_schedule: 'squaredcos_cap_v2' }));
    expect(Math.max(...cosine)).toBeLessThanOrEqual(0.999);
    expect(cosine[999]).toBe(0.999);
    const alphaBar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    expect(cosine[0]).toBeCloseTo(1 - alphaBar(0.001) / alphaBar(0), 15);
  });

  it('uses trained_betas verbatim', () => {
    const betas = Array.from({ length: 10 }, (_, i) => 0.01 * (i + 1));
    const alphas = alphasCumprodFromConfig(
      resolveDDIMConfig({ num_train_timesteps: 10, trained_betas: betas }),
    );
    expect(alphas[1]).toBeCloseTo(0.99 * 0.98, 15);
  });

  it('rescales to zero terminal SNR keeping ᾱ_0', () => {
    const plain = alphasCumprodFromConfig(resolveDDIMConfig(SD15));
    const rescaled = alphasCumprodFromConfig(resolveDDIMConfig({ ...SD15, rescale_betas_zero_snr: true }));
    expect(rescaled[999]).toBe(0);
    expect(rescaled[0]).toBeCloseTo(plain[0], 12);
    for (let i = 1; i < 1000; i++) expect(rescaled[i]).toBeLessThanOrEqual(rescaled[i - 1]);
  });

  it('rounds halves to even like numpy', () => {
    expect([0.5, 1.5, 2.5, 499.5, 812.5, 937.5, 2.4, 2.6].map(roundHalfToEven)).toEqual([
      0, 2, 2, 500, 812, 938, 2, 3,
    ]);
  });
});

describe('createScheduler', () => {
  it('stands DDIM in for the PNDM scheduler SD 1.5 bundles ship, with a notice', () => {
    const { scheduler, notice } = createScheduler(SD15);
    expect(scheduler.name).toBe('ddim');
    expect(notice).toMatch(/PNDMScheduler/);
    expect(scheduler.config.steps_offset).toBe(1);
    expect(scheduler.config.clip_sample).toBe(false);
  });

  it('builds the classes it implements without a notice', () => {
    const names = {
      DDIMScheduler: 'ddim',
      DDIMInverseScheduler: 'ddim-inverse',
      DPMSolverMultistepScheduler: 'dpm++2m',
      EulerDiscreteScheduler: 'euler',
    };
    for (const [className, name] of Object.entries(names)) {
      const created = createScheduler({ ...SD15, _class_name: className });
      expect(created.scheduler.name).toBe(name);
      expect(created.notice).toBeUndefined();
    }
  });

  it('honours override, with the overriding class’s defaults', () => {
    const { scheduler, notice } = createScheduler(SD15, { override: 'euler' });
    expect(scheduler.name).toBe('euler');
    expect(notice).toBeUndefined();
    expect(scheduler.config.timestep_spacing).toBe('linspace');
    expect(createScheduler({ beta_schedule: 'scaled_linear' }, { override: 'dpm++2m' }).scheduler.name).toBe(
      'dpm++2m',
    );
  });

  it('fails with a one-line error naming _class_name for missing or unsupported classes', () => {
    configError(() => createScheduler({ beta_schedule: 'scaled_linear' }), '_class_name');
    expect(
      configError(
        () => createScheduler({ ...SD15, _class_name: 'FlowMatchEulerDiscreteScheduler' }),
        '_class_name',
      ),
    ).toMatch(/FlowMatchEulerDiscreteScheduler/);
    configError(
      () => createScheduler({ ...SD15, _class_name: 'DPMSolverMultistepScheduler', use_karras_sigmas: true }),
      'use_karras_sigmas',
    );
    configError(() => createScheduler({ ...SD15, beta_schedule: 'quadratic' }), 'beta_schedule');
  });

  it('builds an inverse DDIM from any config', () => {
    const inverse = createInverseScheduler({
      ...SD15,
      _class_name: 'EulerDiscreteScheduler',
      timestep_spacing: 'linspace',
    });
    expect(inverse).toBeInstanceOf(DDIMInverseScheduler);
    expect(inverse.name).toBe('ddim-inverse');
    inverse.setTimesteps(4);
    expect(inverse.timesteps).toEqual([0, 333, 666, 999]);
    configError(() => createInverseScheduler({ ...SD15, timestep_spacing: 7 }), 'timestep_spacing');
  });
});
