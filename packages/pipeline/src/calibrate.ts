import { createHash } from 'node:crypto';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import {
  DenseLinear,
  type ForwardHooks,
  type ForwardParts,
  type LayerLinears,
  LINEAR_KINDS,
  type Linear,
  type LinearKind,
  LlamaForward,
  type ModelConfig,
  TensorNames,
  type TextTokenizer,
  biasKinds,
  layerTensors,
  linearShape,
} from '@ultrasketch/model';
import { WasmArena, WasmAttention, WasmDenseLinear, wasmForwardParts, wasmSimdSupported } from '@ultrasketch/runtime-node';
import { type SaliencyProgress, type SaliencyStats, collectSaliency } from '@ultrasketch/saliency';
import type { LoadedModel } from './load.js';
import { comparableDocuments, splitDocuments } from './text.js';

/**
 * Calibration for codecs that use activation statistics (docs/evaluation.md: calibration never sees
 * evaluation text):
 * - `codecUsesSaliency(id, options)` — whether a codec, with these resolved options, reads `ctx.saliency`;
 * - `assertNotEvaluationText(...)` — refuse a calibration text that is the evaluation text;
 * - `calibrate(...)` — run the float model over the first N tokens of the calibration text and collect
 *   E[a_j²] per input channel of every linear (`@ultrasketch/saliency`).
 */

/**
 * The calibration window when none is given: the model's seq_len, at most 2048 positions (a 128k-context model's
 * seq_len would make one window of every calibration token, and attention quadratic in it).
 */
export function defaultCalibrationWindow(config: ModelConfig): number {
  return Math.min(config.seqLen, 2048);
}

/** The default number of calibration tokens (`--calib-tokens`). */
export const DEFAULT_CALIB_TOKENS = 4096;

/**
 * Which codecs read ctx.saliency, and when. `sketch` scores input channels by E[a_j²]·‖W[:,j]‖² to split them
 * into channel groups, so it uses saliency when groups > 1 (with one group there is nothing to split).
 * `littlebit` with `refineObjective: 'activation'` weights its refinement objective by E[a_j²] (its resolved
 * options carry the key only then). Other codecs ignore it. Packages that add codecs may register theirs with
 * `setSaliencyUse`.
 */
const SALIENCY_USE = new Map<string, (options: Record<string, unknown>) => boolean>([
  ['sketch', (o) => typeof o.groups === 'number' && o.groups > 1],
  ['littlebit', (o) => o.refineObjective === 'activation'],
]);

export function codecUsesSaliency(codecId: string, resolvedOptions: unknown): boolean {
  const f = SALIENCY_USE.get(codecId);
  return f !== undefined && typeof resolvedOptions === 'object' && resolvedOptions !== null && f(resolvedOptions as Record<string, unknown>);
}

export function setSaliencyUse(codecId: string, uses: (options: Record<string, unknown>) => boolean): void {
  SALIENCY_USE.set(codecId, uses);
}

/** A text file as read, for the evaluation-text guard. */
export interface TextFile {
  path: string;
  bytes: Uint8Array;
}

/**
 * Documents shorter than this many characters (after `comparableDocuments`) are left out of the overlap
 * count: short paragraphs such as "The end." recur in unrelated stories (calib.txt and eval.txt share it).
 */
export const OVERLAP_MIN_DOCUMENT_CHARS = 64;
/**
 * The share of documents two texts may have in common before the calibration text counts as containing
 * evaluation text: shared ≥ this × the smaller text's document count (documents ≥ OVERLAP_MIN_DOCUMENT_CHARS,
 * distinct) is refused. 1 % tolerates the odd duplicate story of a large corpus (TinyStories repeats some),
 * and still refuses any real copy: a superset (evaluation text appended), a subset, or a few stories pasted in.
 */
export const OVERLAP_MAX_FRACTION = 0.01;

