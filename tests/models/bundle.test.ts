import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { StableDiffusionBundle, pythonJsonToJson } from '../../src/models/bundle.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import { IntArray, ModelSession, type Feed } from '../../src/runtime/session.js';
import { ModelError } from '../../src/util/errors.js';
import { readNpy } from '../../src/util/npy.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
const BUNDLES = join(FIXTURES, 'bundles');
const COMPONENTS = join(FIXTURES, 'parity', 'components');

const opened: StableDiffusionBundle[] = [];
async function load(name: string): Promise<StableDiffusionBundle> {
  const bundle = await StableDiffusionBundle.load(join(BUNDLES, name), { device: 'cpu', intraOpNumThreads: 1 });
  opened.push(bundle);
  return bundle;
}
afterAll(async () => {
  for (const b of opened) await b.release();
});

describe('bundle variants', () => {
  it('reads an SD 1.5-style Optimum export', async () => {
    const b = await load('tiny-sd');
    expect(b.vaeScaleFactor).toBe(4);
    expect(b.sizeMultiple).toBe(8); // VAE ×4, UNet (16, 32) blocks ×2
    expect(b.latentChannels).toBe(4);
    expect(b.unetInChannels).toBe(4);
    expect(b.isInpaintingUNet).toBe(false);
    expect(b.vaeScalingFactor).toBe(0.18215); // no scaling_factor in its config: the default
    expect(b.textEncoder.session.input('input_ids').type).toBe('int32');
    expect(b.unet.session.input('timestep').type).toBe('int64');
    expect((await b.vaeEncoder()).returnsParameters).toBe(true);
  });

  it('reads an SD2-style export: int64 ids, float scalar timestep, latent_sample, external data, factor 2', async () => {
    const b = await load('tiny-sd2-v');
    expect(b.vaeScaleFactor).toBe(2);
    expect(b.sizeMultiple).toBe(4);
    expect(b.vaeScalingFactor).toBe(0.13025);
    expect(b.textEncoder.session.input('input_ids').type).toBe('int64');
    expect(b.unet.session.input('timestep')).toMatchObject({ type: 'float32', shape: [] });
    expect((await b.vaeEncoder()).returnsParameters).toBe(false);
    expect(b.tokenizer.padTokenId).toBe(0);
  });

  it('recognises a 9-channel inpainting UNet', async () => {
    const b = await load('tiny-sd-inpaint');
    expect(b.unetInChannels).toBe(9);
    expect(b.isInpaintingUNet).toBe(true);
  });

  it('loads an fp16 export', async () => {
    const b = await load('tiny-sd-fp16');
    expect(b.unet.session.input('sample').type).toBe('float16');
  });
});

describe('broken bundles get errors that name the file and what was expected', () => {
  const cases: [string, RegExp][] = [
    ['missing-unet', /unet[/\\]model\.onnx'.*expected the unet ONNX model/],
    ['missing-model-index', /model_index\.json'.*expected the pipeline index/],
    ['latent-channel-mismatch', /unet[/\\]model\.onnx' takes 5 input channels.*expected 4, or 9/],
    ['cross-attention-mismatch', /expects text embeddings of width 24.*produces 16/],
    ['sdxl-index', /SDXL/],
    ['missing-external-data', /external weight file/],
  ];
  it.each(cases)('%s', async (name, message) => {
    const attempt = StableDiffusionBundle.load(join(BUNDLES, 'broken', name), { device: 'cpu' });
    await expect(attempt).rejects.toThrow(ModelError);
    await expect(StableDiffusionBundle.load(join(BUNDLES, 'broken', name), { device: 'cpu' })).rejects.toThrow(message);
  });

  it('a folder that does not exist', async () => {
    await expect(StableDiffusionBundle.load(join(BUNDLES, 'nope'))).rejects.toThrow(/model folder .*nope' does not exist/);
  });
});

describe('component parity with PyTorch (fixed inputs, one call each)', () => {
  interface Entry {
    model: string;
    inputs: Record<string, { file: string; dtype: string }>;
    outputs: Record<string, { file: string }>;
  }
  const manifest = JSON.parse(readFileSync(join(COMPONENTS, 'manifest.json'), 'utf8')) as {
    bundles: Record<string, Record<string, Entry>>;
  };
  const rows = Object.entries(manifest.bundles).flatMap(([bundle, components]) =>
    Object.entries(components).map(([component, entry]) => [bundle, component, entry] as const),
  );
  it.each(rows)('%s %s', async (bundle, component, entry) => {
    const session = await ModelSession.create(join(BUNDLES, entry.model), { device: 'cpu', intraOpNumThreads: 1 });
    const feeds: Record<string, Feed> = {};
    for (const [name, input] of Object.entries(entry.inputs)) {
      const value = await readNpy(join(COMPONENTS, input.file));
      feeds[name] = input.dtype.startsWith('int') ? new IntArray(Int32Array.from(value.data), value.shape) : value;
    }
    const outputs = await session.run(feeds);
    // fp16 models: the reference is fp32 PyTorch on fp16-rounded inputs, so half-precision rounding dominates.
    const tolerance = bundle.endsWith('fp16') ? 2e-2 : 5e-5;
    for (const [name, output] of Object.entries(entry.outputs)) {
      const expected = await readNpy(join(COMPONENTS, output.file));
      const actual: NDArray = outputs[name];
      expect(actual.shape).toEqual(expected.shape);
      const scale = Math.max(1, ...Array.from(expected.data, Math.abs));
      expect(actual.maxAbsDiff(expected) / scale, `${bundle}/${component}/${name}`).toBeLessThan(tolerance);
    }
    await session.release();
  });
});

describe('config parsing', () => {
  it("accepts Python's bare Infinity/NaN in diffusers configs", () => {
    const parsed = JSON.parse(pythonJsonToJson('{"lambda_min_clipped": -Infinity, "x": [NaN, Infinity], "s": "Infinity"}'));
    expect(parsed).toEqual({ lambda_min_clipped: -Infinity, x: [null, Infinity], s: 'Infinity' });
  });
});
