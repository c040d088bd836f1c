import { Command } from 'commander';
import { saveImage } from '../../image/io.js';
import { img2img } from '../../pipelines/img2img.js';
import { readNpy } from '../../util/npy.js';
import {
  addSamplingOptions,
  checkOutputPath,
  parseNumber,
  type SamplingOptions,
  addInputSizeOptions,
} from '../options.js';
import { loadInputImage, report, withBundle } from '../run_context.js';

interface Img2ImgCliOptions extends SamplingOptions {
  prompt: string;
  out: string;
  strength: number;
  width?: number;
  height?: number;
  noise?: string;
}

export function img2imgCommand(): Command {
  const command = new Command('img2img')
    .description('image-to-image (SDEdit): re-noise an image and denoise it toward a prompt')
    .argument('<image>', 'input image (PNG, JPEG, WebP)')
    .requiredOption('-p, --prompt <text>', 'what the result should show')
    .requiredOption('-o, --out <file>', 'output image')
    .option('--strength <s>', 'how much to change, in (0, 1]', parseNumber('--strength', 0.001, 1), 0.8)
    .option('--noise <file.npy>', 'explicit noise [1,C,h,w] float32 used to noise the input latents');
  addInputSizeOptions(command);
  addSamplingOptions(command, { steps: 50, guidance: 7.5 });
  return command.action(async (imagePath: string, options: Img2ImgCliOptions) => {
    checkOutputPath(options.out, [imagePath]);
    const noise = options.noise ? await readNpy(options.noise) : undefined;
    const { result, seconds, device, model } = await withBundle(
      options,
      'img2img',
      async (bundle, onProgress) => {
        const input = await loadInputImage(imagePath, bundle, options);
        return img2img(bundle, {
          prompt: options.prompt,
          image: input.tensor,
          negativePrompt: options.negative,
          strength: options.strength,
          numInferenceSteps: options.steps,
          guidanceScale: options.guidance,
          seed: options.seed,
          noise,
          eta: options.eta,
          scheduler: options.scheduler,
          onProgress,
        });
      },
      { inputs: [imagePath, options.noise], imageOutputs: [options.out] },
    );
    await saveImage(result.image, options.out);
    report(
      options.json,
      {
        command: 'img2img',
        out: options.out,
        seed: result.seed,
        steps: result.timesteps.length,
        strength: options.strength,
        device,
        model,
        seconds,
        notices: result.notices,
      },
      [
        ...result.notices,
        `wrote ${options.out} (${result.timesteps.length} steps, seed ${result.seed ?? 'from --noise'}, ${device}, ${seconds.toFixed(1)} s)`,
      ].join('\n'),
    );
  });
}
