/**
 * `npm run bench -- diffusion-clip-style VARIANTS.json`: what limits DiffusionCLIP on the style edit (flat → glossy
 * artwork, issue 12), on validation scenes only. Each variant is one row:
 *  - `{"sdedit": s}`: SDEdit at strength s with each scene's glossy caption (the baseline);
 *  - DiffusionCLIP with the bench's fine-tuning defaults changed by the variant's fields ({@link FinetuneSettings}),
 *    optionally with another teacher CLIP (`"clip": DIR`) and edited at several LoRA scales (`"scales": [1, 1.5]`);
 *  - `{"oracle": true, …}`: the same fine-tuning with the CLIP terms off and the L1 pulling toward each training
 *    scene's true glossy render: what the adapter, schedule and updates reach with a perfect teacher;
 *  - `{"clipOracle": true, …}`: the CLIP loss as usual, but each training scene's direction is its true change in
 *    CLIP's image space (E_I(glossy render) − E_I(flat render)) instead of a text direction;
 *  - `{"pixels": steps, "clip"?: DIR}`: the teacher alone, no diffusion model: the cosine between the directional
 *    loss's descent direction on the pixels and the true change (glossy − flat render) on the objects, then Adam
 *    on the pixels themselves for `steps` steps (directional loss + 10 · mean |x − x₀|), scored like an edit.
 * Scores as the multi-attribute bench's style column: progress toward the glossy render on the objects
 * ({@link regionProgress}); success = progress > 0.5 with the judge finding the same objects; preservation = PSNR
 * outside the objects.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command } from 'commander';
import {
  Adam,
  buildGradient,
  cosineDistanceLoss,
  foldInitializerCasts,
  Graph,
  GraphBuilder,
  graphOf,
  loadModel,
} from '../autodiff/index.js';
import { rgb8ToTensor, saveImage, sideBySide } from '../image/io.js';
import { savePlot, type Series } from '../image/plot.js';
import { psnr } from '../metrics/image.js';
import { StableDiffusionBundle } from '../models/bundle.js';
import { ClipModel } from '../models/clip.js';
import { EmojiJudge } from '../models/judge.js';
import { applyDelta } from '../pipelines/diffusion_clip/delta.js';
import { diffusionClipEdit } from '../pipelines/diffusion_clip/edit.js';
import type { DiffusionClipOptions } from '../pipelines/diffusion_clip/finetune.js';
import { sessionFromModel } from '../pipelines/drag/unet_models.js';
import { img2img } from '../pipelines/img2img.js';
import { NDArray } from '../runtime/ndarray.js';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/files.js';
import { caption } from '../world/caption.js';
import { renderScene } from '../world/render.js';
import { sampleScene, type Scene } from '../world/scene.js';
import { resolveWorldSubset } from '../world/subsets.js';
import {
  BENCH_DEFAULTS,
  captionTexts,
  evaluationSeeds,
  finetuneEdit,
  stackRows,
  trainingSeeds,
  type FinetuneSettings,
} from './diffusion_clip.js';
import { glossy, regionProgress } from './diffusion_clip_multi.js';

export interface StyleVariant extends Partial<FinetuneSettings> {
  name?: string;
  sdedit?: number;
  oracle?: boolean;
  /** Each training scene's true change in CLIP image space as its direction (see the module comment). */
  clipOracle?: boolean;
  pixels?: number;
  /** Teacher CLIP folder (default: the bench's). */
  clip?: string;
  scales?: number[];
}

interface StyleCase {
  scene: Scene;
  source: NDArray;
  source01: NDArray;
  glossy01: NDArray;
  objects: NDArray;
  background: NDArray;
}

export interface StyleRow {
  variant: string;
  scale?: number;
  success: number;
  progress: number;
  objectsKept: number;
  backgroundPsnr: number;
  finetuneSeconds?: number;
  /** Pixel probe: mean cosine of the loss's descent direction with glossy − flat on the objects. */
  gradientCosine?: number;
}

