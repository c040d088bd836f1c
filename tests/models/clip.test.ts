/**
 * The CLIP loader on the bundled models/emoji-clip: preprocessing, unit embeddings, image→text retrieval on held-out
 * renders (its model card says 94.7% top-1 in groups of 64; here 16 scenes, a bar of 75%), and the directional
 * similarity's geometry.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipModel, cosineRows, directionalSimilarity } from '../../src/models/clip.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import { ModelError } from '../../src/util/errors.js';
import { caption } from '../../src/world/caption.js';
import { renderScene } from '../../src/world/render.js';
import { sampleScene } from '../../src/world/scene.js';
import { splitSeeds } from '../../src/world/splits.js';
import { rgb8ToTensor } from '../../src/image/io.js';
import { bundledWorldSubset, EMOJI_LDM } from '../support/bundled_model.js';

const CLIP_DIR = join(EMOJI_LDM, '..', 'emoji-clip');
let clip: ClipModel;
beforeAll(async () => {
  clip = await ClipModel.load(CLIP_DIR);
});
afterAll(async () => {
  await clip.release();
});

describe('ClipModel (bundled emoji-clip)', () => {
  it('reads the preprocessing from config.json and returns unit embeddings', async () => {
    expect(clip.processing.size).toBe(64);
    expect(clip.processing.mean[0]).toBeCloseTo(0.48145466, 8);
    const images = NDArray.zeros([2, 3, 32, 32]).map((_, i) => (i % 97) / 97);
    const e = await clip.embedImages(images);
    expect(e.shape).toEqual([2, 128]);
    for (const n of cosineRows(e, e)) expect(n).toBeCloseTo(1, 5);
    const t = await clip.embedTexts(['a cat on the grass', 'a car on the road']);
    expect(t.shape).toEqual([2, 128]);
    for (const n of cosineRows(t, t)) expect(n).toBeCloseTo(1, 5);
  });

  it('finds the caption of held-out renders among 16 (image → text top-1 ≥ 75%)', async () => {
    const scene = { ...bundledWorldSubset().scene, width: 64, height: 64 };
    const scenes = splitSeeds('heldout', 16, 300).map((seed) => sampleScene(seed, scene));
    const renders = await Promise.all(scenes.map(renderScene));
    const images = NDArray.concat(
      renders.map((r) => rgb8ToTensor({ data: r.image, width: 64, height: 64 }, '[0,1]')),
    );
    const e = await clip.embedImages(images);
    const t = await clip.embedTexts(scenes.map((s) => caption(s)));
    let correct = 0;
    for (let i = 0; i < 16; i++) {
      let best = -1;
      let bestScore = -Infinity;
      for (let j = 0; j < 16; j++) {
        let s = 0;
        for (let k = 0; k < 128; k++) s += e.data[i * 128 + k] * t.data[j * 128 + k];
        if (s > bestScore) [best, bestScore] = [j, s];
      }
      if (best === i) correct++;
    }
    console.info(`[clip] image→text top-1 among 16 held-out renders: ${correct}/16`);
    expect(correct / 16).toBeGreaterThanOrEqual(0.75);
  });

  it('directional similarity: 1 along the text direction, −1 against it, 0 across', () => {
    const v = (...x: number[]) => new NDArray(Float32Array.from(x), [1, x.length]);
    const src = v(1, 0, 0);
    expect(directionalSimilarity(src, v(1, 1, 0), v(0, 0, 0), v(0, 2, 0))[0]).toBeCloseTo(1, 6);
    expect(directionalSimilarity(src, v(1, -1, 0), v(0, 0, 0), v(0, 2, 0))[0]).toBeCloseTo(-1, 6);
    expect(directionalSimilarity(src, v(1, 0, 1), v(0, 0, 0), v(0, 2, 0))[0]).toBeCloseTo(0, 6);
  });

  it('refuses a folder that is not a CLIP', async () => {
    await expect(ClipModel.load(join(EMOJI_LDM, 'nowhere'))).rejects.toThrow(ModelError);
    await expect(ClipModel.load(EMOJI_LDM)).rejects.toThrow(/is not a CLIP folder/);
  });
});

describe('ClipModel (transformers/Optimum layout, random weights)', () => {
  const dir = join(import.meta.dirname, '..', 'fixtures', 'clip-optimum');
  const reference = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as {
    image01: number[];
    image_embeds: number[];
    input_ids: number[][];
    attention_mask: number[][];
    text_embeds: number[][];
  };
  const unit = (v: number[]) => {
    const n = Math.hypot(...v);
    return v.map((x) => x / n);
  };

  it('reads preprocessor_config.json and matches PyTorch on both towers (int64 ids, attention mask)', async () => {
    const optimum = await ClipModel.load(dir);
    try {
      expect(optimum.processing).toEqual({ size: 32, mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] });
      const image = await optimum.embedImages(new NDArray(Float32Array.from(reference.image01), [1, 3, 32, 32]));
      const want = unit(reference.image_embeds);
      expect(Math.max(...want.map((v, i) => Math.abs(v - image.data[i])))).toBeLessThan(1e-5);
      const shape: [number, number] = [2, 24];
      const text = await optimum.embedTokens(
        Int32Array.from(reference.input_ids.flat()),
        Int32Array.from(reference.attention_mask.flat()),
        shape,
      );
      const wantText = reference.text_embeds.flatMap(unit);
      expect(Math.max(...wantText.map((v, i) => Math.abs(v - text.data[i])))).toBeLessThan(1e-5);
      expect((await optimum.embedTexts(['a cat on the grass'])).shape).toEqual([1, 16]);
    } finally {
      await optimum.release();
    }
  });
});
