/**
 * `compress`: a float model in, a `.usk` bundle out — one entry point whose options say what to do, run as a
 * pipeline of named stages (each in compress/, each with one job):
 *
 *   1. settings     resolve the options; refuse everything refusable before any work   (compress/settings.ts)
 *   2. plan         the codec of every 2-D weight; budget refusals, or kept dense      (compress/weight-plan.ts)
 *   3. encode       each weight through its codec, read through the tensor pipeline:  (compress/encode.ts)
 *                   `in-memory` or `layer-sequential` (one decoder layer read,
 *                   calibrated and freed at a time)                                    (compress/pipelines.ts)
 *   4. train        optional: finetune through the codec, the recipe's budget          (compress/train.ts)
 *   5. assemble     norms, tokenizer, provenance and the stored-bit accounting          (compress/assemble.ts)
 *   6. measure      optional: quality of the bundle as read back                        (compress/quality.ts)
 *   7. write        atomically, then the report
 */
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type Bundle, readBundle, writeBundle } from '@ultrasketch/format';
import type { LinearKind } from '@ultrasketch/model';
import { type WriteAtomicOptions, writeFileAtomic } from '@ultrasketch/node-files';
import type { StoredAccounting } from './accounting.js';
import type { CalibrationInfo } from './calibrate.js';
import type { EvaluateResult, ScoringSession } from './evaluate.js';
import type { FinetuneOptions, TrainingSection } from './finetune.js';
import { type LoadedModel, denseBytes, loadFromSource, loadModel } from './load.js';
import { assertMemoryFor } from './memory.js';
import { type ModelSource, detectModelPath } from './sources.js';
import { killMidWrite, testKillPoint } from './test-kill.js';
// the stages, in the order compressModel runs them
import type { EmbeddingStorage, SmallMatrixPolicy } from './compress/defaults.js';
import { type CompressInput, bundleAsInput, compressInput } from './compress/input.js';
import { refuseBeforeWork, resolveSettings } from './compress/settings.js';
import { planWeights } from './compress/weight-plan.js';
import { openTensorPipeline } from './compress/pipelines.js';
import { encodeWeights } from './compress/encode.js';
import { trainWeights } from './compress/train.js';
import { assembleBundle, selectedBpw } from './compress/assemble.js';
import { measureQuality } from './compress/quality.js';

export {
  defaultLayers,
  setDefaultLayers,
  parseLayers,
  embeddingCodec,
  weightSeed,
  EMBEDDING_STORAGES,
  EMBEDDING_VQ_DIM,
  EMBEDDING_RTN_GROUP_SIZE,
  SMALL_MATRIX_POLICIES,
} from './compress/defaults.js';
export type { EmbeddingStorage, SmallMatrixPolicy } from './compress/defaults.js';
export { tokenRowWeights } from './compress/encode.js';

// --------------------------------------------------------------------------------------------- compress

export interface CompressProgress {
  /** The weight just encoded. */
  name: string;
  /** 0-based index of that weight; `index + 1` of `total` are done. */
  index: number;
  total: number;
  codec: string;
}

export interface ProvenanceInput {
  /** The command line that made the bundle, as one string (stored verbatim). */
  command?: string;
  /** Default: this package's version. */
  toolVersion?: string;
  /** Override the source path/hash (default: from the loaded model). */
  sourcePath?: string;
  sourceSha256?: string;
}

/** The `provenance` section. No timestamps: the same inputs give byte-identical bundles. */
export interface Provenance {
  sourcePath: string;
  sourceSha256: string;
  sourceFormat: string;
  tool: string;
  toolVersion: string;
  command: string;
  /** Present when the codec used calibration statistics: which text, how many tokens. */
  calibration?: CalibrationInfo;
}

/** A linear of the selected kinds stored in float f16 because the codec cannot meet the target on it. */
export interface KeptDense {
  name: string;
  rows: number;
  cols: number;
  /** The smallest target the codec could meet on this matrix (null when the codec did not say). */
  minBpw: number | null;
  /** The codec's refusal. */
  reason: string;
}

export interface MeasureQualityOptions {
  /** Evaluation text (documents separated by blank lines) — never calibration text. */
  text: string;
  /** Its name (a path) for the report. */
  textSource?: string;
  /** First N windows (default 8). */
  windows?: number;
  /** Window length (default the model's seq_len). */
  window?: number;
  /** Session over the compressed bundle (default: runtime-node's `sessionFromBundle`). */
  makeSession?(bundle: Bundle): ScoringSession;
  /** The float reference (default: a runtime-node session over the loaded float weights). */
  reference?: ScoringSession;
}

/** The `quality` section written when quality is measured at compression time. */
export interface QualitySection {
  protocol: EvaluateResult['protocol'];
  textSource: string;
  window: number;
  windows: number;
  predictedTokens: number;
  meanNll: number;
  perplexity: number;
  kl: number;
  top1: number;
  reference: { meanNll: number; perplexity: number };
}

