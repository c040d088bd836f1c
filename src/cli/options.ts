import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, type Command } from 'commander';
import { DEVICE_NAMES, parseDevice, type DeviceName } from '../runtime/device.js';
import { SCHEDULER_NAMES, type SchedulerName } from '../schedulers/index.js';
import { UserError } from '../util/errors.js';

/** Where the bundled default model lives (models/emoji-ldm at the package root). */
export function bundledModelDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // dist/cli → package root, and src/cli → package root when run from sources.
  return resolve(here, '..', '..', 'models', 'emoji-ldm');
}

export function resolveModelDir(model: string | undefined): string {
  if (model) return model;
  const bundled = bundledModelDir();
  if (!existsSync(join(bundled, 'model_index.json'))) {
    throw new UserError(
      `no --model given and the bundled default model is not installed at '${bundled}'; pass --model DIR (a diffusers/Optimum ONNX export)`,
    );
  }
  return bundled;
}

export function parseInteger(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}.`);
    }
    return n;
  };
}

export function parseNumber(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be a number from ${min} to ${max}.`);
    }
    return n;
  };
}

/** A comma-separated list, each item parsed by `parse`; an empty string is an empty list. */
export function parseList<T>(parse: (value: string) => T) {
  return (value: string): T[] =>
    value.trim() === '' ? [] : value.split(',').map((item) => parse(item.trim()));
}

/** A number in (0, 1]: strengths and ratios. */
export function parseFraction(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !(n > 0 && n <= 1))
      throw new InvalidArgumentError(`${name}: ${value} is not in (0, 1]`);
    return n;
  };
}

function parseDeviceOption(value: string): DeviceName {
  try {
    return parseDevice(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function parseScheduler(value: string): SchedulerName {
  if ((SCHEDULER_NAMES as readonly string[]).includes(value)) return value as SchedulerName;
  throw new InvalidArgumentError(`use one of ${SCHEDULER_NAMES.join(', ')}.`);
}

export interface RuntimeOptions {
  model?: string;
  device: DeviceName;
  threads?: number;
  json: boolean;
}

export interface SamplingOptions extends RuntimeOptions {
  seed?: number;
  steps: number;
  guidance: number;
  negative?: string;
  scheduler?: SchedulerName;
  eta: number;
}

export function addRuntimeOptions(command: Command): Command {
  return command
    .option('--model <dir>', 'model folder in the diffusers/Optimum ONNX layout (default: the bundled model)')
    .option(`--device <name>`, `where to run: ${DEVICE_NAMES.join('|')}`, parseDeviceOption, 'auto')
    .option('--threads <n>', 'CPU threads per model (default: all cores)', parseInteger('--threads', 1, 1024))
    .option('--json', 'print a machine-readable JSON result on stdout', false);
}

export interface InputSizeOptions {
  width?: number;
  height?: number;
}

/** --width/--height for commands that take an input image (the resize policy is in src/image/io.ts). */
export function addInputSizeOptions(command: Command): Command {
  return command
    .option('--width <px>', 'resize the input to this width', parseInteger('--width', 1, 8192))
    .option('--height <px>', 'resize the input to this height', parseInteger('--height', 1, 8192));
}

export function addSamplingOptions(command: Command, defaults: { steps: number; guidance: number }): Command {
  return addRuntimeOptions(command)
    .option('--seed <n>', 'random seed (default: random, reported)', parseInteger('--seed', 0, 2 ** 32 - 1))
    .option('--steps <n>', 'number of denoising steps', parseInteger('--steps', 1, 1000), defaults.steps)
    .option(
      '--guidance <scale>',
      'classifier-free guidance scale (1 = off)',
      parseNumber('--guidance', 0, 100),
      defaults.guidance,
    )
    .option('--negative <prompt>', 'negative prompt (the unconditional side of guidance)')
    .option(
      '--scheduler <name>',
      `override the bundle's scheduler: ${SCHEDULER_NAMES.join('|')}`,
      parseScheduler,
    )
    .option('--eta <eta>', "DDIM's η (0 = deterministic)", parseNumber('--eta', 0, 1), 0);
}

/** Output paths must not silently overwrite inputs. */
export function checkOutputPath(out: string, inputs: readonly (string | undefined)[]): void {
  for (const input of inputs) {
    if (input && resolve(input) === resolve(out)) {
      throw new UserError(`--out '${out}' is also an input; choose another output path`);
    }
  }
}

/** What the server and its Redis workers both take: which models and deltas, where they run, and job limits. */
export interface JobRunnerOptions {
  models?: string[];
  deltas?: string[];
  device: string;
  threads?: number;
  timeout: number;
  ttl: number;
}

export function addJobRunnerOptions(command: Command): Command {
  const repeat = (v: string, previous: string[] = []) => [...previous, v];
  return command
    .option(
      '--models <dir>',
      'a model bundle or a folder of bundles, by name in the API (repeatable; default: the bundled models)',
      repeat,
    )
    .option(
      '--deltas <dir>',
      'a folder of DiffusionCLIP deltas for clip-edit jobs, by file name (repeatable)',
      repeat,
    )
    .option('--device <name>', 'cpu|webgpu|cuda|auto', 'auto')
    .option('--threads <n>', 'CPU threads per model', parseInteger('--threads', 1, 1024))
    .option('--timeout <s>', 'seconds a job may run', parseInteger('--timeout', 1, 86400), 600)
    .option('--ttl <s>', 'seconds results are kept', parseInteger('--ttl', 1, 30 * 86400), 3600);
}

export function checkRedisUrl(url: string): void {
  if (!/^rediss?:\/\//.test(url)) throw new UserError(`--queue '${url}' is not a redis:// URL`);
}
