/**
 * Captions, referring expressions and structured facts for EmojiWorld scenes.
 *
 * Wording rules: objects are listed in drawing order, identical ones grouped ("two cats"); a colour is named
 * when it is not the artwork's own ("a green apple") or when one class appears in several colours ("a red apple
 * and a green apple"); the 3D "colour" artwork is called "glossy", flat artwork is not mentioned. Articles
 * follow pronunciation ("an apple", "a unicorn"); plurals come from the class table (mice, fish, cacti).
 */
import { getBackground } from './backgrounds.js';
import { getClass, type Category, type Style } from './catalog.js';
import { Rng } from './prng.js';
import type { Scene, SceneObject } from './scene.js';

/** Caption templates; `{objects}` is the object list, `{place}` the background phrase ("on the grass"). */
export const CAPTION_TEMPLATES: readonly string[] = [
  'a photo of {objects} {place}',
  'a picture of {objects} {place}',
  'an illustration of {objects} {place}',
  '{objects} {place}',
  'an image of {objects} {place}',
];

/** The same templates for a scene without objects; `{background}` is e.g. "grass", "a wooden table". */
const EMPTY_TEMPLATES: readonly string[] = [
  'a photo of {background}',
  'a picture of {background}',
  'an illustration of {background}',
  '{background}',
  'an image of {background}',
];

/** The word for the 3D-gradient artwork style in captions and instructions. */
export const STYLE_WORD: Readonly<Record<Style, string>> = { flat: 'flat', colour: 'glossy' };

const NUMBER_WORDS = ['zero', 'one', 'two', 'three', 'four', 'five'];

export interface ObjectFacts {
  class: string;
  category: Category;
  /** The effective colour word (the artwork's own when the spec has none), or null if the class has none. */
  colour: string | null;
  style: Style;
  flipX: boolean;
  /** Normalised centre and size, as in the spec. */
  x: number;
  y: number;
  scale: number;
  /** Indefinite noun phrase as the caption uses it, e.g. "a glossy green apple". */
  phrase: string;
}

/** What a judge (or a metric) needs to know about a scene, without parsing captions. */
export interface SceneFacts {
  background: string;
  /** "on the grass", "in the sky", … */
  backgroundPhrase: string;
  /** Class per object, in drawing order. */
  classes: string[];
  /** Objects per class. */
  counts: Record<string, number>;
  objects: ObjectFacts[];
}

export function sceneFacts(scene: Scene): SceneFacts {
  const counts: Record<string, number> = {};
  for (const o of scene.objects) counts[o.class] = (counts[o.class] ?? 0) + 1;
  return {
    background: scene.background.name,
    backgroundPhrase: getBackground(scene.background.name).phrase,
    classes: scene.objects.map((o) => o.class),
    counts,
    objects: scene.objects.map((o, i) => {
      const c = getClass(o.class);
      return {
        class: o.class,
        category: c.category,
        colour: effectiveColour(o),
        style: o.style,
        flipX: o.flipX,
        x: o.x,
        y: o.y,
        scale: o.scale,
        phrase: withArticle(descriptor(scene, i)),
      };
    }),
  };
}

/** The scene's caption with the template its seed picks (or template `template`). */
export function caption(scene: Scene, template?: number): string {
  const index = template ?? captionTemplateIndex(scene);
  if (!Number.isInteger(index) || index < 0 || index >= CAPTION_TEMPLATES.length) {
    throw new RangeError(`caption template must be 0–${CAPTION_TEMPLATES.length - 1}, got ${index}`);
  }
  const bg = getBackground(scene.background.name);
  if (scene.objects.length === 0) return EMPTY_TEMPLATES[index].replace('{background}', bg.standalone);
  return CAPTION_TEMPLATES[index].replace('{objects}', objectList(scene)).replace('{place}', bg.phrase);
}

/** Every template's caption of the scene (for text augmentation in training). */
export function allCaptions(scene: Scene): string[] {
  return CAPTION_TEMPLATES.map((_, i) => caption(scene, i));
}

/** The template a scene's seed selects; edits keep the seed, so source and target captions share a template. */
export function captionTemplateIndex(scene: Scene): number {
  return new Rng('caption', scene.seed).int(0, CAPTION_TEMPLATES.length - 1);
}

/** "a cat", "two apples and a dog", "a cat, an apple and a glossy dog". */
export function objectList(scene: Scene): string {
  return joinList(
    groups(scene).map(({ words, plural, count }) =>
      count === 1 ? withArticle(words) : `${NUMBER_WORDS[count]} ${plural}`,
    ),
  );
}

/** The objects as a definite list, for instructions: "the cat and the two apples". */
export function definiteObjectList(scene: Scene): string {
  return joinList(
    groups(scene).map(({ words, plural, count }) =>
      count === 1 ? `the ${words}` : `the ${NUMBER_WORDS[count]} ${plural}`,
    ),
  );
}

/**
 * A definite description that picks out object `index` among the scene's objects: "the cat", "the green apple",
 * "the glossy cat", or by position among look-alikes: "the cat on the left", "the apple at the top".
 */
