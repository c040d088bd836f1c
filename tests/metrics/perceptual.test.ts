import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../src/autodiff/index.js';
import { PerceptualDistance } from '../../src/metrics/perceptual.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import { Generator } from '../../src/runtime/random.js';

// Any CNN works as the feature network for these properties; the tiny VAE encoder is at hand.
const ENCODER = join(
  import.meta.dirname,
  '..',
  'fixtures',
  'bundles',
  'tiny-sd',
  'vae_encoder',
  'model.onnx',
);
let metric: PerceptualDistance;
beforeAll(async () => {
  const model = await loadModel(ENCODER);
  const convs = (model.graph?.node ?? []).filter((n) => n.opType === 'Conv').map((n) => n.output![0]);
  metric = await PerceptualDistance.fromModel(ENCODER, convs.slice(0, 3), {
    inputName: 'sample',
    inputSize: 32,
  });
});
afterAll(() => metric.release());

describe('LPIPS-style perceptual distance', () => {
  const gen = new Generator(1);
  const image = gen.randn([1, 3, 32, 32]).map((v) => Math.min(1, Math.max(0, 0.5 + 0.2 * v)));

  it('is zero for identical images and grows with the perturbation', async () => {
    expect(await metric.distance(image, image)).toBe(0);
    const small = image.map((v, i) => Math.min(1, Math.max(0, v + 0.02 * Math.sin(i))));
    const large = image.map((v, i) => Math.min(1, Math.max(0, v + 0.2 * Math.sin(i))));
    const dSmall = await metric.distance(image, small);
    const dLarge = await metric.distance(image, large);
    expect(dSmall).toBeGreaterThan(0);
    expect(dLarge).toBeGreaterThan(dSmall);
  });

  it('only counts the region it is given', async () => {
    // Change the right half only; the left-half distance is much smaller than the right-half one.
    const changed = image.map((v, i) => (i % 32 >= 16 ? 1 - v : v));
    const left = new NDArray(
      Float32Array.from({ length: 1024 }, (_, p) => (p % 32 < 12 ? 1 : 0)),
      [1, 1, 32, 32],
    );
    const right = left.map((v) => 1 - v);
    const dLeft = await metric.distance(image, changed, left);
    const dRight = await metric.distance(image, changed, right);
    expect(dRight).toBeGreaterThan(3 * dLeft);
  });
});

const JUDGE = join(import.meta.dirname, '..', '..', 'models', 'emoji-judge');
describe('the bundled judge as the feature network', () => {
  it.skipIf(!existsSync(join(JUDGE, 'model.onnx')))('uses its stem and every residual stage', async () => {
    const judgeMetric = await PerceptualDistance.fromJudge(JUDGE);
    try {
      expect(judgeMetric.layers).toHaveLength(5);
      const a = NDArray.full([1, 3, 128, 128], 0.5);
      expect(await judgeMetric.distance(a, a)).toBe(0);
      expect(
        await judgeMetric.distance(
          a,
          a.map((v, i) => v + 0.3 * Math.sin(i / 7)),
        ),
      ).toBeGreaterThan(0);
    } finally {
      await judgeMetric.release();
    }
  });
});
