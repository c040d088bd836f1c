/**
 * EmojiWorld's object classes, read from the committed asset src/world/assets/emoji.json (written by
 * scripts/world/extract_emoji.mjs from Fluent Emoji, MIT, see NOTICE).
 *
 * The JSON is imported rather than read from disk so that tsc copies it into dist/ next to the code and the
 * published package needs no separate asset step.
 */
import { z } from 'zod';

import rawAssets from './assets/emoji.json' with { type: 'json' };

/** The two artwork styles of Fluent Emoji: "flat" (solid fills) and "colour" (3D-like gradients). */
export const STYLES = ['flat', 'colour'] as const;
export type Style = (typeof STYLES)[number];

export const CATEGORIES = ['fruit', 'vegetable', 'food', 'animal', 'vehicle', 'object', 'plant'] as const;
export type Category = (typeof CATEGORIES)[number];

/** A recolouring of artwork (see recolour.ts). */
export interface Recolour {
  /** Centre of the hue band that is recoloured, degrees. */
  from: number;
  /** Half-width of that band, degrees. */
  band: number;
  /** Target hue, degrees. */
  to: number;
  /** Target mean saturation and lightness (HSL, 0–1) of the recoloured colours. */
  sat: number;
  light: number;
}

export interface ArtworkVariant {
  /** The Fluent Emoji icon id (same in both sets). */
  icon: string;
  flat: string;
  colour?: string;
}

export interface ColourOption {
  /** Key into {@link WorldClass.variants}. */
  variant: string;
  recolour?: Recolour;
}

export interface WorldClass {
  /** The class name, which is also its singular caption noun ("teddy bear"). */
  name: string;
  plural: string;
  category: Category;
  /** The colour word of the unmodified artwork, or null for classes without colour options. */
  defaultColour: string | null;
  /** Colour word → how to draw it; empty for classes without colour options. */
  colours: Readonly<Record<string, ColourOption>>;
  /** Artwork by variant ('default' when the class has no colour options). */
  variants: Readonly<Record<string, ArtworkVariant>>;
  /** Styles every variant of the class has ('flat' always). */
  styles: readonly Style[];
}

const recolourSchema = z.object({
  from: z.number(),
  band: z.number(),
  to: z.number(),
  sat: z.number(),
  light: z.number(),
});
const assetSchema = z.object({
  format: z.literal(1),
  source: z.object({ name: z.string(), author: z.string(), license: z.string(), url: z.string() }).loose(),
  classes: z.record(
    z.string(),
    z.object({
      category: z.enum(CATEGORIES),
      plural: z.string(),
      defaultColour: z.string().nullable(),
      colours: z.record(z.string(), z.object({ variant: z.string(), recolour: recolourSchema.optional() })),
      variants: z.record(
        z.string(),
        z.object({ icon: z.string(), flat: z.string(), colour: z.string().optional() }),
      ),
    }),
  ),
});

export type AssetSource = z.infer<typeof assetSchema>['source'];

function load(): { source: AssetSource; classes: Map<string, WorldClass> } {
  const assets = assetSchema.parse(rawAssets);
  const classes = new Map<string, WorldClass>();
  for (const [name, c] of Object.entries(assets.classes)) {
    for (const option of Object.values(c.colours)) {
      if (!(option.variant in c.variants))
        throw new Error(`emoji.json: class '${name}' colour refers to a missing variant`);
    }
    const variants = Object.values(c.variants);
    const styles: Style[] = variants.every((v) => v.colour !== undefined) ? ['flat', 'colour'] : ['flat'];
    classes.set(name, { name, ...c, styles });
  }
  return { source: assets.source, classes };
}

const loaded = load();

/** Where the artwork comes from, for attribution in generated datasets. */
export const ASSET_SOURCE: AssetSource = loaded.source;

/** All class names, in the asset's order (grouped by category). */
export const CLASS_NAMES: readonly string[] = Object.freeze([...loaded.classes.keys()]);

export function isClassName(name: string): boolean {
  return loaded.classes.has(name);
}

/** The class named `name`; throws for unknown names (validate scenes with scene.ts first). */
export function getClass(name: string): WorldClass {
  const c = loaded.classes.get(name);
  if (c === undefined) throw new RangeError(`unknown EmojiWorld class '${name}'`);
  return c;
}

/** Colour words a class can be drawn in, default first (empty when it has no colour options). */
export function classColours(name: string): readonly string[] {
  return Object.keys(getClass(name).colours);
}

/** The variant and recolouring used to draw `name` in `colour` (undefined = the default colour). */
export function resolveColour(
  name: string,
  colour: string | undefined,
): { variant: ArtworkVariant; recolour?: Recolour } {
  const c = getClass(name);
  const word = colour ?? c.defaultColour;
  if (word === null) return { variant: c.variants.default };
  const option = c.colours[word];
  if (option === undefined) throw new RangeError(`class '${name}' has no colour '${word}'`);
  return { variant: c.variants[option.variant], recolour: option.recolour };
}
