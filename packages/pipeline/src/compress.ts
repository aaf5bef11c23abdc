import { createHash } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { registerAllCodecs } from './codecs.js';
import { type VqOptions, vqEncode } from '@ultrasketch/baselines';
import { type Codec, ErrorCodes, UltraSketchError, getCodec, isUltraSketchError } from '@ultrasketch/core';
import {
  type Bundle,
  type BundleInput,
  type BundleWeightInput,
  readBundle,
  storedTokenizerBytes,
  writeBundle,
} from '@ultrasketch/format';
import {
  LINEAR_KINDS,
  type LinearKind,
  type ModelConfig,
  type ModelWeights,
  type Tensor,
  TensorNames,
  checkSourceAgainstConfig,
  expectedTensors,
  loadLayer,
  loadTensor,
  parameterCount,
  parseLinearName,
} from '@ultrasketch/model';
import { NodeSession, sessionFromBundle } from '@ultrasketch/runtime-node';
import {
  ACCOUNTING_DEFINITION,
  type StoredAccounting,
  type WeightAccounting,
  accountingGroups,
  toWeightAccounting,
} from './accounting.js';
import { type WriteAtomicOptions, writeFileAtomic } from '@ultrasketch/node-files';
import { assertOutputNotInput } from './files.js';
import { type EvaluateResult, type ScoringSession, defaultWindow, evaluate } from './evaluate.js';
import { type LoadedModel, type ModelSourceInfo, denseBytes, loadFromSource, loadModel, sourceInfo } from './load.js';
import {
  type CalibrationInfo,
  LayerwiseCalibrator,
  calibrate,
  calibrationTokens,
  codecUsesSaliency,
  evaluationOverlap,
  overlapError,
  textSha256,
  DEFAULT_CALIB_TOKENS,
  defaultCalibrationWindow,
} from './calibrate.js';
import { assertMemoryFor } from './memory.js';
import { type ModelSource, detectModelPath, openModelSource } from './sources.js';
import type { LoadedTokenizer } from './tokenizers.js';
import { matrixFeasibility, targetBpw } from './feasibility.js';
import {
  type FinetuneOptions,
  type TrainingSection,
  assertTrainableConfig,
  finetune,
  finetuneMemory,
  finetuneProviderKind,
  validateFinetune,
} from './finetune.js';
import { PIPELINE_VERSION, TOOL_NAME } from './version.js';
import { removeStaleTemporaries } from './stale.js';
import { killMidWrite, testKillPoint } from './test-kill.js';

// ------------------------------------------------------------------------------------------ defaults

const ALL_LINEARS: readonly LinearKind[] = LINEAR_KINDS;
const ALL_BUT_O: readonly LinearKind[] = ['q', 'k', 'v', 'gate', 'up', 'down'];

/**
 * Which linear kinds each method compresses by default (docs/methods.md): the baselines and LittleBit
 * compress all seven; UltraSketchLLM keeps the attention output projection (O) in float, and hashednets,
 * its comparison baseline, does the same. Codecs not listed default to all seven. Packages that add codecs
 * may set theirs with `setDefaultLayers`.
 */
const DEFAULT_LAYERS = new Map<string, readonly LinearKind[]>([
  ['float', ALL_LINEARS],
  ['rtn', ALL_LINEARS],
  ['binary', ALL_LINEARS],
  ['littlebit', ALL_LINEARS],
  ['sketch', ALL_BUT_O],
  ['hashednets', ALL_BUT_O],
]);

/** The linear kinds `codecId` compresses when the caller does not say. */
export function defaultLayers(codecId: string): LinearKind[] {
  return [...(DEFAULT_LAYERS.get(codecId) ?? ALL_LINEARS)];
}

/** Set (or replace) a codec's default set of compressed linear kinds. */
export function setDefaultLayers(codecId: string, kinds: readonly LinearKind[]): void {
  DEFAULT_LAYERS.set(codecId, parseLayers(kinds));
}

/**
 * Parse a layer list: 'q,k,v,o,gate,up,down' (any subset, any order, comma-separated), 'all', or an array
 * of kinds. Returned in canonical order without duplicates; BAD_ARGUMENT on anything unknown or empty.
 */
export function parseLayers(spec: string | readonly string[]): LinearKind[] {
  const items = (typeof spec === 'string' ? spec.split(',') : [...spec]).map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 1 && items[0] === 'all') return [...ALL_LINEARS];
  const bad = items.filter((s) => !(LINEAR_KINDS as readonly string[]).includes(s));
  if (bad.length > 0 || items.length === 0) {
    throw new UltraSketchError(
      ErrorCodes.BAD_ARGUMENT,
      items.length === 0 ? 'the layer list is empty' : `unknown linear kind(s): ${bad.join(', ')}`,
      { source: '--layers', hint: `use a comma-separated subset of ${LINEAR_KINDS.join(',')}, or all` },
    );
  }
  return LINEAR_KINDS.filter((k) => items.includes(k));
}

