/**
 * The graphs DiffusionCLIP trains with, each one ONNX model built by src/autodiff:
 *
 * - the step-loss model: the UNet being fine-tuned (LoRA branches, or every weight) predicts ε at x_t; the graph
 *   forms x̂₀ = c_x · x_t + c_ε · ε, decodes it with the (frozen) VAE decoder, embeds the image with the (frozen)
 *   CLIP image tower, and takes
 *       λ_CLIP · (1 − cos(E_I(x̂₀) − E_I(x₀), E_T(y_tar) − E_T(y_ref)))  +  λ_L1 · mean |x̂₀ − x₀|
 *   (image space, [-1, 1]), plus, when λ_global > 0, the reference code's global CLIP term
 *   λ_global · (1 − cos(E_I(x̂₀), E_T(y_tar))); it returns the loss, ε, and the gradients of the trained parameters (and of x_t for the
 *   full chain);
 * - the VJP model, for the full chain only: Σ ε(x_t) ⊙ u for an upstream gradient u, with its gradients with
 *   respect to x_t and the parameters, to carry d loss / d x back through one DDIM step;
 * - the forward model: the adapted UNet with the parameters as inputs (the full chain's forward pass).
 */
import {
  attachLoss,
  buildGradient,
  cosineDistanceLoss,
  DataType,
  Graph,
  GraphBuilder,
  l1Loss,
  makeValueInfo,
  tensorDims,
  type LossSpec,
  type ModelProto,
} from '../../autodiff/index.js';
import type { ClipImageProcessing } from '../../models/clip.js';

/** Graph inputs the loss adds to the UNet's own (sample, timestep, encoder_hidden_states). */
export const CLIP_LOSS_INPUTS = {
  /** [2]: c_x, c_ε of x̂₀ = c_x · x_t + c_ε · ε. */
  x0Coefficients: 'dclip_x0_coefficients',
  /** [1, 3, H, W]: the input image x₀ in [-1, 1] (the identity term). */
  sourceImage: 'dclip_source_image',
  /**
   * [1, 3, H, W] in [-1, 1]: the image the directional term measures the change from: x₀ itself (the paper), or
   * the original model's x̂₀ at the same x_t (so that the change is the fine-tuning's alone, see
   * {@link DirectionReference}).
   */
  referenceImage: 'dclip_reference_image',
  /** [1, D]: E_T(y_tar) − E_T(y_ref) of unit text embeddings. */
  textDirection: 'dclip_text_direction',
  /** [V, 3, s, s]: pixel noise added to each CLIP view (fresh each step; zeros for none). */
  viewNoise: 'dclip_view_noise',
  /** [V, D]: E_T(y_tar) per view, for the global term (only when λ_global > 0). */
  targetText: 'dclip_target_text',
  /** [1, C, h, w]: the full chain's upstream gradient d loss / d ε. */
  upstream: 'dclip_upstream',
} as const;

export interface ClipLossSpec {
  /** The UNet output name (ε). */
  output: string;
  sampleShape: readonly number[];
  contextShape: readonly number[];
  timestepShape: readonly number[];
  /** The VAE's scaling factor: latents are divided by it before decoding. */
  scalingFactor: number;
  clipProcessing: ClipImageProcessing;
  /** Image size the decoder produces, [H, W]. */
  imageSize: readonly [number, number];
  lambdaClip: number;
  lambdaL1: number;
  /**
   * Weight of the global term 1 − cos(E_I(x̂₀), E_T(y_tar)) (default 0, off). The directional term ignores how far
   * the image moves, so a small CLIP can be satisfied by a faint change in the right direction; the global term
   * rewards reaching the target text (StyleGAN-NADA's and the reference code's `lambda_global`).
   */
  lambdaGlobal?: number;
  /** The crops CLIP sees (default {@link CLIP_VIEWS}); the view-noise input has one slice per view. */
  views?: readonly ClipView[];
  /**
   * Floor on the length of the CLIP change in the directional term's cosine (default 0: none). With the original
   * model's x̂₀ as the reference the change starts at zero, where the cosine's gradient grows as 1/|change|; below
   * the floor the term becomes a bounded projection onto the text direction instead.
   */
  changeFloor?: number;
  /** Parameters to differentiate (and feed each step). */
  parameters: readonly string[];
  /** Also d loss / d x_t (the full chain needs it). */
  sampleGradient: boolean;
}

export interface ClipLossModel {
  model: ModelProto;
  loss: string;
  clipLoss: string;
  l1: string;
  /** The global term's tensor, when λ_global > 0. */
  globalLoss?: string;
  output: string;
  gradients: Record<string, string>;
}

function inputShapes(
  graph: Graph,
  spec: Pick<ClipLossSpec, 'sampleShape' | 'contextShape' | 'timestepShape'>,
) {
  const shapes: Record<string, number[]> = {
    sample: [...spec.sampleShape],
    encoder_hidden_states: [...spec.contextShape],
  };
  if (graph.isInput('timestep')) shapes.timestep = [...spec.timestepShape];
  return shapes;
}

