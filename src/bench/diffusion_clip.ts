/**
 * `npm run bench -- diffusion-clip`: DiffusionCLIP on a global EmojiWorld edit with ground truth (issue 12): the
 * background of every held-out scene changes from A to B (default grass → snow), everything else stays. One model
 * is fine-tuned on training scenes with background A, then on the same held-out cases:
 *  - DiffusionCLIP (the fine-tuned delta, S_for 40, S_gen 40);
 *  - SDEdit (img2img with the target caption) over a strength sweep;
 *  - DiffEdit (query: the target caption, reference: the source caption) over an r sweep.
 * Metrics per method: success (the judge sees background B), objects kept (the judge's object set unchanged),
 * the directional CLIP score (bundled CLIP), PSNR to the ground-truth target, and preservation where nothing should
 * change: PSNR and the LPIPS-style distance on the objects (their rendered footprint).
 */
import { mkdir } from 'node:fs/promises';
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
  type GradientScheme,
} from '../pipelines/diffusion_clip/finetune.js';
import { img2img } from '../pipelines/img2img.js';
import { NDArray } from '../runtime/ndarray.js';
import { writeFileAtomic } from '../util/files.js';
import { getBackground } from '../world/backgrounds.js';
import { caption } from '../world/caption.js';
import { renderScene } from '../world/render.js';
import { sampleScene, type SampleSceneOptions, type Scene } from '../world/scene.js';
import { splitSeeds } from '../world/splits.js';

export interface DiffusionClipBenchOptions {
  from: string;
  to: string;
  trainImages: number;
  epochs: number;
  cases: number;
  gradient: GradientScheme;
  adapter: AdapterKind;
  learningRate?: number;
  t0?: number;
  steps: number;
  strengthSweep: number[];
  rSweep: number[];
  scene: SampleSceneOptions;
  examples: number;
  out: string;
  threads?: number;
  log: (line: string) => void;
}

interface Scores {
  method: string;
  family: 'input' | 'diffusionclip' | 'sdedit' | 'diffedit';
  parameter?: number;
  success: number[];
  objectsKept: number[];
  directional: number[];
  targetPsnr: number[];
  objectPsnr: number[];
  objectPerceptual: number[];
  seconds: number[];
}

interface BenchCase {
  scene: Scene;
  source: NDArray; // [-1, 1]
  source01: NDArray;
  target01: NDArray;
  objects: NDArray; // [1, 1, H, W] footprint of the objects
  sourceCaption: string;
  targetCaption: string;
}

const mean = (v: readonly number[]) => (v.length === 0 ? NaN : v.reduce((a, b) => a + b, 0) / v.length);

async function makeCase(seed: number, options: DiffusionClipBenchOptions): Promise<BenchCase> {
  const scene = sampleScene(seed, { ...options.scene, backgrounds: [options.from] });
  const target: Scene = { ...scene, background: { ...scene.background, name: options.to } };
  const [a, b] = await Promise.all([renderScene(scene), renderScene(target)]);
  const { width, height } = scene;
  return {
    scene,
    source: rgb8ToTensor({ data: a.image, width, height }, '[-1,1]'),
    source01: rgb8ToTensor({ data: a.image, width, height }, '[0,1]'),
    target01: rgb8ToTensor({ data: b.image, width, height }, '[0,1]'),
    objects: new NDArray(
      Float32Array.from(a.union, (v) => (v > 127 ? 1 : 0)),
      [1, 1, height, width],
    ),
    sourceCaption: caption(scene),
    targetCaption: caption(target),
  };
}

