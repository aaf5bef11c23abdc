import { registerAllCodecs } from './codecs.js';
import { type Codec, ErrorCodes, UltraSketchError, getCodec } from '@ultrasketch/core';
import {
  type Bundle,
  type BundleInput,
  type BundleWeightInput,
  readBundle,
  writeBundle,
} from '@ultrasketch/format';
import {
  LINEAR_KINDS,
  type LinearKind,
  TensorNames,
  expectedTensors,
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
import { type WriteAtomicOptions, writeFileAtomic } from './atomic.js';
import { type EvaluateResult, type ScoringSession, evaluate } from './evaluate.js';
import { type LoadedModel, loadModel } from './load.js';
import { looksLikeSafetensors } from './sniff.js';
import { PIPELINE_VERSION, TOOL_NAME } from './version.js';

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
export type EmbeddingStorage = 'f16' | 'f32' | 'rtn4' | 'rtn8';
export const EMBEDDING_STORAGES: readonly EmbeddingStorage[] = ['f16', 'f32', 'rtn4', 'rtn8'];

/** Group size of rtn-quantized embeddings: groups of 64 consecutive values along each embedding row. */
export const EMBEDDING_RTN_GROUP_SIZE = 64;

/** The codec and raw options that store an embedding-like matrix. */
export function embeddingCodec(storage: EmbeddingStorage, flag = '--embeddings'): { id: string; options: Record<string, unknown> } {
  switch (storage) {
    case 'f16':
    case 'f32':
      return { id: 'float', options: { dtype: storage } };
    case 'rtn4':
      return { id: 'rtn', options: { bits: 4, groupSize: EMBEDDING_RTN_GROUP_SIZE } };
    case 'rtn8':
      return { id: 'rtn', options: { bits: 8, groupSize: EMBEDDING_RTN_GROUP_SIZE } };
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

export interface CompressOptions {
  /** A loaded model, or the path of a llama2.c checkpoint. */
  model: LoadedModel | string;
  /** Tokenizer file when `model` is a path (default: found next to it). */
  tokenizerPath?: string;
  /** Codec id for the compressed linears ('rtn', 'binary', 'float', ...). */
  codec: string;
  /** Raw codec options (CLI flags or JSON), resolved with the codec's `resolveOptions`. */
  codecOptions?: Record<string, unknown>;
  /** Linear kinds to compress (array or 'q,k,v' list); default per codec (`defaultLayers`). */
  layers?: readonly string[] | string;
  /** Embedding storage; default 'f16'. */
  embeddings?: EmbeddingStorage;
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
  onProgress?(p: CompressProgress): void;
}

export interface CompressReport {
  output: string | null;
  fileBytes: number;
  /** 8 × fileBytes ÷ params: the bundle's real size (methods.md §4). */
  bitsPerParam: number;
  bpwLinears: number;
  params: number;
  linearBits: number;
  linearWeights: number;
  codec: { id: string; version: number; options: unknown };
  layers: LinearKind[];
  embeddings: EmbeddingStorage;
  classifier: EmbeddingStorage | null;
  seed: number;
  accounting: StoredAccounting;
  provenance: Provenance;
  quality: Record<string, unknown> | null;
  /** Wall-clock seconds (report only; never written into the bundle). */
  seconds: { encode: number; quality: number; total: number };
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
  const t0 = performance.now();
  registerAllCodecs();
  const model = typeof options.model === 'string' ? loadCheckpointForCompress(options.model, options.tokenizerPath) : options.model;
  if (!(model.tokenizerBytes instanceof Uint8Array)) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'the loaded model has no tokenizer bytes to embed', {
      source: model.source.path,
      hint: 'load it with loadModel() of this version',
    });
  }
  const config = model.weights.config;
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
      plan.push(layers.includes(kind) ? { name, codec, options: codecOptions, compressed: true } : { name, ...withCodec(keepFloat), compressed: false });
    }
  }

  const weights = new Map<string, BundleWeightInput>();
  const perWeight: Record<string, WeightAccounting> = {};
  const compressedNames: string[] = [];
  for (let i = 0; i < plan.length; i++) {
    const { name, codec: c, options: o, compressed } = plan[i]!;
    const t = model.weights.tensors.get(name)!;
    const [rows, cols] = t.shape as [number, number];
    const wSeed = weightSeed(seed, name);
    const params = c.encode(t.data, rows, cols, o, { name, seed: wSeed });
    weights.set(name, {
      entry: { codec: c.id, version: c.version, options: o, seed: wSeed, rows, cols },
      tensors: c.toTensors(params),
    });
    perWeight[name] = toWeightAccounting(c.id, rows, cols, c.bits(params));
    if (compressed) compressedNames.push(name);
    options.onProgress?.({ name, index: i, total: plan.length, codec: c.id });
  }
  const tEncode = performance.now();

  const vectors = new Map<string, Float32Array>();
  let normWeights = 0;
  for (const [name, shape] of expectedTensors(config)) {
    if (shape.length !== 1) continue;
    const v = model.weights.tensors.get(name)!.data;
    vectors.set(name, v);
    normWeights += v.length;
  }

  const groups = accountingGroups(perWeight, new Set(compressedNames), normWeights, model.tokenizerBytes.byteLength);
  const accounting: StoredAccounting = {
    definition: ACCOUNTING_DEFINITION,
    params: parameterCount(config),
    linearBits: groups.compressedLinears.bits,
    linearWeights: groups.compressedLinears.weights,
    bpwLinears: groups.compressedLinears.bits / groups.compressedLinears.weights,
    linearCodec: { id: codec.id, version: codec.version, options: codecOptions },
    layers,
    compressedLinears: compressedNames,
    groups,
    weights: perWeight,
  };
  const provenance: Provenance = {
    sourcePath: options.provenance?.sourcePath ?? model.source.path,
    sourceSha256: options.provenance?.sourceSha256 ?? model.source.sha256,
    sourceFormat: String(model.source.format),
    tool: TOOL_NAME,
    toolVersion: options.provenance?.toolVersion ?? PIPELINE_VERSION,
    command: options.provenance?.command ?? '',
  };
  const input: BundleInput = {
    config: { ...config } as unknown as Record<string, unknown>,
    tokenizer: { kind: 'llama2c', bytes: model.tokenizerBytes },
    weights,
    vectors,
    sections: { provenance, accounting },
  };

  let quality: Record<string, unknown> | null = options.quality ?? null;
  const tQuality0 = performance.now();
  if (options.measureQuality) {
    if (options.quality) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'pass either a quality section or measureQuality, not both');
    }
    // Measure the bundle exactly as it will be read: write it, read it back, run it with the fused kernels.
    const draft = writeBundle(input);
    const bundle = readBundle(draft, options.output ?? '<compressed bundle>');
    quality = { ...(await measureQuality(bundle, model, options.measureQuality)) };
  }
  const tQuality = performance.now();
  if (quality !== null) input.sections = { ...input.sections, quality };
  const bytes = writeBundle(input);
  if (options.output !== undefined) writeFileAtomic(options.output, bytes, options.writeOptions);

  const params = accounting.params;
  const report: CompressReport = {
    output: options.output ?? null,
    fileBytes: bytes.byteLength,
    bitsPerParam: (8 * bytes.byteLength) / params,
    bpwLinears: accounting.bpwLinears,
    params,
    linearBits: accounting.linearBits,
    linearWeights: accounting.linearWeights,
    codec: accounting.linearCodec,
    layers,
    embeddings,
    classifier: classifierStorage,
    seed,
    accounting,
    provenance,
    quality,
    seconds: {
      encode: (tEncode - t0) / 1000,
      quality: (tQuality - tQuality0) / 1000,
      total: (performance.now() - t0) / 1000,
    },
  };
  return { bytes, report };
}

async function measureQuality(bundle: Bundle, model: LoadedModel, o: MeasureQualityOptions): Promise<QualitySection> {
  const session = o.makeSession ? o.makeSession(bundle) : sessionFromBundle(bundle);
  const reference = o.reference ?? NodeSession.fromWeights(model.weights);
  const r = await evaluate({
    session,
    reference,
    tokenizer: model.tokenizer,
    text: o.text,
    textSource: o.textSource ?? '<text>',
    windows: o.windows ?? 8,
    ...(o.window === undefined ? {} : { window: o.window }),
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

function loadCheckpointForCompress(path: string, tokenizerPath: string | undefined): LoadedModel {
  if (looksLikeSafetensors(path)) {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'compress needs a float checkpoint; this is a safetensors/.usk file', {
      source: path,
      hint: 'pass the llama2.c checkpoint the bundle was made from',
    });
  }
  return loadModel(path, tokenizerPath === undefined ? {} : { tokenizerPath });
}
