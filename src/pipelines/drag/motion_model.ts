/**
 * The latent-optimisation model: the UNet, DragDiffusion's whole loss on top of it, and d loss / d sample, so one
 * ONNX Runtime run per iteration gives the features for point tracking, ε, the loss and its gradient.
 *
 * Loss (the official `drag_diffusion_update`), with F the decoder feature map at the current z_t:
 *   Σ_i (2r+1)² · mean |F(q + d_i) − sg(F(q))|  +  λ · Σ |(z'_{t−1} − z⁰_{t−1}) · (1 − M)|
 * where z'_{t−1} = a·z_t + b·ε(z_t) (a DDIM step is affine in the sample and the model output).
 *
 * Two host-computed sparse-in-effect matrices turn F into the samples (features.ts): A = F·W_shift, B = F·W_src.
 * ONNX has no stop-gradient, but the autodiff treats Sign as non-differentiable, so the graph minimises the
 * surrogate Σ w · Sign(A − B) · A: its gradient is exactly Σ w · sign(A − B) · dA, the gradient of Σ w |A − sg(B)|
 * (torch's |x|' is 0 at 0, as Sign). The true loss value is a separate output.
 */
import {
  buildGradient,
  DataType,
  type CheckpointOptions,
  type CheckpointReport,
  Graph,
  GraphBuilder,
  makeValueInfo,
  type ModelProto,
} from '../../autodiff/index.js';

/** The inputs the loss adds to the UNet's own (sample, timestep, encoder_hidden_states). */
export const DRAG_INPUTS = {
  /** [cells, points]: bilinear samples at q + d. */
  shifted: 'drag_shifted_weights',
  /** [cells, points]: samples at q (held fixed). */
  source: 'drag_source_weights',
  /** [points]: per-point weight (0 = unused). */
  pointWeights: 'drag_point_weights',
  /** [1, 1, h, w]: λ · (1 − M) at latent resolution (zeros switch the term off). */
  keep: 'drag_keep',
  /** [1, C, h, w]: z⁰_{t−1}, the DDIM step from the initial z_t. */
  previous: 'drag_previous_latents',
  /** [2]: a, b of z_{t−1} = a · z_t + b · model output. */
  coefficients: 'drag_step_coefficients',
} as const;

export interface DragModelSpec {
  /** The decoder feature tensor of the UNet graph. */
  feature: string;
  /** The UNet output (ε, or whatever the model predicts; the step coefficients must match it). */
  output: string;
  /** Fixed input shapes: sample [1, C, h, w], encoder_hidden_states [1, L, D], timestep ([] or [1]). */
  sampleShape: readonly number[];
  contextShape: readonly number[];
  timestepShape: readonly number[];
  /** Feature map cells (h_f · w_f) and sampled points. */
  cells: number;
  points: number;
  /** More tensors to differentiate with respect to (tests: the feature map itself). */
  extraWrt?: readonly string[];
  /** Gradient checkpointing: trade a second forward pass for memory (SD 1.5 at 512²). */
  checkpoint?: CheckpointOptions;
}

export interface DragGradientModel {
  model: ModelProto;
  /** Output names. */
  feature: string;
  output: string;
  /** The true loss value. */
  value: string;
  /** The motion-supervision part alone (value − the mask term). */
  motion: string;
  /** d loss / d sample. */
  gradient: string;
  /** Gradients of `extraWrt`, by name. */
  extraGradients: Record<string, string>;
  checkpoint?: CheckpointReport;
}

export function buildDragGradientModel(unet: ModelProto, spec: DragModelSpec): DragGradientModel {
  const graph = Graph.fromModel(unet);
  for (const name of [spec.feature, spec.output, 'sample']) {
    if (!graph.has(name)) throw new Error(`drag model: '${name}' is not a tensor of the UNet graph`);
  }
  const F = DataType.FLOAT;
  const b = new GraphBuilder(graph, 'drag');
  const input = (name: string, shape: number[]) => {
    graph.addInput(makeValueInfo(name, F, shape));
    return name;
  };
  const [, channels, height, width] = spec.sampleShape;
  const shifted = input(DRAG_INPUTS.shifted, [spec.cells, spec.points]);
  const source = input(DRAG_INPUTS.source, [spec.cells, spec.points]);
  const pointWeights = input(DRAG_INPUTS.pointWeights, [spec.points]);
  const keep = input(DRAG_INPUTS.keep, [1, 1, height, width]);
  const previous = input(DRAG_INPUTS.previous, [1, channels, height, width]);
  const coefficients = input(DRAG_INPUTS.coefficients, [2]);

  // Motion supervision on [1, C_f, cells] · [cells, points] → [1, C_f, points].
  const features = b.reshape(b.cast(spec.feature, F), [0, 0, -1]);
  const a = b.op('MatMul', [features, shifted]);
  const reference = b.op('MatMul', [features, source]);
  const difference = b.sub(a, reference);
  const motionValue = b.reduceSum(b.mul(b.op('Abs', [difference]), pointWeights), undefined, false);
  const motionSurrogate = b.reduceSum(
    b.mul(b.mul(b.op('Sign', [difference]), a), pointWeights),
    undefined,
    false,
  );

  // The mask term: the DDIM step from the current z_t must stay where the initial one went, outside M.
  const sample = b.cast('sample', F);
  const output = b.cast(spec.output, F);
  const coefficient = (k: number) => b.op('Gather', [coefficients, b.int64Scalar(k)], { axis: 0 });
  const stepped = b.add(b.mul(sample, coefficient(0)), b.mul(output, coefficient(1)));
  const maskTerm = b.reduceSum(b.mul(b.op('Abs', [b.sub(stepped, previous)]), keep), undefined, false);

  const value = b.op('Identity', [b.add(motionValue, maskTerm)], undefined, { outputs: ['drag_loss'] });
  const motion = b.op('Identity', [motionValue], undefined, { outputs: ['drag_motion_loss'] });
  const surrogate = b.add(motionSurrogate, maskTerm);

  const inputShapes: Record<string, number[]> = {
    sample: [...spec.sampleShape],
    encoder_hidden_states: [...spec.contextShape],
  };
  if (graph.isInput('timestep')) inputShapes.timestep = [...spec.timestepShape];
  const result = buildGradient(graph.toModel(), {
    loss: surrogate,
    wrt: ['sample', ...(spec.extraWrt ?? [])],
    outputs: [spec.feature, spec.output, value, motion],
    inputShapes,
    checkpoint: spec.checkpoint,
  });
  return {
    model: result.model,
    feature: spec.feature,
    output: spec.output,
    value,
    motion,
    gradient: result.gradients['sample'],
    extraGradients: Object.fromEntries((spec.extraWrt ?? []).map((w) => [w, result.gradients[w]])),
    checkpoint: result.checkpoint,
  };
}
