/**
 * Reading a diffusers `scheduler_config.json`: validation, each class's defaults, and the noise schedule
 * (betas → alphas_cumprod) every scheduler here is built on.
 *
 * The noise schedule is computed in float64. diffusers computes it in float32 torch tensors; the two agree to
 * about 1e-7 relative, well inside what float32 latents can resolve.
 *
 * Like diffusers' `from_config`, a config written for one class can build another: keys the target class
 * does not know are ignored, and keys the file does not set (or lists in `_use_default_values`) take the
 * target class's defaults, not the original class's.
 */
import { z } from 'zod';

export const BETA_SCHEDULES = ['linear', 'scaled_linear', 'squaredcos_cap_v2'] as const;
export const PREDICTION_TYPES = ['epsilon', 'v_prediction', 'sample'] as const;
export const TIMESTEP_SPACINGS = ['linspace', 'leading', 'trailing'] as const;
export const FINAL_SIGMAS_TYPES = ['zero', 'sigma_min'] as const;

export type BetaSchedule = (typeof BETA_SCHEDULES)[number];
export type PredictionType = (typeof PREDICTION_TYPES)[number];
export type TimestepSpacing = (typeof TIMESTEP_SPACINGS)[number];
export type FinalSigmasType = (typeof FINAL_SIGMAS_TYPES)[number];

/** The keys that define betas and therefore alphas_cumprod; shared by every class. */
export type NoiseScheduleConfig = {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  trained_betas: number[] | null;
  rescale_betas_zero_snr: boolean;
};

/** DDIMScheduler and DDIMInverseScheduler (which differ only in defaults). */
export type DDIMConfig = NoiseScheduleConfig & {
  prediction_type: PredictionType;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
  clip_sample: boolean;
  clip_sample_range: number;
  set_alpha_to_one: boolean;
  thresholding: false;
};

export type DPMSolverMultistepConfig = NoiseScheduleConfig & {
  prediction_type: PredictionType;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
  algorithm_type: 'dpmsolver++';
  solver_order: 1 | 2;
  solver_type: 'midpoint' | 'heun';
  lower_order_final: boolean;
  euler_at_final: boolean;
  final_sigmas_type: FinalSigmasType;
  lambda_min_clipped: number;
  thresholding: false;
};

export type EulerDiscreteConfig = NoiseScheduleConfig & {
  prediction_type: PredictionType;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
  interpolation_type: 'linear';
  final_sigmas_type: FinalSigmasType;
};

/** A parsed config: the class it names and the values it sets (nulls, private keys and defaulted keys removed). */
export type ParsedSchedulerConfig = {
  className: string | undefined;
  values: Readonly<Record<string, unknown>>;
};

const CONFIG_ERROR_PREFIX = 'Invalid scheduler config';

/** An error about one key of a scheduler config, with the key in a one-line message. */
export class SchedulerConfigError extends Error {
  readonly key: string | undefined;

  constructor(message: string, key?: string) {
    super(`${CONFIG_ERROR_PREFIX}: ${message}`);
    this.name = 'SchedulerConfigError';
    this.key = key;
  }
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  const json = JSON.stringify(value);
  return json === undefined ? typeof value : json.length > 60 ? `${json.slice(0, 57)}...` : json;
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: () => `must be one of ${values.map((v) => JSON.stringify(v)).join(', ')}` });
}

const booleanValue = z.boolean({ error: 'must be true or false' });
const positiveNumber = z.number({ error: 'must be a finite number' }).positive({ error: 'must be positive' });
// JSON written by Python can carry -Infinity (lambda_min_clipped's default), which z.number() refuses.
const numberOrInfinity = z.custom<number>((v) => typeof v === 'number' && !Number.isNaN(v), {
  error: 'must be a number',
});
const text = z.string({ error: 'must be a string' });

/**
 * Types of the keys any of our classes read. Everything is optional and `null` means "not set" (diffusers
 * writes `null` for unset optional keys); other keys pass through untouched and are ignored.
 */
