import { Rng } from '@ultrasketch/core';
import { type LittleBitParams, littlebitCodec } from '@ultrasketch/littlebit';
import { describe, expect, it } from 'vitest';
import { littlebitKernel } from '../src/kernels/littlebit.js';
import { LITTLEBIT_SHAPES, checkLittleBitZeros, checkRealLittleBitLinears, encodeLittleBit as encode, ranksUpTo } from './kernel-cases.js';
import { worstKernelError } from './oracle.js';

/**
 * The fused LittleBit kernel against the oracle: decode() to dense, then a float64 product. Tolerance: 1e-5
 * relative to Σ_j |ŵ_ij x_j| (as for every kernel in kernels.test.ts). Shapes and the zero and real-layer
 * checks in kernel-cases.ts, shared with kernel-wasm-littlebit.test.ts.
 */
function worstRelativeError(params: LittleBitParams, x: Float32Array, n: number): number {
  return worstKernelError(littlebitCodec.decode(params), params.rows, params.cols, littlebitKernel(params), x, n);
}

describe('littlebit kernel equals decode-then-dense', () => {
  it.each(LITTLEBIT_SHAPES)('random %i×%i, every rank 1..min (≤ 12, plus full), residual on and off, n = 1, 3', (rows, cols) => {
    const rng = new Rng(rows * 7919 + cols);
    const w = rng.normalArray(rows * cols);
    for (const rank of ranksUpTo(rows, cols, 12)) {
      for (const residual of [false, true]) {
        const params = encode(w, rows, cols, { rank, residual });
        for (const n of [1, 3]) {
          expect(worstRelativeError(params, rng.normalArray(n * cols), n), `rank ${rank} residual ${residual} n ${n}`).toBeLessThanOrEqual(1e-5);
        }
      }
    }
  });

  it('byte tables on both stages (rank ≥ 225, in % 8 == 0 used in place) and rank % 8 == 0', () => {
    const rng = new Rng(5);
    const [rows, cols] = [260, 240];
    const w = rng.normalArray(rows * cols);
    for (const rank of [225, 232]) {
      const params = encode(w, rows, cols, { rank, residual: true });
      expect(worstRelativeError(params, rng.normalArray(2 * cols), 2)).toBeLessThanOrEqual(1e-5);
    }
  });

  it('zero input gives zero output; a zero matrix gives zero output', () => {
    checkLittleBitZeros((p) => littlebitKernel(p));
  });

  it('every linear of stories3M at 0.55 bpw (1 path), 1.0 bpw (2 paths), 1.2 bpw multiple8 (2 paths), n = 1 and n = 4', () => {
    checkRealLittleBitLinears(worstRelativeError);
  });
});
