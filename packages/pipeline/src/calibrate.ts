import { createHash } from 'node:crypto';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { LlamaForward } from '@ultrasketch/model';
import { wasmForwardParts, wasmSimdSupported } from '@ultrasketch/runtime-node';
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
  /** Window length (default the model's seq_len). */
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
  /** How the activations were computed. */
  forward: 'wasm-f32' | 'reference-f32';
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
    ...(options.window === undefined ? {} : { window: options.window }),
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
