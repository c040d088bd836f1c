/** The DiffusionCLIP bench's scoring helpers: SDEdit at equal preservation, and style progress on a region. */
import { describe, expect, it } from 'vitest';
import { successAtPreservation } from '../../src/bench/diffusion_clip.js';
import { gaussianBlur, regionProgress } from '../../src/bench/diffusion_clip_multi.js';
import { NDArray } from '../../src/runtime/ndarray.js';

describe('successAtPreservation', () => {
  const sweep = [
    { objectPsnr: 19, success: 0, objectsKept: 0.8 },
    { objectPsnr: 13, success: 0.6, objectsKept: 0.5 },
    { objectPsnr: 15, success: 0.2, objectsKept: 0.7 },
  ];
  it('interpolates linearly along the sweep sorted by PSNR', () => {
    expect(successAtPreservation(sweep, 14)).toBeCloseTo(0.4, 10);
    expect(successAtPreservation(sweep, 17)).toBeCloseTo(0.1, 10);
    expect(successAtPreservation(sweep, 14, 'objectsKept')).toBeCloseTo(0.6, 10);
  });
  it('holds the end points outside the sweep, and is NaN without one', () => {
    expect(successAtPreservation(sweep, 25)).toBe(0);
    expect(successAtPreservation(sweep, 10)).toBe(0.6);
    expect(successAtPreservation([], 15)).toBeNaN();
  });
});

describe('regionProgress', () => {
  const from = new NDArray(Float32Array.from([0, 0, 0, 0, 0, 0]), [1, 3, 1, 2]);
  const to = new NDArray(Float32Array.from([1, 1, 1, 1, 1, 1]), [1, 3, 1, 2]);
  const region = new NDArray(Float32Array.from([1, 0]), [1, 1, 1, 2]);
  it('is 0 unchanged, 1 at the target, the projection in between, and ignores pixels outside the region', () => {
    expect(regionProgress(from, from, to, region, 0)).toBe(0);
    expect(regionProgress(to, from, to, region, 0)).toBe(1);
    const half = new NDArray(Float32Array.from([0.5, 9, 0.5, 9, 0.5, 9]), [1, 3, 1, 2]);
    expect(regionProgress(half, from, to, region, 0)).toBeCloseTo(0.5, 10);
    // A change orthogonal to to − from does not count.
    const orthogonal = new NDArray(Float32Array.from([0.3, 0, -0.3, 0, 0, 0]), [1, 3, 1, 2]);
    expect(regionProgress(orthogonal, from, to, region, 0)).toBeCloseTo(0, 10);
  });
});

describe('regionProgress through its low-pass', () => {
  it('counts a change of shading, and much less of a blur of the same image', () => {
    // A sharp 16 × 16 square (the "flat" artwork) and the same square shaded left to right (the "glossy" one).
    const size = 16;
    const flat = new Float32Array(3 * size * size);
    const shaded = new Float32Array(3 * size * size);
    const region = new Float32Array(size * size);
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < size; y++)
        for (let x = 0; x < size; x++) {
          const inside = x >= 4 && x < 12 && y >= 4 && y < 12;
          flat[(c * size + y) * size + x] = inside ? 0.8 : 0.2;
          shaded[(c * size + y) * size + x] = inside ? 0.5 + (0.5 * (x - 4)) / 7 : 0.2;
          if (c === 0) region[y * size + x] = inside ? 1 : 0;
        }
    const shape = [1, 3, size, size];
    const from = new NDArray(flat, shape);
    const to = new NDArray(shaded, shape);
    const mask = new NDArray(region, [1, 1, size, size]);
    expect(regionProgress(to, from, to, mask)).toBeCloseTo(1, 6);
    const blurred = gaussianBlur(from, 1);
    const raw = regionProgress(blurred, from, to, mask, 0);
    const lowPassed = regionProgress(blurred, from, to, mask);
    expect(Math.abs(lowPassed)).toBeLessThan(Math.abs(raw));
  });
  it('blurs a constant image to itself', () => {
    const flat = NDArray.full([1, 3, 5, 7], 0.25);
    expect(Math.max(...gaussianBlur(flat, 2).data.map((v) => Math.abs(v - 0.25)))).toBeLessThan(1e-6);
  });
});