async function styleCase(seed: number, scene: Parameters<typeof sampleScene>[1]): Promise<StyleCase> {
  const flat = sampleScene(seed, { ...scene, colourStyleProbability: 0 });
  const [a, b] = await Promise.all([renderScene(flat), renderScene(glossy(flat))]);
  const { width, height } = flat;
  const tensor = (data: Uint8Array, range: '[0,1]' | '[-1,1]') =>
    rgb8ToTensor({ data, width, height }, range);
  const mask = (inside: boolean) =>
    new NDArray(
      Float32Array.from(a.union, (v) => (v > 127 === inside ? 1 : 0)),
      [1, 1, height, width],
    );
  return {
    scene: flat,
    source: tensor(a.image, '[-1,1]'),
    source01: tensor(a.image, '[0,1]'),
    glossy01: tensor(b.image, '[0,1]'),
    objects: mask(true),
    background: mask(false),
  };
}

/** Variant fields that are not fine-tuning settings. */
const NOT_SETTINGS = new Set(['name', 'sdedit', 'oracle', 'clipOracle', 'pixels', 'clip', 'scales']);

const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** E_I(glossy render) − E_I(flat render) of unit image embeddings, per scene. */
async function trueDirections(teacher: ClipModel, cases: readonly StyleCase[]): Promise<Float32Array[]> {
  const before = await teacher.embedImages(NDArray.concat(cases.map((c) => c.source01)));
  const after = await teacher.embedImages(NDArray.concat(cases.map((c) => c.glossy01)));
  const dim = before.shape[1];
  const unit = (x: NDArray, i: number) => {
    const v = x.data.subarray(i * dim, (i + 1) * dim);
    const norm = Math.hypot(...v);
    return Array.from(v, (y) => y / norm);
  };
  return cases.map((_, i) => {
    const [a, b] = [unit(before, i), unit(after, i)];
    return Float32Array.from(a, (y, j) => b[j] - y);
  });
}

/**
 * The teacher alone: for a scene, the descent direction of the directional CLIP loss (from the source, along the
 * training texts' mean direction) on the pixels, its cosine with glossy − flat on the objects, and the image Adam
 * reaches on the pixels in `steps` steps.
 */
async function pixelProbe(
  teacher: ClipModel,
  texts: { source: readonly string[]; target: readonly string[] },
  steps: number,
  threads?: number,
): Promise<(c: StyleCase) => Promise<{ image: NDArray; cosine: number }>> {
  const embeds = await teacher.embedTexts([...texts.source, ...texts.target]);
  const [n, dim] = [texts.source.length, embeds.shape[1]];
  const unit = (row: number) => {
    const v = embeds.data.subarray(row * dim, (row + 1) * dim);
    const norm = Math.hypot(...v);
    return Array.from(v, (x) => x / norm);
  };
  const direction = new Float32Array(dim);
  for (let k = 0; k < n; k++) {
    const [a, b] = [unit(k), unit(n + k)];
    for (let j = 0; j < dim; j++) direction[j] += (b[j] - a[j]) / n;
  }
  const model = await loadModel(teacher.imageModelPath);
  const graph = Graph.fromModel(model);
  const b = new GraphBuilder(graph, 'probe');
  const output = graphOf(model).output[0].name;
  const unitEmbeds = b.div(output, b.op('Sqrt', [b.reduceSum(b.mul(output, output), [-1], true)]));
  const [edited, source] = b.split(unitEmbeds, 0, [1, 1]);
  const loss = cosineDistanceLoss(b.sub(edited, source), {
    input: 'probe_direction',
    shape: [1, dim],
  }).attach(graph);
  const { size, mean: pixelMean, std } = teacher.processing;
  const gradient = buildGradient(graph.toModel(), {
    loss,
    wrt: ['pixel_values'],
    inputShapes: { pixel_values: [2, 3, size, size] },
  });
  const session = await sessionFromModel(
    gradient.model,
    { device: 'cpu', intraOpNumThreads: threads },
    'probe',
  );
  const plane = size * size;
  const normalise = (x: Float32Array) =>
    Float32Array.from(x, (v, i) => (v - pixelMean[Math.floor(i / plane)]) / std[Math.floor(i / plane)]);
  return async (c) => {
    if (c.source01.shape[2] !== size || c.source01.shape[3] !== size)
      throw new UserError(`the pixel probe needs ${size}×${size} scenes (the teacher's input size)`);
    const source = c.source01.data;
    const values = { x: Float32Array.from(source, (v, i) => v + 1e-3 * Math.sin(i * 12.9898)) };
    const adam = new Adam(values, { lr: 0.01 });
    let cosine = NaN;
    for (let step = 0; step < Math.max(1, steps); step++) {
      const feed = new Float32Array(2 * 3 * plane);
      feed.set(normalise(values.x), 0);
      feed.set(normalise(source), 3 * plane);
      const out = await session.run(
        {
          pixel_values: new NDArray(feed, [2, 3, size, size]),
          probe_direction: new NDArray(direction, [1, dim]),
        },
        [gradient.gradients.pixel_values],
      );
      const g = out[gradient.gradients.pixel_values].data;
      const grad = Float32Array.from(
        values.x,
        (v, i) => g[i] / std[Math.floor(i / plane)] + (10 * Math.sign(v - source[i])) / values.x.length,
      );
      if (step === 0) {
        let dot = 0;
        let gg = 0;
        let tt = 0;
        for (let i = 0; i < grad.length; i++) {
          if (c.objects.data[i % plane] === 0) continue;
          const change = c.glossy01.data[i] - source[i];
          dot -= grad[i] * change;
          gg += grad[i] ** 2;
          tt += change ** 2;
        }
        cosine = dot / Math.sqrt(gg * tt);
      }
      if (steps === 0) break;
      adam.step({ x: grad });
      for (let i = 0; i < values.x.length; i++) values.x[i] = Math.min(1, Math.max(0, values.x[i]));
    }
    return { image: new NDArray(values.x, c.source01.shape), cosine };
  };
}

