/**
 * DragDiffusion on EmojiWorld (issue 6): held-out move/resize edits, whose drag points, moved scene and object
 * are all known. Per case, for DragDiffusion and for the undragged input (the baseline the reduction is measured
 * against):
 *  - Mean Distance (DragBench): each handle is found in the result by DIFT-style feature matching (the bundle's own
 *    base UNet, t = 261, 8 noise draws, cosine similarity over the whole image, on an up block that is not the one
 *    the drag supervised: see dift.ts) and its distance to the target measured, in pixels, pooled over all points
 *    of all cases as DragBench does;
 *  - ground-truth distance: the moved object's sprite (class, style, colour and size of the target scene) located in
 *    the result by alpha-weighted template matching; the distance from its centre to the true centre;
 *  - Image Fidelity (DragBench): 1 − LPIPS-style distance between the input and the result, whole image, on the
 *    judge's features (metrics/perceptual.ts; no pretrained VGG/AlexNet can be downloaded here); also
 *    1 − mean |result − input| outside the edit's changed-region mask, in [0, 1] pixel units, and the PSNR there;
 *  - distance to the ground-truth moved scene: PSNR and mean absolute error to the target render;
 *  - time and sampled peak RSS per stage.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Command, Option } from 'commander';
import { LORA_INIT_A, type LoraInitA } from '../autodiff/index.js';
import { findDragBenchCases, readDragBenchCase } from '../datasets/dragbench.js';
import { resizeBilinear, resizeBilinearChannels } from '../image/resample.js';
import { rgb8ToTensor, resolveSize } from '../image/io.js';
import { ClipModel, cosineRows } from '../models/clip.js';
import type { PixelPoint } from '../pipelines/drag/points.js';
import { meanAbsoluteError, psnr } from '../metrics/image.js';
import { PerceptualDistance } from '../metrics/perceptual.js';
import { StableDiffusionBundle } from '../models/bundle.js';
import { DiftFeaturizer, matchPoints } from '../pipelines/drag/dift.js';
import {
  DRAG_STAGES,
  dragDiffusion,
  type DragDiffusionResult,
  type DragStage,
} from '../pipelines/drag/drag.js';
import { saveDragArrows } from '../pipelines/drag/arrows.js';
import { NDArray } from '../runtime/ndarray.js';
import { parseDevice } from '../runtime/device.js';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/files.js';
import {
  applicableScene,
  editVocabulary,
  getSprite,
  placement,
  renderScene,
  resolveWorldSubset,
  sampleEdit,
  splitSeeds,
  type SampleSceneOptions,
  type Scene,
  type SceneObject,
} from '../world/index.js';

export type DragBenchTask = 'move' | 'resize';

export interface DragBenchOptions {
  cases: number;
  /** Offset into the held-out seeds. */
  seed: number;
  tasks: readonly DragBenchTask[];
  /** Image size (default: the model's default size, within EmojiWorld's 64–256; a dataset's own size, rounded). */
  size?: number;
  loraSteps: number;
  dragSteps: number;
  steps: number;
  /** How LoRA's A factors start (default 'diffusers'). */
  loraInit?: LoraInitA;
  /** DIFT: noise level, ensemble size, up block. */
  diftTimestep?: number;
  diftEnsemble?: number;
  diftBlock?: number;
  /** Example pictures (input | result | target with arrows) to save. */
  examples: number;
  /** Scene options of the world subset the model knows (default the whole world); the image size is `size`. */
  scene?: SampleSceneOptions;
  /** The LPIPS-style distance for Image Fidelity, and the second network of Mean Distance (the judge). */
  perceptual?: PerceptualDistance;
  /** A CLIP for DragBench's CLIP similarity between input and result. */
  clip?: ClipModel;
  /** Cases in DragBench's layout instead of EmojiWorld's held-out edits (no ground truth then). */
  dataset?: string;
  out: string;
  threads?: number;
  log: (line: string) => void;
}

