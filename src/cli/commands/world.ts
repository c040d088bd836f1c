import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';

import { Command, InvalidArgumentError, Option } from 'commander';

import { UserError } from '../../util/errors.js';
import { ensureParentDir, writeFileAtomic } from '../../util/files.js';
import { BACKGROUND_NAMES, getBackground } from '../../world/backgrounds.js';
import { editVocabulary, writeBatch } from '../../world/batch.js';
import { caption, sceneFacts } from '../../world/caption.js';
import { CLASS_NAMES, classColours, getClass } from '../../world/catalog.js';
import { EDIT_TASKS, sampleEdit, type EditTask } from '../../world/edits.js';
import { encodePng, renderScene } from '../../world/render.js';
import {
  MAX_IMAGE_SIZE,
  MAX_OBJECTS,
  MIN_IMAGE_SIZE,
  readSceneFile,
  sampleScene,
  sceneToJson,
  type SampleSceneOptions,
} from '../../world/scene.js';
import { WORLD_SUBSET_NAMES, findWorldSubset, type WorldSubset } from '../../world/subsets.js';
import { SPLITS, splitSeed, type Split } from '../../world/splits.js';

/**
 * `editkit world …`: EmojiWorld scenes, renders, ground-truth edits and training batches.
 *
 * Subcommands set their own exitOverride/showHelpAfterError because commander copies those settings to
 * subcommands only when they are created, i.e. before the program registers this command.
 */
export function worldCommand(): Command {
  const world = new Command('world')
    .description('EmojiWorld: procedural emoji scenes with captions, masks and ground-truth edits')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  for (const sub of [sampleSub(), renderSub(), editSub(), batchSub(), exportSub(), listSub()]) {
    world.addCommand(sub.showHelpAfterError('(run with --help for usage)').exitOverride());
  }
  return world;
}

// Local parsers rather than ../options.js: the world commands need no model runtime, and keeping their
// imports to src/world and src/util lets them run on a machine without ONNX Runtime.
function integer(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}.`);
    }
    return n;
  };
}

function splitOption(): Option {
  return new Option(
    '--split <name>',
    'seed range: train or heldout (then --seed/--start is an index within it)',
  ).choices(SPLITS);
}

function report(json: boolean, summary: Record<string, unknown>, human: string): void {
  if (json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else process.stderr.write(`${human}\n`);
}

async function ensureDir(dir: string, what: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UserError(
      `cannot create ${what} '${dir}' (${code === 'EEXIST' || code === 'ENOTDIR' ? 'a file is in the way' : (code ?? String(error))})`,
      {
        cause: error,
      },
    );
  }
}

function checkPng(path: string, option: string): void {
  if (extname(path).toLowerCase() !== '.png') {
    throw new UserError(
      `${option} '${path}' must be a .png file (masks and ground truth are stored losslessly)`,
    );
  }
}

interface SizeOptions {
  size?: number;
  width?: number;
  height?: number;
}

interface SceneCliOptions extends SizeOptions {
  subset?: string;
  minObjects?: number;
  maxObjects?: number;
}

function subsetOf(name: string | undefined): WorldSubset | undefined {
  if (name === undefined) return undefined;
  const subset = findWorldSubset(name);
  if (!subset)
    throw new UserError(`--subset: unknown subset '${name}'; use ${WORLD_SUBSET_NAMES.join(', ')}`);
  return subset;
}

/** Scene sampling options: the subset's (if any), overridden by explicit size and object-count flags. */
function sceneOptions(options: SceneCliOptions): SampleSceneOptions {
  const base = subsetOf(options.subset)?.scene ?? {};
  const width = options.width ?? options.size ?? base.width;
  const height = options.height ?? options.size ?? base.height;
  const minObjects = options.minObjects ?? base.minObjects ?? 1;
  const maxObjects = options.maxObjects ?? base.maxObjects ?? MAX_OBJECTS;
  if (minObjects > maxObjects) {
    throw new UserError(`--min-objects (${minObjects}) is larger than --max-objects (${maxObjects})`);
  }
  return { ...base, width, height, minObjects, maxObjects };
}

function subsetOption(): Option {
  return new Option(
    '--subset <name>',
    `sample from a named part of the world (${WORLD_SUBSET_NAMES.join(', ')}; 'core' is what the bundled models know)`,
  );
}

function addSizeOptions(command: Command): Command {
  const px = (name: string) => integer(name, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE);
  return command
    .option(
      '--size <px>',
      `square image size, ${MIN_IMAGE_SIZE}–${MAX_IMAGE_SIZE} (default: the subset's, else 128)`,
      px('--size'),
    )
    .option('--width <px>', 'image width (overrides --size)', px('--width'))
    .option('--height <px>', 'image height (overrides --size)', px('--height'));
}