/** How much of the evaluation text a calibration text contains. */
export interface TextOverlap {
  /** The two texts have the same documents in the same order (after `comparableDocuments`). */
  identical: boolean;
  /** Distinct evaluation documents (≥ OVERLAP_MIN_DOCUMENT_CHARS) that appear in the calibration text. */
  shared: number;
  /** Distinct such documents in each text. */
  calibrationDocuments: number;
  evaluationDocuments: number;
  /** Whether this overlap is refused (identical, or shared ≥ OVERLAP_MAX_FRACTION × the smaller count). */
  refused: boolean;
}

/** Compare a calibration text with an evaluation text document by document (rule: OVERLAP_MAX_FRACTION). */
export function evaluationOverlap(calibrationText: string, evaluationText: string): TextOverlap {
  const cal = comparableDocuments(calibrationText);
  const ev = comparableDocuments(evaluationText);
  const identical = cal.length > 0 && cal.length === ev.length && cal.every((d, i) => d === ev[i]);
  const long = (docs: string[]) => new Set(docs.filter((d) => d.length >= OVERLAP_MIN_DOCUMENT_CHARS));
  const calSet = long(cal);
  const evSet = long(ev);
  let shared = 0;
  for (const d of evSet) if (calSet.has(d)) shared++;
  const smaller = Math.min(calSet.size, evSet.size);
  return {
    identical,
    shared,
    calibrationDocuments: calSet.size,
    evaluationDocuments: evSet.size,
    refused: identical || (shared > 0 && shared >= OVERLAP_MAX_FRACTION * smaller),
  };
}

/** The rule in words, for hints and docs. */
export const OVERLAP_RULE =
  `texts are compared document by document after normalizing whitespace, line ends (CRLF) and blank lines; ` +
  `a calibration text with the same documents, or sharing ${OVERLAP_MAX_FRACTION * 100} % or more of the smaller text's ` +
  `documents of ≥ ${OVERLAP_MIN_DOCUMENT_CHARS} characters, is refused`;

/** The refusal for a calibration text that overlaps an evaluation text (undefined when it does not). */
export function overlapError(overlap: TextOverlap, calibrationSource: string, evaluationSource: string, flag = '--calib'): UltraSketchError | undefined {
  if (!overlap.refused) return undefined;
  const why = overlap.identical
    ? `it has the same documents as the evaluation text ${evaluationSource} (differing at most in whitespace or line ends)`
    : `${overlap.shared} of the ${overlap.evaluationDocuments} documents of the evaluation text ${evaluationSource} appear in it ` +
      `(it has ${overlap.calibrationDocuments})`;
  return new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `refusing to calibrate on the evaluation text: ${why}`, {
    source: calibrationSource,
    hint:
      `calibrate on text that shares no documents with the evaluation text (${flag} ../shared/data/tinystories/calib.txt); ` +
      `${OVERLAP_RULE}; docs/cli.md`,
  });
}

/**
 * Refuse (BAD_ARGUMENT) to calibrate on evaluation text: a calibration file named `eval.txt`, the same file
 * as any of `evaluation` (by real path, or device + inode for a hard link), the same bytes, the same documents
 * up to whitespace and line ends, or a text that contains evaluation documents (`evaluationOverlap`: a
 * superset such as the evaluation text appended, a subset, or more than a trace of shared documents).
 */
export function assertNotEvaluationText(calibration: TextFile, evaluation: readonly TextFile[], flag = '--calib'): void {
  const refuse = (why: string): never => {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `refusing to calibrate on the evaluation text: ${why}`, {
      source: calibration.path,
      hint: `calibrate on text the model is never evaluated on (${flag} ../shared/data/tinystories/calib.txt); ${OVERLAP_RULE}; docs/cli.md`,
    });
  };
  if (basename(calibration.path) === 'eval.txt') refuse('the calibration file is eval.txt');
  const calId = fileIdentity(calibration.path);
  const calHash = sha256(calibration.bytes);
  const decode = (b: Uint8Array) => new TextDecoder('utf-8').decode(b);
  const calText = decode(calibration.bytes);
  for (const e of evaluation) {
    const evId = fileIdentity(e.path);
    if (evId.real === calId.real || (evId.inode !== undefined && evId.inode === calId.inode)) {
      refuse(`it is the same file as the evaluation text ${e.path}`);
    }
    if (e.bytes.byteLength === calibration.bytes.byteLength && sha256(e.bytes) === calHash) {
      refuse(`it has exactly the same content as the evaluation text ${e.path}`);
    }
    const err = overlapError(evaluationOverlap(calText, decode(e.bytes)), calibration.path, e.path, flag);
    if (err) throw err;
  }
}

