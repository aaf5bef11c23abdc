import { Rng } from '@ultrasketch/core';
import { type LittleBitParams, littlebitCodec } from '@ultrasketch/littlebit';
import { describe, expect, it } from 'vitest';
import { type LittleBitTiling, emitLittleBitModule, wasmLittlebitKernel } from '../src/kernels/wasm-littlebit.js';
import { LITTLEBIT_SHAPES, checkLittleBitZeros, checkRealLittleBitLinears, encodeLittleBit as encode, ranksUpTo } from './kernel-cases.js';
import { worstKernelError } from './oracle.js';

/**
 * The WebAssembly LittleBit kernel against the oracle (decode() to dense, float64 product): 1e-5 relative to
 * Σ_j |ŵ_ij x_j|. Both table kinds on both stages (the tiling thresholds are forced both ways), n = 1
 * (single-vector tables, float64 sums) and n = 2..9 (four-vector tables: blocks of 4 and a remainder).
 * Shapes and the zero and real-layer checks in kernel-cases.ts, shared with littlebit-kernel.test.ts.
 */
function worstRelativeError(params: LittleBitParams, x: Float32Array, n: number, tiling?: LittleBitTiling): number {
  const k = wasmLittlebitKernel(params, tiling ? { tiling } : {});
  expect(k.constructor.name).toBe('WasmLittleBitLinear');
  return worstKernelError(littlebitCodec.decode(params), params.rows, params.cols, k, x, n);
}

const BYTES: LittleBitTiling = { byteMinRows1: 1, byteMinRows4: 1, maxTableBytes: 1 << 30 };
const NIBBLES: LittleBitTiling = { byteMinRows1: 1 << 30, byteMinRows4: 1 << 30, maxTableBytes: 1 << 30 };

describe('wasm littlebit kernel equals decode-then-dense', () => {
  it('the module validates', () => {
    expect(WebAssembly.validate(emitLittleBitModule())).toBe(true);
  });

  it.each(LITTLEBIT_SHAPES)('random %i×%i, ranks 1..min (≤ 9, plus full), residual on/off, byte and nibble tables, n = 1, 2, 5, 9', (rows, cols) => {
    const rng = new Rng(rows * 7919 + cols);
    const w = rng.normalArray(rows * cols);
    for (const rank of ranksUpTo(rows, cols, 9)) {
      for (const residual of [false, true]) {
        const params = encode(w, rows, cols, { rank, residual });
        for (const tiling of [BYTES, NIBBLES, undefined]) {
          for (const n of [1, 2, 5, 9]) {
            const err = worstRelativeError(params, rng.normalArray(n * cols), n, tiling);
            expect(err, `rank ${rank} residual ${residual} n ${n} ${JSON.stringify(tiling)}`).toBeLessThanOrEqual(1e-5);
          }
        }
      }
    }
  });

  it('larger: 260×240 at ranks 225 and 232, 520×264 at rank 264', () => {
    const rng = new Rng(5);
    for (const [rows, cols, rank] of [
      [260, 240, 225],
      [260, 240, 232],
      [520, 264, 264],
    ] as Array<[number, number, number]>) {
      const params = encode(rng.normalArray(rows * cols), rows, cols, { rank, residual: true });
      for (const tiling of [BYTES, NIBBLES]) {
        for (const n of [1, 4]) expect(worstRelativeError(params, rng.normalArray(n * cols), n, tiling)).toBeLessThanOrEqual(1e-5);
      }
    }
  });

  it('zero input gives zero output; a zero matrix gives zero output', () => {
    checkLittleBitZeros((p) => wasmLittlebitKernel(p));
  });

  it('every linear of stories3M layers 0, 2, 4 at 0.55 bpw (1 path), 1.0 bpw (2 paths), 1.2 bpw multiple8, n = 1 and 4', () => {
    checkRealLittleBitLinears((params, x, n) => worstRelativeError(params, x, n));
  });
});
