/**
 * editkit serve's API on the tiny bundles (fastify.inject, and a real socket for Server-Sent Events): jobs for the
 * methods, results, SSE progress, cancel, the bounded queue, limits, auth, the web app and the OpenAPI docs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../src/server/app.js';

const BUNDLES = join(import.meta.dirname, '..', 'fixtures', 'bundles');
const data = mkdtempSync(join(tmpdir(), 'editkit-serve-'));
let app: FastifyInstance;
let png32: string;
let mask32: string;

async function waitDone(server: FastifyInstance, id: string, timeoutMs = 60_000) {
  const start = Date.now();
  for (;;) {
    const job = (await server.inject({ method: 'GET', url: `/api/v1/jobs/${id}` })).json();
    if (['done', 'failed', 'cancelled'].includes(job.state)) return job;
    if (Date.now() - start > timeoutMs) throw new Error(`job ${id} still ${job.state}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  ({ app } = await buildServer({
    modelDirs: [BUNDLES],
    dataDir: data,
    device: 'cpu',
    threads: 1,
    maxQueued: 4,
  }));
  png32 = (
    await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 200, g: 120, b: 40 } } })
      .png()
      .toBuffer()
  ).toString('base64');
  mask32 = (
    await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 0, g: 0, b: 0 } } })
      .composite([
        {
          input: { create: { width: 12, height: 12, channels: 3, background: { r: 255, g: 255, b: 255 } } },
          left: 10,
          top: 10,
        },
      ])
      .png()
      .toBuffer()
  ).toString('base64');
});
afterAll(async () => {
  await app.close();
  rmSync(data, { recursive: true, force: true });
});

describe('jobs', () => {
  it('runs generate, img2img, edit and inpaint to PNG results', async () => {
    const cases = [
      {
        method: 'generate',
        model: 'tiny-sd',
        params: { prompt: 'a cat', steps: 2, seed: 1, width: 32, height: 32 },
      },
      {
        method: 'img2img',
        model: 'tiny-sd',
        image: png32,
        params: { prompt: 'a cat', steps: 4, strength: 0.5, seed: 1 },
      },
      {
        method: 'edit',
        model: 'tiny-sd',
        image: png32,
        params: { to: 'a dog', from: 'a cat', steps: 4, seed: 1 },
      },
      {
        method: 'inpaint',
        model: 'tiny-sd',
        image: png32,
        mask: mask32,
        params: { prompt: 'a dog', steps: 2, seed: 1 },
      },
    ];
    for (const body of cases) {
      const r = await app.inject({ method: 'POST', url: '/api/v1/jobs', payload: body });
      expect(r.statusCode, r.body).toBe(202);
      const job = await waitDone(app, r.json().id);
      expect(job.state, JSON.stringify(job)).toBe('done');
      const result = await app.inject({ method: 'GET', url: job.results.result });
      expect(result.statusCode).toBe(200);
      expect(result.headers['content-type']).toBe('image/png');
      expect((await sharp(result.rawPayload).metadata()).width).toBe(32);
      if (body.method !== 'generate') expect(job.results['side-by-side']).toBeDefined();
      if (body.method === 'edit' || body.method === 'inpaint') expect(job.results.mask).toBeDefined();
    }
  });

  it('takes multipart uploads with the same names', async () => {
    const boundary = '----editkit';
    const part = (name: string, value: string | Buffer, file?: string) =>
      Buffer.concat([
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="${name}"${file ? `; filename="${file}"\r\nContent-Type: image/png` : ''}\r\n\r\n`,
        ),
        Buffer.isBuffer(value) ? value : Buffer.from(value),
        Buffer.from('\r\n'),
      ]);
    const payload = Buffer.concat([
      part('method', 'img2img'),
      part('model', 'tiny-sd'),
      part('params', JSON.stringify({ prompt: 'a cat', steps: 2, seed: 3 })),
      part('image', Buffer.from(png32, 'base64'), 'in.png'),
      Buffer.from(`--${boundary}--\r\n`),
    ]);
    const r = await app.inject({
      method: 'POST',
      url: '/api/v1/jobs',
      payload,
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
    });
    expect(r.statusCode, r.body).toBe(202);
    expect((await waitDone(app, r.json().id)).state).toBe('done');
  });

  it('answers bad requests with a 4xx and a JSON error, never a 500', async () => {
    const bad: [unknown, number, RegExp][] = [
      [{ method: 'paint' }, 400, /method must be one of/],
      [{ method: 'img2img', params: { prompt: 'x' } }, 400, /needs an image/],
      [{ method: 'generate', image: png32, params: { prompt: 'x' } }, 400, /takes no image/],
      [{ method: 'generate', params: { prompt: 'x', steps: 'many' } }, 400, /params\.steps/],
      [{ method: 'generate', params: { prompt: 'x', colour: 'red' } }, 400, /params/],
      [{ method: 'generate', model: '../../etc', params: { prompt: 'x' } }, 400, /unknown model/],
      [{ method: 'img2img', image: '%%%', params: { prompt: 'x' } }, 400, /not base64/],
      [{ method: 'inpaint', image: png32, params: { prompt: 'x' } }, 400, /needs a mask/],
    ];
    for (const [payload, status, message] of bad) {
      const r = await app.inject({ method: 'POST', url: '/api/v1/jobs', payload: payload as object });
      expect(r.statusCode, JSON.stringify(payload)).toBe(status);
      expect(r.json().error).toMatch(message);
    }
    // A file that is not an image fails the job with a clear message, not the server.
    const r = await app.inject({
      method: 'POST',
      url: '/api/v1/jobs',
      payload: {
        method: 'img2img',
        model: 'tiny-sd',
        image: Buffer.from('not an image').toString('base64'),
        params: { prompt: 'x' },
      },
    });
    expect(r.statusCode).toBe(202);
    const job = await waitDone(app, r.json().id);
    expect(job.state).toBe('failed');
    expect(job.error).toMatch(/not an image/);
    expect((await app.inject({ method: 'GET', url: `/api/v1/jobs/${job.id}/result.png` })).statusCode).toBe(
      409,
    );
    expect(
      (await app.inject({ method: 'GET', url: '/api/v1/jobs/00000000-0000-0000-0000-000000000000' }))
        .statusCode,
    ).toBe(404);
    expect((await app.inject({ method: 'GET', url: '/api/v1/jobs/not-an-id' })).statusCode).toBe(400);
    expect((await app.inject({ method: 'GET', url: '/nowhere' })).json().error).toMatch(/no route/);
  });

  it('cancels a queued job and a running one between steps', async () => {
    const submit = async (payload: object) =>
      (await app.inject({ method: 'POST', url: '/api/v1/jobs', payload })).json().id as string;
    // A long job (400 LoRA steps), cancelled once it is seen running.
    const running = await submit({
      method: 'drag',
      model: 'tiny-sd',
      image: png32,
      params: { points: '8,8:20,14', lora_steps: 400, steps: 5, seed: 1 },
    });
    const queued = await submit({
      method: 'generate',
      model: 'tiny-sd',
      params: { prompt: 'a cat', steps: 5 },
    });
    for (let i = 0; i < 400; i++) {
      const job = (await app.inject({ method: 'GET', url: `/api/v1/jobs/${running}` })).json();
      if (job.state === 'running' && job.progress?.stage === 'lora' && job.progress.step >= 1) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/jobs/${queued}` })).statusCode).toBe(202);
    expect((await app.inject({ method: 'DELETE', url: `/api/v1/jobs/${running}` })).statusCode).toBe(202);
    expect((await waitDone(app, queued)).state).toBe('cancelled');
    const stopped = await waitDone(app, running);
    expect(stopped.state).toBe('cancelled');
    expect(stopped.progress.stage).toBe('lora');
    expect(stopped.progress.step).toBeLessThan(400);
  });
});

describe('limits, auth, streams and pages', () => {
  it('bounds the queue (429 with Retry-After), the body size (413) and needs the token when set', async () => {
    const { app: small } = await buildServer({
      modelDirs: [BUNDLES],
      dataDir: data,
      device: 'cpu',
      threads: 1,
      maxQueued: 1,
      bodyLimit: 50_000,
      token: 's3cret',
    });
    try {
      const auth = { authorization: 'Bearer s3cret' };
      expect((await small.inject({ method: 'GET', url: '/api/v1/models' })).statusCode).toBe(401);
      expect((await small.inject({ method: 'GET', url: '/api/v1/models', headers: auth })).statusCode).toBe(
        200,
      );
      const job = {
        method: 'generate',
        model: 'tiny-sd',
        params: { prompt: 'a cat', steps: 100, width: 32, height: 32 },
      };
      const statuses: number[] = [];
      let retryAfter: string | undefined;
      for (let i = 0; i < 4; i++) {
        const r = await small.inject({ method: 'POST', url: '/api/v1/jobs', payload: job, headers: auth });
        statuses.push(r.statusCode);
        if (r.statusCode === 429) retryAfter = String(r.headers['retry-after']);
      }
      expect(statuses.filter((s) => s === 202).length).toBeGreaterThanOrEqual(2);
      expect(statuses).toContain(429);
      expect(Number(retryAfter)).toBeGreaterThan(0);
      const big = await small.inject({
        method: 'POST',
        url: '/api/v1/jobs',
        payload: { method: 'img2img', image: 'A'.repeat(100_000), params: { prompt: 'x' } },
        headers: auth,
      });
      expect(big.statusCode).toBe(413);
      expect(big.json().error).toBeDefined();
    } finally {
      await small.close();
    }
  });

  it('streams queued, progress with an ETA, and done as Server-Sent Events', async () => {
    const address = await app.listen({ host: '127.0.0.1', port: 0 });
    const r = await fetch(`${address}/api/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        method: 'generate',
        model: 'tiny-sd',
        params: { prompt: 'a cat', steps: 5, width: 32, height: 32 },
      }),
    });
    const job = (await r.json()) as { events: string };
    const text = await (await fetch(`${address}${job.events}`)).text();
    const events = text
      .split('\n\n')
      .filter(Boolean)
      .map((block) => block.split('\n')[0].replace('event: ', ''));
    expect(events[0]).toBe('queued');
    expect(events).toContain('progress');
    expect(events.at(-1)).toBe('done');
    expect(text).toMatch(/"etaSeconds":\d/);
  });

  it('serves the web app, a random scene, /healthz, /metrics and the OpenAPI docs', async () => {
    const page = await app.inject({ method: 'GET', url: '/' });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('<script type="module" src="/web/app.js">');
    expect((await app.inject({ method: 'GET', url: '/web/app.js' })).headers['content-type']).toMatch(
      /javascript/,
    );
    expect((await app.inject({ method: 'GET', url: '/web/..%2Fpackage.json' })).statusCode).toBe(404);
    const scene = await app.inject({ method: 'GET', url: '/api/v1/world/random?seed=5' });
    expect(scene.headers['content-type']).toBe('image/png');
    expect(scene.headers['x-caption']).toMatch(/\w/);
    expect((await app.inject({ method: 'GET', url: '/healthz' })).json().ok).toBe(true);
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/editkit_jobs_total\{state="done"\} \d+/);
    expect(metrics).toMatch(/process_resident_memory_bytes \d+/);
    const spec = (await app.inject({ method: 'GET', url: '/api/docs/json' })).json();
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining(['/api/v1/jobs', '/api/v1/jobs/{id}', '/api/v1/jobs/{id}/events']),
    );
    expect((await app.inject({ method: 'GET', url: '/api/docs' })).statusCode).toBeLessThan(400);
    const models = (await app.inject({ method: 'GET', url: '/api/v1/models' })).json() as { name: string }[];
    expect(models.map((m) => m.name)).toContain('tiny-sd');
  });
});

describe('load', () => {
  it('50 concurrent clients on the bundled model: every job done or refused with 429, none lost or doubled', async () => {
    const { runLoad } = await import('../../src/bench/serve_load.js');
    const { EMOJI_LDM } = await import('../support/bundled_model.js');
    const report = await runLoad({ modelDir: EMOJI_LDM, clients: 50, maxQueued: 16, steps: 5 });
    console.info(`[serve load] ${JSON.stringify(report)}`);
    expect(report.accepted + report.refused).toBe(50);
    expect(report.done).toBe(report.accepted);
    expect(report.lost + report.failed + report.duplicated).toBe(0);
    expect(report.accepted).toBeGreaterThanOrEqual(17); // the queue bound plus the running job
    expect(report.peakRssMiB).toBeLessThan(2048);
  }, 120_000);
});

describe('clip-edit', () => {
  it('runs DiffusionCLIP deltas chosen by name from --deltas folders, never by path', async () => {
    const { addLora, foldInitializerCasts, graphOf, loadModel, saveLora, setTensorValues, tensorToFloat32 } =
      await import('../../src/autodiff/index.js');
    const deltaDir = join(data, 'deltas');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(deltaDir, { recursive: true });
    const base = await loadModel(join(BUNDLES, 'tiny-sd', 'unet', 'model.onnx'));
    foldInitializerCasts(base);
    const lora = addLora(base, { rank: 2, prefix: 'unet.', initB: 'normal', seed: 2 });
    for (const t of graphOf(lora.model).initializer.filter((t) => t.name.endsWith('lora_B.weight')))
      setTensorValues(
        t,
        tensorToFloat32(t).map((v) => v * 10),
      );
    await saveLora(join(deltaDir, 'tiny-style.safetensors'), lora, {
      metadata: { editkit_delta: 'lora', t0: '300' },
    });
    const { app: withDeltas } = await buildServer({
      modelDirs: [BUNDLES],
      dataDir: data,
      device: 'cpu',
      threads: 1,
      deltaDirs: [deltaDir],
    });
    try {
      expect((await withDeltas.inject({ method: 'GET', url: '/api/v1/deltas' })).json()).toEqual([
        { name: 'tiny-style' },
      ]);
      const bad = await withDeltas.inject({
        method: 'POST',
        url: '/api/v1/jobs',
        payload: {
          method: 'clip-edit',
          model: 'tiny-sd',
          image: png32,
          params: { deltas: [{ name: '/etc/passwd' }] },
        },
      });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().error).toMatch(/unknown delta '\/etc\/passwd'; available: tiny-style/);
      const r = await withDeltas.inject({
        method: 'POST',
        url: '/api/v1/jobs',
        payload: {
          method: 'clip-edit',
          model: 'tiny-sd',
          image: png32,
          params: { deltas: [{ name: 'tiny-style', weight: 0.7 }], inversion_steps: 4, generation_steps: 4 },
        },
      });
      expect(r.statusCode, r.body).toBe(202);
      const job = await waitDone(withDeltas, r.json().id);
      expect(job.state, job.error).toBe('done');
      expect((await withDeltas.inject({ method: 'GET', url: job.results.result })).statusCode).toBe(200);
    } finally {
      await withDeltas.close();
    }
  });
});

describe('512 px', () => {
  it('edits a 512×512 upload with an SD-layout model (the random-weight tiny bundle standing in for SD 1.5)', async () => {
    const big = (
      await sharp({ create: { width: 512, height: 512, channels: 3, background: { r: 30, g: 140, b: 60 } } })
        .png()
        .toBuffer()
    ).toString('base64');
    const r = await app.inject({
      method: 'POST',
      url: '/api/v1/jobs',
      payload: {
        method: 'img2img',
        model: 'tiny-sd',
        image: big,
        params: { prompt: 'a cat', steps: 2, strength: 0.5, seed: 1 },
      },
    });
    expect(r.statusCode, r.body).toBe(202);
    const job = await waitDone(app, r.json().id, 120_000);
    expect(job.state, job.error).toBe('done');
    const png = await app.inject({ method: 'GET', url: job.results.result });
    expect(await sharp(png.rawPayload).metadata()).toMatchObject({ width: 512, height: 512 });
  }, 120_000);
});

describe('AbortSignal through the pipelines', () => {
  it('stops text-to-image, img2img and DiffEdit between steps with the signal’s reason', async () => {
    const { StableDiffusionBundle } = await import('../../src/models/bundle.js');
    const { textToImage } = await import('../../src/pipelines/text_to_image.js');
    const { img2img } = await import('../../src/pipelines/img2img.js');
    const { diffEdit } = await import('../../src/pipelines/diffedit.js');
    const { NDArray } = await import('../../src/runtime/ndarray.js');
    const bundle = await StableDiffusionBundle.load(join(BUNDLES, 'tiny-sd'), {
      device: 'cpu',
      intraOpNumThreads: 1,
    });
    try {
      const reason = new Error('stop here');
      const image = NDArray.zeros([1, 3, 32, 32]);
      for (const run of [
        (signal: AbortSignal) =>
          textToImage(bundle, { prompt: 'a cat', numInferenceSteps: 10, width: 32, height: 32, signal }),
        (signal: AbortSignal) => img2img(bundle, { prompt: 'a cat', image, numInferenceSteps: 10, signal }),
        (signal: AbortSignal) => diffEdit(bundle, { prompt: 'a dog', image, numInferenceSteps: 10, signal }),
      ]) {
        const controller = new AbortController();
        const p = run(controller.signal);
        // abort after the run has started: a pipeline checks the signal before each progress report
        setTimeout(() => controller.abort(reason), 0);
        await expect(p).rejects.toBe(reason);
      }
    } finally {
      await bundle.release();
    }
  });
});
