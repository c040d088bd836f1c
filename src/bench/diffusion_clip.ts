/**
 * `npm run bench -- diffusion-clip`: DiffusionCLIP on a global EmojiWorld edit with ground truth (issue 12): the
 * background of every scene changes from A to B (default grass → snow), everything else stays. One model is
 * fine-tuned on training scenes with background A, then on the same evaluation cases:
 *  - DiffusionCLIP (the fine-tuned delta, S_for 40, S_gen 40);
 *  - SDEdit (img2img with the target caption) over a strength sweep;
 *  - DiffEdit (query: the target caption, reference: the source caption) over an r sweep.
 * Metrics per method: success (the judge sees background B), objects kept (the judge's object set unchanged),
 * the directional CLIP score (bundled CLIP), PSNR to the ground-truth target, and preservation where nothing should
 * change: PSNR and the LPIPS-style distance on the objects (their rendered footprint). "SDEdit at equal
 * preservation" is SDEdit's success interpolated along its strength sweep at DiffusionCLIP's object PSNR.
 *
 * Evaluation cases come from the held-out split (the default, for reported figures) or from a validation range of
 * the training split (`--split validation`, for choosing settings without looking at the held-out scenes).
 * `--sweep FILE` fine-tunes once per setting in FILE and scores each against baselines computed once.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { rgb8ToTensor, saveImage, sideBySide } from '../image/io.js';
import { savePlot } from '../image/plot.js';
import { psnr } from '../metrics/image.js';
import type { PerceptualDistance } from '../metrics/perceptual.js';
import type { StableDiffusionBundle } from '../models/bundle.js';
import { ClipModel, directionalSimilarity } from '../models/clip.js';
import type { EmojiJudge } from '../models/judge.js';
import { diffEdit } from '../pipelines/diffedit.js';
import { diffusionClipEdit } from '../pipelines/diffusion_clip/edit.js';
import {
  diffusionClipFinetune,
  type AdapterKind,
  type DiffusionClipResult,
  type DiffusionClipOptions,
  type DiffusionClipUpdate,
  type DirectionReference,
  type GradientScheme,
} from '../pipelines/diffusion_clip/finetune.js';
import { CLIP_VIEWS, type ClipView } from '../pipelines/diffusion_clip/models.js';
import { img2img } from '../pipelines/img2img.js';
import { NDArray } from '../runtime/ndarray.js';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/files.js';
import { getBackground } from '../world/backgrounds.js';
import { allCaptions, caption } from '../world/caption.js';
import { renderScene } from '../world/render.js';
import { sampleScene, type SampleSceneOptions, type Scene } from '../world/scene.js';
import { splitSeeds } from '../world/splits.js';

/** Where evaluation scenes come from: the held-out split, or a validation range of the training split. */
export type BenchSplit = 'heldout' | 'validation';
/** The CLIP text direction: the background phrases alone, or every caption template of the training scenes. */
export type TextMode = 'phrase' | 'captions';
/** The crops CLIP sees in the loss. */
export type ViewPreset = 'whole' | 'crops4' | 'crops8';

/** Training scenes are train-split seeds from 1000 on; validation scenes from 100 000 on, never a training one. */
const TRAIN_OFFSET = 1000;
const VALIDATION_OFFSET = 100_000;
const HELDOUT_OFFSET = 2000;

export const VIEW_PRESETS: Readonly<Record<ViewPreset, readonly ClipView[]>> = {
  whole: [[0, 0, 1, 1]],
  crops4: CLIP_VIEWS,
  crops8: [
    ...CLIP_VIEWS,
    [0, 1 / 8, 7 / 8, 7 / 8],
    [1 / 8, 0, 7 / 8, 7 / 8],
    [0, 0, 3 / 4, 3 / 4],
    [1 / 4, 1 / 4, 3 / 4, 3 / 4],
  ],
};

/**
 * The bench's fine-tuning defaults, chosen with `--split validation --sweep` on validation scenes of both edits
 * (grass → snow, sand → plain purple; docs/bench/diffusion-clip.md has the sweep): the paper's larger t₀ for big
 * changes (601), the caption-template ensemble, the global CLIP term (without it the small CLIP is satisfied by a
 * faint wash in the right direction), a lighter L1, and 4 epochs over 16 images.
 */
export const BENCH_DEFAULTS = {
  epochs: 4,
  t0: 601,
  lambdaL1: 0.1,
  lambdaGlobal: 1,
  texts: 'captions' as TextMode,
} as const;

/** What DiffusionCLIP is fine-tuned with (the bench's knobs; the pipeline's defaults where undefined). */
export interface FinetuneSettings {
  trainImages: number;
  epochs: number;
  gradient: GradientScheme;
  adapter: AdapterKind;
  learningRate?: number;
  t0?: number;
  lambdaL1?: number;
  /** Weight of the global CLIP term (each training image's own target caption in 'captions' mode). */
  lambdaGlobal?: number;
  generationSteps?: number;
  loraRank?: number;
  viewNoise?: number;
  directionReference?: DirectionReference;
  changeFloor?: number;
  /** The directional term's text direction: the mean over all training captions, or each image's own. */
  directions?: 'mean' | 'per-image';
  texts: TextMode;
  views: ViewPreset;
}

