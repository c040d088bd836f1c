import type { GradientRule } from './types.js';

/**
 * Dropout as exported for inference (training_mode absent or false) is the identity: dx = dy. A constant-true
 * training_mode would make the mask random; that is refused.
 */
export const Dropout: GradientRule = (ctx) => {
  const mode = ctx.input(2);
  if (mode) {
    const v = ctx.graph.constValue(mode);
    if (!v || v.values[0] !== 0)
      throw ctx.error('Dropout in training mode is not differentiable here (export the model in eval mode)');
  }
  return [ctx.dyOrZeros(0)];
};
