/**
 * EditKit: diffusion-based image editing on ONNX Runtime.
 *
 * The library API mirrors diffusers: load a bundle (a diffusers/Optimum ONNX export), then call a pipeline
 * function with diffusers' argument names in camelCase.
 */
export {
  StableDiffusionBundle,
  DEFAULT_VAE_SCALING_FACTOR,
  type LoadBundleOptions,
} from './models/bundle.js';
export { ClipTokenizer } from './models/tokenizer.js';
export { TextEncoder } from './models/text_encoder.js';
export { UNet } from './models/unet.js';
export { VaeEncoder, VaeDecoder } from './models/vae.js';
export * from './pipelines/index.js';
export {
  createScheduler,
  createInverseScheduler,
  SCHEDULER_NAMES,
  type SchedulerName,
} from './schedulers/index.js';
export type { Scheduler, SchedulerStepOutput, SchedulerStepOptions } from './schedulers/scheduler.js';
export { NDArray } from './runtime/ndarray.js';
export { Generator } from './runtime/random.js';
export { ModelSession, IntArray } from './runtime/session.js';
export { resolveDevice, parseDevice, type DeviceName, type ResolvedDevice } from './runtime/device.js';
export { loadImage, loadMask, saveImage, resolveSize } from './image/io.js';
export { readNpy, writeNpy } from './util/npy.js';
export { UserError, ModelError } from './util/errors.js';
export * as world from './world/index.js';
export { psnr, maskIoU, meanAbsoluteError } from './metrics/image.js';
export { frechetDistance } from './metrics/frechet.js';
export {
  diffEdit,
  inferMask,
  type DiffEditOptions,
  type DiffEditResult,
  type MaskBlend,
} from './pipelines/diffedit.js';
export * as drag from './pipelines/drag/index.js';
export { PerceptualDistance } from './metrics/perceptual.js';
export { EmojiJudge } from './models/judge.js';
