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
import { Command, CommanderError } from 'commander';
import { bundledModelDir } from '../cli/options.js';
import { StableDiffusionBundle } from '../models/bundle.js';
import { probeWebGpu, type ResolvedDevice } from '../runtime/device.js';
import { benchAutodiffOne, type AutodiffBenchRequest, type AutodiffBenchResult } from './autodiff.js';
import { relativeDifference, runOnDevice } from './device_parity.js';
import { diffusionClipBenchMain } from './diffusion_clip.js';
import { diffusionClipStyleMain } from './diffusion_clip_style.js';
import { diffEditBenchMain } from './diffedit.js';
import { dragBenchMain } from './drag.js';
import { serveLoadMain } from './serve_load.js';
import { vsTorchMain } from './vs_torch.js';
import { benchPipeline, type PipelineBenchResult } from './pipeline.js';
import { UserError } from '../util/errors.js';

const FIXTURE_MODEL = join(
  fileURLToPath(new URL('.', import.meta.url)),
  '..',
  '..',
  'tests',
  'fixtures',
  'bundles',
  'tiny-sd',
);

function defaultModel(): string {
  const bundled = bundledModelDir();
  return existsSync(join(bundled, 'model_index.json')) ? bundled : FIXTURE_MODEL;
}

type WorkerRequest =
  | {
      suite: 'pipeline';
      model: string;
      device: ResolvedDevice;
      steps: number;
      unetRepeats: number;
      threads?: number;
    }
  | ({ suite: 'autodiff' } & AutodiffBenchRequest);

async function runWorker(request: WorkerRequest): Promise<void> {
  const result =
    request.suite === 'pipeline' ? await benchPipeline(request) : await benchAutodiffOne(request);
  process.send?.(result);
}

