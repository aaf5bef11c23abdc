import { binaryCodec, rtnCodec } from '@ultrasketch/baselines';
import { Rng } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import { wasmBinaryKernel } from '../src/kernels/wasm-binary.js';
import { emitRtnModule, wasmRtnKernel } from '../src/kernels/wasm-rtn.js';
import type { LittleBitTiling } from '../src/kernels/wasm-littlebit.js';
import { stories3MLinears, worstCodecError } from './kernel-cases.js';
import { AWKWARD_SHAPES } from './shapes.js';

/**
 * The WebAssembly kernels of the baseline codecs against the oracle (decode() to dense, float64 product):
 * 1e-5 relative to Σ_j |ŵ_ij x_j|. Awkward shapes (rows not byte-aligned, re-packed), both table kinds,
 * n = 1 and the four-vector path (n = 2..9), and the real stories3M linears.
 */
const SHAPES: Array<[number, number]> = [
  ...AWKWARD_SHAPES,
  [70, 256],
];
const BYTES: LittleBitTiling = { byteMinRows1: 1, byteMinRows4: 1, maxTableBytes: 1 << 30 };
const NIBBLES: LittleBitTiling = { byteMinRows1: 1 << 30, byteMinRows4: 1 << 30, maxTableBytes: 1 << 30 };

describe('wasm binary kernel equals decode-then-dense', () => {
  it.each(SHAPES)('random %i×%i, byte and nibble tables, n = 1, 2, 5, 9', (rows, cols) => {
    const rng = new Rng(rows * 7919 + cols);
    const params = binaryCodec.encode(rng.normalArray(rows * cols), rows, cols, {}, { name: 't', seed: 1 });
    for (const tiling of [BYTES, NIBBLES, undefined]) {
      const k = wasmBinaryKernel(params, tiling ? { tiling } : {});
      expect(k.constructor.name).toBe('WasmBinaryLinear');
      for (const n of [1, 2, 5, 9]) {
        expect(worstCodecError(binaryCodec, k, params, rng.normalArray(n * cols), n), `n ${n}`).toBeLessThanOrEqual(1e-5);
      }
    }
  });

  it('every linear of stories3M layers 0 and 5, n = 1 and 4', () => {
    const rng = new Rng(3);
    for (const { name, rows, cols, weight } of stories3MLinears([0, 5])) {
      const params = binaryCodec.encode(weight, rows, cols, {}, { name, seed: 1 });
      const k = wasmBinaryKernel(params);
      for (const n of [1, 4]) expect(worstCodecError(binaryCodec, k, params, rng.normalArray(n * cols), n), name).toBeLessThanOrEqual(1e-5);
    }
  });
});

describe('wasm rtn kernel equals decode-then-dense', () => {
  it('the module validates', () => {
    expect(WebAssembly.validate(emitRtnModule())).toBe(true);
  });

  const OPTIONS = [
    { bits: 2, groupSize: 64 },
    { bits: 4, groupSize: 64 },
    { bits: 8, groupSize: 64 },
    { bits: 2, groupSize: 16 }, // groups shorter than a chunk: re-packed
    { bits: 4, groupSize: 0 }, // one group per row
    { bits: 4, groupSize: 5 },
    { bits: 8, groupSize: 100 },
  ];
  it.each(SHAPES)('random %i×%i, bits 2/4/8, several group sizes, n = 1, 2, 4, 5, 9', (rows, cols) => {
    const rng = new Rng(rows * 7919 + cols);
    const w = rng.normalArray(rows * cols);
    for (const raw of OPTIONS) {
      const params = rtnCodec.encode(w, rows, cols, rtnCodec.resolveOptions(raw), { name: 't', seed: 1 });
      const k = wasmRtnKernel(params);
      expect(k.constructor.name).toBe('WasmRtnLinear');
      for (const n of [1, 2, 4, 5, 9]) {
        expect(worstCodecError(rtnCodec, k, params, rng.normalArray(n * cols), n), `${JSON.stringify(raw)} n ${n}`).toBeLessThanOrEqual(1e-5);
      }
    }
  });

  it('3-bit codes use the JS kernel', () => {
    const rng = new Rng(1);
    const params = rtnCodec.encode(rng.normalArray(40), 4, 10, rtnCodec.resolveOptions({ bits: 3 }), { name: 't', seed: 1 });
    expect(wasmRtnKernel(params).constructor.name).toBe('RtnLinear');
  });

  it('every linear of stories3M layers 0 and 5, bits 2 and 4 (groups of 64), n = 1 and 4', () => {
    const rng = new Rng(3);
    for (const { name, rows, cols, weight } of stories3MLinears([0, 5])) {
      for (const bits of [2, 4]) {
        const params = rtnCodec.encode(weight, rows, cols, rtnCodec.resolveOptions({ bits, groupSize: 64 }), { name, seed: 1 });
        const k = wasmRtnKernel(params);
        for (const n of [1, 4]) expect(worstCodecError(rtnCodec, k, params, rng.normalArray(n * cols), n), `${name} ${bits}`).toBeLessThanOrEqual(1e-5);
      }
    }
  });
});
