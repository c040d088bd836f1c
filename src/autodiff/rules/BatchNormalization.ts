import { attrFloat, attrInt } from '../attrs.js';
import { range, requireRank } from './common.js';
import type { GradientRule } from './types.js';

/**
 * BatchNormalization in inference mode: y = scale · (x − mean) / √(var + ε) + B with the running statistics as
 * inputs, so the map is affine per channel. training_mode=1 (batch statistics) is refused.
 */
export const BatchNormalization: GradientRule = (ctx) => {
  const { b, node } = ctx;
  if (attrInt(node, 'training_mode', 0) === 1)
    throw ctx.error('BatchNormalization in training mode is not supported');
  if (ctx.dy.slice(1).some((d) => d))
    throw ctx.error('gradients through the running-statistics outputs are not supported');
  const [x, scale, , mean, variance] = [0, 1, 2, 3, 4].map((i) => ctx.input(i));
  const rank = requireRank(ctx, x);
  const eps = attrFloat(node, 'epsilon', 1e-5);
  const dy = ctx.dyOrZeros(0);
  const axes = range(1, rank - 1);
  const perChannel = (t: string) => b.unsqueeze(t, axes);
  const inv = b.op('Reciprocal', [b.op('Sqrt', [b.add(variance, b.scalarLike(eps, variance))])]);
  const centered = b.sub(x, perChannel(mean));
  const outer = [0, ...range(2, rank)];
  const sumDy = () => b.reduceSum(dy, outer, false);
  return [
    ctx.needs[0] ? b.mul(dy, perChannel(b.mul(scale, inv))) : null,
    ctx.needs[1] ? b.reduceSum(b.mul(dy, b.mul(centered, perChannel(inv))), outer, false) : null,
    ctx.needs[2] ? sumDy() : null,
    ctx.needs[3] ? b.neg(b.mul(sumDy(), b.mul(scale, inv))) : null,
    ctx.needs[4]
      ? b.mul(
          b.reduceSum(b.mul(dy, centered), outer, false),
          b.scale(b.mul(scale, b.mul(inv, b.mul(inv, inv))), -0.5),
        )
      : null,
  ];
};
