/**
 * The table of gradient rules, one file per operator (tfjs-core's layout). See README.md for adding one.
 */
import { Abs } from './Abs.js';
import { Add } from './Add.js';
import { BatchNormalization } from './BatchNormalization.js';
import { Cast } from './Cast.js';
import { Clip } from './Clip.js';
import { Concat } from './Concat.js';
import { Conv } from './Conv.js';
import { ConvTranspose } from './ConvTranspose.js';
import { Cos } from './Cos.js';
import { Div } from './Div.js';
import { Dropout } from './Dropout.js';
import { Einsum } from './Einsum.js';
import { Erf } from './Erf.js';
import { Exp } from './Exp.js';
import { Expand } from './Expand.js';
import { Flatten } from './Flatten.js';
import { Gather } from './Gather.js';
import { GatherElements } from './GatherElements.js';
import { Gelu } from './Gelu.js';
import { Gemm } from './Gemm.js';
import { GlobalAveragePool } from './GlobalAveragePool.js';
import { GroupNormalization } from './GroupNormalization.js';
import { Identity } from './Identity.js';
import { InstanceNormalization } from './InstanceNormalization.js';
import { LayerNormalization } from './LayerNormalization.js';
import { LeakyRelu } from './LeakyRelu.js';
import { Log } from './Log.js';
import { LogSoftmax } from './LogSoftmax.js';
import { MatMul } from './MatMul.js';
import { Max } from './Max.js';
import { Mean } from './Mean.js';
import { Min } from './Min.js';
import { Mul } from './Mul.js';
import { Neg } from './Neg.js';
import { PRelu } from './PRelu.js';
import { Pad } from './Pad.js';
import { Pow } from './Pow.js';
import { Reciprocal } from './Reciprocal.js';
import { ReduceL1 } from './ReduceL1.js';
import { ReduceL2 } from './ReduceL2.js';
import { ReduceLogSumExp } from './ReduceLogSumExp.js';
import { ReduceMax } from './ReduceMax.js';
import { ReduceMean } from './ReduceMean.js';
import { ReduceMin } from './ReduceMin.js';
import { ReduceSum } from './ReduceSum.js';
import { ReduceSumSquare } from './ReduceSumSquare.js';
import { Relu } from './Relu.js';
import { Reshape } from './Reshape.js';
import { Resize } from './Resize.js';
import { Sigmoid } from './Sigmoid.js';
import { Sin } from './Sin.js';
import { Slice } from './Slice.js';
import { Softmax } from './Softmax.js';
import { Softplus } from './Softplus.js';
import { Split } from './Split.js';
import { Sqrt } from './Sqrt.js';
import { Squeeze } from './Squeeze.js';
import { Sub } from './Sub.js';
import { Sum } from './Sum.js';
import { Tanh } from './Tanh.js';
import { Tile } from './Tile.js';
import { Transpose } from './Transpose.js';
import { Unsqueeze } from './Unsqueeze.js';
import { Upsample } from './Upsample.js';
import { Where } from './Where.js';
import type { GradientRule } from './types.js';

export type { GradientContext, GradientRule } from './types.js';

