/**
 * `npm run bench -- vs-torch` (issue 11): EditKit (ONNX Runtime, CPU) side by side with PyTorch on the same
 * networks, inputs and thread count. training/bench/vs_torch.py builds each network from the project's PyTorch
 * reference modules (random weights), exports it to ONNX, and times the PyTorch side; vs_torch_worker.ts times the
 * export here. Every measurement runs in its own process (peak RSS per configuration), warm-up excluded, median of
 * N runs; the two sides alternate, one measurement at a time, so they share the machine's state.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/files.js';
import type { VsTorchWhat } from './vs_torch_worker.js';

const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..');
const SCRIPT = join(ROOT, 'training', 'bench', 'vs_torch.py');
const WORKER = join(ROOT, 'dist', 'bench', 'vs_torch_worker.js');

interface Row {
  size: string;
  what: VsTorchWhat;
  editkitMs: number;
  torchMs: number;
  ratio: number;
  editkitRssMiB: number;
  torchRssMiB: number;
  /** Multiply-adds of one run (forward rows), and EditKit's rate as a fraction of ORT's MatMul rate. */
  multiplyAdds?: number;
  editkitGflops?: number;
  rooflineFraction?: number;
}

function runJson(command: string, args: string[], what: string): Record<string, unknown> {
  const r = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 1 << 24 });
  const line = r.stdout?.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(
      `${what} failed (exit ${r.status}): ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}`,
    );
  }
}

const LABELS: Record<VsTorchWhat, string> = {
  unet: 'UNet step, CFG batch 2',
  unet_grad: 'UNet forward+backward to the latents, batch 1',
  lora_step: 'LoRA training step (rank 16, batch 2, AdamW)',
  vae_encode: 'VAE encode',
  vae_decode: 'VAE decode',
  matmul: 'MatMul 1024³',
};

