/**
 * Dataset splits by seed range. A scene is a pure function of its seed, so splitting the seed space splits the
 * data: training draws seeds from the low half of the 32-bit range and benchmarks from the high half, and no
 * benchmark image is ever a training image. (Classes and backgrounds are shared: held-out means unseen
 * pictures, not unseen concepts.)
 */
import { UserError } from '../util/errors.js';

export const SPLITS = ['train', 'heldout'] as const;
export type Split = (typeof SPLITS)[number];

/** Half-open seed ranges [start, end). */
export const SPLIT_RANGES: Readonly<Record<Split, { start: number; end: number }>> = {
  train: { start: 0, end: 2 ** 31 },
  heldout: { start: 2 ** 31, end: 2 ** 32 },
};

export function splitOfSeed(seed: number): Split {
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32)
    throw new RangeError(`scene seeds are 0 to 2^32 − 1, got ${seed}`);
  return seed < SPLIT_RANGES.train.end ? 'train' : 'heldout';
}

/** The seed of the `index`-th scene of `split`. */
export function splitSeed(split: Split, index: number): number {
  const { start, end } = SPLIT_RANGES[split];
  if (!Number.isInteger(index) || index < 0 || start + index >= end) {
    throw new UserError(`index ${index} is outside the ${split} split (0 to ${end - start - 1})`);
  }
  return start + index;
}

/** `count` consecutive seeds of `split`, from the `offset`-th. */
export function splitSeeds(split: Split, count: number, offset = 0): number[] {
  if (count > 0) splitSeed(split, offset + count - 1);
  return Array.from({ length: count }, (_, k) => splitSeed(split, offset + k));
}
