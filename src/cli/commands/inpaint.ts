import { Command } from 'commander';
import { loadMask, saveImage } from '../../image/io.js';
import { inpaint } from '../../pipelines/inpaint.js';
import { readNpy } from '../../util/npy.js';
import {
  addSamplingOptions,
  checkOutputPath,
  parseNumber,
  type SamplingOptions,
  addInputSizeOptions,
} from '../options.js';
import { loadInputImage, report, withBundle } from '../run_context.js';

interface InpaintCliOptions extends SamplingOptions {
  prompt: string;
  mask: string;
  out: string;
  strength: number;
  width?: number;
  height?: number;
  noise?: string;
}

export function inpaintCommand(): Command {
  const command = new Command('inpaint')
    .description('repaint the white part of a mask; works with 9-channel inpainting models and plain models')
    .argument('<image>', 'input image')
    .requiredOption('-m, --mask <file>', 'mask image: white = repaint, black = keep')
    .requiredOption('-p, --prompt <text>', 'what the repainted region should show')
    .requiredOption('-o, --out <file>', 'output image')
    .option(
      '--strength <s>',
      '1 repaints from pure noise; lower keeps some of the original',
      parseNumber('--strength', 0.001, 1),
      1,
    )
    .option('--noise <file.npy>', 'explicit noise [1,C,h,w] float32');
  addInputSizeOptions(command);
  addSamplingOptions(command, { steps: 50, guidance: 7.5 });
  return command.action(async (imagePath: string, options: InpaintCliOptions) => {
    checkOutputPath(options.out, [imagePath, options.mask]);
    const noise = options.noise ? await readNpy(options.noise) : undefined;
    const { result, seconds, device, model } = await withBundle(
      options,
      'inpaint',
      async (bundle, onProgress) => {
        const input = await loadInputImage(imagePath, bundle, options);
        const mask = await loadMask(options.mask, input.width, input.height, { label: 'mask' });
        return inpaint(bundle, {
          prompt: options.prompt,
          image: input.tensor,
          mask,
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
      { inputs: [imagePath, options.mask, options.noise], imageOutputs: [options.out] },
    );
    await saveImage(result.image, options.out);
    report(
      options.json,
      {
        command: 'inpaint',
        out: options.out,
        method: result.method,
        seed: result.seed,
        steps: result.timesteps.length,
        device,
        model,
        seconds,
        notices: result.notices,
      },
      [
        ...result.notices,
        `wrote ${options.out} (${result.method === 'channels' ? 'inpainting UNet' : 'latent blending'}, seed ${result.seed ?? 'from --noise'}, ${device}, ${seconds.toFixed(1)} s)`,
      ].join('\n'),
    );
  });
}
