/**
 * Every editing method behind one interface: what it accepts (tasks), what it needs from a case (captions, a mask,
 * drag points, a fine-tuned delta), and how it runs. A method is run on the tasks it accepts; the others are "n/a"
 * in the report, not zero.
 */
import type { LoraInitA, ModelProto } from '../autodiff/index.js';
import type { StableDiffusionBundle } from '../models/bundle.js';
import { diffEdit } from '../pipelines/diffedit.js';
import { diffusionClipEdit } from '../pipelines/diffusion_clip/edit.js';
import { dragDiffusion, type DragStage, type DragStageStats } from '../pipelines/drag/drag.js';
import { img2img } from '../pipelines/img2img.js';
import { inpaint } from '../pipelines/inpaint.js';
import type { NDArray } from '../runtime/ndarray.js';
import type { EvalCase, EvalTask } from './tasks.js';

export type MethodInput =
  | 'target caption'
  | 'source caption'
  | 'ground-truth mask'
  | 'drag points'
  | 'fine-tuned delta'
  | 'ground truth';

/**
 * What a method gives back: the edited image, and what only the method knows about its own work, which the suite
 * scores too (a mask it inferred, how a drag went).
 */
export interface MethodOutput {
  /** The edited image, [1, 3, H, W] in [0, 1]. */
  image: NDArray;
  /** The binary mask the method edited inside, [1, 1, H, W]: scored as mask IoU with the changed region. */
  mask?: NDArray;
  /** The soft map the mask was binarised from, [1, 1, H, W] in [0, 1]: mask IoU over a threshold sweep. */
  maskMap?: NDArray;
  /** A point-dragging method's own account. */
  drag?: {
    iterations: number;
    /** Whether every handle reached its target before the budget ran out. */
    reached: boolean;
    /** The feature tensor the drag was supervised on: grading on it would flatter the method. */
    supervisedTensor: string;
    stages: Record<DragStage, Pick<DragStageStats, 'seconds' | 'peakRssMiB'>>;
  };
}

export interface EvalMethod {
  /** Stable key, e.g. `sdedit-0.6`. */
  key: string;
  /** What the report shows, e.g. `SDEdit (strength 0.6)`. */
  label: string;
  family: string;
  tasks: readonly EvalTask[];
  needs: readonly MethodInput[];
  /** Method settings, for the report. */
  settings: Record<string, number | string>;
  run(bundle: StableDiffusionBundle, c: EvalCase, seed: number): Promise<MethodOutput>;
}

/** The tasks of the text-driven methods (SDEdit, inpainting, DiffEdit): every task but action. */
export const TEXT_TASKS: readonly EvalTask[] = ['add', 'replace', 'remove', 'background', 'style', 'texture'];

export interface MethodOptions {
  steps: number;
  guidance: number;
  /** SDEdit strengths and DiffEdit encoding ratios (one method entry each). */
  strengths: readonly number[];
  ratios: readonly number[];
  /** DiffEdit's "w/o encoding" ablation (noise instead of DDIM encoding) at these ratios; default none. */
  ratiosWithoutEncoding?: readonly number[];
  dragLoraSteps: number;
  dragSteps: number;
  /** DragDiffusion's LoRA A init and DDIM steps over the whole schedule (default: the pipeline's). */
  dragLoraInit?: LoraInitA;
  dragInferenceSteps?: number;
  /** CPU threads of DragDiffusion's own gradient sessions. */
  threads?: number;
  /** DiffusionCLIP deltas by task (fine-tuned UNets); a task without one is n/a for DiffusionCLIP. */
  diffusionClip?: Partial<Record<EvalTask, ModelProto>>;
}