export interface DiffusionClipBenchOptions {
  from: string;
  to: string;
  finetune: FinetuneSettings;
  split: BenchSplit;
  cases: number;
  steps: number;
  strengthSweep: number[];
  rSweep: number[];
  scene: SampleSceneOptions;
  examples: number;
  out: string;
  threads?: number;
  log: (line: string) => void;
}

type Family = 'input' | 'diffusionclip' | 'sdedit' | 'diffedit';

interface Scores {
  method: string;
  family: Family;
  parameter?: number;
  success: number[];
  objectsKept: number[];
  directional: number[];
  targetPsnr: number[];
  objectPsnr: number[];
  objectPerceptual: number[];
  seconds: number[];
  /** What the judge calls the background of each output. */
  backgrounds: string[];
}

export interface MethodSummary {
  method: string;
  family: Family;
  parameter?: number;
  success: number;
  objectsKept: number;
  directional: number;
  targetPsnr: number;
  objectPsnr: number;
  objectPerceptual: number;
  secondsPerEdit: number;
  /** Judge's background verdicts, counted. */
  backgrounds: Record<string, number>;
}

export interface BenchCase {
  scene: Scene;
  source: NDArray; // [-1, 1]
  source01: NDArray;
  target01: NDArray;
  objects: NDArray; // [1, 1, H, W] footprint of the objects
  sourceCaption: string;
  targetCaption: string;
}

const mean = (v: readonly number[]) => (v.length === 0 ? NaN : v.reduce((a, b) => a + b, 0) / v.length);

/** A scene with background `from` and its ground-truth edit with background `to` (all else identical). */
export async function backgroundCase(
  seed: number,
  from: string,
  to: string,
  scene: SampleSceneOptions,
): Promise<BenchCase> {
  const source = sampleScene(seed, { ...scene, backgrounds: [from] });
  const target: Scene = { ...source, background: { ...source.background, name: to } };
  return renderCase(source, target);
}

/** Renders a source scene and its target, with the source's object footprint. */
export async function renderCase(source: Scene, target: Scene): Promise<BenchCase> {
  const [a, b] = await Promise.all([renderScene(source), renderScene(target)]);
  const { width, height } = source;
  return {
    scene: source,
    source: rgb8ToTensor({ data: a.image, width, height }, '[-1,1]'),
    source01: rgb8ToTensor({ data: a.image, width, height }, '[0,1]'),
    target01: rgb8ToTensor({ data: b.image, width, height }, '[0,1]'),
    objects: new NDArray(
      Float32Array.from(a.union, (v) => (v > 127 ? 1 : 0)),
      [1, 1, height, width],
    ),
    sourceCaption: caption(source),
    targetCaption: caption(target),
  };
}

/** Seeds of the evaluation scenes. */
export function evaluationSeeds(split: BenchSplit, count: number): number[] {
  return split === 'heldout'
    ? splitSeeds('heldout', count, HELDOUT_OFFSET)
    : splitSeeds('train', count, VALIDATION_OFFSET);
}

/** Seeds of the fine-tuning scenes (training split, disjoint from the validation range). */
export function trainingSeeds(count: number): number[] {
  if (count > VALIDATION_OFFSET - TRAIN_OFFSET)
    throw new UserError(`at most ${VALIDATION_OFFSET - TRAIN_OFFSET} training images`);
  return splitSeeds('train', count, TRAIN_OFFSET);
}

/** The CLIP text pairs for a background edit. */
/** The CLIP texts of an edit: text pairs for the direction, the global term's target, and each image's own pairs. */
export interface EditTexts {
  source: string[];
  target: string[];
  perImageTarget?: string[];
  /** Each training scene's caption templates before and after the edit (for per-image directions). */
  perImage?: { source: string[]; target: string[] }[];
}

/** Every caption template of every training scene, before and after `edit`: the words the CLIP was trained on. */
export function captionTexts(trainingScenes: readonly Scene[], edit: (scene: Scene) => Scene): EditTexts {
  const pairs = new Map<string, string>();
  const perImage = trainingScenes.map((scene) => ({
    source: allCaptions(scene),
    target: allCaptions(edit(scene)),
  }));
  for (const { source, target } of perImage) source.forEach((s, k) => pairs.set(s, target[k]));
  return {
    source: [...pairs.keys()],
    target: [...pairs.values()],
    perImageTarget: trainingScenes.map((scene) => caption(edit(scene))),
    perImage,
  };
}

export function backgroundTexts(
  mode: TextMode,
  from: string,
  to: string,
  trainingScenes: readonly Scene[],
): EditTexts {
  if (mode === 'phrase')
    return {
      source: [`a picture ${getBackground(from).phrase}`],
      target: [`a picture ${getBackground(to).phrase}`],
    };
  return captionTexts(trainingScenes, (scene) => ({
    ...scene,
    background: { ...scene.background, name: to },
  }));
}

function perImageTexts(texts: EditTexts): { source: string[]; target: string[] }[] {
  if (!texts.perImage)
    throw new UserError("per-image directions need the training scenes' captions (--texts captions)");
  return texts.perImage;
}

export interface FinetunedEdit {
  tuned: DiffusionClipResult;
  seconds: number;
  rssMiB: number;
}

