import { range, requireRank } from './common.js';
import { convGeometry } from './conv_common.js';
import type { GradientRule } from './types.js';

/**
 * y = conv(x, w) + b, any number of spatial dims, groups, strides, dilations and pads.
 *  - dx: ConvTranspose(dy, w) with the same geometry, plus output_padding for the rows at the end that the
 *    stride left out of the transposed output's size (static sizes); with runtime sizes, a ConvTranspose
 *    without end padding cropped and zero-padded to x's shape.
 *  - dw: a convolution of x by dy with batch and channels swapped (stride ↔ dilation), cropped to the kernel
 *    size; for groups, x's channels are regrouped so one grouped Conv computes every group's weights.
 *  - db: dy summed over batch and space.
 */
export const Conv: GradientRule = (ctx) => {
  const { b } = ctx;
  const [x, w, bias] = [ctx.input(0), ctx.input(1), ctx.input(2)];
  const rank = requireRank(ctx, x);
  const g = convGeometry(ctx, rank);
  const { spatial, strides, dilations, pads, group } = g;
  const dy = ctx.dyOrZeros(0);
  const xs = ctx.graph.shape(x);
  const ys = ctx.graph.shape(ctx.output(0));
  const ws = ctx.graph.shape(w);
  const kernel = g.kernel.map(
    (k, i) => k ?? (typeof ws?.[2 + i] === 'number' ? (ws[2 + i] as number) : null),
  );
  const out: (string | null)[] = [null, null, null];

  if (ctx.needs[0]) {
    const attrs: Record<string, number[] | number> = { strides, dilations, pads, group };
    let staticPadding: number[] | undefined = [];
    for (let i = 0; i < spatial; i++) {
      const inDim = xs?.[2 + i];
      const outDim = ys?.[2 + i];
      const k = kernel[i];
      if (typeof inDim !== 'number' || typeof outDim !== 'number' || typeof k !== 'number') {
        staticPadding = undefined;
        break;
      }
      const eff = (k - 1) * dilations[i] + 1;
      staticPadding.push(inDim - ((outDim - 1) * strides[i] + eff - pads[i] - pads[i + spatial]));
    }
    if (staticPadding) {
      if (staticPadding.some((p) => p !== 0)) attrs.output_padding = staticPadding;
      out[0] = b.op('ConvTranspose', [dy, w], attrs);
    } else {
      // Without static sizes the rows the forward windows reached (including those under the end pads) are
      // unknown: transpose with no end padding, crop to x's size, and zero-fill rows no window reached.
      const openEnd = [...pads.slice(0, spatial), ...new Array(spatial).fill(0)];
      const ct = b.op('ConvTranspose', [dy, w], { ...attrs, pads: openEnd });
      const size = b.shapeOf(x, 2);
      const cropped = b.slice(ct, b.int64s(new Array(spatial).fill(0)), size, b.int64s(range(2, rank)));
      const missing = b.sub(size, b.shapeOf(cropped, 2));
      out[0] = b.pad(cropped, b.concat([b.int64s(new Array(rank + 2).fill(0)), missing], 0));
    }
  }

  if (ctx.needs[1]) {
    const swap = [1, 0, ...range(2, rank)];
    const dyT = b.transpose(dy, swap);
    const attrs = { strides: dilations, dilations: strides, pads, group };
    let xT: string;
    if (group === 1) xT = b.transpose(x, swap);
    else {
      const cg = ws?.[1];
      if (typeof cg !== 'number')
        throw ctx.error('a grouped Conv needs the weight shape statically for its weight gradient');
      // [N, C, *S] → [N, g, C/g, S] → [C/g, g, N, S] → [C/g, g·N, *S]: group-major, matching dyᵀ's channel order.
      const grouped = b.transpose(b.reshape(x, [0, group, cg, -1]), [2, 1, 0, 3]);
      xT = b.reshape(grouped, b.concat([b.int64s([cg, -1]), b.shapeOf(x, 2)], 0));
    }
    let dw = b.op('Conv', [xT, dyT], attrs);
    const full = ctx.graph.shape(dw);
    const exact = full && kernel.every((k, i) => typeof k === 'number' && full[2 + i] === k);
    if (!exact) {
      const ends = kernel.every((k) => typeof k === 'number')
        ? b.int64s(kernel as number[])
        : b.shapeOf(w, 2);
      dw = b.slice(dw, b.int64s(new Array(spatial).fill(0)), ends, b.int64s(range(2, rank)));
    }
    out[1] = b.transpose(dw, swap);
  }

  if (bias && ctx.needs[2]) out[2] = b.reduceSum(dy, [0, ...range(2, rank)], false);
  return out;
};
