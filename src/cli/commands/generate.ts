import { Command } from 'commander';
import { saveImage } from '../../image/io.js';
import { textToImage } from '../../pipelines/text_to_image.js';
import { readNpy } from '../../util/npy.js';
import { addSamplingOptions, parseInteger, type SamplingOptions } from '../options.js';
import { report, withBundle } from '../run_context.js';

interface GenerateOptions extends SamplingOptions {
  prompt: string;
  out: string;
  width?: number;
  height?: number;
  initLatents?: string;
}

export function generateCommand(): Command {
  const command = new Command('generate')
    .description('text-to-image: generate an image from a prompt')
    .requiredOption('-p, --prompt <text>', 'what to draw')
    .requiredOption('-o, --out <file>', 'output image (.png, .jpg, .webp)')
    .option(
      '--width <px>',
      'image width (multiple of the VAE factor; default: the model size)',
      parseInteger('--width', 1, 8192),
    )
    .option('--height <px>', 'image height (default: the model size)', parseInteger('--height', 1, 8192))
    .option(
      '--init-latents <file.npy>',
      'explicit initial latents [1,C,h,w] float32 (instead of --seed noise)',
    );
  addSamplingOptions(command, { steps: 50, guidance: 7.5 });
  return command.action(async (options: GenerateOptions) => {
    const latents = options.initLatents ? await readNpy(options.initLatents) : undefined;
    const { result, seconds, device, model } = await withBundle(
      options,
      'generate',
      (bundle, onProgress) =>
        textToImage(bundle, {
          prompt: options.prompt,
          negativePrompt: options.negative,
          numInferenceSteps: options.steps,
          guidanceScale: options.guidance,
          width: options.width,
          height: options.height,
          seed: options.seed,
          latents,
          eta: options.eta,
          scheduler: options.scheduler,
          onProgress,
        }),
      { inputs: [options.initLatents], imageOutputs: [options.out] },
    );
    await saveImage(result.image, options.out);
    const [, , height, width] = result.image.shape;
    report(
      options.json,
      {
        command: 'generate',
        out: options.out,
        width,
        height,
        seed: result.seed,
        steps: result.timesteps.length,
        device,
        model,
        seconds,
        notices: result.notices,
      },
      `${[...result.notices, `wrote ${options.out} (${width}×${height}, seed ${result.seed ?? 'from --init-latents'}, ${device}, ${seconds.toFixed(1)} s)`].join('\n')}`,
    );
  });
}
