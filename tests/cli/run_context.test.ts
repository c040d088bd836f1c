/**
 * withBundle reports the user's mistakes before any model loads or any device is probed (issue 10): the size
 * multiple comes from the model's config files alone.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { withBundle } from '../../src/cli/run_context.js';
import { StableDiffusionBundle } from '../../src/models/bundle.js';
import { EMOJI_LDM } from '../support/bundled_model.js';

const TINY = join(import.meta.dirname, '..', 'fixtures', 'bundles', 'tiny-sd');

afterEach(() => vi.restoreAllMocks());

describe('withBundle', () => {
  it('knows the size multiple from the configs: 8 for the tiny bundle, 16 for the bundled model', () => {
    expect(StableDiffusionBundle.sizeMultipleFromConfig(TINY)).toBe(8);
    expect(StableDiffusionBundle.sizeMultipleFromConfig(EMOJI_LDM)).toBe(16);
    expect(StableDiffusionBundle.sizeMultipleFromConfig(join(TINY, 'nowhere'))).toBeUndefined();
  });

  it('refuses a width the model cannot take without loading the model (so without probing a device)', async () => {
    const load = vi.spyOn(StableDiffusionBundle, 'load');
    const run = vi.fn();
    await expect(
      withBundle(
        { model: TINY, device: 'auto', width: 30, json: true } as Parameters<typeof withBundle>[0],
        'x',
        run,
      ),
    ).rejects.toThrow(/width must be a positive multiple of 8 for this model, got 30/);
    await expect(
      withBundle(
        { model: EMOJI_LDM, device: 'auto', height: 72, json: true } as Parameters<typeof withBundle>[0],
        'x',
        run,
      ),
    ).rejects.toThrow(/height must be a positive multiple of 16 for this model, got 72/);
    expect(load).not.toHaveBeenCalled();
    expect(run).not.toHaveBeenCalled();
  });
});
