/**
 * Geometry shared by the Conv and ConvTranspose rules: attributes with their defaults, and explicit pads for
 * auto_pad (which needs static spatial sizes).
 */
import { attrInt, attrInts, attrString } from '../attrs.js';
import type { GradientContext } from './types.js';

export interface ConvGeometry {
  spatial: number;
  kernel: (number | null)[];
  strides: number[];
  dilations: number[];
  /** [begin..., end...] */
  pads: number[];
  group: number;
}

export function convGeometry(ctx: GradientContext, rank: number): ConvGeometry {
  const { node } = ctx;
  const spatial = rank - 2;
  const w = ctx.graph.shape(ctx.input(1));
  const kernel =
    attrInts(node, 'kernel_shape') ??
    (w ? w.slice(2).map((d) => (typeof d === 'number' ? d : null)) : new Array(spatial).fill(null));
  const strides = attrInts(node, 'strides') ?? new Array(spatial).fill(1);
  const dilations = attrInts(node, 'dilations') ?? new Array(spatial).fill(1);
  let pads = attrInts(node, 'pads') ?? new Array(2 * spatial).fill(0);
  const group = attrInt(node, 'group', 1);
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  if (autoPad === 'VALID') pads = new Array(2 * spatial).fill(0);
  else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    if (node.opType !== 'Conv') throw ctx.error(`auto_pad=${autoPad} is not supported for ${node.opType}`);
    const x = ctx.graph.shape(ctx.input(0));
    pads = new Array(2 * spatial).fill(0);
    for (let i = 0; i < spatial; i++) {
      const inDim = x?.[2 + i];
      const k = kernel[i];
      if (typeof inDim !== 'number' || typeof k !== 'number') {
        throw ctx.error(`auto_pad=${autoPad} needs static spatial sizes (use explicit pads or inputShapes)`);
      }
      const eff = (k - 1) * dilations[i] + 1;
      const total = Math.max((Math.ceil(inDim / strides[i]) - 1) * strides[i] + eff - inDim, 0);
      const small = Math.floor(total / 2);
      pads[i] = autoPad === 'SAME_UPPER' ? small : total - small;
      pads[i + spatial] = total - pads[i];
    }
  }
  return { spatial, kernel, strides, dilations, pads, group };
}
