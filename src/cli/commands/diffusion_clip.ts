import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { rgb8ToTensor, saveImage, sideBySide } from '../../image/io.js';
import { ClipModel } from '../../models/clip.js';
import type { StableDiffusionBundle } from '../../models/bundle.js';
import { diffusionClipEdit, loadDeltas } from '../../pipelines/diffusion_clip/edit.js';
import {
  diffusionClipFinetune,
  type AdapterKind,
  type DirectionReference,
  type GradientScheme,
} from '../../pipelines/diffusion_clip/finetune.js';
import { NDArray } from '../../runtime/ndarray.js';
import { UserError } from '../../util/errors.js';
import { ensureParentDir } from '../../util/files.js';
import { BACKGROUND_NAMES } from '../../world/backgrounds.js';
import { renderScene } from '../../world/render.js';
import { sampleScene } from '../../world/scene.js';
import { splitSeeds } from '../../world/splits.js';
import { modelWorldSubset } from '../../world/subsets.js';
import { savePlot } from '../../image/plot.js';
import {
  addRuntimeOptions,
  addInputSizeOptions,
  checkOutputPath,
  parseInteger,
  parseNumber,
  type RuntimeOptions,
} from '../options.js';
import { loadInputImage, report, withBundle } from '../run_context.js';

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp']);

/** The CLIP next to the model (EditKit's layout: models/emoji-ldm beside models/emoji-clip), unless given. */
function clipDir(option: string | undefined, modelDir: string): string {
  if (option) return option;
  const beside = join(dirname(modelDir), 'emoji-clip');
  if (existsSync(beside)) return beside;
  throw new UserError(`no CLIP found beside the model ('${beside}'); give one with --clip DIR`);
}

interface FinetuneCliOptions extends RuntimeOptions {
  from: string;
  to: string;
  images?: string;
  world?: number;
  worldBackground?: string;
  out: string;
  clip?: string;
  prompt: string;
  epochs: number;
  lr?: number;
  t0?: number;
  inversionSteps: number;
  generationSteps: number;
  gradient: GradientScheme;
  adapter: AdapterKind;
  loraRank: number;
  l1: number;
  global: number;
  directionReference: DirectionReference;
  seed: number;
  lossPlot?: string;
  preview?: string;
}

function imageFiles(dir: string): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new UserError(`--images '${dir}' is not a folder`);
  const files = readdirSync(dir)
    .filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase()))
    .sort()
    .map((f) => join(dir, f));
  if (files.length === 0) throw new UserError(`--images '${dir}' holds no PNG, JPEG or WebP image`);
  return files;
}

async function trainingImages(
  bundle: StableDiffusionBundle,
  options: FinetuneCliOptions,
): Promise<NDArray[]> {
  if (options.images) {
    const out: NDArray[] = [];
    const size = bundle.defaultImageSize;
    for (const file of imageFiles(options.images)) {
      out.push((await loadInputImage(file, bundle, { width: size, height: size })).tensor);
    }
    return out;
  }
  const subset = modelWorldSubset(bundle.dir);
  const size = bundle.defaultImageSize;
  const scene = {
    ...subset?.scene,
    width: size,
    height: size,
    ...(options.worldBackground ? { backgrounds: [options.worldBackground] } : {}),
  };
  const out: NDArray[] = [];
  for (const seed of splitSeeds('train', options.world!, 0)) {
    const rendered = await renderScene(sampleScene(seed, scene));
    out.push(rgb8ToTensor({ data: rendered.image, width: size, height: size }, '[-1,1]'));
  }
  return out;
}