const rawConfigSchema = z
  .looseObject({
    _class_name: text.optional(),
    _use_default_values: z.array(text, { error: 'must be an array of key names' }).optional(),
    num_train_timesteps: z.int({ error: 'must be an integer' }).positive({ error: 'must be positive' }),
    beta_start: positiveNumber,
    beta_end: positiveNumber,
    beta_schedule: oneOf(BETA_SCHEDULES),
    trained_betas: z.array(
      z
        .number({ error: 'must hold only numbers' })
        .min(0, { error: 'must hold only betas in [0, 1]' })
        .max(1, { error: 'must hold only betas in [0, 1]' }),
      { error: 'must be an array of betas' },
    ),
    rescale_betas_zero_snr: booleanValue,
    prediction_type: oneOf([...PREDICTION_TYPES, 'original_sample']),
    timestep_spacing: oneOf(TIMESTEP_SPACINGS),
    steps_offset: z.int({ error: 'must be an integer' }).nonnegative({ error: 'must not be negative' }),
    clip_sample: booleanValue,
    clip_sample_range: positiveNumber,
    set_alpha_to_one: booleanValue,
    thresholding: booleanValue,
    dynamic_thresholding_ratio: positiveNumber,
    sample_max_value: positiveNumber,
    solver_order: z.int({ error: 'must be an integer' }).positive({ error: 'must be positive' }),
    algorithm_type: text,
    solver_type: text,
    lower_order_final: booleanValue,
    euler_at_final: booleanValue,
    final_sigmas_type: oneOf(FINAL_SIGMAS_TYPES),
    lambda_min_clipped: numberOrInfinity,
    variance_type: text,
    use_karras_sigmas: booleanValue,
    use_exponential_sigmas: booleanValue,
    use_beta_sigmas: booleanValue,
    use_lu_lambdas: booleanValue,
    use_flow_sigmas: booleanValue,
    interpolation_type: text,
    timestep_type: text,
    sigma_min: numberOrInfinity,
    sigma_max: numberOrInfinity,
  })
  .partial();

/**
 * Validate a scheduler_config.json object. Throws a SchedulerConfigError naming the first offending key.
 */
export function parseSchedulerConfig(raw: unknown): ParsedSchedulerConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new SchedulerConfigError(
      `expected a JSON object (the contents of scheduler_config.json), got ${raw === null ? 'null' : Array.isArray(raw) ? 'an array' : typeof raw}`,
    );
  }
  const record = raw as Record<string, unknown>;
  // null means "not set" in diffusers' files; dropping nulls up front lets the schema stay non-nullable.
  const withoutNulls = Object.fromEntries(Object.entries(record).filter(([, v]) => v !== null));
  const result = rawConfigSchema.safeParse(withoutNulls);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = String(issue.path[0] ?? '');
    const value = withoutNulls[key];
    throw new SchedulerConfigError(`"${key}" ${issue.message} (got ${describeValue(value)})`, key);
  }
  const parsed = result.data;
  const defaulted = new Set(parsed._use_default_values ?? []);
  const values: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (key.startsWith('_') || defaulted.has(key)) continue;
    values[key] = value;
  }
  if (values.prediction_type === 'original_sample') values.prediction_type = 'sample';
  return { className: parsed._class_name, values };
}

type Defaults = Readonly<Record<string, unknown>>;

const NOISE_SCHEDULE_DEFAULTS: Defaults = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  rescale_betas_zero_snr: false,
};

/** diffusers' DDIMScheduler.__init__ defaults. */
export const DDIM_DEFAULTS: Defaults = {
  ...NOISE_SCHEDULE_DEFAULTS,
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
  steps_offset: 0,
  clip_sample: true,
  clip_sample_range: 1.0,
  set_alpha_to_one: true,
  thresholding: false,
};

/** diffusers' DDIMInverseScheduler.__init__ defaults (the same as DDIM's; it has no thresholding). */
export const DDIM_INVERSE_DEFAULTS: Defaults = { ...DDIM_DEFAULTS };

/** diffusers' DPMSolverMultistepScheduler.__init__ defaults. */
export const DPM_SOLVER_MULTISTEP_DEFAULTS: Defaults = {
  ...NOISE_SCHEDULE_DEFAULTS,
  prediction_type: 'epsilon',
  timestep_spacing: 'linspace',
  steps_offset: 0,
  algorithm_type: 'dpmsolver++',
  solver_order: 2,
  solver_type: 'midpoint',
  lower_order_final: true,
  euler_at_final: false,
  final_sigmas_type: 'zero',
  lambda_min_clipped: -Infinity,
  thresholding: false,
};

