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
import { Command } from 'commander';
import { rgb8ToTensor } from '../image/io.js';
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
  /** Image size (default: the model's default size, within EmojiWorld's 64–256). */
  size?: number;
  loraSteps: number;
  dragSteps: number;
  steps: number;
  /** DIFT: noise level, ensemble size, up block. */
  diftTimestep?: number;
  diftEnsemble?: number;
  diftBlock?: number;
  /** Example pictures (input | result | target with arrows) to save. */
  examples: number;
  /** Scene options of the world subset the model knows (default the whole world); the image size is `size`. */
  scene?: SampleSceneOptions;
  /** The LPIPS-style distance for Image Fidelity (without it, IF is not measured). */
  perceptual?: PerceptualDistance;
  out: string;
  threads?: number;
  log: (line: string) => void;
}

export interface DragCaseScore {
  seed: number;
  task: DragBenchTask;
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
  gtDistance: number;
  /** DragBench's IF: 1 − LPIPS-style distance to the input, whole image (NaN without a perceptual network). */
  imageFidelity: number;
  /** 1 − mean absolute error to the input outside the changed-region mask. */
  maeFidelity: number;
  backgroundPsnr: number;
  targetPsnr: number;
  targetMae: number;
}

export interface DragBenchReport {
  model: string;
  device: string;
  cases: number;
  imageSize: number;
  settings: Record<string, unknown>;
  rows: { method: string; metrics: DragMetrics; n: number }[];
  reduction: { meanDistance: number; gtDistance: number };
  reachedFraction: number;
  meanIterations: number;
  stages: Record<DragStage, { seconds: number; peakRssMiB: number }>;
  secondsPerEdit: number;
  perCase: DragCaseScore[];
}

