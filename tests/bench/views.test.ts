/**
 * `bench diffedit` and `bench drag` are views of the eval suite: a small run of each on the bundled model goes
 * through the suite's runner (its fixed cases, results.json, summary.json, report.html) and prints the view's
 * table with the metrics that moved into the suite (DiffEdit's mask IoU and threshold sweep; DragBench's Mean
 * Distance, sprite distance, Image Fidelity, CLIP similarity, handles reached, stages).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CommanderError } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { diffEditBenchMain } from '../../src/bench/diffedit.js';
import { dragBenchMain } from '../../src/bench/drag.js';
import { readEvalResults, type EvalResults } from '../../src/eval/run.js';
import { EMOJI_LDM } from '../support/bundled_model.js';

const scratch = mkdtempSync(join(tmpdir(), 'editkit-views-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const common = ['--model', EMOJI_LDM, '--device', 'cpu', '--threads', '1', '--examples', '1'];

function readResults(out: string): EvalResults {
  return readEvalResults(join(out, 'results.json'));
}

describe('bench diffedit', () => {
  it('runs the suite on its replace cases and reports mask IoU with its threshold sweep', async () => {
    const out = join(scratch, 'diffedit');
    let printed = '';
    await diffEditBenchMain(
      [
        ...common,
        ...[
          '--cases',
          '1',
          '--steps',
          '4',
          '--ratios',
          '0.5',
          '--strengths',
          '0.5',
          '--without-encoding',
          '0.8',
        ],
        ...['--out', out],
      ],
      EMOJI_LDM,
      (text) => (printed += text),
    );
    const results = readResults(out);
    // the suite's first replace case, every method of the view on it, nothing else
    expect(results.settings.tasks).toEqual(['replace']);
    expect(results.records.map((r) => `${r.caseId}|${r.method}`).sort()).toEqual([
      'replace-0|diffedit-0.5',
      'replace-0|diffedit-noenc-0.8',
      'replace-0|ground-truth',
      'replace-0|inpaint-gt',
      'replace-0|input',
      'replace-0|sdedit-0.5',
    ]);
    const record = (method: string) => results.records.find((r) => r.method === method)!;
    const diffEdit = record('diffedit-0.5');
    expect(diffEdit.scores.maskIoU).toBeGreaterThan(0);
    expect(diffEdit.scores.maskIoU).toBeLessThanOrEqual(1);
    expect(diffEdit.details?.maskIoUByThreshold).toHaveLength(9);
    // the map binarised at 0.5 is the mask DiffEdit used
    expect(diffEdit.details!.maskIoUByThreshold![4]).toBeCloseTo(diffEdit.scores.maskIoU, 6);
    expect(record('inpaint-gt').scores.maskIoU).toBe(1); // it edits inside the true region
    // n/a (NaN, null in JSON): SDEdit has no mask, a replace case no drag points
    expect(Number.isFinite(record('sdedit-0.5').scores.maskIoU)).toBe(false);
    expect(Number.isFinite(diffEdit.scores.meanDistance)).toBe(false);

    const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as {
      summary: Record<string, Record<string, Record<string, number | null>>>;
      maskIoUByThreshold: Record<string, Record<string, number[]>>;
    };
    expect(summary.summary['diffedit-0.5'].replace.maskIoU).toBeCloseTo(diffEdit.scores.maskIoU, 6);
    expect(summary.summary['sdedit-0.5'].replace.maskIoU).toBeNull(); // NaN in JSON
    expect(summary.maskIoUByThreshold['diffedit-0.5'].replace).toHaveLength(9);

    expect(printed).toContain('mask IoU (to the changed region) ↑');
    expect(printed).toContain('| DiffEdit (r 0.5) | 1 | ');
    expect(printed).toContain('| DiffEdit w/o encoding (r 0.8) | 1 | ');
    expect(printed).toContain('| threshold | mask IoU: DiffEdit (r 0.5), replace');
    expect(readFileSync(join(out, 'results.md'), 'utf8').trim()).toBe(printed.trim());
    for (const file of [
      'report.html',
      'summary.md',
      'results.csv',
      'tradeoff-replace.png',
      'images/replace-0.png',
    ])
      expect(existsSync(join(out, file)), file).toBe(true);
    expect(readFileSync(join(out, 'report.html'), 'utf8')).toContain('Mask IoU vs binarisation threshold');
  });

  it('refuses a task DiffEdit does not take', async () => {
    const stderr = process.stderr.write;
    process.stderr.write = () => true; // commander prints its message there
    try {
      await expect(diffEditBenchMain(['--tasks', 'action'], EMOJI_LDM, () => undefined)).rejects.toThrow(
        CommanderError,
      );
    } finally {
      process.stderr.write = stderr;
    }
  });
});

describe('bench drag', () => {
  it('runs the suite on its move cases of the action task and reports DragBench measures', async () => {
    const out = join(scratch, 'drag');
    let printed = '';
    await dragBenchMain(
      [
        ...common,
        ...['--cases', '2', '--tasks', 'move', '--lora-steps', '2', '--drag-steps', '3', '--steps', '10'],
        ...['--dift-ensemble', '1', '--lora-init', 'fan-in', '--out', out],
      ],
      EMOJI_LDM,
      (text) => (printed += text),
    );
    const results = readResults(out);
    // the suite alternates move and resize: its first two moves are action-0 and action-2
    expect(results.settings.variants).toEqual({ action: ['move'] });
    expect([...new Set(results.records.map((r) => r.caseId))].sort()).toEqual(['action-0', 'action-2']);
    expect([...new Set(results.records.map((r) => r.method))].sort()).toEqual([
      'dragdiffusion',
      'ground-truth',
      'input',
    ]);
    expect(results.methods.find((m) => m.key === 'dragdiffusion')!.settings).toMatchObject({
      loraSteps: 2,
      dragSteps: 3,
      loraInit: 'fan-in',
      steps: 10,
    });
    for (const r of results.records.filter((r) => r.method === 'dragdiffusion')) {
      expect(Number.isFinite(r.scores.meanDistance)).toBe(true);
      expect(Number.isFinite(r.scores.judgeMeanDistance)).toBe(true);
      expect(Number.isFinite(r.scores.spriteDistance)).toBe(true);
      expect(r.scores.imageFidelity).toBeLessThan(1);
      expect(r.scores.clipSimilarity).toBeLessThan(1);
      expect([0, 1]).toContain(r.scores.dragReached);
      expect(r.scores.dragIterations).toBeGreaterThan(0);
      expect(r.details?.pointDistances?.dift.length).toBeGreaterThan(0);
      expect(Object.keys(r.details?.stages ?? {})).toEqual(['lora', 'invert', 'drag', 'denoise']);
    }
    // the ground truth puts the sprite where it belongs; the input scores itself perfectly
    const truth = results.records.find((r) => r.method === 'ground-truth')!;
    expect(truth.scores.spriteDistance).toBeLessThanOrEqual(1);
    const input = results.records.find((r) => r.method === 'input')!;
    expect(input.scores.imageFidelity).toBeCloseTo(1, 5);
    expect(input.scores.meanDistance).toBeGreaterThan(0);
    expect((results.settings.scoring as { dift: { tensor: string } }).dift.tensor).toBe('up_block_2_output');

    expect(printed).toContain('held-out EmojiWorld move cases of the action task');
    expect(printed).toContain('LoRA init fan-in');
    expect(printed).toContain('Mean Distance (DIFT) px ↓');
    expect(printed).toMatch(/\| DragDiffusion \| 2 \| \d+\.\d\d \| \d+\.\d\d \| \d+\.\d\d \| 0\.\d{4} \|/);
    expect(printed).toMatch(/Cut vs the undragged input: Mean Distance \(DIFT\) -?\d+\.\d %/);
    expect(printed).toContain('| DragDiffusion, action: lora |');
  });
});
