import {
  type Codec,
  type CodecParams,
  ErrorCodes,
  UltraSketchError,
  expectStored,
  f16BitsOf,
  f16BitsTensor,
  f16BitsToF32,
  f32ToF16Bits,
  packCodes,
  packedBytes,
  readCode,
  storedBits,
  u8Tensor,
} from '@ultrasketch/core';
import { assertFiniteMatrix, intOption, rejectUnknownOptions } from './util.js';

/**
 * `vq`: vector quantization with one shared codebook. Each row is cut into sub-vectors of `dim` consecutive
 * values; each sub-vector is stored as the index of its nearest codebook entry (k-means, `bits`-bit indices,
 * 2^bits entries of `dim` f16 values). Made for the embedding table (tied with the classifier), where scalar
 * rounding at 2 bits loses a quarter of the energy while a 4-value codebook of 128 entries costs 1.75 bits
 * per value and loses half as much (docs/results.md §11.1b).
 *
 * k-means minimises Σ_rows weight_r · ‖row_r − decoded row_r‖²: `encode` weighs every row alike;
 * `vqEncode(..., rowWeights)` takes a weight per row — for an embedding, how often each token occurs in the
 * calibration text, so the codebook spends its entries where the text goes.
 *
 * Stored tensors:
 * - `codes`:    U8 [⌈rows·cols/dim · bits / 8⌉] — the indices, row-major, packed LSB-first (core/bits.ts);
 * - `codebook`: F16 [2^bits, dim].
 * bpw = bits / dim + 2^bits · dim · 16 / (rows · cols).
 */
export interface VqOptions {
  /** Sub-vector length; must divide the number of columns. */
  dim: number;
  /** Index width: the codebook has 2^bits entries. 1..8. */
  bits: number;
  /** k-means (Lloyd) iterations. */
  iterations: number;
}

export interface VqParams extends CodecParams<VqOptions> {
  codes: Uint8Array; // packed, bits per index
  codebook: Uint16Array; // f16 bits [2^bits, dim]
}

function checkShape(rows: number, cols: number, o: VqOptions, source: string): void {
  if (cols % o.dim !== 0) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `codec vq: sub-vector length ${o.dim} does not divide the ${cols} columns`, {
      source,
      hint: 'choose a dim that divides the row length (4 divides every Llama width)',
    });
  }
  if (rows * (cols / o.dim) < 1 << o.bits) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `codec vq: ${rows}×${cols} has fewer sub-vectors than the ${1 << o.bits} codebook entries`, {
      source,
      hint: 'use fewer index bits',
    });
  }
}

/**
 * Encode with a weight per row (≥ 0; rows of weight 0 still get their nearest entry). Deterministic: the
 * initial codebook is a fixed stride through the sub-vectors, ties go to the lower index.
 */
