import { readFileSync } from 'node:fs';
import {
  type Codec,
  ErrorCodes,
  Rng,
  UltraSketchError,
  f16BitsToF32,
  getCodec,
  listCodecs,
  packCodes,
  readCode,
  unpackCodes,
} from '@ultrasketch/core';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { describe, expect, it } from 'vitest';
import { binaryCodec, floatCodec, registerAll, registerBaselineCodecs, rtnCodec } from '../src/index.js';

const ctx = (name = 'test') => ({ name, seed: 0 });
const SHAPES: Array<[number, number]> = [
  [1, 1],
  [1, 37],
  [29, 1],
  [13, 7],
  [5, 130],
];

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof UltraSketchError ? err.code : `untyped: ${String(err)}`;
  }
  return undefined;
}

describe('bit packing', () => {
  it.each([1, 2, 3, 4, 5, 7, 8])('round-trips %i-bit codes tightly', (k) => {
    const rng = new Rng(k);
    const codes = Array.from({ length: 101 }, () => rng.int(1 << k));
    const packed = packCodes(codes, k);
    expect(packed.length).toBe(Math.ceil((101 * k) / 8));
    expect([...unpackCodes(packed, 101, k)]).toEqual(codes);
    expect(readCode(packed, 100, k)).toBe(codes[100]);
  });

  it('is LSB-first', () => {
    expect([...packCodes([1, 0, 0, 0, 0, 0, 0, 1], 1)]).toEqual([0b10000001]);
    expect([...packCodes([3, 0, 1, 2], 2)]).toEqual([0b10010011]);
  });
});

describe('registry', () => {
  it('registerBaselineCodecs is idempotent and codecs are found by id; registerAll is its deprecated alias', () => {
    registerBaselineCodecs();
    registerBaselineCodecs();
    expect(registerAll).toBe(registerBaselineCodecs);
    expect(listCodecs()).toEqual(expect.arrayContaining(['binary', 'float', 'rtn']));
    expect(getCodec('rtn')).toBe(rtnCodec);
    expect(codeOf(() => getCodec('nope'))).toBe(ErrorCodes.UNKNOWN_CODEC);
    expect(codeOf(() => getCodec('rtn', 99))).toBe(ErrorCodes.UNKNOWN_CODEC);
  });
});