export interface DragCaseScore {
  /** The EmojiWorld seed, or the dataset case's folder. */
  id: string;
  task: DragBenchTask | 'dataset';
  instruction: string;
  pairs: number;
  /** Per method: DIFT mean distance, ground-truth distance, IF, PSNR outside the mask, PSNR and MAE to the target. */
  input: DragMetrics;
  drag: DragMetrics & { iterations: number; reached: boolean; stats: DragDiffusionResult['stats'] };
}

export interface DragMetrics {
  /** DIFT distance of each handle's match to its target (px); in the summary rows, pooled over every point. */
  pointDistances: number[];
  /** Mean over points of one case; in the summary rows, DragBench's Mean Distance pooled over all points. */
  meanDistance: number;
  /** The same, matched on a second network's features (the judge's), where one exists. */
  judgePointDistances: number[];
  judgeMeanDistance: number;
  /** Ground truth only (EmojiWorld): the moved sprite's distance from its true place. */
  gtDistance: number;
  /** DragBench's IF: 1 − LPIPS-style distance to the input, whole image (NaN without a perceptual network). */
  imageFidelity: number;
  /** DragBench's CLIP similarity: cosine of the input's and the result's CLIP image embeddings. */
  clipSimilarity: number;
  /** Masked-background preservation: 1 − mean absolute error to the input outside the mask, and the PSNR there. */
  maeFidelity: number;
  backgroundPsnr: number;
  /** Ground truth only: PSNR and MAE to the target scene. */
  targetPsnr: number;
  targetMae: number;
}

export interface DragBenchReport {
  model: string;
  device: string;
  source: string;
  cases: number;
  imageSize: number;
  settings: Record<string, unknown>;
  rows: { method: string; metrics: DragMetrics; n: number }[];
  reduction: { meanDistance: number; judgeMeanDistance: number; gtDistance: number };
  reachedFraction: number;
  meanIterations: number;
  stages: Record<DragStage, { seconds: number; peakRssMiB: number }>;
  secondsPerEdit: number;
  perCase: DragCaseScore[];
}

/** One edit to run: its input and points, and the ground truth where the world provides it. */
interface BenchCase {
  id: string;
  task: DragBenchTask | 'dataset';
  instruction: string;
  prompt: string;
  /** [1, 3, H, W] in [-1, 1]. */
  image: NDArray;
  handles: PixelPoint[];
  targets: PixelPoint[];
  /** [1, 1, H, W], 1 = may change. */
  mask: NDArray;
  truth?: { target01: NDArray; scene: Scene; object: SceneObject };
}

async function* worldCases(options: DragBenchOptions, size: number): AsyncGenerator<BenchCase> {
  const seeds = splitSeeds('heldout', options.cases, options.seed);
  for (const [index, seed] of seeds.entries()) {
    const task = options.tasks[index % options.tasks.length];
    const sceneOptions = { ...options.scene, width: size, height: size };
    let scene: Scene;
    try {
      scene = applicableScene(seed, task, sceneOptions);
    } catch (error) {
      // e.g. a subset whose objects fill the frame: nothing small enough to move inside the image
      if (!(error instanceof UserError)) throw error;
      options.log(`case ${index + 1}: skipped (${error.message})`);
      continue;
    }
    const edit = await sampleEdit(scene, task, seed, editVocabulary(sceneOptions));
    const drag = edit.drag;
    if (!drag || drag.handles.length === 0) {
      options.log(`case ${index + 1}: no drag points (${edit.instruction}); skipped`);
      continue;
    }
    const [source, target] = await Promise.all([renderScene(edit.source), renderScene(edit.target)]);
    yield {
      id: String(seed),
      task,
      instruction: edit.instruction,
      prompt: edit.sourceCaption,
      image: rgb8ToTensor({ data: source.image, width: size, height: size }, '[-1,1]'),
      handles: drag.handles,
      targets: drag.targets,
      mask: new NDArray(
        Float32Array.from(edit.mask, (v) => (v > 0 ? 1 : 0)),
        [1, 1, size, size],
      ),
      truth: {
        target01: rgb8ToTensor({ data: target.image, width: size, height: size }, '[0,1]'),
        scene: edit.target,
        object: edit.target.objects[edit.changed.target[0]],
      },
    };
  }
}