interface SampleCliOptions extends SceneCliOptions {
  count: number;
  seed: number;
  out: string;
  split?: Split;
  json: boolean;
}

function sampleSub(): Command {
  const command = new Command('sample')
    .description('write random scene specs (scene-<seed>.json) and an index.ndjson of captions and facts')
    .requiredOption('-n, --count <n>', 'number of scenes', integer('--count', 1, 1_000_000))
    .option(
      '--seed <n>',
      'first seed (with --split: first index in the split)',
      integer('--seed', 0, 2 ** 32 - 1),
      0,
    )
    .requiredOption('-o, --out <dir>', 'output folder')
    .addOption(splitOption())
    .addOption(subsetOption())
    .option(
      '--min-objects <n>',
      "fewest objects per scene (default: the subset's, else 1)",
      integer('--min-objects', 0, MAX_OBJECTS),
    )
    .option(
      '--max-objects <n>',
      `most objects per scene (default: the subset's, else ${MAX_OBJECTS})`,
      integer('--max-objects', 0, MAX_OBJECTS),
    )
    .option('--json', 'print a machine-readable JSON result on stdout', false);
  addSizeOptions(command);
  return command.action(async (options: SampleCliOptions) => {
    const sceneOpts = sceneOptions(options);
    await ensureDir(options.out, 'output folder');
    const lines: string[] = [];
    const files: string[] = [];
    for (let k = 0; k < options.count; k++) {
      const seed = options.split ? splitSeed(options.split, options.seed + k) : options.seed + k;
      if (seed > 2 ** 32 - 1)
        throw new UserError(
          `--seed ${options.seed} + --count ${options.count} runs past the largest seed (2^32 − 1)`,
        );
      const scene = sampleScene(seed, sceneOpts);
      const file = `scene-${String(seed).padStart(10, '0')}.json`;
      await writeFileAtomic(join(options.out, file), sceneToJson(scene));
      files.push(file);
      lines.push(JSON.stringify({ file, seed, caption: caption(scene), facts: sceneFacts(scene) }));
    }
    await writeFileAtomic(join(options.out, 'index.ndjson'), `${lines.join('\n')}\n`);
    report(
      options.json,
      { command: 'world sample', out: options.out, count: files.length, files },
      `wrote ${files.length} scene(s) and index.ndjson to ${options.out}`,
    );
  });
}

interface RenderCliOptions {
  out: string;
  masks?: string;
  json: boolean;
}

