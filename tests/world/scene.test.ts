import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { UserError } from '../../src/util/errors.js';
import { getClass } from '../../src/world/catalog.js';
import {
  boxOverlap,
  parseScene,
  readSceneFile,
  sampleScene,
  sceneToJson,
  type Scene,
} from '../../src/world/scene.js';
import { SPLIT_RANGES, splitOfSeed, splitSeed, splitSeeds } from '../../src/world/splits.js';

const valid = {
  version: 1,
  background: { name: 'grass', seed: 3 },
  objects: [{ class: 'cat', x: 0.3, y: 0.5, scale: 0.4 }],
};

function errorOf(input: unknown): string {
  try {
    parseScene(input, 'scene');
  } catch (error) {
    expect(error).toBeInstanceOf(UserError);
    return (error as Error).message;
  }
  throw new Error('expected a validation error');
}

describe('scene schema', () => {
  it('fills defaults', () => {
    const scene = parseScene(valid);
    expect(scene).toEqual({
      version: 1,
      seed: 0,
      width: 128,
      height: 128,
      background: { name: 'grass', seed: 3 },
      objects: [{ class: 'cat', style: 'flat', x: 0.3, y: 0.5, scale: 0.4, flipX: false }],
    });
  });

  it('drops an explicit default colour so equal scenes serialise equally', () => {
    const scene = parseScene({
      ...valid,
      objects: [{ class: 'apple', colour: 'red', x: 0.5, y: 0.5, scale: 0.3 }],
    });
    expect(scene.objects[0].colour).toBeUndefined();
    expect(parseScene(JSON.parse(sceneToJson(scene)))).toEqual(scene);
  });

  it('gives clear, located messages', () => {
    expect(errorOf({ ...valid, objects: [{ class: 'catt', x: 0.5, y: 0.5, scale: 0.3 }] })).toMatch(
      /^scene is invalid: objects\[0\]\.class: unknown class "catt" \(did you mean "cat"\?\)/,
    );
    expect(errorOf({ ...valid, objects: [{ class: 'cat', x: 1.5, y: 0.5, scale: 0.3 }] })).toBe(
      'scene is invalid: objects[0].x: x must be from 0 to 1',
    );
    expect(errorOf({ ...valid, version: undefined })).toMatch(/version is missing/);
    expect(errorOf({ ...valid, version: 2 })).toMatch(/unsupported scene version 2/);
    expect(errorOf({ ...valid, width: 32 })).toMatch(/width: width must be from 64 to 256 pixels/);
    expect(errorOf({ ...valid, background: { name: 'gras' } })).toMatch(
      /background\.name: unknown background "gras" \(did you mean "grass"\?\)/,
    );
    expect(
      errorOf({ ...valid, objects: [{ class: 'cat', x: 0.5, y: 0.5, scale: 0.3, flipx: true }] }),
    ).toMatch(/objects\[0\].*flipx/);
    expect(
      errorOf({ ...valid, objects: [{ class: 'cat', colour: 'blue', x: 0.5, y: 0.5, scale: 0.3 }] }),
    ).toMatch(/"cat" comes in one colour only/);
    expect(
      errorOf({ ...valid, objects: [{ class: 'apple', colour: 'blue', x: 0.5, y: 0.5, scale: 0.3 }] }),
    ).toMatch(/no colour "blue" \(it has red, green, yellow\)/);
    expect(errorOf({ ...valid, objects: Array(4).fill(valid.objects[0]) })).toMatch(/at most 3 objects/);
    expect(errorOf('nope')).toMatch(/^scene is invalid: /);
    // Several problems are reported together.
    expect(
      errorOf({ ...valid, seed: -1, objects: [{ class: 'cat', x: 'a', y: 0.5, scale: 0.3 }] }).split('; '),
    ).toHaveLength(2);
  });

  it('rejects a style the class has no artwork for', () => {
    expect(getClass('cupcake').styles).toEqual(['flat']);
    expect(
      errorOf({ ...valid, objects: [{ class: 'cupcake', style: 'colour', x: 0.5, y: 0.5, scale: 0.3 }] }),
    ).toMatch(/"cupcake" has no "colour" artwork/);
  });

  it('reads files with UserErrors naming the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'editkit-world-'));
    try {
      await writeFile(join(dir, 'bad.json'), '{ nope');
      await expect(readSceneFile(join(dir, 'bad.json'))).rejects.toThrow(
        /scene file '.*bad\.json' is not valid JSON/,
      );
      await expect(readSceneFile(join(dir, 'missing.json'))).rejects.toThrow(/does not exist/);
      await writeFile(join(dir, 'ok.json'), JSON.stringify(valid));
      expect((await readSceneFile(join(dir, 'ok.json'))).objects[0].class).toBe('cat');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('sampleScene', () => {
  it('is deterministic and valid', () => {
    for (let seed = 0; seed < 200; seed++) {
      const scene = sampleScene(seed);
      expect(sampleScene(seed)).toEqual(scene);
      expect(parseScene(JSON.parse(sceneToJson(scene)))).toEqual(scene);
      expect(scene.objects.length).toBeGreaterThanOrEqual(1);
      expect(scene.objects.length).toBeLessThanOrEqual(3);
      for (const o of scene.objects) {
        // Fully inside the image.
        expect(o.x - o.scale / 2).toBeGreaterThanOrEqual(-1e-3);
        expect(o.x + o.scale / 2).toBeLessThanOrEqual(1 + 1e-3);
        expect(o.y - o.scale / 2).toBeGreaterThanOrEqual(-1e-3);
        expect(o.y + o.scale / 2).toBeLessThanOrEqual(1 + 1e-3);
      }
    }
    expect(sampleScene(1)).not.toEqual(sampleScene(2));
  });

  it('keeps objects apart', () => {
    let pairs = 0;
    let heavy = 0;
    for (let seed = 0; seed < 300; seed++) {
      const { objects } = sampleScene(seed);
      for (let i = 0; i < objects.length; i++) {
        for (let j = i + 1; j < objects.length; j++) {
          pairs++;
          if (boxOverlap(objects[i], objects[j]) > 0.13) heavy++;
        }
      }
    }
    expect(pairs).toBeGreaterThan(100);
    expect(heavy / pairs).toBeLessThan(0.02);
  });

  it('honours options', () => {
    for (let seed = 0; seed < 30; seed++) {
      const s: Scene = sampleScene(seed, {
        width: 64,
        height: 96,
        minObjects: 2,
        maxObjects: 2,
        classes: ['cat', 'dog'],
        backgrounds: ['snow'],
      });
      expect(s.width).toBe(64);
      expect(s.height).toBe(96);
      expect(s.objects).toHaveLength(2);
      expect(s.background.name).toBe('snow');
      for (const o of s.objects) expect(['cat', 'dog']).toContain(o.class);
    }
    expect(sampleScene(3, { minObjects: 0, maxObjects: 0 }).objects).toEqual([]);
    expect(() => sampleScene(1, { classes: ['catt'] })).toThrow(/did you mean "cat"/);
    expect(() => sampleScene(1, { minObjects: 2, maxObjects: 1 })).toThrow(UserError);
  });
});

describe('splits', () => {
  it('split the seed space into disjoint train and held-out ranges', () => {
    expect(SPLIT_RANGES.train.end).toBe(SPLIT_RANGES.heldout.start);
    expect(splitOfSeed(0)).toBe('train');
    expect(splitOfSeed(splitSeed('heldout', 0))).toBe('heldout');
    expect(splitOfSeed(splitSeed('train', 2 ** 31 - 1))).toBe('train');
    expect(splitSeeds('heldout', 3, 10)).toEqual([2 ** 31 + 10, 2 ** 31 + 11, 2 ** 31 + 12]);
    expect(() => splitSeed('train', 2 ** 31)).toThrow(/outside the train split/);
    expect(() => splitOfSeed(2 ** 32)).toThrow(RangeError);
  });
});
