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
import { END_TO_END, GRADIENT_ROWS, type VsTorchWhat } from './vs_torch_worker.js';

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
  /** Gradient checkpointing segments on the EditKit side (1 = off), and forward nodes run twice. */
  segments: number;
  recomputedNodes: number;
  /** EditKit's resident set once the model is built and loaded, before the first run (gradient rows). */
  editkitSetupRssMiB?: number;
  /** End-to-end rows: the network calls both sides made. */
  counts?: Record<string, unknown>;
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
  drag_step: 'drag iteration (motion supervision + mask term, d/d z_t), batch 1',
  lora_step: 'LoRA training step (rank 16, AdamW; batch 2, SD 1.5: 1)',
  vae_encode: 'VAE encode',
  vae_decode: 'VAE decode',
  matmul: 'MatMul 1024³',
  diffedit: 'DiffEdit, whole edit (50 steps, r 0.8, 10 mask draws)',
  drag: 'DragDiffusion, whole edit (LoRA 80 × batch 4, inversion, drag, denoise)',
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
      'unet,unet_grad,drag_step,lora_step,vae_encode,vae_decode,diffedit,drag',
      'unet,unet_grad,drag_step,lora_step,vae_encode,vae_decode,diffedit,drag',
    )
    .option(
      '--checkpoint <list>',
      'gradient checkpointing segments for the gradient rows, one row each (0 = off), e.g. 0,4,8',
      '0',
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
  for (const w of whats)
    if (!(w in LABELS) || w === 'matmul') throw new UserError(`--what: unknown measurement '${w}'`);
  const checkpoints = o.checkpoint.split(',').map((s) => Number(s.trim()));
  if (checkpoints.some((c) => !Number.isInteger(c) || c < 0 || c === 1))
    throw new UserError(`--checkpoint: segment counts are 0 (off) or integers ≥ 2, got '${o.checkpoint}'`);
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
      // The end-to-end rows run the bundled pipeline, so they exist at the bundled size only.
      if (END_TO_END.includes(what) && size !== 'bundled') continue;
      const settings = GRADIENT_ROWS.includes(what) ? checkpoints : [0];
      let pt: Record<string, unknown> | undefined;
      for (const segments of settings) {
        const ek = runJson(
          process.execPath,
          [WORKER, dir, what, threads, repeats, String(segments)],
          `EditKit ${size} ${what}${segments ? ` (${segments} segments)` : ''}`,
        );
        pt ??= runJson(
          o.python,
          [
            SCRIPT,
            'time',
            '--dir',
            dir,
            '--what',
            what,
            '--threads',
            threads,
            '--repeats',
            repeats,
            ...(ek.counts ? ['--counts', JSON.stringify(ek.counts)] : []),
          ],
          `torch ${size} ${what}`,
        );
        torchInfo = pt;
        const key = what === 'unet' ? 'unet' : what;
        const macs = ['unet', 'vae_encode', 'vae_decode'].includes(what)
          ? meta.multiply_adds[key]
          : undefined;
        const editkitMs = Number(ek.ms);
        const row: Row = {
          size,
          what,
          editkitMs,
          torchMs: Number(pt.ms),
          ratio: editkitMs / Number(pt.ms),
          editkitRssMiB: Number(ek.peakRssMiB),
          torchRssMiB: Number(pt.peak_rss_mib),
          segments: Number(ek.segments ?? 1),
          recomputedNodes: Number(ek.recomputedNodes ?? 0),
          editkitSetupRssMiB: ek.setupRssMiB === undefined ? undefined : Number(ek.setupRssMiB),
          counts: ek.counts as Record<string, unknown> | undefined,
          multiplyAdds: macs,
          editkitGflops: macs ? (2 * macs) / editkitMs / 1e6 : undefined,
          rooflineFraction: macs ? (2 * macs) / editkitMs / 1e6 / peak : undefined,
        };
        rows.push(row);
        log(
          `${size} ${LABELS[what]}${row.segments > 1 ? `, checkpointing ${row.segments} segments` : ''}: EditKit ${editkitMs.toFixed(1)} ms, ${row.editkitRssMiB.toFixed(0)} MiB; PyTorch ${row.torchMs.toFixed(1)} ms, ${row.torchRssMiB.toFixed(0)} MiB (×${row.ratio.toFixed(2)})`,
        );
      }
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
    '| size | what | checkpointing | EditKit ms | PyTorch ms | EditKit / PyTorch | EditKit peak RSS MiB | PyTorch peak RSS MiB | EditKit GFLOP/s | of ORT MatMul peak |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.size} | ${LABELS[r.what]} | ${GRADIENT_ROWS.includes(r.what) ? (r.segments > 1 ? `${r.segments} segments` : 'off') : '–'} | ${f(r.editkitMs)} | ${f(r.torchMs)} | ${f(r.ratio, 2)} | ${f(r.editkitRssMiB, 0)} | ${f(r.torchRssMiB, 0)} | ${f(r.editkitGflops)} | ${r.rooflineFraction === undefined ? '–' : `${(100 * r.rooflineFraction).toFixed(0)} %`} |`,
    ),
    '',
    ...checkpointTable(rows, f),
  ].join('\n');
  await writeFileAtomic(join(o.out, 'results.md'), md);
  console.log(md);
}

/** Peak memory against time for the gradient rows measured at more than one checkpointing setting. */
function checkpointTable(rows: readonly Row[], f: (v: number | undefined, d?: number) => string): string[] {
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    if (!GRADIENT_ROWS.includes(r.what)) continue;
    const key = `${r.size}/${r.what}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const measured = [...groups.values()].filter((g) => g.length > 1);
  if (measured.length === 0) return [];
  return [
    'Gradient checkpointing, peak memory against time (EditKit; "loaded" is the resident set once the gradient model is built and loaded, before the first run):',
    '',
    '| size | what | checkpointing | forward nodes run twice | ms | × time without | loaded RSS MiB | peak RSS MiB | × peak without |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...measured.flatMap((group) => {
      const base = group.find((r) => r.segments <= 1) ?? group[0];
      return group.map(
        (r) =>
          `| ${r.size} | ${LABELS[r.what]} | ${r.segments > 1 ? `${r.segments} segments` : 'off'} | ${r.recomputedNodes} | ${f(r.editkitMs)} | ${f(r.editkitMs / base.editkitMs, 2)} | ${f(r.editkitSetupRssMiB, 0)} | ${f(r.editkitRssMiB, 0)} | ${f(r.editkitRssMiB / base.editkitRssMiB, 2)} |`,
      );
    }),
    '',
  ];
}
