import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { ByteWriter } from './byteWriter.js';
import { LIMITS } from './limits.js';
import {
  LLAMA2C_MAGIC,
  LLAMA2C_V2_HEADER_BYTES,
  legacyFileBytes,
  llama2cShapes,
  v2FileBytes,
  validateLlama2cConfig,
  type Llama2cConfig,
  type Llama2cWeights,
} from './llama2c.js';

/**
 * Writers for the two llama2.c layouts, the mirror image of `readLlama2cCheckpoint` (see llama2c.ts for
 * the layouts). They refuse any config the reader would refuse and any array whose length does not match
 * the config, so whatever they write reads back.
 */

const WRITER = 'llama2.c writer';

function shapeError(what: string, problem: string): never {
  throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, problem, {
    source: what,
    hint: 'the weights do not match the config passed to the llama2.c writer',
  });
}

/** One array must be a Float32Array of exactly `n` values. */
function checkArray(a: unknown, n: number, what: string, formula: string): void {
  if (!(a instanceof Float32Array)) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `expected a Float32Array, got ${describe(a)}`, {
      source: what,
      hint: 'llama2.c weights are float32 arrays',
    });
  }
  if (a.length !== n) shapeError(what, `has ${a.length} values but the config needs ${n} (${formula})`);
}

/** A per-layer list must have one array of `n` values for each layer. */
function checkLayers(list: unknown, c: Llama2cConfig, n: number, what: string, formula: string): void {
  if (!Array.isArray(list)) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `expected one Float32Array per layer, got ${describe(list)}`, {
      source: what,
    });
  }
  if (list.length !== c.nLayers) shapeError(what, `has ${list.length} layers but the config has n_layers ${c.nLayers}`);
  list.forEach((a, l) => checkArray(a, n, `${what}[${l}]`, formula));
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  return typeof v === 'object' ? (v.constructor?.name ?? 'object') : typeof v;
}

/** Validate the config and every array's length against it, before anything is written. */
function checkWeights(c: Llama2cConfig, w: Llama2cWeights): void {
  validateLlama2cConfig(c, `${WRITER} config`);
  const s = llama2cShapes(c);
  checkArray(w.tokenEmbedding, s.embedding, 'token_embedding', 'vocab_size × dim');
  checkLayers(w.rmsAtt, c, s.norm, 'rms_att', 'dim');
  checkLayers(w.wq, c, s.wq, 'wq', 'dim × dim');
  checkLayers(w.wk, c, s.wk, 'wk', 'kv_dim × dim');
  checkLayers(w.wv, c, s.wv, 'wv', 'kv_dim × dim');
  checkLayers(w.wo, c, s.wo, 'wo', 'dim × dim');
  checkLayers(w.rmsFfn, c, s.norm, 'rms_ffn', 'dim');
  checkLayers(w.w1, c, s.w1, 'w1', 'hidden_dim × dim');
  checkLayers(w.w2, c, s.w2, 'w2', 'dim × hidden_dim');
  checkLayers(w.w3, c, s.w3, 'w3', 'hidden_dim × dim');
  checkArray(w.rmsFinal, s.norm, 'rms_final', 'dim');
  if (c.sharedClassifier) {
    if (w.classifier !== undefined) {
      throw new UltraSketchError(
        ErrorCodes.BAD_ARGUMENT,
        'a separate classifier was given but config.sharedClassifier is true; the file cannot hold both',
        { source: 'classifier', hint: 'set sharedClassifier: false, or drop the classifier' },
      );
    }
  } else {
    if (w.classifier === undefined) {
      throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, 'config.sharedClassifier is false but no classifier was given', {
        source: 'classifier',
        hint: 'pass weights.classifier [vocab_size × dim], or set sharedClassifier: true',
      });
    }
    checkArray(w.classifier, s.embedding, 'classifier', 'vocab_size × dim');
  }
}

/** The seven config integers; `vocabField` carries the legacy layout's sign convention. */
function writeConfigInts(out: ByteWriter, c: Llama2cConfig, vocabField: number): void {
  out.i32(c.dim, 'dim');
  out.i32(c.hiddenDim, 'hidden_dim');
  out.i32(c.nLayers, 'n_layers');
  out.i32(c.nHeads, 'n_heads');
  out.i32(c.nKvHeads, 'n_kv_heads');
  out.i32(vocabField, 'vocab_size');
  out.i32(c.seqLen, 'seq_len');
}

/**
 * The legacy RoPE tables `freq_cis_real[seq_len][head_size/2]` then `freq_cis_imag[...]`. No reader uses
 * them (RoPE is recomputed), but a legacy file must contain them. We compute them the way llama2.c's
 * model.py does, in float32 at every step: freq_i = 1 / 10000^(2i/head_size), angle = pos × freq_i, then
 * cos and sin. Python's float32 cos/sin are not always correctly rounded, so a few values may differ from a
 * PyTorch export in the last bit (tests compare those regions to within one ulp).
 */
function writeFreqCis(out: ByteWriter, c: Llama2cConfig): void {
  const headSize = c.dim / c.nHeads;
  const half = headSize / 2;
  const freqs = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    freqs[i] = 1 / Math.fround(10000 ** Math.fround((2 * i) / headSize));
  }
  for (const fn of [Math.cos, Math.sin]) {
    for (let pos = 0; pos < c.seqLen; pos++) {
      for (let i = 0; i < half; i++) out.f32(fn(Math.fround(pos * freqs[i]!)), 'freq_cis');
    }
  }
}

