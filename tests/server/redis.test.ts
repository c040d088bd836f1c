/**
 * Scale-out on Redis: Debian's redis-server on a free port, the API with the Redis backend, and two
 * `editkit worker` processes. One worker is killed in the middle of a job; BullMQ's stalled-job check hands the job
 * to the other worker, and every job ends done, once. Also: cancel on Redis, and results served from Redis.
 * CI installs redis-server (.ci/run) and sets EDITKIT_REQUIRE_WEBGPU=1, which makes a missing server a failure.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildServer } from '../../src/server/app.js';
import { RedisBackend } from '../../src/server/redis_backend.js';

const REDIS = '/usr/bin/redis-server';
const required = process.env.EDITKIT_REQUIRE_WEBGPU === '1';
const CLI = join(import.meta.dirname, '..', '..', 'dist', 'cli', 'main.js');
const BUNDLES = join(import.meta.dirname, '..', 'fixtures', 'bundles');
const data = mkdtempSync(join(tmpdir(), 'editkit-redis-'));
const children: ChildProcess[] = [];
let app: FastifyInstance;
let url = '';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function worker(name: string): { child: ChildProcess; log: string[] } {
  const log: string[] = [];
  const child = spawn(
    process.execPath,
    [
      CLI,
      'worker',
      '--queue',
      url,
      '--models',
      BUNDLES,
      '--device',
      'cpu',
      '--threads',
      '1',
      '--lock-seconds',
      '3',
    ],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  child.stderr!.on('data', (chunk: Buffer) =>
    log.push(
      ...chunk
        .toString()
        .trim()
        .split('\n')
        .map((l) => `${name}: ${l}`),
    ),
  );
  children.push(child);
  return { child, log };
}

async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string) {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.runIf(existsSync(REDIS) || required)('Redis workers', () => {
  beforeAll(async () => {
    const port = await freePort();
    const redis = spawn(
      REDIS,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    children.push(redis);
    url = `redis://127.0.0.1:${port}`;
    await waitFor(
      () =>
        spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout?.trim() === 'PONG',
      10_000,
      'redis',
    );
    ({ app } = await buildServer({
      modelDirs: [BUNDLES],
      dataDir: data,
      device: 'cpu',
      backend: () => new RedisBackend({ url, maxQueued: 32 }),
    }));
  });
  afterAll(async () => {
    await app?.close();
    for (const c of children) c.kill('SIGKILL');
    rmSync(data, { recursive: true, force: true });
  });

  it('a worker killed mid-job loses nothing: every job ends done, once', async () => {
    const a = worker('A');
    const b = worker('B');
    await waitFor(
      () => [...a.log, ...b.log].filter((l) => l.includes('waiting for jobs')).length === 2,
      20_000,
      'workers',
    );
    const image = (
      await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: 200, g: 120, b: 40 } } })
        .png()
        .toBuffer()
    ).toString('base64');
    const ids: string[] = [];
    for (let k = 0; k < 6; k++) {
      const r = await app.inject({
        method: 'POST',
        url: '/api/v1/jobs',
        payload: {
          method: 'drag',
          model: 'tiny-sd',
          image,
          params: { points: '8,8:20,14', lora_steps: 60, steps: 5, seed: k },
        },
      });
      expect(r.statusCode, r.body).toBe(202);
      ids.push(r.json().id);
    }
    // Kill A as soon as it has started a job.
    await waitFor(() => a.log.some((l) => l.includes('started')), 30_000, 'worker A to start a job');
    const killedJob = /job (\S+) \(/.exec(a.log.find((l) => l.includes('started'))!)![1];
    a.child.kill('SIGKILL');
    const states = async () =>
      Promise.all(
        ids.map(
          async (id) =>
            (await app.inject({ method: 'GET', url: `/api/v1/jobs/${id}` })).json().state as string,
        ),
      );
    await waitFor(
      async () => (await states()).every((s) => s === 'done' || s === 'failed'),
      120_000,
      'all jobs to end',
    );
    expect(await states()).toEqual(ids.map(() => 'done'));
    // The killed job was finished by B; each job's result is served once it is done.
    expect(b.log.some((l) => l.includes(`job ${killedJob} done`))).toBe(true);
    for (const id of ids) {
      const job = (await app.inject({ method: 'GET', url: `/api/v1/jobs/${id}` })).json();
      const png = await app.inject({ method: 'GET', url: job.results.result });
      expect(png.statusCode).toBe(200);
      expect((await sharp(png.rawPayload).metadata()).width).toBe(32);
    }
    const doneLines = [...a.log, ...b.log].filter((l) => / done$/.test(l));
    expect(doneLines.length).toBe(ids.length); // each job completed once
    console.info(
      `[redis] 6 jobs on two workers, A killed during ${killedJob}: ${doneLines.length} completions, all done`,
    );
  }, 180_000);

  it('cancels a waiting job and a running one', async () => {
    const submit = async (steps: number) =>
      (
        await app.inject({
          method: 'POST',
          url: '/api/v1/jobs',
          payload: {
            method: 'generate',
            model: 'tiny-sd',
            params: { prompt: 'a cat', steps, width: 32, height: 32 },
          },
        })
      ).json().id as string;
    const first = await submit(200);
    const second = await submit(5);
    await app.inject({ method: 'DELETE', url: `/api/v1/jobs/${second}` });
    await app.inject({ method: 'DELETE', url: `/api/v1/jobs/${first}` });
    await waitFor(
      async () => {
        const s = await Promise.all(
          [first, second].map(
            async (id) => (await app.inject({ method: 'GET', url: `/api/v1/jobs/${id}` })).json().state,
          ),
        );
        return s.every((x) => x === 'cancelled' || x === 'done');
      },
      30_000,
      'cancellation',
    );
    expect((await app.inject({ method: 'GET', url: `/api/v1/jobs/${second}` })).json().state).toBe(
      'cancelled',
    );
  }, 60_000);
});
