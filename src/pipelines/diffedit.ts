import type { StableDiffusionBundle } from '../models/bundle.js';
import { NDArray } from '../runtime/ndarray.js';
import type { Generator } from '../runtime/random.js';
import { createScheduler } from '../schedulers/index.js';
import { UserError } from '../util/errors.js';
import {
  broadcastMask,
  checkGuidance,
  checkImage,
  checkSteps,
  checkStrength,
  downsampleAverage,
  encodePrompt,
  img2imgTimesteps,
  predictNoise,
  resizeBilinear,
  resolveGenerator,
  type ProgressCallback,
} from './common.js';
import { ddimInversion } from './ddim_inversion.js';

/** How a user-supplied mask combines with the inferred one. */
export type MaskBlend = 'replace' | 'union' | 'intersection' | 'average';

export interface DiffEditOptions {
  /** Input image [1, 3, H, W] in [-1, 1]. */
  image: NDArray;
  /** The query Q: what the edited image should show. */
  prompt: string;
  /** The reference R: a caption of the input. Default '' (unconditional); a real caption gives better masks. */
  sourcePrompt?: string;
  /** Encoding ratio r: how far DDIM encoding goes, as a fraction of the schedule. */
  strength?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  /** Noise level at which the mask's noise estimates are compared. */
  maskStrength?: number;
  /** Noise draws averaged for the mask (n). */
  maskDraws?: number;
  /** Extreme values of |ε_Q − ε_R| are clamped at this multiple of its mean before normalising (diffusers: 3). */
  maskClampRatio?: number;
  /** Binarisation threshold on the normalised map. */
  threshold?: number;
  /** A user mask [1, 1, H, W] in [0, 1] (white = edit), used alone or blended with the inferred one. */
  mask?: NDArray;
  maskBlend?: MaskBlend;
  /** 'ddim' (DiffEdit) or 'noise' (the paper's "DiffEdit w/o encoding" ablation: noise instead of DDIM encoding). */
  encoding?: 'ddim' | 'noise';
  /** false gives the "encode–decode without mask" ablation. */
  useMask?: boolean;
  seed?: number;
  generator?: Generator;
  onProgress?: ProgressCallback;
  /** Stops the run between steps (a server's cancel, a timeout): the pipeline throws the signal's reason. */
  signal?: AbortSignal;
}

export interface DiffEditResult {
  /** Edited image [1, 3, H, W] in [0, 1]. */
  image: NDArray;
  /** Binary mask [1, 1, H, W] actually used (image resolution). */
  mask: NDArray;
  /** Continuous inferred map [1, 1, H, W] in [0, 1] (image resolution); after blending with a user mask. */
  maskMap: NDArray;
  /** The same at latent resolution. */
  latentMask: NDArray;
  latentMaskMap: NDArray;
  /** Final latents, and the encoded latents x_0 … x_r. */
  latents: NDArray;
  encodedLatents: NDArray[];
  seed: number | undefined;
}

/**
 * DiffEdit (Couairon et al., ICLR 2023): text-driven editing with an automatically inferred mask.
 *  1. Mask: where do noise estimates conditioned on Q and on R disagree?
 *  2. Encode: DDIM-encode the input (unconditionally) to the encoding ratio r.
 *  3. Decode: DDIM-decode from x_r conditioned on Q, keeping the input's latents outside the mask.
 */
