import { Command, InvalidArgumentError, Option } from 'commander';
import { LORA_INIT_A, LORA_KEY_LAYOUTS, type LoraInitA, type LoraKeyLayout } from '../../autodiff/index.js';
import { loadMask, saveImage } from '../../image/io.js';
import { dragDiffusion } from '../../pipelines/drag/drag.js';
import { saveDragArrows } from '../../pipelines/drag/arrows.js';
import { saveDragLora } from '../../pipelines/drag/lora.js';
import { parseDragPoints, type DragPointPairs } from '../../pipelines/drag/points.js';
import { UserError } from '../../util/errors.js';
import {
  addRuntimeOptions,
  checkOutputPath,
  parseInteger,
  parseNumber,
  type RuntimeOptions,
  addInputSizeOptions,
} from '../options.js';
import { loadInputImage, report, withBundle } from '../run_context.js';

interface DragCliOptions extends RuntimeOptions {
  points: DragPointPairs;
  out: string;
  mask?: string;
  prompt: string;
  loraSteps: number;
  loraRank: number;
  loraLr: number;
  loraBatch: number;
  loraInit: LoraInitA;
  loraFormat: LoraKeyLayout;
  lora?: string;
  saveLora?: string;
  steps: number;
  lr: number;
  lambda: number;
  ddimSteps: number;
  inversionStrength: number;
  featureTensor?: string;
  featureBlock?: number;
  mutualAttention: boolean;
  gradientCheckpointing?: number;
  arrows?: string;
  seed?: number;
  width?: number;
  height?: number;
}