/** Fine-tune DiffusionCLIP for one edit, given the source-domain training images and the text pairs. */
export async function finetuneEdit(
  bundle: StableDiffusionBundle,
  clip: ClipModel,
  images: readonly NDArray[],
  texts: EditTexts,
  settings: FinetuneSettings,
  threads?: number,
  /** Pipeline options beyond the bench's settings (the style bench's oracles). */
  overrides: Partial<DiffusionClipOptions> = {},
): Promise<FinetunedEdit> {
  const started = performance.now();
  const tuned = await diffusionClipFinetune(bundle, clip, {
    images,
    sourceText: texts.source,
    targetText: texts.target,
    epochs: settings.epochs,
    gradient: settings.gradient,
    adapter: settings.adapter,
    learningRate: settings.learningRate,
    t0: settings.t0,
    lambdaL1: settings.lambdaL1,
    lambdaGlobal: settings.lambdaGlobal,
    imageTargetTexts: texts.perImageTarget,
    imageTexts: settings.directions === 'per-image' ? perImageTexts(texts) : undefined,
    generationSteps: settings.generationSteps,
    loraRank: settings.loraRank,
    viewNoise: settings.viewNoise,
    directionReference: settings.directionReference,
    changeFloor: settings.changeFloor,
    clipViews: VIEW_PRESETS[settings.views],
    intraOpNumThreads: threads,
    ...overrides,
  });
  return {
    tuned,
    seconds: (performance.now() - started) / 1000,
    rssMiB: process.memoryUsage().rss / 2 ** 20,
  };
}

function blankScores(method: string, family: Family, parameter?: number): Scores {
  return {
    method,
    family,
    parameter,
    success: [],
    objectsKept: [],
    directional: [],
    targetPsnr: [],
    objectPsnr: [],
    objectPerceptual: [],
    seconds: [],
    backgrounds: [],
  };
}

export interface Scorer {
  clip: ClipModel;
  judge: EmojiJudge;
  perceptual: PerceptualDistance | undefined;
  textFrom: NDArray;
  textTo: NDArray;
}

/** Scores one output of a case into `m`; `success` decides from the judge's verdict. */
async function score(
  scorer: Scorer,
  m: Scores,
  c: BenchCase,
  out: NDArray,
  seconds: number,
  sourceObjects: readonly string[],
  sourceEmbed: NDArray,
  success: (background: string) => boolean,
): Promise<void> {
  m.seconds.push(seconds);
  const verdict = await scorer.judge.judge(out);
  m.success.push(success(verdict.background) ? 1 : 0);
  m.backgrounds.push(verdict.background);
  m.objectsKept.push(
    JSON.stringify([...verdict.objects].sort()) === JSON.stringify([...sourceObjects].sort()) ? 1 : 0,
  );
  m.directional.push(
    m.family === 'input'
      ? 0
      : directionalSimilarity(
          sourceEmbed,
          await scorer.clip.embedImages(out),
          scorer.textFrom,
          scorer.textTo,
        )[0],
  );
  m.targetPsnr.push(psnr(out, c.target01));
  m.objectPsnr.push(psnr(out, c.source01, c.objects));
  m.objectPerceptual.push(
    scorer.perceptual ? await scorer.perceptual.distance(out, c.source01, c.objects) : NaN,
  );
}

export function summarise(m: Scores): MethodSummary {
  const backgrounds: Record<string, number> = {};
  for (const b of m.backgrounds) backgrounds[b] = (backgrounds[b] ?? 0) + 1;
  return {
    method: m.method,
    family: m.family,
    parameter: m.parameter,
    success: mean(m.success),
    objectsKept: mean(m.objectsKept),
    directional: mean(m.directional),
    targetPsnr: mean(m.targetPsnr.filter(Number.isFinite)),
    objectPsnr: mean(m.objectPsnr.filter(Number.isFinite)),
    objectPerceptual: mean(m.objectPerceptual),
    secondsPerEdit: mean(m.seconds),
    backgrounds,
  };
}

/**
 * SDEdit's success at a given object PSNR, linear between the sweep's points (sorted by PSNR) and held at the end
 * points outside them (generous to SDEdit above its highest PSNR, where a weaker strength would succeed less).
 */
export function successAtPreservation(
  sweep: readonly Pick<MethodSummary, 'objectPsnr' | 'success' | 'objectsKept'>[],
  objectPsnr: number,
  key: 'success' | 'objectsKept' = 'success',
): number {
  const points = sweep
    .filter((s) => Number.isFinite(s.objectPsnr))
    .map((s) => [s.objectPsnr, s[key]] as const)
    .sort((a, b) => a[0] - b[0]);
  if (points.length === 0) return NaN;
  if (objectPsnr <= points[0][0]) return points[0][1];
  if (objectPsnr >= points.at(-1)![0]) return points.at(-1)![1];
  for (let k = 1; k < points.length; k++) {
    const [x1, y1] = points[k];
    const [x0, y0] = points[k - 1];
    if (objectPsnr <= x1) return y0 + ((objectPsnr - x0) / (x1 - x0)) * (y1 - y0);
  }
  return points.at(-1)![1];
}

