import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  Adam,
  extractSubgraph,
  Graph,
  makeValueInfo,
  type CheckpointOptions,
  type LoraInitA,
  type LoraModel,
  type ModelProto,
} from '../../autodiff/index.js';
import type { StableDiffusionBundle } from '../../models/bundle.js';
import { UNet } from '../../models/unet.js';
import { NDArray } from '../../runtime/ndarray.js';
import type { Generator } from '../../runtime/random.js';
import type { ModelSession } from '../../runtime/session.js';
import { createInverseScheduler, createScheduler, type Scheduler } from '../../schedulers/index.js';
import { UserError } from '../../util/errors.js';
import {
  checkImage,
  checkSteps,
  checkStrength,
  encodePrompt,
  maskToLatent,
  resolveGenerator,
  type ProgressCallback,
} from '../common.js';
import {
  chooseFeatureTensor,
  FeatureGrid,
  handlesReached,
  motionSampling,
  trackPoints,
  type FeatureChoice,
} from './features.js';
import { loadDragLora, mergeLora, trainDragLora } from './lora.js';
import { buildDragGradientModel, DRAG_INPUTS } from './motion_model.js';
import {
  fromGrid,
  roundHalfEven,
  targetsOutsideMask,
  toGrid,
  validateDragInputs,
  type GridPoint,
  type PixelPoint,
} from './points.js';
import {
  foldInitializerCasts,
  gradientSessionSettings,
  loadUnetGraph,
  mutualSelfAttentionModel,
  sessionFromModel,
  type SessionPlacement,
  type SessionSettings,
} from './unet_models.js';

export const DRAG_STAGES = ['lora', 'invert', 'drag', 'denoise'] as const;
export type DragStage = (typeof DRAG_STAGES)[number];

export interface DragDiffusionOptions {
  /** Input image [1, 3, H, W] in [-1, 1]. */
  image: NDArray;
  /** Handle points [x, y] in image pixels; handle k is dragged to targets[k]. */
  handles: readonly PixelPoint[];
  targets: readonly PixelPoint[];
  /** Region allowed to change, [1, 1, H, W] (white ≥ 0.5 = editable). Default: the whole image. */
  mask?: NDArray;
  /** A caption of the input; used for the LoRA, the inversion, the optimisation and the denoising. Default ''. */
  prompt?: string;

  /** LoRA fine-tuning steps on the input (default 80; 0 = no LoRA unless `loraFile`). */
  loraSteps?: number;
  loraRank?: number;
  loraLearningRate?: number;
  loraBatchSize?: number;
  /** How LoRA's A factors start (default 'diffusers', as the official code; 'fan-in' is EditKit's first init). */
  loraInit?: LoraInitA;
  /** Load adapters from this safetensors file instead of training them. */
  loraFile?: string;

  /** DDIM steps over the whole schedule (default 50). */
  numInferenceSteps?: number;
  /** Fraction of the schedule inverted: the optimised latent z_t sits at this noise level (default 0.7). */
  inversionStrength?: number;

  /** Latent optimisation iterations, the official n_pix_step (default 80). */
  dragSteps?: number;
  /** Adam's learning rate on z_t (default 0.01). */
  learningRate?: number;
  /** λ of the mask term (default 0.1). */
  lambda?: number;
  /** Motion-supervision patch radius r_m (default 1) and point-tracking radius r_p (default 3), in grid cells. */
  motionRadius?: number;
  trackingRadius?: number;
  /** The supervision grid, [width, height] (default: half the image, the official sup_res). */
  supervisionSize?: readonly [number, number];
  /** The decoder feature: a tensor name, or an up-block index (default: the second-to-last up block). */
  featureTensor?: string;
  featureBlock?: number;

  /** The official final denoising's mutual self-attention to the input's branch (default true). */
  mutualSelfAttention?: boolean;
  mutualStartLayer?: number;

  /**
   * Gradient checkpointing for the LoRA and latent-optimisation gradients: recompute the forward pass in segments
   * instead of keeping every activation (SD 1.5 at 512²: see `npm run bench -- vs-torch --sizes sd15`). Off by default.
   */
  gradientCheckpointing?: CheckpointOptions;