export async function benchDiffusionClipStyle(
  modelDir: string,
  variants: readonly StyleVariant[],
  options: { background: string; trainImages: number; cases: number; out: string; threads?: number },
  log: (line: string) => void,
): Promise<StyleRow[]> {
  await mkdir(options.out, { recursive: true });
  const bundle = await StableDiffusionBundle.load(modelDir, {
    device: 'cpu',
    intraOpNumThreads: options.threads,
  });
  const defaultClip = join(modelDir, '..', 'emoji-clip');
  const judge = await EmojiJudge.load(join(modelDir, '..', 'emoji-judge'));
  const size = bundle.defaultImageSize;
  const scene = {
    ...resolveWorldSubset(undefined, modelDir).scene,
    width: size,
    height: size,
    backgrounds: [options.background],
  };
  const train = await Promise.all(trainingSeeds(options.trainImages).map((s) => styleCase(s, scene)));
  const evals = await Promise.all(
    evaluationSeeds('validation', options.cases).map((s) => styleCase(s, scene)),
  );
  const texts = captionTexts(
    train.map((c) => c.scene),
    glossy,
  );
  const objectsOf = async (x: NDArray) => JSON.stringify([...(await judge.judge(x)).objects].sort());
  const sourceObjects = await Promise.all(evals.map((c) => objectsOf(c.source01)));
  const base = await loadModel(join(bundle.dir, 'unet', 'model.onnx'));
  foldInitializerCasts(base);
  const rows: StyleRow[] = [];

  const score = async (name: string, edit: (c: StyleCase, i: number) => Promise<NDArray>) => {
    const progress: number[] = [];
    const success: number[] = [];
    const kept: number[] = [];
    const preserved: number[] = [];
    const grid: NDArray[] = [];
    for (const [i, c] of evals.entries()) {
      const out = await edit(c, i);
      const p = regionProgress(out, c.source01, c.glossy01, c.objects);
      const same = (await objectsOf(out)) === sourceObjects[i];
      progress.push(p);
      kept.push(same ? 1 : 0);
      success.push(p > 0.5 && same ? 1 : 0);
      preserved.push(psnr(out, c.source01, c.background));
      if (i < 4) grid.push(sideBySide([c.source01, out, c.glossy01], 2));
    }
    await saveImage(stackRows(grid), join(options.out, `${name.replace(/[^a-z0-9.=-]+/gi, '_')}.png`));
    return {
      success: mean(success),
      progress: mean(progress),
      objectsKept: mean(kept),
      backgroundPsnr: mean(preserved),
    };
  };

  for (const v of variants) {
    const label = v.name ?? JSON.stringify(v);
    if (v.sdedit !== undefined) {
      const strength = v.sdedit;
      const row = {
        variant: label,
        ...(await score(label, async (c, i) => {
          const out = await img2img(bundle, {
            image: c.source,
            prompt: caption(glossy(c.scene)),
            strength,
            numInferenceSteps: 50,
            guidanceScale: 5,
            seed: i,
          });
          return out.image;
        })),
      };
      rows.push(row);
      log(formatRow(row));
      continue;
    }
    const { oracle, clip, scales, pixels } = v;
    if (pixels !== undefined) {
      const teacher = await ClipModel.load(clip ?? defaultClip, { intraOpNumThreads: options.threads });
      const probe = await pixelProbe(teacher, texts, pixels, options.threads);
      let k = 0;
      const cosines: number[] = [];
      const row = {
        variant: label,
        ...(await score(label, async (c) => {
          const { image, cosine } = await probe(c);
          cosines.push(cosine);
          k++;
          return image;
        })),
      };
      await teacher.release();
      rows.push({ ...row, gradientCosine: mean(cosines) });
      log(`${formatRow(row)}, gradient cosine ${mean(cosines).toFixed(3)} over ${k} scenes`);
      continue;
    }
    const changes = Object.fromEntries(
      Object.entries(v).filter(([key]) => !NOT_SETTINGS.has(key)),
    ) as Partial<FinetuneSettings>;
    const settings: FinetuneSettings = {
      ...BENCH_DEFAULTS,
      trainImages: options.trainImages,
      gradient: 'per-step',
      adapter: 'lora',
      views: 'crops4',
      ...changes,
    };
    const teacher = await ClipModel.load(clip ?? defaultClip, { intraOpNumThreads: options.threads });
    const started = performance.now();
    const overrides: Partial<DiffusionClipOptions> = oracle
      ? {
          identityTargets: train.map((c) => c.glossy01.map((x) => 2 * x - 1)),
          lambdaClip: 0,
          lambdaL1: 1,
          lambdaGlobal: 0,
        }
      : v.clipOracle
        ? { imageDirections: await trueDirections(teacher, train) }
        : {};
    const { tuned } = await finetuneEdit(
      bundle,
      teacher,
      train.map((c) => c.source),
      texts,
      settings,
      options.threads,
      overrides,
    );
    const seconds = (performance.now() - started) / 1000;
    await teacher.release();
    const deltaPath = join(options.out, `${label.replace(/[^a-z0-9.=-]+/gi, '_')}.safetensors`);
    await tuned.save(deltaPath);
    for (const scale of scales ?? [1]) {
      const unet = await applyDelta(base, deltaPath, scale);
      const name = `${label} ×${scale}`;
      const row = {
        variant: label,
        scale,
        finetuneSeconds: seconds,
        ...(await score(name, (c) =>
          diffusionClipEdit(bundle, {
            image: c.source,
            models: [{ unet, weight: 1 }],
            t0: settings.t0,
            intraOpNumThreads: options.threads,
          }),
        )),
      };
      rows.push(row);
      log(formatRow(row));
    }
  }
  await bundle.release();
  return rows;
}

