/**
 * EmojiWorld's held-out edits written in public benchmarks' layouts, so that the loaders of those layouts are
 * tested on data with known ground truth, and a user can run EditKit's benches and other tools on the same cases.
 */
import { join } from 'node:path';
import { rgb8ToTensor, saveImage } from '../image/io.js';
import { NDArray } from '../runtime/ndarray.js';
import { UserError } from '../util/errors.js';
import { writeFileAtomic } from '../util/files.js';
import { applicableScene, editVocabulary } from '../world/batch.js';
import { sampleEdit } from '../world/edits.js';
import { renderScene } from '../world/render.js';
import type { SampleSceneOptions } from '../world/scene.js';
import { splitSeed, type Split } from '../world/splits.js';
import { writeDragBenchCase } from './dragbench.js';

export interface DragBenchExportOptions {
  cases: number;
  split: Split;
  /** Index of the first seed within the split. */
  start: number;
  tasks: readonly ('move' | 'resize')[];
  scene: SampleSceneOptions;
  log?: (line: string) => void;
}

/**
 * Write move/resize edits as DragBench cases, `<task>/<index>-seed<seed>/`, each with DragBench's three files, and
 * two of EditKit's: `target_image.png` (the ground-truth result) and `editkit_case.json` (seed, instruction).
 * Returns the case folders written.
 */
export async function exportDragBench(out: string, options: DragBenchExportOptions): Promise<string[]> {
  if (options.tasks.length === 0) throw new UserError('give at least one drag task (move, resize)');
  splitSeed(options.split, options.start + options.cases - 1);
  const written: string[] = [];
  for (let k = 0; k < options.cases; k++) {
    const seed = splitSeed(options.split, options.start + k);
    const task = options.tasks[k % options.tasks.length];
    let scene;
    try {
      scene = applicableScene(seed, task, options.scene);
    } catch (error) {
      if (!(error instanceof UserError)) throw error;
      options.log?.(`seed ${seed}: skipped (${error.message})`);
      continue;
    }
    const edit = await sampleEdit(scene, task, seed, editVocabulary(options.scene));
    if (!edit.drag || edit.drag.handles.length === 0) {
      options.log?.(`seed ${seed}: no drag points (${edit.instruction}); skipped`);
      continue;
    }
    const [source, target] = await Promise.all([renderScene(edit.source), renderScene(edit.target)]);
    const { width, height } = edit;
    const dir = join(out, task, `${String(k).padStart(4, '0')}-seed${seed}`);
    await writeDragBenchCase(dir, {
      image: rgb8ToTensor({ data: source.image, width, height }, '[-1,1]'),
      prompt: edit.sourceCaption,
      handles: edit.drag.handles,
      targets: edit.drag.targets,
      mask: new NDArray(
        Float32Array.from(edit.mask, (v) => (v > 0 ? 1 : 0)),
        [1, 1, height, width],
      ),
    });
    await saveImage(
      rgb8ToTensor({ data: target.image, width, height }, '[0,1]'),
      join(dir, 'target_image.png'),
    );
    await writeFileAtomic(
      join(dir, 'editkit_case.json'),
      `${JSON.stringify({ seed, split: options.split, task, instruction: edit.instruction, targetCaption: edit.targetCaption }, null, 2)}\n`,
    );
    written.push(dir);
  }
  return written;
}
