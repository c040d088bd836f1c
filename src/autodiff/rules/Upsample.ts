import { Resize } from './Resize.js';
import type { GradientRule } from './types.js';

/** Upsample (opsets 7–9) is Resize with asymmetric coordinates and ONNX Runtime's "simple" nearest rounding. */
export const Upsample: GradientRule = (ctx) => Resize(ctx);