/** How the embedding (and an untied classifier) is stored. */
export type EmbeddingStorage = 'f16' | 'f32' | 'rtn2' | 'rtn3' | 'rtn4' | 'rtn8' | 'vq6' | 'vq7' | 'vq8' | 'binary';
export const EMBEDDING_STORAGES: readonly EmbeddingStorage[] = ['f16', 'f32', 'rtn2', 'rtn3', 'rtn4', 'rtn8', 'vq6', 'vq7', 'vq8', 'binary'];

/** Sub-vector length of vq-stored embeddings: 4 values per codebook index (`vqK`: 2^K entries, K/4 bits a value). */
export const EMBEDDING_VQ_DIM = 4;

/** Group size of rtn-quantized embeddings: groups of 64 consecutive values along each embedding row. */
export const EMBEDDING_RTN_GROUP_SIZE = 64;

/** The codec and raw options that store an embedding-like matrix. */
export function embeddingCodec(storage: EmbeddingStorage, flag = '--embeddings'): { id: string; options: Record<string, unknown> } {
  switch (storage) {
    case 'f16':
    case 'f32':
      return { id: 'float', options: { dtype: storage } };
    // 2 and 3 bits: for whole-file budgets near 1 bit per parameter, where the embedding dominates the file.
    case 'rtn2':
      return { id: 'rtn', options: { bits: 2, groupSize: EMBEDDING_RTN_GROUP_SIZE } };
    case 'rtn3':
      return { id: 'rtn', options: { bits: 3, groupSize: EMBEDDING_RTN_GROUP_SIZE } };
    case 'rtn4':
      return { id: 'rtn', options: { bits: 4, groupSize: EMBEDDING_RTN_GROUP_SIZE } };
    case 'rtn8':
      return { id: 'rtn', options: { bits: 8, groupSize: EMBEDDING_RTN_GROUP_SIZE } };
    // Below 2 bits a value (whole files at ~1 bit per parameter): a shared codebook of 4-value sub-vectors
    // (vq6/vq7/vq8: 1.5/1.75/2 bits a value), fitted to the rows weighted by how often the calibration text
    // uses each token when compress() has one; or 1 bit a value (sign and a scale per row).
    case 'vq6':
    case 'vq7':
    case 'vq8':
      return { id: 'vq', options: { dim: EMBEDDING_VQ_DIM, bits: Number(storage.slice(2)), iterations: 12 } };
    case 'binary':
      return { id: 'binary', options: {} };
    default:
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `unknown storage ${JSON.stringify(storage)}`, {
        source: flag,
        hint: `use one of ${EMBEDDING_STORAGES.join(', ')}`,
      });
  }
}

/** The seed a weight's codec gets: the run's seed mixed with the weight's name (FNV-1a), a uint32. */
export function weightSeed(seed: number, name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h ^ seed) >>> 0;
}

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

/** What to do with a compressed linear whose budget the codec cannot meet (too small for the target). */
export type SmallMatrixPolicy = 'keep' | 'error';
export const SMALL_MATRIX_POLICIES: readonly SmallMatrixPolicy[] = ['keep', 'error'];

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
 * Deterministic: the same inputs give byte-identical bytes (nothing time-dependent is stored).
 */
export async function compress(options: CompressOptions): Promise<CompressResult> {
  const input = compressInput(options);
  try {
    return await compressModel(options, input);
  } finally {
    input.close();
  }
}

/** What compress works on: the config, the tokenizer, and each tensor — from memory or streamed from the files. */
interface CompressInput {
  /** The model's path as given (errors, the memory checks). */
  path: string;
  config: ModelConfig;
  tokenizer: LoadedTokenizer;
  /** The whole float model, when it is in memory (llama2.c checkpoints, a LoadedModel). */
  weights: ModelWeights | null;
  /** The streamed source (HF, GGUF). */
  stream: ModelSource | null;
  /** Where it came from (for a stream, the SHA-256 is computed when first asked for). */
  info(): ModelSourceInfo;
  close(): void;
}

function compressInput(options: CompressOptions): CompressInput {
  const m = options.model;
  if (typeof m === 'string') {
    const kind = detectModelPath(m, 'checkpoint');
    if (kind === 'usk') {
      throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'compress needs a float model; this is a .usk bundle', {
        source: m,
        hint: 'pass the model the bundle was made from (llama2.c checkpoint, HF directory or GGUF)',
      });
    }
    if (kind === 'llama2c') return fromLoaded(loadModel(m, options.tokenizerPath === undefined ? {} : { tokenizerPath: options.tokenizerPath }));
    return fromStream(openModelSource(m, options.tokenizerPath === undefined ? {} : { tokenizerPath: options.tokenizerPath }), true);
  }
  if ('tensors' in m && 'sha256' in m && typeof m.sha256 === 'function') return fromStream(m, false);
  return fromLoaded(m as LoadedModel);
}