/** Scores the given methods on the evaluation cases; the DiffusionCLIP row uses `tunedUnet` when given. */
async function evaluate(
  bundle: StableDiffusionBundle,
  scorer: Scorer,
  cases: readonly BenchCase[],
  options: Pick<DiffusionClipBenchOptions, 'to' | 'steps' | 'threads' | 'examples' | 'log'>,
  methods: Scores[],
  diffusionClip?: { unet: ReturnType<DiffusionClipResult['tunedUnet']>; t0?: number },
): Promise<NDArray[][]> {
  const examples: NDArray[][] = [];
  for (const [index, c] of cases.entries()) {
    const sourceVerdict = await scorer.judge.judge(c.source01);
    const sourceEmbed = await scorer.clip.embedImages(c.source01);
    const row: NDArray[] = [c.source01];
    for (const m of methods) {
      const t = performance.now();
      let out: NDArray;
      if (m.family === 'input') out = c.source01;
      else if (m.family === 'diffusionclip')
        out = await diffusionClipEdit(bundle, {
          image: c.source,
          models: [{ unet: diffusionClip!.unet, weight: 1 }],
          t0: diffusionClip!.t0,
          intraOpNumThreads: options.threads,
        });
      else if (m.family === 'sdedit')
        out = (
          await img2img(bundle, {
            image: c.source,
            prompt: c.targetCaption,
            strength: m.parameter!,
            numInferenceSteps: options.steps,
            guidanceScale: 5,
            seed: index,
          })
        ).image;
      else
        out = (
          await diffEdit(bundle, {
            image: c.source,
            prompt: c.targetCaption,
            sourcePrompt: c.sourceCaption,
            strength: m.parameter!,
            numInferenceSteps: options.steps,
            guidanceScale: 5,
            seed: index,
          })
        ).image;
      await score(
        scorer,
        m,
        c,
        out,
        (performance.now() - t) / 1000,
        sourceVerdict.objects,
        sourceEmbed,
        (background) => background === options.to,
      );
      if (m.family !== 'input') row.push(out);
    }
    row.push(c.target01);
    if (index < options.examples) examples.push(row);
    options.log(
      `case ${index + 1}/${cases.length}: ${methods
        .filter((m) => m.family !== 'input')
        .map((m) => `${m.method} ${m.success.at(-1) ? '✓' : '·'}`)
        .join(', ')}`,
    );
  }
  return examples;
}

async function prepare(
  clip: ClipModel,
  options: DiffusionClipBenchOptions,
  size: number,
): Promise<{ train: NDArray[]; trainScenes: Scene[]; cases: BenchCase[]; scorerTexts: [NDArray, NDArray] }> {
  const sceneOptions = { ...options.scene, width: size, height: size };
  const trainCases = await Promise.all(
    trainingSeeds(options.finetune.trainImages).map((seed) =>
      backgroundCase(seed, options.from, options.to, sceneOptions),
    ),
  );
  const cases = await Promise.all(
    evaluationSeeds(options.split, options.cases).map((seed) =>
      backgroundCase(seed, options.from, options.to, sceneOptions),
    ),
  );
  // The directional-CLIP metric always uses the background phrases, whatever the fine-tuning texts were.
  const texts = await clip.embedTexts([
    `a picture ${getBackground(options.from).phrase}`,
    `a picture ${getBackground(options.to).phrase}`,
  ]);
  const dim = texts.shape[1];
  return {
    train: trainCases.map((c) => c.source),
    trainScenes: trainCases.map((c) => c.scene),
    cases,
    scorerTexts: [
      new NDArray(texts.data.slice(0, dim), [1, dim]),
      new NDArray(texts.data.slice(dim), [1, dim]),
    ],
  };
}

export interface DiffusionClipReport {
  edit: string;
  split: BenchSplit;
  texts: { source: string[]; target: string[] };
  model: string;
  cases: number;
  finetune: {
    images: number;
    epochs: number;
    updates: number;
    seconds: number;
    rssMiB: number;
    settings: Record<string, string | number>;
    /** Every update's losses, in order. */
    losses: readonly DiffusionClipUpdate[];
  };
  summary: MethodSummary[];
  /** SDEdit's success and objects kept interpolated at DiffusionCLIP's object PSNR. */
  sdeditAtEqualPreservation: { objectPsnr: number; success: number; objectsKept: number };
}

