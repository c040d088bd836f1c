/** `editkit drag` (src/cli/commands/drag.ts) on the tiny bundle: outputs, LoRA save/reuse, arrows, errors. */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { readSafetensors } from '../../src/autodiff/safetensors.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { dragCommand } from '../../src/cli/commands/drag.js';
import { saveImage } from '../../src/image/io.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import { UserError } from '../../src/util/errors.js';
import { readNpy } from '../../src/util/npy.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
const TINY = join(FIXTURES, 'bundles', 'tiny-sd');
const dir = mkdtempSync(join(tmpdir(), 'editkit-drag-cli-'));
const input = join(dir, 'in.png');
const mask = join(dir, 'mask.png');
beforeAll(async () => {
  const image = await readNpy(join(FIXTURES, 'parity', 'img2img_ddim', 'image.npy'));
  await saveImage(
    image.map((v) => v / 2 + 0.5),
    input,
  );
  await saveImage(
    NDArray.zeros([1, 3, 32, 32]).map((_, i) => (i % 32 < 24 ? 1 : 0)),
    mask,
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = async (args: string[]) => {
  const writes: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    writes.push(String(chunk));
    return true;
  });
  try {
    await dragCommand()
      .exitOverride()
      .configureOutput({ writeErr: () => {} })
      .parseAsync(args, { from: 'user' });
  } finally {
    spy.mockRestore();
  }
  return writes.join('');
};

const common = [
  '--model',
  TINY,
  '--device',
  'cpu',
  '--threads',
  '1',
  '--steps',
  '4',
  '--ddim-steps',
  '10',
  '--seed',
  '1',
  '--json',
];

describe('editkit drag', () => {
  it('writes the image, the LoRA and the arrows picture, and reuses the LoRA', async () => {
    const out = join(dir, 'out.png');
    const lora = join(dir, 'lora.safetensors');
    const arrows = join(dir, 'arrows.png');
    const json = JSON.parse(
      await run([
        input,
        '--points',
        '8,8:20,14; 20,24:12,26',
        '--mask',
        mask,
        '--prompt',
        'a cat',
        '--lora-steps',
        '3',
        '--lora-rank',
        '2',
        '--save-lora',
        lora,
        '--lora-format',
        'attn-procs',
        '--lora-init',
        'fan-in',
        '--arrows',
        arrows,
        '--out',
        out,
        ...common,
      ]),
    ) as Record<string, unknown>;
    expect(json).toMatchObject({
      command: 'drag',
      out,
      seed: 1,
      lora,
      arrows,
      feature: '/up_blocks.0/upsampler/conv/Conv_output_0',
    });
    expect(Object.keys(json.stageSeconds as object)).toEqual(['lora', 'invert', 'drag', 'denoise']);
    expect((await sharp(out).metadata()).width).toBe(32);
    expect(existsSync(lora)).toBe(true);
    // saved with the official code's key names, read back by --lora below
    const saved = await readSafetensors(lora);
    expect(
      [...saved.tensors.keys()].every((k) => /\.processor\.to_(q|k|v|out)_lora\.(down|up)\.weight$/.test(k)),
    ).toBe(true);
    expect(saved.metadata).toMatchObject({ lora_key_layout: 'attn-procs', lora_init: 'fan-in' });
    // Two 32-px panels, 8 px apart, enlarged ×8 to reach 256 px.
    expect(await sharp(arrows).metadata()).toMatchObject({ width: 576, height: 256 });

    const again = JSON.parse(
      await run([
        input,
        '--points',
        '8,8:20,14; 20,24:12,26',
        '--mask',
        mask,
        '--prompt',
        'a cat',
        '--lora',
        lora,
        '--out',
        join(dir, 'again.png'),
        ...common,
      ]),
    ) as Record<string, unknown>;
    expect(again.lora).toBe(lora);
    const [a, b] = await Promise.all([
      sharp(out).raw().toBuffer(),
      sharp(join(dir, 'again.png')).raw().toBuffer(),
    ]);
    expect(Buffer.compare(a, b)).toBe(0);
  });

  it('refuses malformed and out-of-image points, and a mask that lets nothing change', async () => {
    await expect(run([input, '--points', '8,8', '--out', join(dir, 'x.png'), ...common])).rejects.toThrow(
      /incomplete/,
    );
    await expect(
      run([input, '--points', '8,8:40,8', '--out', join(dir, 'x.png'), ...common]),
    ).rejects.toThrow(UserError);
    await expect(
      run([input, '--points', '8,8:40,8', '--out', join(dir, 'x.png'), ...common]),
    ).rejects.toThrow(/target of pair 1 \(40, 8\) is outside the 32×32 image/);
    const black = join(dir, 'black.png');
    await saveImage(NDArray.zeros([1, 3, 32, 32]), black);
    await expect(
      run([input, '--points', '8,8:20,8', '--mask', black, '--out', join(dir, 'x.png'), ...common]),
    ).rejects.toThrow(/all black/);
    await expect(run([input, '--points', '8,8:20,8', '--out', input, ...common])).rejects.toThrow(
      /is also an input/,
    );
    await expect(
      run([input, '--points', '8,8:20,8', '--lora-init', 'kaiming', '--out', join(dir, 'x.png'), ...common]),
    ).rejects.toThrow(/Allowed choices are diffusers, fan-in/);
    await expect(
      run([input, '--points', '8,8:20,8', '--lora-format', 'kohya', '--out', join(dir, 'x.png'), ...common]),
    ).rejects.toThrow(/Allowed choices are peft, diffusers, attn-procs/);
    expect(existsSync(join(dir, 'x.png'))).toBe(false);
  });
});