export function clipFinetuneCommand(): Command {
  const command = new Command('clip-finetune')
    .description('DiffusionCLIP: fine-tune the model so its generations move along a CLIP text direction')
    .requiredOption(
      '--from <text>',
      'what the images show now (the reference text), e.g. "a photo on the grass"',
    )
    .requiredOption('--to <text>', 'what they should show (the target text), e.g. "a photo on the snow"')
    .option('--images <dir>', 'training images (a folder of PNG/JPEG/WebP)')
    .option('--world <n>', 'train on n EmojiWorld scenes instead', parseInteger('--world', 1, 10000))
    .addOption(
      new Option('--world-background <name>', 'with --world: scenes with this background only').choices(
        BACKGROUND_NAMES,
      ),
    )
    .requiredOption('-o, --out <file.safetensors>', 'where the fine-tuned delta goes')
    .option('--clip <dir>', 'CLIP model (default: emoji-clip beside the model)')
    .option(
      '--prompt <text>',
      'conditioning of the UNet (default: none, as the paper’s unconditional models)',
      '',
    )
    .option('--epochs <n>', 'passes over the images', parseInteger('--epochs', 1, 1000), 1)
    .option('--lr <lr>', 'Adam learning rate (default: 2e-4 LoRA, 4e-5 full)', parseNumber('--lr', 1e-9, 1))
    .option('--t0 <t>', 'timestep inverted to (default 40% of the schedule)', parseInteger('--t0', 1, 100000))
    .option('--inversion-steps <n>', 'S_for', parseInteger('--inversion-steps', 2, 1000), 40)
    .option(
      '--generation-steps <n>',
      'S_gen during fine-tuning',
      parseInteger('--generation-steps', 2, 1000),
      6,
    )
    .addOption(
      new Option(
        '--gradient <scheme>',
        "'per-step': loss and update at every generation step (the reference's); 'chain': through all steps",
      )
        .choices(['per-step', 'chain'])
        .default('per-step'),
    )
    .addOption(
      new Option('--adapter <kind>', 'train LoRA factors or every weight')
        .choices(['lora', 'full'])
        .default('lora'),
    )
    .option('--lora-rank <r>', 'LoRA rank', parseInteger('--lora-rank', 1, 1024), 8)
    .option('--l1 <λ>', 'weight of the identity L1 term', parseNumber('--l1', 0, 1000), 0.3)
    .option(
      '--global <λ>',
      'weight of the global CLIP term toward --to (0: off; helps large changes such as a new background)',
      parseNumber('--global', 0, 1000),
      0,
    )
    .addOption(
      new Option(
        '--direction-reference <what>',
        "what the CLIP change is measured from: 'input' (the paper), or 'original': the original model's prediction from the same state",
      )
        .choices(['input', 'original'])
        .default('input'),
    )
    .option(
      '--seed <n>',
      'seed of the LoRA init and the CLIP view noise',
      parseInteger('--seed', 0, 2 ** 32 - 1),
      0,
    )
    .option('--loss-plot <file.svg|png>', 'loss curve (default: beside --out, <name>-loss.png)')
    .option(
      '--preview <file.png>',
      'inputs and their edits side by side (default: beside --out, <name>-preview.png)',
    );
  addRuntimeOptions(command);
  return command.action(async (options: FinetuneCliOptions) => {
    if ((options.images === undefined) === (options.world === undefined))
      throw new UserError('give the training images with --images DIR or --world N (one of them)');
    if (!options.from.trim() || !options.to.trim()) throw new UserError('--from and --to must not be empty');
    if (options.from.trim() === options.to.trim())
      throw new UserError('--from and --to are the same text: there is no direction to follow');
    if (options.worldBackground && options.world === undefined)
      throw new UserError('--world-background goes with --world');
    if (extname(options.out).toLowerCase() !== '.safetensors')
      throw new UserError(`--out '${options.out}' must end in .safetensors`);
    if (options.images) imageFiles(options.images);
    const stem = options.out.slice(0, -'.safetensors'.length);
    const lossPlot = options.lossPlot ?? `${stem}-loss.png`;
    const preview = options.preview ?? `${stem}-preview.png`;
    const { result, seconds, device, model } = await withBundle(
      options,
      'clip-finetune',
      async (bundle, onProgress) => {
        const clip = await ClipModel.load(clipDir(options.clip, bundle.dir), { device: bundle.device });
        try {
          const images = await trainingImages(bundle, options);
          const trained = await diffusionClipFinetune(bundle, clip, {
            images,
            sourceText: options.from,
            targetText: options.to,
            prompt: options.prompt,
            epochs: options.epochs,
            learningRate: options.lr,
            t0: options.t0,
            inversionSteps: options.inversionSteps,
            generationSteps: options.generationSteps,
            gradient: options.gradient,
            adapter: options.adapter,
            loraRank: options.loraRank,
            lambdaL1: options.l1,
            lambdaGlobal: options.global,
            directionReference: options.directionReference,
            seed: options.seed,
            intraOpNumThreads: options.threads,
            onProgress,
          });
          await ensureParentDir(options.out);
          await trained.save(options.out);
          const shown = images.slice(0, 4);
          const edited: NDArray[] = [];
          for (const image of shown) {
            edited.push(
              await diffusionClipEdit(bundle, {
                image,
                models: [{ unet: trained.tunedUnet(), weight: 1 }],
                prompt: options.prompt,
                t0: Number(trained.settings.t0),
                intraOpNumThreads: options.threads,
              }),
            );
          }
          return { trained, shown, edited, images: images.length };
        } finally {
          await clip.release();
        }
      },
      { inputs: [], imageOutputs: [preview] },
    );
    const updates = result.trained.updates;
    await savePlot(
      {
        title: `DiffusionCLIP: "${options.from}" → "${options.to}"`,
        xLabel: 'update',
        yLabel: 'loss',
        series: [
          { name: 'total', points: updates.map((u, i) => [i + 1, u.loss]) },
          { name: '1 − directional CLIP', points: updates.map((u, i) => [i + 1, u.clipLoss]) },
          { name: 'L1', points: updates.map((u, i) => [i + 1, u.l1]) },
        ],
      },
      lossPlot,
    );
    await saveImage(
      sideBySide(result.shown.flatMap((x, i) => [x.map((v) => v / 2 + 0.5), result.edited[i]])),
      preview,
    );
    const first = updates[0];
    const last = updates.at(-1)!;
    report(
      options.json,
      {
        command: 'clip-finetune',
        out: options.out,
        lossPlot,
        preview,
        images: result.images,
        updates: updates.length,
        firstLoss: first.loss,
        lastLoss: last.loss,
        settings: result.trained.settings,
        device,
        model,
        seconds,
      },
      `wrote ${options.out} (${updates.length} updates on ${result.images} images, loss ${first.loss.toFixed(3)} → ${last.loss.toFixed(3)}, ${device}, ${seconds.toFixed(1)} s); ${lossPlot}, ${preview}`,
    );
  });
}

