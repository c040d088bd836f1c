/**
 * What a job runs: each method's parameters (the CLI's names and defaults, checked with zod) and the pipeline call.
 * Inputs arrive as files in the job's directory (input-image.png, input-mask.png), so the CLI's image loading and its limits
 * apply unchanged.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { loadImage, loadMask, overlayMask, saveImage, sideBySide } from '../image/io.js';
import type { StableDiffusionBundle } from '../models/bundle.js';
import { diffEdit } from '../pipelines/diffedit.js';
import { diffusionClipEdit, loadDeltas } from '../pipelines/diffusion_clip/edit.js';
import { dragDiffusion } from '../pipelines/drag/drag.js';
import { parseDragPoints } from '../pipelines/drag/points.js';
import { img2img } from '../pipelines/img2img.js';
import { inpaint } from '../pipelines/inpaint.js';
import { textToImage } from '../pipelines/text_to_image.js';
import { NDArray } from '../runtime/ndarray.js';
import { UserError } from '../util/errors.js';
import type { JobContext } from './jobs.js';

const seed = z
  .number()
  .int()
  .min(0)
  .max(2 ** 32 - 1)
  .optional();
const steps = (d: number) => z.number().int().min(1).max(200).default(d);
const guidance = (d: number) => z.number().min(0).max(30).default(d);
const size = z.number().int().min(32).max(1024).optional();

export const METHOD_PARAMS = {
  generate: z
    .object({
      prompt: z.string().min(1).max(500),
      negative: z.string().max(500).optional(),
      steps: steps(50),
      guidance: guidance(7.5),
      seed,
      width: size,
      height: size,
    })
    .strict(),
  img2img: z
    .object({
      prompt: z.string().min(1).max(500),
      negative: z.string().max(500).optional(),
      strength: z.number().gt(0).max(1).default(0.8),
      steps: steps(50),
      guidance: guidance(7.5),
      seed,
    })
    .strict(),
  inpaint: z
    .object({
      prompt: z.string().min(1).max(500),
      negative: z.string().max(500).optional(),
      steps: steps(50),
      guidance: guidance(7.5),
      seed,
    })
    .strict(),
  edit: z
    .object({
      to: z.string().min(1).max(500),
      from: z.string().max(500).default(''),
      strength: z.number().gt(0).max(1).default(0.8),
      steps: steps(50),
      guidance: guidance(7.5),
      seed,
    })
    .strict(),
  'clip-edit': z
    .object({
      deltas: z
        .array(
          z
            .object({ name: z.string().min(1).max(200), weight: z.number().gt(0).max(10).default(1) })
            .strict(),
        )
        .min(1)
        .max(8),
      prompt: z.string().max(500).default(''),
      t0: z.number().int().min(1).max(999).optional(),
      inversion_steps: z.number().int().min(2).max(200).default(40),
      generation_steps: z.number().int().min(2).max(200).default(40),
    })
    .strict(),
  drag: z
    .object({
      points: z.string().min(3).max(1000),
      prompt: z.string().max(500).default(''),
      lora_steps: z.number().int().min(0).max(400).default(80),
      steps: z.number().int().min(0).max(400).default(80),
      seed,
    })
    .strict(),
} as const;

export type MethodName = keyof typeof METHOD_PARAMS;
export const METHOD_NAMES = Object.keys(METHOD_PARAMS) as MethodName[];

/** Which uploads a method needs. */
export const METHOD_INPUTS: Record<
  MethodName,
  { image: 'required' | 'none'; mask: 'required' | 'optional' | 'none' }
> = {
  generate: { image: 'none', mask: 'none' },
  img2img: { image: 'required', mask: 'none' },
  inpaint: { image: 'required', mask: 'required' },
  edit: { image: 'required', mask: 'optional' },
  'clip-edit': { image: 'required', mask: 'none' },
  drag: { image: 'required', mask: 'optional' },
};