function fromLoaded(model: LoadedModel): CompressInput {
  if (!(model.tokenizerBytes instanceof Uint8Array)) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'the loaded model has no tokenizer bytes to embed', {
      source: model.source.path,
      hint: 'load it with loadModel() of this version',
    });
  }
  // A LoadedModel built by hand (tests, older callers) may lack tokenizerInfo: a llama2.c tokenizer then.
  const tokenizer: LoadedTokenizer = model.tokenizerInfo ?? {
    tokenizer: model.tokenizer,
    embed: { kind: 'llama2c', bytes: model.tokenizerBytes },
    files: model.source.tokenizerPath ? [model.source.tokenizerPath] : [],
    stopIds: [model.tokenizer.bosId],
    kind: 'llama2c',
    description: 'llama2.c tokenizer',
  };
  return { path: model.source.path, config: model.weights.config, tokenizer, weights: model.weights, stream: null, info: () => model.source, close: () => {} };
}

function fromStream(src: ModelSource, owned: boolean): CompressInput {
  let info: ModelSourceInfo | undefined;
  return {
    path: src.path,
    config: src.config,
    tokenizer: src.tokenizer,
    weights: null,
    stream: src,
    info: () => (info ??= sourceInfo(src)),
    close: () => {
      if (owned) src.close();
    },
  };
}