  seed?: number;
  generator?: Generator;
  /** CPU threads for the sessions this pipeline creates (the bundle's own sessions keep theirs). */
  intraOpNumThreads?: number;
  onProgress?: ProgressCallback;
  /** Stops the run between steps (a server's cancel, a timeout): the pipeline throws the signal's reason. */
  signal?: AbortSignal;
}

export interface DragStageStats {
  seconds: number;
  /** Part of `seconds` spent building gradient models and creating sessions before the first run. */
  setupSeconds: number;
  /** Largest resident set size seen during the stage (sampled after every model run), MiB. */
  peakRssMiB: number;
  /** Model runs in the stage. */
  runs: number;
}

export interface DragDiffusionResult {
  /** The dragged image [1, 3, H, W] in [0, 1]. */
  image: NDArray;
  /** Final clean latents. */
  latents: NDArray;
  /** z_t from the inversion, and after the latent optimisation. */
  invertedLatents: NDArray;
  draggedLatents: NDArray;
  /** The timestep of z_t. */
  timestep: number;
  /** Where point tracking last saw each handle, in image pixels [x, y], and on the supervision grid [row, col]. */
  handles: PixelPoint[];
  gridHandles: GridPoint[];
  gridTargets: GridPoint[];
  /** Optimisation iterations taken (Adam steps), and whether every handle reached its target before the budget ran out. */
  iterations: number;
  reached: boolean;
  /** Loss per iteration (total, and its motion-supervision part). */
  losses: number[];
  motionLosses: number[];
  /** LoRA training loss per step (empty when loaded or skipped). */
  loraLosses: number[];
  /** The adapters used (trained or loaded), for saveDragLora. */
  lora: LoraModel | undefined;
  feature: FeatureChoice & { shape: number[] };
  mutualLayers: string[];
  stats: Record<DragStage, DragStageStats>;
  warnings: string[];
  seed: number | undefined;
}

/**
 * DDIM steps inverted: `round(steps · strength)` with Python's round, as the official code computes it (halves go
 * to even: strength 0.45 of 50 steps inverts 22, not 23).
 */
export function inversionStepCount(numInferenceSteps: number, inversionStrength: number): number {
  return roundHalfEven(numInferenceSteps * inversionStrength);
}

/**
 * DragDiffusion (Shi et al., CVPR 2024): point-based image editing on a diffusion model.
 *  1. LoRA: fine-tune adapters on the input so the UNet reproduces it faithfully.
 *  2. Invert: DDIM-invert the input to z_t (t at 70 % of the schedule), with the LoRA.
 *  3. Drag: optimise z_t so decoder features move from each handle toward its target (motion supervision), with
 *     point tracking on the same features and a mask term that holds everything outside the mask in place.
 *  4. Denoise: DDIM from the optimised z_t with the LoRA, the input's branch alongside (mutual self-attention).
 */
