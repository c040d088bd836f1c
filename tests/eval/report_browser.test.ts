/**
 * The eval report in headless Chromium (Debian's `chromium`, driven by playwright-core): it loads from the disk
 * with no console errors, every image decodes, every plot is an SVG with content, and a screenshot is taken for
 * people to look at. CI installs chromium (.ci/run) and sets EDITKIT_REQUIRE_WEBGPU=1, which makes a missing
 * browser a failure here too.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { imageToPng, sideBySide } from '../../src/image/io.js';
import { writeReport } from '../../src/eval/report.js';
import type { EvalResults } from '../../src/eval/run.js';
import { evalCase } from '../../src/eval/tasks.js';
import { writeFileAtomic } from '../../src/util/files.js';
import { bundledWorldSubset } from '../support/bundled_model.js';

const CHROMIUM = '/usr/bin/chromium';
const required = process.env.EDITKIT_REQUIRE_WEBGPU === '1';
const scratch = mkdtempSync(join(tmpdir(), 'editkit-report-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const scores = (success: number, psnr: number) => ({
  success,
  preservationPsnr: psnr,
  preservationSsim: 0.9,
  preservationLpips: 0.1,
  fidelityPsnr: 20,
  fidelityLpips: 0.2,
  clipScore: 0.3,
  directionalClip: 0.2,
  lmmScore: NaN,
  maskIoU: NaN,
  meanDistance: NaN,
  judgeMeanDistance: NaN,
  spriteDistance: NaN,
  imageFidelity: NaN,
  clipSimilarity: NaN,
  dragReached: NaN,
  dragIterations: NaN,
  seconds: 0.5,
});

describe.runIf(existsSync(CHROMIUM) || required)('report.html in headless Chromium', () => {
  it('loads offline without console errors; images decode; plots render', async () => {
    const c = await evalCase('replace', 0, { ...bundledWorldSubset().scene, width: 64, height: 64 });
    const { mkdir } = await import('node:fs/promises');
    await mkdir(join(scratch, 'images'), { recursive: true });
    await writeFileAtomic(
      join(scratch, 'images', 'replace-0.png'),
      await imageToPng(sideBySide([c.source01, c.target01!], 2)),
    );
    const results: EvalResults = {
      suiteVersion: 1,
      model: 'models/emoji-ldm',
      device: 'cpu',
      versions: { editkit: 'test' },
      settings: { cases: 1, tasks: ['replace', 'action'], imageSize: 64, seed: 0 },
      methods: [
        { key: 'a', label: 'Method A', family: 'A', tasks: ['replace'], needs: [], settings: {} },
        { key: 'b', label: 'Method <B>', family: 'B', tasks: ['replace', 'action'], needs: [], settings: {} },
      ],
      records: [
        { caseId: 'replace-0', task: 'replace', method: 'a', instruction: 'swap "x"', scores: scores(1, 25) },
        { caseId: 'replace-0', task: 'replace', method: 'b', instruction: 'swap "x"', scores: scores(0, 30) },
        { caseId: 'action-0', task: 'action', method: 'b', instruction: 'move', scores: scores(1, 22) },
      ],
      examples: [
        { task: 'replace', caseId: 'replace-0', file: 'replace-0.png', columns: ['input', 'ground truth'] },
      ],
      startedAt: new Date().toISOString(),
      finishedAt: new Date().toISOString(),
    };
    await writeReport(scratch, results);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox'],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(pathToFileURL(join(scratch, 'report.html')).href);
      expect(errors).toEqual([]);
      const images = await page.$$eval('img', (all) =>
        all.map((i) => ({ ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth })),
      );
      expect(images.length).toBe(1);
      expect(images.every((i) => i.ok)).toBe(true);
      const svgs = await page.$$eval('figure svg', (all) =>
        all.map((s) => s.querySelectorAll('circle, path, line').length),
      );
      expect(svgs.length).toBe(2); // one plot per task
      expect(svgs.every((n) => n > 0)).toBe(true);
      expect(await page.locator('td.na').count()).toBeGreaterThan(0); // method A on action
      expect(await page.locator('th', { hasText: 'Method <B>' }).count()).toBeGreaterThan(0); // escaped, shown as text
      await page.screenshot({ path: join(scratch, 'report.png'), fullPage: true });
      expect(existsSync(join(scratch, 'report.png'))).toBe(true);
    } finally {
      await browser.close();
    }
  });
});
