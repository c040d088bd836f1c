/**
 * One EditKit measurement of `npm run bench -- vs-torch`, in its own process (so its peak RSS is this
 * configuration's): the ONNX exports of training/bench/vs_torch.py, the same inputs, median of `repeats` runs after a
 * warm-up. Prints one JSON line.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  AdamW,
  addLora,
  buildGradient,
  graphOf,
  loadModel,
  mseLoss,
  sessionFromModel,
  tensorDims,
  tensorToFloat32,
} from '../autodiff/index.js';
import { NDArray } from '../runtime/ndarray.js';
import { ModelSession, type Feed } from '../runtime/session.js';
import { readNpy } from '../util/npy.js';

export type VsTorchWhat = 'unet' | 'unet_grad' | 'lora_step' | 'vae_encode' | 'vae_decode' | 'matmul';

async function median(run: () => Promise<unknown>, repeats: number): Promise<number> {
  await run();
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    await run();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** A 1024³ MatMul on ONNX Runtime: the machine's matrix-multiply rate for this thread count. */
async function matmulGflops(threads: number): Promise<number> {
  const { TinyModelBuilder } = await import('./matmul_model.js');
  const session = await sessionFromModel(
    TinyModelBuilder.matmul(1024),
    { device: 'cpu', intraOpNumThreads: threads },
    'matmul',
  );
  const a = NDArray.full([1024, 1024], 0.5);
  const ms = await median(() => session.run({ a, b: a }), 10);
  await session.release();
  return (2 * 1024 ** 3) / ms / 1e6;
}

export async function measure(dir: string, what: VsTorchWhat, threads: number, repeats: number) {
  if (what === 'matmul') return { what, gflops: await matmulGflops(threads) };
  const npy = async (name: string) => readNpy(join(dir, `${name}.npy`));
  const settings = { device: 'cpu' as const, intraOpNumThreads: threads };
  let session: ModelSession;
  let feeds: Record<string, Feed>;
  if (what === 'lora_step') {
    // One LoRA training step, batch 2: the gradient model (rank 16 on the attention projections), then AdamW on the
    // host — what DragDiffusion's LoRA stage runs 80 times.
    const sample = await npy('sample');
    const timestep = await npy('timestep');
    const context = await npy('encoder_hidden_states');
    const lora = addLora(await loadModel(join(dir, 'unet.onnx')), { rank: 16, initB: 'normal' });
    const gradient = buildGradient(lora.model, {
      loss: mseLoss('out_sample', { input: 'target' }),
      wrt: lora.parameters,
      promote: true,
      inputShapes: { sample: sample.shape, timestep: timestep.shape, encoder_hidden_states: context.shape },
    });
    const grad = await sessionFromModel(gradient.model, settings, 'lora_step');
    const inits = new Map(graphOf(lora.model).initializer.map((t) => [t.name, t]));
    const params = Object.fromEntries(lora.parameters.map((p) => [p, tensorToFloat32(inits.get(p)!)]));
    const optimizer = new AdamW(params, { lr: 5e-4 });
    const base = { sample, timestep, encoder_hidden_states: context, target: NDArray.zeros(sample.shape) };
    const fetch = lora.parameters.map((p) => gradient.gradients[p]);
    const ms = await median(async () => {
      const feeds: Record<string, Feed> = { ...base };
      for (const p of lora.parameters) feeds[p] = new NDArray(params[p], tensorDims(inits.get(p)!));
      const out = await grad.run(feeds, fetch);
      optimizer.step(Object.fromEntries(lora.parameters.map((p) => [p, out[gradient.gradients[p]].data])));
    }, repeats);
    await grad.release();
    return { what, ms, peakRssMiB: process.resourceUsage().maxRSS / 1024 };
  }
  if (what === 'unet' || what === 'unet_grad') {
    const sample = await npy('sample');
    const timestep = await npy('timestep');
    const context = await npy('encoder_hidden_states');
    if (what === 'unet') {
      session = await ModelSession.create(join(dir, 'unet.onnx'), settings);
      feeds = { sample, timestep, encoder_hidden_states: context };
    } else {
      const first = (x: NDArray) =>
        new NDArray(x.data.slice(0, x.size / x.shape[0]), [1, ...x.shape.slice(1)]);
      const gradient = buildGradient(await loadModel(join(dir, 'unet.onnx')), {
        loss: mseLoss('out_sample', { input: 'target' }),
        wrt: ['sample'],
        inputShapes: {
          sample: [1, ...sample.shape.slice(1)],
          timestep: [1],
          encoder_hidden_states: [1, ...context.shape.slice(1)],
        },
      });
      session = await sessionFromModel(gradient.model, settings, 'unet_grad');
      feeds = {
        sample: first(sample),
        timestep: first(timestep),
        encoder_hidden_states: first(context),
        target: NDArray.zeros([1, ...sample.shape.slice(1)]),
      };
    }
  } else if (what === 'vae_encode') {
    session = await ModelSession.create(join(dir, 'vae_encoder.onnx'), settings);
    feeds = { sample: await npy('image') };
  } else {
    session = await ModelSession.create(join(dir, 'vae_decoder.onnx'), settings);
    feeds = { latent_sample: await npy('latent_sample') };
  }
  const ms = await median(() => session.run(feeds), repeats);
  await session.release();
  return { what, ms, peakRssMiB: process.resourceUsage().maxRSS / 1024 };
}

const [dir, what, threads, repeats] = process.argv.slice(2);
if (what) {
  const result = await measure(dir, what as VsTorchWhat, Number(threads), Number(repeats));
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
