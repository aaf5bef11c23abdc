import { createTrainerExp } from '@ultrasketch/runtime-node';
import { describe, expect, it } from 'vitest';

/**
 * The attention soft-max kernel for L a multiple of 4 (runtime-node trainer-exp.ts `softmax_causal4`: the
 * partial last vector through one masked exponential, zeros written 4 at a time) against a float64 reference,
 * with garbage — huge values, NaN — after each row's position t, as the causal scores leave there.
 */
const exp = createTrainerExp();

describe('causal soft-max kernel, L a multiple of 4', () => {
  it.skipIf(exp === null)('every row: p ≤ t within 1e-6 of float64, exactly 0 after t whatever was there; L = 4, 12, 128', () => {
    for (const L of [4, 12, 128]) {
      const G = 3;
      const rows = G * L;
      const s = new Float32Array(rows * L);
      let seed = 7;
      const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
      for (let r = 0; r < rows; r++) {
        const t = r % L;
        for (let p = 0; p < L; p++) s[r * L + p] = p <= t ? 6 * rnd() : p % 3 === 0 ? NaN : p % 3 === 1 ? 3e38 : -1e30;
      }
      const scale = 0.35;
      const ref = new Float64Array(rows * L);
      for (let r = 0; r < rows; r++) {
        const t = r % L;
        let max = -Infinity;
        for (let p = 0; p <= t; p++) max = Math.max(max, scale * s[r * L + p]!);
        let sum = 0;
        for (let p = 0; p <= t; p++) sum += Math.exp(scale * s[r * L + p]! - max);
        for (let p = 0; p <= t; p++) ref[r * L + p] = Math.exp(scale * s[r * L + p]! - max) / sum;
      }
      exp!.softmaxCausal(s, rows, L, scale);
      for (let r = 0; r < rows; r++) {
        const t = r % L;
        for (let p = 0; p < L; p++) {
          const got = s[r * L + p]!;
          if (p <= t) expect(Math.abs(got - ref[r * L + p]!), `L ${L} row ${r} p ${p}`).toBeLessThanOrEqual(1e-6 * Math.max(ref[r * L + p]!, 1e-3));
          else expect(Object.is(got, 0), `L ${L} row ${r} p ${p}: ${got}`).toBe(true);
        }
      }
    }
  });
});
