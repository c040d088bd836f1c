/**
 * One EditKit measurement of `npm run bench -- vs-torch`, in its own process (so its peak RSS is this
 * configuration's): the ONNX exports of training/bench/vs_torch.py, the same inputs, median of `repeats` runs after a
 * warm-up. Prints one JSON line.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import {
  AdamW,
  addLora,
  buildGradient,
  Graph,
  makeValueInfo,
  DataType,
  type CheckpointOptions,
  type CheckpointReport,
  type ModelProto,
  graphOf,
  gradientSessionSettings,
  loadModel,
  mseLoss,
  sessionFromModel,
  tensorDims,
  tensorToFloat32,
} from '../autodiff/index.js';
import { buildDragGradientModel, chooseFeatureTensor, DRAG_INPUTS } from '../pipelines/drag/index.js';
import { NDArray } from '../runtime/ndarray.js';
import { measureEndToEnd, type EndToEndWhat } from './vs_torch_e2e.js';
import { ModelSession, type Feed } from '../runtime/session.js';
import { readNpy } from '../util/npy.js';

export const END_TO_END: readonly VsTorchWhat[] = ['diffedit', 'drag'];

export type VsTorchWhat =
  EndToEndWhat | 'unet' | 'unet_grad' | 'drag_step' | 'lora_step' | 'vae_encode' | 'vae_decode' | 'matmul';

/** The rows with a backward pass, which gradient checkpointing applies to. */
export const GRADIENT_ROWS: readonly VsTorchWhat[] = ['unet_grad', 'drag_step', 'lora_step'];

/** The static shape of `tensor` when the model's inputs have `shapes` (shape inference, nothing run). */
function inferredShape(
  model: ModelProto,
  tensor: string,
  shapes: Record<string, readonly number[]>,
): number[] {
  const graph = Graph.fromModel(model);
  graph.inputs = graph.inputs.map((v) => {
    const dims = shapes[v.name];
    const type = v.type?.tensorType?.elemType ?? DataType.FLOAT;
    return dims ? makeValueInfo(v.name, type, [...dims]) : v;
  });
  graph.invalidate();
  const shape = graph.shape(tensor);
  if (!shape || shape.some((d) => typeof d !== 'number'))
    throw new Error(`cannot infer the shape of '${tensor}'`);
  return shape as number[];
}

/** Deterministic values in [0, 1) (the timing does not depend on them; both sides use the same shapes). */
function ramp(shape: readonly number[], step = 0.618034): NDArray {
  const size = shape.reduce((a, b) => a * b, 1);
  return new NDArray(
    Float32Array.from({ length: size }, (_, i) => (i * step) % 1),
    shape,
  );
}

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