export async function benchDiffusionClip(
  bundle: StableDiffusionBundle,
  clip: ClipModel,
  judge: EmojiJudge,
  perceptual: PerceptualDistance | undefined,
  options: DiffusionClipBenchOptions,
): Promise<DiffusionClipReport> {
  await mkdir(options.out, { recursive: true });
  const size = options.scene.width ?? bundle.defaultImageSize;
  const { train, trainScenes, cases, scorerTexts } = await prepare(clip, options, size);
  const texts = backgroundTexts(options.finetune.texts, options.from, options.to, trainScenes);
  const { tuned, seconds, rssMiB } = await finetuneEdit(
    bundle,
    clip,
    train,
    texts,
    options.finetune,
    options.threads,
  );
  options.log(
    `fine-tuned on ${train.length} images × ${options.finetune.epochs} epochs (${tuned.updates.length} updates) in ${seconds.toFixed(1)} s; loss ${tuned.updates[0].loss.toFixed(3)} → ${tuned.updates.at(-1)!.loss.toFixed(3)}`,
  );
  await tuned.save(join(options.out, 'delta.safetensors'));
  await savePlot(
    {
      title: `DiffusionCLIP fine-tuning: ${options.from} → ${options.to}`,
      xLabel: 'update',
      yLabel: 'loss',
      series: [
        { name: '1 − directional CLIP', points: tuned.updates.map((u, i) => [i + 1, u.clipLoss]) },
        { name: 'L1', points: tuned.updates.map((u, i) => [i + 1, u.l1]) },
        ...(tuned.updates[0].globalLoss === undefined
          ? []
          : [
              {
                name: '1 − global CLIP',
                points: tuned.updates.map((u, i): [number, number] => [i + 1, u.globalLoss ?? NaN]),
              },
            ]),
      ],
    },
    join(options.out, 'finetune-loss.png'),
  );

  const methods: Scores[] = [
    blankScores('input (unedited)', 'input'),
    blankScores('DiffusionCLIP', 'diffusionclip'),
    ...options.strengthSweep.map((s) => blankScores(`SDEdit s=${s}`, 'sdedit', s)),
    ...options.rSweep.map((r) => blankScores(`DiffEdit r=${r}`, 'diffedit', r)),
  ];
  const scorer: Scorer = { clip, judge, perceptual, textFrom: scorerTexts[0], textTo: scorerTexts[1] };
  const examples = await evaluate(bundle, scorer, cases, options, methods, {
    unet: tuned.tunedUnet(),
    t0: options.finetune.t0,
  });
  if (examples.length > 0)
    await saveImage(stackRows(examples.map((r) => sideBySide(r, 2))), join(options.out, 'examples.png'));
  const summary = methods.map(summarise);
  await savePlot(
    {
      title: `${options.from} → ${options.to}: success vs preservation`,
      xLabel: 'PSNR on the objects (dB), higher keeps more',
      yLabel: 'success (judge sees the new background)',
      series: (['diffusionclip', 'sdedit', 'diffedit'] as const).map((family) => ({
        name: family === 'diffusionclip' ? 'DiffusionCLIP' : family === 'sdedit' ? 'SDEdit' : 'DiffEdit',
        points: summary
          .filter((s) => s.family === family)
          .map((s) => [s.objectPsnr, s.success] as [number, number]),
        line: family !== 'diffusionclip',
      })),
    },
    join(options.out, 'tradeoff.png'),
  );
  await savePlot(
    {
      title: `${options.from} → ${options.to}: objects kept vs preservation`,
      xLabel: 'PSNR on the objects (dB), higher keeps more',
      yLabel: 'objects kept (judge finds the same objects)',
      series: (['diffusionclip', 'sdedit', 'diffedit'] as const).map((family) => ({
        name: family === 'diffusionclip' ? 'DiffusionCLIP' : family === 'sdedit' ? 'SDEdit' : 'DiffEdit',
        points: summary
          .filter((s) => s.family === family)
          .map((s) => [s.objectPsnr, s.objectsKept] as [number, number]),
        line: family !== 'diffusionclip',
      })),
    },
    join(options.out, 'tradeoff-objects.png'),
  );
  const ours = summary.find((s) => s.family === 'diffusionclip')!;
  const sdedit = summary.filter((s) => s.family === 'sdedit');
  const report: DiffusionClipReport = {
    edit: `${options.from} → ${options.to}`,
    split: options.split,
    texts,
    model: bundle.dir,
    cases: options.cases,
    finetune: {
      images: options.finetune.trainImages,
      epochs: options.finetune.epochs,
      updates: tuned.updates.length,
      seconds,
      rssMiB,
      settings: { ...tuned.settings, texts: options.finetune.texts, views: options.finetune.views },
      losses: tuned.updates,
    },
    summary,
    sdeditAtEqualPreservation: {
      objectPsnr: ours.objectPsnr,
      success: successAtPreservation(sdedit, ours.objectPsnr),
      objectsKept: successAtPreservation(sdedit, ours.objectPsnr, 'objectsKept'),
    },
  };
  await writeFileAtomic(join(options.out, 'results.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFileAtomic(join(options.out, 'results.md'), markdown(report));
  return report;
}

/** One setting of a sweep: a name and the fine-tuning settings it changes. */
export interface SweepSetting extends Partial<FinetuneSettings> {
  name: string;
}

export interface SweepRow {
  name: string;
  settings: FinetuneSettings;
  updates: number;
  finetuneSeconds: number;
  diffusionClip: MethodSummary;
  sdeditAtEqualPreservation: { success: number; objectsKept: number };
}

/**
 * Fine-tunes once per setting and scores DiffusionCLIP on the evaluation cases; SDEdit (the comparison at equal
 * preservation) is scored once. Rows are appended to `sweep.jsonl` as they finish, so a long sweep can be read
 * while it runs; settings already there are skipped (resume).
 */
export async function sweepDiffusionClip(
  bundle: StableDiffusionBundle,
  clip: ClipModel,
  judge: EmojiJudge,
  perceptual: PerceptualDistance | undefined,
  options: DiffusionClipBenchOptions,
  settings: readonly SweepSetting[],
): Promise<{ baselines: MethodSummary[]; rows: SweepRow[] }> {
  await mkdir(options.out, { recursive: true });
  const size = options.scene.width ?? bundle.defaultImageSize;
  const baseOptions = { ...options, finetune: { ...options.finetune, trainImages: 1 } };
  const { cases, scorerTexts } = await prepare(clip, baseOptions, size);
  const scorer: Scorer = { clip, judge, perceptual, textFrom: scorerTexts[0], textTo: scorerTexts[1] };
  const baselinesPath = join(options.out, 'baselines.json');
  let baselines: MethodSummary[];
  try {
    baselines = JSON.parse(await readFile(baselinesPath, 'utf8')) as MethodSummary[];
  } catch {
    const methods = [
      blankScores('input (unedited)', 'input'),
      ...options.strengthSweep.map((s) => blankScores(`SDEdit s=${s}`, 'sdedit', s)),
    ];
    const examples = await evaluate(bundle, scorer, cases, options, methods);
    if (examples.length > 0)
      await saveImage(stackRows(examples.map((r) => sideBySide(r, 2))), join(options.out, 'baselines.png'));
    baselines = methods.map(summarise);
    await writeFileAtomic(baselinesPath, `${JSON.stringify(baselines, null, 2)}\n`);
  }
  const sdedit = baselines.filter((s) => s.family === 'sdedit');
  const rowsPath = join(options.out, 'sweep.jsonl');
  let existing = '';
  try {
    existing = await readFile(rowsPath, 'utf8');
  } catch {
    // a new sweep
  }
  const rows: SweepRow[] = existing
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as SweepRow);
  for (const setting of settings) {
    if (rows.some((r) => r.name === setting.name)) continue;
    const { name, ...changes } = setting;
    const finetune: FinetuneSettings = { ...options.finetune, ...changes };
    const sceneOptions = { ...options.scene, width: size, height: size };
    const trainCases = await Promise.all(
      trainingSeeds(finetune.trainImages).map((seed) =>
        backgroundCase(seed, options.from, options.to, sceneOptions),
      ),
    );
    const texts = backgroundTexts(
      finetune.texts,
      options.from,
      options.to,
      trainCases.map((c) => c.scene),
    );
    const { tuned, seconds } = await finetuneEdit(
      bundle,
      clip,
      trainCases.map((c) => c.source),
      texts,
      finetune,
      options.threads,
    );
    const m = blankScores('DiffusionCLIP', 'diffusionclip');
    const examples = await evaluate(bundle, scorer, cases, { ...options, log: () => {} }, [m], {
      unet: tuned.tunedUnet(),
      t0: finetune.t0,
    });
    if (examples.length > 0)
      await saveImage(stackRows(examples.map((r) => sideBySide(r, 2))), join(options.out, `${name}.png`));
    const diffusionClip = summarise(m);
    const row: SweepRow = {
      name,
      settings: finetune,
      updates: tuned.updates.length,
      finetuneSeconds: seconds,
      diffusionClip,
      sdeditAtEqualPreservation: {
        success: successAtPreservation(sdedit, diffusionClip.objectPsnr),
        objectsKept: successAtPreservation(sdedit, diffusionClip.objectPsnr, 'objectsKept'),
      },
    };
    rows.push(row);
    await writeFileAtomic(rowsPath, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    options.log(sweepLine(row));
  }
  await writeFileAtomic(join(options.out, 'sweep.md'), sweepMarkdown(options, baselines, rows));
  return { baselines, rows };
}

const fmt = (v: unknown, d = 2) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : 'n/a');

function sweepLine(r: SweepRow): string {
  const d = r.diffusionClip;
  return `${r.name}: success ${fmt(d.success)} (SDEdit at equal PSNR ${fmt(r.sdeditAtEqualPreservation.success)}), objects kept ${fmt(d.objectsKept)}, PSNR on objects ${fmt(d.objectPsnr)} dB, dir. CLIP ${fmt(d.directional, 3)}, fine-tune ${fmt(r.finetuneSeconds, 0)} s; judge backgrounds ${JSON.stringify(d.backgrounds)}`;
}

function sweepMarkdown(
  options: Pick<DiffusionClipBenchOptions, 'from' | 'to' | 'split' | 'cases'>,
  baselines: readonly MethodSummary[],
  rows: readonly SweepRow[],
): string {
  return [
    `DiffusionCLIP settings sweep: ${options.from} → ${options.to}, ${options.cases} ${options.split} scenes.`,
    '',
    '| setting | success ↑ | SDEdit success at equal PSNR | objects kept ↑ | PSNR on objects dB ↑ | directional CLIP ↑ | PSNR to GT dB ↑ | fine-tune s | judge backgrounds |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...baselines.map(
      (b) =>
        `| ${b.method} | ${fmt(b.success)} | | ${fmt(b.objectsKept)} | ${fmt(b.objectPsnr)} | ${fmt(b.directional, 3)} | ${fmt(b.targetPsnr)} | | ${backgroundList(b.backgrounds)} |`,
    ),
    ...rows.map((r) => {
      const d = r.diffusionClip;
      return `| ${r.name} | ${fmt(d.success)} | ${fmt(r.sdeditAtEqualPreservation.success)} | ${fmt(d.objectsKept)} | ${fmt(d.objectPsnr)} | ${fmt(d.directional, 3)} | ${fmt(d.targetPsnr)} | ${fmt(r.finetuneSeconds, 0)} | ${backgroundList(d.backgrounds)} |`;
    }),
    '',
    'Settings per row:',
    '',
    ...rows.map((r) => `- ${r.name}: ${JSON.stringify(r.settings)}`),
    '',
  ].join('\n');
}