export async function diffEdit(
  bundle: StableDiffusionBundle,
  options: DiffEditOptions,
): Promise<DiffEditResult> {
  const strength = options.strength ?? 0.8;
  const numInferenceSteps = options.numInferenceSteps ?? 50;
  const guidanceScale = options.guidanceScale ?? 7.5;
  const maskStrength = options.maskStrength ?? 0.5;
  const maskDraws = options.maskDraws ?? 10;
  const clampRatio = options.maskClampRatio ?? 3;
  const threshold = options.threshold ?? 0.5;
  const sourcePrompt = options.sourcePrompt ?? '';
  const encoding = options.encoding ?? 'ddim';
  const useMask = options.useMask ?? true;
  checkStrength(strength);
  checkStrength(maskStrength);
  checkSteps(numInferenceSteps);
  checkGuidance(guidanceScale);
  if (!Number.isInteger(maskDraws) || maskDraws < 1)
    throw new UserError(`mask draws must be a positive integer, got ${maskDraws}`);
  if (!(clampRatio > 0)) throw new UserError(`mask clamp ratio must be positive, got ${clampRatio}`);
  if (!(threshold >= 0 && threshold <= 1))
    throw new UserError(`threshold must be in [0, 1], got ${threshold}`);
  const { width, height } = checkImage(bundle, options.image);
  if (options.mask && options.mask.shape.join(',') !== [1, 1, height, width].join(',')) {
    throw new UserError(
      `the mask must be [1, 1, ${height}, ${width}] to match the image, got [${options.mask.shape.join(', ')}]`,
    );
  }
  const { generator, seed } = resolveGenerator(options);
  const vaeEncoder = await bundle.vaeEncoder();
  const x0 = await vaeEncoder.encode(options.image);
  const [, channels, latentHeight, latentWidth] = x0.shape;
  const { scheduler } = createScheduler(bundle.schedulerConfig, { override: 'ddim' });

  // ---- Step 1: the mask ---------------------------------------------------------------------------------------
  // Guidance is not applied here: with the same negative prompt on both sides, guided estimates differ by exactly
  // guidance_scale · (ε_Q − ε_R), a constant factor that the normalisation below removes.
  let latentMaskMap: NDArray;
  const needInferred = useMask && !(options.mask && (options.maskBlend ?? 'replace') === 'replace');
  if (needInferred) {
    latentMaskMap = await inferMask(bundle, x0, {
      query: options.prompt,
      reference: sourcePrompt,
      maskStrength,
      maskDraws,
      clampRatio,
      numInferenceSteps,
      generator,
      onProgress: options.onProgress,
      signal: options.signal,
    });
  } else {
    latentMaskMap = NDArray.full([1, 1, latentHeight, latentWidth], useMask ? 0 : 1);
  }
  if (useMask && options.mask) {
    const user = downsampleAverage(options.mask, latentHeight, latentWidth);
    latentMaskMap = blendMasks(latentMaskMap, user, options.maskBlend ?? 'replace');
  }
  const latentMask = latentMaskMap.map((v) => (v > threshold ? 1 : 0));
  const maskMap = resizeBilinear(latentMaskMap, height, width);
  const mask = maskMap.map((v) => (v > threshold ? 1 : 0));

  // ---- Step 2: encode to x_r ---------------------------------------------------------------------------------
  scheduler.setTimesteps(numInferenceSteps);
  const timesteps = img2imgTimesteps(scheduler, numInferenceSteps, strength);
  const k = timesteps.length;
  // encoded[j] is the input's latent at the noise level of decoding timestep index k − j (encoded[0] = x_0), so
  // that encoded[k] is x_r, the start of decoding.
  let encoded: NDArray[];
  if (encoding === 'ddim') {
    const inversion = await ddimInversion(bundle, {
      image: options.image,
      prompt: '',
      numInferenceSteps,
      guidanceScale: 1,
      inversionStrength: strength,
      onProgress: options.onProgress ? (p) => options.onProgress!({ ...p, stage: 'encode' }) : undefined,
      signal: options.signal,
    });
    // The inverse schedule walked up exactly the timesteps decoding walks down; check rather than trust.
    if (inversion.timesteps.join(',') !== [...timesteps].reverse().join(',')) {
      throw new Error(
        `DiffEdit: inversion timesteps [${inversion.timesteps.join(', ')}] do not mirror decoding [${timesteps.join(', ')}]`,
      );
    }
    encoded = inversion.intermediates;
  } else {
    const noise = generator.randn(x0.shape);
    encoded = [x0, ...[...timesteps].reverse().map((t) => scheduler.addNoise(x0, noise, t))];
  }

  // ---- Step 3: mask-guided decoding ------------------------------------------------------------------------
  const embeddings = await encodePrompt(bundle, options.prompt, sourcePrompt, guidanceScale);
  const keep = broadcastMask(latentMask, channels);
  let latents = encoded[k];
  for (const [i, t] of timesteps.entries()) {
    const noisePred = await predictNoise(bundle, latents, t, embeddings, guidanceScale);
    latents = scheduler.step(noisePred, t, latents, { eta: 0 }).prevSample;
    // The step took the latents from timesteps[i] to timesteps[i + 1] (or to x_0 after the last step). The input's
    // latent at that same noise level is encoded[k − 1 − i]: encoded[k − i] is at timesteps[i], one step noisier,
    // and the last step blends with encoded[0] = x_0 itself. (diffusers' DiffEdit blends with the latent of
    // timesteps[i], one step off, and never with x_0.)
    const reference = encoded[k - 1 - i];
    if (useMask) latents = latents.map((v, j) => keep.data[j] * v + (1 - keep.data[j]) * reference.data[j]);
    options.signal?.throwIfAborted();
    options.onProgress?.({ stage: 'decode', step: i + 1, total: k });
  }
  const image = await bundle.vaeDecoder.decode(latents);
  return { image, mask, maskMap, latentMask, latentMaskMap, latents, encodedLatents: encoded, seed };
}

