/**
 * DragDiffusion's identity-preserving LoRA (the official `train_lora`): rank-16 adapters on the UNet's attention
 * projections, fine-tuned on the input image alone with the DDPM noise-prediction loss. Defaults are the official
 * ones: 80 steps, AdamW (lr 5e-4, β = (0.9, 0.999), weight decay 1e-2, constant schedule), batch 4 — four
 * posterior samples of the image's latent, each with its own noise and random timestep in [0, 1000).
 *
 * Training runs a gradient model of the UNet with the LoRA factors as inputs (autodiff `addLora` +
 * `buildGradient(wrt: factors, promote)`); afterwards the adapters are merged into the base weights, so
 * inversion, latent optimisation and denoising run a plain UNet graph at full speed.
 */
import {
  AdamW,
  addLora,
  applyLoraTensors,
  findLoraTargets,
  float32ToSafeTensor,
  LORA_INIT_A,
  buildGradient,
  Graph,
  type CheckpointOptions,
  graphOf,
  makeTensor,
  mergedWeight,
  mseLoss,
  readSafetensors,
  saveLora,
  setTensorValues,
  tensorDims,
  tensorToFloat32,
  toPeftLayout,
  type PeftLora,
  type SafeTensor,
  type LoraInitA,
  type LoraKeyLayout,
  type LoraModel,
  type ModelProto,
} from '../../autodiff/index.js';
import type { StableDiffusionBundle } from '../../models/bundle.js';
import { NDArray } from '../../runtime/ndarray.js';
import type { Generator } from '../../runtime/random.js';
import { createScheduler } from '../../schedulers/index.js';
import { UserError } from '../../util/errors.js';
import {
  gradientSessionSettings,
  sessionFromModel,
  type SessionPlacement,
  type SessionSettings,
} from './unet_models.js';

/** diffusers names the UNet's adapters `unet.<module>.…` in a pipeline's LoRA file. */
export const LORA_PREFIX = 'unet.';

export interface DragLoraOptions {
  /** Default 16. */
  rank?: number;
  /** Default 80. */
  steps?: number;
  /** Default 5e-4. */
  learningRate?: number;
  /** Images per step (default 4). */
  batchSize?: number;
  /** Default 1e-2 (torch's AdamW default, as the official code sets). */
  weightDecay?: number;
  /** How A starts (default 'diffusers', N(0, (1/rank)²), as the official code's LoRA layers). */
  init?: LoraInitA;
  /** Gradient checkpointing of the training step (see autodiff/checkpoint.ts); off by default. */
  checkpoint?: CheckpointOptions;
}

export interface LoraTrainingInput {
  /** Input image [1, 3, H, W] in [-1, 1]. */
  image: NDArray;
  /** Prompt embedding [1, L, D] (the official code trains with the user's prompt). */
  embedding: NDArray;
  generator: Generator;
  /** Seed of the adapters' initialisation. */
  seed: number;
  /** Called once the gradient model is built and loaded, before the first step. */
  onReady?: () => void;
  onStep?: (step: number, total: number, loss: number) => void;
}

export interface TrainedLora {
  lora: LoraModel;
  /** Training loss per step. */
  losses: number[];
}

/** The image latent's posterior: mean and standard deviation before the scaling factor. */
interface Posterior {
  mean: NDArray;
  std: NDArray | undefined;
  scale: number;
}

async function posterior(bundle: StableDiffusionBundle, image: NDArray): Promise<Posterior> {
  const encoder = await bundle.vaeEncoder();
  if (!encoder.returnsParameters) {
    // A `latent_sample` export hides the distribution: train on what it gives (usually the mean).
    return {
      mean: (await encoder.encode(image)).scale(1 / encoder.scalingFactor),
      std: undefined,
      scale: encoder.scalingFactor,
    };
  }
  const raw = (await encoder.session.run({ sample: image }, [encoder.outputName]))[encoder.outputName];
  const [, channels, h, w] = raw.shape;
  const half = (channels / 2) * h * w;
  const mean = new NDArray(raw.data.slice(0, half), [1, channels / 2, h, w]);
  // diffusers' DiagonalGaussianDistribution clamps logvar to [-30, 20].
  const std = new NDArray(
    raw.data.slice(half, 2 * half).map((v) => Math.exp(0.5 * Math.min(20, Math.max(-30, v)))),
    mean.shape,
  );
  return { mean, std, scale: encoder.scalingFactor };
}

function timestepLayout(bundle: StableDiffusionBundle): 'scalar' | 'single' | 'batch' {
  const shape = bundle.unet.session.input('timestep').shape;
  return shape.length === 0 ? 'scalar' : shape[0] === 1 ? 'single' : 'batch';
}

/**
 * Fine-tune fresh LoRA adapters on one image. `base` is the UNet graph (float32 weights as initializers; see
 * foldInitializerCasts) and is not modified.
 */
