import { Command } from 'commander';
import { saveImage } from '../../image/io.js';
import { NDArray } from '../../runtime/ndarray.js';
import { ddimInversion } from '../../pipelines/ddim_inversion.js';
import { writeNpy } from '../../util/npy.js';
import {
  addRuntimeOptions,
  checkOutputPath,
  parseInteger,
  parseNumber,
  type RuntimeOptions,
  addInputSizeOptions,
} from '../options.js';
import { loadInputImage, report, withBundle } from '../run_context.js';

interface InvertCliOptions extends RuntimeOptions {
  out: string;
  prompt: string;
  negative?: string;
  steps: number;
  guidance: number;
  strength: number;
  reconstruction?: string;
  intermediates?: string;
  width?: number;
  height?: number;
}

export function invertCommand(): Command {
  const command = new Command('invert')
    .description('DDIM inversion: find the noise latents that DDIM sampling turns back into the image')
    .argument('<image>', 'input image')
    .requiredOption('-o, --out <file.npy>', 'write the inverted latents here (float32 .npy)')
    .option('-p, --prompt <text>', 'prompt conditioning the inversion', '')
    .option('--negative <prompt>', 'negative prompt, when --guidance > 1')
    .option('--steps <n>', 'number of DDIM steps', parseInteger('--steps', 1, 1000), 50)
    .option(
      '--guidance <scale>',
      'guidance during inversion (1 = none, the invertible choice)',
      parseNumber('--guidance', 0, 100),
      1,
    )
    .option(
      '--strength <r>',
      'invert only this fraction of the schedule',
      parseNumber('--strength', 0.001, 1),
      1,
    )
    .option('--reconstruction <file>', 'also decode the inverted latents with DDIM and save the image')
    .option('--intermediates <file.npy>', 'save every intermediate latent, stacked [k+1, C, h, w]');
  addInputSizeOptions(command);
  addRuntimeOptions(command);
  return command.action(async (imagePath: string, options: InvertCliOptions) => {
    checkOutputPath(options.out, [imagePath]);
    if (options.reconstruction) checkOutputPath(options.reconstruction, [imagePath, options.out]);
    const { result, seconds, device, model } = await withBundle(
      options,
      'invert',
      async (bundle, onProgress) => {
        const input = await loadInputImage(imagePath, bundle, options);
        return ddimInversion(bundle, {
          image: input.tensor,
          prompt: options.prompt,
          negativePrompt: options.negative,
          numInferenceSteps: options.steps,
          guidanceScale: options.guidance,
          inversionStrength: options.strength,
          reconstruct: options.reconstruction !== undefined,
          onProgress,
        });
      },
      { inputs: [imagePath], imageOutputs: [options.reconstruction] },
    );
    await writeNpy(options.out, result.latents);
    if (options.intermediates) {
      const stacked = NDArray.concat(result.intermediates);
      await writeNpy(options.intermediates, stacked);
    }
    if (options.reconstruction && result.reconstruction)
      await saveImage(result.reconstruction, options.reconstruction);
    report(
      options.json,
      {
        command: 'invert',
        out: options.out,
        reconstruction: options.reconstruction,
        intermediates: options.intermediates,
        timesteps: result.timesteps,
        shape: result.latents.shape,
        device,
        model,
        seconds,
      },
      `wrote ${options.out} (latents [${result.latents.shape.join(', ')}] at t=${result.timesteps.at(-1)}, ${device}, ${seconds.toFixed(1)} s)`,
    );
  });
}