async function compressModel(options: CompressOptions, model: CompressInput): Promise<CompressResult> {
  const t0 = performance.now();
  registerAllCodecs();
  const config = model.config;
  const codec = getCodec(options.codec, undefined, '--codec');
  const codecOptions = codec.resolveOptions(options.codecOptions ?? {});
  const layers = options.layers === undefined ? defaultLayers(codec.id) : parseLayers(options.layers);
  const embeddings = options.embeddings ?? 'f16';
  const emb = embeddingCodec(embeddings, '--embeddings');
  const classifierStorage = config.tiedClassifier ? null : (options.classifier ?? embeddings);
  const cls = classifierStorage === null ? undefined : embeddingCodec(classifierStorage, '--classifier');
  const keepFloat = { id: 'float', options: { dtype: 'f16' } };
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `seed ${seed} must be an integer in 0..4294967295`, { source: '--seed' });
  }
  const smallMatrix = options.smallMatrix ?? 'error';
  if (!SMALL_MATRIX_POLICIES.includes(smallMatrix)) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `small-matrix policy ${JSON.stringify(smallMatrix)} is not one of ${SMALL_MATRIX_POLICIES.join(', ')}`, {
      source: '--small-matrix',
    });
  }
  const usesSaliency = codecUsesSaliency(codec.id, codecOptions);
  if (options.saliency !== undefined && options.calibrate !== undefined) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'pass either saliency statistics or a calibration text to compress, not both');
  }
  const saliencyUsed = usesSaliency && (options.saliency !== undefined || options.calibrate !== undefined);
  if (saliencyUsed && options.calibration && options.measureQuality) {
    const evalSha = createHash('sha256').update(options.measureQuality.text).digest('hex');
    if (evalSha === options.calibration.textSha256) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'refusing to calibrate on the evaluation text: the calibration and evaluation texts are identical', {
        source: options.calibration.textSource,
        hint: 'calibrate on calib.txt, evaluate on eval.txt (docs/evaluation.md)',
      });
    }
  }

  if (options.finetune) {
    // Refuse an impossible --train-mode, a flag the codec's training does not use, a model the trainer's graph
    // does not implement, a job that will not fit in memory, or a --resume without a checkpoint before encoding
    // every matrix, not after.
    validateFinetune(options.finetune, codec.id);
    assertTrainableConfig(config, model.path);
    const need = finetuneMemory(config, options.finetune, model.weights === null);
    assertMemoryFor('finetuning', need, model.path, 'finetuning holds the float model, the student and their optimizer state in memory: use a smaller model or a machine with more memory, or compress without --finetune-steps (streamed, one layer at a time)');
    const ft = options.finetune;
    finetuneProviderKind(codec.id, ft.mode ?? 'auto');
    if (ft.calibText !== undefined && (ft.data ?? 'calib') !== 'teacher' && options.measureQuality) {
      // The same document-level rule as the CLI (whitespace- and line-end-insensitive; supersets and pasted
      // stories count), so a library caller cannot train on the text it is then scored on.
      const err = overlapError(
        evaluationOverlap(ft.calibText, options.measureQuality.text),
        ft.calibSource ?? '--calib',
        options.measureQuality.textSource ?? '<evaluation text>',
      );
      if (err) throw err;
    }
  }

  // Temporary files of this output left by killed runs (`OUT.usk.tmp-<pid>-*`, dead writers only): removed on
  // every start, so a resumed run leaves none behind whether or not it gets as far as writing.
  if (options.output !== undefined) {
    // The library refuses what the CLI refuses: a bundle written over the model or tokenizer it reads.
    assertOutputNotInput(options.output, inputFiles(model));
    removeStaleTemporaries(options.output);
  }

  // Plan: every 2-D weight of the model with the codec that stores it, in model order.
  const plan: Array<{ name: string; codec: Codec; options: unknown; compressed: boolean }> = [];
  const withCodec = (c: { id: string; options: Record<string, unknown> }) => {
    const found = getCodec(c.id);
    return { codec: found, options: found.resolveOptions(c.options) };
  };
  for (const [name, shape] of expectedTensors(config)) {
    if (shape.length !== 2) continue;
    if (name === TensorNames.embedding) plan.push({ name, ...withCodec(emb), compressed: false });
    else if (name === TensorNames.classifier) plan.push({ name, ...withCodec(cls!), compressed: false });
    else {
      const kind = parseLinearName(name)!.kind;
      const planned = options.bpwPlan?.[name];
      const own = planned === undefined ? codecOptions : codec.resolveOptions({ ...(options.codecOptions ?? {}), bpw: planned });
      plan.push(layers.includes(kind) ? { name, codec, options: own, compressed: true } : { name, ...withCodec(keepFloat), compressed: false });
    }
  }

  // Budgets the codec cannot meet: refuse now (before encoding anything), or keep those matrices dense.
  const keptDense: KeptDense[] = [];
  const infeasible: Array<{ index: number; rows: number; cols: number; minBpw: number }> = [];
  const shapes = new Map(expectedTensors(config));
  // The budget refusals depend on a matrix's shape only: a streamed model's matrices are not read for them.
  const matrixFor = (name: string): Matrix => {
    const [rows, cols] = shapes.get(name)! as [number, number];
    return { data: model.weights?.tensors.get(name)?.data ?? new Float32Array(rows * cols), rows, cols };
  };
  plan.forEach((p, index) => {
    if (!p.compressed) return;
    const [rows, cols] = shapes.get(p.name)! as [number, number];
    const f = matrixFeasibility(codec.id, p.options as typeof codecOptions, rows, cols);
    if (f && !f.feasible) infeasible.push({ index, rows, cols, minBpw: f.minBpw });
  });
  if (infeasible.length > 0) {
    const compressedCount = plan.filter((p) => p.compressed).length;
    if (smallMatrix === 'error' || infeasible.length === compressedCount) {
      const worst = infeasible.reduce((a, b) => (b.minBpw > a.minBpw ? b : a));
      throw infeasibleRefusal(codec, codecOptions, plan, matrixFor, worst, infeasible, compressedCount, smallMatrix);
    }
    for (const x of infeasible) {
      const p = plan[x.index]!;
      keptDense.push({ name: p.name, rows: x.rows, cols: x.cols, minBpw: x.minBpw, reason: codecRefusal(codec, codecOptions, matrixFor, p.name) });
      plan[x.index] = { name: p.name, ...withCodec(keepFloat), compressed: false };
    }
  }

  // --train-dense with every linear compressed would train nothing: refuse before encoding. (With 'keep', an
  // encode-time refusal can still add a float linear; finetune() checks the final set.)
  if (options.finetune?.trainDense && smallMatrix === 'error' && plan.every((p) => p.compressed || !parseLinearName(p.name))) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `codec ${codec.id} compresses every linear (--layers ${layers.join(',')}); there is no float-stored linear to train`, {
      source: '--train-dense',
      hint: 'drop --train-dense, or leave some linear kinds in float with --layers',
    });
  }

  // Calibration statistics: given, computed now over the whole model in memory, or (streamed) layer by layer below.
  let saliency: ReadonlyMap<string, Float64Array> | undefined = options.saliency;
  let calibrationInfo: CalibrationInfo | undefined = options.calibration;
  let layerwise: LayerwiseCalibrator | undefined;
  const streamedSaliency = new Map<string, Float64Array>();
  if (saliencyUsed && options.calibrate) {
    const cal = options.calibrate;
    if (model.weights) {
      const c = calibrate({
        model: { weights: model.weights, tokenizer: model.tokenizer.tokenizer } as LoadedModel,
        text: cal.text,
        ...(cal.textSource === undefined ? {} : { textSource: cal.textSource }),
        ...(cal.maxTokens === undefined ? {} : { maxTokens: cal.maxTokens }),
        ...(cal.window === undefined ? {} : { window: cal.window }),
      });
      saliency = c.stats.meanSquare;
      calibrationInfo = c.info;
    } else {
      const tokens = calibrationTokens(model.tokenizer.tokenizer, cal.text, cal.maxTokens ?? DEFAULT_CALIB_TOKENS, cal.textSource);
      layerwise = new LayerwiseCalibrator(config, tokens, cal.window ?? defaultCalibrationWindow(config));
      saliency = streamedSaliency;
      calibrationInfo = { textSource: cal.textSource ?? '<calibration text>', textSha256: textSha256(cal.text), tokens: layerwise.tokens, window: layerwise.window, forward: layerwise.forward };
    }
  }

  // Tensors come from memory, or from the files one decoder layer at a time: a layer is read (every tensor's
  // header shape was checked against the config first), calibrated, encoded, and dropped when the next is read.
  const vectorsRead = new Map<string, Float32Array>();
  let layerCache: { layer: number; tensors: Map<string, Tensor> } | null = null;
  if (model.stream) checkSourceAgainstConfig(config, model.stream.tensors);
  const tensorOf = (name: string): Tensor => {
    const inMemory = model.weights?.tensors.get(name);
    if (inMemory) return inMemory;
    const src = model.stream!;
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (!m) return loadTensor(config, src.tensors, name, shapes.get(name)!);
    const layer = Number(m[1]);
    if (layerCache?.layer !== layer) {
      layerCache = null; // drop the previous layer before reading the next
      const tensors = loadLayer(config, src.tensors, layer);
      for (const [n, t] of tensors) if (t.shape.length === 1) vectorsRead.set(n, t.data);
      if (layerwise) for (const [n, v] of layerwise.layer(layer, tensors)) streamedSaliency.set(n, v);
      layerCache = { layer, tensors };
      options.calibrate?.onProgress?.({ layersDone: layer + 1, layersTotal: config.nLayers });
    }
    return layerCache.tensors.get(name)!;
  };

  // A vq-stored embedding/classifier fits its codebook to the rows weighted by 1 + how often the calibration
  // text uses each token (docs/results.md §11.1b: at 1.5 bits a value this is the difference between 42 and 25
  // perplexity of the float model on calibration windows). Without calibration text every row weighs the same.
  const embeddingRowWeights =
    options.calibrate !== undefined && (emb.id === 'vq' || cls?.id === 'vq')
      ? tokenRowWeights(calibrationTokens(model.tokenizer.tokenizer, options.calibrate.text, Number.MAX_SAFE_INTEGER, options.calibrate.textSource), config.vocabSize)
      : undefined;
  const weights = new Map<string, BundleWeightInput>();
  const perWeight: Record<string, WeightAccounting> = {};
  const compressedNames: string[] = [];
  // An rtn-stored embedding/classifier, decoded: finetuning trains the student with what the bundle will hold.
  // (f16/f32 storage differs from the float model by at most f16 rounding and is not passed.)
  const storedDecoded = new Map<string, Float32Array>();
  const decodedFor = (name: string) => options.finetune !== undefined && (name === TensorNames.embedding || name === TensorNames.classifier);
  for (let i = 0; i < plan.length; i++) {
    const { name, codec: c, options: o, compressed } = plan[i]!;
    const t = tensorOf(name);
    if (layerwise && name === TensorNames.embedding) layerwise.embed(t.data);
    const [rows, cols] = t.shape as [number, number];
    const wSeed = weightSeed(seed, name);
    const sal = compressed && saliencyUsed ? saliency!.get(name) : undefined;
    if (compressed && saliencyUsed && sal === undefined) {
      throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `no calibration statistics for ${name}`, {
        source: 'saliency',
        hint: 'calibrate() the same model (every linear) before compressing',
      });
    }
    let params;
    try {
      params =
        c.id === 'vq' && embeddingRowWeights !== undefined && (name === TensorNames.embedding || name === TensorNames.classifier)
          ? vqEncode(t.data, rows, cols, o as VqOptions, name, embeddingRowWeights)
          : c.encode(t.data, rows, cols, o, { name, seed: wSeed, ...(sal ? { saliency: sal } : {}) });
      if (decodedFor(name) && c.id !== 'float') storedDecoded.set(name, c.decode(params));
    } catch (err) {
      // A refusal the preflight could not foresee (e.g. a `mass` split's group sizes): same policy.
      if (!(compressed && smallMatrix === 'keep' && isUltraSketchError(err, ErrorCodes.INFEASIBLE_BUDGET))) throw err;
      keptDense.push({ name, rows, cols, minBpw: null, reason: err.problem });
      const kf = withCodec(keepFloat);
      plan[i] = { name, ...kf, compressed: false };
      params = kf.codec.encode(t.data, rows, cols, kf.options, { name, seed: wSeed });
      weights.set(name, {
        entry: { codec: kf.codec.id, version: kf.codec.version, options: kf.options, seed: wSeed, rows, cols },
        tensors: kf.codec.toTensors(params),
      });
      perWeight[name] = toWeightAccounting(kf.codec.id, rows, cols, kf.codec.bits(params));
      options.onProgress?.({ name, index: i, total: plan.length, codec: kf.codec.id });
      continue;
    }
    weights.set(name, {
      entry: { codec: c.id, version: c.version, options: o, seed: wSeed, rows, cols },
      tensors: c.toTensors(params),
    });
    perWeight[name] = toWeightAccounting(c.id, rows, cols, c.bits(params));
    if (compressed) compressedNames.push(name);
    options.onProgress?.({ name, index: i, total: plan.length, codec: c.id });
  }
  layerCache = null;
  layerwise?.finish();
  const tEncode = performance.now();

  // Finetuning and measuring quality need the whole float model: a streamed one is read now, its memory checked.
  let dense: LoadedModel | null = null;
  const denseModel = (): LoadedModel => {
    if (dense) return dense;
    if (model.weights) {
      const info = model.info();
      dense = { weights: model.weights, tokenizer: model.tokenizer.tokenizer, tokenizerInfo: model.tokenizer, tokenizerBytes: model.tokenizer.embed.bytes, source: info, description: null, dtypes: {} };
    } else dense = loadFromSource(model.stream!);
    return dense;
  };

  // Finetuning: train the compressed linears through their codec, store the trained parameters.
  let training: TrainingSection | null = null;
  let trainedNorms: Map<string, Float32Array> | null = null;
  if (options.finetune && compressedNames.length > 0) {
    const linears = new Map(
      compressedNames.map((name) => {
        const planned = options.bpwPlan?.[name];
        return [name, { seed: weightSeed(seed, name), ...(planned === undefined ? {} : { codecOptions: { ...(options.codecOptions ?? {}), bpw: planned } }) }];
      }),
    );
    const teacher = denseModel();
    const ft = await finetune({
      teacher: teacher.weights,
      tokenizer: model.tokenizer.tokenizer,
      codecId: codec.id,
      codecOptions: options.codecOptions ?? {},
      linears,
      ...(saliencyUsed ? { saliency: saliency! } : {}),
      seed,
      options: options.finetune,
      ...(storedDecoded.has(TensorNames.embedding)
        ? {
            storedEmbedding: {
              embedding: storedDecoded.get(TensorNames.embedding)!,
              ...(storedDecoded.has(TensorNames.classifier) ? { classifier: storedDecoded.get(TensorNames.classifier)! } : {}),
              storage: options.embeddings ?? 'f16',
            },
          }
        : {}),
    });
    for (const [name, { codecId, params }] of ft.params) {
      const c = getCodec(codecId);
      const entry = weights.get(name)!.entry;
      const o = codecId === entry.codec ? entry.options : c.resolveOptions({});
      weights.set(name, {
        entry: { ...entry, codec: c.id, version: c.version, options: o },
        tensors: c.toTensors(params as never),
      });
      const [rows, cols] = [entry.rows, entry.cols];
      perWeight[name] = toWeightAccounting(c.id, rows, cols, c.bits(params as never));
    }
    if (ft.norms.size > 0) trainedNorms = ft.norms;
    training = ft.section;
  }
  const tFinetune = performance.now();

  const vectors = new Map<string, Float32Array>();
  let normWeights = 0;
  for (const [name, shape] of expectedTensors(config)) {
    if (shape.length !== 1) continue;
    const v = trainedNorms?.get(name) ?? model.weights?.tensors.get(name)!.data ?? vectorsRead.get(name) ?? tensorOf(name).data;
    vectors.set(name, v);
    normWeights += v.length;
  }

  if (compressedNames.length === 0) {
    throw new UltraSketchError(ErrorCodes.INFEASIBLE_BUDGET, `codec ${codec.id}: no linear could be compressed at this target`, {
      hint: 'raise the target (--bpw)',
    });
  }
  keptDense.sort((a, b) => plan.findIndex((p) => p.name === a.name) - plan.findIndex((p) => p.name === b.name));
  const tok = model.tokenizer.embed;
  const packOptions = options.pack ? { pack: { deflateRaw: (b: Uint8Array) => deflateRawSync(b, { level: 9 }) } } : {};
  // As stored: format 3 (--pack) deflates the tokenizer, and the section must say what the file holds.
  const tokenizerBytes = storedTokenizerBytes(tok, packOptions);
  const groups = accountingGroups(perWeight, new Set(compressedNames), normWeights, tokenizerBytes);
  const accounting: StoredAccounting = {
    definition: ACCOUNTING_DEFINITION,
    params: parameterCount(config),
    linearBits: groups.compressedLinears.bits,
    linearWeights: groups.compressedLinears.weights,
    bpwLinears: groups.compressedLinears.bits / groups.compressedLinears.weights,
    linearCodec: { id: codec.id, version: codec.version, options: codecOptions },
    layers,
    compressedLinears: compressedNames,
    ...(keptDense.length > 0 ? { keptDense: keptDense.map((k) => k.name) } : {}),
    groups,
    weights: perWeight,
  };
  const source = model.info();
  const provenance: Provenance = {
    sourcePath: options.provenance?.sourcePath ?? source.path,
    sourceSha256: options.provenance?.sourceSha256 ?? source.sha256,
    sourceFormat: String(source.format),
    tool: TOOL_NAME,
    toolVersion: options.provenance?.toolVersion ?? PIPELINE_VERSION,
    command: options.provenance?.command ?? '',
    ...(saliencyUsed && calibrationInfo ? { calibration: calibrationInfo } : {}),
  };
  const input: BundleInput = {
    config: { ...config } as unknown as Record<string, unknown>,
    tokenizer: model.tokenizer.embed,
    weights,
    vectors,
    sections: { provenance, accounting, ...(training ? { training } : {}) },
  };

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
        [{ what: 'the float32 model', bytes: denseBytes(config) }, { what: 'its runtime copy', bytes: denseBytes(config) }],
        source.path,
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
  const report: CompressReport = {
    output: options.output ?? null,
    fileBytes: bytes.byteLength,
    bitsPerParam: (8 * bytes.byteLength) / params,
    bpwLinears: accounting.bpwLinears,
    bpwSelectedLinears: selectedBpw(perWeight, [...compressedNames, ...keptDense.map((k) => k.name)]),
    params,
    linearBits: accounting.linearBits,
    linearWeights: accounting.linearWeights,
    keptDense,
    saliencyUsed,
    codec: accounting.linearCodec,
    layers,
    embeddings,
    classifier: classifierStorage,
    seed,
    accounting,
    provenance,
    quality,
    training,
    seconds: {
      encode: (tEncode - t0) / 1000,
      finetune: (tFinetune - tEncode) / 1000,
      quality: (tQuality - tQuality0) / 1000,
      total: (performance.now() - t0) / 1000,
    },
  };
  return { bytes, report };
}

