/**
 * The web app end to end in headless Chromium (Debian's chromium through playwright-core) against a real
 * `editkit serve` on the bundled model: open a random scene, paint a mask, run DiffEdit and see the result; place a
 * drag pair, run DragDiffusion at few steps and see the result. Screenshots go to $EDITKIT_SCREENSHOTS (or a temp
 * folder) for people to look at. CI installs chromium and sets EDITKIT_REQUIRE_WEBGPU=1 (a missing browser fails).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../src/server/app.js';
import { EMOJI_LDM } from '../support/bundled_model.js';

const CHROMIUM = '/usr/bin/chromium';
const required = process.env.EDITKIT_REQUIRE_WEBGPU === '1';
const data = mkdtempSync(join(tmpdir(), 'editkit-web-'));
const shots = process.env.EDITKIT_SCREENSHOTS ?? join(data, 'shots');
let app: FastifyInstance;
let address = '';

beforeAll(async () => {
  ({ app } = await buildServer({
    modelDirs: [join(EMOJI_LDM, '..')],
    dataDir: data,
    device: 'cpu',
    threads: 2,
  }));
  address = await app.listen({ host: '127.0.0.1', port: 0 });
  mkdirSync(shots, { recursive: true });
});
afterAll(async () => {
  await app.close();
  rmSync(data, { recursive: true, force: true });
});

async function setParam(page: Page, name: string, value: string) {
  await page.fill(`#params input[name=${name}]`, value);
}

describe.runIf(existsSync(CHROMIUM) || required)('the web app in Chromium', () => {
  it('paints a mask and runs DiffEdit; places drag points and runs DragDiffusion', async () => {
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('response', (r) => r.status() >= 400 && errors.push(`${r.status()} ${r.url()}`));
      // (A failed request is reported with its URL above; the console's copy of it has none.)
      page.on(
        'console',
        (m) =>
          m.type() === 'error' && !m.text().startsWith('Failed to load resource') && errors.push(m.text()),
      );
      await page.goto(address);
      await page.waitForFunction("/emoji-ldm/.test(document.getElementById('model')?.textContent ?? '')");
      await page.click('#random');
      await page.waitForFunction("document.getElementById('status')?.textContent?.startsWith('scene:')");
      const caption = (await page.textContent('#status'))!.replace('scene: ', '');

      // DiffEdit with a painted mask.
      await page.selectOption('#method', 'edit');
      await setParam(page, 'to', 'a photo of a cat in the snow');
      await setParam(page, 'from', caption);
      await setParam(page, 'steps', '10');
      const box = (await page.locator('#stage').boundingBox())!;
      await page.mouse.move(box.x + box.width * 0.3, box.y + box.height * 0.3);
      await page.mouse.down();
      await page.mouse.move(box.x + box.width * 0.7, box.y + box.height * 0.7, { steps: 8 });
      await page.mouse.up();
      await page.screenshot({ path: join(shots, 'web-mask.png') });
      await page.click('#run');
      await page.waitForFunction(
        "document.getElementById('status')?.textContent === 'done: edit'",
        undefined,
        { timeout: 60_000 },
      );
      expect(
        await page
          .locator('#after')
          .evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth),
      ).toBeGreaterThan(0);
      expect(await page.locator('#mask-link').isHidden()).toBe(false);
      await page.screenshot({ path: join(shots, 'web-diffedit.png') });

      // DragDiffusion with one handle → target pair.
      await page.selectOption('#method', 'drag');
      await setParam(page, 'lora_steps', '2');
      await setParam(page, 'steps', '5');
      await page.click('#clear-mask');
      await page.check('input[name=tool][value=points]');
      await page.mouse.click(box.x + box.width * 0.4, box.y + box.height * 0.5);
      await page.mouse.click(box.x + box.width * 0.6, box.y + box.height * 0.5);
      expect(await page.locator('#points-layer circle').count()).toBe(2);
      // a stray third click, undone (the button and Ctrl+Z)
      await page.mouse.click(box.x + box.width * 0.2, box.y + box.height * 0.2);
      expect(await page.locator('#points-layer circle').count()).toBe(3);
      await page.keyboard.press('Control+z');
      expect(await page.locator('#points-layer circle').count()).toBe(2);
      // the keyboard alone: focus the image, move the cursor, Enter places a point
      await page.focus('#stage');
      await page.keyboard.press('Shift+ArrowLeft');
      await page.keyboard.press('Enter');
      expect(await page.locator('#points-layer circle').count()).toBe(3);
      await page.keyboard.press('Control+z');
      expect(await page.locator('#points-layer circle').count()).toBe(2);
      await page.click('#run');
      await page.waitForFunction(
        "document.getElementById('status')?.textContent === 'done: drag'",
        undefined,
        { timeout: 120_000 },
      );
      await page.screenshot({ path: join(shots, 'web-drag.png') });
      expect(await page.locator('#history li').count()).toBe(2);
      expect(errors, errors.join(' | ')).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 240_000);
});
