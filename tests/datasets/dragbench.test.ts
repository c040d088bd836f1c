/**
 * DragBench's layout: a case written by Python (tests/fixtures/dragbench/make_fixture.py, pickle protocol 4),
 * cases EditKit writes from EmojiWorld (`editkit world export --format dragbench`), clear errors on broken cases,
 * and `bench drag --dataset` end to end on the bundled model.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dragBenchMain } from '../../src/bench/drag.js';
import {
  findDragBenchCases,
  readDragBench,
  readDragBenchCase,
  writeDragBenchCase,
} from '../../src/datasets/dragbench.js';
import { exportDragBench } from '../../src/datasets/world_export.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import { UserError } from '../../src/util/errors.js';
import { NumpyArray, writePickle } from '../../src/util/pickle.js';
import { bundledWorldSubset, EMOJI_LDM } from '../support/bundled_model.js';

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'dragbench', 'cases');
const scratch = mkdtempSync(join(tmpdir(), 'editkit-dragbench-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('DragBench reader', () => {
  it('reads a case Python wrote: prompt, alternating handle/target points, mask, image', async () => {
    expect(findDragBenchCases(FIXTURE)).toEqual([join(FIXTURE, 'objects', 'red_square')]);
    const [c] = await readDragBench(FIXTURE);
    expect(c.name).toBe(join('objects', 'red_square'));
    expect(c.prompt).toBe('a red square on a blue background');
    expect(c.handles).toEqual([
      [14, 16],
      [8, 12],
    ]);
    expect(c.targets).toEqual([
      [26, 30],
      [20, 24],
    ]);
    expect(c.image.shape).toEqual([1, 3, 48, 40]);
    expect(c.mask.shape).toEqual([1, 1, 48, 40]);
    expect(c.mask.data.reduce((a, b) => a + b, 0)).toBe(36 * 34);
    expect(c.mask.data[4 * 40 + 2]).toBe(1);
    expect(c.mask.data[3 * 40 + 2]).toBe(0);
    // the red square at rows 10–21, columns 8–19, in [-1, 1]
    const plane = 48 * 40;
    expect(c.image.data[15 * 40 + 12]).toBeCloseTo((220 / 255) * 2 - 1, 5);
    expect(c.image.data[2 * plane + 15 * 40 + 12]).toBeCloseTo((30 / 255) * 2 - 1, 5);
  });

  it('round-trips cases EditKit writes from EmojiWorld, with the ground truth alongside', async () => {
    const out = join(scratch, 'export');
    const written = await exportDragBench(out, {
      cases: 4,
      split: 'heldout',
      start: 0,
      tasks: ['move', 'resize'],
      scene: { ...bundledWorldSubset().scene, width: 64, height: 64 },
    });
    expect(written.length).toBeGreaterThanOrEqual(2);
    const cases = await readDragBench(out);
    expect(cases.map((c) => c.dir).sort()).toEqual([...written].sort());
    for (const c of cases) {
      expect(c.image.shape).toEqual([1, 3, 64, 64]);
      expect(c.handles.length).toBe(c.targets.length);
      expect(c.handles.length).toBeGreaterThan(0);
      expect(c.prompt).toMatch(/\w/);
      const masked = c.mask.data.reduce((a, b) => a + b, 0);
      expect(masked).toBeGreaterThan(0);
      expect(masked).toBeLessThan(64 * 64);
      // handles sit on the object, inside the editable region
      for (const [x, y] of c.handles) expect(c.mask.data[Math.round(y) * 64 + Math.round(x)]).toBe(1);
    }
  });

  it('writes and reads back exactly: points rounded to pixels, mask thresholded at ½', async () => {
    const image = NDArray.zeros([1, 3, 16, 24]).map((_, i) => ((i % 255) / 255) * 2 - 1);
    const mask = NDArray.zeros([1, 1, 16, 24]).map((_, i) => (i % 3 === 0 ? 0.9 : 0.2));
    const dir = join(scratch, 'one');
    await writeDragBenchCase(dir, { image, prompt: 'x', handles: [[3.4, 5.6]], targets: [[10, 11]], mask });
    const c = await readDragBenchCase(dir);
    expect(c.handles).toEqual([[3, 6]]);
    expect(c.targets).toEqual([[10, 11]]);
    expect(Array.from(c.mask.data)).toEqual(Array.from(mask.data, (v) => (v >= 0.5 ? 1 : 0)));
    const got = Array.from(c.image.data);
    expect(Math.max(...got.map((v, i) => Math.abs(v - image.data[i])))).toBeLessThan(1 / 255 + 1e-6);
  });

  it('says what is wrong with a broken case, as a UserError', async () => {
    const broken = (name: string, meta: Parameters<typeof writePickle>[0]) => {
      const dir = join(scratch, 'broken', name);
      cpSync(join(FIXTURE, 'objects', 'red_square'), dir, { recursive: true });
      writeFileSync(join(dir, 'meta_data.pkl'), writePickle(meta));
      return dir;
    };
    const mask = new NumpyArray('uint8', [48, 40], new Float64Array(48 * 40).fill(255));
    const cases: [string, Parameters<typeof writePickle>[0], RegExp][] = [
      [
        'odd',
        {
          prompt: 'p',
          points: [
            [1, 2],
            [3, 4],
            [5, 6],
          ],
          mask,
        },
        /even number/,
      ],
      [
        'shape',
        {
          prompt: 'p',
          points: [
            [1, 2],
            [3, 4],
          ],
          mask: new NumpyArray('uint8', [10, 10], new Float64Array(100)),
        },
        /'mask' is 10×10, the image is 48×40/,
      ],
      [
        'outside',
        {
          prompt: 'p',
          points: [
            [1, 2],
            [300, 4],
          ],
          mask,
        },
        /outside the 40×48 image/,
      ],
      [
        'prompt',
        {
          prompt: 3,
          points: [
            [1, 2],
            [3, 4],
          ],
          mask,
        },
        /'prompt' is not a string/,
      ],
    ];
    for (const [name, meta, message] of cases) {
      const error = await readDragBenchCase(broken(name, meta)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UserError);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).not.toContain('\n');
    }
    const dir = join(scratch, 'broken', 'garbage');
    cpSync(join(FIXTURE, 'objects', 'red_square'), dir, { recursive: true });
    writeFileSync(join(dir, 'meta_data.pkl'), 'not a pickle');
    await expect(readDragBenchCase(dir)).rejects.toThrow(/cannot read the pickle/);
    expect(() => findDragBenchCases(join(scratch, 'nowhere'))).toThrow(/does not exist/);
    expect(() => findDragBenchCases(join(scratch, 'export', 'move', '..', '..'))).not.toThrow();
  });
});

describe('bench drag --dataset', () => {
  it('runs DragDiffusion on each case of a DragBench folder through the eval suite and scores it without ground truth', async () => {
    const out = join(scratch, 'bench-dataset');
    const data = join(scratch, 'bench-data');
    await exportDragBench(data, {
      cases: 2,
      split: 'heldout',
      start: 10,
      tasks: ['move'],
      scene: { ...bundledWorldSubset().scene, width: 64, height: 64 },
    });
    let printed = '';
    const { results, summary } = await dragBenchMain(
      [
        ...['--model', EMOJI_LDM, '--device', 'cpu', '--threads', '1', '--dataset', data, '--cases', '5'],
        ...['--lora-steps', '2', '--drag-steps', '3', '--steps', '10', '--dift-ensemble', '1'],
        ...['--examples', '1', '--out', out],
      ],
      EMOJI_LDM,
      (text) => (printed += text),
    );
    expect(results.settings.dataset).toBe(data);
    expect(printed).toContain(`cases of the DragBench folder ${data}`);
    const caseIds = new Set(results.records.map((r) => r.caseId));
    expect(caseIds.size).toBe(findDragBenchCases(data).length);
    // no ground truth is read from the layout: the ground-truth row is n/a, the sprite distance and success NaN
    expect(results.records.map((r) => r.method).sort()).toEqual([
      'dragdiffusion',
      'dragdiffusion',
      'input',
      'input',
    ]);
    const drag = summary.dragdiffusion.action!;
    expect(Number.isFinite(drag.meanDistance)).toBe(true);
    expect(Number.isNaN(drag.spriteDistance)).toBe(true);
    expect(Number.isNaN(drag.success)).toBe(true);
    const scoring = results.settings.scoring as { dift: { tensor: string } };
    expect(scoring.dift.tensor).toBe('up_block_2_output'); // not the supervised up_block_1_output
    // the second network and CLIP: the input scores itself perfectly, the result less so
    const input = summary.input.action!;
    expect(input.clipSimilarity).toBeCloseTo(1, 5);
    expect(input.imageFidelity).toBeCloseTo(1, 5);
    expect(drag.clipSimilarity).toBeLessThan(1);
    expect(drag.clipSimilarity).toBeGreaterThan(0.5);
    expect(Number.isFinite(drag.judgeMeanDistance)).toBe(true);
    expect(input.judgeMeanDistance).toBeGreaterThan(0);
  });
});