/**
 * Views CLIP sees of each image: the whole image and three crops (7/8 at two corners, 3/4 at the centre), as
 * [top, left, height, width] fractions. A small CLIP is easy to satisfy with changes no person would call the
 * edit; averaging the directional loss over crops (with fresh pixel noise each step) makes the shortcut harder,
 * as CLIP-guided generators do with cutouts.
 */
export type ClipView = readonly [top: number, left: number, height: number, width: number];

export const CLIP_VIEWS: readonly ClipView[] = [
  [0, 0, 1, 1],
  [0, 0, 7 / 8, 7 / 8],
  [1 / 8, 1 / 8, 7 / 8, 7 / 8],
  [1 / 8, 1 / 8, 3 / 4, 3 / 4],
];

/**
 * x̂₀ → decoder → [0, 1]; x̂₀ and x₀ both cut into the views ({@link CLIP_VIEWS} by default), resized to CLIP's size, noised, normalised,
 * embedded; the directional loss per view, averaged; plus the L1 to x₀ (and the global term, per view, averaged).
 */
function clipLoss(vaeDecoder: ModelProto, clipImage: ModelProto, spec: ClipLossSpec): LossSpec {
  return {
    description: 'directional CLIP + L1',
    attach(graph) {
      const F = DataType.FLOAT;
      const b = new GraphBuilder(graph, 'dclip');
      const [imageHeight, imageWidth] = spec.imageSize;
      const viewBoxes = spec.views ?? CLIP_VIEWS;
      const views = viewBoxes.length;
      const { size, mean, std } = spec.clipProcessing;
      graph.addInput(makeValueInfo(CLIP_LOSS_INPUTS.x0Coefficients, F, [2]));
      graph.addInput(makeValueInfo(CLIP_LOSS_INPUTS.sourceImage, F, [1, 3, imageHeight, imageWidth]));
      graph.addInput(makeValueInfo(CLIP_LOSS_INPUTS.referenceImage, F, [1, 3, imageHeight, imageWidth]));
      graph.addInput(makeValueInfo(CLIP_LOSS_INPUTS.viewNoise, F, [views, 3, size, size]));
      const coefficient = (k: number) =>
        b.op('Gather', [CLIP_LOSS_INPUTS.x0Coefficients, b.int64Scalar(k)], { axis: 0 });
      const x0 = b.add(
        b.mul(b.cast('sample', F), coefficient(0)),
        b.mul(b.cast(spec.output, F), coefficient(1)),
      );
      const latent = b.scale(x0, 1 / spec.scalingFactor);
      const image = b.cast(
        attachLoss(vaeDecoder, { bindings: { latent_sample: latent }, prefix: 'vae/' }).attach(graph),
        F,
      );
      // [2, 3, H, W]: the prediction and the reference, in [0, 1], cut and resized alike.
      const pair = b.add(
        b.scale(b.concat([image, CLIP_LOSS_INPUTS.referenceImage], 0), 0.5),
        b.scalarLike(0.5, image),
      );
      const cut = viewBoxes.map(([top, left, h, w]) => {
        const y0 = Math.round(top * imageHeight);
        const x0 = Math.round(left * imageWidth);
        const y1 = y0 + Math.round(h * imageHeight);
        const x1 = x0 + Math.round(w * imageWidth);
        const crop =
          y0 === 0 && x0 === 0 && y1 === imageHeight && x1 === imageWidth
            ? pair
            : b.slice(pair, [y0, x0], [y1, x1], [2, 3]);
        const ch = y1 - y0;
        const cw = x1 - x0;
        return ch === size && cw === size
          ? crop
          : b.op('Resize', [crop, '', b.constant(F, [4], [1, 1, size / ch, size / cw])], {
              mode: 'linear',
              coordinate_transformation_mode: 'half_pixel',
            });
      });
      // [2·V, 3, s, s], ordered (edited, source) per view; the same noise for both images of a view.
      const stacked = b.concat(cut, 0);
      const noise = b.reshape(b.concat([CLIP_LOSS_INPUTS.viewNoise, CLIP_LOSS_INPUTS.viewNoise], 1), [
        2 * views,
        3,
        size,
        size,
      ]);
      const noisy = b.add(stacked, noise);
      const pixels = b.div(b.sub(noisy, b.constant(F, [1, 3, 1, 1], mean)), b.constant(F, [1, 3, 1, 1], std));
      const embeds = attachLoss(clipImage, { bindings: { pixel_values: pixels }, prefix: 'clip/' }).attach(
        graph,
      );
      const norm = b.op('Sqrt', [b.reduceSum(b.mul(embeds, embeds), [-1], true)]);
      const unitEmbeds = b.div(embeds, b.op('Max', [norm, b.scalarLike(1e-12, embeds)]));
      // [V, 2, D] → edited − source per view.
      const byView = b.reshape(unitEmbeds, [views, 2, -1]);
      const [edited, source] = b.split(byView, 1, [1, 1]);
      const change = b.reshape(b.sub(edited, source), [views, -1]);
      graph.addInput(makeValueInfo(CLIP_LOSS_INPUTS.textDirection, F, graph.shape(change)));
      const direction = directionalLoss(b, change, CLIP_LOSS_INPUTS.textDirection, spec.changeFloor ?? 0);
      const l1 = l1Loss(image, { input: CLIP_LOSS_INPUTS.sourceImage }).attach(graph);
      b.op('Identity', [direction], undefined, { outputs: ['dclip_clip_loss'] });
      b.op('Identity', [l1], undefined, { outputs: ['dclip_l1_loss'] });
      const total = b.add(b.scale(direction, spec.lambdaClip), b.scale(l1, spec.lambdaL1));
      if (!((spec.lambdaGlobal ?? 0) > 0)) return total;
      const global = cosineDistanceLoss(b.reshape(edited, [views, -1]), {
        input: CLIP_LOSS_INPUTS.targetText,
      }).attach(graph);
      b.op('Identity', [global], undefined, { outputs: [GLOBAL_LOSS] });
      return b.add(total, b.scale(global, spec.lambdaGlobal!));
    },
  };
}

