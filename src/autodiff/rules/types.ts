/**
 * The interface between the gradient driver (../gradient.ts) and the per-operator rules in this folder.
 * See README.md here for how to write and register a rule.
 */
import type { Graph, GraphBuilder } from '../graph.js';
import type { NodeProto } from '../onnx_io.js';

export interface GradientContext {
  /** The forward node being differentiated (read its attributes with ../attrs.ts). */
  readonly node: NodeProto;
  /** Emits the backward nodes; names are scoped under the forward node's name. */
  readonly b: GraphBuilder;
  /** The graph, for types, shapes and constant values of forward tensors (`graph.shape(ctx.input(0))`). */
  readonly graph: Graph;
  /** The default-domain opset of the model: emit only operators and forms that it has. */
  readonly opset: number;
  /** The incoming gradient for each output of the node, or null where none flows (an unused output). */
  readonly dy: readonly (string | null)[];
  /** Per input: whether its gradient is wanted. Rules should skip work for inputs that are not. */
  readonly needs: readonly boolean[];
  /** Name of input i ('' when an optional input is omitted). */
  input(i: number): string;
  /** Name of output i. */
  output(i: number): string;
  /** dy[i], or zeros shaped like output i when no gradient reaches that output. */
  dyOrZeros(i: number): string;
  /** An Error naming this node and its operator, for `throw ctx.error('…not supported')`. */
  error(message: string): Error;
}

/**
 * Returns one entry per forward input: the name of a tensor holding dLoss/dInput (same shape and type as the
 * input), or null/undefined where the input gets no gradient (indices, shapes, inputs not in `needs`).
 */
export type GradientRule = (ctx: GradientContext) => readonly (string | null | undefined)[];