/** diffusers' EulerDiscreteScheduler.__init__ defaults. */
export const EULER_DISCRETE_DEFAULTS: Defaults = {
  ...NOISE_SCHEDULE_DEFAULTS,
  prediction_type: 'epsilon',
  timestep_spacing: 'linspace',
  steps_offset: 0,
  interpolation_type: 'linear',
  final_sigmas_type: 'zero',
};

function withDefaults(parsed: ParsedSchedulerConfig, defaults: Defaults): Record<string, unknown> {
  const filled: Record<string, unknown> = {};
  for (const [key, fallback] of Object.entries(defaults)) {
    filled[key] = key in parsed.values ? parsed.values[key] : fallback;
  }
  return filled;
}

function unsupported(key: string, value: unknown, className: string, hint: string): never {
  throw new SchedulerConfigError(
    `"${key}": ${describeValue(value)} is not supported by ${className} (${hint})`,
    key,
  );
}

function checkNoiseSchedule(filled: Record<string, unknown>): void {
  const betas = filled.trained_betas;
  if (Array.isArray(betas) && betas.length !== filled.num_train_timesteps) {
    throw new SchedulerConfigError(
      `"trained_betas" has ${betas.length} entries but "num_train_timesteps" is ${String(filled.num_train_timesteps)}`,
      'trained_betas',
    );
  }
}

function rejectThresholding(values: Readonly<Record<string, unknown>>, className: string): void {
  // Dynamic thresholding is for pixel-space models (Imagen, DeepFloyd); latent models never set it.
  if (values.thresholding === true) {
    unsupported('thresholding', true, className, 'dynamic thresholding is not implemented; set it to false');
  }
}

export function resolveDDIMConfig(config: unknown): DDIMConfig {
  const parsed = parseSchedulerConfig(config);
  rejectThresholding(parsed.values, 'DDIMScheduler');
  const filled = withDefaults(parsed, DDIM_DEFAULTS);
  checkNoiseSchedule(filled);
  return filled as DDIMConfig;
}

export function resolveDDIMInverseConfig(config: unknown): DDIMConfig {
  const parsed = parseSchedulerConfig(config);
  // DDIMInverseScheduler has no thresholding parameter, so diffusers ignores the key; so do we.
  const filled = withDefaults(parsed, DDIM_INVERSE_DEFAULTS);
  filled.thresholding = false;
  checkNoiseSchedule(filled);
  return filled as DDIMConfig;
}

const OVERRIDE_HINT = 'pass an override to build another scheduler on this noise schedule';

export function resolveDPMSolverMultistepConfig(config: unknown): DPMSolverMultistepConfig {
  const parsed = parseSchedulerConfig(config);
  const className = 'DPMSolverMultistepScheduler';
  rejectThresholding(parsed.values, className);
  const filled = withDefaults(parsed, DPM_SOLVER_MULTISTEP_DEFAULTS);
  // diffusers' DPMSolverMultistepScheduler renames these when built from DEIS / UniPC configs.
  if (filled.algorithm_type === 'deis') filled.algorithm_type = 'dpmsolver++';
  if (['logrho', 'bh1', 'bh2'].includes(String(filled.solver_type))) filled.solver_type = 'midpoint';
  if (filled.algorithm_type !== 'dpmsolver++') {
    unsupported(
      'algorithm_type',
      filled.algorithm_type,
      className,
      `only "dpmsolver++" is implemented; ${OVERRIDE_HINT}`,
    );
  }
  if (filled.solver_order !== 1 && filled.solver_order !== 2) {
    unsupported('solver_order', filled.solver_order, className, 'only orders 1 and 2 are implemented');
  }
  if (filled.solver_type !== 'midpoint' && filled.solver_type !== 'heun') {
    unsupported('solver_type', filled.solver_type, className, 'use "midpoint" or "heun"');
  }
  rejectSigmaSchedules(parsed.values, className, [
    'use_karras_sigmas',
    'use_exponential_sigmas',
    'use_beta_sigmas',
    'use_lu_lambdas',
    'use_flow_sigmas',
  ]);
  if (parsed.values.variance_type !== undefined) {
    unsupported(
      'variance_type',
      parsed.values.variance_type,
      className,
      'models with learned variance are not supported',
    );
  }
  checkNoiseSchedule(filled);
  return filled as DPMSolverMultistepConfig;
}