/**
 * Write the legacy float32 layout: 7 × int32 header (vocab_size negated when the classifier is not
 * shared), every float32 array in llama2.c's order, the legacy RoPE tables, then the classifier if any.
 */
export function writeLlama2cLegacy(config: Llama2cConfig, weights: Llama2cWeights): Uint8Array<ArrayBuffer> {
  checkWeights(config, weights);
  const out = new ByteWriter(legacyFileBytes(config));
  writeConfigInts(out, config, config.sharedClassifier ? config.vocabSize : -config.vocabSize);
  const w = weights;
  out.raw(w.tokenEmbedding, 'token_embedding');
  for (const list of [w.rmsAtt, w.wq, w.wk, w.wv, w.wo, w.rmsFfn, w.w1, w.w2, w.w3]) {
    for (const a of list) out.raw(a);
  }
  out.raw(w.rmsFinal, 'rms_final');
  writeFreqCis(out, config);
  if (!config.sharedClassifier) out.raw(w.classifier!, 'classifier');
  return out.finish();
}

/** A tensor quantized to Q8_0: int8 values and one float32 scale per group of consecutive values. */
export interface Q80Tensor {
  q: Int8Array<ArrayBuffer>;
  scales: Float32Array<ArrayBuffer>;
}

/** Round half to even, like torch.round (Math.round rounds halves up). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return x - Math.floor(x) === 0.5 ? 2 * Math.round(x / 2) : r;
}

/**
 * Quantize like llama2.c's export.py (version 2): per group, scale = max|w| / 127 and
 * q = round(w / scale), each step in float32 as PyTorch computes it. An all-zero group gets scale 0 and
 * zeros (PyTorch would divide 0 by 0 there). Non-finite weights are refused: they would make a file the
 * reader rejects.
 */
export function quantizeQ80(values: Float32Array, groupSize: number, what = '<tensor>'): Q80Tensor {
  checkGroupSize(groupSize, values.length, what);
  const q = new Int8Array(values.length);
  const scales = new Float32Array(values.length / groupSize);
  for (let g = 0; g < scales.length; g++) {
    const base = g * groupSize;
    let wmax = 0;
    for (let i = 0; i < groupSize; i++) {
      const v = values[base + i]!;
      if (!Number.isFinite(v)) {
        throw new UltraSketchError(ErrorCodes.NOT_FINITE, `value ${base + i} is ${v}; Q8_0 needs finite weights`, {
          source: what,
        });
      }
      wmax = Math.max(wmax, Math.abs(v));
    }
    const scale = Math.fround(wmax / 127);
    scales[g] = scale;
    if (scale === 0) continue;
    for (let i = 0; i < groupSize; i++) q[base + i] = roundHalfEven(Math.fround(values[base + i]! / scale));
  }
  return { q, scales };
}

function checkGroupSize(groupSize: number, n: number, what: string): void {
  if (!Number.isInteger(groupSize) || groupSize <= 0 || groupSize > LIMITS.maxGroupSize) {
    throw new UltraSketchError(ErrorCodes.BAD_DIMENSION, `group_size ${groupSize} is outside 1..${LIMITS.maxGroupSize}`, {
      source: what,
    });
  }
  if (n % groupSize !== 0) {
    throw new UltraSketchError(ErrorCodes.BAD_DIMENSION, `${n} values are not a whole number of groups of ${groupSize}`, {
      source: what,
      hint: 'group_size must divide dim',
    });
  }
}

/**
 * Write llama2.c's version-2 layout: the 256-byte header, float32 norms, then every matrix quantized to
 * Q8_0 with `groupSize` (which must divide dim, as the reader requires).
 */
export function writeLlama2cV2(config: Llama2cConfig, weights: Llama2cWeights, groupSize: number): Uint8Array<ArrayBuffer> {
  checkWeights(config, weights);
  checkGroupSize(groupSize, config.dim, `${WRITER} group_size`);
  const out = new ByteWriter(v2FileBytes(config, groupSize));
  out.u32(LLAMA2C_MAGIC, 'magic');
  out.i32(2, 'version');
  writeConfigInts(out, config, config.vocabSize);
  out.u8(config.sharedClassifier ? 1 : 0, 'shared_classifier');
  out.i32(groupSize, 'group_size');
  out.pad(LLAMA2C_V2_HEADER_BYTES - out.offset, 0, 'header padding');
  const w = weights;
  for (const a of [...w.rmsAtt, ...w.rmsFfn, w.rmsFinal]) out.raw(a, 'norm');
  const quantized: Array<[string, Float32Array]> = [['token_embedding', w.tokenEmbedding]];
  for (const [name, list] of Object.entries({ wq: w.wq, wk: w.wk, wv: w.wv, wo: w.wo, w1: w.w1, w2: w.w2, w3: w.w3 })) {
    list.forEach((a, l) => quantized.push([`${name}[${l}]`, a]));
  }
  if (!config.sharedClassifier) quantized.push(['classifier', w.classifier!]);
  for (const [name, a] of quantized) {
    const { q, scales } = quantizeQ80(a, groupSize, name);
    out.raw(q, `${name} int8 values`);
    out.raw(scales, `${name} scales`);
  }
  return out.finish();
}