export async function dragDiffusion(
  bundle: StableDiffusionBundle,
  options: DragDiffusionOptions,
): Promise<DragDiffusionResult> {
  const numInferenceSteps = options.numInferenceSteps ?? 50;
  const inversionStrength = options.inversionStrength ?? 0.7;
  const dragSteps = options.dragSteps ?? 80;
  const learningRate = options.learningRate ?? 0.01;
  const lambda = options.lambda ?? 0.1;
  const motionRadius = options.motionRadius ?? 1;
  const trackingRadius = options.trackingRadius ?? 3;
  const loraSteps = options.loraSteps ?? 80;
  checkSteps(numInferenceSteps);
  checkStrength(inversionStrength);
  const { width, height } = checkImage(bundle, options.image);
  const points = {
    handles: options.handles.map((p) => [...p] as PixelPoint),
    targets: options.targets.map((p) => [...p] as PixelPoint),
  };
  validateDragInputs(points, width, height, options.mask);
  for (const [name, value, min] of [
    ['drag steps', dragSteps, 0],
    ['LoRA steps', loraSteps, 0],
    ['motion radius', motionRadius, 0],
    ['tracking radius', trackingRadius, 0],
  ] as const) {
    if (!Number.isInteger(value) || value < min)
      throw new UserError(`${name} must be an integer ≥ ${min}, got ${value}`);
  }
  if (!(learningRate > 0))
    throw new UserError(`the latent learning rate must be positive, got ${learningRate}`);
  if (!(lambda >= 0)) throw new UserError(`λ must be ≥ 0, got ${lambda}`);
  const [gridWidth, gridHeight] = options.supervisionSize ?? [Math.floor(width / 2), Math.floor(height / 2)];
  if (!(Number.isInteger(gridWidth) && Number.isInteger(gridHeight) && gridWidth > 0 && gridHeight > 0)) {
    throw new UserError(`the supervision grid must be positive integers, got ${gridWidth}×${gridHeight}`);
  }
  const inversionCount = inversionStepCount(numInferenceSteps, inversionStrength);
  if (inversionCount < 1) {
    throw new UserError(
      `inversion strength ${inversionStrength} with ${numInferenceSteps} steps inverts no step; raise either`,
    );
  }
  const { generator, seed } = resolveGenerator(options);
  const settings: SessionSettings = { device: bundle.device, intraOpNumThreads: options.intraOpNumThreads };
  const warnings: string[] = [];
  if (options.mask) {
    for (const k of targetsOutsideMask(points, options.mask)) {
      warnings.push(`the target of pair ${k + 1} lies outside the mask, where the drag is held back`);
    }
  }
  const meter = new StageMeter();
  const report = (stage: DragStage, step: number, total: number) => {
    // One progress report per model run, except in the drag stage, which counts its runs itself.
    meter.tick(stage !== 'drag');
    options.signal?.throwIfAborted();
    options.onProgress?.({ stage, step, total });
  };
  const sessions: ModelSession[] = [];
  try {
    const embedding = (await encodePrompt(bundle, options.prompt ?? '', undefined, 1)).cond;
    const {
      model: base,
      placement,
      weightsOnDisk,
    } = await loadUnetGraph(join(bundle.dir, 'unet', 'model.onnx'));
    foldInitializerCasts(base);
    const mutual = options.mutualSelfAttention ?? true;
    const usesLora = options.loraFile !== undefined || loraSteps > 0;
    // A large model (weights kept on disk) with LoRA never runs the bundle's own UNet here: free it for the run,
    // it loads again on its next use. At SD 1.5 that is 3.4 GB of weights plus ONNX Runtime's pre-packed copies.
    if (weightsOnDisk && usesLora) await bundle.unet.session.unload();

    // ---- 1. LoRA on the input image ---------------------------------------------------------------------------
    meter.start('lora');
    let lora: LoraModel | undefined;
    let loraLosses: number[] = [];
    if (options.loraFile) {
      lora = await loadDragLora(options.loraFile, base);
      report('lora', 1, 1);
    } else if (loraSteps > 0) {
      const trained = await trainDragLora(
        bundle,
        base,
        {
          image: options.image,
          embedding,
          generator,
          seed: seed ?? 0,
          onReady: () => meter.ready(),
          onStep: (step, total) => report('lora', step, total),
        },
        {
          rank: options.loraRank,
          steps: loraSteps,
          learningRate: options.loraLearningRate,
          batchSize: options.loraBatchSize,
          init: options.loraInit,
          checkpoint: options.gradientCheckpointing,
        },
        settings,
        placement,
      );
      lora = trained.lora;
      loraLosses = trained.losses;
    }
    // Merged weights run faster; where the weights stay on disk, the adapters stay a branch beside them instead of
    // a second copy of every adapted weight in memory.
    const unetModel = lora ? (weightsOnDisk ? lora.model : mergeLora(base, lora)) : base;
    let unet = bundle.unet;
    if (lora) {
      const session = await sessionFromModel(unetModel, settings, 'unet_lora', placement);
      sessions.push(session);
      unet = new UNet(session);
    }
    meter.end();

    // ---- 2. DDIM inversion to z_t -------------------------------------------------------------------------------
    meter.start('invert');
    const { scheduler } = createScheduler(bundle.schedulerConfig, { override: 'ddim' });
    scheduler.setTimesteps(numInferenceSteps);
    const inverse = createInverseScheduler(bundle.schedulerConfig);
    inverse.setTimesteps(numInferenceSteps);
    const inverseTimesteps = inverse.timesteps.slice(0, inversionCount);
    const startIndex = numInferenceSteps - inversionCount;
    const t = scheduler.timesteps[startIndex];
    if (inverseTimesteps.at(-1) !== t) {
      throw new Error(
        `DragDiffusion: inversion ends at t=${inverseTimesteps.at(-1)} but denoising starts at t=${t}`,
      );
    }
    const x0 = await (await bundle.vaeEncoder()).encode(options.image);
    let zt = x0;
    for (const [i, s] of inverseTimesteps.entries()) {
      const eps = await unet.predict(zt, s, embedding);
      zt = inverse.step(eps, s, zt).prevSample;
      report('invert', i + 1, inverseTimesteps.length);
    }
    // With mutual self-attention the denoising runs its own UNet variant: the inversion's LoRA UNet is done.
    if (lora && mutual) await unet.session.release();
    meter.end();

    // ---- 3. Latent optimisation: motion supervision + point tracking ----------------------------------------------
    meter.start('drag');
    const feature = chooseFeatureTensor(unetModel, bundle.dir, {
      tensor: options.featureTensor,
      block: options.featureBlock,
    });
    const timestepShape = bundle.unet.session.input('timestep').shape.length === 0 ? [] : [1];
    const featureShape = await inferFeatureShape(
      unetModel,
      feature.tensor,
      zt.shape,
      embedding.shape,
      timestepShape,
      settings,
      t,
      placement,
    );
    const [, featureChannels, featureHeight, featureWidth] = featureShape;
    const grid = new FeatureGrid(featureChannels, featureHeight, featureWidth, gridHeight, gridWidth);
    const gridTargets = points.targets.map((p) => toGrid(p, width, height, gridWidth, gridHeight));
    const initialHandles = points.handles.map((p) => toGrid(p, width, height, gridWidth, gridHeight));
    initialHandles.forEach((h, k) => {
      if (Math.hypot(h[0] - gridTargets[k][0], h[1] - gridTargets[k][1]) < 2) {
        warnings.push(
          `pair ${k + 1} is already within 2 supervision cells (${(2 * width) / gridWidth} px) of its target: it is not dragged`,
        );
      }
    });
    const pointsPerRun = points.handles.length * (2 * motionRadius + 1) ** 2;
    const dragModel = buildDragGradientModel(unetModel, {
      feature: feature.tensor,
      output: unet.outputName,
      sampleShape: zt.shape,
      contextShape: embedding.shape,
      timestepShape,
      cells: grid.cells,
      points: pointsPerRun,
      checkpoint: options.gradientCheckpointing,
    });
    const dragSession = await sessionFromModel(
      dragModel.model,
      gradientSessionSettings(settings, options.gradientCheckpointing),
      'drag_gradient',
      placement,
    );
    sessions.push(dragSession);
    meter.ready();
    const { a, b } = affineStep(scheduler, t);
    const [, latentChannels, latentHeight, latentWidth] = zt.shape;
    const keep = options.mask
      ? maskToLatent(options.mask, latentHeight, latentWidth).map((m) => lambda * (1 - m))
      : NDArray.zeros([1, 1, latentHeight, latentWidth]);
    const noKeep = NDArray.zeros(keep.shape);
    const fixed: Record<string, NDArray> = {
      timestep: NDArray.full(timestepShape, t),
      encoder_hidden_states: embedding,
      [DRAG_INPUTS.coefficients]: new NDArray(Float32Array.from([a, b]), [2]),
    };
    let previous = NDArray.zeros([1, latentChannels, latentHeight, latentWidth]);
    const z = zt.clone();
    const run = async (handles: GridPoint[], mask: NDArray) => {
      const sampling = motionSampling(grid, handles, gridTargets, { radius: motionRadius });
      const out = await dragSession.run(
        {
          ...fixed,
          sample: z,
          [DRAG_INPUTS.shifted]: sampling.shifted,
          [DRAG_INPUTS.source]: sampling.source,
          [DRAG_INPUTS.pointWeights]: sampling.weights,
          [DRAG_INPUTS.keep]: mask,
          [DRAG_INPUTS.previous]: previous,
        },
        [dragModel.feature, dragModel.output, dragModel.value, dragModel.motion, dragModel.gradient],
      );
      meter.tick(true);
      return out;
    };
    const optimizer = new Adam({ z: z.data }, { lr: learningRate });
    let handles = initialHandles.map((h) => [...h] as GridPoint);
    let initialFeatures: Float32Array[] = [];
    const losses: number[] = [];
    const motionLosses: number[] = [];
    let reached = false;
    let iterations = 0;
    for (let step = 0; step < dragSteps; step++) {
      // The mask term is zero (value and gradient) at the first step, where z_t is the initial latent; its
      // reference, the DDIM step from the initial z_t, comes out of that same run.
      let out = await run(handles, step === 0 ? noKeep : keep);
      if (step === 0) {
        const featureMap = out[dragModel.feature];
        initialFeatures = initialHandles.map(([r, c]) => grid.vectorAt(featureMap, r, c));
        previous = z.axpby(a, out[dragModel.output], b);
      } else {
        const tracked = trackPoints(grid, initialFeatures, out[dragModel.feature], handles, trackingRadius);
        const moved = tracked.some((p, k) => p[0] !== handles[k][0] || p[1] !== handles[k][1]);
        handles = tracked;
        if (!handlesReached(handles, gridTargets) && moved) {
          // The loss is defined at the tracked handles; the run above used the previous ones. Same z, so the
          // features do not change: only the gradient needs the new positions.
          out = await run(handles, keep);
        }
      }
      if (handlesReached(handles, gridTargets)) {
        reached = true;
        break;
      }
      losses.push(out[dragModel.value].data[0]);
      motionLosses.push(out[dragModel.motion].data[0]);
      optimizer.step({ z: out[dragModel.gradient].data });
      iterations++;
      report('drag', step + 1, dragSteps);
    }
    const dragged = z.clone();
    await dragSession.release();
    meter.end();

    // ---- 4. Denoise from the optimised z_t -------------------------------------------------------------------
    meter.start('denoise');
    let mutualLayers: string[] = [];
    let latents: NDArray;
    const timesteps = scheduler.timesteps.slice(startIndex);
    if (mutual) {
      const rewritten = mutualSelfAttentionModel(unetModel, { startLayer: options.mutualStartLayer });
      mutualLayers = rewritten.layers;
      const session = await sessionFromModel(rewritten.model, settings, 'unet_mutual', placement);
      sessions.push(session);
      const mutualUnet = new UNet(session);
      const context = NDArray.concat([embedding, embedding]);
      let batch = NDArray.concat([zt, dragged]);
      for (const [i, s] of timesteps.entries()) {
        const eps = await mutualUnet.predict(batch, s, context);
        batch = scheduler.step(eps, s, batch, { eta: 0 }).prevSample;
        report('denoise', i + 1, timesteps.length);
      }
      latents = batch.chunk(2)[1];
    } else {
      latents = dragged;
      for (const [i, s] of timesteps.entries()) {
        const eps = await unet.predict(latents, s, embedding);
        latents = scheduler.step(eps, s, latents, { eta: 0 }).prevSample;
        report('denoise', i + 1, timesteps.length);
      }
    }
    const image = await bundle.vaeDecoder.decode(latents);
    meter.end();

    return {
      image,
      latents,
      invertedLatents: zt,
      draggedLatents: dragged,
      timestep: t,
      handles: handles.map((h) => fromGrid(h, width, height, gridWidth, gridHeight)),
      gridHandles: handles,
      gridTargets,
      iterations,
      reached,
      losses,
      motionLosses,
      loraLosses,
      lora,
      feature: { ...feature, shape: featureShape },
      mutualLayers,
      stats: meter.stats(),
      warnings,
      seed,
    };
  } finally {
    for (const s of sessions) await s.release();
  }
}

