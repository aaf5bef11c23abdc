import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { ByteReader } from './byteReader.js';
import { LIMITS } from './limits.js';

/**
 * llama2.c checkpoints, in the two layouts real files use:
 * - legacy: 7 × int32 header, then float32 arrays (grouped by kind across layers), then the unused
 *   legacy RoPE tables `freq_cis_real/imag[seq_len, head_size/2]`, then the classifier when not shared
 *   (signalled by a negative vocab_size);
 * - version 2: a 256-byte header (magic "ak42", version 2, the 7 config ints, uint8 shared_classifier,
 *   int32 group_size, zero padding), float32 norms, then every matrix as int8 values followed by one
 *   float32 scale per group of `group_size` consecutive values ("Q8_0"). We dequantize on load.
 * Names are llama2.c's own; `@ultrasketch/model` maps them to canonical Hugging Face names.
 */

export const LLAMA2C_MAGIC = 0x616b3432; // "ak42" read as little-endian uint32
export const LLAMA2C_V2_HEADER_BYTES = 256;
const LEGACY_HEADER_BYTES = 7 * 4;

export interface Llama2cConfig {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** Always positive here; `sharedClassifier` carries what the sign meant in the legacy layout. */
  vocabSize: number;
  seqLen: number;
  sharedClassifier: boolean;
}

/** Float32 weights in llama2.c's own grouping: per-layer arrays are indexed by layer. */
export interface Llama2cWeights {
  tokenEmbedding: Float32Array; // [vocab, dim]
  rmsAtt: Float32Array[]; // L × [dim]
  wq: Float32Array[]; // L × [dim, dim]
  wk: Float32Array[]; // L × [kvDim, dim]
  wv: Float32Array[]; // L × [kvDim, dim]
  wo: Float32Array[]; // L × [dim, dim]
  rmsFfn: Float32Array[]; // L × [dim]
  w1: Float32Array[]; // L × [hidden, dim]
  w2: Float32Array[]; // L × [dim, hidden]
  w3: Float32Array[]; // L × [hidden, dim]
  rmsFinal: Float32Array; // [dim]
  /** Present only when the classifier is not shared with the token embedding. */
  classifier?: Float32Array; // [vocab, dim]
}

export type Llama2cLayout = 'legacy-f32' | 'v2-q8_0';

export interface Llama2cCheckpoint {
  layout: Llama2cLayout;
  config: Llama2cConfig;
  /** Quantization group size of a v2 file (undefined for legacy). */
  groupSize?: number;
  weights: Llama2cWeights;
}

/** Element counts of every array, derived from the config (shared by reader, writer and size checks). */
export function llama2cShapes(c: Llama2cConfig) {
  const headSize = c.dim / c.nHeads;
  const kvDim = headSize * c.nKvHeads;
  return {
    headSize,
    kvDim,
    embedding: c.vocabSize * c.dim,
    norm: c.dim,
    wq: c.dim * c.dim,
    wk: kvDim * c.dim,
    wv: kvDim * c.dim,
    wo: c.dim * c.dim,
    w1: c.hiddenDim * c.dim,
    w2: c.dim * c.hiddenDim,
    w3: c.hiddenDim * c.dim,
    freqCis: c.seqLen * (headSize / 2),
  };
}

function bad(source: string, code: (typeof ErrorCodes)[keyof typeof ErrorCodes], problem: string, hint?: string): never {
  throw new UltraSketchError(code, problem, { source, hint: hint ?? 'this is not a valid llama2.c checkpoint' });
}

/**
 * Validate the seven header integers; every later size computation relies on this. Exported so the
 * writer refuses exactly the configs the reader would refuse.
 */
export function validateLlama2cConfig(c: Llama2cConfig, source: string): void {
  const check = (name: string, v: number, max: number) => {
    if (!Number.isInteger(v) || v <= 0 || v > max) {
      bad(source, ErrorCodes.BAD_DIMENSION, `header field ${name} = ${v} is outside 1..${max}`);
    }
  };
  check('dim', c.dim, LIMITS.maxModelDim);
  check('hidden_dim', c.hiddenDim, LIMITS.maxModelDim);
  check('n_layers', c.nLayers, LIMITS.maxLayers);
  check('n_heads', c.nHeads, LIMITS.maxHeads);
  check('n_kv_heads', c.nKvHeads, LIMITS.maxHeads);
  check('vocab_size', c.vocabSize, LIMITS.maxVocab);
  check('seq_len', c.seqLen, LIMITS.maxSeqLen);
  if (c.dim % c.nHeads !== 0) {
    bad(source, ErrorCodes.BAD_DIMENSION, `dim ${c.dim} is not divisible by n_heads ${c.nHeads}`);
  }
  if ((c.dim / c.nHeads) % 2 !== 0) {
    bad(source, ErrorCodes.BAD_DIMENSION, `head size ${c.dim / c.nHeads} is odd; RoPE needs pairs`);
  }
  if (c.nKvHeads > c.nHeads || c.nHeads % c.nKvHeads !== 0) {
    bad(source, ErrorCodes.BAD_DIMENSION, `n_kv_heads ${c.nKvHeads} does not divide n_heads ${c.nHeads}`);
  }
}

