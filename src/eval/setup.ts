/**
 * What every front end of the suite (`editkit eval`, `bench diffedit`, `bench drag`) sets up the same way: the
 * scoring networks, and the versions a run records.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { PerceptualDistance } from '../metrics/perceptual.js';
import type { StableDiffusionBundle } from '../models/bundle.js';
import { ClipModel } from '../models/clip.js';
import { EmojiJudge } from '../models/judge.js';
import { DiftFeaturizer, type DiftOptions } from '../pipelines/drag/dift.js';
import { UserError } from '../util/errors.js';
import type { LmmScorer } from './lmm.js';
import type { Scorers } from './metrics.js';

export interface ScorerSetup {
  /** The judge (success, LPIPS-style features) and the CLIP; each checked to exist, with the flag named. */
  judge: { dir: string; flag: string };
  clip: { dir: string; flag: string };
  /** DIFT matching for Mean Distance on cases with drag points (loads a second copy of the UNet's decoder). */
  dift?: DiftOptions;
  lmm?: LmmScorer;
}

/** The scorers of a run, and how to let go of them. */
export async function loadScorers(
  bundle: StableDiffusionBundle,
  setup: ScorerSetup,
): Promise<Scorers & { release: () => Promise<void> }> {
  for (const { dir, flag } of [setup.judge, setup.clip])
    if (!existsSync(dir)) throw new UserError(`no ${flag.slice(2)} model at '${dir}'; give ${flag} DIR`);
  const judge = await EmojiJudge.load(setup.judge.dir, bundle.device);
  const clip = await ClipModel.load(setup.clip.dir, { device: bundle.device });
  const perceptual = await PerceptualDistance.fromJudge(setup.judge.dir, bundle.device);
  const dift = setup.dift ? await DiftFeaturizer.create(bundle, setup.dift) : undefined;
  return {
    judge,
    clip,
    perceptual,
    dift,
    lmm: setup.lmm,
    release: async () => {
      await Promise.all([judge.release(), clip.release(), perceptual.release(), dift?.release()]);
    },
  };
}

/** EditKit's, ONNX Runtime's and Node's versions, recorded with every run. */
export function runVersions(): Record<string, string> {
  // src/eval and dist/eval are both two folders below the package root.
  const path = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json');
  const editkit = existsSync(path)
    ? String((JSON.parse(readFileSync(path, 'utf8')) as { version?: string }).version)
    : 'unknown';
  return {
    editkit,
    'onnxruntime-node': String(ort.env.versions.common ?? 'unknown'),
    node: process.version,
  };
}