describe('rtn', () => {
  it.each([2, 3, 4, 8])('%i bits: every weight within half a step of its group grid', (bits) => {
    for (const [rows, cols] of SHAPES) {
      const w = new Rng(rows * cols).normalArray(rows * cols);
      const options = rtnCodec.resolveOptions({ bits, groupSize: 16 });
      const p = rtnCodec.encode(w, rows, cols, options, ctx());
      const d = rtnCodec.decode(p);
      const gpr = Math.ceil(cols / Math.min(16, cols));
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < cols; j++) {
          const g = r * gpr + Math.floor(j / Math.min(16, cols));
          const step = f16BitsToF32(p.scales[g]!);
          // half a step, plus the f16 rounding of scale and offset accumulated over up to 2^k steps
          const tol = step / 2 + (Math.abs(w[r * cols + j]!) + step * (1 << bits)) * 2e-3 + 1e-7;
          expect(Math.abs(d[r * cols + j]! - w[r * cols + j]!)).toBeLessThanOrEqual(tol);
        }
      }
    }
  });

  it('8-bit per-row on a real matrix is nearly lossless, and more bits means less error', () => {
    const ckpt = readLlama2cCheckpoint(readFileSync(new URL('../../../../shared/models/stories260K/stories260K.bin', import.meta.url)));
    const w = ckpt.weights.w1[0]!; // [172, 64]
    const err = (bits: number) => {
      const p = rtnCodec.encode(w, 172, 64, rtnCodec.resolveOptions({ bits, groupSize: 0 }), ctx());
      const d = rtnCodec.decode(p);
      let e = 0;
      let n = 0;
      for (let i = 0; i < w.length; i++) {
        e += (d[i]! - w[i]!) ** 2;
        n += w[i]! ** 2;
      }
      return Math.sqrt(e / n);
    };
    const errors = [2, 3, 4, 8].map(err);
    expect(errors[3]).toBeLessThan(0.01);
    for (let i = 1; i < 4; i++) expect(errors[i]!).toBeLessThan(errors[i - 1]!);
  });

  it('a constant group decodes exactly', () => {
    const w = new Float32Array(10).fill(0.25);
    const p = rtnCodec.encode(w, 2, 5, rtnCodec.resolveOptions({ bits: 2 }), ctx());
    expect([...rtnCodec.decode(p)]).toEqual([...w]);
  });

  it('validates options', () => {
    expect(codeOf(() => rtnCodec.resolveOptions({ bits: 5 }))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(codeOf(() => rtnCodec.resolveOptions({ groupSize: -1 }))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(codeOf(() => rtnCodec.resolveOptions({ bitz: 4 }))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(rtnCodec.resolveOptions({ bits: '3' })).toEqual({ bits: 3, groupSize: 64 });
  });
});

describe('binary', () => {
  it('keeps signs (sign(0) = +1) with the mean |w| per row', () => {
    const w = Float32Array.from([0.5, -1, 0, 2, -0.25, -0.75]);
    const p = binaryCodec.encode(w, 2, 3, {}, ctx());
    const d = binaryCodec.decode(p);
    const s0 = f16BitsToF32(p.scales[0]!);
    const s1 = f16BitsToF32(p.scales[1]!);
    expect(s0).toBeCloseTo(0.5, 3);
    expect(s1).toBeCloseTo(1, 3);
    expect([...d]).toEqual([s0, -s0, s0, s1, -s1, -s1]);
  });
});

describe.each<[string, Codec<any, any>, Record<string, unknown>]>([
  ['rtn 3-bit', rtnCodec, { bits: 3, groupSize: 5 }],
  ['rtn 2-bit per row', rtnCodec, { bits: 2, groupSize: 0 }],
  ['binary', binaryCodec, {}],
  ['float f16', floatCodec, { dtype: 'f16' }],
  ['float f32', floatCodec, { dtype: 'f32' }],
])('%s: storage', (_label, codec, raw) => {
  const options = codec.resolveOptions(raw);

  it.each(SHAPES)('bits() equals the stored bytes × 8; tensors round-trip; decodeRows agrees (%i×%i)', (rows, cols) => {
    const w = new Rng(rows + 100 * cols).normalArray(rows * cols);
    const p = codec.encode(w, rows, cols, options, ctx());
    const tensors = codec.toTensors(p);
    const bytes = Object.values(tensors).reduce((n, t) => n + t.data.byteLength, 0);
    expect(codec.bits(p).total).toBe(bytes * 8);
    const copy = Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { ...t, data: t.data.slice() }]));
    const back = codec.fromTensors(copy, rows, cols, options, 'bundle.usk');
    const dense = codec.decode(p);
    expect([...codec.decode(back)]).toEqual([...dense]);
    const rowsOut = new Float32Array(cols);
    codec.decodeRows(p, rows - 1, 1, rowsOut);
    expect([...rowsOut]).toEqual([...dense.subarray((rows - 1) * cols)]);
  });

  it('fromTensors rejects missing or mis-shaped tensors with typed errors naming the source', () => {
    const p = codec.encode(new Rng(1).normalArray(6 * 10), 6, 10, options, ctx());
    const tensors = codec.toTensors(p);
    const first = Object.keys(tensors)[0]!;
    const missing = { ...tensors };
    delete missing[first];
    expect(codeOf(() => codec.fromTensors(missing, 6, 10, options, 'x.usk'))).toBe(ErrorCodes.MISSING_TENSOR);
    const short = { ...tensors, [first]: { ...tensors[first]!, data: tensors[first]!.data.subarray(1) } };
    expect(codeOf(() => codec.fromTensors(short, 6, 10, options, 'x.usk'))).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(codeOf(() => codec.fromTensors(tensors, 7, 10, options, 'x.usk'))).toBe(ErrorCodes.SHAPE_MISMATCH);
  });

  it('refuses NaN weights, naming the tensor', () => {
    const w = new Float32Array(12);
    w[5] = Number.NaN;
    expect(codeOf(() => codec.encode(w, 3, 4, options, ctx('model.layers.0.mlp.up_proj.weight')))).toBe(ErrorCodes.NOT_FINITE);
  });
});
