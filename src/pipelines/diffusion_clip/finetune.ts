/**
 * DiffusionCLIP (Kim, Kwon & Ye, CVPR 2022): fine-tune the diffusion model so that what it generates from an
 * image's DDIM inversion moves along a CLIP text direction, y_ref → y_tar, while staying close to the image.
 *
 *  1. Invert each training image with deterministic DDIM and the original model to t₀, in S_for steps (cached:
 *     the original model never changes).
 *  2. Generate back in S_gen steps with the model being fine-tuned, ε_θ̂.
 *  3. Loss: λ_CLIP · (1 − cos(E_I(x̂₀) − E_I(x₀), E_T(y_tar) − E_T(y_ref))) + λ_L1 · |x̂₀ − x₀|, with x̂₀ decoded by
 *     the VAE decoder before it reaches CLIP (a latent model).
 *
 * Two ways to take the gradient (`gradient`):
 *  - 'per-step' (default, the reference code's GPU-efficient scheme): at every generation step, predict x̂₀ from
 *    x_t, take the loss and step the optimizer; x_t moves on with ε detached. Memory holds one UNet step, and each
 *    image gives S_gen updates.
 *  - 'chain': the loss on the final x̂₀ only, its gradient carried back through all S_gen steps (one VJP per step,
 *    recomputing nothing but storing the S_gen latents), one update per image. It is the exact gradient of the
 *    paper's objective, at about twice the compute per update and S_gen× fewer updates.
 *
 * What is trained (`adapter`): LoRA factors on the UNet's MatMul/Conv weights (the practical choice at SD size;
 * the same LoRA code as drag), or every weight ('full', right for the small bundled model).
 */
import { join } from 'node:path';
import {
  Adam,
  addLora,
  foldInitializerCasts,
  graphOf,
  loadModel,
  saveLora,
  setTensorValues,
  tensorToFloat32,
  DataType,
  type LoraModel,
  type ModelProto,
} from '../../autodiff/index.js';
import type { StableDiffusionBundle } from '../../models/bundle.js';
import type { ClipModel } from '../../models/clip.js';
import { NDArray } from '../../runtime/ndarray.js';
import { Generator } from '../../runtime/random.js';
import type { ModelSession } from '../../runtime/session.js';
import { createScheduler } from '../../schedulers/index.js';
import { UserError } from '../../util/errors.js';
import { ensureParentDir } from '../../util/files.js';
import { checkImage, encodePrompt, type ProgressCallback } from '../common.js';
import { mergeLora } from '../drag/lora.js';
import { sessionFromModel, type SessionSettings } from '../drag/unet_models.js';
import { saveFullDelta } from './delta.js';
import {
  buildClipLossModel,
  buildVjpModel,
  CLIP_LOSS_INPUTS,
  CLIP_VIEWS,
  promoteParameters,
  type ClipView,
} from './models.js';
import { alphaBar, ddimCoefficients, ddimMove, diffusionClipTimesteps } from './schedule.js';

export type GradientScheme = 'per-step' | 'chain';
/**
 * What the directional term measures the CLIP change from:
 * - 'input': the input image x₀ (the paper's loss). In the per-step scheme x̂₀ at a high t is a blurred guess, so
 *   the change it sees is mostly the blur, and the loss asks the fine-tuning to bend the blur toward the text.
 * - 'original': what the original model produces from the same state: its x̂₀ at the same x_t (per-step), or its
 *   generation from the same inversion (chain). The change is then the fine-tuning's alone, as StyleGAN-NADA
 *   measures it against a frozen generator.
 */
export type DirectionReference = 'input' | 'original';
export type AdapterKind = 'lora' | 'full';