/** DragBench cases, resized to `size` (or to the model's multiple) with their points and masks. */
async function* datasetCases(
  root: string,
  multiple: number,
  size: number | undefined,
  limit: number,
): AsyncGenerator<BenchCase> {
  const dirs = findDragBenchCases(root).slice(0, limit);
  for (const dir of dirs) {
    const c = await readDragBenchCase(dir, root);
    const [, , h, w] = c.image.shape;
    const target = size ? { width: size, height: size } : resolveSize(w, h, { multiple });
    const sx = target.width / w;
    const sy = target.height / h;
    const resized = (p: [number, number]): PixelPoint => [p[0] * sx, p[1] * sy];
    const mask = resizeBilinear(c.mask, target.height, target.width).map((v) => (v >= 0.5 ? 1 : 0));
    yield {
      id: c.name,
      task: 'dataset',
      instruction: c.prompt ? `drag (${c.prompt})` : 'drag',
      prompt: c.prompt,
      image: resizeBilinearChannels(c.image, target.height, target.width),
      handles: c.handles.map(resized),
      targets: c.targets.map(resized),
      mask,
    };
  }
}

export async function benchDrag(
  bundle: StableDiffusionBundle,
  options: DragBenchOptions,
): Promise<DragBenchReport> {
  const worldSize =
    options.size ??
    Math.min(256, Math.max(64, bundle.defaultImageSize - (bundle.defaultImageSize % bundle.sizeMultiple)));
  if (options.size !== undefined && options.size % bundle.sizeMultiple !== 0)
    throw new UserError(
      `--size must be a multiple of ${bundle.sizeMultiple} for this model, got ${options.size}`,
    );
  const dift = await DiftFeaturizer.create(bundle, {
    timestep: options.diftTimestep,
    ensemble: options.diftEnsemble,
    block: options.diftBlock,
    intraOpNumThreads: options.threads,
  });
  const cases = options.dataset
    ? datasetCases(options.dataset, bundle.sizeMultiple, options.size, options.cases)
    : worldCases(options, worldSize);
  const perCase: DragCaseScore[] = [];
  let supervised: string | undefined;
  let judgeLayers: string[] | undefined;
  let imageSize = worldSize;
  const started = performance.now();
  try {
    let index = 0;
    for await (const c of cases) {
      const [, , height, width] = c.image.shape;
      imageSize = width;
      const input01 = c.image.map((v) => v / 2 + 0.5);
      const result = await dragDiffusion(bundle, {
        image: c.image,
        handles: c.handles,
        targets: c.targets,
        mask: c.mask,
        prompt: c.prompt,
        loraSteps: options.loraSteps,
        loraInit: options.loraInit,
        dragSteps: options.dragSteps,
        numInferenceSteps: options.steps,
        seed: 0,
        intraOpNumThreads: options.threads,
      });
      supervised = result.feature.tensor;
      if (supervised === dift.tensor)
        throw new Error(
          `the DIFT matcher would grade with the supervised tensor ${supervised}; pass another --dift-block`,
        );
      const sourceFeatures = await dift.features(c.image, c.prompt);
      const sourceJudge = options.perceptual ? await options.perceptual.featureMap(input01) : undefined;
      judgeLayers = sourceJudge?.layers;
      const sourceClip = options.clip ? await options.clip.embedImages(input01) : undefined;
      const outside = c.mask.map((v) => 1 - v);
      const score = async (image01: NDArray, features: NDArray): Promise<DragMetrics> => {
        const matched = matchPoints(sourceFeatures, features, c.handles, c.targets);
        const judged = sourceJudge
          ? matchPoints(
              sourceJudge.map,
              (await options.perceptual!.featureMap(image01)).map,
              c.handles,
              c.targets,
            )
          : undefined;
        const located = c.truth ? await locateSprite(image01, c.truth.scene, c.truth.object) : undefined;
        return {
          pointDistances: matched.distances,
          meanDistance: mean(matched.distances),
          judgePointDistances: judged?.distances ?? [],
          judgeMeanDistance: judged ? mean(judged.distances) : NaN,
          gtDistance: located?.distance ?? NaN,
          imageFidelity: options.perceptual ? 1 - (await options.perceptual.distance(image01, input01)) : NaN,
          clipSimilarity:
            sourceClip && options.clip
              ? cosineRows(sourceClip, await options.clip.embedImages(image01))[0]
              : NaN,
          maeFidelity: 1 - meanAbsoluteError(image01, input01, outside),
          backgroundPsnr: psnr(image01, input01, outside),
          targetPsnr: c.truth ? psnr(image01, c.truth.target01) : NaN,
          targetMae: c.truth ? meanAbsoluteError(image01, c.truth.target01) : NaN,
        };
      };
      const inputScore = await score(input01, sourceFeatures);
      const dragScore = await score(
        result.image,
        await dift.features(
          result.image.map((v) => 2 * v - 1),
          c.prompt,
        ),
      );
      perCase.push({
        id: c.id,
        task: c.task,
        instruction: c.instruction,
        pairs: c.handles.length,
        input: inputScore,
        drag: { ...dragScore, iterations: result.iterations, reached: result.reached, stats: result.stats },
      });
      if (index < options.examples) {
        await saveDragArrows(
          join(options.out, `example-${index}.png`),
          [input01, result.image, ...(c.truth ? [c.truth.target01] : [])],
          [
            { handles: c.handles, targets: c.targets },
            { handles: c.handles, targets: c.targets, tracked: result.handles },
            undefined,
          ],
        );
      }
      index++;
      const elapsed = (performance.now() - started) / 1000;
      const gt = c.truth
        ? `, GT ${inputScore.gtDistance.toFixed(1)} → ${dragScore.gtDistance.toFixed(1)} px`
        : '';
      options.log(
        `case ${index} (${c.instruction}, ${width}×${height}): MD ${inputScore.meanDistance.toFixed(1)} → ${dragScore.meanDistance.toFixed(1)} px${gt}, ` +
          `${result.iterations} it; ${elapsed.toFixed(0)} s elapsed`,
      );
    }
  } finally {
    await dift.release();
  }
  if (perCase.length === 0) throw new UserError('no case could be run');
  const pooled = (values: number[][]) => mean(values.flat());
  const average = (pick: (c: DragCaseScore) => DragMetrics): DragMetrics => ({
    pointDistances: [],
    meanDistance: pooled(perCase.map((c) => pick(c).pointDistances)),
    judgePointDistances: [],
    judgeMeanDistance: pooled(perCase.map((c) => pick(c).judgePointDistances)),
    gtDistance: mean(perCase.map((c) => pick(c).gtDistance)),
    imageFidelity: mean(perCase.map((c) => pick(c).imageFidelity)),
    clipSimilarity: mean(perCase.map((c) => pick(c).clipSimilarity)),
    maeFidelity: mean(perCase.map((c) => pick(c).maeFidelity)),
    backgroundPsnr: mean(perCase.map((c) => pick(c).backgroundPsnr).filter(Number.isFinite)),
    targetPsnr: mean(perCase.map((c) => pick(c).targetPsnr).filter(Number.isFinite)),
    targetMae: mean(perCase.map((c) => pick(c).targetMae)),
  });
  const inputRow = average((c) => c.input);
  const dragRow = average((c) => c.drag);
  const stages = Object.fromEntries(
    DRAG_STAGES.map((s) => [
      s,
      {
        seconds: mean(perCase.map((c) => c.drag.stats[s].seconds)),
        peakRssMiB: Math.max(0, ...perCase.map((c) => c.drag.stats[s].peakRssMiB)),
      },
    ]),
  ) as DragBenchReport['stages'];
  const report: DragBenchReport = {
    model: bundle.dir,
    device: bundle.device,
    source: options.dataset
      ? `DragBench layout at ${options.dataset}`
      : `held-out EmojiWorld ${options.tasks.join('/')} edits`,
    cases: perCase.length,
    imageSize,
    settings: {
      tasks: options.dataset ? ['dataset'] : options.tasks,
      loraSteps: options.loraSteps,
      loraInit: options.loraInit ?? 'diffusers',
      dragSteps: options.dragSteps,
      steps: options.steps,
      dift: {
        timestep: options.diftTimestep ?? 261,
        ensemble: options.diftEnsemble ?? 8,
        tensor: dift.tensor,
        supervisedTensor: supervised,
      },
      secondNetwork: judgeLayers ? { network: 'judge', layers: judgeLayers } : undefined,
      clip: options.clip?.dir,
    },
    rows: [
      { method: 'input (undragged)', metrics: inputRow, n: perCase.length },
      { method: 'DragDiffusion', metrics: dragRow, n: perCase.length },
    ],
    reduction: {
      meanDistance: 1 - dragRow.meanDistance / inputRow.meanDistance,
      judgeMeanDistance: 1 - dragRow.judgeMeanDistance / inputRow.judgeMeanDistance,
      gtDistance: 1 - dragRow.gtDistance / inputRow.gtDistance,
    },
    reachedFraction: mean(perCase.map((c) => (c.drag.reached ? 1 : 0))),
    meanIterations: mean(perCase.map((c) => c.drag.iterations)),
    stages,
    secondsPerEdit: mean(perCase.map((c) => DRAG_STAGES.reduce((s, k) => s + c.drag.stats[k].seconds, 0))),
    perCase,
  };
  await writeFileAtomic(join(options.out, 'results.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFileAtomic(join(options.out, 'results.md'), markdown(report));
  return report;
}

function markdown(r: DragBenchReport): string {
  const f = (v: number, d = 2) => (Number.isFinite(v) ? v.toFixed(d) : 'n/a');
  const dift = r.settings.dift as { tensor: string; supervisedTensor?: string };
  const second = r.settings.secondNetwork as { layers: string[] } | undefined;
  return [
    `DragDiffusion benchmark: ${r.cases} ${r.source}, ${r.imageSize}px, model ${r.model} (${r.device}), LoRA init ${String(r.settings.loraInit)}`,
    '',
    '| method | Mean Distance (DIFT) px ↓ | Mean Distance (judge) px ↓ | GT distance (template) px ↓ | IF = 1 − LPIPS-style ↑ | CLIP similarity ↑ | 1 − MAE outside mask ↑ | PSNR outside mask dB ↑ | PSNR to GT scene dB ↑ | MAE to GT scene ↓ |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...r.rows.map(
      (row) =>
        `| ${row.method} | ${f(row.metrics.meanDistance)} | ${f(row.metrics.judgeMeanDistance)} | ${f(row.metrics.gtDistance)} | ${f(row.metrics.imageFidelity, 4)} | ${f(row.metrics.clipSimilarity, 4)} | ${f(row.metrics.maeFidelity, 4)} | ${f(row.metrics.backgroundPsnr)} | ${f(row.metrics.targetPsnr)} | ${f(row.metrics.targetMae, 4)} |`,
    ),
    '',
    `Reduction vs the undragged input: Mean Distance (DIFT) ${f(100 * r.reduction.meanDistance, 1)} %, (judge) ${f(100 * r.reduction.judgeMeanDistance, 1)} %, GT distance ${f(100 * r.reduction.gtDistance, 1)} %. ` +
      `Handles reached their targets in ${f(100 * r.reachedFraction, 0)} % of the cases; ${f(r.meanIterations, 1)} iterations on average.`,
    '',
    `Mean Distance is pooled over every point of every case, as DragBench does. DIFT features: \`${dift.tensor}\` of the base UNet (no LoRA), t = 261; the drag supervised \`${dift.supervisedTensor ?? '?'}\`. ` +
      (second
        ? `The second network is the EmojiWorld judge (${second.layers.length} layers, stride ≤ 8, unit-normalised, upsampled).`
        : 'No second network (no judge found).'),
    "IF is DragBench's Image Fidelity, 1 − LPIPS between input and result over the whole image, with the LPIPS-style distance on the EmojiWorld judge's features (no pretrained VGG/AlexNet here). " +
      'CLIP similarity is the cosine of the input’s and the result’s CLIP image embeddings (DragBench reports it with OpenAI’s CLIP; here the bundled one). ' +
      "'1 − MAE' and 'PSNR outside mask' are the masked-background preservation. 'n/a': not measurable here (no judge, no CLIP, or no ground truth).",
    '',
    '| stage | s/edit | peak RSS MiB |',
    '| --- | --- | --- |',
    ...DRAG_STAGES.map((s) => `| ${s} | ${f(r.stages[s].seconds)} | ${f(r.stages[s].peakRssMiB, 0)} |`),
    `| total | ${f(r.secondsPerEdit)} | |`,
    '',
  ].join('\n');
}

/**
 * Where the sprite of `object` (as drawn in `scene`: class, style, colour, size, flip) best matches `image`
 * ([1, 3, H, W] in [0, 1]): alpha-weighted mean squared error over positions where at least 60 % of the sprite's
 * alpha is inside the image, coarse (stride 2) then refined. Returns the centre found and its distance to the
 * object's true centre in `scene`.
 */
export async function locateSprite(
  image: NDArray,
  scene: Scene,
  object: SceneObject,
): Promise<{ centre: [number, number]; trueCentre: [number, number]; distance: number }> {
  const [, , height, width] = image.shape;
  const at = placement(scene, object);
  const sprite = await getSprite(object.class, object.style, object.colour, at.size);
  const n = at.size;
  const plane = height * width;
  const alpha = new Float32Array(n * n);
  const rgb = new Float32Array(3 * n * n);
  let totalAlpha = 0;
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const sx = object.flipX ? n - 1 - x : x;
      const s = 4 * (y * n + sx);
      const k = y * n + x;
      alpha[k] = sprite.rgba[s + 3] / 255;
      totalAlpha += alpha[k];
      for (let c = 0; c < 3; c++) rgb[c * n * n + k] = sprite.rgba[s + c] / 255;
    }
  }
  const cost = (left: number, top: number): number => {
    let sum = 0;
    let weight = 0;
    for (let y = Math.max(0, -top); y < n && top + y < height; y++) {
      for (let x = Math.max(0, -left); x < n && left + x < width; x++) {
        const k = y * n + x;
        const a = alpha[k];
        if (a === 0) continue;
        const p = (top + y) * width + left + x;
        let d = 0;
        for (let c = 0; c < 3; c++) d += (image.data[c * plane + p] - rgb[c * n * n + k]) ** 2;
        sum += a * d;
        weight += a;
      }
    }
    return weight >= 0.6 * totalAlpha && weight > 0 ? sum / weight : Infinity;
  };
  const half = Math.floor(n / 2);
  let best = { left: at.left, top: at.top, cost: Infinity };
  for (let top = -half; top <= height - n + half; top += 2) {
    for (let left = -half; left <= width - n + half; left += 2) {
      const c = cost(left, top);
      if (c < best.cost) best = { left, top, cost: c };
    }
  }
  const coarse = best;
  for (let top = coarse.top - 2; top <= coarse.top + 2; top++) {
    for (let left = coarse.left - 2; left <= coarse.left + 2; left++) {
      const c = cost(left, top);
      if (c < best.cost) best = { left, top, cost: c };
    }
  }
  const centre: [number, number] = [best.left + n / 2, best.top + n / 2];
  const trueCentre: [number, number] = [at.left + n / 2, at.top + n / 2];
  return { centre, trueCentre, distance: Math.hypot(centre[0] - trueCentre[0], centre[1] - trueCentre[1]) };
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

