/**
 * PIE-Bench's layout: the run-length mask as the reference decodes it (border rule included), EmojiWorld cases
 * written in the layout and read back, and the eval's view of them at the model's size.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  decodePieBenchMask,
  encodePieBenchMask,
  readPieBench,
  stripBrackets,
} from '../../src/datasets/piebench.js';
import { exportPieBench, pieBenchEvalCases } from '../../src/eval/datasets.js';
import { evalCase } from '../../src/eval/tasks.js';
import { UserError } from '../../src/util/errors.js';
import { bundledWorldSubset } from '../support/bundled_model.js';

const scratch = mkdtempSync(join(tmpdir(), 'editkit-piebench-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const scene = { ...bundledWorldSubset().scene, width: 64, height: 64 };

describe('PIE-Bench masks', () => {
  it('decodes runs [start, length, …] row-major at 512², with the border set, and encodes back', () => {
    const mask = decodePieBenchMask([512 * 10 + 20, 5, 512 * 11 + 20, 5]);
    expect(mask.length).toBe(512 * 512);
    expect(mask[512 * 10 + 20]).toBe(1);
    expect(mask[512 * 10 + 24]).toBe(1);
    expect(mask[512 * 10 + 25]).toBe(0);
    expect(mask[512 * 12 + 20]).toBe(0);
    // the reference's border rule
    expect(mask[0]).toBe(1);
    expect(mask[511]).toBe(1);
    expect(mask[512 * 300]).toBe(1);
    expect(mask[512 * 300 + 511]).toBe(1);
    expect(mask[512 * 300 + 1]).toBe(0);
    const inner = new Uint8Array(512 * 512);
    inner.fill(1, 512 * 100 + 3, 512 * 100 + 40);
    inner.fill(1, 512 * 101 + 3, 512 * 101 + 40);
    expect(encodePieBenchMask(inner)).toEqual([512 * 100 + 3, 37, 512 * 101 + 3, 37]);
    expect(() => decodePieBenchMask([1, 2, 3])).toThrow(/odd length/);
    expect(stripBrackets('a [rusty]  bicycle [on the road]')).toBe('a rusty bicycle on the road');
  });
});

describe('PIE-Bench layout', () => {
  it('writes EmojiWorld cases (512² images, bracketed editing prompts) and reads them back', async () => {
    const dir = join(scratch, 'pie');
    const n = await exportPieBench(dir, { tasks: ['replace', 'background'], cases: 2, scene });
    expect(n).toBe(4);
    const cases = await readPieBench(dir);
    expect(cases.map((c) => c.id).sort()).toEqual(['background-0', 'background-1', 'replace-0', 'replace-1']);
    for (const c of cases) {
      const original = await evalCase(c.task as 'replace' | 'background', Number(c.id.split('-')[1]), scene);
      expect(c.sourcePrompt).toBe(original.sourceCaption);
      expect(c.targetPrompt).toBe(original.targetCaption);
      expect(c.editingType).toBe(c.task === 'replace' ? 1 : 8);
      expect(c.image.shape).toEqual([1, 3, 512, 512]);
      // the region, upscaled ×8, plus the border
      for (let y = 1; y < 511; y += 37)
        for (let x = 1; x < 511; x += 29)
          expect(c.mask.data[y * 512 + x]).toBe(
            original.region.data[Math.floor(y / 8) * 64 + Math.floor(x / 8)],
          );
    }
    const evalCases = await pieBenchEvalCases(dir, 64);
    expect(evalCases).toHaveLength(4);
    for (const c of evalCases) {
      const original = await evalCase(c.task, Number(c.id.split('-')[1]), scene);
      expect(c.source.shape).toEqual([1, 3, 64, 64]);
      expect(c.target01).toBeUndefined();
      // area-averaged back to 64² the image is the render again (up to PNG rounding)
      const diff = Math.max(...c.source01.data.map((v, i) => Math.abs(v - original.source01.data[i])));
      expect(diff).toBeLessThan(1 / 255 + 1e-6);
      const inner = (i: number) => i % 64 > 0 && i % 64 < 63 && i >= 64 && i < 64 * 63;
      expect(c.region.data.every((v, i) => !inner(i) || v === original.region.data[i])).toBe(true);
    }
  });

  it('says what is wrong with a broken folder', async () => {
    await expect(readPieBench(join(scratch, 'nowhere'))).rejects.toThrow(UserError);
    const dir = join(scratch, 'broken');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'mapping_file.json'),
      '{"1": {"image_path": "a.png", "original_prompt": "x", "editing_prompt": "y", "editing_type_id": "12", "mask": []}}',
    );
    await expect(readPieBench(dir)).rejects.toThrow(/editing_type_id '12' is not 0–9/);
    writeFileSync(join(dir, 'mapping_file.json'), '{oops');
    await expect(readPieBench(dir)).rejects.toThrow(/not valid JSON/);
  });
});