function selectedBpw(perWeight: Record<string, WeightAccounting>, names: string[]): number {
  let bits = 0;
  let n = 0;
  for (const name of names) {
    bits += perWeight[name]!.bits;
    n += perWeight[name]!.weights;
  }
  return bits / n;
}

/** The config a bundle stores (already validated when the bundle was read back). */
function bundleConfigOf(bundle: Bundle): ModelConfig {
  return bundle.config as unknown as ModelConfig;
}

/** A matrix with its shape (for a streamed model, zeros of that shape: the budget checks read only the shape). */
interface Matrix {
  data: Float32Array;
  rows: number;
  cols: number;
}

/** The codec's own refusal for one matrix (its encode checks the budget before any real work). */
function codecRefusal(codec: Codec, codecOptions: unknown, matrixFor: (name: string) => Matrix, name: string): string {
  const { data, rows, cols } = matrixFor(name);
  try {
    codec.encode(data, rows, cols, codecOptions, { name, seed: 0 });
  } catch (err) {
    if (isUltraSketchError(err, ErrorCodes.INFEASIBLE_BUDGET)) return err.problem;
    throw err;
  }
  return `codec ${codec.id} cannot meet the target on this ${rows}×${cols} matrix`;
}

function fmtBpw(x: number): string {
  return String(Math.round(x * 1e4) / 1e4);
}