export async function trainDragLora(
  bundle: StableDiffusionBundle,
  base: ModelProto,
  input: LoraTrainingInput,
  options: DragLoraOptions,
  settings: SessionSettings,
  placement: SessionPlacement = {},
): Promise<TrainedLora> {
  const rank = options.rank ?? 16;
  const steps = options.steps ?? 80;
  const batch = options.batchSize ?? 4;
  for (const [name, v] of [
    ['LoRA rank', rank],
    ['LoRA steps', steps],
    ['LoRA batch size', batch],
  ] as const) {
    if (!Number.isInteger(v) || v < (name === 'LoRA steps' ? 0 : 1))
      throw new UserError(`${name} must be a positive integer, got ${v}`);
  }
  const lr = options.learningRate ?? 5e-4;
  if (!(lr > 0)) throw new UserError(`the LoRA learning rate must be positive, got ${lr}`);
  const init = options.init ?? 'diffusers';
  if (!LORA_INIT_A.includes(init))
    throw new UserError(`the LoRA init must be one of ${LORA_INIT_A.join(', ')}, got '${String(init)}'`);
  const lora = addLora(base, { rank, alpha: rank, prefix: LORA_PREFIX, seed: input.seed, initA: init });
  if (steps === 0) return { lora, losses: [] };

  const { mean, std, scale } = await posterior(bundle, input.image);
  const [, channels, h, w] = mean.shape;
  const layout = timestepLayout(bundle);
  // One run per batch where the UNet takes a timestep per sample; otherwise one run per sample, gradients averaged
  // (the same thing: nothing in a UNet mixes batch items).
  const runBatch = layout === 'batch' ? batch : 1;
  const [, length, width] = input.embedding.shape;
  const output = bundle.unet.outputName;
  const inputShapes: Record<string, number[]> = {
    sample: [runBatch, channels, h, w],
    encoder_hidden_states: [runBatch, length, width],
    timestep: layout === 'scalar' ? [] : [runBatch],
  };
  const gradient = buildGradient(lora.model, {
    loss: mseLoss(output, { input: 'lora_target' }),
    wrt: lora.parameters,
    promote: true,
    inputShapes,
    checkpoint: options.checkpoint,
  });
  const session = await sessionFromModel(
    gradient.model,
    gradientSessionSettings(settings, options.checkpoint),
    'lora_gradient',
    placement,
  );
  input.onReady?.();
  try {
    const inits = new Map(graphOf(lora.model).initializer.map((t) => [t.name, t]));
    const params: Record<string, Float32Array> = {};
    const dims: Record<string, number[]> = {};
    for (const p of lora.parameters) {
      params[p] = tensorToFloat32(inits.get(p)!);
      dims[p] = tensorDims(inits.get(p)!);
    }
    const optimizer = new AdamW(params, {
      lr,
      betas: [0.9, 0.999],
      eps: 1e-8,
      weightDecay: options.weightDecay ?? 1e-2,
    });
    const { scheduler } = createScheduler(bundle.schedulerConfig, { override: 'ddim' });
    const alphas = scheduler.alphasCumprod;
    const prediction = String(scheduler.config['prediction_type'] ?? 'epsilon');
    const context = NDArray.concat(Array.from({ length: runBatch }, () => input.embedding));
    const losses: number[] = [];
    const fetch = [gradient.loss, ...lora.parameters.map((p) => gradient.gradients[p])];
    const gen = input.generator;

    for (let step = 0; step < steps; step++) {
      const samples: NDArray[] = [];
      const targets: NDArray[] = [];
      const timesteps: number[] = [];
      for (let k = 0; k < batch; k++) {
        const z = std ? mean.map((m, i) => m + std.data[i] * gen.normal()) : mean;
        const x0 = z.scale(scale);
        const noise = gen.randn(x0.shape);
        const t = Math.min(alphas.length - 1, Math.floor(gen.random() * alphas.length));
        const a = alphas[t];
        samples.push(x0.axpby(Math.sqrt(a), noise, Math.sqrt(1 - a)));
        targets.push(
          prediction === 'v_prediction'
            ? noise.axpby(Math.sqrt(a), x0, -Math.sqrt(1 - a))
            : prediction === 'sample'
              ? x0
              : noise,
        );
        timesteps.push(t);
      }
      const grads: Record<string, Float32Array> = {};
      let loss = 0;
      for (let k = 0; k < batch; k += runBatch) {
        const feeds: Record<string, NDArray> = {
          sample: NDArray.concat(samples.slice(k, k + runBatch)),
          timestep: new NDArray(Float32Array.from(timesteps.slice(k, k + runBatch)), inputShapes.timestep),
          encoder_hidden_states: context,
          lora_target: NDArray.concat(targets.slice(k, k + runBatch)),
        };
        for (const p of lora.parameters) feeds[p] = new NDArray(params[p], dims[p]);
        const out = await session.run(feeds, fetch);
        const share = runBatch / batch;
        loss += share * out[gradient.loss].data[0];
        for (const p of lora.parameters) {
          const g = out[gradient.gradients[p]].data;
          const acc = (grads[p] ??= new Float32Array(g.length));
          for (let i = 0; i < g.length; i++) acc[i] += share * g[i];
        }
      }
      optimizer.step(grads);
      losses.push(loss);
      input.onStep?.(step + 1, steps, loss);
    }
    for (const p of lora.parameters) setTensorValues(inits.get(p)!, params[p]);
    return { lora, losses };
  } finally {
    await session.release();
  }
}