function renderSub(): Command {
  return new Command('render')
    .description('render a scene spec to a PNG (and its masks)')
    .argument('<scene.json>', 'scene spec')
    .requiredOption('-o, --out <image.png>', 'output image (.png)')
    .option('--masks <dir>', 'also write union.png, object-<i>.png (occlusion-aware) and background.png here')
    .option('--json', 'print a machine-readable JSON result on stdout', false)
    .action(async (scenePath: string, options: RenderCliOptions) => {
      checkPng(options.out, '--out');
      const scene = await readSceneFile(scenePath);
      const r = await renderScene(scene);
      await ensureParentDir(options.out);
      await writeFileAtomic(options.out, await encodePng(r.image, r.width, r.height, 3));
      const written = [options.out];
      if (options.masks) {
        await ensureDir(options.masks, '--masks folder');
        const files: [string, Uint8Array, 1 | 3][] = [
          ['union.png', r.union, 1],
          ['background.png', r.background, 3],
          ...r.objectMasks.map((m, i): [string, Uint8Array, 1] => [`object-${i}.png`, m, 1]),
        ];
        for (const [name, data, channels] of files) {
          const path = join(options.masks, name);
          await writeFileAtomic(path, await encodePng(data, r.width, r.height, channels));
          written.push(path);
        }
      }
      const text = caption(scene);
      report(
        options.json,
        {
          command: 'world render',
          out: options.out,
          files: written,
          width: r.width,
          height: r.height,
          caption: text,
          facts: sceneFacts(scene),
        },
        `wrote ${written.join(', ')} (${r.width}×${r.height}): "${text}"`,
      );
    });
}

interface EditCliOptions {
  task: EditTask | 'random';
  seed: number;
  out: string;
  json: boolean;
  subset?: string;
}

function editSub(): Command {
  return new Command('edit')
    .description('apply a ground-truth edit: writes source.png, target.png, mask.png and edit.json')
    .argument('<scene.json>', 'scene spec')
    .addOption(
      new Option('-t, --task <task>', 'edit task').choices([...EDIT_TASKS, 'random']).makeOptionMandatory(),
    )
    .option(
      '--seed <n>',
      'edit seed (which object, which new class, …)',
      integer('--seed', 0, 2 ** 32 - 1),
      0,
    )
    .requiredOption('-o, --out <dir>', 'output folder')
    .addOption(
      new Option(
        '--subset <name>',
        `draw new classes and backgrounds from a world subset (${WORLD_SUBSET_NAMES.join(', ')}; default the whole world)`,
      ),
    )
    .option('--json', 'print a machine-readable JSON result on stdout', false)
    .action(async (scenePath: string, options: EditCliOptions) => {
      const vocabulary = editVocabulary(subsetOf(options.subset)?.scene);
      const scene = await readSceneFile(scenePath);
      const edit = await sampleEdit(scene, options.task, options.seed, vocabulary);
      const [source, target] = await Promise.all([renderScene(edit.source), renderScene(edit.target)]);
      await ensureDir(options.out, 'output folder');
      const { width, height } = edit;
      const record = {
        task: edit.task,
        seed: edit.seed,
        instruction: edit.instruction,
        sourceCaption: edit.sourceCaption,
        targetCaption: edit.targetCaption,
        changed: edit.changed,
        dilation: edit.dilation,
        drag: edit.drag ?? null,
        width,
        height,
        source: edit.source,
        target: edit.target,
        sourceFacts: sceneFacts(edit.source),
        targetFacts: sceneFacts(edit.target),
      };
      const files: [string, Uint8Array | string][] = [
        ['source.png', await encodePng(source.image, width, height, 3)],
        ['target.png', await encodePng(target.image, width, height, 3)],
        ['mask.png', await encodePng(edit.mask, width, height, 1)],
        ['edit.json', `${JSON.stringify(record, null, 2)}\n`],
      ];
      for (const [name, data] of files) await writeFileAtomic(join(options.out, name), data);
      report(
        options.json,
        {
          command: 'world edit',
          out: options.out,
          files: files.map(([name]) => join(options.out, name)),
          task: edit.task,
          instruction: edit.instruction,
        },
        `wrote ${options.out}/{source,target,mask}.png and edit.json: ${edit.task}: "${edit.instruction}"`,
      );
    });
}

interface BatchCliOptions extends SceneCliOptions {
  count: number;
  start: number;
  split: Split;
  mode: 'scene' | 'edit';
  tasks?: string;
  objectMasks: boolean;
  out: string;
}