function backgroundList(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

/** Rows of equal width stacked vertically with a white gap. */
export function stackRows(rows: NDArray[]): NDArray {
  const [, , , width] = rows[0].shape;
  const gap = 2;
  const height = rows.reduce((h, r) => h + r.shape[2], 0) + gap * (rows.length - 1);
  const out = new Float32Array(3 * height * width).fill(1);
  let top = 0;
  for (const r of rows) {
    const h = r.shape[2];
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < h; y++)
        out.set(
          r.data.subarray((c * h + y) * width, (c * h + y + 1) * width),
          (c * height + top + y) * width,
        );
    top += h + gap;
  }
  return new NDArray(out, [1, 3, height, width]);
}

function markdown(report: DiffusionClipReport): string {
  const s = report.finetune.settings;
  const eq = report.sdeditAtEqualPreservation;
  return [
    `DiffusionCLIP benchmark: ${report.edit}, ${report.cases} ${report.split === 'heldout' ? 'held-out' : 'validation'} EmojiWorld scenes with ground truth.`,
    `Fine-tuning: ${report.finetune.images} images × ${report.finetune.epochs} epochs, ${report.finetune.updates} updates, ${fmt(report.finetune.seconds, 1)} s, RSS ${fmt(report.finetune.rssMiB, 0)} MiB ` +
      `(${s.adapter}, ${s.gradient}, t₀ ${s.t0}, S_gen ${s.generationSteps}, lr ${s.learningRate}, λ_L1 ${s.lambdaL1}, λ_global ${s.lambdaGlobal}, reference: ${s.directionReference ?? 'input'}, directions: ${s.directions ?? 'mean'}, texts: ${s.texts}, views: ${s.views}).`,
    '',
    '| method | success ↑ | objects kept ↑ | directional CLIP ↑ | PSNR to GT dB ↑ | PSNR on objects dB ↑ | LPIPS-style on objects ↓ | s/edit | judge backgrounds |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...report.summary.map(
      (m) =>
        `| ${m.method} | ${fmt(m.success)} | ${fmt(m.objectsKept)} | ${fmt(m.directional, 3)} | ${fmt(m.targetPsnr)} | ${fmt(m.objectPsnr)} | ${fmt(m.objectPerceptual, 4)} | ${fmt(m.secondsPerEdit)} | ${backgroundList(m.backgrounds)} |`,
    ),
    '',
    `At DiffusionCLIP's preservation (${fmt(eq.objectPsnr)} dB on the objects), SDEdit's sweep interpolates to success ${fmt(eq.success)} and objects kept ${fmt(eq.objectsKept)}.`,
    '',
    'Success: the judge sees the target background. Objects kept: the judge finds the same objects as in the input. ' +
      'Preservation is measured on the objects, which a background edit must not change.',
    '',
  ].join('\n');
}