export function resolveEulerDiscreteConfig(config: unknown): EulerDiscreteConfig {
  const parsed = parseSchedulerConfig(config);
  const className = 'EulerDiscreteScheduler';
  const filled = withDefaults(parsed, EULER_DISCRETE_DEFAULTS);
  if (filled.interpolation_type !== 'linear') {
    unsupported('interpolation_type', filled.interpolation_type, className, 'only "linear" is implemented');
  }
  rejectSigmaSchedules(parsed.values, className, [
    'use_karras_sigmas',
    'use_exponential_sigmas',
    'use_beta_sigmas',
  ]);
  const timestepType = parsed.values.timestep_type ?? 'discrete';
  if (timestepType !== 'discrete' && timestepType !== 'continuous') {
    unsupported('timestep_type', timestepType, className, 'use "discrete"');
  }
  // Continuous timesteps only change anything (EDM's 0.25·log σ) for v-prediction.
  if (timestepType === 'continuous' && filled.prediction_type === 'v_prediction') {
    unsupported(
      'timestep_type',
      timestepType,
      className,
      'EDM-style continuous timesteps are not implemented',
    );
  }
  checkNoiseSchedule(filled);
  return filled as EulerDiscreteConfig;
}

function rejectSigmaSchedules(
  values: Readonly<Record<string, unknown>>,
  className: string,
  keys: readonly string[],
): void {
  for (const key of keys) {
    if (values[key] === true) {
      unsupported(
        key,
        true,
        className,
        `only the schedule's own sigmas are implemented; set it to false or ${OVERRIDE_HINT}`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// numpy-compatible arithmetic. Timestep schedules must match diffusers exactly (a timestep off by one selects
// another alpha), so these reproduce numpy's rounding and float formulas rather than the "obvious" JS ones.

/** numpy's `round`: halves go to the even neighbour (499.5 → 500, 812.5 → 812), unlike Math.round. */
export function roundHalfToEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction < 0.5) return floor;
  if (fraction > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** numpy.linspace(start, stop, num) in float64: `i·step + start`, with the last value exactly `stop`. */
export function linspace(start: number, stop: number, num: number): number[] {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out = Array.from({ length: num }, (_, i) => i * step + start);
  out[num - 1] = stop;
  return out;
}

/**
 * numpy.arange(start, stop, step) for a float step, cut to `count` values: numpy fills `start + i·delta`
 * with `delta = (start + step) − start`. numpy's length (ceil of a float quotient) sometimes comes out one
 * too long (e.g. 1000/61); diffusers then carries a spurious last timestep, which `count` leaves out.
 */
export function arangeFloat(start: number, step: number, count: number): number[] {
  const delta = start + step - start;
  return Array.from({ length: count }, (_, i) => (i === 0 ? start : start + i * delta));
}

/**
 * Descending inference timesteps for `timestep_spacing` (Table 2 of "Common Diffusion Noise Schedules and
 * Sample Steps are Flawed"), as DDIM and Euler compute them. `roundLinspace` is DDIM's integer rounding;
 * Euler keeps linspace's fractional values (as float32).
 */
export function spacedTimesteps(
  spacing: TimestepSpacing,
  numTrainTimesteps: number,
  numInferenceSteps: number,
  stepsOffset: number,
  roundLinspace: boolean,
): number[] {
  switch (spacing) {
    case 'linspace': {
      const values = linspace(0, numTrainTimesteps - 1, numInferenceSteps).reverse();
      return roundLinspace ? values.map(roundHalfToEven) : values.map(Math.fround);
    }
    case 'leading': {
      const stepRatio = Math.floor(numTrainTimesteps / numInferenceSteps);
      return Array.from(
        { length: numInferenceSteps },
        (_, i) => (numInferenceSteps - 1 - i) * stepRatio + stepsOffset,
      );
    }
    case 'trailing': {
      const stepRatio = numTrainTimesteps / numInferenceSteps;
      return arangeFloat(numTrainTimesteps, -stepRatio, numInferenceSteps).map((t) => roundHalfToEven(t) - 1);
    }
  }
}

export function checkNumInferenceSteps(
  numInferenceSteps: number,
  numTrainTimesteps: number,
  className: string,
): void {
  if (
    !Number.isInteger(numInferenceSteps) ||
    numInferenceSteps < 1 ||
    numInferenceSteps > numTrainTimesteps
  ) {
    throw new Error(
      `${className}.setTimesteps: numInferenceSteps must be an integer in [1, ${numTrainTimesteps}] (num_train_timesteps), got ${numInferenceSteps}`,
    );
  }
}

/** numpy.interp(x, arange(values.length), values) for x within [0, length − 1]. */
export function interpolateAt(values: Float64Array, x: number): number {
  if (x <= 0) return values[0];
  const last = values.length - 1;
  if (x >= last) return values[last];
  const low = Math.floor(x);
  return (values[low + 1] - values[low]) * (x - low) + values[low];
}

// ---------------------------------------------------------------------------------------------------------
// Noise schedule.

/** GLIDE's cosine schedule: betas discretizing ᾱ(t) = cos²((t + 0.008)/1.008 · π/2), capped at 0.999. */
function cosineBetas(numTrainTimesteps: number): Float64Array {
  const alphaBar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const betas = new Float64Array(numTrainTimesteps);
  for (let i = 0; i < numTrainTimesteps; i++) {
    const t1 = i / numTrainTimesteps;
    const t2 = (i + 1) / numTrainTimesteps;
    betas[i] = Math.min(1 - alphaBar(t2) / alphaBar(t1), 0.999);
  }
  return betas;
}

export function betasFromConfig(config: NoiseScheduleConfig): Float64Array {
  const n = config.num_train_timesteps;
  let betas: Float64Array;
  if (config.trained_betas !== null) {
    betas = Float64Array.from(config.trained_betas);
  } else if (config.beta_schedule === 'linear') {
    betas = Float64Array.from(linspace(config.beta_start, config.beta_end, n));
  } else if (config.beta_schedule === 'scaled_linear') {
    // Latent diffusion's schedule: linear in sqrt(β).
    betas = Float64Array.from(
      linspace(Math.sqrt(config.beta_start), Math.sqrt(config.beta_end), n),
      (b) => b * b,
    );
  } else {
    betas = cosineBetas(n);
  }
  return config.rescale_betas_zero_snr ? rescaleZeroTerminalSnr(betas) : betas;
}

/**
 * Algorithm 1 of "Common Diffusion Noise Schedules and Sample Steps are Flawed": shift and scale sqrt(ᾱ) so the
 * last timestep has zero SNR (ᾱ_T = 0) while ᾱ_0 is unchanged.
 */
export function rescaleZeroTerminalSnr(betas: Float64Array): Float64Array {
  const n = betas.length;
  const sqrtAlphaBar = new Float64Array(n);
  let product = 1;
  for (let i = 0; i < n; i++) {
    product *= 1 - betas[i];
    sqrtAlphaBar[i] = Math.sqrt(product);
  }
  const first = sqrtAlphaBar[0];
  const last = sqrtAlphaBar[n - 1];
  for (let i = 0; i < n; i++) sqrtAlphaBar[i] = (sqrtAlphaBar[i] - last) * (first / (first - last));
  const rescaled = new Float64Array(n);
  let previous = 1;
  for (let i = 0; i < n; i++) {
    const alphaBar = sqrtAlphaBar[i] ** 2;
    rescaled[i] = 1 - alphaBar / previous;
    previous = alphaBar;
  }
  return rescaled;
}

export function alphasCumprodFromBetas(betas: Float64Array): Float64Array {
  const out = new Float64Array(betas.length);
  let product = 1;
  for (let i = 0; i < betas.length; i++) {
    product *= 1 - betas[i];
    out[i] = product;
  }
  return out;
}

export function alphasCumprodFromConfig(config: NoiseScheduleConfig): Float64Array {
  return alphasCumprodFromBetas(betasFromConfig(config));
}

/** Clamp the last ᾱ away from 0 as diffusers' sigma-based schedulers do, so σ_max = sqrt((1−ᾱ)/ᾱ) stays finite. */
export function withFiniteTerminalSigma(
  alphasCumprod: Float64Array,
  config: NoiseScheduleConfig,
): Float64Array {
  if (!config.rescale_betas_zero_snr) return alphasCumprod;
  const out = alphasCumprod.slice();
  out[out.length - 1] = 2 ** -24;
  return out;
}
