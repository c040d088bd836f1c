import type { StableDiffusionBundle } from '../models/bundle.js';
import { NDArray } from '../runtime/ndarray.js';
import { Generator } from '../runtime/random.js';
import type { Scheduler } from '../schedulers/scheduler.js';
import { UserError } from '../util/errors.js';

export { downsampleAverage, resizeBilinear } from '../image/resample.js';

/** Progress report from a pipeline: one call per model evaluation stage step. */
export interface ProgressInfo {
  stage: string;
  step: number;
  total: number;
}
export type ProgressCallback = (info: ProgressInfo) => void;

/** Prompt embeddings; `uncond` is present when classifier-free guidance is on. */
export interface PromptEmbeddings {
  cond: NDArray;
  uncond?: NDArray;
}

/** diffusers turns guidance on only above 1: at 1 the guided and conditional predictions coincide. */
export function usesGuidance(guidanceScale: number): boolean {
  return guidanceScale > 1;
}

export async function encodePrompt(
  bundle: StableDiffusionBundle,
  prompt: string,
  negativePrompt: string | undefined,
  guidanceScale: number,
): Promise<PromptEmbeddings> {
  const texts = usesGuidance(guidanceScale) ? [negativePrompt ?? '', prompt] : [prompt];
  const { inputIds, shape } = bundle.tokenizer.batchEncode(texts);
  const hidden = await bundle.textEncoder.encode(inputIds, shape);
  if (texts.length === 1) return { cond: hidden };
  const [uncond, cond] = hidden.chunk(2);
  return { cond, uncond };
}

/** One guided noise prediction; the CFG batch is [uncond, cond] as in diffusers. */
export async function predictNoise(
  bundle: StableDiffusionBundle,
  modelInput: NDArray,
  timestep: number,
  embeddings: PromptEmbeddings,
  guidanceScale: number,
): Promise<NDArray> {
  if (!embeddings.uncond) return bundle.unet.predict(modelInput, timestep, embeddings.cond);
  const batch = NDArray.concat([modelInput, modelInput]);
  const context = NDArray.concat([embeddings.uncond, embeddings.cond]);
  const [uncond, cond] = (await bundle.unet.predict(batch, timestep, context)).chunk(2);
  return uncond.axpby(1 - guidanceScale, cond, guidanceScale);
}

/** Validates an output size against the VAE factor and returns the latent shape. */
export function latentShape(bundle: StableDiffusionBundle, width: number, height: number): number[] {
  const f = bundle.vaeScaleFactor;
  const multiple = bundle.sizeMultiple;
  for (const [name, value] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isInteger(value) || value <= 0 || value % multiple !== 0) {
      throw new UserError(`${name} must be a positive multiple of ${multiple} for this model, got ${value}`);
    }
  }
  return [1, bundle.latentChannels, height / f, width / f];
}

export function checkLatents(name: string, latents: NDArray, expected: readonly number[]): NDArray {
  if (latents.shape.join(',') !== expected.join(',')) {
    throw new UserError(
      `${name} have shape [${latents.shape.join(', ')}], expected [${expected.join(', ')}]`,
    );
  }
  return latents;
}

export function checkSteps(numInferenceSteps: number): void {
  if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > 1000) {
    throw new UserError(`the number of steps must be an integer from 1 to 1000, got ${numInferenceSteps}`);
  }
}

export function checkGuidance(guidanceScale: number): void {
  if (!Number.isFinite(guidanceScale) || guidanceScale < 0) {
    throw new UserError(`guidance scale must be a number ≥ 0, got ${guidanceScale}`);
  }
}

export function checkStrength(strength: number): void {
  if (!Number.isFinite(strength) || strength <= 0 || strength > 1) {
    throw new UserError(`strength must be in (0, 1], got ${strength}`);
  }
}

/** A generator from `generator` or `seed`, or a fresh random seed (reported back so the run can be repeated). */
export function resolveGenerator(options: { seed?: number; generator?: Generator }): {
  generator: Generator;
  seed: number | undefined;
} {
  if (options.generator) return { generator: options.generator, seed: options.seed };
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 32);
  return { generator: new Generator(seed), seed };
}

/**
 * The timesteps an image-to-image run uses (diffusers' get_timesteps): the last `strength` fraction of the
 * schedule, so strength 1 starts from pure noise and small strengths stay close to the input.
 */
export function img2imgTimesteps(
  scheduler: Scheduler,
  numInferenceSteps: number,
  strength: number,
): number[] {
  const initTimestep = Math.min(Math.floor(numInferenceSteps * strength), numInferenceSteps);
  const tStart = Math.max(numInferenceSteps - initTimestep, 0);
  const timesteps = scheduler.timesteps.slice(tStart * scheduler.order);
  scheduler.setBeginIndex?.(tStart * scheduler.order);
  if (timesteps.length === 0) {
    throw new UserError(
      `strength ${strength} with ${numInferenceSteps} steps leaves no denoising step; raise --strength or --steps`,
    );
  }
  return timesteps;
}

/** Checks an input image's shape and that its size fits the VAE. */
export function checkImage(bundle: StableDiffusionBundle, image: NDArray): { width: number; height: number } {
  if (image.shape.length !== 4 || image.shape[0] !== 1 || image.shape[1] !== 3) {
    throw new UserError(`the input image must be [1, 3, H, W], got [${image.shape.join(', ')}]`);
  }
  const [, , height, width] = image.shape;
  latentShape(bundle, width, height);
  return { width, height };
}

/**
 * Binarises an image-space mask at 0.5 and resizes it to the latent grid with nearest-neighbour sampling
 * (torch's F.interpolate default: source index = floor(dst · in / out)).
 */
export function maskToLatent(mask: NDArray, latentHeight: number, latentWidth: number): NDArray {
  const [, , height, width] = mask.shape;
  const out = new Float32Array(latentHeight * latentWidth);
  for (let y = 0; y < latentHeight; y++) {
    const sy = Math.min(height - 1, Math.floor((y * height) / latentHeight));
    for (let x = 0; x < latentWidth; x++) {
      const sx = Math.min(width - 1, Math.floor((x * width) / latentWidth));
      out[y * latentWidth + x] = mask.data[sy * width + sx] >= 0.5 ? 1 : 0;
    }
  }
  return new NDArray(out, [1, 1, latentHeight, latentWidth]);
}

/** Broadcast a [1,1,h,w] mask over C channels. */
export function broadcastMask(mask: NDArray, channels: number): NDArray {
  const plane = mask.size;
  const out = new Float32Array(channels * plane);
  for (let c = 0; c < channels; c++) out.set(mask.data, c * plane);
  return new NDArray(out, [1, channels, mask.shape[2], mask.shape[3]]);
}