describe('bench diffusion-clip --multi on the bundled model (one scene, one training image)', () => {
  it('scores every row, gates style on the objects kept, and reports CLIP on the ground truth', async () => {
    const { mkdtemp, readFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { StableDiffusionBundle } = await import('../../src/models/bundle.js');
    const { ClipModel } = await import('../../src/models/clip.js');
    const { EmojiJudge } = await import('../../src/models/judge.js');
    const { benchDiffusionClipMulti, multiMarkdown } =
      await import('../../src/bench/diffusion_clip_multi.js');
    const { EMOJI_LDM, bundledWorldSubset } = await import('../support/bundled_model.js');
    const out = await mkdtemp(join(tmpdir(), 'editkit-dclip-multi-'));
    const bundle = await StableDiffusionBundle.load(EMOJI_LDM, { device: 'cpu', intraOpNumThreads: 1 });
    const clip = await ClipModel.load(join(EMOJI_LDM, '..', 'emoji-clip'), { intraOpNumThreads: 1 });
    const judge = await EmojiJudge.load(join(EMOJI_LDM, '..', 'emoji-judge'));
    try {
      const size = bundle.defaultImageSize;
      const report = await benchDiffusionClipMulti(bundle, clip, judge, {
        from: 'sand',
        to: 'plain purple',
        attribute: 'style',
        finetune: {
          trainImages: 1,
          epochs: 1,
          gradient: 'per-step',
          adapter: 'lora',
          generationSteps: 2,
          texts: 'captions',
          views: 'whole',
        },
        split: 'validation',
        cases: 1,
        steps: 4,
        strengthSweep: [0.5],
        mix: [1, 1],
        scene: { ...bundledWorldSubset().scene, width: size, height: size },
        examples: 1,
        out,
        threads: 1,
        log: () => {},
      });
      const row = (name: string) => report.summary.find((s) => s.method.startsWith(name))!;
      expect(report.summary.map((s) => s.method)).toHaveLength(7);
      expect(row('input')).toMatchObject({ styleSuccess: 0, styleProgress: 0, objectsKept: 1 });
      // The two-attribute ground truth moves (nearly: its new background bleeds into the low-passed object edges)
      // all the way; its style counts only if the judge still finds the same objects.
      const truth = row('ground truth');
      expect(truth.styleProgress).toBeGreaterThan(0.8);
      expect(truth.styleSuccess).toBe(truth.objectsKept);
      for (const s of report.summary) expect(s.styleSuccess).toBeLessThanOrEqual(s.objectsKept);
      const agreement = report.clipAgreement!;
      for (const a of [agreement.background, agreement.style]) {
        expect(a.mean).toBeGreaterThan(-1);
        expect(a.mean).toBeLessThanOrEqual(1);
        expect(a.min).toBeLessThanOrEqual(a.max);
      }
      const saved = JSON.parse(await readFile(join(out, 'results.json'), 'utf8'));
      expect(saved.clipAgreement.style.mean).toBeCloseTo(agreement.style.mean, 10);
      expect(multiMarkdown(report)).toContain('CLIP on the ground truth');
      expect(await readFile(join(out, 'results.md'), 'utf8')).toBe(multiMarkdown(report));
    } finally {
      await bundle.release();
      await clip.release();
      await rm(out, { recursive: true, force: true });
    }
  }, 300_000);
});

describe('bench diffusion-clip-style on the bundled model (two scenes, two training images)', () => {
  it('scores SDEdit, a fine-tuned delta at two scales, the oracle and the pixel probe', async () => {
    const { mkdtemp, readdir, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { benchDiffusionClipStyle } = await import('../../src/bench/diffusion_clip_style.js');
    const { EMOJI_LDM } = await import('../support/bundled_model.js');
    const out = await mkdtemp(join(tmpdir(), 'editkit-dclip-style-'));
    try {
      const rows = await benchDiffusionClipStyle(
        EMOJI_LDM,
        [
          { name: 'sdedit', sdedit: 0.3 },
          { name: 'delta', epochs: 1, generationSteps: 2, scales: [1, 2] },
          { name: 'oracle', oracle: true, epochs: 1, generationSteps: 2 },
          { name: 'pixels', pixels: 3 },
        ],
        { background: 'sand', trainImages: 2, cases: 2, out, threads: 1 },
        () => {},
      );
      expect(rows.map((r) => `${r.variant}${r.scale ?? ''}`)).toEqual([
        'sdedit',
        'delta1',
        'delta2',
        'oracle1',
        'pixels',
      ]);
      for (const r of rows) {
        expect(r.success).toBeLessThanOrEqual(r.objectsKept);
        expect(Number.isFinite(r.progress)).toBe(true);
        expect(r.backgroundPsnr).toBeGreaterThan(10);
      }
      // The larger LoRA scale moves the objects further.
      expect(rows[2].progress).toBeGreaterThan(rows[1].progress);
      const pixels = rows[4];
      expect(pixels.gradientCosine).toBeGreaterThan(-1);
      expect(pixels.gradientCosine).toBeLessThan(1);
      const files = await readdir(out);
      expect(files).toEqual(
        expect.arrayContaining(['delta.safetensors', 'oracle.safetensors', 'pixels.png']),
      );
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 300_000);
});
