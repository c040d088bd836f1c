export {
  affineStep,
  dragDiffusion,
  DRAG_STAGES,
  inversionStepCount,
  type DragDiffusionOptions,
  type DragDiffusionResult,
  type DragStage,
  type DragStageStats,
} from './drag.js';
export {
  chooseFeatureTensor,
  configuredFeatureTensors,
  FeatureGrid,
  findUpBlockOutputs,
  handlesReached,
  motionLoss,
  motionSampling,
  pointsPerHandle,
  resizeTaps,
  trackPoints,
  type FeatureChoice,
  type MotionSampling,
  type MotionSupervisionOptions,
  type Tap,
} from './features.js';
export {
  LORA_PREFIX,
  loadDragLora,
  mergeLora,
  saveDragLora,
  trainDragLora,
  type DragLoraOptions,
  type LoraTrainingInput,
  type TrainedLora,
} from './lora.js';
export {
  buildDragGradientModel,
  DRAG_INPUTS,
  type DragGradientModel,
  type DragModelSpec,
} from './motion_model.js';
export {
  formatDragPoints,
  fromGrid,
  parseDragPoints,
  roundHalfEven,
  targetsOutsideMask,
  toGrid,
  validateDragInputs,
  type DragPointPairs,
  type GridPoint,
  type PixelPoint,
} from './points.js';
export {
  foldInitializerCasts,
  gradientSessionSettings,
  loadUnetGraph,
  mutualSelfAttentionModel,
  sessionFromModel,
  type MutualAttentionOptions,
  type SessionPlacement,
  type SessionSettings,
  type UnetGraph,
} from './unet_models.js';
export { drawDragArrows, saveDragArrows, type ArrowPictureOptions, type PanelArrows } from './arrows.js';
export { DiftFeaturizer, matchPoints, type DiftOptions } from './dift.js';