interface EditCliOptions extends RuntimeOptions {
  delta: { path: string; weight: number }[];
  out: string;
  prompt: string;
  t0?: number;
  inversionSteps: number;
  generationSteps: number;
  width?: number;
  height?: number;
}

/** `file.safetensors[:weight]`, repeatable. */
function parseDelta(value: string, previous: { path: string; weight: number }[] = []) {
  // The weight is what follows the last ':' when that looks like a number (a path may hold ':' too).
  const match = /^(.*):([-+]?[0-9.]+(?:e[-+]?[0-9]+)?)$/i.exec(value);
  const path = match ? match[1] : value;
  const weight = match ? Number(match[2]) : 1;
  if (!path) throw new InvalidArgumentError(`--delta '${value}': give FILE or FILE:WEIGHT`);
  if (!(weight > 0) || !Number.isFinite(weight))
    throw new InvalidArgumentError(`--delta '${value}': the weight must be a positive number`);
  return [...previous, { path, weight }];
}

export function clipEditCommand(): Command {
  const command = new Command('clip-edit')
    .description('DiffusionCLIP: edit an image with one or more fine-tuned deltas (mixed by weight)')
    .argument('<image>', 'input image')
    .requiredOption(
      '--delta <file[:weight]>',
      'a delta from clip-finetune; repeat to mix several (ε = Σ wᵢ εᵢ; weights under 1 in total leave the rest to the original model)',
      parseDelta,
    )
    .requiredOption('-o, --out <file>', 'output image')
    .option('--prompt <text>', 'conditioning of the UNet (use the one of fine-tuning; default none)', '')
    .option('--t0 <t>', "timestep inverted to (default: the first delta's)", parseInteger('--t0', 1, 100000))
    .option('--inversion-steps <n>', 'S_for', parseInteger('--inversion-steps', 2, 1000), 40)
    .option('--generation-steps <n>', 'S_gen', parseInteger('--generation-steps', 2, 1000), 40);
  addInputSizeOptions(command);
  addRuntimeOptions(command);
  return command.action(async (imagePath: string, options: EditCliOptions) => {
    checkOutputPath(options.out, [imagePath, ...options.delta.map((d) => d.path)]);
    for (const d of options.delta) {
      if (extname(d.path).toLowerCase() !== '.safetensors')
        throw new UserError(`--delta '${d.path}' must be a .safetensors file from clip-finetune`);
    }
    const { result, seconds, device, model } = await withBundle(
      options,
      'clip-edit',
      async (bundle, onProgress) => {
        const input = await loadInputImage(imagePath, bundle, options);
        const models = await loadDeltas(bundle, options.delta);
        const { readDeltaInfo } = await import('../../pipelines/diffusion_clip/delta.js');
        const t0 =
          options.t0 ?? (Number((await readDeltaInfo(options.delta[0].path)).metadata.t0) || undefined);
        return diffusionClipEdit(bundle, {
          image: input.tensor,
          models,
          prompt: options.prompt,
          t0,
          inversionSteps: options.inversionSteps,
          generationSteps: options.generationSteps,
          intraOpNumThreads: options.threads,
          onProgress,
        });
      },
      { inputs: [imagePath, ...options.delta.map((d) => d.path)], imageOutputs: [options.out] },
    );
    await saveImage(result, options.out);
    report(
      options.json,
      { command: 'clip-edit', out: options.out, deltas: options.delta, device, model, seconds },
      `wrote ${options.out} (${options.delta.length} delta${options.delta.length > 1 ? 's' : ''}, ${device}, ${seconds.toFixed(1)} s)`,
    );
  });
}