/** Calibration text for `compress` to calibrate on itself (streamed models are calibrated layer by layer). */
export interface CompressCalibration {
  /** Calibration text: documents separated by blank lines. Never evaluation text. */
  text: string;
  textSource?: string;
  /** Use the first N tokens (default DEFAULT_CALIB_TOKENS). */
  maxTokens?: number;
  /** Window length (default the model's seq_len). */
  window?: number;
  onProgress?(p: { layersDone: number; layersTotal: number }): void;
}

export interface CompressOptions {
  /**
   * The model: a path (llama2.c checkpoint, HF directory, `.safetensors` with config.json beside it, GGUF), a
   * model loaded with `loadModel`, or a source opened with `openModelSource`. HF and GGUF paths (and sources) are
   * streamed: one decoder layer is read, calibrated, encoded and freed at a time, so memory holds the output and
   * one layer, not the dense model. llama2.c checkpoints are read whole (they are at most a few hundred MB).
   */
  model: LoadedModel | ModelSource | string;
  /** Tokenizer file when `model` is a path (default: the model's own). */
  tokenizerPath?: string;
  /** Codec id for the compressed linears ('rtn', 'binary', 'float', ...). */
  codec: string;
  /** Raw codec options (CLI flags or JSON), resolved with the codec's `resolveOptions`. */
  codecOptions?: Record<string, unknown>;
  /**
   * A mixed bit plan: the `bpw` option of each named compressed linear (e.g. sensitivityPlan().bpw); the others
   * take codecOptions.bpw. Each bundle entry records its own options, so the bundle says what each matrix got.
   */
  bpwPlan?: Readonly<Record<string, number>>;
  /** Linear kinds to compress (array or 'q,k,v' list); default per codec (`defaultLayers`). */
  layers?: readonly string[] | string;
  /** Embedding storage; default 'f16'. */
  embeddings?: EmbeddingStorage;
  /**
   * Write format 3 (docs/bundle.md): the metadata and the tokenizer deflated, for whole-file budgets near one
   * bit per parameter (on stories3M 66 KB of header and 54 KB of tokenizer become ~29 KB and ~14 KB). Default
   * false: format 2, which builds before this one also read.
   */
  pack?: boolean;
  /** Storage of an untied classifier; default the same as `embeddings`. Ignored when tied. */
  classifier?: EmbeddingStorage;
  /** Run seed (uint32, default 0); each weight's codec seed is derived from it and the weight's name. */
  seed?: number;
  /** Write the bundle here (atomically) as well as returning its bytes. */
  output?: string;
  writeOptions?: WriteAtomicOptions;
  provenance?: ProvenanceInput;
  /** A quality section supplied by the caller, stored as is (JSON object). */
  quality?: Record<string, unknown>;
  /** Measure quality of the compressed bundle against the float model now and store it. */
  measureQuality?: MeasureQualityOptions;
  /**
   * Calibration statistics: E[a_j²] per input channel by linear name (`calibrate()`), given to the codec as
   * ctx.saliency for each compressed linear — only when the codec uses it (`codecUsesSaliency`).
   */
  saliency?: ReadonlyMap<string, Float64Array>;
  /** Where the statistics came from (stored in provenance when they were used). */
  calibration?: CalibrationInfo;
  /**
   * Instead of `saliency`: calibrate now, on this text, when the codec uses statistics (a streamed model layer by
   * layer, while each layer is loaded for encoding; a model in memory with `calibrate()`).
   */
  calibrate?: CompressCalibration;
  /**
   * A compressed linear whose budget the codec cannot meet (the matrix is too small for the target): 'error'
   * (default) refuses before encoding, naming the smallest target every compressed linear meets; 'keep'
   * stores it in float f16, lists it in the report and the accounting (`keptDense`), and leaves it out of
   * bpwLinears (it is not compressed) — bpwSelectedLinears and bitsPerParam include it.
   */
  smallMatrix?: SmallMatrixPolicy;
  onProgress?(p: CompressProgress): void;
  /**
   * Finetune the compressed linears after encoding (docs/ste-trainer.md): the trained codec parameters
   * replace the post-training ones and the bundle gains a `training` section (recipe and cost).
   */
  finetune?: FinetuneOptions;
}

export interface CompressReport {
  output: string | null;
  fileBytes: number;
  /** 8 × fileBytes ÷ params: the bundle's real size (methods.md §4). */
  bitsPerParam: number;
  bpwLinears: number;
  /** Bits of every linear of the selected kinds, kept-dense ones included, ÷ their weights. */
  bpwSelectedLinears: number;
  params: number;
  linearBits: number;
  linearWeights: number;
  /** Linears of the selected kinds stored in float because the codec cannot meet the target on them. */
  keptDense: KeptDense[];
  /** Whether calibration statistics were given to the codec. */
  saliencyUsed: boolean;
  codec: { id: string; version: number; options: unknown };
  layers: LinearKind[];
  embeddings: EmbeddingStorage;
  classifier: EmbeddingStorage | null;
  seed: number;
  accounting: StoredAccounting;
  provenance: Provenance;
  quality: Record<string, unknown> | null;
  /** The training section when the bundle was finetuned, else null. */
  training: TrainingSection | null;
  /** Wall-clock seconds (report only; never written into the bundle). */
  seconds: { encode: number; finetune: number; quality: number; total: number };
}

