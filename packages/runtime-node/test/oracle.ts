import type { Linear } from '@ultrasketch/model';
import { expect } from 'vitest';

/**
 * The kernel-vs-oracle measure every kernel test uses: run `kernel` on X [n, cols] and compare each output
 * with the float64 product of the dense oracle Ŵ (codec.decode) and X. The error of output (t, r) is taken
 * relative to Σ_j |ŵ_rj x_tj| — the scale of the rounding error of any summation order — and NaN counts as
 * infinitely wrong. Guard slots after the n·rows outputs must stay untouched (no write past the end).
 */
export function worstKernelError(
  dense: Float32Array,
  rows: number,
  cols: number,
  kernel: Linear,
  x: Float32Array,
  n: number,
): number {
  const guard = 3;
  const y = new Float32Array(n * rows + guard).fill(Number.NaN);
  kernel.apply(x, y, n);
  for (let i = n * rows; i < y.length; i++) expect(y[i]).toBeNaN();
  return worstOutputError(dense, rows, cols, x, y, n);
}

/** The same measure on outputs computed elsewhere (e.g. in a browser page): Y [n, rows] against Ŵ·X. */
export function worstOutputError(dense: Float32Array, rows: number, cols: number, x: Float32Array, y: ArrayLike<number>, n: number): number {
  let worst = 0;
  for (let t = 0; t < n; t++) {
    for (let r = 0; r < rows; r++) {
      let ref = 0;
      let scale = 0;
      for (let j = 0; j < cols; j++) {
        const p = dense[r * cols + j]! * x[t * cols + j]!;
        ref += p;
        scale += Math.abs(p);
      }
      const err = Math.abs(y[t * rows + r]! - ref) / (scale || 1);
      worst = Math.max(worst, Number.isNaN(err) ? Infinity : err);
    }
  }
  return worst;
}