export interface DiffusionClipOptions {
  /** Training images [1, 3, H, W] in [-1, 1], all of one size. */
  images: readonly NDArray[];
  /**
   * y_ref and y_tar: the text direction CLIP measures. Lists pair up element by element and the direction is the
   * mean of the pairs' directions (the reference code's prompt-template ensemble, which steadies the direction).
   */
  sourceText: string | readonly string[];
  targetText: string | readonly string[];
  /**
   * Each training image's own text pairs for the directional term (e.g. its caption and the same caption after the
   * edit, in every template): each image then follows the direction of its own change, not the mean over all
   * images. Default: every image follows sourceText → targetText.
   */
  imageTexts?: readonly { source: string | readonly string[]; target: string | readonly string[] }[];
  /**
   * Each training image's direction given directly in CLIP's embedding space (e.g. E_I(example after) −
   * E_I(example before) of unit embeddings: StyleGAN-NADA's image-guided direction; the style bench's "CLIP
   * oracle" uses each scene's true edit). Overrides the texts for the directional term.
   */
  imageDirections?: readonly Float32Array[];
  /** Conditioning of the UNet during inversion and generation (default '': unconditional, as the paper's models). */
  prompt?: string;
  /** t₀ on the training schedule (default 40% of it: 400 of 1000, the paper's 400–500 for most edits). */
  t0?: number;
  /** S_for, S_gen (defaults 40 and 6, the paper's training values). */
  inversionSteps?: number;
  generationSteps?: number;
  epochs?: number;
  /** Adam learning rate (defaults: LoRA 2e-4, full 4e-5; measured on the bundled model, see the README). */
  learningRate?: number;
  lambdaClip?: number;
  /** Weight of the identity L1 in image space (default 0.3, the reference's `l1_loss_w` for attribute edits). */
  lambdaL1?: number;
  /**
   * What the L1 term pulls each x̂₀ toward, one per training image (default: the images themselves, the paper's
   * identity term). Given the true edits and λ_CLIP 0 it makes a supervised fit of the same adapter, schedule and
   * updates: how far the fine-tuning could go with a perfect teacher (the style bench's "oracle").
   */
  identityTargets?: readonly NDArray[];
  /** Weight of the global CLIP term 1 − cos(E_I(x̂₀), E_T(y_tar)) (default 0: off, as the paper's runs). */
  lambdaGlobal?: number;
  /**
   * The global term's target per training image (e.g. each image's own caption after the edit); default: the mean
   * embedding of the target texts for every image.
   */
  imageTargetTexts?: readonly string[];
  gradient?: GradientScheme;
  /** What the directional term measures the change from (default 'input'; see {@link DirectionReference}). */
  directionReference?: DirectionReference;
  /** Floor on the CLIP change's length in the directional cosine (default 0.02 with 'original', else 0). */
  changeFloor?: number;
  /** Standard deviation of the pixel noise on CLIP's views, in [0, 1] units (default 0.03; 0 for none). */
  viewNoise?: number;
  /** The crops CLIP sees of each image (default {@link CLIP_VIEWS}). */
  clipViews?: readonly ClipView[];
  adapter?: AdapterKind;
  /** LoRA rank (default 8) and targets: the attention projections, or every MatMul/Conv weight (default). */
  loraRank?: number;
  loraTargets?: 'attention' | 'all';
  seed?: number;
  intraOpNumThreads?: number;
  onProgress?: ProgressCallback;
  /** After each optimizer update: the losses of that update. */
  onUpdate?: (update: DiffusionClipUpdate) => void;
}

export interface DiffusionClipUpdate {
  epoch: number;
  image: number;
  step: number;
  loss: number;
  clipLoss: number;
  l1: number;
  /** The global term, when λ_global > 0. */
  globalLoss?: number;
}

export interface DiffusionClipResult {
  updates: DiffusionClipUpdate[];
  /** Save the fine-tuned model as a delta file (LoRA factors or W_ft − W). */
  save(path: string, metadata?: Record<string, string>): Promise<void>;
  /** The fine-tuned UNet (weights merged), e.g. for a preview. */
  tunedUnet(): ModelProto;
  settings: Record<string, string | number>;
}

interface Trainable {
  model: ModelProto;
  parameters: string[];
  values: Record<string, Float32Array>;
  dims: Record<string, number[]>;
  lora?: LoraModel;
}

/** The weights full fine-tuning trains: Conv/MatMul/Gemm weights and biases, and the norms' scales and shifts. */
function trainableWeights(unet: ModelProto): string[] {
  const graph = graphOf(unet);
  const inits = new Map(graph.initializer.map((t) => [t.name, t]));
  const chosen = new Set<string>();
  const slots: Record<string, number[]> = {
    Conv: [1, 2],
    MatMul: [1],
    Gemm: [1, 2],
    GroupNormalization: [1, 2],
    LayerNormalization: [1, 2],
    InstanceNormalization: [1, 2],
  };
  for (const node of graph.node) {
    for (const k of slots[node.opType] ?? []) {
      const t = inits.get(node.input[k]);
      if (t && t.dataType === DataType.FLOAT) chosen.add(t.name);
    }
  }
  return [...chosen];
}