function infeasibleRefusal(
  codec: Codec,
  codecOptions: unknown,
  plan: Array<{ name: string; compressed: boolean }>,
  matrixFor: (name: string) => Matrix,
  worst: { index: number; minBpw: number },
  infeasible: Array<{ index: number; rows: number; cols: number; minBpw: number }>,
  compressedCount: number,
  policy: SmallMatrixPolicy,
): UltraSketchError {
  const worstName = plan[worst.index]!.name;
  // Group the matrices by shape: "k_proj, v_proj (64×192, ≥ 0.6094 bpw) in every layer".
  const byShape = new Map<string, { kinds: Set<string>; minBpw: number }>();
  for (const x of infeasible) {
    const key = `${x.rows}×${x.cols}`;
    const g = byShape.get(key) ?? { kinds: new Set<string>(), minBpw: x.minBpw };
    g.kinds.add(parseLinearName(plan[x.index]!.name)?.kind ?? plan[x.index]!.name);
    g.minBpw = Math.max(g.minBpw, x.minBpw);
    byShape.set(key, g);
  }
  const shapes = [...byShape].map(([shape, g]) => `${[...g.kinds].join(', ')} ${shape} needs ≥ ${fmtBpw(g.minBpw)} bpw`).join('; ');
  const target = targetBpw(codecOptions);
  const all = infeasible.length === compressedCount;
  const problem =
    `${worstName}: ${codecRefusal(codec, codecOptions, matrixFor, worstName)}. ` +
    `At ${target ?? 'this'} bpw ${infeasible.length} of ${compressedCount} compressed linears are too small for codec ${codec.id} (${shapes}); ` +
    `the smallest target every compressed linear meets is ${fmtBpw(worst.minBpw)} bpw`;
  const hint = all
    ? `use --bpw ${fmtBpw(worst.minBpw)} or more${policy === 'keep' ? ' (--small-matrix keep cannot help: no linear would be compressed)' : ''}`
    : `use --bpw ${fmtBpw(worst.minBpw)} or more, leave those kinds out with --layers, or pass --small-matrix keep to store them in float f16 (listed in the report)`;
  return new UltraSketchError(ErrorCodes.INFEASIBLE_BUDGET, problem, { hint });
}

