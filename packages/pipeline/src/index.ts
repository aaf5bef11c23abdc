export { loadModel, loadModelFromBytes, loadCheckpointWeights, loadFromSource, sourceInfo, denseBytes, findTokenizer, readFileChecked, MAX_READ_BYTES } from './load.js';
export type { LoadedModel, LoadedWeights, LoadOptions, ReadFileOptions, ModelSourceInfo } from './load.js';
export {
  detectModelPath,
  openModelSource,
  openHfDirectory,
  openSafetensorsFile,
  openGgufFile,
  readSafetensorsHeader,
  readGgufHeader,
  HF_FILES,
} from './sources.js';
export type { ModelFormat, ModelPathKind, ModelSource, SourceFile, OpenSourceOptions } from './sources.js';
export { RandomAccessFile } from './randomAccess.js';
export {
  parseJsonFile,
  llama2cTokenizerBytes,
  ggufTokenizer,
  bundleTokenizer,
  MAX_TOKENIZER_JSON_BYTES,
  MAX_CONFIG_JSON_BYTES,
} from './tokenizers.js';
export type { LoadedTokenizer } from './tokenizers.js';
export { readJsonFile, hfTokenizerFiles, tokenizerFromPath, llama2cTokenizerFile } from './tokenizer-files.js';
export type { HfTokenizerFiles } from './tokenizer-files.js';
export { availableMemory, assertMemoryFor, withMargin, formatGiB, MEMORY_MARGIN_BYTES, MEMORY_MARGIN_FRACTION, AVAILABLE_MEMORY_VARIABLE } from './memory.js';
export type { MemoryItem } from './memory.js';
export { assertOutputNotInput, assertOutputDirectory, ensureOutputDirectory, describeFileKind } from './files.js';
export type { NamedPath, OutputCheckOptions } from './files.js';
export { splitDocuments, comparableDocuments, documentTokenStream } from './text.js';
export { evaluate, logSumExp, klDivergence, locateNonFinite, firstNonFinite, NotFiniteError, defaultWindow, EVAL_PROTOCOLS } from './evaluate.js';
export type { EvaluateOptions, EvaluateResult, EvaluateProgress, ScoringSession, NonFiniteLocation, EvalProtocol } from './evaluate.js';
export { writeFileAtomic, temporaryPathFor } from '@ultrasketch/node-files';
export type { WriteAtomicOptions } from '@ultrasketch/node-files';
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
  loadCheckpointForCompress,
  defaultLayers,
  setDefaultLayers,
  parseLayers,
  embeddingCodec,
  weightSeed,
  EMBEDDING_STORAGES,
  EMBEDDING_RTN_GROUP_SIZE,
  SMALL_MATRIX_POLICIES,
} from './compress.js';
export type {
  CompressOptions,
  CompressCalibration,
  CompressProgress,
  CompressReport,
  CompressResult,
  EmbeddingStorage,
  KeptDense,
  SmallMatrixPolicy,
  MeasureQualityOptions,
  Provenance,
  ProvenanceInput,
  QualitySection,
} from './compress.js';
export {
  bundleFromBytes,
  bundleModelConfig,
  checkBundleTensors,
  checkConfigAgainstTensors,
  referenceSourceWarning,
  inspectLoadedBundle,
  openBundleBytes,
} from './usk.js';
export type {
  LoadBundleOptions,
  LoadedBundle,
  InspectRow,
  InspectTotals,
  BundleInspection,
  OpenedModel,
  OpenedBundle,
  OpenBytesOptions,
} from './usk.js';
export { loadBundle, loadBundleFromBytes, inspectBundle, openModel, openReference } from './usk-files.js';
export { readQualitySection, readTrainingSection } from './stored-sections.js';
export type { StoredQuality, StoredTraining } from './stored-sections.js';
export type { OpenModelOptions } from './usk-files.js';
export { registerAllCodecs } from './codecs.js';
export {
  calibrate,
  LayerwiseCalibrator,
  calibrationTokens,
  defaultCalibrationWindow,
  codecUsesSaliency,
  setSaliencyUse,
  assertNotEvaluationText,
  evaluationOverlap,
  overlapError,
  OVERLAP_MIN_DOCUMENT_CHARS,
  OVERLAP_MAX_FRACTION,
  OVERLAP_RULE,
  DEFAULT_CALIB_TOKENS,
} from './calibrate.js';
export type { CalibrateOptions, Calibration, CalibrationInfo, TextFile, TextOverlap } from './calibrate.js';
export { matrixFeasibility, targetBpw } from './feasibility.js';
export type { MatrixFeasibility } from './feasibility.js';
export {
  COMPRESS_CODECS,
  codecOptionKeys,
  setCodecOptionKeys,
  isBpwTargeted,
  resolveCodecOptions,
  optionsFor,
} from './codec-options.js';
export { createSession, describeRuntime, sessionContextLength, DEFAULT_CONTEXT_CAP } from './sessions.js';
export type { ReferenceModel, CreateSessionOptions } from './sessions.js';
export { sweep, parseCodecSpec, sweepSvg, sweepMarkdown, codecFlags, finetuneFlags, shellJoin, jsonSafe, WindowCache } from './sweep.js';
export type { SweepOptions, SweepResult, SweepRow, SweepCodecSpec, SweepProgressEvent } from './sweep.js';
export { finetune, assertTrainableConfig, finetuneMemory, finetuneProviderKind, finetuneGemm, validateFinetune, FINETUNE_LOSSES, FINETUNE_DATA, FINETUNE_MODES, FINETUNE_DEVICES, LOSS_WEIGHTS, CHECKPOINT_FILE } from './finetune.js';
export { removeStaleTemporaries, temporaryWriterPid, processAlive } from './stale.js';
export { testKillPoint, TEST_KILL_VARIABLE } from './test-kill.js';
export type { TestKillPoint } from './test-kill.js';
export type { FinetuneOptions, FinetuneInput, FinetuneResult, FinetuneLoss, FinetuneData, FinetuneMode, FinetuneDevice, TrainingSection } from './finetune.js';
export { RECIPES, RECIPE_NAMES, getRecipe, recipeSettings, describeRecipes } from './recipes.js';
export type { Recipe, RecipeSettings } from './recipes.js';
export { teacherCorpus, modelFingerprint } from './teacher-corpus.js';
export type { TeacherCorpus, TeacherCorpusOptions } from './teacher-corpus.js';
export { sensitivityPlan } from './plan.js';
export type { SensitivityPlan, SensitivityPlanInput, PlannedLinear } from './plan.js';
