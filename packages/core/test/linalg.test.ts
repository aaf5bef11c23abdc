import { describe, expect, it } from 'vitest';
import {
  ErrorCodes,
  type Matrix,
  Rng,
  UltraSketchError,
  leadingSingularPair,
  matmul,
  matmulNT,
  matmulTN,
  matrix,
  matrixFrom,
  qr,
  svd,
  transpose,
  truncatedSvd,
} from '../src/index.js';

/**
 * Linear algebra against known answers: products against a naive triple loop, QR by orthogonality and
 * reconstruction, the exact SVD against matrices BUILT with a known spectrum (A = U diag(σ) Vᵀ with U, V
 * orthonormal from QR of Gaussian matrices), the truncated SVD against the exact one.
 */

function gaussian(rows: number, cols: number, seed: number): Matrix {
  const rng = new Rng(seed);
  return matrixFrom(rows, cols, Array.from({ length: rows * cols }, () => rng.normal()));
}

function naive(a: Matrix, b: Matrix): Matrix {
  const c = matrix(a.rows, b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let j = 0; j < b.cols; j++) {
      let s = 0;
      for (let l = 0; l < a.cols; l++) s += a.data[i * a.cols + l]! * b.data[l * b.cols + j]!;
      c.data[i * b.cols + j] = s;
    }
  }
  return c;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

function maxAbs(a: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]!));
  return d;
}

/** max |QᵀQ − I| over the columns of a matrix. */
function orthogonalityError(q: Matrix): number {
  const g = matmulTN(q, q);
  let e = 0;
  for (let i = 0; i < g.rows; i++) for (let j = 0; j < g.cols; j++) e = Math.max(e, Math.abs(g.data[i * g.cols + j]! - (i === j ? 1 : 0)));
  return e;
}

/** An orthonormal n × k basis (k ≤ n) from the QR of a Gaussian matrix. */
function orthonormal(n: number, k: number, seed: number): Matrix {
  return qr(gaussian(n, k, seed)).q;
}

/** A = U diag(σ) Vᵀ with the given σ (length k ≤ min(m, n)). */
function withSpectrum(m: number, n: number, sigma: number[], seed: number): { a: Matrix; u: Matrix; v: Matrix } {
  const k = sigma.length;
  const u = orthonormal(m, k, seed);
  const v = orthonormal(n, k, seed + 1);
  const us = matrix(m, k);
  for (let i = 0; i < m; i++) for (let c = 0; c < k; c++) us.data[i * k + c] = u.data[i * k + c]! * sigma[c]!;
  return { a: matmulNT(us, v), u, v };
}

function column(m: Matrix, c: number): Float64Array {
  return Float64Array.from({ length: m.rows }, (_, i) => m.data[i * m.cols + c]!);
}

function absDot(x: Float64Array, y: Float64Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * y[i]!;
  return Math.abs(s);
}

const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1],
  [1, 5, 3],
  [5, 1, 3],
  [4, 4, 4],
  [13, 7, 9],
  [7, 130, 33],
  [33, 130, 6],
  [67, 5, 258],
];

describe('matrix products', () => {
  it.each(SHAPES)('A·B, Aᵀ·B, A·Bᵀ match a naive triple loop (%i×%i times %i cols)', (m, n, k) => {
    const a = gaussian(m, n, m * 31 + n);
    const b = gaussian(n, k, k);
    const ref = naive(a, b);
    const tol = 1e-12 * Math.max(1, maxAbs(ref.data)) * Math.sqrt(n);
    expect(maxAbsDiff(matmul(a, b).data, ref.data)).toBeLessThan(tol);
    expect(maxAbsDiff(matmulTN(transpose(a), b).data, ref.data)).toBeLessThan(tol);
    expect(maxAbsDiff(matmulNT(a, transpose(b)).data, ref.data)).toBeLessThan(tol);
    // float32 operands are used as they are (no float64 copy) and give the same products of their values
    const a32 = { rows: m, cols: n, data: Float32Array.from(a.data) };
    const ref32 = naive(matrixFrom(m, n, a32.data), b);
    expect(maxAbsDiff(matmul(a32, b).data, ref32.data)).toBeLessThan(tol);
  });

  it('rejects shapes that do not fit, with a typed error', () => {
    expect(() => matmul(matrix(2, 3), matrix(2, 3))).toThrow(UltraSketchError);
    expect(() => matmulTN(matrix(2, 3), matrix(3, 3))).toThrow(UltraSketchError);
    expect(() => matmulNT(matrix(2, 3), matrix(3, 2))).toThrow(UltraSketchError);
  });
});