interface InferMaskOptions {
  query: string;
  reference: string;
  maskStrength: number;
  maskDraws: number;
  clampRatio: number;
  numInferenceSteps: number;
  generator: Generator;
  onProgress?: ProgressCallback;
  /** Stops the run between steps (a server's cancel, a timeout): the pipeline throws the signal's reason. */
  signal?: AbortSignal;
}

/**
 * DiffEdit's mask: noise x_0 to the mask strength n times, predict the noise conditioned on Q and on R, and average
 * |ε_Q − ε_R| over channels and draws. Clamp at `clampRatio` × its mean (extreme values would otherwise squash
 * the rest of the map) and normalise to [0, 1].
 */
export async function inferMask(
  bundle: StableDiffusionBundle,
  x0: NDArray,
  options: InferMaskOptions,
): Promise<NDArray> {
  const { scheduler } = createScheduler(bundle.schedulerConfig, { override: 'ddim' });
  scheduler.setTimesteps(options.numInferenceSteps);
  const t = img2imgTimesteps(scheduler, options.numInferenceSteps, options.maskStrength)[0];
  const { inputIds, shape } = bundle.tokenizer.batchEncode([options.reference, options.query]);
  const [reference, query] = (await bundle.textEncoder.encode(inputIds, shape)).chunk(2);
  const [, channels, h, w] = x0.shape;
  const plane = h * w;
  const sum = new Float64Array(plane);
  for (let draw = 0; draw < options.maskDraws; draw++) {
    const noisy = scheduler.addNoise(x0, options.generator.randn(x0.shape), t);
    const batch = NDArray.concat([noisy, noisy]);
    const [epsR, epsQ] = (await bundle.unet.predict(batch, t, NDArray.concat([reference, query]))).chunk(2);
    for (let c = 0; c < channels; c++) {
      for (let p = 0; p < plane; p++) sum[p] += Math.abs(epsQ.data[c * plane + p] - epsR.data[c * plane + p]);
    }
    options.signal?.throwIfAborted();
    options.onProgress?.({ stage: 'mask', step: draw + 1, total: options.maskDraws });
  }
  const map = Float32Array.from(sum, (v) => v / (channels * options.maskDraws));
  const mean = map.reduce((a, b) => a + b, 0) / plane;
  const clampAt = mean * options.clampRatio;
  return new NDArray(
    map.map((v) => (clampAt > 0 ? Math.min(v, clampAt) / clampAt : 0)),
    [1, 1, h, w],
  );
}

function blendMasks(inferred: NDArray, user: NDArray, mode: MaskBlend): NDArray {
  switch (mode) {
    case 'replace':
      return user;
    case 'union':
      return inferred.map((v, i) => Math.max(v, user.data[i]));
    case 'intersection':
      return inferred.map((v, i) => Math.min(v, user.data[i]));
    case 'average':
      return inferred.map((v, i) => (v + user.data[i]) / 2);
  }
}
