import { describe, expect, it } from 'vitest';
import {
  DTYPE_BYTES,
  bf16ArrayToF32,
  bf16BitsToF32,
  f16ArrayToF32,
  f16BitsToF32,
  f32ArrayToBf16,
  f32ArrayToF16,
  f32ToBf16Bits,
  f32ToF16Bits,
  isDType,
} from '../src/index.js';

const isF16NaN = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isBf16NaN = (b: number) => (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;

/** A float32 value from its bit pattern. */
const fromBits = (u: number) => new Float32Array(new Uint32Array([u]).buffer)[0]!;

describe('float32 → f16 (IEEE binary16)', () => {
  it.each([
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [0.333251953125, 0x3555],
    [65504, 0x7bff], // largest finite f16
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -14 - 2 ** -24, 0x03ff], // largest subnormal
    [2 ** -24, 0x0001], // smallest subnormal
    [-(2 ** -24), 0x8001],
    [0, 0x0000],
    [-0, 0x8000],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
  ])('%s → bits %i', (value, bits) => {
    expect(f32ToF16Bits(value)).toBe(bits);
  });

  it('overflows to infinity exactly at the rounding midpoint 65520', () => {
    expect(f32ToF16Bits(65519)).toBe(0x7bff); // below the midpoint: rounds down to 65504
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // the midpoint: ties to even → Inf
    expect(f32ToF16Bits(-65520)).toBe(0xfc00);
    expect(f32ToF16Bits(1e10)).toBe(0x7c00);
  });

  it('rounds to nearest, ties to even, for normals', () => {
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // halfway between 0x3c00 and 0x3c01 → even 0x3c00
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // halfway between 0x3c01 and 0x3c02 → even 0x3c02
    expect(f32ToF16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // just above halfway → up
    expect(f32ToF16Bits(1 + 2 ** -11 - 2 ** -20)).toBe(0x3c00); // just below halfway → down
    expect(f32ToF16Bits(2047.5)).toBe(0x6800); // tie rounds up into the next binade: 2048
    expect(f32ToF16Bits(2046.5)).toBe(0x67fe); // tie between 2046 (even) and 2047
  });

  it('rounds to nearest, ties to even, for subnormals and underflow', () => {
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // halfway between 0 and the smallest subnormal → 0
    expect(f32ToF16Bits(Math.fround(2 ** -25 * (1 + 2 ** -23)))).toBe(0x0001); // just above → 1
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(0x0002); // halfway between 1 and 2 → even 2
    expect(f32ToF16Bits(5 * 2 ** -25)).toBe(0x0002); // halfway between 2 and 3 → even 2
    expect(f32ToF16Bits(2 ** -26)).toBe(0x0000);
    expect(f32ToF16Bits(-(2 ** -30))).toBe(0x8000); // underflow keeps the sign
    expect(f32ToF16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // halfway between 0x03ff and 0x0400 → even
    expect(f32ToF16Bits(1e-45)).toBe(0x0000); // float32 subnormal input
  });

  it('keeps NaN a NaN (never infinity), whatever its payload and sign', () => {
    for (const bits of [0x7fc00000, 0x7f800001, 0xffc00000, 0x7fffffff]) {
      const h = f32ToF16Bits(fromBits(bits));
      expect(isF16NaN(h), `0x${bits.toString(16)} → 0x${h.toString(16)}`).toBe(true);
    }
    expect(f32ToF16Bits(NaN) & 0x7fff).toBe(0x7e00);
  });

  it('decodes known patterns exactly', () => {
    expect(f16BitsToF32(0x3c00)).toBe(1);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(f16BitsToF32(0x03ff)).toBe(2 ** -14 - 2 ** -24);
    expect(f16BitsToF32(0x3555)).toBe(0.333251953125);
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
    expect(Object.is(f16BitsToF32(0x0000), 0)).toBe(true);
    expect(f16BitsToF32(0x7c00)).toBe(Infinity);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
    expect(f16BitsToF32(0x7e00)).toBeNaN();
    expect(f16BitsToF32(0xfc01)).toBeNaN();
  });

  it('round-trips all 65536 bit patterns (NaNs stay NaN)', () => {
    let nans = 0;
    for (let h = 0; h < 0x10000; h++) {
      const v = f16BitsToF32(h);
      if (isF16NaN(h)) {
        nans++;
        expect(Number.isNaN(v)).toBe(true);
        expect(isF16NaN(f32ToF16Bits(v))).toBe(true);
        continue;
      }
      // Every f16 value is exactly a float32, so encoding it must give its own bits back.
      if (f32ToF16Bits(v) !== h) expect.fail(`0x${h.toString(16)} → ${v} → 0x${f32ToF16Bits(v).toString(16)}`);
    }
    expect(nans).toBe(2 * 1023);
  });

  it('array helpers agree with the scalar functions', () => {
    const values = [0, -0, 1, -1.5, 65504, 1e-7, 123.456, Infinity];
    const bits = f32ArrayToF16(values);
    expect(bits).toBeInstanceOf(Uint16Array);
    expect(Array.from(bits)).toEqual(values.map(f32ToF16Bits));
    expect(Array.from(f16ArrayToF32(bits))).toEqual(Array.from(bits, f16BitsToF32).map(Math.fround));
  });
});

describe('float32 → bfloat16', () => {
  it.each([
    [1, 0x3f80],
    [-2, 0xc000],
    [0.5, 0x3f00],
    [0, 0x0000],
    [-0, 0x8000],
    [Infinity, 0x7f80],
    [-Infinity, 0xff80],
    [3.140625, 0x4049], // exactly representable
  ])('%s → bits %i', (value, bits) => {
    expect(f32ToBf16Bits(value)).toBe(bits);
  });

  it('rounds to nearest, ties to even', () => {
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie → even
    expect(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81); // above the tie → up
    expect(f32ToBf16Bits(fromBits(0x3f807fff))).toBe(0x3f80); // just below the tie → down
    expect(f32ToBf16Bits(fromBits(0x7f7fffff))).toBe(0x7f80); // float32 max rounds up to infinity
    expect(f32ToBf16Bits(fromBits(0x007fffff))).toBe(0x0080); // largest f32 subnormal rounds up to min normal
  });

  it('keeps NaN a NaN even when its payload is only in the low bits (which rounding would drop)', () => {
    for (const bits of [0x7f800001, 0xff800001, 0x7fc00000, 0x7fffffff]) {
      const b = f32ToBf16Bits(fromBits(bits));
      expect(isBf16NaN(b), `0x${bits.toString(16)} → 0x${b.toString(16)}`).toBe(true);
      expect(b & 0x8000).toBe((bits >>> 16) & 0x8000);
    }
  });

  it('decodes exactly and round-trips all 65536 bit patterns (NaNs stay NaN)', () => {
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(Object.is(bf16BitsToF32(0x8000), -0)).toBe(true);
    expect(bf16BitsToF32(0x7f80)).toBe(Infinity);
    expect(bf16BitsToF32(0x0001)).toBe(2 ** -133); // smallest bf16 subnormal
    const all = new Uint16Array(0x10000).map((_, i) => i);
    const decoded = bf16ArrayToF32(all);
    for (let b = 0; b < 0x10000; b++) {
      const v = bf16BitsToF32(b);
      if (!Object.is(decoded[b], v) && !(Number.isNaN(v) && Number.isNaN(decoded[b]))) expect.fail(`array and scalar disagree at 0x${b.toString(16)}`);
      if (isBf16NaN(b)) {
        if (!isBf16NaN(f32ToBf16Bits(v))) expect.fail(`NaN 0x${b.toString(16)} did not stay NaN`);
      } else if (f32ToBf16Bits(v) !== b) {
        expect.fail(`0x${b.toString(16)} → ${v} → 0x${f32ToBf16Bits(v).toString(16)}`);
      }
    }
    expect(Array.from(f32ArrayToBf16([1, -2, Infinity]))).toEqual([0x3f80, 0xc000, 0x7f80]);
  });
});

describe('dtype table', () => {
  it('knows the element sizes of the safetensors dtypes we support', () => {
    expect(DTYPE_BYTES).toMatchObject({ F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 });
  });

  it('isDType accepts exactly the table keys, not inherited properties', () => {
    expect(isDType('F32')).toBe(true);
    expect(isDType('BF16')).toBe(true);
    expect(isDType('f32')).toBe(false);
    expect(isDType('toString')).toBe(false);
    expect(isDType('__proto__')).toBe(false);
  });
});
