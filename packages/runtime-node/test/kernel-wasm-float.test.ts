import { readFileSync } from 'node:fs';
import { type FloatParams, floatCodec } from '@ultrasketch/baselines';
import { Rng, f16BitsToF32 } from '@ultrasketch/core';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { TensorNames, modelFromLlama2c } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { WasmArena } from '../src/wasm/arena.js';
import { asEmbeddingTable, emitFloatModule, wasmF16ToF32, wasmFloatKernel } from '../src/kernels/wasm-float.js';
import { worstKernelError } from './oracle.js';
import { AWKWARD_SHAPES } from './shapes.js';

/**
 * The `float` codec's wasm kernel (the f16 embedding/classifier read as stored) against decode-then-dense in
 * float64, 1e-5 relative to Σ_j |ŵ_ij x_j|: awkward shapes (cols not a multiple of 8 → padded rows), zeros,
 * signed zeros and f16 subnormals in the weights (the real stories3M table has none, so they are planted), every block size of the prefill path, Inf/NaN weights, and
 * the real stories3M embedding.
 */
const SHAPES: Array<[number, number]> = [...AWKWARD_SHAPES, [17, 255], [64, 301], [300, 40], [9, 8], [5, 16]];
const BATCHES = [1, 2, 3, 4, 5, 8, 9, 11, 70];

function f16Params(values: Float32Array, rows: number, cols: number): FloatParams {
  return floatCodec.encode(values, rows, cols, floatCodec.resolveOptions({ dtype: 'f16' }), { name: 't', seed: 1 });
}

