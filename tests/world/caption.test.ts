import { describe, expect, it } from 'vitest';

import {
  CAPTION_TEMPLATES,
  allCaptions,
  caption,
  definiteObjectList,
  indefiniteArticle,
  joinList,
  objectList,
  referTo,
  sceneFacts,
} from '../../src/world/caption.js';
import { BACKGROUND_NAMES, getBackground } from '../../src/world/backgrounds.js';
import { CLASS_NAMES, getClass } from '../../src/world/catalog.js';
import { parseScene, sampleScene, type Scene } from '../../src/world/scene.js';

type Obj = { class: string; x?: number; y?: number; style?: 'flat' | 'colour'; colour?: string };

function scene(objects: Obj[], background = 'grass'): Scene {
  return parseScene({
    version: 1,
    background: { name: background, seed: 0 },
    objects: objects.map((o, i) => ({ x: 0.2 + 0.3 * i, y: 0.5, scale: 0.25, ...o })),
  });
}

describe('articles and lists', () => {
  it.each([
    ['apple', 'an'],
    ['orange', 'an'],
    ['owl', 'an'],
    ['elephant', 'an'],
    ['umbrella', 'an'],
    ['ice cream', 'an'],
    ['unicorn', 'a'],
    ['useful thing', 'a'],
    ['european car', 'a'],
    ['hour', 'an'],
    ['glossy apple', 'a'],
    ['yellow apple', 'a'],
    ['8-ball', 'an'],
    ['3D cat', 'a'],
    ['horse', 'a'],
  ])('%s → %s', (word, article) => {
    expect(indefiniteArticle(word)).toBe(article);
  });

  it('joins lists without an Oxford comma', () => {
    expect(joinList(['a'])).toBe('a');
    expect(joinList(['a', 'b'])).toBe('a and b');
    expect(joinList(['a', 'b', 'c'])).toBe('a, b and c');
  });
});

describe('captions', () => {
  it('groups, pluralises and names colours only when needed', () => {
    expect(objectList(scene([{ class: 'cat' }, { class: 'apple' }]))).toBe('a cat and an apple');
    expect(objectList(scene([{ class: 'apple' }, { class: 'dog' }, { class: 'apple' }]))).toBe(
      'two apples and a dog',
    );
    expect(objectList(scene([{ class: 'fish' }, { class: 'fish' }, { class: 'fish' }]))).toBe('three fish');
    expect(objectList(scene([{ class: 'cactus' }, { class: 'cactus' }]))).toBe('two cacti');
    expect(objectList(scene([{ class: 'strawberry' }, { class: 'strawberry' }, { class: 'bus' }]))).toBe(
      'two strawberries and a bus',
    );
    expect(objectList(scene([{ class: 'apple', colour: 'green' }]))).toBe('a green apple');
    expect(objectList(scene([{ class: 'apple' }, { class: 'apple', colour: 'green' }]))).toBe(
      'a red apple and a green apple',
    );
    expect(objectList(scene([{ class: 'fish', colour: 'orange' }]))).toBe('an orange fish');
    expect(objectList(scene([{ class: 'orange' }, { class: 'ice cream', style: 'colour' }]))).toBe(
      'an orange and a glossy ice cream',
    );
    expect(objectList(scene([{ class: 'cat', style: 'colour' }, { class: 'cat' }, { class: 'owl' }]))).toBe(
      'a glossy cat, a cat and an owl',
    );
    expect(objectList(scene([{ class: 'apple', style: 'colour', colour: 'green' }]))).toBe(
      'a glossy green apple',
    );
  });

  it('uses each background phrase naturally', () => {
    const phrases = Object.fromEntries(BACKGROUND_NAMES.map((b) => [b, getBackground(b).phrase]));
    expect(phrases).toMatchObject({
      grass: 'on the grass',
      sand: 'on the sand',
      snow: 'in the snow',
      water: 'on the water',
      sky: 'in the sky',
      'wooden table': 'on a wooden table',
      'plain blue': 'on a plain blue background',
    });
    const all = allCaptions(scene([{ class: 'cat' }, { class: 'apple' }], 'snow'));
    expect(all).toContain('a photo of a cat and an apple in the snow');
    expect(all).toContain('a cat and an apple in the snow');
    expect(allCaptions(scene([], 'plain blue'))).toContain('a photo of a plain blue background');
    expect(allCaptions(scene([], 'sky'))).toContain('a photo of the sky');
  });

  it('picks the template from the scene seed, deterministically', () => {
    const base = scene([{ class: 'dog' }]);
    const seen = new Set<string>();
    for (let seed = 0; seed < 40; seed++) {
      const s = { ...base, seed };
      expect(caption(s)).toBe(caption({ ...s }));
      seen.add(caption(s));
    }
    expect(seen.size).toBe(CAPTION_TEMPLATES.length);
  });

  it('is grammatical for every class alone, in pairs and as a plural', () => {
    for (const name of CLASS_NAMES) {
      const one = objectList(scene([{ class: name }]));
      expect(one).toMatch(/^(a|an) [a-z ]+$/);
      expect(one.startsWith('an ')).toBe(/^[aeiou]/.test(name));
      const two = objectList(scene([{ class: name }, { class: name }]));
      expect(two).toBe(`two ${getClass(name).plural}`);
    }
  });

  it('exposes structured facts', () => {
    const facts = sceneFacts(
      scene([{ class: 'apple', colour: 'green' }, { class: 'cat' }, { class: 'cat' }], 'sand'),
    );
    expect(facts.background).toBe('sand');
    expect(facts.backgroundPhrase).toBe('on the sand');
    expect(facts.classes).toEqual(['apple', 'cat', 'cat']);
    expect(facts.counts).toEqual({ apple: 1, cat: 2 });
    expect(facts.objects[0]).toMatchObject({
      class: 'apple',
      category: 'fruit',
      colour: 'green',
      style: 'flat',
      phrase: 'a green apple',
    });
    expect(facts.objects[1].colour).toBeNull();
  });
});