/** Total bytes a legacy file with this config must have. */
export function legacyFileBytes(c: Llama2cConfig): number {
  const s = llama2cShapes(c);
  const L = c.nLayers;
  const floats =
    s.embedding +
    L * (2 * s.norm + s.wq + s.wk + s.wv + s.wo + s.w1 + s.w2 + s.w3) +
    s.norm +
    2 * s.freqCis +
    (c.sharedClassifier ? 0 : s.embedding);
  return LEGACY_HEADER_BYTES + 4 * floats;
}

/** Total bytes a v2 file with this config and group size must have. */
export function v2FileBytes(c: Llama2cConfig, groupSize: number): number {
  const s = llama2cShapes(c);
  const L = c.nLayers;
  const q = (n: number) => n + 4 * (n / groupSize);
  return (
    LLAMA2C_V2_HEADER_BYTES +
    4 * (2 * L * s.norm + s.norm) +
    q(s.embedding) +
    L * (q(s.wq) + q(s.wk) + q(s.wv) + q(s.wo) + q(s.w1) + q(s.w2) + q(s.w3)) +
    (c.sharedClassifier ? 0 : q(s.embedding))
  );
}

function checkExactSize(bytes: Uint8Array, expected: number, source: string, layout: string): void {
  if (bytes.byteLength < expected) {
    bad(
      source,
      ErrorCodes.TRUNCATED,
      `file is truncated: the ${layout} header describes ${expected} bytes but the file has ${bytes.byteLength}`,
      'the file is incomplete or corrupt; re-export or re-download it',
    );
  }
  if (bytes.byteLength > expected) {
    bad(
      source,
      ErrorCodes.TRAILING_DATA,
      `file has ${bytes.byteLength - expected} bytes beyond the ${expected} its ${layout} header describes`,
      'the header does not match the data; the file may be a different format or corrupt',
    );
  }
}

/** Does this look like a llama2.c versioned ("ak42") file? */
export function isLlama2cVersioned(bytes: Uint8Array): boolean {
  return bytes.byteLength >= 4 && new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true) === LLAMA2C_MAGIC;
}

/**
 * Read a llama2.c checkpoint of either layout. The layout is recognised by the "ak42" magic.
 * All sizes are validated against the file length before anything is allocated.
 */
export function readLlama2cCheckpoint(bytes: Uint8Array, source = '<checkpoint>'): Llama2cCheckpoint {
  if (bytes.byteLength < LEGACY_HEADER_BYTES) {
    bad(
      source,
      ErrorCodes.TRUNCATED,
      `file is truncated: ${bytes.byteLength} bytes is shorter than any llama2.c header`,
      'the file is incomplete or is not a llama2.c checkpoint',
    );
  }
  return isLlama2cVersioned(bytes) ? readVersioned(bytes, source) : readLegacy(bytes, source);
}

function readHeaderInts(r: ByteReader): Omit<Llama2cConfig, 'sharedClassifier'> {
  return {
    dim: r.i32('header dim'),
    hiddenDim: r.i32('header hidden_dim'),
    nLayers: r.i32('header n_layers'),
    nHeads: r.i32('header n_heads'),
    nKvHeads: r.i32('header n_kv_heads'),
    vocabSize: r.i32('header vocab_size'),
    seqLen: r.i32('header seq_len'),
  };
}

function readLegacy(bytes: Uint8Array, source: string): Llama2cCheckpoint {
  const r = new ByteReader(bytes, source);
  const h = readHeaderInts(r);
  // A negative vocab_size is the legacy layout's way of saying "a separate classifier follows".
  const config: Llama2cConfig = { ...h, vocabSize: Math.abs(h.vocabSize), sharedClassifier: h.vocabSize > 0 };
  validateLlama2cConfig(config, source);
  checkExactSize(bytes, legacyFileBytes(config), source, 'legacy llama2.c');
  const s = llama2cShapes(config);
  const L = config.nLayers;
  const perLayer = (n: number, what: string) =>
    Array.from({ length: L }, (_, l) => r.f32Array(n, `${what}[${l}]`));
  const tokenEmbedding = r.f32Array(s.embedding, 'token_embedding');
  const rmsAtt = perLayer(s.norm, 'rms_att');
  const wq = perLayer(s.wq, 'wq');
  const wk = perLayer(s.wk, 'wk');
  const wv = perLayer(s.wv, 'wv');
  const wo = perLayer(s.wo, 'wo');
  const rmsFfn = perLayer(s.norm, 'rms_ffn');
  const w1 = perLayer(s.w1, 'w1');
  const w2 = perLayer(s.w2, 'w2');
  const w3 = perLayer(s.w3, 'w3');
  const rmsFinal = r.f32Array(s.norm, 'rms_final');
  r.take(2 * s.freqCis * 4, 'legacy freq_cis tables'); // unused: RoPE is recomputed
  const weights: Llama2cWeights = { tokenEmbedding, rmsAtt, wq, wk, wv, wo, rmsFfn, w1, w2, w3, rmsFinal };
  if (!config.sharedClassifier) weights.classifier = r.f32Array(s.embedding, 'classifier');
  return { layout: 'legacy-f32', config, weights };
}