/**
 * z_{t−1} = a · z_t + b · output for the scheduler's deterministic step at t: DDIM is affine in the sample and the
 * model output (ε or v), so two probes give the coefficients; a third checks affinity (clip_sample breaks it).
 */
export function affineStep(scheduler: Scheduler, t: number): { a: number; b: number } {
  const one = NDArray.full([1], 1);
  const zero = NDArray.zeros([1]);
  const at = (output: NDArray, sample: NDArray) =>
    scheduler.step(output, t, sample, { eta: 0 }).prevSample.data[0];
  const base = at(zero, zero);
  const a = at(zero, one) - base;
  const b = at(one, zero) - base;
  const probe = at(NDArray.full([1], 0.3), NDArray.full([1], -0.7));
  if (Math.abs(base) > 1e-6 || Math.abs(probe - (-0.7 * a + 0.3 * b)) > 1e-4) {
    throw new UserError(
      'DragDiffusion needs a DDIM step that is affine in the sample (turn clip_sample off in the scheduler config)',
    );
  }
  return { a, b };
}

/** [1, C, h, w] of the feature tensor: by shape inference with the inputs fixed, else by running the cut graph. */
async function inferFeatureShape(
  unet: ModelProto,
  feature: string,
  sampleShape: readonly number[],
  contextShape: readonly number[],
  timestepShape: readonly number[],
  settings: SessionSettings,
  t: number,
  placement: SessionPlacement,
): Promise<number[]> {
  try {
    const graph = Graph.fromModel(unet);
    const fixed: Record<string, readonly number[]> = {
      sample: sampleShape,
      encoder_hidden_states: contextShape,
      timestep: timestepShape,
    };
    graph.inputs = graph.inputs.map((v) => {
      const dims = fixed[v.name];
      const type = v.type?.tensorType?.elemType;
      return dims && typeof type === 'number' ? makeValueInfo(v.name, type, [...dims]) : v;
    });
    graph.invalidate();
    const shape = graph.shape(feature);
    if (shape && shape.length === 4 && shape.every((d) => typeof d === 'number')) return shape as number[];
  } catch {
    // Fall through to measuring it.
  }
  const session = await sessionFromModel(
    extractSubgraph(unet, [feature]),
    settings,
    'feature_probe',
    placement,
  );
  try {
    const feeds: Record<string, NDArray> = {
      sample: NDArray.zeros(sampleShape),
      encoder_hidden_states: NDArray.zeros(contextShape),
    };
    if (session.hasInput('timestep')) feeds.timestep = NDArray.full(timestepShape, t);
    const out = await session.run(feeds, [feature]);
    const shape = out[feature].shape;
    if (shape.length !== 4 || shape[0] !== 1)
      throw new UserError(
        `the feature tensor '${feature}' has shape [${shape.join(', ')}]; expected [1, C, h, w]`,
      );
    return [...shape];
  } finally {
    await session.release();
  }
}

