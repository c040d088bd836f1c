/**
 * Reverse-mode autodiff on ONNX graphs: differentiate a model into a new ONNX model whose backward pass uses
 * only standard operators, so it runs on every ONNX Runtime execution provider.
 */
export {
  buildGradient,
  buildGradientModel,
  extractSubgraph,
  gradientName,
  type GradientOptions,
  type GradientResult,
  type LossSpec,
} from './gradient.js';
export { estimatePeakLiveBytes, type CheckpointOptions, type CheckpointReport } from './checkpoint.js';
export {
  attachLoss,
  combineLosses,
  cosineDistanceLoss,
  customLoss,
  l1Loss,
  meanLoss,
  mseLoss,
  sumLoss,
  type LossOperand,
  type Reduction,
} from './losses.js';
export { Graph, GraphBuilder, makeValueInfo, type Dim, type Shape, type TensorInfo } from './graph.js';
export {
  cloneModel,
  DataType,
  decodeModel,
  graphOf,
  isExternal,
  loadModel,
  makeTensor,
  onnx,
  resolveExternalData,
  saveModel,
  serializeModel,
  setTensorValues,
  tensorDims,
  tensorToBigInt64,
  tensorToFloat32,
  tensorToFloat64,
  tensorToNumbers,
  type GraphView,
  type ModelProto,
  type TensorProto,
} from './onnx_io.js';
export {
  getGradientRule,
  listGradientRules,
  registerGradientRule,
  type GradientContext,
  type GradientRule,
} from './rules/index.js';
export {
  addLora,
  applyLoraTensors,
  ATTENTION_PROJECTIONS,
  findLoraTargets,
  foldInitializerCasts,
  loadLora,
  LORA_INIT_A,
  loraInitStd,
  loraTensors,
  mergedWeight,
  saveLora,
  type LoraAdapter,
  type LoraInitA,
  type LoraModel,
  type LoraOp,
  type LoraOptions,
  type LoraTarget,
} from './lora.js';
export {
  fromPeftLayout,
  LORA_KEY_LAYOUTS,
  toPeftLayout,
  type LoraKeyLayout,
  type PeftLora,
} from './lora_layouts.js';
export {
  Adam,
  AdamW,
  clipGradNorm,
  SGD,
  type AdamOptions,
  type Optimizer,
  type SgdOptions,
} from './optim.js';
export {
  float32ToSafeTensor,
  parseSafetensors,
  readSafetensors,
  safeTensorToFloat32,
  serializeSafetensors,
  writeSafetensors,
  type SafetensorsDType,
  type SafetensorsFile,
  type SafeTensor,
} from './safetensors.js';
export { gradientSessionSettings, sessionFromModel } from './session.js';