export async function benchDiffusionClip(
  bundle: StableDiffusionBundle,
  clip: ClipModel,
  judge: EmojiJudge,
  perceptual: PerceptualDistance | undefined,
  options: DiffusionClipBenchOptions,
): Promise<Record<string, unknown>> {
  await mkdir(options.out, { recursive: true });
  const size = options.scene.width ?? bundle.defaultImageSize;
  const sceneOptions = { ...options.scene, width: size, height: size };
  // The world's own phrasing ("in the snow", "on the grass"), which the bundled CLIP was trained on.
  const fromText = `a picture ${getBackground(options.from).phrase}`;
  const toText = `a picture ${getBackground(options.to).phrase}`;
  const texts = await clip.embedTexts([fromText, toText]);
  const dim = texts.shape[1];
  const textFrom = new NDArray(texts.data.slice(0, dim), [1, dim]);
  const textTo = new NDArray(texts.data.slice(dim), [1, dim]);

  // Fine-tune on training scenes with background A.
  const train: NDArray[] = [];
  for (const seed of splitSeeds('train', options.trainImages, 1000)) {
    train.push((await makeCase(seed, { ...options, scene: sceneOptions })).source);
  }
  const started = performance.now();
  const tuned = await diffusionClipFinetune(bundle, clip, {
    images: train,
    sourceText: fromText,
    targetText: toText,
    epochs: options.epochs,
    gradient: options.gradient,
    adapter: options.adapter,
    learningRate: options.learningRate,
    t0: options.t0,
    intraOpNumThreads: options.threads,
  });
  const finetuneSeconds = (performance.now() - started) / 1000;
  const rss = process.memoryUsage().rss / 2 ** 20;
  options.log(
    `fine-tuned on ${train.length} images × ${options.epochs} epochs (${tuned.updates.length} updates) in ${finetuneSeconds.toFixed(1)} s; loss ${tuned.updates[0].loss.toFixed(3)} → ${tuned.updates.at(-1)!.loss.toFixed(3)}`,
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
      ],
    },
    join(options.out, 'finetune-loss.png'),
  );
  const tunedUnet = tuned.tunedUnet();

  const blank = () => ({
    success: [],
    objectsKept: [],
    directional: [],
    targetPsnr: [],
    objectPsnr: [],
    objectPerceptual: [],
    seconds: [],
  });
  const methods: Scores[] = [
    { method: 'input (unedited)', family: 'input', ...blank() },
    { method: 'DiffusionCLIP', family: 'diffusionclip', ...blank() },
    ...options.strengthSweep.map((s): Scores => ({
      method: `SDEdit s=${s}`,
      family: 'sdedit',
      parameter: s,
      ...blank(),
    })),
    ...options.rSweep.map((r): Scores => ({
      method: `DiffEdit r=${r}`,
      family: 'diffedit',
      parameter: r,
      ...blank(),
    })),
  ];
  const examples: NDArray[][] = [];
  for (const [index, seed] of splitSeeds('heldout', options.cases, 2000).entries()) {
    const c = await makeCase(seed, { ...options, scene: sceneOptions });
    const sourceVerdict = await judge.judge(c.source01);
    const sourceEmbed = await clip.embedImages(c.source01);
    const row: NDArray[] = [c.source01];
    for (const m of methods) {
      const t = performance.now();
      let out: NDArray;
      if (m.family === 'input') out = c.source01;
      else if (m.family === 'diffusionclip')
        out = await diffusionClipEdit(bundle, {
          image: c.source,
          models: [{ unet: tunedUnet, weight: 1 }],
          t0: options.t0,
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
      m.seconds.push((performance.now() - t) / 1000);
      const verdict = await judge.judge(out);
      m.success.push(verdict.background === options.to ? 1 : 0);
      m.objectsKept.push(
        JSON.stringify([...verdict.objects].sort()) === JSON.stringify([...sourceVerdict.objects].sort())
          ? 1
          : 0,
      );
      m.directional.push(
        m.family === 'input'
          ? 0
          : directionalSimilarity(sourceEmbed, await clip.embedImages(out), textFrom, textTo)[0],
      );
      m.targetPsnr.push(psnr(out, c.target01));
      m.objectPsnr.push(psnr(out, c.source01, c.objects));
      m.objectPerceptual.push(perceptual ? await perceptual.distance(out, c.source01, c.objects) : NaN);
      if (m.family !== 'input') row.push(out);
    }
    row.push(c.target01);
    if (index < options.examples) examples.push(row);
    options.log(
      `case ${index + 1}/${options.cases}: ${methods
        .filter((m) => m.family !== 'input')
        .map((m) => `${m.method} ${m.success.at(-1) ? '✓' : '·'}`)
        .join(', ')}`,
    );
  }
  if (examples.length > 0) {
    const rows = examples.map((r) => sideBySide(r, 2));
    await saveImage(stackRows(rows), join(options.out, 'examples.png'));
  }
  const summary = methods.map((m) => ({
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
  }));
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
  const report = {
    edit: `${options.from} → ${options.to}`,
    texts: [fromText, toText],
    model: bundle.dir,
    cases: options.cases,
    finetune: {
      images: options.trainImages,
      epochs: options.epochs,
      updates: tuned.updates.length,
      seconds: finetuneSeconds,
      rssMiB: rss,
      settings: tuned.settings,
    },
    summary,
  };
  await writeFileAtomic(join(options.out, 'results.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFileAtomic(join(options.out, 'results.md'), markdown(report));
  return report;
}

/** Rows of equal width stacked vertically with a white gap. */
function stackRows(rows: NDArray[]): NDArray {
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

function markdown(report: {
  edit: string;
  cases: number;
  finetune: { images: number; epochs: number; updates: number; seconds: number; rssMiB: number };
  summary: Record<string, unknown>[];
}): string {
  const f = (v: unknown, d = 2) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : 'n/a');
  return [
    `DiffusionCLIP benchmark: ${report.edit}, ${report.cases} held-out EmojiWorld scenes with ground truth.`,
    `Fine-tuning: ${report.finetune.images} images × ${report.finetune.epochs} epochs, ${report.finetune.updates} updates, ${f(report.finetune.seconds, 1)} s, RSS ${f(report.finetune.rssMiB, 0)} MiB.`,
    '',
    '| method | success ↑ | objects kept ↑ | directional CLIP ↑ | PSNR to GT dB ↑ | PSNR on objects dB ↑ | LPIPS-style on objects ↓ | s/edit |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...report.summary.map(
      (s) =>
        `| ${String(s.method)} | ${f(s.success)} | ${f(s.objectsKept)} | ${f(s.directional, 3)} | ${f(s.targetPsnr)} | ${f(s.objectPsnr)} | ${f(s.objectPerceptual, 4)} | ${f(s.secondsPerEdit)} |`,
    ),
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
  const { UserError } = await import('../util/errors.js');
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
    .option('--train-images <n>', 'training scenes', '16')
    .option('--epochs <n>', 'fine-tuning epochs', '2')
    .addOption(
      new Option('--gradient <scheme>', 'per-step | chain')
        .choices(['per-step', 'chain'])
        .default('per-step'),
    )
    .addOption(new Option('--adapter <kind>', 'lora | full').choices(['lora', 'full']).default('lora'))
    .option('--lr <lr>', 'learning rate (default: the pipeline’s)')
    .option('--t0 <t>', 'timestep inverted to (default 40% of the schedule)')
    .option('--cases <n>', 'held-out scenes', '24')
    .option('--steps <n>', 'SDEdit/DiffEdit steps', '50')
    .option('--strengths <list>', 'SDEdit strengths', '0.4,0.6,0.8')
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
  try {
    const report = await benchDiffusionClip(bundle, clip, judge, perceptual, {
      from: o.from,
      to: o.to,
      trainImages: Number(o.trainImages),
      epochs: Number(o.epochs),
      cases: Number(o.cases),
      gradient: o.gradient as GradientScheme,
      adapter: o.adapter as AdapterKind,
      learningRate: o.lr ? Number(o.lr) : undefined,
      t0: o.t0 ? Number(o.t0) : undefined,
      steps: Number(o.steps),
      strengthSweep: list(o.strengths),
      rSweep: list(o.r),
      scene: { ...subset.scene, width: bundle.defaultImageSize, height: bundle.defaultImageSize },
      examples: Number(o.examples),
      out: o.out,
      threads: o.threads ? Number(o.threads) : undefined,
      log: (line) => process.stderr.write(`${line}\n`),
    });
    console.log(markdown(report as Parameters<typeof markdown>[0]));
  } finally {
    await Promise.all([bundle.release(), clip.release(), judge.release(), perceptual.release()]);
  }
}