const BUILT_IN: ReadonlyArray<readonly [string, GradientRule]> = [
  ['Abs', Abs],
  ['Add', Add],
  ['BatchNormalization', BatchNormalization],
  ['Cast', Cast],
  ['Clip', Clip],
  ['Concat', Concat],
  ['Conv', Conv],
  ['ConvTranspose', ConvTranspose],
  ['Cos', Cos],
  ['Div', Div],
  ['Dropout', Dropout],
  ['Einsum', Einsum],
  ['Erf', Erf],
  ['Exp', Exp],
  ['Expand', Expand],
  ['Flatten', Flatten],
  ['Gather', Gather],
  ['GatherElements', GatherElements],
  ['Gelu', Gelu],
  ['Gemm', Gemm],
  ['GlobalAveragePool', GlobalAveragePool],
  ['GroupNormalization', GroupNormalization],
  ['Identity', Identity],
  ['InstanceNormalization', InstanceNormalization],
  ['LayerNormalization', LayerNormalization],
  ['LeakyRelu', LeakyRelu],
  ['Log', Log],
  ['LogSoftmax', LogSoftmax],
  ['MatMul', MatMul],
  ['Max', Max],
  ['Mean', Mean],
  ['Min', Min],
  ['Mul', Mul],
  ['Neg', Neg],
  ['PRelu', PRelu],
  ['Pad', Pad],
  ['Pow', Pow],
  ['Reciprocal', Reciprocal],
  ['ReduceL1', ReduceL1],
  ['ReduceL2', ReduceL2],
  ['ReduceLogSumExp', ReduceLogSumExp],
  ['ReduceMax', ReduceMax],
  ['ReduceMean', ReduceMean],
  ['ReduceMin', ReduceMin],
  ['ReduceSum', ReduceSum],
  ['ReduceSumSquare', ReduceSumSquare],
  ['Relu', Relu],
  ['Reshape', Reshape],
  ['Resize', Resize],
  ['Sigmoid', Sigmoid],
  ['Sin', Sin],
  ['Slice', Slice],
  ['Softmax', Softmax],
  ['Softplus', Softplus],
  ['Split', Split],
  ['Sqrt', Sqrt],
  ['Squeeze', Squeeze],
  ['Sub', Sub],
  ['Sum', Sum],
  ['Tanh', Tanh],
  ['Tile', Tile],
  ['Transpose', Transpose],
  ['Unsqueeze', Unsqueeze],
  ['Upsample', Upsample],
  ['Where', Where],
];

/** Rules by `domain/opType` ('' is the default ONNX domain). */
const RULES = new Map<string, GradientRule>(BUILT_IN.map(([op, rule]) => [key('', op), rule]));

function key(domain: string, opType: string): string {
  return `${domain === 'ai.onnx' ? '' : domain}/${opType}`;
}

/**
 * Operators whose outputs carry no gradient: shape computations, comparisons, integer/boolean logic, random
 * sources, and piecewise-constant functions (Floor, Round, Sign: zero derivative almost everywhere). The
 * backward pass stops at them instead of asking for a rule.
 */
export const NON_DIFFERENTIABLE_OPS: ReadonlySet<string> = new Set([
  'Shape',
  'Size',
  'ConstantOfShape',
  'Constant',
  'NonZero',
  'ArgMax',
  'ArgMin',
  'Equal',
  'Less',
  'Greater',
  'LessOrEqual',
  'GreaterOrEqual',
  'Not',
  'And',
  'Or',
  'Xor',
  'IsNaN',
  'IsInf',
  'Sign',
  'Floor',
  'Ceil',
  'Round',
  'Range',
  'RandomNormal',
  'RandomNormalLike',
  'RandomUniform',
  'RandomUniformLike',
  'Multinomial',
  'Bernoulli',
  'EyeLike',
  'OneHot',
  'BitShift',
  'BitwiseAnd',
  'BitwiseOr',
  'BitwiseXor',
  'BitwiseNot',
  'NonMaxSuppression',
  'Unique',
  'StringNormalizer',
  'TfIdfVectorizer',
  'Hardmax',
]);

export function isNonDifferentiableOp(opType: string, domain = ''): boolean {
  return (domain === '' || domain === 'ai.onnx') && NON_DIFFERENTIABLE_OPS.has(opType);
}

export function getGradientRule(opType: string, domain = ''): GradientRule | undefined {
  return RULES.get(key(domain, opType));
}

/**
 * Add or replace a rule (for an operator of another domain, give its domain). Rules are global to the process;
 * register before calling buildGradientModel.
 */
export function registerGradientRule(opType: string, rule: GradientRule, domain = ''): void {
  RULES.set(key(domain, opType), rule);
}

/** `opType` for default-domain rules, `domain/opType` for others. */
export function listGradientRules(): string[] {
  return [...RULES.keys()].map((k) => (k.startsWith('/') ? k.slice(1) : k)).sort();
}
