import { parseSchedulerConfig, SchedulerConfigError } from './config.js';
import { DDIMScheduler } from './ddim.js';
import { DDIMInverseScheduler } from './ddim_inverse.js';
import { DPMSolverMultistepScheduler } from './dpm_solver_multistep.js';
import { EulerDiscreteScheduler } from './euler_discrete.js';
import type { Scheduler } from './scheduler.js';

export type { Scheduler, SchedulerStepOptions, SchedulerStepOutput } from './scheduler.js';
export { DDIMScheduler } from './ddim.js';
export { DDIMInverseScheduler } from './ddim_inverse.js';
export { DPMSolverMultistepScheduler } from './dpm_solver_multistep.js';
export { EulerDiscreteScheduler } from './euler_discrete.js';
export {
  parseSchedulerConfig,
  SchedulerConfigError,
  type DDIMConfig,
  type DPMSolverMultistepConfig,
  type EulerDiscreteConfig,
  type NoiseScheduleConfig,
} from './config.js';

/** The schedulers EditKit implements, by the names the CLI and `override` use. */
export const SCHEDULER_NAMES = ['ddim', 'ddim-inverse', 'dpm++2m', 'euler'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

export interface CreateSchedulerOptions {
  /** Build this scheduler instead of the config's `_class_name`, from the same noise schedule. */
  override?: SchedulerName;
}

export interface CreatedScheduler {
  scheduler: Scheduler;
  /** Set when the config names a class EditKit does not implement and DDIM stands in for it. */
  notice?: string;
}

const IMPLEMENTED_CLASSES: ReadonlyMap<string, SchedulerName> = new Map([
  ['DDIMScheduler', 'ddim'],
  ['DDIMInverseScheduler', 'ddim-inverse'],
  ['DPMSolverMultistepScheduler', 'dpm++2m'],
  ['EulerDiscreteScheduler', 'euler'],
]);

/**
 * Classes that Stable Diffusion bundles ship and that share DDIM's discrete β-schedule parameterisation, so
 * diffusers' DDIMScheduler.from_config builds a faithful DDIM from their config.
 */
const DDIM_COMPATIBLE_CLASSES: ReadonlySet<string> = new Set([
  'PNDMScheduler',
  'LMSDiscreteScheduler',
  'DDPMScheduler',
  'EulerAncestralDiscreteScheduler',
  'HeunDiscreteScheduler',
  'KDPM2DiscreteScheduler',
  'KDPM2AncestralDiscreteScheduler',
  'DPMSolverSinglestepScheduler',
  'DPMSolverSDEScheduler',
  'DPMSolverMultistepInverseScheduler',
  'DEISMultistepScheduler',
  'UniPCMultistepScheduler',
]);

function build(kind: SchedulerName, config: unknown): Scheduler {
  switch (kind) {
    case 'ddim':
      return new DDIMScheduler(config);
    case 'ddim-inverse':
      return new DDIMInverseScheduler(config);
    case 'dpm++2m':
      return new DPMSolverMultistepScheduler(config);
    case 'euler':
      return new EulerDiscreteScheduler(config);
  }
}

/**
 * Build the scheduler a diffusers `scheduler_config.json` describes, and say so when DDIM had to stand in for
 * a class we do not implement. Throws a one-line Error naming the offending key for invalid or unsupported
 * configs.
 */
export function createScheduler(config: unknown, options: CreateSchedulerOptions = {}): CreatedScheduler {
  const { className } = parseSchedulerConfig(config);
  if (options.override !== undefined) {
    if (!SCHEDULER_NAMES.includes(options.override)) {
      throw new Error(
        `Unknown scheduler override "${String(options.override)}" (use one of ${SCHEDULER_NAMES.join(', ')})`,
      );
    }
    return { scheduler: build(options.override, config) };
  }
  if (className === undefined) {
    throw new SchedulerConfigError(
      `"_class_name" is missing; pass override (${SCHEDULER_NAMES.join(', ')}) to choose a scheduler`,
      '_class_name',
    );
  }
  const kind = IMPLEMENTED_CLASSES.get(className);
  if (kind !== undefined) return { scheduler: build(kind, config) };
  if (DDIM_COMPATIBLE_CLASSES.has(className)) {
    return {
      scheduler: build('ddim', config),
      notice: `${className} is not implemented; using DDIMScheduler built from the same noise schedule (as diffusers' DDIMScheduler.from_config would)`,
    };
  }
  throw new SchedulerConfigError(
    `"_class_name" ${JSON.stringify(className)} is not a supported scheduler (implemented: ${[...IMPLEMENTED_CLASSES.keys()].join(', ')}); ` +
      `pass override (${SCHEDULER_NAMES.join(', ')}) to use one of ours with this noise schedule`,
    '_class_name',
  );
}

/** A DDIM inversion scheduler on any config's noise schedule (diffusers' DDIMInverseScheduler.from_config). */
export function createInverseScheduler(config: unknown): DDIMInverseScheduler {
  return new DDIMInverseScheduler(config);
}
