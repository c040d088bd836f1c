import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { BACKGROUND_NAMES } from '../../src/world/backgrounds.js';
import { CLASS_NAMES } from '../../src/world/catalog.js';
import { planEdit } from '../../src/world/edits.js';
import { sampleScene } from '../../src/world/scene.js';
import { WORLD_SUBSETS, modelWorldSubset, resolveWorldSubset } from '../../src/world/subsets.js';

describe('world subsets', () => {
  it('name only classes and backgrounds of the world', () => {
    for (const subset of Object.values(WORLD_SUBSETS)) {
      for (const c of subset.scene.classes ?? []) expect(CLASS_NAMES).toContain(c);
      for (const b of subset.scene.backgrounds ?? []) expect(BACKGROUND_NAMES).toContain(b);
    }
  });

  it('core scenes draw objects large enough to recognise at 64 px (median side ≥ 25 px with two objects)', () => {
    const sides: number[] = [];
    for (let seed = 0; seed < 300; seed++) {
      const scene = sampleScene(seed, WORLD_SUBSETS.core.scene);
      if (scene.objects.length === 2) sides.push(...scene.objects.map((o) => o.scale * scene.width));
    }
    sides.sort((a, b) => a - b);
    expect(sides.length).toBeGreaterThan(100);
    expect(sides[Math.floor(sides.length / 2)]).toBeGreaterThanOrEqual(25);
  });

  it('an edit vocabulary limits replacements, additions and new backgrounds', () => {
    const vocabulary = { classes: ['cat', 'pig'], backgrounds: ['grass', 'plain purple'] };
    const scene = sampleScene(3, { classes: ['cat'], backgrounds: ['grass'], maxObjects: 1 });
    for (let seed = 0; seed < 20; seed++) {
      expect(planEdit(scene, 'replace', seed, vocabulary).target.objects[0].class).toBe('pig');
      expect(planEdit(scene, 'background', seed, vocabulary).target.background.name).toBe('plain purple');
      const added = planEdit(scene, 'add', seed, vocabulary).target.objects.at(-1);
      expect(vocabulary.classes).toContain(added?.class);
    }
  });

  it("a model's subset comes from its training record; unknown names are user errors", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'editkit-subset-'));
    try {
      expect(modelWorldSubset(dir).name).toBe('full');
      await writeFile(join(dir, 'editkit_training.json'), JSON.stringify({ config: { world: 'core' } }));
      expect(modelWorldSubset(dir).name).toBe('core');
      expect(resolveWorldSubset(undefined, dir).name).toBe('core');
      expect(resolveWorldSubset('full', dir).name).toBe('full');
      expect(() => resolveWorldSubset('nope', dir)).toThrow(/unknown subset 'nope'/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