export function referTo(scene: Scene, index: number): string {
  const target = scene.objects[index];
  if (target === undefined) throw new RangeError(`referTo: no object ${index}`);
  const c = getClass(target.class);
  const same = scene.objects.map((o, i) => ({ o, i })).filter(({ o }) => o.class === target.class);
  if (same.length === 1) return `the ${c.name}`;
  const colour = effectiveColour(target);
  const sameColour = same.filter(({ o }) => effectiveColour(o) === colour);
  const colourWord = colour !== null && sameColour.length < same.length ? `${colour} ` : '';
  if (colourWord !== '' && sameColour.length === 1) return `the ${colourWord}${c.name}`;
  const sameStyle = sameColour.filter(({ o }) => o.style === target.style);
  const styleWord = sameStyle.length < sameColour.length ? `${STYLE_WORD[target.style]} ` : '';
  if (styleWord !== '' && sameStyle.length === 1) return `the ${styleWord}${colourWord}${c.name}`;
  return `the ${styleWord}${colourWord}${c.name} ${positionAmong(sameStyle, index)}`;
}

/** "on the left", "in the middle", … — where `index` lies among look-alike objects. */
function positionAmong(group: readonly { o: SceneObject; i: number }[], index: number): string {
  const separated = (key: 'x' | 'y'): { o: SceneObject; i: number }[] | undefined => {
    const sorted = [...group].sort((a, b) => a.o[key] - b.o[key]);
    for (let k = 1; k < sorted.length; k++)
      if (sorted[k].o[key] - sorted[k - 1].o[key] < 0.08) return undefined;
    return sorted;
  };
  const byX = separated('x');
  if (byX !== undefined) {
    const rank = byX.findIndex(({ i }) => i === index);
    return rank === 0 ? 'on the left' : rank === byX.length - 1 ? 'on the right' : 'in the middle';
  }
  const byY = separated('y');
  if (byY !== undefined) {
    const rank = byY.findIndex(({ i }) => i === index);
    return rank === 0 ? 'at the top' : rank === byY.length - 1 ? 'at the bottom' : 'in the middle';
  }
  // Look-alikes piled on one spot: only drawing order tells them apart.
  const rank = group.findIndex(({ i }) => i === index);
  return rank === group.length - 1 ? 'in front' : rank === 0 ? 'at the back' : 'in the middle';
}

/** A coarse location word for a point, for instructions like "add a dog on the left". */
export function locationPhrase(x: number, y: number): string {
  const h = x < 0.38 ? 'left' : x > 0.62 ? 'right' : '';
  const v = y < 0.38 ? 'top' : y > 0.62 ? 'bottom' : '';
  if (h !== '' && v !== '') return `in the ${v} ${h} corner`;
  if (h !== '') return `on the ${h}`;
  if (v !== '') return `at the ${v}`;
  return 'in the middle';
}

/** The indefinite article for a phrase, by how its first word sounds. */
export function indefiniteArticle(phrase: string): 'a' | 'an' {
  const word = phrase.trim().toLowerCase();
  if (/^[0-9]/.test(word)) return /^(8|11|18)(\D|$)/.test(word) ? 'an' : 'a';
  if (/^(hour|honest|honou?r|heir)/.test(word)) return 'an';
  // Vowel letters that sound like a consonant ("you", "wuh").
  if (/^(uni|use|usu|uten|util|ur[aei]|eu|ew|one\b|once|ubiq|ukul)/.test(word)) return 'a';
  return /^[aeiou]/.test(word) ? 'an' : 'a';
}

export function withArticle(phrase: string): string {
  return `${indefiniteArticle(phrase)} ${phrase}`;
}

/** "A", "A and B", "A, B and C". */
export function joinList(items: readonly string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

/** The class's colour word for the object (its own colour when the spec names none), or null. */
export function effectiveColour(o: Pick<SceneObject, 'class' | 'colour'>): string | null {
  return o.colour ?? getClass(o.class).defaultColour;
}

/** Adjectives + noun for object `index`, as the caption shows it (no article). */
export function descriptor(scene: Scene, index: number): string {
  return descriptorWords(scene, index).words;
}

function descriptorWords(scene: Scene, index: number): { words: string; plural: string } {
  const o = scene.objects[index];
  const c = getClass(o.class);
  const colour = effectiveColour(o);
  const mixed = scene.objects.some((other) => other.class === o.class && effectiveColour(other) !== colour);
  const showColour = colour !== null && (colour !== c.defaultColour || mixed);
  const adjectives = [
    o.style === 'colour' ? STYLE_WORD.colour : '',
    showColour ? (colour as string) : '',
  ].filter((w) => w !== '');
  const prefix = adjectives.length > 0 ? `${adjectives.join(' ')} ` : '';
  return { words: `${prefix}${c.name}`, plural: `${prefix}${c.plural}` };
}

function groups(scene: Scene): { words: string; plural: string; count: number }[] {
  const out: { words: string; plural: string; count: number }[] = [];
  scene.objects.forEach((_, i) => {
    const d = descriptorWords(scene, i);
    const existing = out.find((g) => g.words === d.words);
    if (existing) existing.count++;
    else out.push({ ...d, count: 1 });
  });
  return out;
}