export async function vsTorchMain(argv: readonly string[]): Promise<void> {
  const program = new Command('bench vs-torch')
    .option(
      '--sizes <list>',
      'bundled (the bundled model’s architecture) and/or sd15 (SD 1.5 at 512²)',
      'bundled',
    )
    .option('--threads <n>', 'threads on both sides', '2')
    .option('--repeats <n>', 'timed runs per measurement (default 5; 2 at SD-1.5 size)')
    .option(
      '--what <list>',
      'unet,unet_grad,lora_step,vae_encode,vae_decode',
      'unet,unet_grad,lora_step,vae_encode,vae_decode',
    )
    .option(
      '--python <path>',
      'a Python with torch (Debian: python3-torch, with libopenblas0-openmp)',
      '/usr/bin/python3',
    )
    .option('--work <dir>', 'where the exported networks are kept', 'bench-results/vs-torch/models')
    .option('--out <dir>', 'where results.{md,json} go', 'bench-results/vs-torch');
  program.parse([...argv], { from: 'user' });
  const o = program.opts<Record<string, string>>();
  const probe = spawnSync(o.python, ['-c', 'import torch, onnx'], { encoding: 'utf8' });
  if (probe.status !== 0)
    throw new UserError(
      `'${o.python}' cannot import torch and onnx: install python3-torch, python3-onnx and libopenblas0-openmp (Debian), or pass --python`,
    );
  if (!existsSync(WORKER)) throw new UserError(`${WORKER} is missing: run npm run build`);
  await mkdir(o.out, { recursive: true });
  const threads = o.threads;
  const sizes = o.sizes.split(',').map((s) => s.trim());
  const whats = o.what.split(',').map((s) => s.trim()) as VsTorchWhat[];
  const log = (line: string) => process.stderr.write(`${line}\n`);

  const matmulOrt = runJson(process.execPath, [WORKER, '-', 'matmul', threads, '10'], 'ORT matmul');
  const matmulTorch = runJson(o.python, [SCRIPT, 'matmul', '--threads', threads], 'torch matmul');
  const peak = Number(matmulOrt.gflops);
  log(
    `MatMul 1024³: ORT ${peak.toFixed(1)} GFLOP/s, torch ${Number(matmulTorch.gflops).toFixed(1)} GFLOP/s (${String(matmulTorch.blas)})`,
  );

  const rows: Row[] = [];
  let torchInfo: Record<string, unknown> = {};
  for (const size of sizes) {
    const dir = join(o.work, size);
    if (!existsSync(join(dir, 'meta.json'))) {
      log(`exporting the ${size} networks to ${dir} (PyTorch → ONNX)…`);
      runJson(
        o.python,
        [SCRIPT, 'export', '--size', size, '--out', dir, '--threads', threads],
        `export ${size}`,
      );
    }
    const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as {
      multiply_adds: Record<string, number>;
      unet_parameters: number;
    };
    const repeats = o.repeats ?? (size === 'sd15' ? '2' : '5');
    for (const what of whats) {
      const ek = runJson(process.execPath, [WORKER, dir, what, threads, repeats], `EditKit ${size} ${what}`);
      const pt = runJson(
        o.python,
        [SCRIPT, 'time', '--dir', dir, '--what', what, '--threads', threads, '--repeats', repeats],
        `torch ${size} ${what}`,
      );
      torchInfo = pt;
      const key = what === 'unet' ? 'unet' : what;
      const macs = what === 'unet_grad' || what === 'lora_step' ? undefined : meta.multiply_adds[key];
      const editkitMs = Number(ek.ms);
      const row: Row = {
        size,
        what,
        editkitMs,
        torchMs: Number(pt.ms),
        ratio: editkitMs / Number(pt.ms),
        editkitRssMiB: Number(ek.peakRssMiB),
        torchRssMiB: Number(pt.peak_rss_mib),
        multiplyAdds: macs,
        editkitGflops: macs ? (2 * macs) / editkitMs / 1e6 : undefined,
        rooflineFraction: macs ? (2 * macs) / editkitMs / 1e6 / peak : undefined,
      };
      rows.push(row);
      log(
        `${size} ${LABELS[what]}: EditKit ${editkitMs.toFixed(1)} ms, PyTorch ${row.torchMs.toFixed(1)} ms (×${row.ratio.toFixed(2)})`,
      );
    }
  }
  const report = {
    machine: {
      threads: Number(threads),
      ortMatmulGflops: peak,
      torchMatmulGflops: Number(matmulTorch.gflops),
    },
    torch: { version: torchInfo.torch, blas: torchInfo.blas ?? matmulTorch.blas },
    rows,
  };
  await writeFileAtomic(join(o.out, 'results.json'), `${JSON.stringify(report, null, 2)}\n`);
  const f = (v: number | undefined, d = 1) => (v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(d));
  const md = [
    `EditKit (onnxruntime-node, CPU EP) vs PyTorch ${String(report.torch.version)} (${String(report.torch.blas)}), ${threads} threads each; median of N runs after a warm-up, each measurement in its own process.`,
    `MatMul 1024³: ORT ${f(peak)} GFLOP/s, PyTorch ${f(report.machine.torchMatmulGflops)} GFLOP/s.`,
    '',
    '| size | what | EditKit ms | PyTorch ms | EditKit / PyTorch | EditKit peak RSS MiB | PyTorch peak RSS MiB | EditKit GFLOP/s | of ORT MatMul peak |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.size} | ${LABELS[r.what]} | ${f(r.editkitMs)} | ${f(r.torchMs)} | ${f(r.ratio, 2)} | ${f(r.editkitRssMiB, 0)} | ${f(r.torchRssMiB, 0)} | ${f(r.editkitGflops)} | ${r.rooflineFraction === undefined ? '–' : `${(100 * r.rooflineFraction).toFixed(0)} %`} |`,
    ),
    '',
  ].join('\n');
  await writeFileAtomic(join(o.out, 'results.md'), md);
  console.log(md);
}