export function dragCommand(): Command {
  const command = new Command('drag')
    .description('DragDiffusion: move the content at handle points to target points')
    .argument('<image>', 'input image')
    .requiredOption(
      '--points <pairs>',
      'handle → target pairs in pixels: "x1,y1:x2,y2;x3,y3:x4,y4"',
      parsePoints,
    )
    .requiredOption('-o, --out <file>', 'output image')
    .option('--mask <file>', 'region allowed to change (white = may change; default: the whole image)')
    .option(
      '--prompt <text>',
      'a caption of the input (used for the LoRA, the inversion and the denoising)',
      '',
    )
    .option(
      '--lora-steps <n>',
      'LoRA fine-tuning steps on the input (0 = no LoRA)',
      parseInteger('--lora-steps', 0, 10000),
      80,
    )
    .option('--lora-rank <r>', 'LoRA rank', parseInteger('--lora-rank', 1, 1024), 16)
    .option('--lora-lr <lr>', 'LoRA learning rate (AdamW)', parseNumber('--lora-lr', 1e-8, 1), 5e-4)
    .option('--lora-batch <n>', 'LoRA batch size', parseInteger('--lora-batch', 1, 64), 4)
    .addOption(
      new Option(
        '--lora-init <init>',
        "how LoRA's A factors start: 'diffusers' N(0, 1/rank²) as the official code, 'fan-in' N(0, 1/fan_in)",
      )
        .choices(LORA_INIT_A)
        .default('diffusers'),
    )
    .option(
      '--lora <file>',
      'reuse LoRA adapters from a safetensors file instead of training (PEFT or diffusers key names, e.g. the official code’s)',
    )
    .option(
      '--gradient-checkpointing <segments>',
      'recompute the forward pass in this many segments during backward: less memory, about one more forward pass (SD 1.5 at 512²: 12 keeps a drag iteration under 10 GB)',
      parseInteger('--gradient-checkpointing', 2, 256),
    )
    .option('--save-lora <file>', 'save the trained LoRA adapters (safetensors) for --lora')
    .addOption(
      new Option(
        '--lora-format <layout>',
        "key names of --save-lora: 'peft' (lora_A/lora_B), 'diffusers' (lora.down/lora.up), 'attn-procs' (the official code's)",
      )
        .choices(LORA_KEY_LAYOUTS)
        .default('peft'),
    )
    .option(
      '--steps <n>',
      'latent optimisation iterations (n_pix_step)',
      parseInteger('--steps', 0, 10000),
      80,
    )
    .option('--lr <lr>', 'latent learning rate (Adam)', parseNumber('--lr', 1e-8, 10), 0.01)
    .option(
      '--lambda <λ>',
      'weight of the term that keeps the unmasked region',
      parseNumber('--lambda', 0, 1000),
      0.1,
    )
    .option(
      '--ddim-steps <n>',
      'DDIM steps over the whole schedule',
      parseInteger('--ddim-steps', 1, 1000),
      50,
    )
    .option(
      '--inversion-strength <s>',
      'fraction of the schedule inverted (the noise level optimised)',
      parseNumber('--inversion-strength', 0.01, 1),
      0.7,
    )
    .option(
      '--feature-tensor <name>',
      "UNet tensor used as the feature map (default: the second-to-last up block's output)",
    )
    .option(
      '--feature-block <n>',
      "up block whose output is the feature map, counted from 0 (2 = SD 1.5's up_blocks[2], which the official code calls unet_feature_idx 3: it counts the mid block as 0)",
      parseInteger('--feature-block', 0, 64),
    )
    .option(
      '--no-mutual-attention',
      "denoise without attending to the input's branch (mutual self-attention)",
    )
    .option('--arrows <file>', 'save input | output with the handle → target arrows drawn')
    .option(
      '--seed <n>',
      'random seed for the LoRA training (default: random, reported)',
      parseInteger('--seed', 0, 2 ** 32 - 1),
    );
  addInputSizeOptions(command);
  addRuntimeOptions(command);
  return command.action(async (imagePath: string, options: DragCliOptions) => {
    checkOutputPath(options.out, [imagePath, options.mask, options.lora]);
    for (const extra of [options.arrows, options.saveLora]) {
      if (extra) checkOutputPath(extra, [imagePath, options.mask, options.lora, options.out]);
    }
    if (options.lora && options.saveLora)
      throw new UserError('--lora reuses saved adapters; --save-lora saves trained ones: give one of them');
    const { result, seconds, device, model } = await withBundle(
      options,
      'drag',
      async (bundle, onProgress) => {
        const input = await loadInputImage(imagePath, bundle, options);
        const mask = options.mask
          ? await loadMask(options.mask, input.width, input.height, { label: 'mask' })
          : undefined;
        // Points are given on the file's pixels; a resized input moves them with it.
        const sx = input.width / input.originalWidth;
        const sy = input.height / input.originalHeight;
        const scale = (p: [number, number]): [number, number] => [p[0] * sx, p[1] * sy];
        const points = {
          handles: options.points.handles.map(scale),
          targets: options.points.targets.map(scale),
        };
        const dragged = await dragDiffusion(bundle, {
          image: input.tensor,
          handles: points.handles,
          targets: points.targets,
          mask,
          prompt: options.prompt,
          loraSteps: options.loraSteps,
          loraRank: options.loraRank,
          loraLearningRate: options.loraLr,
          loraBatchSize: options.loraBatch,
          loraInit: options.loraInit,
          loraFile: options.lora,
          dragSteps: options.steps,
          learningRate: options.lr,
          lambda: options.lambda,
          numInferenceSteps: options.ddimSteps,
          inversionStrength: options.inversionStrength,
          featureTensor: options.featureTensor,
          featureBlock: options.featureBlock,
          mutualSelfAttention: options.mutualAttention,
          gradientCheckpointing:
            options.gradientCheckpointing === undefined
              ? undefined
              : { segments: options.gradientCheckpointing },
          seed: options.seed,
          intraOpNumThreads: options.threads,
          onProgress,
        });
        return { ...dragged, input: input.tensor, points };
      },
      { inputs: [imagePath, options.mask, options.lora], imageOutputs: [options.out, options.arrows] },
    );
    await saveImage(result.image, options.out);
    if (options.saveLora && result.lora)
      await saveDragLora(
        options.saveLora,
        result.lora,
        { prompt: options.prompt, lora_init: options.loraInit },
        options.loraFormat,
      );
    if (options.arrows) {
      await saveDragArrows(
        options.arrows,
        [result.input.map((v) => v / 2 + 0.5), result.image],
        [result.points, { ...result.points, tracked: result.handles }],
      );
    }
    for (const warning of result.warnings) process.stderr.write(`editkit: warning: ${warning}\n`);
    const totals = Object.fromEntries(
      Object.entries(result.stats).map(([k, v]) => [k, Number(v.seconds.toFixed(3))]),
    );
    report(
      options.json,
      {
        command: 'drag',
        out: options.out,
        seed: result.seed,
        iterations: result.iterations,
        reached: result.reached,
        handles: result.handles,
        targets: result.points.targets,
        feature: result.feature.tensor,
        stageSeconds: totals,
        stagePeakRssMiB: Object.fromEntries(
          Object.entries(result.stats).map(([k, v]) => [k, Math.round(v.peakRssMiB)]),
        ),
        lora: options.lora ?? (result.lora ? (options.saveLora ?? 'trained, not saved') : 'none'),
        arrows: options.arrows,
        warnings: result.warnings,
        device,
        model,
        seconds,
      },
      `wrote ${options.out} (${result.iterations} drag iterations, handles ${result.reached ? 'reached their targets' : 'still short of their targets'}, seed ${result.seed}, ${device}, ${seconds.toFixed(1)} s)`,
    );
  });
}

function parsePoints(value: string): DragPointPairs {
  try {
    return parseDragPoints(value);
  } catch (error) {
    // Commander then reports it against the option, like every other malformed argument.
    if (error instanceof UserError) throw new InvalidArgumentError(error.message);
    throw error;
  }
}