function readVersioned(bytes: Uint8Array, source: string): Llama2cCheckpoint {
  const r = new ByteReader(bytes, source);
  r.need(LLAMA2C_V2_HEADER_BYTES, 'the 256-byte version-2 header');
  r.u32('magic');
  const version = r.i32('version');
  if (version !== 2) {
    bad(
      source,
      ErrorCodes.BAD_VERSION,
      `llama2.c checkpoint version ${version} is not supported (this reader handles the legacy layout and version 2)`,
      'export the model with llama2.c export.py --version 2, or in the legacy format',
    );
  }
  const h = readHeaderInts(r);
  const shared = r.u8('shared_classifier');
  if (shared > 1) bad(source, ErrorCodes.BAD_HEADER, `shared_classifier byte is ${shared}, expected 0 or 1`);
  const groupSize = r.i32('group_size');
  const config: Llama2cConfig = { ...h, sharedClassifier: shared === 1 };
  validateLlama2cConfig(config, source);
  if (!Number.isInteger(groupSize) || groupSize <= 0 || groupSize > LIMITS.maxGroupSize) {
    bad(source, ErrorCodes.BAD_DIMENSION, `group_size ${groupSize} is outside 1..${LIMITS.maxGroupSize}`);
  }
  // Groups run over each tensor flattened, and every tensor has `dim` as a factor of its element count,
  // so `dim % group_size === 0` is exactly what makes every tensor a whole number of groups (it is also
  // the only condition llama2.c's export.py enforces). Requiring hidden_dim or kv_dim to be multiples
  // too would reject valid files.
  if (config.dim % groupSize !== 0) {
    bad(source, ErrorCodes.BAD_DIMENSION, `dim ${config.dim} is not a multiple of group_size ${groupSize}`);
  }
  const s = llama2cShapes(config);
  checkExactSize(bytes, v2FileBytes(config, groupSize), source, 'version-2 llama2.c');
  r.offset = LLAMA2C_V2_HEADER_BYTES;
  const L = config.nLayers;
  const rmsAtt = Array.from({ length: L }, (_, l) => r.f32Array(s.norm, `rms_att[${l}]`));
  const rmsFfn = Array.from({ length: L }, (_, l) => r.f32Array(s.norm, `rms_ffn[${l}]`));
  const rmsFinal = r.f32Array(s.norm, 'rms_final');
  const q = (n: number, what: string) => dequantizeQ8(r, n, groupSize, what);
  const perLayer = (n: number, what: string) => Array.from({ length: L }, (_, l) => q(n, `${what}[${l}]`));
  const tokenEmbedding = q(s.embedding, 'token_embedding');
  const wq = perLayer(s.wq, 'wq');
  const wk = perLayer(s.wk, 'wk');
  const wv = perLayer(s.wv, 'wv');
  const wo = perLayer(s.wo, 'wo');
  const w1 = perLayer(s.w1, 'w1');
  const w2 = perLayer(s.w2, 'w2');
  const w3 = perLayer(s.w3, 'w3');
  const weights: Llama2cWeights = { tokenEmbedding, rmsAtt, wq, wk, wv, wo, rmsFfn, w1, w2, w3, rmsFinal };
  if (!config.sharedClassifier) weights.classifier = q(s.embedding, 'classifier');
  return { layout: 'v2-q8_0', config, groupSize, weights };
}

/** Read one Q8_0 tensor (int8 values, then one float32 scale per group) and dequantize it. */
function dequantizeQ8(r: ByteReader, n: number, groupSize: number, what: string): Float32Array<ArrayBuffer> {
  const q = r.take(n, `${what} int8 values`);
  const scales = r.f32Array(n / groupSize, `${what} scales`);
  const out = new Float32Array(n);
  for (let g = 0; g < scales.length; g++) {
    const scale = scales[g]!;
    if (!Number.isFinite(scale)) {
      bad(r.source, ErrorCodes.NOT_FINITE, `${what} has a non-finite scale (${scale}) in group ${g}`, 'the file is corrupt');
    }
    const base = g * groupSize;
    for (let i = 0; i < groupSize; i++) out[base + i] = ((q[base + i]! << 24) >> 24) * scale;
  }
  return out;
}