/** Parse a method's parameters; a UserError that names the field on bad input. */
export function parseParams(method: MethodName, params: unknown): Record<string, unknown> {
  const result = METHOD_PARAMS[method].safeParse(params ?? {});
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new UserError(`params.${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return result.data as Record<string, unknown>;
}

export const MAX_INPUT_PIXELS = 2048 * 2048;

/** Where a job's uploads are stored in its directory. */
export const INPUT_FILES = { image: 'input-image.png', mask: 'input-mask.png' } as const;

/** Run one method; writes result.png (and mask.png, side-by-side.png where they mean something). */
export async function runMethod(
  bundle: StableDiffusionBundle,
  method: MethodName,
  params: Record<string, unknown>,
  ctx: JobContext,
  /** DiffusionCLIP deltas by name (clip-edit): the file, from the configured folders, never a client's path. */
  resolveDelta: (name: string) => string | undefined = () => undefined,
): Promise<string[]> {
  const p = params as Record<string, never>;
  const onProgress = ({ stage, step, total }: { stage: string; step: number; total: number }) =>
    ctx.progress(stage, step, total);
  const input = async () =>
    loadImage(join(ctx.dir, INPUT_FILES.image), {
      multiple: bundle.sizeMultiple,
      maxInputPixels: MAX_INPUT_PIXELS,
    });
  const mask = async (width: number, height: number) =>
    existsSync(join(ctx.dir, INPUT_FILES.mask))
      ? loadMask(join(ctx.dir, INPUT_FILES.mask), width, height, { label: 'mask' })
      : undefined;
  ctx.progress('load', 0, 1);
  let image: NDArray;
  let source: NDArray | undefined;
  let usedMask: NDArray | undefined;
  if (method === 'generate') {
    image = (
      await textToImage(bundle, {
        prompt: p.prompt,
        negativePrompt: p.negative,
        numInferenceSteps: p.steps,
        guidanceScale: p.guidance,
        seed: p.seed,
        width: p.width,
        height: p.height,
        onProgress,
        signal: ctx.signal,
      })
    ).image;
  } else {
    const loaded = await input();
    source = loaded.tensor.map((v) => v / 2 + 0.5);
    const m = await mask(loaded.width, loaded.height);
    if (method === 'img2img') {
      image = (
        await img2img(bundle, {
          image: loaded.tensor,
          prompt: p.prompt,
          negativePrompt: p.negative,
          strength: p.strength,
          numInferenceSteps: p.steps,
          guidanceScale: p.guidance,
          seed: p.seed,
          onProgress,
          signal: ctx.signal,
        })
      ).image;
    } else if (method === 'inpaint') {
      if (!m) throw new UserError('inpaint needs a mask');
      usedMask = m;
      image = (
        await inpaint(bundle, {
          image: loaded.tensor,
          mask: m,
          prompt: p.prompt,
          negativePrompt: p.negative,
          numInferenceSteps: p.steps,
          guidanceScale: p.guidance,
          seed: p.seed,
          onProgress,
          signal: ctx.signal,
        })
      ).image;
    } else if (method === 'clip-edit') {
      const deltas = (p.deltas as unknown as { name: string; weight: number }[]).map((d) => {
        const path = resolveDelta(d.name);
        if (!path) throw new UserError(`unknown delta '${d.name}'`);
        return { path, weight: d.weight };
      });
      image = await diffusionClipEdit(bundle, {
        image: loaded.tensor,
        models: await loadDeltas(bundle, deltas),
        prompt: p.prompt,
        t0: p.t0,
        inversionSteps: p.inversion_steps,
        generationSteps: p.generation_steps,
        onProgress,
        signal: ctx.signal,
      });
    } else if (method === 'edit') {
      const result = await diffEdit(bundle, {
        image: loaded.tensor,
        prompt: p.to,
        sourcePrompt: p.from,
        strength: p.strength,
        numInferenceSteps: p.steps,
        guidanceScale: p.guidance,
        seed: p.seed,
        mask: m,
        onProgress,
        signal: ctx.signal,
      });
      image = result.image;
      usedMask = result.mask;
    } else {
      const points = parseDragPoints(p.points);
      usedMask = m;
      image = (
        await dragDiffusion(bundle, {
          image: loaded.tensor,
          handles: points.handles,
          targets: points.targets,
          mask: m,
          prompt: p.prompt,
          loraSteps: p.lora_steps,
          dragSteps: p.steps,
          seed: p.seed,
          onProgress,
          signal: ctx.signal,
        })
      ).image;
    }
  }
  const files = ['result.png'];
  await saveImage(image, join(ctx.dir, 'result.png'));
  if (usedMask) {
    await saveImage(NDArray.concatChannels([usedMask, usedMask, usedMask]), join(ctx.dir, 'mask.png'));
    files.push('mask.png');
  }
  if (source) {
    await saveImage(
      sideBySide(usedMask ? [source, overlayMask(source, usedMask, [1, 0, 0], 0.4), image] : [source, image]),
      join(ctx.dir, 'side-by-side.png'),
    );
    files.push('side-by-side.png');
  }
  return files;
}
