/**
 * `npm run bench -- serve-load`: a bounded load test of `editkit serve`. A server on 127.0.0.1 with the bundled
 * model; N clients at once each submit one job (text-to-image at fast settings) and follow it over SSE until it
 * ends. Every job must finish or be refused with 429; none lost or run twice. Prints jobs/s, p50/p95 latency
 * (submit → done), refused, and the server's peak RSS.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Command } from 'commander';
import { buildServer } from '../server/app.js';

export interface LoadReport {
  clients: number;
  accepted: number;
  refused: number;
  done: number;
  failed: number;
  lost: number;
  duplicated: number;
  seconds: number;
  jobsPerSecond: number;
  p50Ms: number;
  p95Ms: number;
  peakRssMiB: number;
  maxQueued: number;
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export async function runLoad(options: {
  modelDir: string;
  clients: number;
  maxQueued: number;
  steps: number;
}): Promise<LoadReport> {
  const data = mkdtempSync(join(tmpdir(), 'editkit-load-'));
  const { app } = await buildServer({
    modelDirs: [dirname(options.modelDir)],
    dataDir: data,
    device: 'cpu',
    maxQueued: options.maxQueued,
  });
  const model = options.modelDir.split('/').filter(Boolean).at(-1)!;
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
  const started = performance.now();
  try {
    const outcomes = await Promise.all(
      Array.from({ length: options.clients }, async (_, k) => {
        const t = performance.now();
        const r = await fetch(`${address}/api/v1/jobs`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            method: 'generate',
            model,
            params: { prompt: `a cat, client ${k}`, steps: options.steps, seed: k },
          }),
        });
        if (r.status === 429) return { state: 'refused' as const, id: '', ms: 0, events: 0 };
        const job = (await r.json()) as { id: string; events: string };
        const text = await (await fetch(`${address}${job.events}`)).text();
        const last = text.trim().split('\n\n').at(-1) ?? '';
        const state = /^event: (done|failed|cancelled)/.exec(last)?.[1] ?? 'lost';
        const doneEvents = (text.match(/^event: done$/gm) ?? []).length;
        return { state, id: job.id, ms: performance.now() - t, events: doneEvents };
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const accepted = outcomes.filter((o) => o.state !== 'refused');
    const done = accepted.filter((o) => o.state === 'done');
    const ids = accepted.map((o) => o.id);
    return {
      clients: options.clients,
      accepted: accepted.length,
      refused: outcomes.length - accepted.length,
      done: done.length,
      failed: accepted.filter((o) => o.state === 'failed').length,
      lost: accepted.filter((o) => o.state === 'lost').length,
      duplicated: ids.length - new Set(ids).size + accepted.filter((o) => o.events > 1).length,
      seconds,
      jobsPerSecond: done.length / seconds,
      p50Ms: percentile(
        done.map((o) => o.ms),
        50,
      ),
      p95Ms: percentile(
        done.map((o) => o.ms),
        95,
      ),
      peakRssMiB: peakRss / 2 ** 20,
      maxQueued: options.maxQueued,
    };
  } finally {
    clearInterval(sampler);
    await app.close();
    rmSync(data, { recursive: true, force: true });
  }
}

export async function serveLoadMain(argv: readonly string[], defaultModel: string): Promise<void> {
  const program = new Command('bench serve-load')
    .option('--model <dir>', 'model bundle (default: the bundled model)')
    .option('--clients <n>', 'concurrent clients', '50')
    .option('--queue <n>', "the server's queue bound", '16')
    .option('--steps <n>', 'denoising steps per job', '5');
  program.parse([...argv], { from: 'user' });
  const o = program.opts<Record<string, string>>();
  const report = await runLoad({
    modelDir: o.model ?? defaultModel,
    clients: Number(o.clients),
    maxQueued: Number(o.queue),
    steps: Number(o.steps),
  });
  console.log(
    `${report.clients} clients: ${report.accepted} accepted, ${report.refused} refused (429), ${report.done} done, ${report.failed} failed, ` +
      `${report.lost} lost, ${report.duplicated} duplicated; ${report.jobsPerSecond.toFixed(2)} jobs/s, ` +
      `latency p50 ${report.p50Ms.toFixed(0)} ms, p95 ${report.p95Ms.toFixed(0)} ms; peak RSS ${report.peakRssMiB.toFixed(0)} MiB (queue bound ${report.maxQueued})`,
  );
}
