import { DataType } from '../onnx_io.js';
import { range, requireRank } from './common.js';
import type { GradientRule } from './types.js';

/**
 * y = tile(x, repeats): y's axis i holds repeats[i] copies of x's. dy is reshaped to [r₀, d₀, r₁, d₁, …]
 * (built at runtime from repeats and x's shape, so both may be dynamic) and summed over the r axes.
 */
export const Tile: GradientRule = (ctx) => {
  const { b } = ctx;
  const [x, repeats] = [ctx.input(0), ctx.input(1)];
  const rank = requireRank(ctx, x);
  const reps = b.cast(repeats, DataType.INT64);
  const pairs = b.concat([b.unsqueeze(reps, [1]), b.unsqueeze(b.shapeOf(x), [1])], 1);
  const split = b.reshape(ctx.dyOrZeros(0), b.reshape(pairs, [-1]));
  return [
    b.reduceSum(
      split,
      range(0, rank).map((i) => 2 * i),
      false,
    ),
    null,
  ];
};