describe('Householder QR', () => {
  it.each([
    [1, 1],
    [9, 1],
    [1, 9],
    [10, 10],
    [50, 12],
    [12, 50],
    [300, 40],
  ])('%i×%i: Q orthonormal, R upper triangular with diag ≥ 0, QR = A', (m, n) => {
    const a = gaussian(m, n, m + 1000 * n);
    const { q, r } = qr(a);
    const k = Math.min(m, n);
    expect([q.rows, q.cols, r.rows, r.cols]).toEqual([m, k, k, n]);
    expect(orthogonalityError(q)).toBeLessThan(1e-14 * Math.max(10, m));
    for (let i = 0; i < k; i++) {
      expect(r.data[i * n + i]!).toBeGreaterThanOrEqual(0);
      for (let j = 0; j < Math.min(i, n); j++) expect(r.data[i * n + j]).toBe(0);
    }
    expect(maxAbsDiff(matmul(q, r).data, a.data)).toBeLessThan(1e-13 * maxAbs(a.data) * Math.sqrt(m));
  });

  it('handles zero and repeated columns (rank-deficient input)', () => {
    const a = gaussian(20, 6, 5);
    for (let i = 0; i < 20; i++) {
      a.data[i * 6 + 2] = 0; // a zero column
      a.data[i * 6 + 4] = a.data[i * 6 + 1]!; // a repeated column
    }
    const { q, r } = qr(a);
    expect(orthogonalityError(q)).toBeLessThan(1e-13);
    expect(maxAbsDiff(matmul(q, r).data, a.data)).toBeLessThan(1e-13);
  });
});

describe('exact SVD (one-sided Jacobi)', () => {
  const spectra: Array<[string, number, number, number[]]> = [
    ['geometric 100 → 0.01, tall', 60, 25, Array.from({ length: 25 }, (_, i) => 100 * 1e-4 ** (i / 24))],
    ['geometric, wide', 25, 60, Array.from({ length: 25 }, (_, i) => 100 * 1e-4 ** (i / 24))],
    ['square, linear', 40, 40, Array.from({ length: 40 }, (_, i) => 40 - i)],
    ['square, tiny scale', 12, 12, Array.from({ length: 12 }, (_, i) => 1e-30 * (12 - i))],
    ['huge scale', 12, 9, Array.from({ length: 9 }, (_, i) => 1e30 * (9 - i))],
    ['1×1', 1, 1, [3.5]],
    ['1×7', 1, 7, [2]],
    ['7×1', 7, 1, [2]],
  ];

  it.each(spectra)('%s: singular values to 1e-10 relative, vectors up to sign', (_label, m, n, sigma) => {
    const { a, u, v } = withSpectrum(m, n, sigma, m * 7 + n);
    const r = svd(a);
    const k = Math.min(m, n);
    expect(r.s.length).toBe(k);
    for (let i = 0; i < sigma.length; i++) expect(Math.abs(r.s[i]! - sigma[i]!)).toBeLessThanOrEqual(1e-10 * sigma[i]!);
    for (let i = 0; i < sigma.length; i++) {
      // well-separated σ's: vectors determined up to sign
      expect(absDot(column(r.u, i), column(u, i))).toBeGreaterThan(1 - 1e-10);
      expect(absDot(column(r.v, i), column(v, i))).toBeGreaterThan(1 - 1e-10);
    }
    expect(orthogonalityError(r.u)).toBeLessThan(1e-13);
    expect(orthogonalityError(r.v)).toBeLessThan(1e-13);
  });

  it('rank-deficient input: zero singular values, U still orthonormal, U diag(s) Vᵀ = A', () => {
    const sigma = [5, 4, 3, 0, 0, 0];
    const { a } = withSpectrum(30, 6, sigma.slice(0, 3), 11);
    const r = svd(a);
    for (let i = 0; i < 3; i++) expect(Math.abs(r.s[i]! - sigma[i]!)).toBeLessThan(1e-12 * 5);
    for (let i = 3; i < 6; i++) expect(r.s[i]!).toBeLessThan(1e-13 * 5);
    expect(orthogonalityError(r.u)).toBeLessThan(1e-12);
    const us = matrix(30, 6);
    for (let i = 0; i < 30; i++) for (let c = 0; c < 6; c++) us.data[i * 6 + c] = r.u.data[i * 6 + c]! * r.s[c]!;
    expect(maxAbsDiff(matmulNT(us, r.v).data, a.data)).toBeLessThan(1e-13 * 5);
    const z = svd(matrix(4, 3));
    expect([...z.s]).toEqual([0, 0, 0]);
    expect(orthogonalityError(z.u)).toBeLessThan(1e-15);
  });

  it('repeated singular values: values exact, the subspace reconstructs A', () => {
    const sigma = [3, 3, 3, 1, 1];
    const { a } = withSpectrum(20, 15, sigma, 3);
    const r = svd(a);
    for (let i = 0; i < 5; i++) expect(Math.abs(r.s[i]! - sigma[i]!)).toBeLessThan(1e-12 * 3);
    for (let i = 5; i < 15; i++) expect(r.s[i]!).toBeLessThan(1e-13 * 3);
  });

  it('is deterministic and normalizes signs (largest |u_i| entry positive)', () => {
    const a = gaussian(17, 11, 8);
    const r1 = svd(a);
    const r2 = svd(a);
    expect([...r1.u.data]).toEqual([...r2.u.data]);
    for (let c = 0; c < 11; c++) {
      const col = column(r1.u, c);
      const big = col.reduce((best, x) => (Math.abs(x) > Math.abs(best) ? x : best), 0);
      expect(big).toBeGreaterThan(0);
    }
  });

  it('refuses non-finite input with NOT_FINITE', () => {
    const a = gaussian(3, 3, 1);
    a.data[4] = Number.NaN;
    try {
      svd(a);
      expect.unreachable();
    } catch (err) {
      expect((err as UltraSketchError).code).toBe(ErrorCodes.NOT_FINITE);
    }
  });
});