/** Success against preservation: SDEdit's strengths as a line; DiffusionCLIP, its scaled edits and the oracle as points. */
export async function saveStyleTradeoff(rows: readonly StyleRow[], path: string): Promise<void> {
  const group = (name: string, pick: (r: StyleRow) => boolean, line = false): Series => ({
    name,
    points: rows
      .filter(pick)
      .map((r): [number, number] => [r.backgroundPsnr, r.success])
      .sort((a, b) => a[0] - b[0]),
    line,
  });
  const isSdedit = (r: StyleRow) => r.scale === undefined && r.gradientCosine === undefined;
  const isOracle = (r: StyleRow) => r.variant.startsWith('oracle');
  const isClipOracle = (r: StyleRow) => r.variant.startsWith('CLIP oracle');
  const tuned = (r: StyleRow) => r.scale !== undefined && !isOracle(r) && !isClipOracle(r);
  const series = [
    group('SDEdit (strengths)', isSdedit, true),
    group('DiffusionCLIP', (r) => tuned(r) && r.scale === 1),
    group('DiffusionCLIP, LoRA scale > 1', (r) => tuned(r) && r.scale! > 1),
    group('CLIP oracle: true directions', isClipOracle),
    group('oracle: L1 to the true edit', isOracle),
  ].filter((s) => s.points.length > 0);
  await savePlot(
    {
      title: 'flat → glossy: success vs preservation (validation scenes)',
      xLabel: 'PSNR outside the objects (dB), higher keeps more',
      yLabel: 'success (glossy past half way, objects kept)',
      series,
    },
    path,
  );
}

