import { setFlagsFromString } from 'node:v8';
import { createTrainerGemm } from '@ultrasketch/runtime-node';
import { describe, expect, it } from 'vitest';

/**
 * The gemm's `causalRows` (attention's O = P·V and dQ = dS·K with each query block's reduction cut after its
 * key block; strided FMA tiles) against the full product: the same bits, since the cut terms are exact zeros
 * and every lane sums the others in the same order.
 */
function rand(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

const fma = createTrainerGemm({ minWork: 0, fma: true, setFlags: setFlagsFromString });

describe('causal rows products', () => {
  it.skipIf(fma === null || !fma.fma)('bit for bit the full product for A zero after t (L = 72: a partial block; L = 128); others not taken', () => {
    const g = fma!;
    for (const [G, L, hs] of [
      [3, 72, 16],
      [3, 128, 32],
    ] as const) {
      const a = g.allocF32(G * L * L);
      const b = g.allocF32(L * hs);
      const r = rand(G * L * L, 3 + L);
      for (let row = 0; row < G * L; row++) for (let p = 0; p <= row % L; p++) a[row * L + p] = r[row * L + p]!;
      b.set(rand(L * hs, 5 + L));
      const full = new Float32Array(G * L * hs);
      expect(g.matmul(a, b, full, G * L, hs, L, false, false, false)).toBe(true);
      const c = g.allocF32(G * L * hs).fill(777);
      expect(g.causalRows(a, b, c, G, L, hs)).toBe(true);
      expect(Array.from(c), `G ${G} L ${L} hs ${hs}`).toEqual(Array.from(full));
      // an operand outside the gemm's memory: not taken, nothing written
      const untouched = g.allocF32(G * L * hs).fill(5);
      expect(g.causalRows(new Float32Array(G * L * L), b, untouched, G, L, hs)).toBe(false);
      expect(untouched.every((v) => v === 5)).toBe(true);
    }
  });

  it.skipIf(fma === null || !fma.fma)('causalCols (Aᵀ B over stacked heads, A zero for query < key): the full product to float32 rounding; others not taken', () => {
    const g = fma!;
    for (const [G, L, hs] of [
      [3, 72, 16],
      [3, 128, 32],
      [1, 40, 8],
    ] as const) {
      const a = g.allocF32(G * L * L);
      const b = g.allocF32(G * L * hs);
      const r = rand(G * L * L, 11 + L);
      for (let row = 0; row < G * L; row++) for (let p = 0; p <= row % L; p++) a[row * L + p] = r[row * L + p]!;
      b.set(rand(G * L * hs, 13 + L));
      // float64 reference of Aᵀ B
      const ref = new Float64Array(L * hs);
      let scale = 0;
      for (let p = 0; p < L; p++) {
        for (let i = 0; i < hs; i++) {
          let acc = 0;
          let mag = 0;
          for (let q = 0; q < G * L; q++) {
            acc += a[q * L + p]! * b[q * hs + i]!;
            mag += Math.abs(a[q * L + p]! * b[q * hs + i]!);
          }
          ref[p * hs + i] = acc;
          scale = Math.max(scale, mag);
        }
      }
      const c = g.allocF32(L * hs).fill(777);
      expect(g.causalCols(a, b, c, G, L, hs)).toBe(true);
      for (let e = 0; e < L * hs; e++) expect(Math.abs(c[e]! - ref[e]!), `G ${G} L ${L} entry ${e}`).toBeLessThan(1e-6 * scale);
      const untouched = g.allocF32(L * hs).fill(5);
      expect(g.causalCols(a, new Float32Array(G * L * hs), untouched, G, L, hs)).toBe(false);
      expect(untouched.every((v) => v === 5)).toBe(true);
    }
  });

  it.skipIf(fma === null || !fma.fma)('TN tiles (Aᵀ B in place, no transposes: ∂L/∂Ŵ): the float64 product to float32 rounding, accumulate adds; every edge tile', () => {
    const g = fma!;
    // m 3k + 1 (a 1-row edge), n 12k + 8 (4-column edges), k over two 128-row blocks with a remainder
    for (const [m, n, k] of [
      [37, 44, 300],
      [192, 192, 128],
      [3, 4, 1],
    ] as const) {
      const a = g.allocF32(k * m);
      const b = g.allocF32(k * n);
      a.set(rand(k * m, 21 + m));
      b.set(rand(k * n, 23 + n));
      const c0 = rand(m * n, 25);
      for (const accumulate of [false, true]) {
        const c = g.allocF32(m * n);
        c.set(c0);
        const copies = g.copiedFloats;
        expect(g.matmul(a, b, c, m, n, k, true, false, accumulate)).toBe(true);
        expect(g.copiedFloats).toBe(copies); // read and written in place
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            let ref = accumulate ? c0[i * n + j]! : 0;
            let mag = Math.abs(ref);
            for (let t = 0; t < k; t++) {
              ref += a[t * m + i]! * b[t * n + j]!;
              mag += Math.abs(a[t * m + i]! * b[t * n + j]!);
            }
            expect(Math.abs(c[i * n + j]! - ref), `${m}x${n}x${k} acc ${accumulate} (${i}, ${j})`).toBeLessThanOrEqual(1e-6 * mag + 1e-30);
          }
        }
        if (k >= 128) {
          // the TN path was the one taken: the transpose + NT path sums in another order (other bits somewhere)
          const viaNt = g.allocF32(m * n);
          viaNt.set(c0);
          g.tn = false;
          try {
            expect(g.matmul(a, b, viaNt, m, n, k, true, false, accumulate)).toBe(true);
          } finally {
            g.tn = true;
          }
          expect(Array.from(viaNt)).not.toEqual(Array.from(c));
        }
      }
    }
  });

  it.skipIf(fma === null || !fma.fma)('NN tiles (A B in place, B not transposed: ∂L/∂X): the float64 product to float32 rounding, accumulate adds; every edge tile', () => {
    const g = fma!;
    for (const [m, n, k] of [
      [37, 44, 300],
      [512, 192, 64],
      [4, 4, 3],
    ] as const) {
      const a = g.allocF32(m * k);
      const b = g.allocF32(k * n);
      a.set(rand(m * k, 31 + m));
      b.set(rand(k * n, 33 + n));
      const c0 = rand(m * n, 35);
      for (const accumulate of [false, true]) {
        const c = g.allocF32(m * n);
        c.set(c0);
        expect(g.matmul(a, b, c, m, n, k, false, false, accumulate)).toBe(true);
        for (let i = 0; i < m; i++) {
          for (let j = 0; j < n; j++) {
            let ref = accumulate ? c0[i * n + j]! : 0;
            let mag = Math.abs(ref);
            for (let t = 0; t < k; t++) {
              ref += a[i * k + t]! * b[t * n + j]!;
              mag += Math.abs(a[i * k + t]! * b[t * n + j]!);
            }
            expect(Math.abs(c[i * n + j]! - ref), `${m}x${n}x${k} acc ${accumulate} (${i}, ${j})`).toBeLessThanOrEqual(1e-6 * mag + 1e-30);
          }
        }
        if (k >= 64) {
          // the NN path was the one taken: transpose + NT sums in another order
          const viaNt = g.allocF32(m * n);
          viaNt.set(c0);
          g.nn = false;
          try {
            expect(g.matmul(a, b, viaNt, m, n, k, false, false, accumulate)).toBe(true);
          } finally {
            g.nn = true;
          }
          expect(Array.from(viaNt)).not.toEqual(Array.from(c));
        }
      }
    }
  });
});
