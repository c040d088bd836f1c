import { performance } from 'node:perf_hooks';
import { StableDiffusionBundle } from '../models/bundle.js';
import type { ProgressCallback } from '../pipelines/common.js';
import { createProgress, shouldShowProgress } from './progress.js';
import { resolveModelDir, type InputSizeOptions, type RuntimeOptions } from './options.js';
import { accessSync, constants, statSync } from 'node:fs';
import { imageFormatOf, loadImage, type LoadedImage } from '../image/io.js';
import { UserError } from '../util/errors.js';

/**
 * What every model command does around its pipeline: load the bundle, show progress on a TTY (never with
 * --json, whose stdout must be one JSON document), and print the result.
 */
export async function withBundle<T>(
  options: RuntimeOptions,
  label: string,
  run: (bundle: StableDiffusionBundle, onProgress: ProgressCallback) => Promise<T>,
  files: { inputs?: (string | undefined)[]; imageOutputs?: (string | undefined)[] } = {},
): Promise<{ result: T; seconds: number; device: string; model: string }> {
  // The user's mistakes are reported before any model loads or any device is probed.
  for (const path of files.imageOutputs ?? []) if (path !== undefined) imageFormatOf(path);
  for (const path of files.inputs ?? []) if (path !== undefined) assertReadable(path);
  const model = resolveModelDir(options.model);
  // A size the model cannot take is the user's mistake too: the configs say the multiple without a device.
  const multiple = StableDiffusionBundle.sizeMultipleFromConfig(model);
  const sizes = options as RuntimeOptions & { width?: number; height?: number };
  if (multiple !== undefined) {
    for (const [name, value] of [
      ['width', sizes.width],
      ['height', sizes.height],
    ] as const) {
      if (value !== undefined && value % multiple !== 0)
        throw new UserError(
          `${name} must be a positive multiple of ${multiple} for this model, got ${value}`,
        );
    }
  }
  const started = performance.now();
  const bundle = await StableDiffusionBundle.load(model, {
    device: options.device,
    intraOpNumThreads: options.threads,
  });
  const progress = createProgress({ enabled: shouldShowProgress(options.json), label });
  let currentStage = '';
  const onProgress: ProgressCallback = ({ stage, step, total }) => {
    if (stage !== currentStage) {
      currentStage = stage;
      progress.stage(stage, total);
    }
    progress.tick();
    void step;
  };
  try {
    const result = await run(bundle, onProgress);
    return {
      result,
      seconds: (performance.now() - started) / 1000,
      device: bundle.device,
      model: bundle.dir,
    };
  } finally {
    progress.stop();
    await bundle.release();
  }
}

function assertReadable(path: string): void {
  try {
    accessSync(path, constants.R_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UserError(
      `cannot read '${path}': ${code === 'ENOENT' ? 'no such file' : (code ?? String(error))}`,
    );
  }
  if (statSync(path).isDirectory()) throw new UserError(`'${path}' is a folder, not a file`);
}

/** The command's input image, sized by --width/--height and the bundle's size multiple. */
export function loadInputImage(
  path: string,
  bundle: StableDiffusionBundle,
  size: InputSizeOptions,
): Promise<LoadedImage> {
  return loadImage(path, {
    width: size.width,
    height: size.height,
    multiple: bundle.sizeMultiple,
    label: 'input image',
  });
}

export function report(json: boolean, summary: Record<string, unknown>, human: string): void {
  if (json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else process.stderr.write(`${human}\n`);
}
