#!/usr/bin/env node
/**
 * `npm run bench -- [suite] [options]`: prints figures, asserts nothing (targets live in the issues, and
 * timing on shared machines is too noisy for tests). Each device is measured in its own child process so that
 * peak memory is per device and one provider's allocations do not colour another's timings.
 */
import { fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { bundledModelDir } from '../cli/options.js';
import { probeWebGpu, type ResolvedDevice } from '../runtime/device.js';
import { benchPipeline, type PipelineBenchResult } from './pipeline.js';

const FIXTURE_MODEL = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'tests', 'fixtures', 'bundles', 'tiny-sd');

function defaultModel(): string {
  const bundled = bundledModelDir();
  return existsSync(join(bundled, 'model_index.json')) ? bundled : FIXTURE_MODEL;
}

interface WorkerRequest {
  suite: 'pipeline';
  model: string;
  device: ResolvedDevice;
  steps: number;
  unetRepeats: number;
  threads?: number;
}

async function runWorker(request: WorkerRequest): Promise<void> {
  const result = await benchPipeline(request);
  process.send?.(result);
}

function measureInChild(request: WorkerRequest): Promise<PipelineBenchResult | { error: string }> {
  return new Promise((resolve) => {
    const child = fork(fileURLToPath(import.meta.url), ['--worker', JSON.stringify(request)], { stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
    let stderr = '';
    let result: PipelineBenchResult | undefined;
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('message', (message) => (result = message as PipelineBenchResult));
    child.on('exit', (code) => {
      if (result) resolve(result);
      else resolve({ error: `exit ${code}: ${stderr.trim().split('\n').filter((l) => !/Vulkan|BackendVk/.test(l)).slice(-3).join(' | ')}` });
    });
  });
}

async function benchMain(argv: string[]): Promise<void> {
  const program = new Command('bench')
    .argument('[suite]', 'pipeline', 'pipeline')
    .option('--model <dir>', 'model bundle (default: the bundled model, else the tiny test bundle)')
    .option('--devices <list>', 'comma-separated devices to measure', 'cpu,webgpu')
    .option('--steps <n>', 'denoising steps for the end-to-end run', '50')
    .option('--repeats <n>', 'timed UNet evaluations', '10')
    .option('--threads <n>', 'CPU threads')
    .option('--json', 'print JSON');
  program.parse(argv, { from: 'user' });
  const suite = program.args[0] ?? 'pipeline';
  if (suite !== 'pipeline') {
    process.stderr.write(`bench: unknown suite '${suite}' (available: pipeline)\n`);
    process.exitCode = 2;
    return;
  }
  const opts = program.opts<{ model?: string; devices: string; steps: string; repeats: string; threads?: string; json?: boolean }>();
  const model = opts.model ?? defaultModel();
  const rows: (PipelineBenchResult | { device: string; error: string })[] = [];
  for (const device of opts.devices.split(',').map((d) => d.trim()) as ResolvedDevice[]) {
    if (device === 'webgpu' && !(await probeWebGpu())) {
      rows.push({ device, error: 'no WebGPU adapter on this machine' });
      continue;
    }
    const result = await measureInChild({
      suite: 'pipeline',
      model,
      device,
      steps: Number(opts.steps),
      unetRepeats: Number(opts.repeats),
      threads: opts.threads ? Number(opts.threads) : undefined,
    });
    rows.push('error' in result ? { device, error: result.error } : result);
  }
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ suite, model, rows }, null, 2)}\n`);
    return;
  }
  console.log(`suite: pipeline   model: ${model}`);
  console.log('device   image   load s   UNet step ms (median / min)   end-to-end s (steps)   peak RSS MiB');
  for (const row of rows) {
    if ('error' in row) {
      console.log(`${row.device.padEnd(8)} unavailable: ${row.error}`);
      continue;
    }
    console.log(
      `${row.device.padEnd(8)} ${String(row.imageSize).padEnd(7)} ${row.loadSeconds.toFixed(2).padStart(6)}   ${row.unetStepMs.toFixed(2).padStart(10)} / ${row.unetStepMinMs.toFixed(2).padEnd(14)}  ${row.endToEndSeconds.toFixed(2).padStart(8)} (${row.steps})          ${row.peakRssMiB.toFixed(0)}`,
    );
  }
  const ok = rows.filter((r): r is PipelineBenchResult => !('error' in r));
  const cpu = ok.find((r) => r.device === 'cpu');
  for (const row of ok) {
    if (cpu && row !== cpu) {
      console.log(`speed-up ${row.device} vs cpu (same run): UNet step ×${(cpu.unetStepMs / row.unetStepMs).toFixed(2)}, end-to-end ×${(cpu.endToEndSeconds / row.endToEndSeconds).toFixed(2)}`);
    }
  }
}

const workerIndex = process.argv.indexOf('--worker');
if (workerIndex >= 0) await runWorker(JSON.parse(process.argv[workerIndex + 1]) as WorkerRequest);
else await benchMain(process.argv.slice(2));
