/**
 * The `editkit` command as a user runs it: a built dist/cli/main.js in a child process (`npm test` builds first).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NDArray } from '../../src/runtime/ndarray.js';
import { Generator } from '../../src/runtime/random.js';
import { encodeNpy } from '../../src/util/npy.js';

const ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const TINY = join(ROOT, 'tests', 'fixtures', 'bundles', 'tiny-sd');
const INPAINT = join(ROOT, 'tests', 'fixtures', 'bundles', 'tiny-sd-inpaint');
const work = mkdtempSync(join(tmpdir(), 'editkit-cli-'));

function editkit(...args: string[]) {
  const result = spawnSync(process.execPath, [CLI, ...args], {
    encoding: 'utf8',
    env: { ...process.env, EDITKIT_DEBUG: '' },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` (npm test does)`);
  await sharp({ create: { width: 40, height: 36, channels: 3, background: { r: 200, g: 120, b: 40 } } })
    .png()
    .toFile(join(work, 'in.png'));
  await sharp({ create: { width: 40, height: 36, channels: 3, background: { r: 0, g: 0, b: 0 } } })
    .composite([
      {
        input: Buffer.from(
          '<svg width="40" height="36"><rect x="8" y="8" width="16" height="16" fill="white"/></svg>',
        ),
        left: 0,
        top: 0,
      },
    ])
    .png()
    .toFile(join(work, 'mask.png'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('editkit generate', () => {
  it('writes an image and reports JSON', async () => {
    const out = join(work, 'gen.png');
    const r = editkit(
      'generate',
      '--model',
      TINY,
      '--prompt',
      'a cat',
      '--steps',
      '3',
      '--seed',
      '7',
      '--device',
      'cpu',
      '--out',
      out,
      '--json',
    );
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { seed: number; width: number; height: number; device: string };
    expect(summary).toMatchObject({ seed: 7, width: 32, height: 32, device: 'cpu' });
    const meta = await sharp(out).metadata();
    expect([meta.width, meta.height, meta.format]).toEqual([32, 32, 'png']);
  });

  it('is reproducible for a seed', async () => {
    const a = join(work, 'a.png');
    const b = join(work, 'b.png');
    for (const out of [a, b])
      expect(
        editkit(
          'generate',
          '--model',
          TINY,
          '-p',
          'a dog',
          '--steps',
          '2',
          '--seed',
          '3',
          '--device',
          'cpu',
          '-o',
          out,
        ).code,
      ).toBe(0);
    const [pa, pb] = await Promise.all([sharp(a).raw().toBuffer(), sharp(b).raw().toBuffer()]);
    expect(pa.equals(pb)).toBe(true);
  });

  it('takes explicit initial latents from .npy and sizes the image from them', async () => {
    const latents = join(work, 'latents.npy');
    writeFileSync(latents, encodeNpy(new Generator(1).randn([1, 4, 6, 10]))); // 6×10 latents, ×4: 24×40 pixels
    const out = join(work, 'from-latents.webp');
    const r = editkit(
      'generate',
      '--model',
      TINY,
      '-p',
      'x',
      '--steps',
      '2',
      '--init-latents',
      latents,
      '--device',
      'cpu',
      '-o',
      out,
      '--json',
    );
    expect(r.code, r.stderr).toBe(0);
    const meta = await sharp(out).metadata();
    expect([meta.width, meta.height, meta.format]).toEqual([40, 24, 'webp']);
  });
});

describe('editkit img2img / inpaint / invert', () => {
  it('img2img resizes the input to a multiple of the VAE factor', async () => {
    const out = join(work, 'i2i.jpg');
    const r = editkit(
      'img2img',
      join(work, 'in.png'),
      '--model',
      TINY,
      '-p',
      'a cat',
      '--strength',
      '0.5',
      '--steps',
      '4',
      '--seed',
      '1',
      '--device',
      'cpu',
      '-o',
      out,
      '--json',
    );
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ steps: 2, strength: 0.5 });
    const meta = await sharp(out).metadata();
    expect([meta.width, meta.height]).toEqual([40, 32]); // 40×36 rounded down to multiples of 8
  });

  it('inpaint uses the 9-channel UNet or latent blending', () => {
    for (const [model, method] of [
      [INPAINT, 'channels'],
      [TINY, 'blend'],
    ]) {
      const r = editkit(
        'inpaint',
        join(work, 'in.png'),
        '--mask',
        join(work, 'mask.png'),
        '--model',
        model,
        '-p',
        'an apple',
        '--steps',
        '3',
        '--seed',
        '2',
        '--device',
        'cpu',
        '-o',
        join(work, `inpaint-${method}.png`),
        '--json',
      );
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).method).toBe(method);
    }
  });

  it('invert writes latents, intermediates and a reconstruction', async () => {
    const out = join(work, 'inv.npy');
    const r = editkit(
      'invert',
      join(work, 'in.png'),
      '--model',
      TINY,
      '--steps',
      '5',
      '--device',
      'cpu',
      '-o',
      out,
      '--intermediates',
      join(work, 'all.npy'),
      '--reconstruction',
      join(work, 'rec.png'),
      '--json',
    );
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { shape: number[]; timesteps: number[] };
    expect(summary.shape).toEqual([1, 4, 8, 10]);
    expect(summary.timesteps).toHaveLength(5);
    expect(existsSync(join(work, 'rec.png'))).toBe(true);
    const { readNpy } = await import('../../src/util/npy.js');
    expect((await readNpy(join(work, 'all.npy'))).shape).toEqual([6, 4, 8, 10]);
  });
});

describe('editkit edit (DiffEdit)', () => {
  it('writes the edit, the mask and a side-by-side picture', async () => {
    const r = editkit(
      'edit',
      join(work, 'in.png'),
      '--model',
      TINY,
      '--to',
      'a dog',
      '--from',
      'a cat',
      '--steps',
      '5',
      '--mask-draws',
      '2',
      '--seed',
      '4',
      '--device',
      'cpu',
      '-o',
      join(work, 'edit.png'),
      '--save-mask',
      join(work, 'edit-mask.png'),
      '--side-by-side',
      join(work, 'edit-sbs.png'),
      '--json',
    );
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { maskFraction: number; seed: number };
    expect(summary.seed).toBe(4);
    expect(summary.maskFraction).toBeGreaterThanOrEqual(0);
    const sbs = await sharp(join(work, 'edit-sbs.png')).metadata();
    expect([sbs.width, sbs.height]).toEqual([3 * 40 + 2 * 8, 32]);
    const mask = await sharp(join(work, 'edit-mask.png')).metadata();
    expect([mask.width, mask.height]).toEqual([40, 32]);
  });

  it('shows every default in --help', () => {
    const r = editkit('edit', '--help');
    expect(r.code).toBe(0);
    for (const d of [
      '(default: 0.8)',
      '(default: 0.5)',
      '(default: 10)',
      '(default: 3)',
      '(default: 50)',
      '(default: 7.5)',
      '(default: "replace")',
      '(default: "ddim")',
    ]) {
      expect(r.stdout.replace(/\s+/g, ' ')).toContain(d);
    }
  });
});

describe('user errors: one line, exit 2, no stack trace, no output file', () => {
  const cases: [string, string[], RegExp][] = [
    [
      'missing model folder',
      ['generate', '--model', '/nonexistent', '-p', 'x', '-o', 'OUT.png'],
      /model folder '\/nonexistent' does not exist/,
    ],
    [
      'bad steps',
      ['generate', '--model', TINY, '-p', 'x', '--steps', 'ten', '-o', 'OUT.png'],
      /--steps must be an integer/,
    ],
    [
      'bad device',
      ['generate', '--model', TINY, '-p', 'x', '--device', 'tpu', '-o', 'OUT.png'],
      /unknown device 'tpu'/,
    ],
    [
      'bad width',
      ['generate', '--model', TINY, '-p', 'x', '--width', '30', '-o', 'OUT.png'],
      /width must be a positive multiple of 8 for this model, got 30/,
    ],
    [
      'unknown extension',
      ['generate', '--model', TINY, '-p', 'x', '--steps', '1', '-o', 'OUT.bmpx'],
      /extension/i,
    ],
    [
      'missing input image',
      ['img2img', 'missing.png', '--model', TINY, '-p', 'x', '-o', 'OUT.png'],
      /missing\.png/,
    ],
    [
      // Checked before the model loads: the model folder does not even exist.
      'output extension, before any model or device',
      ['generate', '--model', '/nonexistent', '-p', 'x', '-o', 'OUT.bmpx'],
      /cannot save image .*unknown extension '\.bmpx'/,
    ],
    [
      'missing input, before any model or device',
      ['edit', 'missing.png', '--model', '/nonexistent', '--to', 'x', '-o', 'OUT.png'],
      /cannot read '.*missing\.png': no such file/,
    ],
    ['missing prompt', ['generate', '--model', TINY, '-o', 'OUT.png'], /required option.*--prompt/],
    [
      'latents of the wrong shape',
      ['generate', '--model', TINY, '-p', 'x', '--init-latents', 'BAD_LATENTS', '-o', 'OUT.png'],
      /initial latents have shape \[1, 3, 8, 8\]/,
    ],
    [
      'output overwrites the input',
      ['img2img', 'IN', '--model', TINY, '-p', 'x', '-o', 'IN'],
      /is also an input/,
    ],
    [
      'strength out of range',
      ['img2img', 'IN', '--model', TINY, '-p', 'x', '--strength', '1.5', '-o', 'OUT.png'],
      /--strength must be a number/,
    ],
    [
      'unknown scheduler',
      ['generate', '--model', TINY, '-p', 'x', '--scheduler', 'pndm', '-o', 'OUT.png'],
      /ddim/,
    ],
  ];
  it.each(cases)('%s', (_name, rawArgs, message) => {
    const dir = mkdtempSync(join(work, 'err-'));
    writeFileSync(join(dir, 'bad.npy'), encodeNpy(NDArray.zeros([1, 3, 8, 8])));
    const args = rawArgs.map((a) =>
      a === 'OUT.png' || a === 'OUT.bmpx'
        ? join(dir, a)
        : a === 'BAD_LATENTS'
          ? join(dir, 'bad.npy')
          : a === 'IN'
            ? join(work, 'in.png')
            : a === 'missing.png'
              ? join(dir, a)
              : a,
    );
    const r = editkit(...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(r.stderr).not.toMatch(NATIVE_NOISE);
    expect(r.stderr.trim().split('\n').length).toBeLessThanOrEqual(2); // the message (and commander's help hint)
    expect(readdirSync(dir).sort()).toEqual(['bad.npy']); // no (half-)written output
  });
});

// What Dawn, Mesa and ORT print natively on some machines (CI installs Mesa's Vulkan drivers to provoke it).
const NATIVE_NOISE =
  /XDG_RUNTIME_DIR|Vulkan|BackendVk|PhysicalDevice|VerifyEachNodeIsAssignedToAnEp|\[W:onnxruntime/;

describe('devices', () => {
  it('lists the providers and what auto picks, as JSON, with no native noise', () => {
    const r = editkit('devices', '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as {
      devices: { name: string; available: boolean; detail: string }[];
      auto: { device: string; reason: string };
    };
    expect(report.devices.map((d) => d.name)).toEqual(['cpu', 'webgpu', 'cuda']);
    expect(report.devices[0].available).toBe(true);
    expect(['cpu', 'webgpu', 'cuda']).toContain(report.auto.device);
    expect(report.auto.reason.length).toBeGreaterThan(0);
    expect(r.stderr).not.toMatch(NATIVE_NOISE);
    const human = editkit('devices');
    expect(human.stdout).toMatch(/--device auto → (cpu|webgpu|cuda) \(/);
  });

  it('--device webgpu on the machine’s own Vulkan drivers either runs or says so in one line, quietly', () => {
    // No VK_ICD_FILENAMES: the loader sees what is installed (on CI: Mesa's drivers and no GPU, so no adapter).
    const out = join(work, 'webgpu-own.png');
    const env: NodeJS.ProcessEnv = { ...process.env, EDITKIT_DEBUG: '' };
    for (const key of ['VK_ICD_FILENAMES', 'VK_DRIVER_FILES', 'NODEVICE_SELECT']) delete env[key];
    const result = spawnSync(
      process.execPath,
      [
        CLI,
        'generate',
        '--model',
        TINY,
        '--prompt',
        'a cat',
        '--steps',
        '1',
        '--device',
        'webgpu',
        '--out',
        out,
      ],
      { encoding: 'utf8', env },
    );
    expect(result.stderr).not.toMatch(NATIVE_NOISE);
    if (result.status === 0) expect(existsSync(out)).toBe(true);
    else {
      expect(result.status).toBe(2);
      expect(result.stderr.trim()).toMatch(
        /^editkit: error: no WebGPU adapter was found on this machine \(.+\); .*use --device cpu$/,
      );
      expect(existsSync(out)).toBe(false);
    }
  });

  it('a run with --device auto is quiet on stderr apart from its own lines', () => {
    const out = join(work, 'auto.png');
    const r = editkit('generate', '--model', TINY, '--prompt', 'a cat', '--steps', '2', '--out', out);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toMatch(NATIVE_NOISE);
    expect(existsSync(out)).toBe(true);
  });
});
