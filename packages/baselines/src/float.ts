import {
  type Codec,
  type CodecParams,
  type StoredTensor,
  UltraSketchError,
  ErrorCodes,
  expectStored,
  f16ArrayToF32,
  f16BitsOf,
  f32ArrayToF16,
  storedBits,
  describeValue,
} from '@ultrasketch/core';
import { assertFiniteMatrix, rejectUnknownOptions } from './util.js';

/**
 * `float`: the uncompressed reference, stored as f16 or f32. It is a codec so that a bundle can keep some
 * linears (or the embedding) uncompressed through the same path as everything else, and so the float
 * model is measured by the same harness as every method.
 *
 * Stored tensor `weight`: F16 or F32 [rows, cols].
 */
export interface FloatOptions {
  dtype: 'f16' | 'f32';
}

export interface FloatParams extends CodecParams<FloatOptions> {
  /** f16 bit patterns (dtype f16) or float32 values (dtype f32). */
  data: Uint16Array | Float32Array;
}

export const floatCodec: Codec<FloatOptions, FloatParams> = {
  id: 'float',
  version: 1,
  description: 'uncompressed weights stored as f16 or f32',

  resolveOptions(raw) {
    rejectUnknownOptions(raw, ['dtype'], 'float');
    const dtype = raw.dtype ?? 'f16';
    if (dtype !== 'f16' && dtype !== 'f32') {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `codec float: option dtype = ${describeValue(dtype)} is invalid; allowed: f16, f32`);
    }
    return { dtype };
  },

  encode(w, rows, cols, options, ctx) {
    assertFiniteMatrix(w, rows, cols, ctx.name);
    const data = options.dtype === 'f16' ? f32ArrayToF16(w) : Float32Array.from(w);
    return { rows, cols, options, data };
  },

  decode(p) {
    return p.data instanceof Float32Array ? p.data.slice() : f16ArrayToF32(p.data);
  },

  decodeRows(p, row0, count, out) {
    const part = p.data.subarray(row0 * p.cols, (row0 + count) * p.cols);
    out.set(part instanceof Float32Array ? part : f16ArrayToF32(part));
  },

  bits(p) {
    return storedBits(this.toTensors(p));
  },

  toTensors(p): Record<string, StoredTensor> {
    const bytes = new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength);
    return { weight: { dtype: p.options.dtype === 'f16' ? 'F16' : 'F32', shape: [p.rows, p.cols], data: bytes } };
  },

  fromTensors(tensors, rows, cols, options, source) {
    const t = expectStored(tensors, 'weight', options.dtype === 'f16' ? 'F16' : 'F32', [rows, cols], source);
    if (options.dtype === 'f16') return { rows, cols, options, data: f16BitsOf(t) };
    const data = new Float32Array(rows * cols);
    new Uint8Array(data.buffer).set(t.data);
    return { rows, cols, options, data };
  },
};