describe('referring expressions', () => {
  it('uses the shortest description that picks the object out', () => {
    const s = scene([{ class: 'cat' }, { class: 'apple' }]);
    expect(referTo(s, 0)).toBe('the cat');
    const colours = scene([{ class: 'apple' }, { class: 'apple', colour: 'green' }]);
    expect(referTo(colours, 0)).toBe('the red apple');
    expect(referTo(colours, 1)).toBe('the green apple');
    const styles = scene([{ class: 'dog', style: 'colour' }, { class: 'dog' }]);
    expect(referTo(styles, 0)).toBe('the glossy dog');
    expect(referTo(styles, 1)).toBe('the flat dog');
  });

  it('falls back to position among look-alikes', () => {
    const row = scene([
      { class: 'cat', x: 0.8 },
      { class: 'cat', x: 0.2 },
      { class: 'cat', x: 0.5 },
    ]);
    expect([0, 1, 2].map((i) => referTo(row, i))).toEqual([
      'the cat on the right',
      'the cat on the left',
      'the cat in the middle',
    ]);
    const column = scene([
      { class: 'dog', x: 0.5, y: 0.8 },
      { class: 'dog', x: 0.52, y: 0.2 },
    ]);
    expect([0, 1].map((i) => referTo(column, i))).toEqual(['the dog at the bottom', 'the dog at the top']);
    const mixed = scene([
      { class: 'apple', x: 0.2 },
      { class: 'apple', x: 0.5 },
      { class: 'apple', x: 0.8, colour: 'green' },
    ]);
    expect(referTo(mixed, 1)).toBe('the red apple on the right');
    expect(referTo(mixed, 2)).toBe('the green apple');
  });

  it('lists objects definitely for instructions', () => {
    expect(definiteObjectList(scene([{ class: 'cat' }, { class: 'apple' }, { class: 'apple' }]))).toBe(
      'the cat and the two apples',
    );
  });

  it('never produces an empty or undefined word for sampled scenes', () => {
    for (let seed = 0; seed < 100; seed++) {
      const s = sampleScene(seed);
      expect(caption(s)).not.toMatch(/undefined|null|\s{2}|^\s|\s$/);
      s.objects.forEach((_, i) => expect(referTo(s, i)).toMatch(/^the [a-z ]+$/));
    }
  });
});