function measureInChild<T>(request: WorkerRequest): Promise<T | { error: string }> {
  return new Promise((resolve) => {
    const child = fork(fileURLToPath(import.meta.url), ['--worker', JSON.stringify(request)], {
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    let stderr = '';
    let result: T | undefined;
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('message', (message) => (result = message as T));
    child.on('exit', (code) => {
      if (result) resolve(result);
      else
        resolve({
          error: `exit ${code}: ${stderr
            .trim()
            .split('\n')
            .filter((l) => !/Vulkan|BackendVk/.test(l))
            .slice(-3)
            .join(' | ')}`,
        });
    });
  });
}

async function autodiffMain(argv: string[]): Promise<void> {
  const program = new Command('bench autodiff')
    .option(
      '--model <dir>',
      'model bundle whose UNet is differentiated (default: the bundled model, else tiny-sd)',
    )
    .option('--unet <file>', 'a bare UNet model.onnx instead of a bundle (e.g. the SD-1.5-size random UNet)')
    .option('--cross-attention-dim <n>', 'text width for --unet', '768')
    .option('--devices <list>', 'comma-separated devices', 'cpu,webgpu')
    .option('--sizes <list>', 'latent sizes (h = w)', '')
    .option('--variants <list>', 'latents,lora', 'latents,lora')
    .option('--repeats <n>', 'timed runs per measurement', '5');
  program.parse(argv, { from: 'user' });
  const opts = program.opts<{
    model?: string;
    unet?: string;
    crossAttentionDim: string;
    devices: string;
    sizes: string;
    variants: string;
    repeats: string;
  }>();
  let unetPath: string;
  let sizes: number[];
  let crossAttentionDim: number;
  let latentChannels = 4;
  if (opts.unet) {
    unetPath = opts.unet;
    sizes = opts.sizes ? opts.sizes.split(',').map(Number) : [32, 64];
    crossAttentionDim = Number(opts.crossAttentionDim);
  } else {
    const model = opts.model ?? defaultModel();
    unetPath = join(model, 'unet', 'model.onnx');
    const bundle = await StableDiffusionBundle.load(model, { device: 'cpu' });
    const native = bundle.defaultImageSize / bundle.vaeScaleFactor;
    sizes = opts.sizes
      ? opts.sizes.split(',').map(Number)
      : [native / 2, native, native * 2].filter(
          (s) => s % (bundle.sizeMultiple / bundle.vaeScaleFactor) === 0,
        );
    crossAttentionDim = (await bundle.textEncoder.encode(...encodeEmpty(bundle))).shape[2];
    latentChannels = bundle.unetInChannels;
    await bundle.release();
  }
  console.log(`suite: autodiff   UNet: ${unetPath}   batch 2 (CFG), loss = MSE(out_sample, target)`);
  console.log(
    'device   variant  latent  fwd ms    fwd+bwd ms  bwd/fwd  peak RSS MiB  nodes fwd→grad  build+load s',
  );
  for (const device of opts.devices.split(',') as ResolvedDevice[]) {
    if (device === 'webgpu' && !(await probeWebGpu())) {
      console.log(`${device.padEnd(8)} unavailable: no WebGPU adapter on this machine`);
      continue;
    }
    for (const variant of opts.variants.split(',') as ('latents' | 'lora')[]) {
      for (const latentSize of sizes) {
        const r = await measureInChild<AutodiffBenchResult>({
          suite: 'autodiff',
          unetPath,
          device,
          latentSize,
          variant,
          repeats: Number(opts.repeats),
          crossAttentionDim,
          latentChannels,
        });
        if ('error' in r) {
          console.log(
            `${device.padEnd(8)} ${variant.padEnd(8)} ${String(latentSize).padEnd(7)} failed: ${r.error}`,
          );
          continue;
        }
        console.log(
          `${device.padEnd(8)} ${variant.padEnd(8)} ${String(latentSize).padEnd(7)} ${r.forwardMs.toFixed(1).padStart(8)}  ${r.forwardBackwardMs.toFixed(1).padStart(10)}  ${r.backwardOverForward.toFixed(2).padStart(7)}  ${r.peakRssMiB.toFixed(0).padStart(12)}  ${`${r.forwardNodes}→${r.gradientNodes}`.padStart(14)}  ${r.buildSeconds.toFixed(2)}`,
        );
      }
    }
  }
}

function encodeEmpty(bundle: StableDiffusionBundle): [Int32Array, [number, number]] {
  const { inputIds, shape } = bundle.tokenizer.batchEncode(['']);
  return [inputIds, shape];
}

async function parityMain(argv: string[]): Promise<void> {
  const program = new Command('bench parity')
    .option('--model <dir>', 'model bundle (default: the bundled model, else tiny-sd)')
    .option('--devices <list>', 'reference device first', 'cpu,webgpu')
    .option('--steps <n>', 'denoising / inversion steps', '20')
    .option('--json', 'print one JSON object on stdout');
  program.parse(argv, { from: 'user' });
  const opts = program.opts<{ model?: string; devices: string; steps: string; json?: boolean }>();
  const model = opts.model ?? defaultModel();
  const [reference, ...others] = opts.devices.split(',') as ResolvedDevice[];
  const log = (line: string) => (opts.json ? process.stderr : process.stdout).write(`${line}\n`);
  const base = await runOnDevice(model, reference, Number(opts.steps));
  log(`suite: parity   model: ${model}   reference: ${reference}`);
  log(
    `${reference}: text-to-image ${base.seconds.textToImage.toFixed(2)} s, inversion ${base.seconds.inversion.toFixed(2)} s, gradient ${base.seconds.gradient.toFixed(3)} s`,
  );
  const rows: Record<string, unknown>[] = [{ device: reference, seconds: base.seconds }];
  for (const device of others) {
    if (device === 'webgpu' && !(await probeWebGpu())) {
      log(`${device}: unavailable (no WebGPU adapter on this machine)`);
      rows.push({ device, error: 'no WebGPU adapter on this machine' });
      continue;
    }
    const run = await runOnDevice(model, device, Number(opts.steps));
    const differences = {
      image: relativeDifference(base.image, run.image),
      latents: relativeDifference(base.latents, run.latents),
      inverted: relativeDifference(base.inverted, run.inverted),
      gradient: relativeDifference(base.gradient, run.gradient),
    };
    rows.push({ device, seconds: run.seconds, differences });
    log(
      `${device}: text-to-image ${run.seconds.textToImage.toFixed(2)} s, inversion ${run.seconds.inversion.toFixed(2)} s, gradient ${run.seconds.gradient.toFixed(3)} s`,
    );
    log(
      `${device} vs ${reference} (max |Δ| / max(1, |ref|)): image ${differences.image.toExponential(2)}, final latents ${differences.latents.toExponential(2)}, inverted latents ${differences.inverted.toExponential(2)}, d loss/d latents ${differences.gradient.toExponential(2)}`,
    );
  }
  if (opts.json) process.stdout.write(`${JSON.stringify({ suite: 'parity', model, reference, rows })}\n`);
}

async function benchMain(argv: string[]): Promise<void> {
  if (argv[0] === 'parity') return parityMain(argv.slice(1));
  if (argv[0] === 'drag') {
    await dragBenchMain(argv.slice(1), defaultModel());
    return;
  }
  if (argv[0] === 'diffedit') {
    await diffEditBenchMain(argv.slice(1), defaultModel());
    return;
  }
  if (argv[0] === 'vs-torch') return vsTorchMain(argv.slice(1));
  if (argv[0] === 'serve-load') return serveLoadMain(argv.slice(1), defaultModel());
  if (argv[0] === 'diffusion-clip') return diffusionClipBenchMain(argv.slice(1), defaultModel());
  if (argv[0] === 'diffusion-clip-style') return diffusionClipStyleMain(argv.slice(1), defaultModel());
  if (argv[0] === 'autodiff') return autodiffMain(argv.slice(1));
  const program = new Command('bench')
    .argument(
      '[suite]',
      'pipeline | diffedit | diffusion-clip | diffusion-clip-style | vs-torch | autodiff | parity | drag',
      'pipeline',
    )
    .option('--model <dir>', 'model bundle (default: the bundled model, else the tiny test bundle)')
    .option('--devices <list>', 'comma-separated devices to measure', 'cpu,webgpu')
    .option('--steps <n>', 'denoising steps for the end-to-end run', '50')
    .option('--repeats <n>', 'timed UNet evaluations', '10')
    .option('--threads <n>', 'CPU threads')
    .option('--json', 'print JSON');
  program.parse(argv, { from: 'user' });
  const suite = program.args[0] ?? 'pipeline';
  if (suite !== 'pipeline') {
    process.stderr.write(
      `bench: unknown suite '${suite}' (available: pipeline, diffedit, diffusion-clip, diffusion-clip-style, vs-torch, autodiff, parity, drag)\n`,
    );
    process.exitCode = 2;
    return;
  }
  const opts = program.opts<{
    model?: string;
    devices: string;
    steps: string;
    repeats: string;
    threads?: string;
    json?: boolean;
  }>();
  const model = opts.model ?? defaultModel();
  const rows: (PipelineBenchResult | { device: string; error: string })[] = [];
  for (const device of opts.devices.split(',').map((d) => d.trim()) as ResolvedDevice[]) {
    if (device === 'webgpu' && !(await probeWebGpu())) {
      rows.push({ device, error: 'no WebGPU adapter on this machine' });
      continue;
    }
    const result = await measureInChild<PipelineBenchResult>({
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
      console.log(
        `speed-up ${row.device} vs cpu (same run): UNet step ×${(cpu.unetStepMs / row.unetStepMs).toFixed(2)}, end-to-end ×${(cpu.endToEndSeconds / row.endToEndSeconds).toFixed(2)}`,
      );
    }
  }
}

const workerIndex = process.argv.indexOf('--worker');
if (workerIndex >= 0) await runWorker(JSON.parse(process.argv[workerIndex + 1]) as WorkerRequest);
else
  await benchMain(process.argv.slice(2)).catch((error: unknown) => {
    // Commander has printed its own one-line message (or the help) already.
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode;
      return;
    }
    // A mistake in the flags or inputs: one line, exit 2 (as the editkit command does); anything else is a bug.
    if (!(error instanceof UserError)) throw error;
    process.stderr.write(`bench: ${error.message}\n`);
    process.exitCode = 2;
  });