function batchSub(): Command {
  const command = new Command('batch')
    .description(
      'stream rendered scenes or edit pairs in the batch format (README: "Batch protocol") for training',
    )
    .requiredOption('-n, --count <n>', 'number of records', integer('--count', 1, 2 ** 31))
    .option('--start <i>', 'index of the first scene within the split', integer('--start', 0, 2 ** 31 - 1), 0)
    .addOption(new Option('--split <name>', 'seed range').choices(SPLITS).default('train'))
    .addOption(
      new Option('--mode <mode>', 'scene: images + masks; edit: ground-truth edit pairs')
        .choices(['scene', 'edit'])
        .default('scene'),
    )
    .option(
      '--tasks <list>',
      `edit mode: comma-separated tasks to draw from (default all: ${EDIT_TASKS.join(',')})`,
    )
    .option('--no-object-masks', 'scene mode: leave out the per-object masks')
    .addOption(subsetOption())
    .option(
      '--min-objects <n>',
      "fewest objects per scene (default: the subset's, else 1)",
      integer('--min-objects', 0, MAX_OBJECTS),
    )
    .option(
      '--max-objects <n>',
      `most objects per scene (default: the subset's, else ${MAX_OBJECTS})`,
      integer('--max-objects', 0, MAX_OBJECTS),
    )
    .option('-o, --out <file>', "output file, or '-' for stdout", '-');
  addSizeOptions(command);
  return command.action(async (options: BatchCliOptions) => {
    const scene = sceneOptions(options);
    const tasks = options.tasks === undefined ? undefined : parseTasks(options.tasks);
    const batch = {
      split: options.split,
      start: options.start,
      count: options.count,
      mode: options.mode,
      tasks,
      objectMasks: options.objectMasks,
      scene,
    };
    // Fail on an out-of-range index before writing anything.
    splitSeed(options.split, options.start + options.count - 1);
    if (options.out === '-') {
      if (process.stdout.isTTY)
        throw new UserError('refusing to write binary batch data to a terminal; pipe it or use --out FILE');
      const { records, bytes } = await writeBatch(batch, process.stdout);
      process.stderr.write(`wrote ${records} ${options.mode} record(s), ${bytes} bytes, to stdout\n`);
      return;
    }
    // A batch can be gigabytes, so it streams to a temporary file that is renamed into place at the end: a
    // reader never sees a truncated file under the final name.
    await ensureParentDir(options.out);
    const temp = join(
      dirname(options.out),
      `.${basename(options.out)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`,
    );
    const stream = createWriteStream(temp, { flags: 'wx' });
    try {
      const { records, bytes } = await writeBatch(batch, stream);
      stream.end();
      await once(stream, 'close');
      await rename(temp, options.out);
      process.stderr.write(`wrote ${records} ${options.mode} record(s), ${bytes} bytes, to ${options.out}\n`);
    } catch (error) {
      stream.destroy();
      await rm(temp, { force: true }).catch(() => undefined);
      throw error;
    }
  });
}

interface ExportCliOptions extends SceneCliOptions {
  format: 'dragbench' | 'piebench';
  out: string;
  cases: number;
  split: Split;
  start: number;
  tasks?: string;
  json: boolean;
}

