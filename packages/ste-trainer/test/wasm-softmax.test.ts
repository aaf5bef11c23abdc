import { setFlagsFromString } from 'node:v8';
import { createTrainerExp, createTrainerGemm, createTrainerOps } from '@ultrasketch/runtime-node';
import { describe, expect, it } from 'vitest';

/**
 * The attention soft-max kernel for L a multiple of 4 (runtime-node trainer-exp.ts `softmax_causal4`: the
 * partial last vector through one masked exponential, zeros written 4 at a time) against a float64 reference,
 * with garbage — huge values, NaN — after each row's position t, as the causal scores leave there.
 */
const exp = createTrainerExp();
// the trainer's variant where relaxed SIMD compiles: fused multiply-add Horner steps (the gemm turns the flag on)
const fmaGemm = createTrainerGemm({ fma: true, setFlags: setFlagsFromString });
const expFma = fmaGemm?.fma ? createTrainerExp(fmaGemm.mem, { fma: true }) : null;
const opsFma = fmaGemm?.fma ? createTrainerOps(fmaGemm.mem, { fma: true }) : null;

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

  it.skipIf(expFma === null)('fused multiply-add exponentials (the trainer\'s with relaxed SIMD): within 2e-7 of Math.exp over [-87, 88], σ within 2e-7; the soft-max as above', () => {
    expect(expFma!.fma && opsFma!.fma).toBe(true);
    const n = 40_000;
    const x = Float32Array.from({ length: n }, (_, i) => -87 + (175 * i) / (n - 1));
    const y = new Float32Array(n);
    expFma!.expRows(x, y, 1, n, 1, [0]);
    for (let i = 0; i < n; i++) {
      const e = Math.exp(x[i]!);
      expect(Math.abs(y[i]! - e) / e, `x ${x[i]}`).toBeLessThanOrEqual(2e-7);
    }
    const g = Float32Array.from({ length: 4096 }, (_, i) => ((i % 97) - 48) / 4);
    const u = Float32Array.from({ length: 4096 }, (_, i) => ((i % 13) - 6) / 3);
    const h = new Float32Array(4096);
    const sig = new Float32Array(4096);
    expect(opsFma!.swigluForward(g, u, h, sig, 4096)).toBe(true);
    for (let i = 0; i < 4096; i++) {
      const s = 1 / (1 + Math.exp(-g[i]!));
      expect(Math.abs(sig[i]! - s)).toBeLessThanOrEqual(2e-7 * s + 1e-12);
      expect(Math.abs(h[i]! - g[i]! * s * u[i]!)).toBeLessThanOrEqual(1e-6 * Math.abs(g[i]! * u[i]!) + 1e-12);
    }
    const L = 12;
    const s = Float32Array.from({ length: 3 * L * L }, (_, i) => Math.sin(i));
    expFma!.softmaxCausal(s, 3 * L, L, 0.5);
    for (let r = 0; r < 3 * L; r++) {
      let sum = 0;
      for (let p = 0; p < L; p++) sum += s[r * L + p]!;
      expect(Math.abs(sum - 1)).toBeLessThan(1e-6);
      for (let p = (r % L) + 1; p < L; p++) expect(s[r * L + p]).toBe(0);
    }
  });
});
