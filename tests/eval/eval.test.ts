/**
 * editkit eval: the versioned task suite, SSIM, the judge-based success check on ground truth, and a small run end
 * to end (results.json, resume, report.html with n/a cells, results.csv).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evalMethods } from '../../src/eval/methods.js';
import { judgeSuccess } from '../../src/eval/metrics.js';
import { summarize } from '../../src/eval/report.js';
import { readEvalResults, runEval } from '../../src/eval/run.js';
import { EVAL_TASKS, evalCase, SUITE_CASES_PER_TASK, suiteCaseIndices } from '../../src/eval/tasks.js';
import { ssim } from '../../src/metrics/image.js';
import { PerceptualDistance } from '../../src/metrics/perceptual.js';
import { StableDiffusionBundle } from '../../src/models/bundle.js';
import { ClipModel } from '../../src/models/clip.js';
import { EmojiJudge } from '../../src/models/judge.js';
import { NDArray } from '../../src/runtime/ndarray.js';
import { Generator } from '../../src/runtime/random.js';
import { UserError } from '../../src/util/errors.js';
import { bundledWorldSubset, EMOJI_LDM } from '../support/bundled_model.js';

const scene = { ...bundledWorldSubset().scene, width: 64, height: 64 };
const scratch = mkdtempSync(join(tmpdir(), 'editkit-eval-'));
let judge: EmojiJudge;
beforeAll(async () => {
  judge = await EmojiJudge.load(join(EMOJI_LDM, '..', 'emoji-judge'));
});
afterAll(async () => {
  await judge.release();
  rmSync(scratch, { recursive: true, force: true });
});

describe('the task suite', () => {
  it('gives each of the 7 tasks fixed cases with a ground truth, a changed region and (action) drag points', async () => {
    for (const task of EVAL_TASKS) {
      const a = await evalCase(task, 0, scene);
      const b = await evalCase(task, 0, scene);
      expect(a.id).toBe(`${task}-0`);
      expect(Array.from(a.source.data)).toEqual(Array.from(b.source.data)); // deterministic
      const changed = a.region.data.reduce((s, v) => s + v, 0);
      expect(changed, task).toBeGreaterThan(0);
      expect(
        a.target01!.data.some((v, i) => Math.abs(v - a.source01.data[i]) > 0.05),
        task,
      ).toBe(true);
      if (task === 'action') expect(a.drag?.handles.length).toBeGreaterThan(0);
    }
    expect((await evalCase('action', 1, scene)).worldTask).toBe('resize');
    expect((await evalCase('texture', 0, scene)).worldTask).toBe('colour');
  });

  it("skips a case the world subset cannot draw, and can keep only some of a task's edits", () => {
    // In the bundled model's `core` subset, objects can fill the frame: action-24's scene has nothing to move.
    const skipped: string[] = [];
    const moves = suiteCaseIndices('action', 13, scene, {
      edits: ['move'],
      onSkip: (id, reason) => skipped.push(`${id}: ${reason}`),
    });
    expect(moves).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 26]);
    expect(skipped).toEqual([expect.stringMatching(/^action-24: .*no object is small enough to move/)]);
    expect(suiteCaseIndices('replace', 3, scene)).toEqual([0, 1, 2]);
    expect(() => suiteCaseIndices('action', SUITE_CASES_PER_TASK, scene)).toThrow(UserError);
  });

  it('the judge accepts the ground truth and (where the objects or background change) rejects the input', async () => {
    // Texture (colour variants) is left out: the bundled judge was trained on default colours only, so it
    // misses recoloured objects; the report's ground-truth row shows that ceiling.
    let truthOk = 0;
    let inputRejected = 0;
    let changing = 0;
    for (const task of EVAL_TASKS.filter((t) => t !== 'texture')) {
      for (let k = 0; k < 4; k++) {
        const c = await evalCase(task, k, scene);
        if (await judgeSuccess(judge, c.target01!, c)) truthOk++;
        if (['add', 'replace', 'remove', 'background'].includes(task)) {
          changing++;
          if (!(await judgeSuccess(judge, c.source01, c))) inputRejected++;
        }
      }
    }
    console.info(
      `[eval] judge: ground truth accepted ${truthOk}/24, input rejected ${inputRejected}/${changing}`,
    );
    expect(truthOk / 24).toBeGreaterThanOrEqual(0.85);
    expect(inputRejected / changing).toBeGreaterThanOrEqual(0.85);
  });
});

describe('SSIM', () => {
  it('is 1 for identical images, lower with noise, and can be restricted to a region', () => {
    const gen = new Generator(1);
    const a = NDArray.zeros([1, 3, 32, 32]).map(() => gen.random());
    expect(ssim(a, a)).toBeCloseTo(1, 10);
    const noisy = a.map((v, i) => (i % 1024 < 512 ? v + 0.2 * gen.normal() : v));
    const top = NDArray.zeros([1, 1, 32, 32]).map((_, i) => (i < 512 ? 1 : 0));
    const bottom = top.map((v) => 1 - v);
    expect(ssim(noisy, a)).toBeLessThan(0.95);
    expect(ssim(noisy, a, top)).toBeLessThan(ssim(noisy, a, bottom));
    expect(ssim(noisy, a, bottom)).toBeGreaterThan(0.9);
  });
});

describe('runEval', () => {
  it('runs each method on the tasks it takes, writes the report, and resumes', async () => {
    const bundle = await StableDiffusionBundle.load(EMOJI_LDM, { device: 'cpu', intraOpNumThreads: 2 });
    const clip = await ClipModel.load(join(EMOJI_LDM, '..', 'emoji-clip'));
    const perceptual = await PerceptualDistance.fromJudge(join(EMOJI_LDM, '..', 'emoji-judge'));
    const methods = evalMethods({
      steps: 6,
      guidance: 5,
      strengths: [0.6],
      ratios: [],
      dragLoraSteps: 2,
      dragSteps: 3,
    }).filter((m) => m.key === 'sdedit-0.6' || m.key === 'dragdiffusion' || m.key === 'ground-truth');
    const out = join(scratch, 'run');
    const options = {
      tasks: ['background', 'action'] as const,
      cases: 1,
      methods,
      scene,
      out,
      seed: 0,
      examples: 1,
      resume: false,
      versions: { editkit: 'test' },
    };
    try {
      const results = await runEval(
        bundle,
        { judge, clip, perceptual },
        { ...options, tasks: [...options.tasks] },
      );
      expect(results.records.map((r) => `${r.caseId}|${r.method}`).sort()).toEqual([
        'action-0|dragdiffusion',
        'action-0|ground-truth',
        'background-0|ground-truth',
        'background-0|sdedit-0.6',
      ]);
      // the ground truth scores as the ceiling: identical to itself inside the region
      const truth = results.records.find((r) => r.caseId === 'background-0' && r.method === 'ground-truth')!;
      expect(truth.scores.fidelityPsnr).toBe(Infinity);
      expect(truth.scores.success).toBe(1);
      // DragBench's measures on the action case (no DIFT matcher given here: that Mean Distance is n/a); none on
      // a case without drag points
      const drag = results.records.find((r) => r.method === 'dragdiffusion')!;
      expect(Number.isFinite(drag.scores.judgeMeanDistance)).toBe(true);
      expect(Number.isFinite(drag.scores.spriteDistance)).toBe(true);
      expect(drag.scores.imageFidelity).toBeLessThan(1);
      expect(Number.isNaN(drag.scores.meanDistance)).toBe(true);
      expect(drag.details?.pointDistances?.judge.length).toBeGreaterThan(0);
      expect(drag.details?.pointDistances?.dift).toEqual([]);
      const sdedit = results.records.find((r) => r.method === 'sdedit-0.6')!;
      expect(Number.isNaN(sdedit.scores.spriteDistance)).toBe(true);
      expect(sdedit.details).toBeUndefined();
      const summary = summarize(results);
      expect(summary['sdedit-0.6'].action).toBeUndefined(); // n/a, not zero
      expect(Number.isFinite(summary['sdedit-0.6'].background!.preservationPsnr)).toBe(true);
      for (const file of [
        'results.json',
        'results.csv',
        'summary.md',
        'report.html',
        'images/background-0.png',
      ])
        expect(existsSync(join(out, file)), file).toBe(true);
      const html = readFileSync(join(out, 'report.html'), 'utf8');
      expect(html).toContain('class="na">n/a</td>');
      expect(html).toContain('data:image/png;base64,');
      expect(html).toContain('<svg');
      expect(readFileSync(join(out, 'results.csv'), 'utf8').trim().split('\n')).toHaveLength(5);

      // A second run without --resume refuses to overwrite; with it, nothing is recomputed.
      await expect(
        runEval(bundle, { judge, clip, perceptual }, { ...options, tasks: [...options.tasks] }),
      ).rejects.toThrow(UserError);
      const before = readEvalResults(join(out, 'results.json'));
      // identical pixels survive the file as an infinite PSNR, so a resumed run averages them as before
      expect(readFileSync(join(out, 'results.json'), 'utf8')).toContain('"fidelityPsnr": "Infinity"');
      let progressed = 0;
      const again = await runEval(
        bundle,
        { judge, clip, perceptual },
        { ...options, tasks: [...options.tasks], resume: true, onProgress: (d) => (progressed = d) },
      );
      expect(again.records).toEqual(before.records);
      expect(
        again.records.find((r) => r.caseId === 'background-0' && r.method === 'ground-truth')!.scores
          .fidelityPsnr,
      ).toBe(Infinity);
      expect(progressed).toBe(4);
    } finally {
      await Promise.all([bundle.release(), clip.release(), perceptual.release()]);
    }
  });
});