export async function measure(
  dir: string,
  what: VsTorchWhat,
  threads: number,
  repeats: number,
  segments = 0,
) {
  if (what === 'matmul') return { what, gflops: await matmulGflops(threads) };
  const npy = async (name: string) => readNpy(join(dir, `${name}.npy`));
  const checkpoint: CheckpointOptions | undefined = segments > 1 ? { segments } : undefined;
  // The session settings the pipelines use for gradient models (no arena, no pre-packed weight copies under
  // checkpointing); EDITKIT_BENCH_PREPACK=0|1 overrides pre-packing to measure what it costs.
  const prepackOverride = process.env.EDITKIT_BENCH_PREPACK;
  const settings = {
    ...gradientSessionSettings({ device: 'cpu', intraOpNumThreads: threads }, checkpoint),
    ...(prepackOverride === undefined ? {} : { prepacking: prepackOverride !== '0' }),
    graphOptimizationLevel: process.env.EDITKIT_BENCH_ORT_LEVEL as 'extended' | undefined,
  };
  // The resident set once the model is built and loaded (the JS-side model released), before any run.
  let setup: { peakMiB: number; currentMiB: number } | undefined;
  const afterSetup = () => {
    (globalThis as { gc?: () => void }).gc?.();
    setup = {
      peakMiB: process.resourceUsage().maxRSS / 1024,
      currentMiB: process.memoryUsage().rss / 1024 / 1024,
    };
  };
  let report: CheckpointReport | undefined;
  const done = (ms: number) => ({
    what,
    ms,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    setupPeakRssMiB: setup?.peakMiB,
    setupRssMiB: setup?.currentMiB,
    segments: report?.segments ?? 1,
    recomputedNodes: report?.recomputedNodes ?? 0,
  });
  const first = (x: NDArray) => new NDArray(x.data.slice(0, x.size / x.shape[0]), [1, ...x.shape.slice(1)]);
  if (what === 'drag_step') {
    // One DragDiffusion latent-optimisation iteration at batch 1: the pipeline's own gradient model (UNet, motion
    // supervision on the default decoder feature, the mask term, d loss / d z_t), one handle with r_m = 1.
    const sample = first(await npy('sample'));
    const context = first(await npy('encoder_hidden_states'));
    const timestep = first(await npy('timestep'));
    const points = 9;
    // Built in a scope of its own, so that the ONNX model in JS memory can go once ORT has loaded it.
    const { dragSession, cells, fetch } = await (async () => {
      const unet = await loadModel(join(dir, 'unet.onnx'), { externalData: false });
      const feature = chooseFeatureTensor(unet, dir);
      const [, , fh, fw] = inferredShape(unet, feature.tensor, {
        sample: sample.shape,
        timestep: timestep.shape,
        encoder_hidden_states: context.shape,
      });
      const drag = buildDragGradientModel(unet, {
        feature: feature.tensor,
        output: 'out_sample',
        sampleShape: sample.shape,
        contextShape: context.shape,
        timestepShape: timestep.shape,
        cells: fh * fw,
        points,
        checkpoint,
      });
      report = drag.checkpoint;
      return {
        dragSession: await sessionFromModel(drag.model, settings, 'drag_step', {
          besides: join(dir, 'unet.onnx'),
        }),
        cells: fh * fw,
        fetch: [drag.gradient, drag.value, drag.feature],
      };
    })();
    afterSetup();
    const [, c, h, w] = sample.shape;
    const dragFeeds: Record<string, Feed> = {
      sample,
      timestep,
      encoder_hidden_states: context,
      [DRAG_INPUTS.shifted]: ramp([cells, points]),
      [DRAG_INPUTS.source]: ramp([cells, points], 0.414214),
      [DRAG_INPUTS.pointWeights]: NDArray.full([points], 1),
      [DRAG_INPUTS.keep]: NDArray.full([1, 1, h, w], 0.1),
      [DRAG_INPUTS.previous]: ramp([1, c, h, w]),
      [DRAG_INPUTS.coefficients]: new NDArray(Float32Array.from([0.9, -0.1]), [2]),
    };
    const ms = await median(() => dragSession.run(dragFeeds, fetch), repeats);
    await dragSession.release();
    return done(ms);
  }
  let session: ModelSession;
  let feeds: Record<string, Feed>;
  if (what === 'lora_step') {
    // One LoRA training step: the gradient model (rank 16 on the attention projections), then AdamW on the host —
    // what DragDiffusion's LoRA stage runs 80 times. Batch 2 at the bundled size, 1 at SD-1.5 size (as unet_grad).
    const batchOne = (await npy('sample')).shape[2] >= 64;
    const pick = async (name: string) => (batchOne ? first(await npy(name)) : npy(name));
    const sample = await pick('sample');
    const timestep = await pick('timestep');
    const context = await pick('encoder_hidden_states');
    const lora = addLora(await loadModel(join(dir, 'unet.onnx'), { externalData: false }), {
      rank: 16,
      initB: 'normal',
    });
    const gradient = buildGradient(lora.model, {
      loss: mseLoss('out_sample', { input: 'target' }),
      wrt: lora.parameters,
      promote: true,
      inputShapes: { sample: sample.shape, timestep: timestep.shape, encoder_hidden_states: context.shape },
      checkpoint,
    });
    report = gradient.checkpoint;
    const grad = await sessionFromModel(gradient.model, settings, 'lora_step', {
      besides: join(dir, 'unet.onnx'),
    });
    afterSetup();
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
    return done(ms);
  }
  if (what === 'unet' || what === 'unet_grad') {
    const sample = await npy('sample');
    const timestep = await npy('timestep');
    const context = await npy('encoder_hidden_states');
    if (what === 'unet') {
      session = await ModelSession.create(join(dir, 'unet.onnx'), settings);
      feeds = { sample, timestep, encoder_hidden_states: context };
    } else {
      const built = await (async () => {
        const gradient = buildGradient(await loadModel(join(dir, 'unet.onnx'), { externalData: false }), {
          loss: mseLoss('out_sample', { input: 'target' }),
          wrt: ['sample'],
          inputShapes: {
            sample: [1, ...sample.shape.slice(1)],
            timestep: [1],
            encoder_hidden_states: [1, ...context.shape.slice(1)],
          },
          checkpoint,
        });
        report = gradient.checkpoint;
        return sessionFromModel(gradient.model, settings, 'unet_grad', { besides: join(dir, 'unet.onnx') });
      })();
      session = built;
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
  afterSetup();
  const ms = await median(() => session.run(feeds), repeats);
  await session.release();
  return done(ms);
}

// Run as a script (the bench spawns it); importing it for its types and constants runs nothing.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [dir, what, threads, repeats, segments] = process.argv.slice(2);
  const root = join(fileURLToPath(import.meta.url), '..', '..', '..');
  const result = END_TO_END.includes(what as EndToEndWhat)
    ? await measureEndToEnd(
        dir,
        what as EndToEndWhat,
        Number(threads),
        Number(repeats),
        join(root, 'models', 'emoji-ldm'),
        join(root, 'examples', 'cat-and-ball.png'),
      )
    : await measure(dir, what as VsTorchWhat, Number(threads), Number(repeats), Number(segments ?? 0));
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