export interface CompressResult {
  bytes: Uint8Array<ArrayBuffer>;
  report: CompressReport;
}

/**
 * Compress a model into a `.usk` bundle: the chosen linear kinds through `codec`, the other linears as
 * float f16, the embedding (and an untied classifier) as `embeddings` says, RMSNorm weights as F32, the
 * tokenizer embedded; plus provenance, the bit accounting and (optionally) the quality measured now.
 * Deterministic: the same inputs give byte-identical bytes (nothing time-dependent is stored: the training's wall
 * time is in the report only).
 */
export async function compress(options: CompressOptions): Promise<CompressResult> {
  const input = compressInput(options);
  try {
    return await compressModel(options, input);
  } finally {
    input.close();
  }
}

/** The stages, in order (see the file comment). */
async function compressModel(options: CompressOptions, model: CompressInput): Promise<CompressResult> {
  const t0 = performance.now();
  const settings = resolveSettings(options, model);
  refuseBeforeWork(options, model, settings);
  const plan = planWeights(model.config, model.weights, settings, options);
  const tensors = openTensorPipeline(model, settings, options);
  const encoded = encodeWeights(plan, tensors, settings, options, model);
  const tEncode = performance.now();

  // Training and measuring quality need the whole float model: a streamed one is read now, its memory checked.
  let dense: LoadedModel | null = null;
  const denseModel = (): LoadedModel => {
    if (dense) return dense;
    if (model.weights) {
      const info = model.info();
      dense = { weights: model.weights, tokenizer: model.tokenizer.tokenizer, tokenizerInfo: model.tokenizer, tokenizerBytes: model.tokenizer.embed.bytes, source: info, description: null, dtypes: {} };
    } else dense = loadFromSource(model.stream!);
    return dense;
  };
  const trained = await trainWeights(encoded, denseModel, tensors, settings, options, model);
  const tFinetune = performance.now();

  const { input, accounting, provenance, packOptions } = assembleBundle(plan, encoded, trained, tensors, settings, options, model);
  let quality: Record<string, unknown> | null = options.quality ?? null;
  const tQuality0 = performance.now();
  if (options.measureQuality) {
    if (options.quality) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'pass either a quality section or measureQuality, not both');
    }
    // Measure the bundle exactly as it will be read: write it, read it back, run it with the fused kernels.
    const draft = writeBundle(input, packOptions);
    const bundle = readBundle(draft, options.output ?? '<compressed bundle>');
    if (!model.weights && !options.measureQuality.reference) {
      assertMemoryFor(
        'measuring quality against the float model (--eval-windows)',
        [{ what: 'the float32 model', bytes: denseBytes(model.config) }, { what: 'its runtime copy', bytes: denseBytes(model.config) }],
        model.path,
        'the float reference runs in memory: compress without --eval-windows, then eval the bundle with --reference on a machine with more memory',
      );
    }
    quality = { ...(await measureQuality(bundle, denseModel(), options.measureQuality, options.output)) };
  }
  const tQuality = performance.now();
  if (quality !== null) input.sections = { ...input.sections, quality };
  const bytes = writeBundle(input, packOptions);
  if (options.output !== undefined) {
    const kill = testKillPoint();
    writeFileAtomic(options.output, bytes, options.writeOptions ?? (kill?.at === 'bundle' ? killMidWrite(bytes.byteLength) : {}));
  }

  const params = accounting.params;
  const { keptDense } = plan;
  const report: CompressReport = {
    output: options.output ?? null,
    fileBytes: bytes.byteLength,
    bitsPerParam: (8 * bytes.byteLength) / params,
    bpwLinears: accounting.bpwLinears,
    bpwSelectedLinears: selectedBpw(encoded.perWeight, [...encoded.compressedNames, ...keptDense.map((k) => k.name)]),
    params,
    linearBits: accounting.linearBits,
    linearWeights: accounting.linearWeights,
    keptDense,
    saliencyUsed: settings.saliencyUsed,
    codec: accounting.linearCodec,
    layers: settings.layers,
    embeddings: settings.embeddings,
    classifier: settings.classifierStorage,
    seed: settings.seed,
    accounting,
    provenance,
    quality,
    training: trained?.training ?? null,
    seconds: {
      encode: (tEncode - t0) / 1000,
      finetune: (tFinetune - tEncode) / 1000,
      quality: (tQuality - tQuality0) / 1000,
      total: (performance.now() - t0) / 1000,
    },
  };
  return { bytes, report };
}

/**
 * Load the float model to compress, in memory (any input format); a bundle is refused (no re-compression).
 * `compress` itself streams HF and GGUF models given by path instead.
 */
export function loadCheckpointForCompress(path: string, tokenizerPath?: string): LoadedModel {
  if (detectModelPath(path, 'checkpoint') === 'usk') throw bundleAsInput(path);
  return loadModel(path, tokenizerPath === undefined ? {} : { tokenizerPath });
}
