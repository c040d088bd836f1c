/**
 * Reading and making node attributes.
 *
 * ONNX Runtime checks attribute types strictly (Gemm's `alpha` given as INT fails to load), and a JS number does
 * not say whether it is an int or a float. {@link makeAttribute} therefore types integral numbers as INT except
 * for attribute names that the ONNX operator set only ever defines as floats ({@link FLOAT_ATTRIBUTES});
 * {@link floatAttr} and {@link intAttr} force a type where that guess is wrong.
 */
import { onnx, toNumber, type AttributeProto, type NodeProto, type TensorProto } from './onnx_io.js';

const T = onnx.AttributeProto.AttributeType;

/** Attribute names that are FLOAT/FLOATS wherever the standard operator set uses them. */
export const FLOAT_ATTRIBUTES: ReadonlySet<string> = new Set([
  'alpha',
  'beta',
  'gamma',
  'epsilon',
  'bias',
  'lambd',
  'scale',
  'extrapolation_value',
  'cubic_coeff_a',
  'momentum',
  'spatial_scale',
  'ratio',
  'threshold',
  'seed',
  'mean',
  'high',
  'low',
  'min',
  'max',
  'value_float',
  'value_floats',
  'scales',
]);

/** Forces FLOAT (or FLOATS) for an integral value. */
export interface FloatAttr {
  readonly kind: 'float';
  readonly value: number | readonly number[];
}
/** Forces INT (or INTS). */
export interface IntAttr {
  readonly kind: 'int';
  readonly value: number | readonly number[];
}

export function floatAttr(value: number | readonly number[]): FloatAttr {
  return { kind: 'float', value };
}
export function intAttr(value: number | readonly number[]): IntAttr {
  return { kind: 'int', value };
}

export type AttrValue =
  number | string | readonly number[] | readonly string[] | TensorProto | FloatAttr | IntAttr;
/** Attributes for a new node: a name → value record, or attribute protos copied from another node. */
export type Attrs = Readonly<Record<string, AttrValue | undefined>> | readonly AttributeProto[];

function isTensor(value: unknown): value is TensorProto {
  return typeof value === 'object' && value !== null && 'dataType' in value && 'dims' in value;
}

export function makeAttribute(name: string, value: AttrValue): AttributeProto {
  if (typeof value === 'string')
    return onnx.AttributeProto.create({ name, type: T.STRING, s: new TextEncoder().encode(value) });
  if (typeof value === 'number') {
    return Number.isInteger(value) && !FLOAT_ATTRIBUTES.has(name)
      ? onnx.AttributeProto.create({ name, type: T.INT, i: value })
      : onnx.AttributeProto.create({ name, type: T.FLOAT, f: value });
  }
  if (isTensor(value)) return onnx.AttributeProto.create({ name, type: T.TENSOR, t: value });
  if ('kind' in value) {
    const v = value.value;
    if (value.kind === 'float') {
      return typeof v === 'number'
        ? onnx.AttributeProto.create({ name, type: T.FLOAT, f: v })
        : onnx.AttributeProto.create({ name, type: T.FLOATS, floats: [...v] });
    }
    return typeof v === 'number'
      ? onnx.AttributeProto.create({ name, type: T.INT, i: v })
      : onnx.AttributeProto.create({ name, type: T.INTS, ints: [...v] });
  }
  const list = value as readonly (number | string)[];
  if (list.length > 0 && typeof list[0] === 'string') {
    return onnx.AttributeProto.create({
      name,
      type: T.STRINGS,
      strings: (list as readonly string[]).map((s) => new TextEncoder().encode(s)),
    });
  }
  const nums = list as readonly number[];
  return nums.every(Number.isInteger) && !FLOAT_ATTRIBUTES.has(name)
    ? onnx.AttributeProto.create({ name, type: T.INTS, ints: [...nums] })
    : onnx.AttributeProto.create({ name, type: T.FLOATS, floats: [...nums] });
}

export function makeAttributes(attrs: Attrs | undefined): AttributeProto[] {
  if (!attrs) return [];
  if (Array.isArray(attrs))
    return (attrs as readonly AttributeProto[]).map((a) => onnx.AttributeProto.create(a));
  const out: AttributeProto[] = [];
  for (const [name, value] of Object.entries(attrs as Record<string, AttrValue | undefined>)) {
    if (value !== undefined) out.push(makeAttribute(name, value));
  }
  return out;
}

export function getAttr(node: NodeProto, name: string): AttributeProto | undefined {
  return (node.attribute ?? []).find((a) => a.name === name) as AttributeProto | undefined;
}

export function hasAttr(node: NodeProto, name: string): boolean {
  return getAttr(node, name) !== undefined;
}

export function attrInt(node: NodeProto, name: string, fallback: number): number;
export function attrInt(node: NodeProto, name: string): number | undefined;
export function attrInt(node: NodeProto, name: string, fallback?: number): number | undefined {
  const a = getAttr(node, name);
  return a ? toNumber(a.i) : fallback;
}

export function attrFloat(node: NodeProto, name: string, fallback: number): number;
export function attrFloat(node: NodeProto, name: string): number | undefined;
export function attrFloat(node: NodeProto, name: string, fallback?: number): number | undefined {
  const a = getAttr(node, name);
  return a ? a.f : fallback;
}

export function attrInts(node: NodeProto, name: string, fallback: readonly number[]): number[];
export function attrInts(node: NodeProto, name: string): number[] | undefined;
export function attrInts(node: NodeProto, name: string, fallback?: readonly number[]): number[] | undefined {
  const a = getAttr(node, name);
  return a ? (a.ints ?? []).map(toNumber) : fallback ? [...fallback] : undefined;
}

export function attrFloats(node: NodeProto, name: string): number[] | undefined {
  const a = getAttr(node, name);
  return a ? [...(a.floats ?? [])] : undefined;
}

export function attrString(node: NodeProto, name: string, fallback: string): string;
export function attrString(node: NodeProto, name: string): string | undefined;
export function attrString(node: NodeProto, name: string, fallback?: string): string | undefined {
  const a = getAttr(node, name);
  return a ? new TextDecoder().decode(a.s ?? new Uint8Array(0)) : fallback;
}

export function attrTensor(node: NodeProto, name: string): TensorProto | undefined {
  const a = getAttr(node, name);
  return a?.t ? (a.t as TensorProto) : undefined;
}

/** Copies of some of a node's attributes, to give another node the same settings. */
export function copyAttrs(node: NodeProto, names: readonly string[]): AttributeProto[] {
  return (node.attribute ?? [])
    .filter((a) => names.includes(a.name ?? ''))
    .map((a) => onnx.AttributeProto.create(a));
}