/** `npm run bench -- diffusion-clip [options]`. */
export async function diffusionClipBenchMain(argv: readonly string[], defaultModel: string): Promise<void> {
  const { Command, Option } = await import('commander');
  const { existsSync } = await import('node:fs');
  const { StableDiffusionBundle } = await import('../models/bundle.js');
  const { EmojiJudge } = await import('../models/judge.js');
  const { PerceptualDistance } = await import('../metrics/perceptual.js');
  const { resolveWorldSubset } = await import('../world/subsets.js');
  const { BACKGROUND_NAMES } = await import('../world/backgrounds.js');
  const program = new Command('bench diffusion-clip')
    .option('--model <dir>', 'model bundle (default: the bundled model)')
    .option('--clip <dir>', 'CLIP (default: emoji-clip beside the model)')
    .option('--judge <dir>', 'judge (default: emoji-judge beside the model)')
    .addOption(
      new Option('--from <background>', 'background of the inputs')
        .choices(BACKGROUND_NAMES)
        .default('grass'),
    )
    .addOption(
      new Option('--to <background>', 'background the edit should give')
        .choices(BACKGROUND_NAMES)
        .default('snow'),
    )
    .addOption(
      new Option(
        '--split <split>',
        'evaluation scenes: held-out, or a validation range of the training split',
      )
        .choices(['heldout', 'validation'])
        .default('heldout'),
    )
    .option('--train-images <n>', 'training scenes', '16')
    .option('--epochs <n>', 'fine-tuning epochs', String(BENCH_DEFAULTS.epochs))
    .addOption(
      new Option('--gradient <scheme>', 'per-step | chain')
        .choices(['per-step', 'chain'])
        .default('per-step'),
    )
    .addOption(new Option('--adapter <kind>', 'lora | full').choices(['lora', 'full']).default('lora'))
    .option('--lr <lr>', 'learning rate (default: the pipeline’s)')
    .option('--t0 <t>', 'timestep inverted to', String(BENCH_DEFAULTS.t0))
    .option('--l1 <λ>', 'weight of the identity L1', String(BENCH_DEFAULTS.lambdaL1))
    .option('--global <λ>', 'weight of the global CLIP term (0: off)', String(BENCH_DEFAULTS.lambdaGlobal))
    .option('--generation-steps <n>', 'S_gen in fine-tuning (default: the pipeline’s)')
    .addOption(
      new Option(
        '--directions <how>',
        "the CLIP text direction: the mean over all training captions, or each image's own",
      )
        .choices(['mean', 'per-image'])
        .default('mean'),
    )
    .addOption(
      new Option('--direction-reference <what>', 'what the CLIP change is measured from')
        .choices(['input', 'original'])
        .default('input'),
    )
    .addOption(
      new Option(
        '--texts <mode>',
        'CLIP texts: the background phrases, or all caption templates of the training scenes',
      )
        .choices(['phrase', 'captions'])
        .default(BENCH_DEFAULTS.texts),
    )
    .addOption(
      new Option('--views <preset>', 'crops CLIP sees')
        .choices(['whole', 'crops4', 'crops8'])
        .default('crops4'),
    )
    .addOption(
      new Option(
        '--multi <attribute>',
        'multi-attribute mode: a second delta for this attribute, mixed with the background one',
      ).choices(['style']),
    )
    .option('--mix <a,b>', 'mixing weights of the background and the second delta (--multi)', '1,1')
    .option(
      '--sweep <file.json>',
      'a list of {name, …settings}: fine-tune and score each (DiffusionCLIP and SDEdit only)',
    )
    .option('--cases <n>', 'evaluation scenes', '24')
    .option('--steps <n>', 'SDEdit/DiffEdit steps', '50')
    .option('--strengths <list>', 'SDEdit strengths', '0.3,0.4,0.5,0.6,0.7,0.8,0.9')
    .option('--r <list>', 'DiffEdit encoding ratios', '0.5,0.8')
    .option('--examples <n>', 'example rows in examples.png', '6')
    .option('--threads <n>', 'CPU threads')
    .option('--out <dir>', 'where results go', 'bench-results/diffusion-clip');
  program.parse([...argv], { from: 'user' });
  const o = program.opts<Record<string, string>>();
  const list = (v: string) =>
    v
      .split(',')
      .map(Number)
      .filter((x) => x > 0 && x <= 1);
  const optional = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  if (o.from === o.to) throw new UserError('--from and --to are the same background');
  const modelDir = o.model ?? defaultModel;
  const bundle = await StableDiffusionBundle.load(modelDir, {
    device: 'cpu',
    intraOpNumThreads: o.threads ? Number(o.threads) : undefined,
  });
  const clip = await ClipModel.load(o.clip ?? join(modelDir, '..', 'emoji-clip'));
  const judgeDir = o.judge ?? join(modelDir, '..', 'emoji-judge');
  if (!existsSync(judgeDir)) throw new UserError(`no judge at ${judgeDir}: give --judge DIR`);
  const judge = await EmojiJudge.load(judgeDir);
  const perceptual = await PerceptualDistance.fromJudge(judgeDir);
  const subset = resolveWorldSubset(undefined, modelDir);
  const options: DiffusionClipBenchOptions = {
    from: o.from,
    to: o.to,
    finetune: {
      trainImages: Number(o.trainImages),
      epochs: Number(o.epochs),
      gradient: o.gradient as GradientScheme,
      adapter: o.adapter as AdapterKind,
      learningRate: optional(o.lr),
      t0: optional(o.t0),
      lambdaL1: optional(o.l1),
      lambdaGlobal: optional(o.global),
      generationSteps: optional(o.generationSteps),
      directionReference: o.directionReference as DirectionReference,
      directions: o.directions as 'mean' | 'per-image',
      texts: o.texts as TextMode,
      views: o.views as ViewPreset,
    },
    split: o.split as BenchSplit,
    cases: Number(o.cases),
    steps: Number(o.steps),
    strengthSweep: list(o.strengths),
    rSweep: list(o.r),
    scene: { ...subset.scene, width: bundle.defaultImageSize, height: bundle.defaultImageSize },
    examples: Number(o.examples),
    out: o.out,
    threads: o.threads ? Number(o.threads) : undefined,
    log: (line) => process.stderr.write(`${line}\n`),
  };
  try {
    if (o.multi) {
      const { benchDiffusionClipMulti, multiMarkdown } = await import('./diffusion_clip_multi.js');
      const mix = o.mix.split(',').map(Number);
      if (mix.length !== 2 || !mix.every((w) => w > 0))
        throw new UserError('--mix takes two positive weights, e.g. 1,1');
      const report = await benchDiffusionClipMulti(bundle, clip, judge, {
        ...options,
        attribute: o.multi as 'style',
        mix: [mix[0], mix[1]],
      });
      console.log(multiMarkdown(report));
    } else if (o.sweep) {
      const settings = JSON.parse(await readFile(o.sweep, 'utf8')) as SweepSetting[];
      const { baselines, rows } = await sweepDiffusionClip(
        bundle,
        clip,
        judge,
        perceptual,
        options,
        settings,
      );
      console.log(sweepMarkdown(options, baselines, rows));
    } else {
      const report = await benchDiffusionClip(bundle, clip, judge, perceptual, options);
      console.log(markdown(report));
    }
  } finally {
    await Promise.all([bundle.release(), clip.release(), judge.release(), perceptual.release()]);
  }
}
