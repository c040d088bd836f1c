import { join } from 'node:path';

import { modelWorldSubset, type WorldSubset } from '../../src/world/subsets.js';

/** The bundled default model (committed under models/); the end-to-end tests run on it unconditionally. */
export const EMOJI_LDM = join(import.meta.dirname, '..', '..', 'models', 'emoji-ldm');

/** The EmojiWorld subset the bundled model was trained on: the scenes its end-to-end tests draw. */
export function bundledWorldSubset(): WorldSubset {
  return modelWorldSubset(EMOJI_LDM);
}