export function evalMethods(o: MethodOptions): EvalMethod[] {
  const methods: EvalMethod[] = [
    {
      // Not a method: the ground-truth result itself, scored like one. Its row is the ceiling of each metric,
      // the judge's included (the judge does not know every colour variant, so texture success tops out low).
      key: 'ground-truth',
      label: 'ground truth (ceiling)',
      family: 'reference',
      tasks: ['add', 'replace', 'remove', 'background', 'style', 'texture', 'action'],
      needs: ['ground truth'],
      settings: {},
      run: async (_bundle, c) => {
        if (!c.target01) throw new Error(`case ${c.id} has no ground truth`);
        return { image: c.target01 };
      },
    },
    {
      // Not a method either: the input, unedited. Its row is the floor that edits are measured against (a drag's
      // Mean Distance before dragging) and the ceiling of preservation.
      key: 'input',
      label: 'input (no edit)',
      family: 'reference',
      tasks: ['add', 'replace', 'remove', 'background', 'style', 'texture', 'action'],
      needs: [],
      settings: {},
      run: async (_bundle, c) => ({ image: c.source01 }),
    },
  ];
  for (const strength of o.strengths) {
    methods.push({
      key: `sdedit-${strength}`,
      label: `SDEdit (strength ${strength})`,
      family: 'SDEdit',
      tasks: TEXT_TASKS,
      needs: ['target caption'],
      settings: { strength, steps: o.steps, guidance: o.guidance },
      run: async (bundle, c, seed) => ({
        image: (
          await img2img(bundle, {
            image: c.source,
            prompt: c.targetCaption,
            strength,
            numInferenceSteps: o.steps,
            guidanceScale: o.guidance,
            seed,
          })
        ).image,
      }),
    });
  }
  methods.push({
    key: 'inpaint-gt',
    label: 'Inpainting, ground-truth mask (upper bound)',
    family: 'Inpainting',
    tasks: TEXT_TASKS,
    needs: ['target caption', 'ground-truth mask'],
    settings: { steps: o.steps, guidance: o.guidance },
    run: async (bundle, c, seed) => ({
      image: (
        await inpaint(bundle, {
          image: c.source,
          mask: c.region,
          prompt: c.targetCaption,
          numInferenceSteps: o.steps,
          guidanceScale: o.guidance,
          seed,
        })
      ).image,
      mask: c.region,
    }),
  });
  const diffEditVariants = [
    ...o.ratios.map((ratio) => ({ ratio, encoding: 'ddim' as const })),
    ...(o.ratiosWithoutEncoding ?? []).map((ratio) => ({ ratio, encoding: 'noise' as const })),
  ];
  for (const { ratio, encoding } of diffEditVariants) {
    const ablation = encoding === 'noise';
    methods.push({
      key: ablation ? `diffedit-noenc-${ratio}` : `diffedit-${ratio}`,
      label: ablation ? `DiffEdit w/o encoding (r ${ratio})` : `DiffEdit (r ${ratio})`,
      family: ablation ? 'DiffEdit w/o encoding' : 'DiffEdit',
      tasks: TEXT_TASKS,
      needs: ['target caption', 'source caption'],
      settings: { r: ratio, ...(ablation ? { encoding } : {}), steps: o.steps, guidance: o.guidance },
      run: async (bundle, c, seed) => {
        const result = await diffEdit(bundle, {
          image: c.source,
          prompt: c.targetCaption,
          sourcePrompt: c.sourceCaption,
          strength: ratio,
          encoding,
          numInferenceSteps: o.steps,
          guidanceScale: o.guidance,
          seed,
        });
        return { image: result.image, mask: result.mask, maskMap: result.maskMap };
      },
    });
  }
  methods.push({
    key: 'dragdiffusion',
    label: 'DragDiffusion',
    family: 'DragDiffusion',
    tasks: ['action'],
    needs: ['drag points', 'ground-truth mask', 'source caption'],
    settings: {
      loraSteps: o.dragLoraSteps,
      dragSteps: o.dragSteps,
      ...(o.dragLoraInit ? { loraInit: o.dragLoraInit } : {}),
      ...(o.dragInferenceSteps ? { steps: o.dragInferenceSteps } : {}),
    },
    run: async (bundle, c, seed) => {
      if (!c.drag) throw new Error(`case ${c.id} has no drag points`);
      const result = await dragDiffusion(bundle, {
        image: c.source,
        handles: c.drag.handles,
        targets: c.drag.targets,
        mask: c.region,
        prompt: c.sourceCaption,
        loraSteps: o.dragLoraSteps,
        loraInit: o.dragLoraInit,
        dragSteps: o.dragSteps,
        numInferenceSteps: o.dragInferenceSteps,
        intraOpNumThreads: o.threads,
        seed,
      });
      const stages = Object.fromEntries(
        Object.entries(result.stats).map(([stage, { seconds, peakRssMiB }]) => [
          stage,
          { seconds, peakRssMiB },
        ]),
      ) as Record<DragStage, Pick<DragStageStats, 'seconds' | 'peakRssMiB'>>;
      return {
        image: result.image,
        drag: {
          iterations: result.iterations,
          reached: result.reached,
          supervisedTensor: result.feature.tensor,
          stages,
        },
      };
    },
  });
  const deltas = o.diffusionClip ?? {};
  const clipTasks = (Object.keys(deltas) as EvalTask[]).filter((t) => deltas[t] !== undefined);
  if (clipTasks.length > 0) {
    methods.push({
      key: 'diffusionclip',
      label: 'DiffusionCLIP (fine-tuned delta)',
      family: 'DiffusionCLIP',
      tasks: clipTasks,
      needs: ['fine-tuned delta'],
      settings: {},
      run: async (bundle, c) => ({
        image: await diffusionClipEdit(bundle, {
          image: c.source,
          models: [{ unet: deltas[c.task]!, weight: 1 }],
        }),
      }),
    });
  }
  return methods;
}
