import { readFile, stat } from 'node:fs/promises';

import { describe, expect, it } from 'vitest';

import { ASSET_SOURCE, CATEGORIES, CLASS_NAMES, classColours, getClass } from '../../src/world/catalog.js';
import { getSprite } from '../../src/world/sprites.js';

describe('emoji assets', () => {
  it('are compact and attributed', async () => {
    const { size } = await stat('src/world/assets/emoji.json');
    expect(size).toBeLessThan(3 * 1024 * 1024);
    expect(ASSET_SOURCE).toMatchObject({
      name: 'Fluent Emoji',
      author: 'Microsoft Corporation',
      license: 'MIT',
    });
    const notice = await readFile('NOTICE', 'utf8');
    expect(notice).toMatch(/Fluent Emoji/);
    expect(notice).toMatch(/Copyright \(c\) Microsoft Corporation/);
    expect(notice).toMatch(/Permission is hereby granted, free of charge/);
  });

  it('define 40–80 distinct classes with caption words', () => {
    expect(CLASS_NAMES.length).toBeGreaterThanOrEqual(40);
    expect(CLASS_NAMES.length).toBeLessThanOrEqual(80);
    const icons = new Set<string>();
    for (const name of CLASS_NAMES) {
      const c = getClass(name);
      expect(name).toMatch(/^[a-z]+( [a-z]+)?$/);
      expect(c.plural).toMatch(/^[a-z]+( [a-z]+)?$/);
      expect(CATEGORIES).toContain(c.category);
      for (const v of Object.values(c.variants)) {
        expect(icons.has(v.icon)).toBe(false);
        icons.add(v.icon);
        expect(v.flat.startsWith('<svg ')).toBe(true);
      }
    }
    // Most classes allow a style edit.
    expect(CLASS_NAMES.filter((n) => getClass(n).styles.includes('colour')).length).toBeGreaterThan(
      CLASS_NAMES.length * 0.9,
    );
  });

  it('draw every colour visibly differently', async () => {
    for (const name of CLASS_NAMES.filter((n) => classColours(n).length > 1)) {
      for (const style of getClass(name).styles) {
        const sprites = await Promise.all(classColours(name).map((c) => getSprite(name, style, c, 32)));
        for (let a = 0; a < sprites.length; a++) {
          for (let b = a + 1; b < sprites.length; b++) {
            let opaque = 0;
            let changed = 0;
            for (let p = 0; p < 32 * 32; p++) {
              if (sprites[a].rgba[4 * p + 3] < 128) continue;
              opaque++;
              const d = [0, 1, 2].reduce(
                (s, k) => s + Math.abs(sprites[a].rgba[4 * p + k] - sprites[b].rgba[4 * p + k]),
                0,
              );
              if (d > 60) changed++;
            }
            expect(
              changed / opaque,
              `${name} ${style}: ${classColours(name)[a]} vs ${classColours(name)[b]}`,
            ).toBeGreaterThan(0.15);
          }
        }
      }
    }
  });

  it('rasterise at the requested size, straight alpha, cached', async () => {
    const a = await getSprite('cat', 'flat', undefined, 40);
    expect(a.size).toBe(40);
    expect(a.rgba.length).toBe(40 * 40 * 4);
    expect(await getSprite('cat', 'flat', undefined, 40)).toBe(a);
    expect(a.rgba[3]).toBe(0); // the corner is transparent padding
    expect(() => getSprite('cat', 'flat', undefined, 2)).toThrow(RangeError);
  });
});
