export { loadModel, loadModelFromBytes, findTokenizer, readFileChecked } from './load.js';
export type { LoadedModel, LoadOptions } from './load.js';
export { splitDocuments, documentTokenStream } from './text.js';
export { evaluate, logSumExp } from './evaluate.js';
export type { EvaluateOptions, EvaluateResult, EvaluateProgress, ScoringSession } from './evaluate.js';
export { writeFileAtomic, temporaryPathFor } from './atomic.js';
export type { WriteAtomicOptions } from './atomic.js';
export { looksLikeSafetensors, looksLikeSafetensorsBytes } from './sniff.js';
export { PIPELINE_VERSION, TOOL_NAME } from './version.js';
export { ACCOUNTING_DEFINITION, accountingGroups, bundleAccounting, weightRole } from './accounting.js';
export type {
  AccountingGroups,
  BitsAndWeights,
  BundleAccounting,
  StoredAccounting,
  WeightAccounting,
  WeightRole,
} from './accounting.js';
export {
  compress,
  defaultLayers,
  setDefaultLayers,
  parseLayers,
  embeddingCodec,
  weightSeed,
  EMBEDDING_STORAGES,
  EMBEDDING_RTN_GROUP_SIZE,
} from './compress.js';
export type {
  CompressOptions,
  CompressProgress,
  CompressReport,
  CompressResult,
  EmbeddingStorage,
  MeasureQualityOptions,
  Provenance,
  ProvenanceInput,
  QualitySection,
} from './compress.js';
export {
  loadBundle,
  loadBundleFromBytes,
  bundleModelConfig,
  checkBundleTensors,
  inspectBundle,
  inspectLoadedBundle,
  openModel,
} from './usk.js';
export type {
  LoadBundleOptions,
  LoadedBundle,
  InspectRow,
  InspectTotals,
  BundleInspection,
  OpenModelOptions,
  OpenedModel,
} from './usk.js';
export { registerAllCodecs } from './codecs.js';