describe('wasm float kernel', () => {
  it('the module validates', () => {
    expect(WebAssembly.validate(emitFloatModule())).toBe(true);
  });

  it('the in-register f16 → f32 conversion equals f16BitsToF32 on all 65536 patterns (sign of zero, NaN included)', () => {
    const bits = new Uint16Array(65536).map((_, i) => i);
    const got = wasmF16ToF32(new WasmArena(), bits);
    let wrong = 0;
    for (let h = 0; h < 65536; h++) {
      const want = Math.fround(f16BitsToF32(h));
      if (!Object.is(got[h], want)) wrong++;
    }
    expect(wrong).toBe(0);
  });

  it.each(SHAPES)('f16 %i×%i with zeros, −0 and subnormals equals decode-then-dense, n = 1 … 70', (rows, cols) => {
    const rng = new Rng(rows * 7919 + cols);
    const values = rng.normalArray(rows * cols);
    // every 5th weight a subnormal f16 (|v| < 2^-14), every 7th ±0: the conversion's special cases
    for (let i = 0; i < values.length; i++) {
      if (i % 5 === 1) values[i] = (i % 2 ? -1 : 1) * (((i * 37) % 1023) + 1) * 2 ** -24;
      if (i % 7 === 3) values[i] = i % 2 ? -0 : 0;
    }
    const params = f16Params(values, rows, cols);
    const k = wasmFloatKernel(params);
    expect(k.constructor.name).toBe('WasmF16Linear');
    const dense = floatCodec.decode(params);
    for (const n of BATCHES) {
      expect(worstKernelError(dense, rows, cols, k, rng.normalArray(n * cols), n), `n ${n}`).toBeLessThanOrEqual(1e-5);
    }
  });

  it('Inf and NaN weights propagate like the decoded matrix (row by row), other rows unaffected', () => {
    const rows = 6;
    const cols = 19;
    const rng = new Rng(11);
    // the codec refuses non-finite inputs, so the bit patterns go into stored params directly
    const params = f16Params(rng.normalArray(rows * cols), rows, cols);
    const bits = params.data as Uint16Array;
    bits[1 * cols + 4] = 0x7c00; // +Inf
    bits[2 * cols + 18] = 0xfc00; // −Inf
    bits[3 * cols + 0] = 0x7e01; // NaN with a payload
    bits[4 * cols + 7] = 0x7c00;
    bits[4 * cols + 9] = 0xfc00; // Inf − Inf = NaN
    const k = wasmFloatKernel(params);
    const dense = floatCodec.decode(params);
    for (const n of [1, 3, 6]) {
      const x = rng.normalArray(n * cols).map((v) => Math.abs(v) + 0.1); // positive: the signs of Inf are known
      const y = new Float32Array(n * rows);
      k.apply(x, y, n);
      for (let t = 0; t < n; t++) {
        for (let r = 0; r < rows; r++) {
          let ref = 0;
          let scale = 0;
          for (let j = 0; j < cols; j++) {
            ref += dense[r * cols + j]! * x[t * cols + j]!;
            scale += Math.abs(dense[r * cols + j]! * x[t * cols + j]!);
          }
          const got = y[t * rows + r]!;
          if (!Number.isFinite(ref)) expect(Object.is(got, ref) || (Number.isNaN(ref) && Number.isNaN(got)), `t ${t} r ${r}`).toBe(true);
          else expect(Math.abs(got - ref) / scale, `t ${t} r ${r}`).toBeLessThanOrEqual(1e-5);
        }
      }
      expect(y[1]).toBe(Infinity);
      expect(y[2]).toBe(-Infinity);
      expect(y[3]).toBeNaN();
      expect(y[4]).toBeNaN();
    }
  });

  it('row tiles do not change the sums: every row equals the same row run alone, bit for bit (n = 1, 2, 5)', () => {
    const rows = 13;
    const cols = 77;
    const rng = new Rng(21);
    const params = f16Params(rng.normalArray(rows * cols), rows, cols);
    const whole = wasmFloatKernel(params);
    const bits = params.data as Uint16Array;
    for (const n of [1, 2, 5]) {
      const x = rng.normalArray(n * cols);
      const y = new Float32Array(n * rows);
      whole.apply(x, y, n);
      for (let r = 0; r < rows; r++) {
        const one = wasmFloatKernel({ ...params, rows: 1, data: bits.slice(r * cols, (r + 1) * cols) });
        const y1 = new Float32Array(n);
        one.apply(x, y1, n);
        for (let t = 0; t < n; t++) expect(y[t * rows + r], `n ${n} row ${r} token ${t}`).toBe(y1[t]);
      }
    }
  });

  it('as the embedding table of a tied model: lookup equals the codec decodeRows bit for bit; bad ids throw', () => {
    for (const [rows, cols] of [[41, 1], [13, 7], [17, 255], [9, 8]] as Array<[number, number]>) {
      const values = new Rng(rows + cols).normalArray(rows * cols);
      values[0] = -0;
      if (values.length > 2) values[2] = 3 * 2 ** -24; // an f16 subnormal
      const params = f16Params(values, rows, cols);
      const table = asEmbeddingTable(wasmFloatKernel(params))!;
      expect(table).toBeDefined();
      for (const token of [0, 1, rows >> 1, rows - 1]) {
        const got = new Float32Array(cols + 5).fill(7);
        table.lookup(token, got, 2);
        const want = new Float32Array(cols);
        floatCodec.decodeRows(params, token, 1, want);
        expect(Array.from(got.subarray(2, 2 + cols)).every((v, j) => Object.is(v, want[j]))).toBe(true);
        expect([got[0], got[1], got[cols + 2], got[cols + 4]]).toEqual([7, 7, 7, 7]); // nothing outside the row
      }
      expect(() => table.lookup(rows, new Float32Array(cols), 0)).toThrow(/outside/);
      expect(() => table.lookup(-1, new Float32Array(cols), 0)).toThrow(/outside/);
    }
    const f32 = floatCodec.encode(new Rng(1).normalArray(12), 3, 4, floatCodec.resolveOptions({ dtype: 'f32' }), { name: 't', seed: 1 });
    expect(asEmbeddingTable(wasmFloatKernel(f32))).toBeUndefined();
  });

  it('reads the stored f16 bytes in place: cols % 8 = 0 holds exactly the stored bytes in the arena', () => {
    const arena = new WasmArena();
    const rows = 40;
    const cols = 64;
    const params = f16Params(new Rng(5).normalArray(rows * cols), rows, cols);
    const before = arena.bytesUsed;
    wasmFloatKernel(params, { arena });
    // the stored bytes plus storeBytes' 16 bytes of padding (and 16-byte alignment): no f32 matrix
    expect(arena.bytesUsed - before).toBeLessThanOrEqual(rows * cols * 2 + 32);
  });

  it('f32 storage runs the dense wasm kernel and equals decode-then-dense', () => {
    const rng = new Rng(9);
    for (const [rows, cols] of SHAPES) {
      const params = floatCodec.encode(rng.normalArray(rows * cols), rows, cols, floatCodec.resolveOptions({ dtype: 'f32' }), { name: 't', seed: 1 });
      const k = wasmFloatKernel(params);
      expect(k.constructor.name).toBe('WasmDenseLinear');
      for (const n of [1, 5]) expect(worstKernelError(floatCodec.decode(params), rows, cols, k, rng.normalArray(n * cols), n)).toBeLessThanOrEqual(1e-5);
    }
  });

  it("stories3M's real f16 embedding (the tied classifier), n = 1, 4 and 7", () => {
    const model = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(new URL('../../../../shared/models/stories3M/stories3M-q80.bin', import.meta.url))));
    const { vocabSize: rows, dim: cols } = model.config;
    const params = floatCodec.encode(model.tensors.get(TensorNames.embedding)!.data, rows, cols, floatCodec.resolveOptions({ dtype: 'f16' }), {
      name: TensorNames.embedding,
      seed: 1,
    });
    expect(params.data).toBeInstanceOf(Uint16Array);
    const k = wasmFloatKernel(params);
    const dense = floatCodec.decode(params);
    const rng = new Rng(4);
    for (const n of [1, 4, 7]) expect(worstKernelError(dense, rows, cols, k, rng.normalArray(n * cols), n), `n ${n}`).toBeLessThanOrEqual(1e-5);
  });
});