/** A path's real path and (when it exists) device + inode, so hard links compare equal. */
function fileIdentity(path: string): { real: string; inode?: string } {
  if (!existsSync(path)) return { real: resolve(path) };
  const st = statSync(path, { bigint: true });
  return { real: realpathSync(path), inode: `${st.dev}:${st.ino}` };
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export interface CalibrateOptions {
  /** The float model (its tokenizer encodes the text). */
  model: LoadedModel;
  /** Calibration text: documents separated by blank lines. */
  text: string;
  /** Its name (a path), for messages and provenance. */
  textSource?: string;
  /** Use the first N tokens of the document stream (default DEFAULT_CALIB_TOKENS). */
  maxTokens?: number;
  /** Window length (default the model's seq_len, at most 2048). */
  window?: number;
  /** Only these linear names (default: every linear but the classifier). */
  include?(name: string): boolean;
  /**
   * The float forward that produces the activations: 'wasm' (runtime-node's WebAssembly SIMD kernels, ~2.5×
   * faster), 'reference' (the model package's JS forward, float64 dot products), 'auto' (default: wasm when
   * the engine supports SIMD). The two differ by ~1e-6 relative in E[a²].
   */
  forward?: 'auto' | 'wasm' | 'reference';
  onProgress?(p: SaliencyProgress): void;
}

/** What `calibrate` measured, and what a bundle's provenance records about it. */
export interface Calibration {
  stats: SaliencyStats;
  info: CalibrationInfo;
}

export interface CalibrationInfo {
  textSource: string;
  textSha256: string;
  tokens: number;
  window: number;
  /** How the activations were computed (layer by layer when the model was streamed). */
  forward: 'wasm-f32' | 'reference-f32' | 'wasm-f32-layerwise' | 'reference-f32-layerwise';
}

/**
 * Per-linear E[a_j²] from the first `maxTokens` tokens of the calibration text (documents with BOS, one
 * stream, windows of the model's seq_len, each from an empty cache), through runtime-node's wasm kernels when
 * the engine has WebAssembly SIMD (else the model package's reference JS forward; `forward` forces either;
 * the choice is recorded). Deterministic for a given forward.
 */
export function calibrate(options: CalibrateOptions): Calibration {
  const { model, text } = options;
  const source = options.textSource ?? '<calibration text>';
  const maxTokens = options.maxTokens ?? DEFAULT_CALIB_TOKENS;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `calibration tokens must be a positive integer, got ${maxTokens}`, {
      source: '--calib-tokens',
    });
  }
  // Encode documents only until there are enough tokens (the whole file is not needed).
  const tokens: number[] = [];
  for (const doc of splitDocuments(text)) {
    if (tokens.length >= maxTokens) break;
    for (const t of model.tokenizer.encode(doc, { bos: true, eos: false })) tokens.push(t);
  }
  if (tokens.length === 0) {
    throw new UltraSketchError(ErrorCodes.EMPTY_INPUT, 'the calibration text contains no documents', {
      source,
      hint: 'pass a calibration text with content (--calib FILE)',
    });
  }
  const choice = options.forward ?? 'auto';
  const useWasm = choice === 'wasm' || (choice === 'auto' && wasmSimdSupported());
  const forward = useWasm ? new LlamaForward(wasmForwardParts(model.weights)) : LlamaForward.fromWeights(model.weights);
  const stats = collectSaliency({
    forward,
    tokens: tokens.length > maxTokens ? tokens.slice(0, maxTokens) : tokens,
    maxTokens,
    window: options.window ?? defaultCalibrationWindow(model.weights.config),
    ...(options.include ? { include: options.include } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
  return {
    stats,
    info: {
      textSource: source,
      textSha256: sha256(new TextEncoder().encode(text)),
      tokens: stats.tokens,
      window: stats.window,
      forward: useWasm ? 'wasm-f32' : 'reference-f32',
    },
  };
}

// ------------------------------------------------------------------------------------ layer by layer

/**
 * Calibration for a model that is never in memory whole (compression streams it one layer at a time): the hidden
 * states of every calibration token are kept ([tokens, dim] float32: 32 MB for 4,096 tokens at dim 2048) and
 * pushed through one decoder layer at a time, while that layer's weights are loaded. The statistics are those of
 * `calibrate` — the same windows (each from an empty cache, positions restarting at 0), the same E[a_j²] per
 * input channel of every linear, accumulated in float64 — computed layer by layer instead of window by window.
 *
 * Each layer runs as a one-layer model through the model package's forward pass (so biases, q/k norms, head
 * width and RoPE scaling mean what they mean everywhere else), whose "embedding" looks up rows of the hidden
 * states: token id i stands for calibration position i. The linears run on runtime-node's WebAssembly SIMD
 * kernels when the engine has them (recorded as 'wasm-f32-layerwise'), else the reference JS forward.
 */
export class LayerwiseCalibrator {
  readonly tokens: number;
  readonly window: number;
  readonly forward: 'wasm-f32-layerwise' | 'reference-f32-layerwise';
  private hidden: Float32Array | null = null;
  private readonly stream: Int32Array;

  constructor(
    private readonly config: ModelConfig,
    tokens: readonly number[],
    window = defaultCalibrationWindow(config),
    forward: 'auto' | 'wasm' | 'reference' = 'auto',
  ) {
    if (tokens.length === 0) {
      throw new UltraSketchError(ErrorCodes.EMPTY_INPUT, 'no calibration tokens', { hint: 'pass a non-empty calibration text and a positive --calib-tokens' });
    }
    if (!Number.isInteger(window) || window < 1 || window > config.seqLen) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `calibration window ${window} must be in 1..${config.seqLen}`);
    }
    this.tokens = tokens.length;
    this.window = window;
    this.stream = Int32Array.from(tokens);
    const useWasm = forward === 'wasm' || (forward === 'auto' && wasmSimdSupported());
    this.forward = useWasm ? 'wasm-f32-layerwise' : 'reference-f32-layerwise';
  }

  /** Start from the token embeddings (the [vocab, dim] table, read once for the embedding's own encode). */
  embed(table: Float32Array): void {
    const dim = this.config.dim;
    const hidden = new Float32Array(this.tokens * dim);
    for (let i = 0; i < this.tokens; i++) {
      const t = this.stream[i]!;
      hidden.set(table.subarray(t * dim, (t + 1) * dim), i * dim);
    }
    this.hidden = hidden;
  }

  /**
   * Run decoder layer `layer` (its tensors under canonical names) over every calibration window; return E[a_j²]
   * of its linears by canonical name, and advance the hidden states to the layer's output.
   */
  layer(layer: number, tensors: ReadonlyMap<string, { data: Float32Array }>): Map<string, Float64Array> {
    const hidden = this.hidden;
    if (!hidden) throw new Error('LayerwiseCalibrator.layer() before embed()');
    const c = this.config;
    const dim = c.dim;
    const one: ModelConfig = { ...c, nLayers: 1, vocabSize: this.tokens, tiedClassifier: true };
    const get = (name: string) => {
      const t = tensors.get(name);
      if (!t) throw new Error(`LayerwiseCalibrator: tensor ${name} was not loaded`);
      return t.data;
    };
    let arena: WasmArena | undefined;
    const linear = (kind: LinearKind): Linear => {
      const [rows, cols] = linearShape(c, kind);
      const w = get(TensorNames.linear(layer, kind));
      if (this.forward === 'reference-f32-layerwise') return new DenseLinear(w, rows, cols);
      arena ??= new WasmArena({ initialBytes: layerTensors(c, layer).reduce((n, [, s]) => n + 4 * s.reduce((a, b) => a * b, 1), 0) + (8 << 20) });
      return new WasmDenseLinear(arena, w, rows, cols);
    };
    const linears = {} as LayerLinears;
    for (const kind of LINEAR_KINDS) linears[kind] = linear(kind);
    const kinds = biasKinds(c);
    const parts: ForwardParts = {
      config: one,
      embedding: {
        lookup: (token, out, offset) => out.set(hidden.subarray(token * dim, (token + 1) * dim), offset),
      },
      attnNorm: [get(TensorNames.attnNorm(layer))],
      ffnNorm: [get(TensorNames.ffnNorm(layer))],
      finalNorm: new Float32Array(dim).fill(1),
      layers: [linears],
      // Never applied: the forward runs with logits 'none'.
      classifier: { inFeatures: dim, outFeatures: this.tokens, apply: () => { throw new Error('calibration computes no logits'); } },
      ...(kinds.length > 0 ? { attnBias: [Object.fromEntries(kinds.map((k) => [k, get(TensorNames.bias(layer, k))]))] } : {}),
      ...(c.qkNorm ? { qNorm: [get(TensorNames.qNorm(layer))], kNorm: [get(TensorNames.kNorm(layer))] } : {}),
      // The same attention as the whole-model wasm forward (wasmForwardParts), so both give the same statistics.
      ...(this.forward === 'wasm-f32-layerwise' && WasmAttention.supports(one) ? { attention: new WasmAttention(one) } : {}),
    };
    const fwd = new LlamaForward(parts);
    const sums = new Map<string, Float64Array>();
    const prefix = 'model.layers.0.';
    const hooks: ForwardHooks = {
      onLinearInput(name, x, n, inFeatures) {
        if (!name.startsWith(prefix)) return;
        const real = `model.layers.${layer}.${name.slice(prefix.length)}`;
        let acc = sums.get(real);
        if (!acc) {
          acc = new Float64Array(inFeatures);
          sums.set(real, acc);
        }
        for (let t = 0; t < n; t++) {
          const o = t * inFeatures;
          for (let j = 0; j < inFeatures; j++) acc[j] = acc[j]! + x[o + j]! * x[o + j]!;
        }
      },
      onLayerOutput(_l, x, n) {
        // The window's rows of the hidden states become the layer's output (its input rows were already copied
        // into the forward's own buffer by the embedding lookup).
        hidden.set(x.subarray(0, n * dim), windowStart * dim);
      },
    };
    const cache = fwd.createCache(Math.min(this.window, this.tokens));
    const ids: number[] = [];
    let windowStart = 0;
    for (let start = 0; start < this.tokens; start += this.window) {
      const end = Math.min(start + this.window, this.tokens);
      ids.length = 0;
      for (let i = start; i < end; i++) ids.push(i);
      windowStart = start;
      cache.reset();
      fwd.forward(ids, cache, { logits: 'none', hooks });
    }
    const out = new Map<string, Float64Array>();
    for (const [name, acc] of sums) out.set(name, acc.map((v) => v / this.tokens));
    return out;
  }

  /** Free the hidden states. */
  finish(): void {
    this.hidden = null;
  }
}

/** The first `maxTokens` tokens of a calibration text (documents with BOS, as `calibrate` encodes them). */
export function calibrationTokens(tokenizer: TextTokenizer, text: string, maxTokens: number, source = '<calibration text>'): number[] {
  if (!Number.isInteger(maxTokens) || maxTokens < 1) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `calibration tokens must be a positive integer, got ${maxTokens}`, { source: '--calib-tokens' });
  }
  const tokens: number[] = [];
  for (const doc of splitDocuments(text)) {
    if (tokens.length >= maxTokens) break;
    for (const t of tokenizer.encode(doc, { bos: true, eos: false })) tokens.push(t);
  }
  if (tokens.length === 0) {
    throw new UltraSketchError(ErrorCodes.EMPTY_INPUT, 'the calibration text contains no documents', { source, hint: 'pass a calibration text with content (--calib FILE)' });
  }
  return tokens.length > maxTokens ? tokens.slice(0, maxTokens) : tokens;
}

/** SHA-256 of a text's UTF-8 bytes (provenance of calibration text). */
export function textSha256(text: string): string {
  return sha256(new TextEncoder().encode(text));
}