function prepareTrainable(base: ModelProto, options: DiffusionClipOptions): Trainable {
  const adapter = options.adapter ?? 'lora';
  if (adapter === 'full') {
    const parameters = trainableWeights(base);
    const inits = new Map(graphOf(base).initializer.map((t) => [t.name, t]));
    const values: Record<string, Float32Array> = {};
    const dims: Record<string, number[]> = {};
    for (const p of parameters) {
      values[p] = Float32Array.from(tensorToFloat32(inits.get(p)!));
      dims[p] = inits.get(p)!.dims.map(Number);
    }
    return { model: base, parameters, values, dims };
  }
  const rank = options.loraRank ?? 8;
  const targets = options.loraTargets ?? 'all';
  const lora = addLora(base, {
    rank,
    alpha: rank,
    prefix: 'unet.',
    seed: options.seed ?? 0,
    targets: targets === 'all' ? () => true : undefined,
    ops: targets === 'all' ? ['MatMul', 'Gemm', 'Conv'] : undefined,
  });
  const inits = new Map(graphOf(lora.model).initializer.map((t) => [t.name, t]));
  const values: Record<string, Float32Array> = {};
  const dims: Record<string, number[]> = {};
  for (const p of lora.parameters) {
    values[p] = Float32Array.from(tensorToFloat32(inits.get(p)!));
    dims[p] = inits.get(p)!.dims.map(Number);
  }
  return { model: lora.model, parameters: lora.parameters, values, dims, lora };
}

/** The text pairs of the CLIP direction, checked: as many sources as targets, none empty, not all the same. */
export function textPairs(
  source: string | readonly string[],
  target: string | readonly string[],
): { sourceTexts: string[]; targetTexts: string[] } {
  const sourceTexts = (typeof source === 'string' ? [source] : [...source]).map((t) => t.trim());
  const targetTexts = (typeof target === 'string' ? [target] : [...target]).map((t) => t.trim());
  if (sourceTexts.length !== targetTexts.length)
    throw new UserError(
      `the CLIP direction needs as many source texts as target texts, got ${sourceTexts.length} and ${targetTexts.length}`,
    );
  if (sourceTexts.length === 0 || sourceTexts.some((t) => !t) || targetTexts.some((t) => !t))
    throw new UserError('give both texts of the CLIP direction (--from and --to)');
  if (sourceTexts.every((t, i) => t === targetTexts[i]))
    throw new UserError('--from and --to are the same text: there is no direction to follow');
  return { sourceTexts, targetTexts };
}

/** Mean over pairs of E_T(target) − E_T(source), unit embeddings; the loss's cosine ignores its length. */
async function meanTextDirection(
  clip: ClipModel,
  sourceTexts: readonly string[],
  targetTexts: readonly string[],
): Promise<Float32Array> {
  const n = sourceTexts.length;
  const texts = await clip.embedTexts([...sourceTexts, ...targetTexts]);
  const dim = texts.shape[1];
  const direction = new Float32Array(dim);
  for (let k = 0; k < n; k++)
    for (let j = 0; j < dim; j++)
      direction[j] += (texts.data[(n + k) * dim + j] - texts.data[k * dim + j]) / n;
  return direction;
}

/** A list of texts for the delta's metadata: the first, and how many more (a template ensemble can be long). */
function describeTexts(texts: readonly string[]): string {
  return texts.length === 1 ? texts[0] : `${texts[0]} (and ${texts.length - 1} more)`;
}

function timestepFeed(session: ModelSession, t: number): NDArray {
  const shape = session.input('timestep').shape;
  return NDArray.full(shape.length === 0 ? [] : [1], t);
}