async function measureQuality(bundle: Bundle, model: LoadedModel, o: MeasureQualityOptions, bundleName?: string): Promise<QualitySection> {
  // The KV caches hold one window, not the model's whole seq_len (gigabytes for a 128k-context model).
  const window = o.window ?? defaultWindow('llama2c-documents', bundleConfigOf(bundle));
  const contextLength = Math.min(window, bundleConfigOf(bundle).seqLen);
  const session = o.makeSession ? o.makeSession(bundle) : sessionFromBundle(bundle, { contextLength });
  const reference = o.reference ?? NodeSession.fromWeights(model.weights, { contextLength });
  // A NaN/Inf in the bundle's (or the float model's) outputs is a NOT_FINITE error naming where, so a
  // broken bundle is never written with a NaN quality section.
  const r = await evaluate({
    session,
    reference,
    tokenizer: model.tokenizer,
    text: o.text,
    textSource: o.textSource ?? '<text>',
    windows: o.windows ?? 8,
    window,
    modelSource: `the compressed bundle${bundleName === undefined ? '' : ` (${bundleName})`}`,
    referenceSource: model.source.path,
  });
  return {
    protocol: r.protocol,
    textSource: o.textSource ?? '<text>',
    window: r.window,
    windows: r.windows,
    predictedTokens: r.predictedTokens,
    meanNll: r.meanNll,
    perplexity: r.perplexity,
    kl: r.kl!,
    top1: r.top1!,
    reference: r.reference!,
  };
}