function formatRow(r: StyleRow): string {
  return `${r.variant}${r.scale !== undefined ? ` ×${r.scale}` : ''}: success ${r.success.toFixed(2)}, progress ${r.progress.toFixed(3)}, kept ${r.objectsKept.toFixed(2)}, background PSNR ${r.backgroundPsnr.toFixed(2)} dB${r.finetuneSeconds !== undefined ? `, fine-tune ${r.finetuneSeconds.toFixed(0)} s` : ''}`;
}

function markdown(rows: readonly StyleRow[], cases: number): string {
  const lines = [
    `DiffusionCLIP style probe (flat → glossy), ${cases} validation scenes.`,
    '',
    '| variant | LoRA scale | success ↑ | progress | objects kept ↑ | PSNR outside the objects dB ↑ | fine-tune s | gradient cosine |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.variant} | ${r.scale ?? '–'} | ${r.success.toFixed(2)} | ${r.progress.toFixed(3)} | ${r.objectsKept.toFixed(2)} | ${r.backgroundPsnr.toFixed(2)} | ${r.finetuneSeconds?.toFixed(0) ?? '–'} | ${r.gradientCosine?.toFixed(3) ?? '–'} |`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}

/** `npm run bench -- diffusion-clip-style VARIANTS.json [options]`. */
export async function diffusionClipStyleMain(argv: readonly string[], defaultModel: string): Promise<void> {
  const program = new Command('bench diffusion-clip-style')
    .argument('<variants.json>', 'a list of variants (see src/bench/diffusion_clip_style.ts)')
    .option('--model <dir>', 'model bundle (default: the bundled model)')
    .option('--background <name>', 'the scenes’ background', 'sand')
    .option('--train-images <n>', 'training scenes', '16')
    .option('--cases <n>', 'validation scenes', '16')
    .option('--threads <n>', 'CPU threads')
    .option('--out <dir>', 'where results go', 'bench-results/diffusion-clip-style');
  program.parse([...argv], { from: 'user' });
  const o = program.opts<Record<string, string>>();
  let variants: StyleVariant[];
  try {
    variants = JSON.parse(await readFile(program.args[0], 'utf8')) as StyleVariant[];
  } catch (error) {
    throw new UserError(`${program.args[0]}: ${(error as Error).message}`);
  }
  if (!Array.isArray(variants) || variants.length === 0)
    throw new UserError(`${program.args[0]}: expected a non-empty JSON list of variants`);
  for (const v of variants) {
    if (v.clip !== undefined && !existsSync(join(v.clip, 'config.json')))
      throw new UserError(`variant ${v.name ?? JSON.stringify(v)}: no CLIP model at '${v.clip}'`);
  }
  const cases = Number(o.cases);
  const rows = await benchDiffusionClipStyle(
    o.model ?? defaultModel,
    variants,
    {
      background: o.background,
      trainImages: Number(o.trainImages),
      cases,
      out: o.out,
      threads: o.threads ? Number(o.threads) : undefined,
    },
    (line) => process.stdout.write(`${line}\n`),
  );
  await writeFileAtomic(join(o.out, 'style.md'), markdown(rows, cases));
  await writeFileAtomic(join(o.out, 'style.json'), `${JSON.stringify(rows, null, 2)}\n`);
  await saveStyleTradeoff(rows, join(o.out, 'tradeoff.png'));
}
