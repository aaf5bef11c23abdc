import { f16BitsToF32, f32ToF16Bits } from '@ultrasketch/core';

/**
 * Sketch state formats. Every format rounds TOWARD ZERO, so |dequant(q(v))| ≤ |v| for every stored value:
 * the AbsMaxMin underestimate |ŵ| ≤ |w| therefore survives state quantization (a candidate is the
 * smallest-magnitude weight of its bucket, and shrinking it only keeps it below every weight of the bucket).
 *
 * - `f32`: the build's float32 values, stored as they are (research runs).
 * - `f16`: IEEE binary16, rounded toward zero; magnitudes above 65504 clamp to 65504; never Inf/NaN.
 * - `int8`: one f16 scale per sketch row (of one channel group), scale = f16(max |state| / 127);
 *   q = trunc(v / scale) clamped to ±127 and stepped toward zero until |fround(q · scale)| ≤ |v|;
 *   value = fround(q · scale). An all-empty row has scale 0.
 */
export const STATE_FORMATS = ['f16', 'int8', 'f32'] as const;
export type StateFormat = (typeof STATE_FORMATS)[number];

export const STATE_BITS: Record<StateFormat, number> = { f16: 16, int8: 8, f32: 32 };

export type StateArray = Uint16Array | Int8Array | Float32Array;

export function allocStates(format: StateFormat, n: number): StateArray {
  return format === 'f16' ? new Uint16Array(n) : format === 'int8' ? new Int8Array(n) : new Float32Array(n);
}

const F16_MAX_FINITE = 0x7bff;

/** f16 bits of v rounded toward zero (|result| ≤ |v|), clamped to the largest finite f16. */
export function f16BitsTowardZero(v: number): number {
  let h = f32ToF16Bits(v);
  if ((h & 0x7fff) > F16_MAX_FINITE) h = (h & 0x8000) | F16_MAX_FINITE;
  if (Math.abs(f16BitsToF32(h)) > Math.abs(v)) h -= 1; // one ulp toward zero (sign-magnitude)
  return h;
}

/** f16 bits of the int8 scale for a row whose largest magnitude is maxAbs (finite, rounded to nearest). */
export function int8ScaleBits(maxAbs: number): number {
  const h = f32ToF16Bits(maxAbs / 127);
  return (h & 0x7fff) > F16_MAX_FINITE ? F16_MAX_FINITE : h;
}

/** int8 code of v under `scale`, toward zero: |fround(q · scale)| ≤ |v|. */
export function int8TowardZero(v: number, scale: number): number {
  if (scale === 0 || v === 0) return 0;
  let q = Math.trunc(v / scale);
  if (q > 127) q = 127;
  if (q < -127) q = -127;
  while (q !== 0 && Math.abs(Math.fround(q * scale)) > Math.abs(v)) q -= Math.sign(q);
  return q;
}

/**
 * Quantize one sketch row `src` (float32 values, empty already 0) into `dst[at .. at + src.length)`;
 * for int8 returns the f16 scale bits (else 0).
 */
export function quantizeRow(format: StateFormat, src: Float32Array, dst: StateArray, at: number): number {
  const n = src.length;
  if (format === 'f32') {
    (dst as Float32Array).set(src, at);
    return 0;
  }
  if (format === 'f16') {
    const d = dst as Uint16Array;
    for (let i = 0; i < n; i++) d[at + i] = f16BitsTowardZero(src[i]!);
    return 0;
  }
  let maxAbs = 0;
  for (let i = 0; i < n; i++) maxAbs = Math.max(maxAbs, Math.abs(src[i]!));
  const scaleBits = int8ScaleBits(maxAbs);
  const scale = f16BitsToF32(scaleBits);
  const d = dst as Int8Array;
  for (let i = 0; i < n; i++) d[at + i] = int8TowardZero(src[i]!, scale);
  return scaleBits;
}

/** Dequantized value of state i (int8 needs the row's scale as a number). */
export function stateValue(format: StateFormat, states: StateArray, i: number, scale: number): number {
  if (format === 'f32') return states[i]!;
  if (format === 'f16') return f16BitsToF32(states[i]!);
  return Math.fround(states[i]! * scale);
}
