import {
  type Codec,
  type CodecParams,
  ErrorCodes,
  UltraSketchError,
  expectStored,
  f16BitsOf,
  f16BitsToF32,
  f16BitsTensor,
  f32ToF16Bits,
  packCodes,
  packedBytes,
  readCode,
  storedBits,
  u8Tensor,
} from '@ultrasketch/core';
import { assertFiniteMatrix, intOption, rejectUnknownOptions } from './util.js';

/**
 * `rtn`: round-to-nearest k-bit quantization with an asymmetric (min–max) grid per group.
 *
 * Each row is cut into groups of `groupSize` consecutive weights (the last group of a row may be shorter;
 * groupSize 0 means one group per row). A group stores an f16 `scale` = (max − min)/(2^k − 1) and an f16
 * `offset` = min; weight j decodes as offset + code_j · scale, with code_j = round((w_j − offset)/scale)
 * clamped to [0, 2^k − 1], computed from the f16-ROUNDED scale and offset so decode matches encode exactly.
 *
 * Stored tensors:
 * - `codes`:   U8 [⌈rows·cols·k/8⌉] — all codes of the matrix, row-major, packed LSB-first (see core/bits.ts);
 * - `scales`:  F16 [rows, groupsPerRow];
 * - `offsets`: F16 [rows, groupsPerRow].
 * bpw = k + 32 / groupSize (+ padding of the last byte).
 */
export interface RtnOptions {
  bits: 2 | 3 | 4 | 8;
  /** Weights per group along a row; 0 = one group per row. */
  groupSize: number;
}

export interface RtnParams extends CodecParams<RtnOptions> {
  codes: Uint8Array; // packed
  scales: Uint16Array; // f16 bits [rows, groupsPerRow]
  offsets: Uint16Array; // f16 bits [rows, groupsPerRow]
}

export const RTN_BITS = [2, 3, 4, 8] as const;

/** Effective group length for a row of `cols` weights. */
export function rtnGroupLength(options: RtnOptions, cols: number): number {
  return options.groupSize === 0 ? cols : Math.min(options.groupSize, cols);
}

export function rtnGroupsPerRow(options: RtnOptions, cols: number): number {
  return Math.ceil(cols / rtnGroupLength(options, cols));
}

export const rtnCodec: Codec<RtnOptions, RtnParams> = {
  id: 'rtn',
  version: 1,
  description: 'round-to-nearest k-bit (k = 2, 3, 4, 8), asymmetric min–max grid, f16 scale and offset per group',

  resolveOptions(raw) {
    rejectUnknownOptions(raw, ['bits', 'groupSize'], 'rtn');
    const bits = intOption(raw, 'bits', 4, (v) => (RTN_BITS as readonly number[]).includes(v), 'allowed: 2, 3, 4, 8', 'rtn');
    const groupSize = intOption(raw, 'groupSize', 64, (v) => v >= 0 && v <= 1 << 20, 'use 0 (per row) or a positive group length', 'rtn');
    return { bits: bits as RtnOptions['bits'], groupSize };
  },

  encode(w, rows, cols, options, ctx) {
    assertFiniteMatrix(w, rows, cols, ctx.name);
    const k = options.bits;
    const levels = (1 << k) - 1;
    const G = rtnGroupLength(options, cols);
    const gpr = Math.ceil(cols / G);
    const codes = new Uint8Array(rows * cols);
    const scales = new Uint16Array(rows * gpr);
    const offsets = new Uint16Array(rows * gpr);
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < gpr; g++) {
        const begin = r * cols + g * G;
        const end = r * cols + Math.min((g + 1) * G, cols);
        let min = Infinity;
        let max = -Infinity;
        for (let i = begin; i < end; i++) {
          if (w[i]! < min) min = w[i]!;
          if (w[i]! > max) max = w[i]!;
        }
        const scaleBits = f32ToF16Bits((max - min) / levels);
        const offsetBits = f32ToF16Bits(min);
        const scale = f16BitsToF32(scaleBits);
        const offset = f16BitsToF32(offsetBits);
        if (!Number.isFinite(scale) || !Number.isFinite(offset)) {
          throw new UltraSketchError(
            ErrorCodes.NOT_FINITE,
            `group ${g} of row ${r} spans [${min}, ${max}], beyond the f16 range of rtn scales`,
            { source: ctx.name, hint: 'rescale the model or keep this tensor in float' },
          );
        }
        scales[r * gpr + g] = scaleBits;
        offsets[r * gpr + g] = offsetBits;
        if (scale === 0) continue; // codes stay 0: every weight decodes to the offset
        for (let i = begin; i < end; i++) {
          const q = Math.round((w[i]! - offset) / scale);
          codes[i] = q < 0 ? 0 : q > levels ? levels : q;
        }
      }
    }
    return { rows, cols, options, codes: packCodes(codes, k), scales, offsets };
  },

  decode(p) {
    const out = new Float32Array(p.rows * p.cols);
    this.decodeRows(p, 0, p.rows, out);
    return out;
  },

  decodeRows(p, row0, count, out) {
    const { cols } = p;
    const k = p.options.bits;
    const G = rtnGroupLength(p.options, cols);
    const gpr = Math.ceil(cols / G);
    for (let r = row0; r < row0 + count; r++) {
      for (let j = 0; j < cols; j++) {
        const g = r * gpr + Math.floor(j / G);
        const q = readCode(p.codes, r * cols + j, k);
        out[(r - row0) * cols + j] = f16BitsToF32(p.offsets[g]!) + q * f16BitsToF32(p.scales[g]!);
      }
    }
  },

  bits(p) {
    return storedBits(this.toTensors(p));
  },

  toTensors(p) {
    const gpr = rtnGroupsPerRow(p.options, p.cols);
    return {
      codes: u8Tensor(p.codes),
      scales: f16BitsTensor(p.scales, [p.rows, gpr]),
      offsets: f16BitsTensor(p.offsets, [p.rows, gpr]),
    };
  },

  fromTensors(tensors, rows, cols, options, source) {
    const gpr = rtnGroupsPerRow(options, cols);
    const codes = expectStored(tensors, 'codes', 'U8', [packedBytes(rows * cols, options.bits)], source).data;
    const scales = f16BitsOf(expectStored(tensors, 'scales', 'F16', [rows, gpr], source));
    const offsets = f16BitsOf(expectStored(tensors, 'offsets', 'F16', [rows, gpr], source));
    return { rows, cols, options, codes, scales, offsets };
  },
};