/**
 * Load the float model to compress, in memory (any input format); a bundle is refused (no re-compression).
 * `compress` itself streams HF and GGUF models given by path instead.
 */
export function loadCheckpointForCompress(path: string, tokenizerPath?: string): LoadedModel {
  if (detectModelPath(path, 'checkpoint') === 'usk') {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'compress needs a float model; this is a .usk bundle', {
      source: path,
      hint: 'pass the model the bundle was made from (llama2.c checkpoint, HF directory or GGUF)',
    });
  }
  return loadModel(path, tokenizerPath === undefined ? {} : { tokenizerPath });
}

/** Every file compress reads from a model (weights, config, tokenizer), for the output-is-input check. */
function inputFiles(model: CompressInput): Array<{ path: string; what: string }> {
  const files = model.stream ? model.stream.files : model.info().files ?? [{ path: model.info().path, role: 'weights' as const, bytes: 0 }];
  const out = files.map((f) => ({ path: f.path, what: f.role === 'weights' ? 'checkpoint' : f.role === 'tokenizer' ? 'tokenizer' : f.role === 'index' ? 'shard index' : 'model config' }));
  const tokPath = model.info().tokenizerPath;
  if (!model.stream && tokPath && !out.some((f) => f.path === tokPath)) out.push({ path: tokPath, what: 'tokenizer' });
  return out;
}

/** 1 + the number of times each token id occurs: the row weights of a vq-stored embedding. */
export function tokenRowWeights(tokens: readonly number[], vocabSize: number): Float64Array {
  const w = new Float64Array(vocabSize).fill(1);
  for (const t of tokens) if (t >= 0 && t < vocabSize) w[t]! += 1;
  return w;
}
