import { Command, InvalidArgumentError } from 'commander';
import { loadMask, overlayMask, saveImage, sideBySide } from '../../image/io.js';
import { diffEdit, type MaskBlend } from '../../pipelines/diffedit.js';
import {
  addRuntimeOptions,
  checkOutputPath,
  parseInteger,
  parseNumber,
  type RuntimeOptions,
  addInputSizeOptions,
} from '../options.js';
import { loadInputImage, report, withBundle } from '../run_context.js';

interface EditCliOptions extends RuntimeOptions {
  to: string;
  from: string;
  out: string;
  strength: number;
  maskStrength: number;
  threshold: number;
  maskDraws: number;
  clampRatio: number;
  steps: number;
  guidance: number;
  seed?: number;
  maskIn?: string;
  maskBlend: MaskBlend;
  saveMask?: string;
  saveMaskMap?: string;
  sideBySide?: string;
  encoding: 'ddim' | 'noise';
  mask: boolean;
  width?: number;
  height?: number;
}

const MASK_BLENDS: readonly MaskBlend[] = ['replace', 'union', 'intersection', 'average'];

export function editCommand(): Command {
  const command = new Command('edit')
    .description('DiffEdit: edit an image toward a text query, with an automatically inferred mask')
    .argument('<image>', 'input image')
    .requiredOption('--to <query>', 'the query Q: what the edited image should show')
    .requiredOption('-o, --out <file>', 'output image')
    .option('--from <reference>', 'the reference R: a caption of the input ("" = unconditional)', '')
    .option(
      '--strength <r>',
      'encoding ratio r: how far DDIM encoding goes',
      parseNumber('--strength', 0.01, 1),
      0.8,
    )
    .option(
      '--mask-strength <s>',
      'noise level at which the mask is inferred',
      parseNumber('--mask-strength', 0.01, 1),
      0.5,
    )
    .option('--threshold <t>', 'mask binarisation threshold', parseNumber('--threshold', 0, 1), 0.5)
    .option('--mask-draws <n>', 'noise draws averaged for the mask', parseInteger('--mask-draws', 1, 100), 10)
    .option(
      '--clamp-ratio <k>',
      'clamp the difference map at k × its mean before normalising',
      parseNumber('--clamp-ratio', 0.01, 1000),
      3,
    )
    .option('--steps <n>', 'DDIM steps over the whole schedule', parseInteger('--steps', 1, 1000), 50)
    .option(
      '--guidance <scale>',
      'classifier-free guidance when decoding (R is the negative prompt)',
      parseNumber('--guidance', 0, 100),
      7.5,
    )
    .option(
      '--seed <n>',
      'random seed for the mask noise (default: random, reported)',
      parseInteger('--seed', 0, 2 ** 32 - 1),
    )
    .option(
      '--mask-in <file>',
      'a mask image to use (white = edit) instead of, or blended with, the inferred one',
    )
    .option(
      '--mask-blend <mode>',
      `how --mask-in combines with the inferred mask: ${MASK_BLENDS.join('|')}`,
      parseBlend,
      'replace',
    )
    .option('--save-mask <file>', 'save the binary mask used (image resolution)')
    .option('--save-mask-map <file>', 'save the continuous mask map (image resolution)')
    .option('--side-by-side <file>', 'save input | mask overlay | output')
    .option(
      '--encoding <kind>',
      'ddim (DiffEdit) or noise (the paper\'s "without encoding" ablation)',
      parseEncoding,
      'ddim',
    )
    .option('--no-mask', 'ablation: encode–decode without a mask');
  addInputSizeOptions(command);
  addRuntimeOptions(command);
  return command.action(async (imagePath: string, options: EditCliOptions) => {
    checkOutputPath(options.out, [imagePath, options.maskIn]);
    for (const extra of [options.saveMask, options.saveMaskMap, options.sideBySide]) {
      if (extra) checkOutputPath(extra, [imagePath, options.maskIn, options.out]);
    }
    const { result, seconds, device, model } = await withBundle(
      options,
      'edit',
      async (bundle, onProgress) => {
        const input = await loadInputImage(imagePath, bundle, options);
        const userMask = options.maskIn
          ? await loadMask(options.maskIn, input.width, input.height, { label: 'mask' })
          : undefined;
        const edited = await diffEdit(bundle, {
          image: input.tensor,
          prompt: options.to,
          sourcePrompt: options.from,
          strength: options.strength,
          maskStrength: options.maskStrength,
          threshold: options.threshold,
          maskDraws: options.maskDraws,
          maskClampRatio: options.clampRatio,
          numInferenceSteps: options.steps,
          guidanceScale: options.guidance,
          seed: options.seed,
          mask: userMask,
          maskBlend: options.maskBlend,
          encoding: options.encoding,
          useMask: options.mask,
          onProgress,
        });
        return { ...edited, input: input.tensor };
      },
      {
        inputs: [imagePath, options.maskIn],
        imageOutputs: [options.out, options.saveMask, options.saveMaskMap, options.sideBySide],
      },
    );
    await saveImage(result.image, options.out);
    if (options.saveMask) await saveImage(result.mask, options.saveMask);
    if (options.saveMaskMap) await saveImage(result.maskMap, options.saveMaskMap);
    if (options.sideBySide) {
      const input01 = result.input.map((v) => v / 2 + 0.5);
      await saveImage(
        sideBySide([input01, overlayMask(input01, result.mask), result.image]),
        options.sideBySide,
      );
    }
    const maskFraction = result.mask.data.reduce((a, b) => a + b, 0) / result.mask.size;
    report(
      options.json,
      {
        command: 'edit',
        out: options.out,
        seed: result.seed,
        maskFraction,
        device,
        model,
        seconds,
        saveMask: options.saveMask,
        sideBySide: options.sideBySide,
      },
      `wrote ${options.out} (mask covers ${(maskFraction * 100).toFixed(1)}%, seed ${result.seed}, ${device}, ${seconds.toFixed(1)} s)`,
    );
  });
}

function parseBlend(value: string): MaskBlend {
  if ((MASK_BLENDS as readonly string[]).includes(value)) return value as MaskBlend;
  throw new InvalidArgumentError(`use one of ${MASK_BLENDS.join(', ')}.`);
}

function parseEncoding(value: string): 'ddim' | 'noise' {
  if (value === 'ddim' || value === 'noise') return value;
  throw new InvalidArgumentError('use ddim or noise.');
}
