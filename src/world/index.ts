/**
 * EmojiWorld: EditKit's procedural world of emoji objects on backgrounds, where every edit has a ground truth.
 * See README.md in this folder for the world, the formats and the batch protocol.
 */
export {
  ASSET_SOURCE,
  CATEGORIES,
  CLASS_NAMES,
  STYLES,
  classColours,
  getClass,
  isClassName,
} from './catalog.js';
export type {
  ArtworkVariant,
  AssetSource,
  Category,
  ColourOption,
  Recolour,
  Style,
  WorldClass,
} from './catalog.js';
export {
  BACKGROUND_NAMES,
  getBackground,
  isBackgroundName,
  renderBackground,
  type BackgroundInfo,
} from './backgrounds.js';
export {
  DEFAULT_IMAGE_SIZE,
  MAX_IMAGE_SIZE,
  MAX_OBJECTS,
  MIN_IMAGE_SIZE,
  SCENE_VERSION,
  boxOverlap,
  normaliseScene,
  parseScene,
  placement,
  readSceneFile,
  sampleScene,
  sceneSchema,
  sceneToJson,
  type Placement,
  type SampleSceneOptions,
  type Scene,
  type SceneObject,
} from './scene.js';
export { encodePng, objectFootprint, renderScene, type RenderedScene } from './render.js';
export { clearSpriteCache, getSprite, spriteSvg, type Sprite } from './sprites.js';
export {
  CAPTION_TEMPLATES,
  allCaptions,
  caption,
  captionTemplateIndex,
  definiteObjectList,
  indefiniteArticle,
  joinList,
  objectList,
  referTo,
  sceneFacts,
  type ObjectFacts,
  type SceneFacts,
} from './caption.js';
export {
  EDIT_TASKS,
  applicableTasks,
  maskDilation,
  planEdit,
  sampleEdit,
  type DragPoints,
  type EditPlan,
  type EditResult,
  type EditTask,
  type EditVocabulary,
  type Point,
} from './edits.js';
export { SPLITS, SPLIT_RANGES, splitOfSeed, splitSeed, splitSeeds, type Split } from './splits.js';
export {
  BATCH_FORMAT,
  BATCH_VERSION,
  applicableScene,
  batchRecords,
  editVocabulary,
  encodeRecord,
  streamHeader,
  writeBatch,
  type BatchArray,
  type BatchOptions,
  type BatchRecord,
  type BatchRecordHeader,
  type EditRecordHeader,
  type SceneRecordHeader,
} from './batch.js';
export { Rng, hashSeed } from './prng.js';
export {
  WORLD_SUBSETS,
  WORLD_SUBSET_NAMES,
  findWorldSubset,
  modelWorldSubset,
  resolveWorldSubset,
  type WorldSubset,
} from './subsets.js';