describe('leading singular pair (power iteration)', () => {
  it.each([
    [40, 12],
    [12, 40],
    [300, 64],
    [1, 1],
  ])('nonnegative %i×%i: matches the exact SVD; u, v ≥ 0', (m, n) => {
    const rng = new Rng(m * n);
    const a = matrixFrom(m, n, Array.from({ length: m * n }, () => Math.abs(rng.normal()) * (1 + rng.next())));
    const exact = svd(a);
    const p = leadingSingularPair(a);
    expect(Math.abs(p.sigma - exact.s[0]!)).toBeLessThan(1e-12 * exact.s[0]!);
    expect(absDot(p.u, column(exact.u, 0))).toBeGreaterThan(1 - 1e-10);
    expect(absDot(p.v, column(exact.v, 0))).toBeGreaterThan(1 - 1e-10);
    for (const x of p.u) expect(x).toBeGreaterThanOrEqual(-1e-12);
    for (const x of p.v) expect(x).toBeGreaterThanOrEqual(-1e-12);
  });

  it('zero matrix: σ = 0 with unit vectors', () => {
    const p = leadingSingularPair(matrix(3, 4));
    expect(p.sigma).toBe(0);
    expect([...p.u]).toEqual([1, 0, 0]);
  });
});

describe('truncated SVD (randomized range finder + power iterations)', () => {
  // Stated tolerances, per spectrum (rank k, default oversampling 10 and 2 power iterations):
  // - fast decay (σ_i = 0.8^i): leading k values to 1e-10 relative, vectors |cos| > 1 − 1e-8;
  // - slow decay (σ_i = (i+1)^-0.5, like a language-model weight), rank 40: with q = 2 the first 10 values to
  //   1e-3 relative, the first 20 to 2e-2, all 40 to 1e-1 (measured: 1.8e-4, 7.4e-3, 6.0e-2 over two seeds),
  //   and the rank-40 approximation error within 2% of the optimal (Eckart–Young) error (measured 0.7%);
  //   with q = 4: first 10 to 1e-6, all 40 to 3e-2, error within 0.5% (measured 1.8e-7, 1.3e-2, 0.11%).
  //   (q = 0 is off by 18% on σ_1 here: power iterations are not optional for flat spectra.)
  it('fast decay 400×300, rank 20: matches the exact SVD closely', () => {
    const sigma = Array.from({ length: 300 }, (_, i) => 0.8 ** i);
    const { a } = withSpectrum(400, 300, sigma, 21);
    const exact = svd(a);
    const t = truncatedSvd(a, { rank: 20, seed: 7 });
    expect([t.u.rows, t.u.cols, t.v.rows, t.v.cols, t.s.length]).toEqual([400, 20, 300, 20, 20]);
    for (let i = 0; i < 20; i++) {
      expect(Math.abs(t.s[i]! - exact.s[i]!)).toBeLessThan(1e-10 * exact.s[i]!);
      expect(absDot(column(t.u, i), column(exact.u, i))).toBeGreaterThan(1 - 1e-8);
      expect(absDot(column(t.v, i), column(exact.v, i))).toBeGreaterThan(1 - 1e-8);
    }
    expect(orthogonalityError(t.u)).toBeLessThan(1e-13);
    expect(orthogonalityError(t.v)).toBeLessThan(1e-13);
  });

  it.each([
    [2, [1e-3, 2e-2, 1e-1], 1.02],
    [4, [1e-6, 1e-3, 3e-2], 1.005],
  ])('slow decay 300×500 (wide), rank 40, q = %i: leading values close, near-optimal approximation', (q, tols, errTol) => {
    const sigma = Array.from({ length: 300 }, (_, i) => (i + 1) ** -0.5);
    const { a } = withSpectrum(300, 500, sigma, 5);
    const t = truncatedSvd(a, { rank: 40, seed: 1, powerIterations: q });
    for (let i = 0; i < 40; i++) {
      const rel = Math.abs(t.s[i]! - sigma[i]!) / sigma[i]!;
      expect(rel).toBeLessThan(i < 10 ? tols[0]! : i < 20 ? tols[1]! : tols[2]!);
      expect(t.s[i]!).toBeLessThanOrEqual(sigma[i]! * (1 + 1e-12)); // a projection never overestimates
    }
    // ‖A − U S Vᵀ‖_F vs the optimum sqrt(Σ_{i ≥ 40} σ_i²)
    const us = matrix(300, 40);
    for (let i = 0; i < 300; i++) for (let c = 0; c < 40; c++) us.data[i * 40 + c] = t.u.data[i * 40 + c]! * t.s[c]!;
    const approx = matmulNT(us, t.v);
    let err = 0;
    for (let i = 0; i < a.data.length; i++) err += (a.data[i]! - approx.data[i]!) ** 2;
    const opt = sigma.slice(40).reduce((s, x) => s + x * x, 0);
    expect(Math.sqrt(err)).toBeLessThan(errTol * Math.sqrt(opt));
  });

  it('is deterministic for a seed; float32 input works in place', () => {
    const a = gaussian(120, 90, 4);
    const a32 = { rows: 120, cols: 90, data: Float32Array.from(a.data) };
    const t1 = truncatedSvd(a32, { rank: 8, seed: 3 });
    const t2 = truncatedSvd(a32, { rank: 8, seed: 3 });
    expect([...t1.s]).toEqual([...t2.s]);
    expect([...t1.u.data]).toEqual([...t2.u.data]);
    expect([...t1.v.data]).toEqual([...t2.v.data]);
  });

  it('falls back to the exact SVD when rank + oversampling reaches min(m, n)', () => {
    const a = gaussian(30, 20, 9);
    const t = truncatedSvd(a, { rank: 12 });
    const exact = svd(a);
    for (let i = 0; i < 12; i++) expect(t.s[i]).toBe(exact.s[i]);
  });

  it('validates its arguments', () => {
    const a = gaussian(10, 8, 1);
    for (const bad of [{ rank: 0 }, { rank: 9 }, { rank: 2.5 }, { rank: 2, oversampling: -1 }, { rank: 2, powerIterations: 1.5 }]) {
      expect(() => truncatedSvd(a, bad)).toThrow(UltraSketchError);
    }
  });
});
