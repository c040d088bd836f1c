#!/usr/bin/env node
/**
 * Builds src/world/assets/emoji.json, EmojiWorld's committed artwork, from the Fluent Emoji icon sets
 * (Microsoft, MIT; see NOTICE).
 *
 *   node scripts/world/extract_emoji.mjs [--max-colour-bytes N] [--out PATH]
 *
 * The two @iconify-json packages are devDependencies (about 110 MB together); the renderer reads only the
 * compact file this script writes, so a runtime install never needs them. The class table below is the single
 * place where classes, their caption nouns and their colour options are decided: the TypeScript side reads it
 * back from the JSON rather than keeping a second copy that could drift.
 *
 * Output is deterministic (sorted keys come from the table order, no timestamps) so re-running the script on
 * the same package versions yields a byte-identical file, and a diff of the asset shows only real changes.
 */
import { Buffer } from 'node:buffer';
import { createRequire } from 'node:module';
import process from 'node:process';
import { writeFileSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
// Colour (3D) artwork is 10–40 KB per icon; beyond this the class keeps only its flat style, which keeps the
// asset under ~3 MB. Raise it to get more style-change classes at the cost of size.
const MAX_COLOUR_BYTES = Number(option('--max-colour-bytes', '40000'));
const OUT = resolve(root, option('--out', 'src/world/assets/emoji.json'));

const utils = require('@iconify/utils');
const flatSet = require('@iconify-json/fluent-emoji-flat/icons.json');
const colourSet = require('@iconify-json/fluent-emoji/icons.json');
const flatPkg = require('@iconify-json/fluent-emoji-flat/package.json');
const colourPkg = require('@iconify-json/fluent-emoji/package.json');

/**
 * Target colours for recoloured variants (the key is the caption word): hue in degrees, and the saturation and
 * lightness the recoloured body should have on average. Absolute targets rather than a bare hue rotation,
 * because rotating a red body to yellow keeps red's darkness and gives olive, and a greyish purple umbrella
 * rotated to red looks brown.
 */
const TARGETS = {
  red: { hue: 2, sat: 0.85, light: 0.5 },
  orange: { hue: 28, sat: 0.95, light: 0.55 },
  yellow: { hue: 50, sat: 0.95, light: 0.58 },
  green: { hue: 110, sat: 0.65, light: 0.45 },
  blue: { hue: 214, sat: 0.8, light: 0.52 },
  purple: { hue: 275, sat: 0.6, light: 0.5 },
  pink: { hue: 330, sat: 0.8, light: 0.68 },
};

/**
 * noun/plural: caption words; icon: the Fluent id (same id in both sets). colours: the class's default colour
 * word first. An entry { icon } is separate artwork (a red and a green apple are different emoji); an entry
 * { hue } recolours artwork (the default, or `from`; see src/world/recolour.ts): SVG colours whose hue lies
 * within `band` degrees of `base` move to the named target colour, so the body changes colour and wheels,
 * eyes and outlines do not.
 */
const CLASSES = [
  // fruit
  {
    name: 'apple',
    category: 'fruit',
    icon: 'red-apple',
    colours: { red: {}, green: { icon: 'green-apple' }, yellow: { from: 'green', hue: 'yellow' } },
    base: { red: 358, green: 95 },
    band: 30,
  },
  { name: 'pear', category: 'fruit', icon: 'pear' },
  { name: 'banana', category: 'fruit', icon: 'banana' },
  { name: 'strawberry', category: 'fruit', plural: 'strawberries', icon: 'strawberry' },
  { name: 'lemon', category: 'fruit', icon: 'lemon' },
  { name: 'orange', category: 'fruit', icon: 'tangerine' },
  { name: 'watermelon', category: 'fruit', icon: 'watermelon' },
  { name: 'pineapple', category: 'fruit', icon: 'pineapple' },
  { name: 'peach', category: 'fruit', plural: 'peaches', icon: 'peach' },
  { name: 'kiwi', category: 'fruit', icon: 'kiwi-fruit' },
  // vegetables
  { name: 'carrot', category: 'vegetable', icon: 'carrot' },
  { name: 'tomato', category: 'vegetable', plural: 'tomatoes', icon: 'tomato' },
  { name: 'eggplant', category: 'vegetable', icon: 'eggplant' },
  { name: 'bell pepper', category: 'vegetable', icon: 'bell-pepper' },
  { name: 'chili pepper', category: 'vegetable', icon: 'hot-pepper' },
  { name: 'mushroom', category: 'vegetable', icon: 'mushroom' },
  { name: 'potato', category: 'vegetable', plural: 'potatoes', icon: 'potato' },
  // food
  { name: 'donut', category: 'food', icon: 'doughnut' },
  { name: 'croissant', category: 'food', icon: 'croissant' },
  { name: 'hamburger', category: 'food', icon: 'hamburger' },
  { name: 'cupcake', category: 'food', icon: 'cupcake' },
  { name: 'ice cream', category: 'food', plural: 'ice creams', icon: 'ice-cream' },
  { name: 'pizza slice', category: 'food', icon: 'pizza' },
  // animals
  { name: 'cat', category: 'animal', icon: 'cat' },
  { name: 'dog', category: 'animal', icon: 'dog' },
  { name: 'rabbit', category: 'animal', icon: 'rabbit' },
  { name: 'pig', category: 'animal', icon: 'pig' },
  { name: 'cow', category: 'animal', icon: 'cow' },
  { name: 'horse', category: 'animal', icon: 'horse' },
  { name: 'elephant', category: 'animal', icon: 'elephant' },
  { name: 'giraffe', category: 'animal', icon: 'giraffe' },
  { name: 'zebra', category: 'animal', icon: 'zebra' },
  { name: 'turtle', category: 'animal', icon: 'turtle' },
  {
    name: 'fish',
    category: 'animal',
    plural: 'fish',
    icon: 'fish',
    colours: { blue: {}, orange: { hue: 'orange' }, purple: { hue: 'purple' } },
    base: { blue: 205 },
    band: 35,
  },
  { name: 'crab', category: 'animal', icon: 'crab' },
  { name: 'octopus', category: 'animal', plural: 'octopuses', icon: 'octopus' },
  { name: 'dolphin', category: 'animal', icon: 'dolphin' },
  { name: 'whale', category: 'animal', icon: 'spouting-whale' },
  {
    name: 'bird',
    category: 'animal',
    icon: 'bird',
    colours: { red: {}, blue: { hue: 'blue' }, yellow: { hue: 'yellow' } },
    base: { red: 350 },
    band: 30,
  },
  { name: 'penguin', category: 'animal', icon: 'penguin' },
  { name: 'duck', category: 'animal', icon: 'duck' },
  { name: 'owl', category: 'animal', icon: 'owl' },
  {
    name: 'butterfly',
    category: 'animal',
    plural: 'butterflies',
    icon: 'butterfly',
    colours: { orange: {}, blue: { hue: 'blue' }, purple: { hue: 'purple' } },
    base: { orange: 20 },
    band: 25,
  },
  { name: 'bee', category: 'animal', icon: 'honeybee' },
  { name: 'ladybug', category: 'animal', icon: 'lady-beetle' },
  { name: 'frog', category: 'animal', icon: 'frog' },
  // vehicles
  {
    name: 'car',
    category: 'vehicle',
    icon: 'automobile',
    colours: { red: {}, blue: { hue: 'blue' }, green: { hue: 'green' }, yellow: { hue: 'yellow' } },
    base: { red: 358 },
    band: 25,
  },
  { name: 'taxi', category: 'vehicle', icon: 'taxi' },
  { name: 'bus', category: 'vehicle', plural: 'buses', icon: 'bus' },
  { name: 'bicycle', category: 'vehicle', icon: 'bicycle' },
  { name: 'airplane', category: 'vehicle', icon: 'airplane' },
  { name: 'rocket', category: 'vehicle', icon: 'rocket' },
  { name: 'sailboat', category: 'vehicle', icon: 'sailboat' },
  {
    name: 'tractor',
    category: 'vehicle',
    icon: 'tractor',
    colours: { green: {}, red: { hue: 'red' }, blue: { hue: 'blue' } },
    base: { green: 140 },
    band: 35,
  },
  { name: 'fire engine', category: 'vehicle', icon: 'fire-engine' },
  { name: 'helicopter', category: 'vehicle', icon: 'helicopter' },
  { name: 'train', category: 'vehicle', icon: 'locomotive' },
  // household objects and toys
  { name: 'teddy bear', category: 'object', icon: 'teddy-bear' },
  {
    name: 'umbrella',
    category: 'object',
    icon: 'umbrella',
    colours: { purple: {}, red: { hue: 'red' }, blue: { hue: 'blue' }, green: { hue: 'green' } },
    base: { purple: 265 },
    band: 30,
  },
  { name: 'chair', category: 'object', icon: 'chair' },
  { name: 'alarm clock', category: 'object', icon: 'alarm-clock' },
  { name: 'key', category: 'object', icon: 'key' },
  { name: 'light bulb', category: 'object', icon: 'light-bulb' },
  {
    name: 'balloon',
    category: 'object',
    icon: 'balloon',
    colours: {
      red: {},
      blue: { hue: 'blue' },
      green: { hue: 'green' },
      yellow: { hue: 'yellow' },
      purple: { hue: 'purple' },
    },
    base: { red: 355 },
    band: 30,
  },
  { name: 'gift', category: 'object', icon: 'wrapped-gift' },
  {
    name: 'book',
    category: 'object',
    icon: 'closed-book',
    colours: {
      red: {},
      green: { icon: 'green-book' },
      blue: { icon: 'blue-book' },
      orange: { icon: 'orange-book' },
    },
  },
  { name: 'guitar', category: 'object', icon: 'guitar' },
  { name: 'soccer ball', category: 'object', icon: 'soccer-ball' },
  { name: 'basketball', category: 'object', icon: 'basketball' },
  {
    name: 'backpack',
    category: 'object',
    icon: 'backpack',
    colours: { red: {}, blue: { hue: 'blue' }, green: { hue: 'green' }, yellow: { hue: 'yellow' } },
    base: { red: 352 },
    band: 30,
  },
  { name: 'kite', category: 'object', icon: 'kite' },
  // plants
  { name: 'potted plant', category: 'plant', icon: 'potted-plant' },
  { name: 'cactus', category: 'plant', plural: 'cacti', icon: 'cactus' },
  { name: 'sunflower', category: 'plant', icon: 'sunflower' },
  {
    name: 'tulip',
    category: 'plant',
    icon: 'tulip',
    colours: { pink: {}, red: { hue: 'red' }, yellow: { hue: 'yellow' }, purple: { hue: 'purple' } },
    base: { pink: 335 },
    band: 30,
  },
  {
    name: 'rose',
    category: 'plant',
    icon: 'rose',
    colours: { red: {}, pink: { hue: 'pink' }, yellow: { hue: 'yellow' } },
    base: { red: 355 },
    band: 25,
  },
  { name: 'tree', category: 'plant', icon: 'deciduous-tree' },
  { name: 'palm tree', category: 'plant', icon: 'palm-tree' },
];

function svgOf(set, id) {
  const data = utils.getIconData(set, id);
  if (!data) throw new Error(`icon '${id}' is missing from ${set.prefix}`);
  // viewBox only, no width/height: the renderer sets the pixel size per sprite.
  const { attributes, body } = utils.iconToSVG(data);
  // iconify ids are random per build; renaming them to short stable ones keeps the asset deterministic and
  // smaller. Each SVG is rasterised on its own, so ids only need to be unique within one icon.
  let counter = 0;
  const ids = new Map();
  const clean = body
    .replace(/\sid="([^"]+)"/g, (_, old) => {
      if (!ids.has(old)) ids.set(old, `g${(counter++).toString(36)}`);
      return ` id="${ids.get(old)}"`;
    })
    .replace(/url\(#([^)]+)\)/g, (whole, old) => (ids.has(old) ? `url(#${ids.get(old)})` : whole))
    .replace(/xlink:href="#([^"]+)"|href="#([^"]+)"/g, (whole, a, b) => {
      const old = a ?? b;
      return ids.has(old) ? whole.replace(old, ids.get(old)) : whole;
    });
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="${attributes.viewBox}">${clean}</svg>`;
}

function artwork(icon, keepColour) {
  const flat = svgOf(flatSet, icon);
  let colour;
  if (keepColour && colourSet.icons[icon]) {
    const svg = svgOf(colourSet, icon);
    if (Buffer.byteLength(svg) <= MAX_COLOUR_BYTES) colour = svg;
  }
  return colour === undefined ? { icon, flat } : { icon, flat, colour };
}

const classes = {};
const dropped = [];
for (const spec of CLASSES) {
  const plural = spec.plural ?? `${spec.name}s`;
  const variants = {};
  const colours = {};
  const entries = Object.entries(spec.colours ?? {});
  const defaultColour = entries.length > 0 ? entries[0][0] : null;
  const variantKey = (colour) => colour ?? 'default';
  variants[variantKey(defaultColour)] = artwork(spec.icon, true);
  for (const [colour, how] of entries) {
    if (how.icon) variants[colour] = artwork(how.icon, true);
  }
  // A class keeps the colour style only if every variant has it, so a style edit never has to ask which
  // colours allow it.
  const hasColourStyle = Object.values(variants).every((v) => v.colour !== undefined);
  if (!hasColourStyle) {
    dropped.push(spec.name);
    for (const v of Object.values(variants)) delete v.colour;
  }
  for (const [colour, how] of entries) {
    if (how.hue) {
      const from = how.from ?? defaultColour;
      const base = spec.base?.[from];
      if (base === undefined) throw new Error(`${spec.name}: colour '${colour}' needs base.${from}`);
      const target = TARGETS[how.hue];
      colours[colour] = {
        variant: from,
        recolour: { from: base, band: spec.band ?? 30, to: target.hue, sat: target.sat, light: target.light },
      };
    } else {
      colours[colour] = { variant: variantKey(colour) };
    }
  }
  classes[spec.name] = {
    category: spec.category,
    plural,
    defaultColour,
    colours,
    variants,
  };
}

const out = {
  format: 1,
  source: {
    name: 'Fluent Emoji',
    author: 'Microsoft Corporation',
    license: 'MIT',
    url: 'https://github.com/microsoft/fluentui-emoji',
    packages: {
      flat: `${flatPkg.name}@${flatPkg.version}`,
      colour: `${colourPkg.name}@${colourPkg.version}`,
    },
    maxColourBytes: MAX_COLOUR_BYTES,
  },
  classes,
};
const text = `${JSON.stringify(out)}\n`;
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(OUT, text);
const size = Buffer.byteLength(text);
process.stderr.write(
  `wrote ${OUT}: ${Object.keys(classes).length} classes, ${(size / 1024).toFixed(0)} KiB` +
    (dropped.length
      ? `; flat only (colour artwork over ${MAX_COLOUR_BYTES} bytes): ${dropped.join(', ')}`
      : '') +
    '\n',
);