export function vqEncode(w: Float32Array, rows: number, cols: number, options: VqOptions, name: string, rowWeights?: ArrayLike<number>): VqParams {
  assertFiniteMatrix(w, rows, cols, name);
  checkShape(rows, cols, options, name);
  if (rowWeights !== undefined && (rowWeights.length !== rows || Array.from(rowWeights).some((v) => !(v >= 0) || !Number.isFinite(v)))) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `codec vq: row weights must be ${rows} finite values ≥ 0`, { source: name });
  }
  const d = options.dim;
  const K = 1 << options.bits;
  const n = (rows * cols) / d;
  const perRow = cols / d;
  const cb = new Float32Array(K * d);
  // A stride through the sub-vectors (a prime step, so it does not line up with the rows' structure).
  for (let k = 0; k < K; k++) {
    const v = (Math.floor(((k + 0.5) * n) / K) * 7919) % n;
    for (let t = 0; t < d; t++) cb[k * d + t] = w[v * d + t]!;
  }
  const codes = new Uint16Array(n);
  const assign = (): void => {
    for (let i = 0; i < n; i++) {
      let best = 0;
      let bestD = Infinity;
      const o = i * d;
      for (let k = 0; k < K; k++) {
        let dist = 0;
        const c = k * d;
        for (let t = 0; t < d; t++) {
          const e = w[o + t]! - cb[c + t]!;
          dist += e * e;
        }
        if (dist < bestD) {
          bestD = dist;
          best = k;
        }
      }
      codes[i] = best;
    }
  };
  const sum = new Float64Array(K * d);
  const mass = new Float64Array(K);
  for (let it = 0; it < options.iterations; it++) {
    assign();
    sum.fill(0);
    mass.fill(0);
    for (let i = 0; i < n; i++) {
      const wt = rowWeights === undefined ? 1 : rowWeights[Math.floor(i / perRow)]!;
      if (wt === 0) continue;
      const k = codes[i]!;
      mass[k] += wt;
      for (let t = 0; t < d; t++) sum[k * d + t] += wt * w[i * d + t]!;
    }
    // An entry nothing (of weight) chose keeps its place.
    for (let k = 0; k < K; k++) if (mass[k]! > 0) for (let t = 0; t < d; t++) cb[k * d + t] = sum[k * d + t]! / mass[k]!;
  }
  // Round the codebook to what is stored, then assign against exactly that.
  const codebook = new Uint16Array(K * d);
  for (let i = 0; i < K * d; i++) {
    codebook[i] = f32ToF16Bits(cb[i]!);
    cb[i] = f16BitsToF32(codebook[i]!);
  }
  assign();
  return { rows, cols, options, codes: packCodes(codes, options.bits), codebook };
}

export const vqCodec: Codec<VqOptions, VqParams> = {
  id: 'vq',
  version: 1,
  description: 'vector quantization: sub-vectors of dim values as indices into one shared f16 codebook (k-means)',

  resolveOptions(raw) {
    rejectUnknownOptions(raw, ['dim', 'bits', 'iterations'], 'vq');
    const dim = intOption(raw, 'dim', 4, (v) => v >= 1 && v <= 64, 'use 1..64 (a divisor of the row length)', 'vq');
    const bits = intOption(raw, 'bits', 7, (v) => v >= 1 && v <= 8, 'use 1..8', 'vq');
    const iterations = intOption(raw, 'iterations', 12, (v) => v >= 0 && v <= 1000, 'use 0..1000', 'vq');
    return { dim, bits, iterations };
  },

  encode(w, rows, cols, options, ctx) {
    return vqEncode(w, rows, cols, options, ctx.name);
  },

  decode(p) {
    const out = new Float32Array(p.rows * p.cols);
    this.decodeRows(p, 0, p.rows, out);
    return out;
  },

  decodeRows(p, row0, count, out) {
    const d = p.options.dim;
    const perRow = p.cols / d;
    for (let r = 0; r < count; r++) {
      for (let s = 0; s < perRow; s++) {
        const k = readCode(p.codes, (row0 + r) * perRow + s, p.options.bits);
        const o = r * p.cols + s * d;
        for (let t = 0; t < d; t++) out[o + t] = f16BitsToF32(p.codebook[k * d + t]!);
      }
    }
  },

  bits(p) {
    return storedBits(this.toTensors(p));
  },

  toTensors(p) {
    return { codes: u8Tensor(p.codes), codebook: f16BitsTensor(p.codebook, [1 << p.options.bits, p.options.dim]) };
  },

  fromTensors(tensors, rows, cols, options, source) {
    checkShape(rows, cols, options, source);
    const codes = expectStored(tensors, 'codes', 'U8', [packedBytes((rows * cols) / options.dim, options.bits)], source).data;
    const codebook = f16BitsOf(expectStored(tensors, 'codebook', 'F16', [1 << options.bits, options.dim], source));
    for (let i = 0; i < codebook.length; i++) {
      if ((codebook[i]! & 0x7c00) === 0x7c00) {
        throw new UltraSketchError(ErrorCodes.NOT_FINITE, `codec vq: codebook value ${i} is not finite`, { source, hint: 'the bundle is corrupt' });
      }
    }
    return { rows, cols, options, codes, codebook };
  },
};
