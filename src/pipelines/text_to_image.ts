import type { StableDiffusionBundle } from '../models/bundle.js';
import type { NDArray } from '../runtime/ndarray.js';
import type { Generator } from '../runtime/random.js';
import { createScheduler, type SchedulerName } from '../schedulers/index.js';
import {
  checkGuidance,
  checkLatents,
  checkSteps,
  encodePrompt,
  latentShape,
  predictNoise,
  resolveGenerator,
  type ProgressCallback,
} from './common.js';

export interface TextToImageOptions {
  prompt: string;
  negativePrompt?: string;
  numInferenceSteps?: number;
  guidanceScale?: number;
  /** Output size in pixels; defaults to the model's native size. Must be a multiple of the VAE factor. */
  width?: number;
  height?: number;
  seed?: number;
  generator?: Generator;
  /** Explicit initial latents [1, C, H/f, W/f], unscaled by init_noise_sigma, as diffusers' `latents`. */
  latents?: NDArray;
  eta?: number;
  scheduler?: SchedulerName;
  onProgress?: ProgressCallback;
  /** Stops the run between steps (a server's cancel, a timeout): the pipeline throws the signal's reason. */
  signal?: AbortSignal;
}

export interface TextToImageResult {
  /** [1, 3, H, W] in [0, 1]. */
  image: NDArray;
  latents: NDArray;
  seed: number | undefined;
  timesteps: number[];
  notices: string[];
}

/** Text-to-image with classifier-free guidance (Rombach et al. 2022; Ho & Salimans 2022). */
export async function textToImage(
  bundle: StableDiffusionBundle,
  options: TextToImageOptions,
): Promise<TextToImageResult> {
  const numInferenceSteps = options.numInferenceSteps ?? 50;
  const guidanceScale = options.guidanceScale ?? 7.5;
  checkSteps(numInferenceSteps);
  checkGuidance(guidanceScale);
  // Explicit latents fix the size when width/height are not given.
  const f = bundle.vaeScaleFactor;
  const width = options.width ?? (options.latents ? options.latents.shape[3] * f : bundle.defaultImageSize);
  const height = options.height ?? (options.latents ? options.latents.shape[2] * f : bundle.defaultImageSize);
  const shape = latentShape(bundle, width, height);
  const { scheduler, notice } = createScheduler(bundle.schedulerConfig, { override: options.scheduler });
  const { generator, seed } = resolveGenerator(options);

  // 1. Encode the prompt (and the negative prompt for guidance).
  const embeddings = await encodePrompt(bundle, options.prompt, options.negativePrompt, guidanceScale);

  // 2. Initial latents: explicit or seeded noise, scaled to the scheduler's starting noise level.
  scheduler.setTimesteps(numInferenceSteps);
  const noise = options.latents
    ? checkLatents('initial latents', options.latents, shape)
    : generator.randn(shape);
  let latents = noise.scale(scheduler.initNoiseSigma);

  // 3. Denoise.
  const timesteps = [...scheduler.timesteps];
  for (const [i, t] of timesteps.entries()) {
    const modelInput = scheduler.scaleModelInput(latents, t);
    const noisePred = await predictNoise(bundle, modelInput, t, embeddings, guidanceScale);
    latents = scheduler.step(noisePred, t, latents, { eta: options.eta, generator }).prevSample;
    options.signal?.throwIfAborted();
    options.onProgress?.({ stage: 'denoise', step: i + 1, total: timesteps.length });
  }

  // 4. Decode.
  const image = await bundle.vaeDecoder.decode(latents);
  return { image, latents, seed, timesteps, notices: notice ? [notice] : [] };
}