function exportSub(): Command {
  const command = new Command('export')
    .description(
      "write held-out edits in a public benchmark's folder layout (DragBench: <task>/<case>/original_image.png, user_drag.png, meta_data.pkl)",
    )
    .addOption(new Option('--format <name>', 'folder layout').choices(['dragbench']).makeOptionMandatory())
    .requiredOption('-o, --out <dir>', 'output folder')
    .option('-n, --cases <n>', 'number of cases', integer('--cases', 1, 100000), 20)
    .addOption(new Option('--split <name>', 'seed range').choices(SPLITS).default('heldout'))
    .option('--start <i>', 'index of the first seed within the split', integer('--start', 0, 2 ** 31 - 1), 0)
    .option(
      '--tasks <list>',
      'dragbench: move,resize (default both); piebench: eval tasks (default all seven)',
    )
    .addOption(subsetOption())
    .option('--json', 'print a JSON summary on stdout');
  addSizeOptions(command);
  return command.action(async (options: ExportCliOptions) => {
    if (options.format === 'piebench') {
      const { EVAL_TASKS, isEvalTask } = await import('../../eval/tasks.js');
      const tasks = options.tasks ? options.tasks.split(',').map((t) => t.trim()) : [...EVAL_TASKS];
      const unknown = tasks.filter((t) => !isEvalTask(t));
      if (unknown.length > 0)
        throw new UserError(`--tasks: unknown eval task '${unknown[0]}'; use ${EVAL_TASKS.join(', ')}`);
      const scene = sceneOptions(options);
      await ensureDir(options.out, 'output folder');
      const { exportPieBench } = await import('../../eval/datasets.js');
      const n = await exportPieBench(options.out, {
        tasks: tasks.filter(isEvalTask),
        cases: options.cases,
        scene: { ...scene, width: scene.width ?? 64, height: scene.height ?? 64 },
      });
      report(
        options.json,
        { command: 'world export', format: 'piebench', out: options.out, cases: n },
        `wrote ${n} PIE-Bench case(s) to ${options.out}`,
      );
      return;
    }
    const tasks = parseTasks(options.tasks ?? 'move,resize');
    const dragTasks = tasks.filter((t): t is 'move' | 'resize' => t === 'move' || t === 'resize');
    if (dragTasks.length !== tasks.length)
      throw new UserError('--tasks: DragBench holds drag edits only: use move and/or resize');
    const scene = sceneOptions(options);
    splitSeed(options.split, options.start + options.cases - 1);
    await ensureDir(options.out, 'output folder');
    const { exportDragBench } = await import('../../datasets/world_export.js');
    const written = await exportDragBench(options.out, {
      cases: options.cases,
      split: options.split,
      start: options.start,
      tasks: dragTasks,
      scene,
      log: (line) => process.stderr.write(`${line}\n`),
    });
    report(
      options.json,
      { command: 'world export', format: options.format, out: options.out, cases: written.length },
      `wrote ${written.length} DragBench case(s) to ${options.out}`,
    );
  });
}

function parseTasks(list: string): EditTask[] {
  const tasks = list
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  for (const t of tasks) {
    if (!(EDIT_TASKS as readonly string[]).includes(t))
      throw new UserError(`--tasks: unknown task '${t}'; use ${EDIT_TASKS.join(', ')}`);
  }
  if (tasks.length === 0) throw new UserError('--tasks is empty');
  return tasks as EditTask[];
}

function listSub(): Command {
  return new Command('list')
    .description('list the classes, backgrounds and edit tasks')
    .option('--json', 'print JSON', false)
    .action((options: { json: boolean }) => {
      const classes = CLASS_NAMES.map((name) => {
        const c = getClass(name);
        return { name, category: c.category, styles: c.styles, colours: classColours(name) };
      });
      const backgrounds = BACKGROUND_NAMES.map((name) => ({ name, phrase: getBackground(name).phrase }));
      if (options.json) {
        process.stdout.write(`${JSON.stringify({ classes, backgrounds, tasks: EDIT_TASKS })}\n`);
        return;
      }
      const lines = [
        `classes (${classes.length}):`,
        ...classes.map(
          (c) =>
            `  ${c.name} [${c.category}]${c.styles.length > 1 ? '' : ' flat only'}${c.colours.length ? `; colours: ${c.colours.join(', ')}` : ''}`,
        ),
        `backgrounds (${backgrounds.length}):`,
        ...backgrounds.map((b) => `  ${b.name}: "${b.phrase}"`),
        `edit tasks: ${EDIT_TASKS.join(', ')}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