/**
 * `npm run bench -- drag [options]`. The lead wires this into src/bench/main.ts; `defaultModel` is the bundled
 * model when installed, else the tiny test bundle.
 */
export async function dragBenchMain(argv: readonly string[], defaultModel: string): Promise<DragBenchReport> {
  const program = new Command('bench drag')
    .option('--model <dir>', 'model bundle (default: the bundled model, else the tiny test bundle)')
    .option('--device <name>', 'cpu|webgpu|cuda|auto', 'auto')
    .option('--threads <n>', 'CPU threads per session')
    .option('--cases <n>', 'held-out edits (with --dataset: the most cases read)', '20')
    .option('--seed <n>', 'offset into the held-out seeds', '0')
    .option('--tasks <list>', 'move,resize', 'move,resize')
    .option(
      '--dataset <dir>',
      'run on cases in DragBench layout (<case>/original_image.png, meta_data.pkl) instead of EmojiWorld',
    )
    .option('--size <px>', "image size (default: the model's; with --dataset, each image's own, rounded)")
    .option('--subset <name>', 'EmojiWorld subset of the scenes (default: the one the model was trained on)')
    .option(
      '--judge <dir>',
      'judge model for the LPIPS-style Image Fidelity and the second Mean Distance (default: emoji-judge next to the model)',
    )
    .option('--clip <dir>', 'CLIP for the CLIP similarity (default: emoji-clip next to the model)')
    .option('--lora-steps <n>', 'LoRA fine-tuning steps', '80')
    .addOption(
      new Option('--lora-init <init>', "LoRA A init: 'diffusers' N(0, 1/rank²) or 'fan-in' N(0, 1/fan_in)")
        .choices(LORA_INIT_A)
        .default('diffusers'),
    )
    .option('--drag-steps <n>', 'latent optimisation iterations', '80')
    .option('--steps <n>', 'DDIM steps over the whole schedule', '50')
    .option('--dift-ensemble <n>', 'noise draws averaged by the DIFT matcher', '8')
    .option(
      '--dift-block <n>',
      'up block of the DIFT features (default 1, or the last where 1 is supervised)',
    )
    .option('--examples <n>', 'example pictures to save', '4')
    .option('--out <dir>', 'where results.{md,json} and examples go', 'bench-results/drag')
    .option('--json', 'print the JSON report on stdout');
  program.parse([...argv], { from: 'user' });
  const o = program.opts<Record<string, string | boolean | undefined>>();
  const int = (name: string): number | undefined => {
    if (o[name] === undefined) return undefined;
    const v = Number(o[name]);
    if (!Number.isInteger(v) || v < 0)
      throw new UserError(
        `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} must be a whole number ≥ 0, got '${String(o[name])}'`,
      );
    return v;
  };
  const tasks = String(o.tasks)
    .split(',')
    .map((t) => t.trim())
    .filter((t): t is DragBenchTask => t === 'move' || t === 'resize');
  if (tasks.length === 0) throw new UserError('--tasks: give move and/or resize');
  const dataset = typeof o.dataset === 'string' ? o.dataset : undefined;
  if (dataset) findDragBenchCases(dataset);
  const modelDir = typeof o.model === 'string' ? o.model : defaultModel;
  const subset = resolveWorldSubset(typeof o.subset === 'string' ? o.subset : undefined, modelDir);
  const bundle = await StableDiffusionBundle.load(modelDir, {
    device: parseDevice(String(o.device)),
    intraOpNumThreads: int('threads'),
  });
  const judgeDir = typeof o.judge === 'string' ? o.judge : join(modelDir, '..', 'emoji-judge');
  const perceptual = existsSync(join(judgeDir, 'model.onnx'))
    ? await PerceptualDistance.fromJudge(judgeDir, bundle.device)
    : undefined;
  if (!perceptual)
    process.stderr.write(
      `no judge at ${judgeDir}: Image Fidelity (1 − LPIPS) and the judge's Mean Distance are not measured\n`,
    );
  const clipDir = typeof o.clip === 'string' ? o.clip : join(modelDir, '..', 'emoji-clip');
  const clip =
    typeof o.clip === 'string' || existsSync(clipDir)
      ? await ClipModel.load(clipDir, { device: bundle.device, imageOnly: true })
      : undefined;
  if (!clip) process.stderr.write(`no CLIP at ${clipDir}: the CLIP similarity is not measured\n`);
  try {
    const report = await benchDrag(bundle, {
      cases: int('cases')!,
      seed: int('seed')!,
      tasks,
      dataset,
      size: int('size'),
      loraSteps: int('loraSteps')!,
      loraInit: o.loraInit as LoraInitA,
      dragSteps: int('dragSteps')!,
      steps: int('steps')!,
      diftEnsemble: int('diftEnsemble'),
      diftBlock: int('diftBlock'),
      examples: int('examples')!,
      scene: subset.scene,
      perceptual,
      clip,
      out: String(o.out),
      threads: int('threads'),
      log: (line) => process.stderr.write(`${line}\n`),
    });
    if (o.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else console.log(markdown(report));
    return report;
  } finally {
    await bundle.release();
    await perceptual?.release();
    await clip?.release();
  }
}
