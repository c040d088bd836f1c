import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { CommanderError } from 'commander';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { worldCommand } from '../../src/cli/commands/world.js';
import { UserError } from '../../src/util/errors.js';
import { renderScene } from '../../src/world/render.js';
import { parseScene } from '../../src/world/scene.js';

let dir: string;
let stderr: string;
let stdout: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'editkit-world-cli-'));
  stderr = '';
  stdout = '';
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

const run = (...args: string[]): Promise<unknown> => worldCommand().parseAsync(args, { from: 'user' });

async function pngPixels(path: string, channels: 1 | 3 = 3): Promise<Buffer> {
  const image = sharp(await readFile(path));
  const { data, info } = await (channels === 1 ? image.toColourspace('b-w') : image)
    .raw()
    .toBuffer({ resolveWithObject: true });
  expect(info.channels).toBe(channels);
  return data;
}

describe('editkit world', () => {
  it('sample → render → edit', async () => {
    await run('sample', '--count', '3', '--seed', '40', '--out', join(dir, 'scenes'));
    const files = (await readdir(join(dir, 'scenes'))).sort();
    expect(files).toEqual([
      'index.ndjson',
      'scene-0000000040.json',
      'scene-0000000041.json',
      'scene-0000000042.json',
    ]);
    const index = (await readFile(join(dir, 'scenes', 'index.ndjson'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { caption: string });
    expect(index).toHaveLength(3);
    expect(stderr).toMatch(/wrote 3 scene\(s\)/);

    const scenePath = join(dir, 'scenes', 'scene-0000000040.json');
    const scene = parseScene(JSON.parse(await readFile(scenePath, 'utf8')));
    await run('render', scenePath, '--out', join(dir, 'img.png'), '--masks', join(dir, 'masks'), '--json');
    const rendered = await renderScene(scene);
    expect((await pngPixels(join(dir, 'img.png'))).equals(Buffer.from(rendered.image))).toBe(true);
    const masks = (await readdir(join(dir, 'masks'))).sort();
    expect(masks).toEqual(
      ['background.png', 'union.png', ...scene.objects.map((_, i) => `object-${i}.png`)].sort(),
    );
    expect((await sharp(join(dir, 'masks', 'union.png')).metadata()).channels).toBe(1); // a greyscale PNG
    expect((await pngPixels(join(dir, 'masks', 'union.png'), 1)).equals(Buffer.from(rendered.union))).toBe(
      true,
    );
    expect(JSON.parse(stdout)).toMatchObject({ command: 'world render', caption: index[0].caption });

    await run('edit', scenePath, '--task', 'background', '--seed', '2', '--out', join(dir, 'edit'));
    expect((await readdir(join(dir, 'edit'))).sort()).toEqual([
      'edit.json',
      'mask.png',
      'source.png',
      'target.png',
    ]);
    const edit = JSON.parse(await readFile(join(dir, 'edit', 'edit.json'), 'utf8')) as {
      task: string;
      instruction: string;
      target: unknown;
    };
    expect(edit.task).toBe('background');
    expect(edit.instruction).toMatch(/background|put/);
    expect(parseScene(edit.target).background.name).not.toBe(scene.background.name);
  });

  it('samples from the held-out split', async () => {
    await run('sample', '-n', '1', '--split', 'heldout', '--out', dir, '--size', '64');
    const file = (await readdir(dir)).find((f) => f.startsWith('scene-'));
    expect(file).toBe(`scene-${2 ** 31}.json`);
    expect(JSON.parse(await readFile(join(dir, file as string), 'utf8'))).toMatchObject({
      width: 64,
      height: 64,
    });
  });

  it('samples, edits and batches within a named world subset', async () => {
    const { WORLD_SUBSETS } = await import('../../src/world/subsets.js');
    const core = WORLD_SUBSETS.core.scene;
    await run('sample', '-n', '12', '--split', 'heldout', '--subset', 'core', '--out', join(dir, 's'));
    const files = (await readdir(join(dir, 's'))).filter((f) => f.startsWith('scene-')).sort();
    expect(files).toHaveLength(12);
    for (const file of files) {
      const scene = parseScene(JSON.parse(await readFile(join(dir, 's', file), 'utf8')));
      expect([scene.width, scene.height]).toEqual([64, 64]);
      expect(scene.objects.length).toBeGreaterThanOrEqual(1);
      expect(scene.objects.length).toBeLessThanOrEqual(2);
      for (const o of scene.objects) {
        expect(core.classes).toContain(o.class);
        expect(o.colour).toBeUndefined();
      }
      expect(core.backgrounds).toContain(scene.background.name);
    }
    // Explicit flags override the subset's defaults.
    await run(
      'sample',
      '-n',
      '1',
      '--subset',
      'core',
      '--size',
      '96',
      '--max-objects',
      '1',
      '--out',
      join(dir, 't'),
    );
    const one = (await readdir(join(dir, 't'))).find((f) => f.startsWith('scene-')) as string;
    const t = parseScene(JSON.parse(await readFile(join(dir, 't', one), 'utf8')));
    expect([t.width, t.objects.length]).toEqual([96, 1]);

    // A replacement and a new background stay within the subset's vocabulary.
    for (let seed = 0; seed < 8; seed++) {
      const out = join(dir, `e${seed}`);
      await run(
        'edit',
        join(dir, 's', files[seed]),
        '--task',
        'replace',
        '--seed',
        String(seed),
        '--subset',
        'core',
        '--out',
        out,
      );
      const edit = JSON.parse(await readFile(join(out, 'edit.json'), 'utf8')) as { target: unknown };
      for (const o of parseScene(edit.target).objects) expect(core.classes).toContain(o.class);
      await run(
        'edit',
        join(dir, 's', files[seed]),
        '--task',
        'background',
        '--seed',
        String(seed),
        '--subset',
        'core',
        '--out',
        out,
      );
      const bg = JSON.parse(await readFile(join(out, 'edit.json'), 'utf8')) as { target: unknown };
      expect(core.backgrounds).toContain(parseScene(bg.target).background.name);
    }

    await run('batch', '-n', '2', '--subset', 'core', '--no-object-masks', '--out', join(dir, 'b.bin'));
    const bytes = await readFile(join(dir, 'b.bin'));
    const lines = bytes.toString('latin1').split('\n');
    const record = JSON.parse(lines[1]) as { width: number; facts: { classes: string[] } };
    expect(record.width).toBe(64);
    for (const c of record.facts.classes) expect(core.classes).toContain(c);

    await expect(run('sample', '-n', '1', '--subset', 'tiny', '--out', join(dir, 'u'))).rejects.toThrow(
      /--subset: unknown subset 'tiny'; use core, full/,
    );
  });

  it('writes a batch file', async () => {
    await run(
      'batch',
      '-n',
      '2',
      '--mode',
      'edit',
      '--tasks',
      'remove,add',
      '--size',
      '64',
      '--out',
      join(dir, 'b.bin'),
    );
    const bytes = await readFile(join(dir, 'b.bin'));
    expect(JSON.parse(bytes.subarray(0, bytes.indexOf(0x0a)).toString())).toMatchObject({
      format: 'editkit-emojiworld-batch',
      mode: 'edit',
      count: 2,
    });
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('reports user errors with one clear message', async () => {
    const bad = join(dir, 'bad.json');
    await writeFile(
      bad,
      JSON.stringify({
        version: 1,
        background: { name: 'grass' },
        objects: [{ class: 'dgo', x: 0.5, y: 0.5, scale: 0.3 }],
      }),
    );
    await expect(run('render', bad, '--out', join(dir, 'x.png'))).rejects.toThrow(
      new UserError(
        `scene file '${bad}' is invalid: objects[0].class: unknown class "dgo" (did you mean "dog"?) (run 'editkit world list' for all classes)`,
      ),
    );
    const good = join(dir, 'good.json');
    await writeFile(
      good,
      JSON.stringify({
        version: 1,
        background: { name: 'grass' },
        objects: [{ class: 'dog', x: 0.5, y: 0.5, scale: 0.3 }],
      }),
    );
    await expect(run('render', good, '--out', join(dir, 'x.jpg'))).rejects.toThrow(/must be a \.png file/);
    await expect(run('edit', good, '--task', 'colour', '--out', join(dir, 'e'))).rejects.toThrow(
      /does not apply to this scene: no object in the scene comes in other colours/,
    );
    await expect(run('render', join(dir, 'missing.json'), '--out', join(dir, 'x.png'))).rejects.toThrow(
      /scene file '.*missing\.json' does not exist/,
    );
    await expect(
      run('sample', '-n', '2', '--out', dir, '--min-objects', '3', '--max-objects', '1'),
    ).rejects.toThrow(UserError);
    await expect(run('batch', '-n', '2', '--tasks', 'paint', '--out', join(dir, 'b.bin'))).rejects.toThrow(
      /unknown task 'paint'/,
    );
    // Option-level mistakes are commander's, reported with usage.
    await expect(run('edit', good, '--task', 'paint', '--out', dir)).rejects.toBeInstanceOf(CommanderError);
    expect(stderr).toMatch(/paint/);
  });

  it('lists classes and backgrounds', async () => {
    await run('list', '--json');
    const listing = JSON.parse(stdout) as {
      classes: { name: string }[];
      backgrounds: { name: string }[];
      tasks: string[];
    };
    expect(listing.classes.length).toBeGreaterThanOrEqual(40);
    expect(listing.classes.length).toBeLessThanOrEqual(80);
    expect(listing.backgrounds.map((b) => b.name)).toContain('wooden table');
    expect(listing.tasks).toContain('resize');
  });
});