const GLOBAL_LOSS = 'dclip_global_loss';

/**
 * mean over views of 1 − change · u / (max(|change|, floor) · |u|): the cosine distance to the text direction u,
 * which below the floor turns into a projection whose gradient stays bounded.
 */
function directionalLoss(b: GraphBuilder, change: string, textDirection: string, floor: number): string {
  if (!(floor > 0)) return cosineDistanceLoss(change, { input: textDirection }).attach(b.graph);
  const dot = b.reduceSum(b.mul(change, textDirection), [-1], false);
  // The tiny offset keeps Sqrt's gradient finite where the change is exactly zero (the first update).
  const length = (x: string) =>
    b.op('Sqrt', [b.add(b.reduceSum(b.mul(x, x), [-1], false), b.scalarLike(1e-12, dot))]);
  const denominator = b.mul(b.op('Max', [length(change), b.scalarLike(floor, dot)]), length(textDirection));
  const distance = b.sub(b.scalarLike(1, dot), b.div(dot, denominator));
  return b.reduceMean(distance, undefined, false);
}

/** The step-loss model (see the module comment). `unet` carries the trained parameters as initializers. */
export function buildClipLossModel(
  unet: ModelProto,
  vaeDecoder: ModelProto,
  clipImage: ModelProto,
  spec: ClipLossSpec,
): ClipLossModel {
  const graph = Graph.fromModel(unet);
  // Attached here rather than by buildGradient, so that its parts can be outputs.
  const loss = clipLoss(vaeDecoder, clipImage, spec).attach(graph);
  const result = buildGradient(graph.toModel(), {
    loss,
    wrt: [...(spec.sampleGradient ? ['sample'] : []), ...spec.parameters],
    outputs: [
      spec.output,
      'dclip_clip_loss',
      'dclip_l1_loss',
      ...((spec.lambdaGlobal ?? 0) > 0 ? [GLOBAL_LOSS] : []),
    ],
    promote: spec.parameters,
    inputShapes: inputShapes(graph, spec),
  });
  return {
    model: result.model,
    loss: result.loss,
    clipLoss: 'dclip_clip_loss',
    l1: 'dclip_l1_loss',
    globalLoss: (spec.lambdaGlobal ?? 0) > 0 ? GLOBAL_LOSS : undefined,
    output: spec.output,
    gradients: result.gradients,
  };
}

/** Σ ε ⊙ u and its gradients with respect to x_t and the parameters (the full chain's backward through a step). */
export function buildVjpModel(
  unet: ModelProto,
  spec: Pick<ClipLossSpec, 'output' | 'sampleShape' | 'contextShape' | 'timestepShape' | 'parameters'>,
): ClipLossModel {
  const graph = Graph.fromModel(unet);
  const b = new GraphBuilder(graph, 'vjp');
  graph.addInput(makeValueInfo(CLIP_LOSS_INPUTS.upstream, DataType.FLOAT, [...spec.sampleShape]));
  const dot = b.reduceSum(
    b.mul(b.cast(spec.output, DataType.FLOAT), CLIP_LOSS_INPUTS.upstream),
    undefined,
    false,
  );
  const result = buildGradient(graph.toModel(), {
    loss: dot,
    wrt: ['sample', ...spec.parameters],
    outputs: [spec.output],
    promote: spec.parameters,
    inputShapes: inputShapes(graph, spec),
  });
  return {
    model: result.model,
    loss: result.loss,
    clipLoss: '',
    l1: '',
    output: spec.output,
    gradients: result.gradients,
  };
}

/** The UNet with `parameters` turned from initializers into graph inputs (fed the optimizer's values). */
export function promoteParameters(unet: ModelProto, parameters: readonly string[]): ModelProto {
  const graph = Graph.fromModel(unet);
  for (const name of parameters) {
    const t = graph.initializers.get(name);
    if (!t) throw new Error(`'${name}' is not an initializer of the UNet`);
    graph.initializers.delete(name);
    graph.addInput(makeValueInfo(name, t.dataType, tensorDims(t)));
  }
  graph.invalidate();
  return graph.toModel();
}