/**
 * The base UNet with every adapter merged into its weight (W + scale · B·A), as a new model sharing all other
 * tensors with `base`; neither `base` nor the LoRA model is modified.
 */
export function mergeLora(base: ModelProto, lora: LoraModel): ModelProto {
  const graph = Graph.fromModel(base);
  for (const adapter of lora.adapters) {
    const weight = graph.initializers.get(adapter.weight);
    if (!weight) throw new Error(`mergeLora: the base model has no weight '${adapter.weight}'`);
    graph.initializers.set(
      adapter.weight,
      makeTensor(adapter.weight, weight.dataType, tensorDims(weight), mergedWeight(lora.model, adapter)),
    );
  }
  return graph.toModel();
}

/**
 * Save the adapters as safetensors, with what produced them in the metadata: PEFT's key names by default, or
 * diffusers' ('diffusers', 'attn-procs': what the official DragDiffusion code writes and loads).
 */
export async function saveDragLora(
  path: string,
  lora: LoraModel,
  metadata: Record<string, string> = {},
  layout: LoraKeyLayout = 'peft',
): Promise<void> {
  await saveLora(path, lora, { metadata: { editkit_method: 'dragdiffusion', ...metadata }, layout });
}

/**
 * diffusers' `to_out.0` is the first module of a ModuleList; an export may name that projection `to_out` (the
 * node `/…/attn1/to_out/MatMul`). Rename the file's modules to whichever of the two the UNet has.
 */
function alignToUnetModules(peft: PeftLora, base: ModelProto): PeftLora {
  const known = new Set(findLoraTargets(base).map((t) => t.module));
  const strip = (m: string) => (m.startsWith(LORA_PREFIX) ? m.slice(LORA_PREFIX.length) : m);
  const rename = (module: string): string => {
    const bare = strip(module);
    if (known.has(bare)) return module;
    const alternative = bare.endsWith('.to_out.0')
      ? bare.slice(0, -2)
      : bare.endsWith('.to_out')
        ? `${bare}.0`
        : undefined;
    return alternative !== undefined && known.has(alternative)
      ? module.slice(0, module.length - bare.length) + alternative
      : module;
  };
  const tensors = new Map<string, SafeTensor>();
  for (const [key, tensor] of peft.tensors) {
    const m = /^(.+)(\.lora_[AB]\.weight)$/.exec(key)!;
    tensors.set(rename(m[1]) + m[2], tensor);
  }
  const alphas = new Map([...peft.alphas].map(([module, value]) => [rename(module), value]));
  return { ...peft, tensors, alphas };
}

/**
 * Adapters from a safetensors file for the same UNet, in any key layout (PEFT `lora_A`/`lora_B`, diffusers
 * `lora.down`/`lora.up`, or the `AttnProcsLayers` names the official code saves), with or without the `unet.`
 * prefix. Rank from the factors' shapes; alpha from per-module `.alpha` tensors, else the metadata (PEFT layout),
 * else alpha = rank (scale 1, as diffusers applies a file without alphas).
 */
export async function loadDragLora(path: string, base: ModelProto): Promise<LoraModel> {
  let file;
  try {
    file = await readSafetensors(path);
  } catch (error) {
    throw new UserError(
      `cannot read the LoRA file '${path}': ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  let peft;
  try {
    peft = toPeftLayout(file.tensors);
  } catch (error) {
    throw new UserError(
      `'${path}' is not a LoRA file EditKit reads: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  peft = alignToUnetModules(peft, base);
  const suffix = '.lora_A.weight';
  const aNames = [...peft.tensors.keys()].filter((k) => k.endsWith(suffix));
  if (aNames.length === 0) throw new UserError(`'${path}' holds no LoRA factors`);
  const prefix = aNames.every((k) => k.startsWith(LORA_PREFIX)) ? LORA_PREFIX : '';
  const modules = aNames.map((k) => k.slice(prefix.length, -suffix.length));
  const rank = peft.tensors.get(aNames[0])!.shape[0];
  const metadataAlpha = peft.layout === 'peft' ? Number(file.metadata['lora_alpha']) : NaN;
  const alpha = metadataAlpha > 0 ? metadataAlpha : rank;
  let lora: LoraModel;
  try {
    lora = addLora(base, { rank, alpha, prefix, targets: modules });
    const aligned = new Map(peft.tensors);
    for (const [module, value] of peft.alphas)
      aligned.set(`${module}.alpha`, float32ToSafeTensor(Float32Array.of(value), []));
    applyLoraTensors(lora, aligned);
  } catch (error) {
    throw new UserError(
      `the LoRA file '${path}' does not fit this UNet: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  if (lora.adapters.length !== modules.length) {
    const found = new Set(lora.adapters.map((a) => a.module.slice(prefix.length)));
    const missing = modules.filter((m) => !found.has(m));
    throw new UserError(
      `the LoRA file '${path}' adapts modules this UNet does not have: ${missing.slice(0, 3).join(', ')}`,
    );
  }
  return lora;
}
