/**
 * Every editing method behind one interface: what it accepts (tasks), what it needs from a case (captions, a mask,
 * drag points, a fine-tuned delta), and how it runs. A method is run on the tasks it accepts; the others are "n/a"
 * in the report, not zero.
 */
import type { ModelProto } from '../autodiff/index.js';
import type { StableDiffusionBundle } from '../models/bundle.js';
import { diffEdit } from '../pipelines/diffedit.js';
import { diffusionClipEdit } from '../pipelines/diffusion_clip/edit.js';
import { dragDiffusion } from '../pipelines/drag/drag.js';
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
  /** The edited image, [1, 3, H, W] in [0, 1]. */
  run(bundle: StableDiffusionBundle, c: EvalCase, seed: number): Promise<NDArray>;
}

const TEXT_TASKS: readonly EvalTask[] = ['add', 'replace', 'remove', 'background', 'style', 'texture'];

export interface MethodOptions {
  steps: number;
  guidance: number;
  /** SDEdit strengths and DiffEdit encoding ratios (one method entry each). */
  strengths: readonly number[];
  ratios: readonly number[];
  dragLoraSteps: number;
  dragSteps: number;
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
        return c.target01;
      },
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
      run: async (bundle, c, seed) =>
        (
          await img2img(bundle, {
            image: c.source,
            prompt: c.targetCaption,
            strength,
            numInferenceSteps: o.steps,
            guidanceScale: o.guidance,
            seed,
          })
        ).image,
    });
  }
  methods.push({
    key: 'inpaint-gt',
    label: 'Inpainting, ground-truth mask (upper bound)',
    family: 'Inpainting',
    tasks: TEXT_TASKS,
    needs: ['target caption', 'ground-truth mask'],
    settings: { steps: o.steps, guidance: o.guidance },
    run: async (bundle, c, seed) =>
      (
        await inpaint(bundle, {
          image: c.source,
          mask: c.region,
          prompt: c.targetCaption,
          numInferenceSteps: o.steps,
          guidanceScale: o.guidance,
          seed,
        })
      ).image,
  });
  for (const ratio of o.ratios) {
    methods.push({
      key: `diffedit-${ratio}`,
      label: `DiffEdit (r ${ratio})`,
      family: 'DiffEdit',
      tasks: TEXT_TASKS,
      needs: ['target caption', 'source caption'],
      settings: { r: ratio, steps: o.steps, guidance: o.guidance },
      run: async (bundle, c, seed) =>
        (
          await diffEdit(bundle, {
            image: c.source,
            prompt: c.targetCaption,
            sourcePrompt: c.sourceCaption,
            strength: ratio,
            numInferenceSteps: o.steps,
            guidanceScale: o.guidance,
            seed,
          })
        ).image,
    });
  }
  methods.push({
    key: 'dragdiffusion',
    label: 'DragDiffusion',
    family: 'DragDiffusion',
    tasks: ['action'],
    needs: ['drag points', 'ground-truth mask', 'source caption'],
    settings: { loraSteps: o.dragLoraSteps, dragSteps: o.dragSteps },
    run: async (bundle, c, seed) => {
      if (!c.drag) throw new Error(`case ${c.id} has no drag points`);
      return (
        await dragDiffusion(bundle, {
          image: c.source,
          handles: c.drag.handles,
          targets: c.drag.targets,
          mask: c.region,
          prompt: c.sourceCaption,
          loraSteps: o.dragLoraSteps,
          dragSteps: o.dragSteps,
          seed,
        })
      ).image;
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
      run: async (bundle, c) =>
        diffusionClipEdit(bundle, { image: c.source, models: [{ unet: deltas[c.task]!, weight: 1 }] }),
    });
  }
  return methods;
}
