/**
 * Named subsets of EmojiWorld. The bundled default models are trained on the `core` subset, which a 2-core CPU can
 * learn in the training budget (training/README.md says why); the whole world stays available, and every command
 * that samples scenes or edits (`world sample|edit|batch`, the benches) selects a subset with `--subset NAME`, so
 * a user gets scenes the default model knows.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { UserError } from '../util/errors.js';
import type { SampleSceneOptions } from './scene.js';

export interface WorldSubset {
  readonly name: string;
  readonly description: string;
  /** Scene sampling options: size, object counts, classes, backgrounds, probabilities. */
  readonly scene: Readonly<SampleSceneOptions>;
}

const CORE: WorldSubset = {
  name: 'core',
  description:
    'what the bundled default models know: 12 classes of distinct shape and colour, 10 backgrounds, 1–2 objects, ' +
    'default colours, 64×64 px',
  scene: {
    width: 64,
    height: 64,
    minObjects: 1,
    maxObjects: 2,
    classes: [
      'apple',
      'banana',
      'carrot',
      'donut',
      'cat',
      'pig',
      'frog',
      'fish',
      'car',
      'soccer ball',
      'sunflower',
      'penguin',
    ],
    backgrounds: [
      'grass',
      'sand',
      'snow',
      'water',
      'sky',
      'wooden table',
      'brick wall',
      'road',
      'plain yellow',
      'plain purple',
    ],
    colourVariantProbability: 0,
    // Larger than the world's default so that a two-object scene's objects are still ~25 px wide at 64 px.
    scaleRanges: { 1: [0.5, 0.75], 2: [0.4, 0.55] },
  },
};

const FULL: WorldSubset = {
  name: 'full',
  description: 'the whole world: 78 classes, 18 backgrounds, 1–3 objects, colour variants, 128×128 px',
  scene: {},
};

export const WORLD_SUBSETS: Readonly<Record<string, WorldSubset>> = { core: CORE, full: FULL };
export const WORLD_SUBSET_NAMES: readonly string[] = Object.keys(WORLD_SUBSETS);

/** The subset called `name`, or undefined. */
export function findWorldSubset(name: string): WorldSubset | undefined {
  return Object.hasOwn(WORLD_SUBSETS, name) ? WORLD_SUBSETS[name] : undefined;
}

/**
 * The world subset a model was trained on, from the `config.world` entry of its `editkit_training.json` (written
 * by training/train_all.py); the whole world when the model says nothing.
 */
export function modelWorldSubset(modelDir: string): WorldSubset {
  const path = join(modelDir, 'editkit_training.json');
  if (!existsSync(path)) return FULL;
  try {
    const record = JSON.parse(readFileSync(path, 'utf8')) as { config?: { world?: unknown } };
    const name = record.config?.world;
    return typeof name === 'string' ? (findWorldSubset(name) ?? FULL) : FULL;
  } catch {
    return FULL;
  }
}

/** The subset called `name` (a user's `--subset`), else the one `modelDir` was trained on. */
export function resolveWorldSubset(name: string | undefined, modelDir: string): WorldSubset {
  if (name === undefined) return modelWorldSubset(modelDir);
  const subset = findWorldSubset(name);
  if (!subset)
    throw new UserError(`--subset: unknown subset '${name}'; use ${WORLD_SUBSET_NAMES.join(', ')}`);
  return subset;
}
