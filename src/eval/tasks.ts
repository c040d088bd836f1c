/**
 * The survey's seven editing tasks (EditEval: object addition, replacement and removal, background change, style
 * change, texture change, action change) on EmojiWorld, where every case has its ground truth: the edited scene,
 * rendered, and the region that changes.
 *
 * | task       | EmojiWorld edit        |
 * | ---------- | ---------------------- |
 * | add        | add                    |
 * | replace    | replace                |
 * | remove     | remove                 |
 * | background | background             |
 * | style      | style (flat ↔ glossy)  |
 * | texture    | colour (colour variant) |
 * | action     | move, resize (drag points) |
 *
 * Cases are a fixed, versioned list: case k of task T is held-out seed `SUITE_OFFSETS[T] + k`, so results of one
 * version compare across EditKit versions and machines. A seed whose scene cannot take the edit falls back to a
 * scene that can (world/batch.ts applicableScene), deterministically; where even that cannot (a move in a world
 * subset whose objects may fill the frame), the case does not exist for that subset and runs skip it.
 */
import { rgb8ToTensor } from '../image/io.js';
import { NDArray } from '../runtime/ndarray.js';
import { applicableScene, editVocabulary } from '../world/batch.js';
import { planEdit, sampleEdit, type DragPoints, type EditTask } from '../world/edits.js';
import { renderScene } from '../world/render.js';
import type { SampleSceneOptions, Scene } from '../world/scene.js';
import { splitSeed } from '../world/splits.js';
import { UserError } from '../util/errors.js';

export const SUITE_VERSION = 1;

export const EVAL_TASKS = ['add', 'replace', 'remove', 'background', 'style', 'texture', 'action'] as const;
export type EvalTask = (typeof EVAL_TASKS)[number];

export function isEvalTask(name: string | undefined): name is EvalTask {
  return name !== undefined && (EVAL_TASKS as readonly string[]).includes(name);
}

const WORLD_TASK: Record<EvalTask, readonly EditTask[]> = {
  add: ['add'],
  replace: ['replace'],
  remove: ['remove'],
  background: ['background'],
  style: ['style'],
  texture: ['colour'],
  action: ['move', 'resize'],
};

/** Held-out seeds reserved for each task's cases. */
export const SUITE_CASES_PER_TASK = 1000;

/** Where each task's cases start in the held-out split (SUITE_CASES_PER_TASK apart: no two tasks share a scene). */
const SUITE_OFFSETS: Record<EvalTask, number> = {
  add: 5000,
  replace: 6000,
  remove: 7000,
  background: 8000,
  style: 9000,
  texture: 10000,
  action: 11000,
};

export interface EvalCase {
  /** `<task>-<k>`: stable across runs of one suite version. */
  id: string;
  task: EvalTask;
  worldTask: EditTask;
  seed: number;
  instruction: string;
  sourceCaption: string;
  targetCaption: string;
  /** [1, 3, H, W] in [-1, 1] and [0, 1]. */
  source: NDArray;
  source01: NDArray;
  /** The ground-truth result, [1, 3, H, W] in [0, 1] (EmojiWorld; absent for a dataset without one). */
  target01?: NDArray;
  /** The region that changes, [1, 1, H, W], 1 inside. */
  region: NDArray;
  /** The scenes before and after (EmojiWorld only: the judge's expectations). */
  sourceScene?: Scene;
  targetScene?: Scene;
  /** For action: handle → target points. */
  drag?: DragPoints;
  /** Which objects the edit changes: indices into the source and the target scene's objects (EmojiWorld only). */
  changedObjects?: { source: readonly number[]; target: readonly number[] };
}

/** The EmojiWorld edit behind case k of `task` (action alternates move and resize): known without rendering. */
export function suiteWorldTask(task: EvalTask, k: number): EditTask {
  const worldTasks = WORLD_TASK[task];
  return worldTasks[k % worldTasks.length];
}

/** The EmojiWorld edits a task's cases can be. */
export function worldTasksOf(task: EvalTask): readonly EditTask[] {
  return WORLD_TASK[task];
}

/**
 * The suite indices k of the first `count` cases of `task` that exist at these scene options, restricted to some
 * of the task's EmojiWorld edits (`edits`: action → moves keeps action-0, action-2, …). A case that does not exist
 * is passed to `onSkip` with the reason.
 */
export function suiteCaseIndices(
  task: EvalTask,
  count: number,
  scene: SampleSceneOptions,
  options: { edits?: readonly EditTask[]; onSkip?: (id: string, reason: string) => void } = {},
): number[] {
  const indices: number[] = [];
  for (let k = 0; indices.length < count && k < SUITE_CASES_PER_TASK; k++) {
    const worldTask = suiteWorldTask(task, k);
    if (options.edits && !options.edits.includes(worldTask)) continue;
    const seed = splitSeed('heldout', SUITE_OFFSETS[task] + k);
    try {
      // planEdit is what sampleEdit does before any pixel: it throws where the scene cannot take the edit.
      planEdit(applicableScene(seed, worldTask, scene), worldTask, seed, editVocabulary(scene));
      indices.push(k);
    } catch (error) {
      if (!(error instanceof UserError)) throw error;
      options.onSkip?.(`${task}-${k}`, error.message);
    }
  }
  if (indices.length < count)
    throw new UserError(
      `task ${task} has ${indices.length} cases${options.edits ? ` of ${options.edits.join('/')}` : ''} in this world subset, fewer than the ${count} asked for`,
    );
  return indices;
}

/** Case k of `task` (k from 0), at the given scene options (the model's subset and size). */
export async function evalCase(task: EvalTask, k: number, scene: SampleSceneOptions): Promise<EvalCase> {
  const seed = splitSeed('heldout', SUITE_OFFSETS[task] + k);
  const worldTask = suiteWorldTask(task, k);
  const edit = await sampleEdit(
    applicableScene(seed, worldTask, scene),
    worldTask,
    seed,
    editVocabulary(scene),
  );
  const [source, target] = await Promise.all([renderScene(edit.source), renderScene(edit.target)]);
  const { width, height } = edit;
  const image = (data: Uint8Array, range: '[-1,1]' | '[0,1]') => rgb8ToTensor({ data, width, height }, range);
  return {
    id: `${task}-${k}`,
    task,
    worldTask,
    seed,
    instruction: edit.instruction,
    sourceCaption: edit.sourceCaption,
    targetCaption: edit.targetCaption,
    source: image(source.image, '[-1,1]'),
    source01: image(source.image, '[0,1]'),
    target01: image(target.image, '[0,1]'),
    region: new NDArray(
      Float32Array.from(edit.mask, (v) => (v > 0 ? 1 : 0)),
      [1, 1, height, width],
    ),
    sourceScene: edit.source,
    targetScene: edit.target,
    drag: edit.drag,
    changedObjects: edit.changed,
  };
}
