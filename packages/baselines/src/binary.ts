import {
  type Codec,
  type CodecParams,
  expectStored,
  f16BitsOf,
  f16BitsTensor,
  f16BitsToF32,
  f32ToF16Bits,
  packedBytes,
  storedBits,
  u8Tensor,
} from '@ultrasketch/core';
import { assertFiniteMatrix, rejectUnknownOptions } from './util.js';

/**
 * `binary`: Ŵ[r, j] = scale_r · sign(W[r, j]), the classic 1-bit point. sign(0) = +1.
 * scale_r = mean |W[r, :]| (the L2-optimal scale for a fixed sign pattern), stored as f16.
 *
 * Stored tensors:
 * - `signs`:  U8 [⌈rows·cols/8⌉] — one bit per weight, row-major, LSB-first; bit 1 means negative
 *             (the same convention as LittleBit's packed factors);
 * - `scales`: F16 [rows].
 * bpw = 1 + 16 / cols (+ padding of the last byte).
 */
export type BinaryOptions = Record<string, never>;

export interface BinaryParams extends CodecParams<BinaryOptions> {
  signs: Uint8Array;
  scales: Uint16Array; // f16 bits [rows]
}

export const binaryCodec: Codec<BinaryOptions, BinaryParams> = {
  id: 'binary',
  version: 1,
  description: 'sign(W) with one f16 scale per row (mean |w|); 1 bit per weight',

  resolveOptions(raw) {
    rejectUnknownOptions(raw, [], 'binary');
    return {};
  },

  encode(w, rows, cols, options, ctx) {
    assertFiniteMatrix(w, rows, cols, ctx.name);
    const signs = new Uint8Array(packedBytes(rows * cols, 1));
    const scales = new Uint16Array(rows);
    for (let r = 0; r < rows; r++) {
      let sumAbs = 0;
      for (let j = 0; j < cols; j++) {
        const i = r * cols + j;
        const v = w[i]!;
        sumAbs += Math.abs(v);
        if (v < 0) signs[i >>> 3] = signs[i >>> 3]! | (1 << (i & 7));
      }
      scales[r] = f32ToF16Bits(sumAbs / cols);
    }
    return { rows, cols, options, signs, scales };
  },

  decode(p) {
    const out = new Float32Array(p.rows * p.cols);
    this.decodeRows(p, 0, p.rows, out);
    return out;
  },

  decodeRows(p, row0, count, out) {
    const { cols } = p;
    for (let r = row0; r < row0 + count; r++) {
      const s = f16BitsToF32(p.scales[r]!);
      for (let j = 0; j < cols; j++) {
        const i = r * cols + j;
        out[(r - row0) * cols + j] = (p.signs[i >>> 3]! >>> (i & 7)) & 1 ? -s : s;
      }
    }
  },

  bits(p) {
    return storedBits(this.toTensors(p));
  },

  toTensors(p) {
    return { signs: u8Tensor(p.signs), scales: f16BitsTensor(p.scales, [p.rows]) };
  },

  fromTensors(tensors, rows, cols, options, source) {
    const signs = expectStored(tensors, 'signs', 'U8', [packedBytes(rows * cols, 1)], source).data;
    const scales = f16BitsOf(expectStored(tensors, 'scales', 'F16', [rows], source));
    return { rows, cols, options, signs, scales };
  },
};