/** Wall time and sampled peak RSS per stage. */
class StageMeter {
  private current: DragStage | undefined;
  private started = 0;
  private readonly data = new Map<DragStage, DragStageStats>();

  start(stage: DragStage): void {
    this.current = stage;
    this.started = performance.now();
    this.data.set(stage, { seconds: 0, setupSeconds: 0, peakRssMiB: rssMiB(), runs: 0 });
  }

  /** The stage's models are built and loaded: what follows is model runs. */
  ready(): void {
    if (this.current) this.data.get(this.current)!.setupSeconds = (performance.now() - this.started) / 1000;
  }

  tick(countsRun: boolean): void {
    if (!this.current) return;
    const s = this.data.get(this.current)!;
    if (countsRun) s.runs++;
    s.peakRssMiB = Math.max(s.peakRssMiB, rssMiB());
  }

  end(): void {
    if (!this.current) return;
    const s = this.data.get(this.current)!;
    s.seconds = (performance.now() - this.started) / 1000;
    s.peakRssMiB = Math.max(s.peakRssMiB, rssMiB());
    this.current = undefined;
  }

  stats(): Record<DragStage, DragStageStats> {
    const empty = { seconds: 0, setupSeconds: 0, peakRssMiB: 0, runs: 0 };
    return Object.fromEntries(DRAG_STAGES.map((s) => [s, this.data.get(s) ?? empty])) as Record<
      DragStage,
      DragStageStats
    >;
  }
}

function rssMiB(): number {
  return process.memoryUsage.rss() / 2 ** 20;
}