export async function benchDrag(
  bundle: StableDiffusionBundle,
  options: DragBenchOptions,
): Promise<DragBenchReport> {
  const size =
    options.size ??
    Math.min(256, Math.max(64, bundle.defaultImageSize - (bundle.defaultImageSize % bundle.sizeMultiple)));
  const dift = await DiftFeaturizer.create(bundle, {
    timestep: options.diftTimestep,
    ensemble: options.diftEnsemble,
    block: options.diftBlock,
    intraOpNumThreads: options.threads,
  });
  const seeds = splitSeeds('heldout', options.cases, options.seed);
  const perCase: DragCaseScore[] = [];
  let supervised: string | undefined;
  const started = performance.now();
  try {
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
      const toTensor = (data: Uint8Array, range: '[-1,1]' | '[0,1]') =>
        rgb8ToTensor({ data, width: size, height: size }, range);
      const input = toTensor(source.image, '[-1,1]');
      const input01 = toTensor(source.image, '[0,1]');
      const target01 = toTensor(target.image, '[0,1]');
      const mask = new NDArray(
        Float32Array.from(edit.mask, (v) => (v > 0 ? 1 : 0)),
        [1, 1, size, size],
      );
      const result = await dragDiffusion(bundle, {
        image: input,
        handles: drag.handles,
        targets: drag.targets,
        mask,
        prompt: edit.sourceCaption,
        loraSteps: options.loraSteps,
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
      const sourceFeatures = await dift.features(input, edit.sourceCaption);
      const object = edit.target.objects[edit.changed.target[0]];
      const score = async (image01: NDArray, features: NDArray): Promise<DragMetrics> => {
        const matched = matchPoints(sourceFeatures, features, drag.handles, drag.targets);
        const located = await locateSprite(image01, edit.target, object);
        const outside = mask.map((v) => 1 - v);
        return {
          pointDistances: matched.distances,
          meanDistance: mean(matched.distances),
          gtDistance: located.distance,
          imageFidelity: options.perceptual ? 1 - (await options.perceptual.distance(image01, input01)) : NaN,
          maeFidelity: 1 - meanAbsoluteError(image01, input01, outside),
          backgroundPsnr: psnr(image01, input01, outside),
          targetPsnr: psnr(image01, target01),
          targetMae: meanAbsoluteError(image01, target01),
        };
      };
      const inputScore = await score(input01, sourceFeatures);
      const dragScore = await score(
        result.image,
        await dift.features(
          result.image.map((v) => 2 * v - 1),
          edit.sourceCaption,
        ),
      );
      perCase.push({
        seed,
        task,
        instruction: edit.instruction,
        pairs: drag.handles.length,
        input: inputScore,
        drag: { ...dragScore, iterations: result.iterations, reached: result.reached, stats: result.stats },
      });
      if (index < options.examples) {
        await saveDragArrows(
          join(options.out, `example-${index}.png`),
          [input01, result.image, target01],
          [
            { handles: drag.handles, targets: drag.targets },
            { handles: drag.handles, targets: drag.targets, tracked: result.handles },
            undefined,
          ],
        );
      }
      const elapsed = (performance.now() - started) / 1000;
      options.log(
        `case ${index + 1}/${seeds.length} (${edit.instruction}): MD ${inputScore.meanDistance.toFixed(1)} → ${dragScore.meanDistance.toFixed(1)} px, ` +
          `GT ${inputScore.gtDistance.toFixed(1)} → ${dragScore.gtDistance.toFixed(1)} px, ${result.iterations} it; ${elapsed.toFixed(0)} s elapsed`,
      );
    }
  } finally {
    await dift.release();
  }
  const average = (pick: (c: DragCaseScore) => DragMetrics): DragMetrics => ({
    pointDistances: [],
    meanDistance: mean(perCase.flatMap((c) => pick(c).pointDistances)),
    gtDistance: mean(perCase.map((c) => pick(c).gtDistance)),
    imageFidelity: mean(perCase.map((c) => pick(c).imageFidelity)),
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
    cases: perCase.length,
    imageSize: size,
    settings: {
      tasks: options.tasks,
      loraSteps: options.loraSteps,
      dragSteps: options.dragSteps,
      steps: options.steps,
      dift: {
        timestep: options.diftTimestep ?? 261,
        ensemble: options.diftEnsemble ?? 8,
        tensor: dift.tensor,
        supervisedTensor: supervised,
      },
    },
    rows: [
      { method: 'input (undragged)', metrics: inputRow, n: perCase.length },
      { method: 'DragDiffusion', metrics: dragRow, n: perCase.length },
    ],
    reduction: {
      meanDistance: 1 - dragRow.meanDistance / inputRow.meanDistance,
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
  const f = (v: number, d = 2) => (Number.isFinite(v) ? v.toFixed(d) : '–');
  return [
    `DragDiffusion benchmark: ${r.cases} held-out EmojiWorld ${String((r.settings.tasks as string[]).join('/'))} edits, ${r.imageSize}px, ` +
      `model ${r.model} (${r.device})`,
    '',
    '| method | Mean Distance (DIFT) px ↓ | GT distance (template) px ↓ | IF = 1 − LPIPS-style ↑ | 1 − MAE outside mask ↑ | PSNR outside mask dB ↑ | PSNR to GT scene dB ↑ | MAE to GT scene ↓ |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...r.rows.map(
      (row) =>
        `| ${row.method} | ${f(row.metrics.meanDistance)} | ${f(row.metrics.gtDistance)} | ${f(row.metrics.imageFidelity, 4)} | ${f(row.metrics.maeFidelity, 4)} | ${f(row.metrics.backgroundPsnr)} | ${f(row.metrics.targetPsnr)} | ${f(row.metrics.targetMae, 4)} |`,
    ),
    '',
    `Reduction vs the undragged input: Mean Distance ${f(100 * r.reduction.meanDistance, 1)} %, GT distance ${f(100 * r.reduction.gtDistance, 1)} %. ` +
      `Handles reached their targets in ${f(100 * r.reachedFraction, 0)} % of the cases; ${f(r.meanIterations, 1)} iterations on average.`,
    '',
    "IF is DragBench's Image Fidelity, 1 − LPIPS between input and result over the whole image, with the LPIPS-style distance on the EmojiWorld judge's features (no pretrained VGG/AlexNet here); '–' when no judge was found.",
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
    .option('--cases <n>', 'held-out edits', '20')
    .option('--seed <n>', 'offset into the held-out seeds', '0')
    .option('--tasks <list>', 'move,resize', 'move,resize')
    .option('--size <px>', "image size (default: the model's)")
    .option('--subset <name>', 'EmojiWorld subset of the scenes (default: the one the model was trained on)')
    .option(
      '--judge <dir>',
      'judge model for the LPIPS-style Image Fidelity (default: emoji-judge next to the model)',
    )
    .option('--lora-steps <n>', 'LoRA fine-tuning steps', '80')
    .option('--drag-steps <n>', 'latent optimisation iterations', '80')
    .option('--steps <n>', 'DDIM steps over the whole schedule', '50')
    .option('--dift-ensemble <n>', 'noise draws averaged by the DIFT matcher', '8')
    .option('--dift-block <n>', 'up block of the DIFT features (default 1)')
    .option('--examples <n>', 'example pictures to save', '4')
    .option('--out <dir>', 'where results.{md,json} and examples go', 'bench-results/drag')
    .option('--json', 'print the JSON report on stdout');
  program.parse([...argv], { from: 'user' });
  const o = program.opts<Record<string, string | boolean | undefined>>();
  const int = (name: string): number | undefined => (o[name] === undefined ? undefined : Number(o[name]));
  const tasks = String(o.tasks)
    .split(',')
    .map((t) => t.trim())
    .filter((t): t is DragBenchTask => t === 'move' || t === 'resize');
  if (tasks.length === 0) throw new Error('--tasks: give move and/or resize');
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
    process.stderr.write(`no judge at ${judgeDir}: Image Fidelity (1 − LPIPS) is not measured\n`);
  try {
    const report = await benchDrag(bundle, {
      cases: int('cases')!,
      seed: int('seed')!,
      tasks,
      size: int('size'),
      loraSteps: int('loraSteps')!,
      dragSteps: int('dragSteps')!,
      steps: int('steps')!,
      diftEnsemble: int('diftEnsemble'),
      diftBlock: int('diftBlock'),
      examples: int('examples')!,
      scene: subset.scene,
      perceptual,
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
  }
}
