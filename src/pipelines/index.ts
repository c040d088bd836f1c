export { textToImage, type TextToImageOptions, type TextToImageResult } from './text_to_image.js';
export { img2img, type Img2ImgOptions, type Img2ImgResult } from './img2img.js';
export { inpaint, type InpaintOptions, type InpaintResult } from './inpaint.js';
export {
  ddimInversion,
  ddimDecode,
  type DdimInversionOptions,
  type DdimInversionResult,
} from './ddim_inversion.js';
export type { ProgressCallback, ProgressInfo } from './common.js';