export async function diffusionClipFinetune(
  bundle: StableDiffusionBundle,
  clip: ClipModel,
  options: DiffusionClipOptions,
): Promise<DiffusionClipResult> {
  if (options.images.length === 0) throw new UserError('DiffusionCLIP needs at least one training image');
  const { width, height } = checkImage(bundle, options.images[0]);
  for (const image of options.images) {
    const size = checkImage(bundle, image);
    if (size.width !== width || size.height !== height)
      throw new UserError(
        `training images must share one size: ${width}×${height} and ${size.width}×${size.height}`,
      );
  }
  const { sourceTexts, targetTexts } = textPairs(options.sourceText, options.targetText);
  const { scheduler } = createScheduler(bundle.schedulerConfig, { override: 'ddim' });
  const alphas = scheduler.alphasCumprod;
  const trainSteps = alphas.length;
  const t0 = options.t0 ?? Math.round(0.4 * trainSteps);
  if (!(Number.isInteger(t0) && t0 >= 1 && t0 < trainSteps))
    throw new UserError(`t₀ must be an integer timestep from 1 to ${trainSteps - 1}, got ${t0}`);
  const inversionSteps = options.inversionSteps ?? 40;
  const generationSteps = options.generationSteps ?? 6;
  const epochs = options.epochs ?? 1;
  if (!Number.isInteger(epochs) || epochs < 1)
    throw new UserError(`epochs must be a positive integer, got ${epochs}`);
  const inversionSeq = diffusionClipTimesteps(t0, inversionSteps);
  const generationSeq = diffusionClipTimesteps(t0, generationSteps);
  const adapter = options.adapter ?? 'lora';
  const scheme = options.gradient ?? 'per-step';
  const learningRate = options.learningRate ?? (adapter === 'full' ? 4e-5 : 2e-4);
  if (!(learningRate > 0)) throw new UserError(`the learning rate must be positive, got ${learningRate}`);
  const lambdaClip = options.lambdaClip ?? 1;
  const lambdaL1 = options.lambdaL1 ?? 0.3;
  const lambdaGlobal = options.lambdaGlobal ?? 0;
  if (!(lambdaGlobal >= 0)) throw new UserError(`λ_global must be ≥ 0, got ${lambdaGlobal}`);
  if (options.imageTargetTexts && options.imageTargetTexts.length !== options.images.length)
    throw new UserError(
      `give one global target text per training image: ${options.imageTargetTexts.length} texts, ${options.images.length} images`,
    );
  const identityTargets = options.identityTargets ?? options.images;
  if (identityTargets.length !== options.images.length)
    throw new UserError(
      `give one identity target per training image: ${identityTargets.length} targets, ${options.images.length} images`,
    );
  for (const target of identityTargets) {
    const size = checkImage(bundle, target);
    if (size.width !== width || size.height !== height)
      throw new UserError(`identity targets must be ${width}×${height} like the training images`);
  }
  const settings: SessionSettings = { device: bundle.device, intraOpNumThreads: options.intraOpNumThreads };
  const directionReference = options.directionReference ?? 'input';
  const changeFloor = options.changeFloor ?? (directionReference === 'original' ? 0.02 : 0);
  if (!(changeFloor >= 0)) throw new UserError(`the change floor must be ≥ 0, got ${changeFloor}`);

  // Text direction and the images' own embeddings: fixed for the whole run.
  const views = options.clipViews ?? CLIP_VIEWS;
  if (views.length === 0) throw new UserError('CLIP needs at least one view of each image');
  const textDirection = await meanTextDirection(clip, sourceTexts, targetTexts);
  const dim = textDirection.length;
  // One row per CLIP view (the loss compares each view's change with it).
  const perView = (d: Float32Array) =>
    new NDArray(
      Float32Array.from({ length: views.length * d.length }, (_, j) => d[j % d.length]),
      [views.length, d.length],
    );
  const direction = perView(textDirection);
  if (options.imageTexts && options.imageTexts.length !== options.images.length)
    throw new UserError(
      `give one set of direction texts per training image: ${options.imageTexts.length} sets, ${options.images.length} images`,
    );
  if (options.imageTexts && options.imageDirections)
    throw new UserError('give per-image direction texts or per-image directions, not both');
  if (options.imageDirections && options.imageDirections.length !== options.images.length)
    throw new UserError(
      `give one direction per training image: ${options.imageDirections.length} directions, ${options.images.length} images`,
    );
  const imageDirections: NDArray[] = [];
  for (const d of options.imageDirections ?? []) {
    if (d.length !== dim)
      throw new UserError(`a direction must have CLIP's ${dim} dimensions, got ${d.length}`);
    imageDirections.push(perView(d));
  }
  for (const texts of options.imageTexts ?? []) {
    const pairs = textPairs(texts.source, texts.target);
    imageDirections.push(perView(await meanTextDirection(clip, pairs.sourceTexts, pairs.targetTexts)));
  }
  // The global term's target per image, one row per view: E_T of the image's own target text, or of them all.
  const globalTargets: NDArray[] = [];
  if (lambdaGlobal > 0) {
    const perImage = options.imageTargetTexts !== undefined;
    const texts = await clip.embedTexts(perImage ? options.imageTargetTexts! : targetTexts);
    const rows = texts.shape[0];
    for (let i = 0; i < options.images.length; i++) {
      const target = new Float32Array(dim);
      if (perImage) target.set(texts.data.subarray(i * dim, (i + 1) * dim));
      else for (let k = 0; k < rows * dim; k++) target[k % dim] += texts.data[k] / rows;
      globalTargets.push(
        new NDArray(
          Float32Array.from({ length: views.length * dim }, (_, j) => target[j % dim]),
          [views.length, dim],
        ),
      );
    }
  }
  const gen = new Generator(options.seed ?? 0);
  const viewNoise = options.viewNoise ?? 0.03;
  const embedding = (await encodePrompt(bundle, options.prompt ?? '', undefined, 1)).cond;

  // 1. Invert every image to t₀ with the original model (cached).
  const total =
    options.images.length * (inversionSteps - 1) + epochs * options.images.length * generationSteps;
  let progress = 0;
  const tick = (stage: string) => options.onProgress?.({ stage, step: ++progress, total });
  const encoder = await bundle.vaeEncoder();
  const inverted: NDArray[] = [];
  for (const image of options.images) {
    let x = await encoder.encode(image);
    for (let k = 1; k < inversionSeq.length; k++) {
      const eps = await bundle.unet.predict(x, inversionSeq[k - 1], embedding);
      x = ddimMove(x, eps, alphaBar(alphas, inversionSeq[k - 1]), alphaBar(alphas, inversionSeq[k]));
      tick('invert');
    }
    inverted.push(x);
  }

  // 2–3. The gradient models, then the fine-tuning loop.
  const base = await loadModel(join(bundle.dir, 'unet', 'model.onnx'));
  foldInitializerCasts(base);
  const trainable = prepareTrainable(base, options);
  const vaeDecoder = await loadModel(join(bundle.dir, 'vae_decoder', 'model.onnx'));
  const clipImage = await loadModel(clip.imageModelPath);
  const sampleShape = inverted[0].shape;
  const spec = {
    output: bundle.unet.outputName,
    sampleShape,
    contextShape: embedding.shape,
    timestepShape: bundle.unet.session.input('timestep').shape.length === 0 ? [] : [1],
    scalingFactor: bundle.vaeDecoder.scalingFactor,
    clipProcessing: clip.processing,
    imageSize: [height, width] as const,
    lambdaClip,
    lambdaL1,
    lambdaGlobal,
    views,
    changeFloor,
    parameters: trainable.parameters,
    sampleGradient: scheme === 'chain',
  };
  const lossModel = buildClipLossModel(trainable.model, vaeDecoder, clipImage, spec);
  const sessions: ModelSession[] = [];
  const open = async (model: ModelProto, label: string) => {
    const s = await sessionFromModel(model, settings, label);
    sessions.push(s);
    return s;
  };
  const updates: DiffusionClipUpdate[] = [];
  try {
    const lossSession = await open(lossModel.model, 'dclip_loss');
    const vjp = scheme === 'chain' ? buildVjpModel(trainable.model, spec) : undefined;
    const vjpSession = vjp ? await open(vjp.model, 'dclip_vjp') : undefined;
    const forwardSession =
      scheme === 'chain'
        ? await open(promoteParameters(trainable.model, trainable.parameters), 'dclip_forward')
        : undefined;
    const optimizer = new Adam(trainable.values, { lr: learningRate });
    const paramFeeds = () =>
      Object.fromEntries(
        trainable.parameters.map((p) => [p, new NDArray(trainable.values[p], trainable.dims[p])]),
      );
    const lossFetch = [
      lossModel.loss,
      lossModel.clipLoss,
      lossModel.l1,
      lossModel.output,
      ...(lossModel.globalLoss ? [lossModel.globalLoss] : []),
    ];
    // Generation pairs (t, t_next), from t₀ down to the clean image.
    const pairs = generationSeq.map((t, k) => [t, k > 0 ? generationSeq[k - 1] : -1] as const).reverse();
    const decoder = bundle.vaeDecoder;
    // The original model's x̂₀ at x_t, decoded: the per-step scheme's 'original' reference.
    const originalPrediction = async (x: NDArray, t: number, x0Coefficients: readonly number[]) => {
      const eps = await bundle.unet.predict(x, t, embedding);
      return decoder.decodeRaw(x.axpby(x0Coefficients[0], eps, x0Coefficients[1]));
    };
    // The chain's 'original' reference: the original model's own generation from each inversion (it never changes).
    const originalGenerations: (NDArray | undefined)[] = [];
    const originalGeneration = async (i: number) => {
      if (!originalGenerations[i]) {
        let x = inverted[i];
        for (const [t, next] of pairs) {
          const eps = await bundle.unet.predict(x, t, embedding);
          x = ddimMove(x, eps, alphaBar(alphas, t), alphaBar(alphas, next));
        }
        originalGenerations[i] = await decoder.decodeRaw(x);
      }
      return originalGenerations[i]!;
    };
    const common = (i: number, reference: NDArray) => ({
      encoder_hidden_states: embedding,
      [CLIP_LOSS_INPUTS.sourceImage]: identityTargets[i],
      [CLIP_LOSS_INPUTS.referenceImage]: reference,
      [CLIP_LOSS_INPUTS.viewNoise]: gen
        .randn([views.length, 3, clip.processing.size, clip.processing.size])
        .scale(viewNoise),
      [CLIP_LOSS_INPUTS.textDirection]: imageDirections[i] ?? direction,
      ...(lambdaGlobal > 0 ? { [CLIP_LOSS_INPUTS.targetText]: globalTargets[i] } : {}),
    });

    for (let epoch = 0; epoch < epochs; epoch++) {
      for (let i = 0; i < options.images.length; i++) {
        if (scheme === 'per-step') {
          let x = inverted[i];
          for (const [step, [t, next]] of pairs.entries()) {
            const coefficients = ddimCoefficients(alphaBar(alphas, t), alphaBar(alphas, next));
            const reference =
              directionReference === 'original'
                ? await originalPrediction(x, t, coefficients.x0)
                : options.images[i];
            const out = await lossSession.run(
              {
                ...common(i, reference),
                ...paramFeeds(),
                sample: x,
                timestep: timestepFeed(lossSession, t),
                [CLIP_LOSS_INPUTS.x0Coefficients]: new NDArray(Float32Array.from(coefficients.x0), [2]),
              },
              [...lossFetch, ...trainable.parameters.map((p) => lossModel.gradients[p])],
            );
            optimizer.step(
              Object.fromEntries(trainable.parameters.map((p) => [p, out[lossModel.gradients[p]].data])),
            );
            const update = {
              epoch,
              image: i,
              step,
              loss: out[lossModel.loss].data[0],
              clipLoss: out[lossModel.clipLoss].data[0],
              l1: out[lossModel.l1].data[0],
              globalLoss: lossModel.globalLoss ? out[lossModel.globalLoss].data[0] : undefined,
            };
            updates.push(update);
            options.onUpdate?.(update);
            x = x.axpby(coefficients.a, out[lossModel.output], coefficients.b);
            tick('finetune');
          }
        } else {
          // Forward with the current weights, keeping each step's input.
          const xs: NDArray[] = [inverted[i]];
          for (const [t, next] of pairs.slice(0, -1)) {
            const out = await forwardSession!.run(
              {
                sample: xs.at(-1)!,
                timestep: timestepFeed(forwardSession!, t),
                encoder_hidden_states: embedding,
                ...paramFeeds(),
              },
              [lossModel.output],
            );
            xs.push(ddimMove(xs.at(-1)!, out[lossModel.output], alphaBar(alphas, t), alphaBar(alphas, next)));
            tick('finetune');
          }
          // The loss at the last step, then back through the earlier ones.
          const [tLast, nextLast] = pairs.at(-1)!;
          const last = ddimCoefficients(alphaBar(alphas, tLast), alphaBar(alphas, nextLast));
          const reference =
            directionReference === 'original' ? await originalGeneration(i) : options.images[i];
          const out = await lossSession.run(
            {
              ...common(i, reference),
              ...paramFeeds(),
              sample: xs.at(-1)!,
              timestep: timestepFeed(lossSession, tLast),
              [CLIP_LOSS_INPUTS.x0Coefficients]: new NDArray(Float32Array.from(last.x0), [2]),
            },
            [
              ...lossFetch,
              lossModel.gradients.sample,
              ...trainable.parameters.map((p) => lossModel.gradients[p]),
            ],
          );
          const grads = Object.fromEntries(
            trainable.parameters.map((p) => [p, Float32Array.from(out[lossModel.gradients[p]].data)]),
          );
          let upstream = out[lossModel.gradients.sample];
          for (let k = pairs.length - 2; k >= 0; k--) {
            const [t, next] = pairs[k];
            const { a, b } = ddimCoefficients(alphaBar(alphas, t), alphaBar(alphas, next));
            const back = await vjpSession!.run(
              {
                sample: xs[k],
                timestep: timestepFeed(vjpSession!, t),
                encoder_hidden_states: embedding,
                [CLIP_LOSS_INPUTS.upstream]: upstream.scale(b),
                ...paramFeeds(),
              },
              [vjp!.gradients.sample, ...trainable.parameters.map((p) => vjp!.gradients[p])],
            );
            for (const p of trainable.parameters) {
              const g = back[vjp!.gradients[p]].data;
              const acc = grads[p];
              for (let j = 0; j < acc.length; j++) acc[j] += g[j];
            }
            upstream = upstream.axpby(a, back[vjp!.gradients.sample], 1);
          }
          optimizer.step(grads);
          const update = {
            epoch,
            image: i,
            step: pairs.length - 1,
            loss: out[lossModel.loss].data[0],
            clipLoss: out[lossModel.clipLoss].data[0],
            l1: out[lossModel.l1].data[0],
            globalLoss: lossModel.globalLoss ? out[lossModel.globalLoss].data[0] : undefined,
          };
          updates.push(update);
          options.onUpdate?.(update);
          tick('finetune');
        }
      }
    }
  } finally {
    for (const s of sessions) await s.release();
  }

  const metadata = {
    editkit_method: 'diffusionclip',
    from: describeTexts(sourceTexts),
    to: describeTexts(targetTexts),
    prompt: options.prompt ?? '',
    t0: String(t0),
    inversion_steps: String(inversionSteps),
    generation_steps: String(generationSteps),
    gradient: scheme,
    direction_reference: directionReference,
    directions: options.imageDirections ? 'given' : options.imageTexts ? 'per-image' : 'mean',
  };
  return {
    updates,
    settings: {
      t0,
      inversionSteps,
      generationSteps,
      epochs,
      learningRate,
      lambdaClip,
      lambdaL1,
      lambdaGlobal,
      adapter,
      gradient: scheme,
      directionReference,
      changeFloor,
      directions: options.imageDirections ? 'given' : options.imageTexts ? 'per-image' : 'mean',
    },
    async save(path, extra = {}) {
      await ensureParentDir(path);
      if (trainable.lora) {
        await saveLora(path, trainable.lora, {
          values: trainable.values,
          metadata: { ...metadata, editkit_delta: 'lora', ...extra },
        });
      } else await saveFullDelta(path, base, trainable.values, { ...metadata, ...extra });
    },
    tunedUnet() {
      const inits = new Map(graphOf(trainable.model).initializer.map((t) => [t.name, t]));
      for (const p of trainable.parameters) setTensorValues(inits.get(p)!, trainable.values[p]);
      return trainable.lora ? mergeLora(base, trainable.lora) : trainable.model;
    },
  };
}
