import { ErrorCodes, UltraSketchError } from '../errors.js';
import { Rng } from '../rng.js';
import { type Matrix, type MatrixLike, matmul, matmulNT, matmulTN, matvec, matvecT } from './matrix.js';
import { qr } from './qr.js';
import { type SVD, normalizeSigns, svd } from './svd.js';

/**
 * Truncated SVD of a big matrix by a randomized range finder (Halko, Martinsson & Tropp 2011, Alg. 4.4 + 5.1):
 *
 *   Ω ~ N(0, 1)^{n × ℓ} (ℓ = rank + oversampling, drawn from the seeded Rng)
 *   Q = qr(A Ω)                                   — an orthonormal basis for the sampled range
 *   repeat q times: Q = qr(A · qr(Aᵀ Q))          — power iterations, re-orthonormalized each half-step
 *   Bᵀ = Aᵀ Q [n, ℓ];  Bᵀ = Ũ S W̃ᵀ (exact SVD)     — so A ≈ Q B = (Q W̃) S Ũᵀ
 *   U = (Q W̃)[:, :rank], V = Ũ[:, :rank], s = S[:rank]
 *
 * The leading singular values are accurate when σ_{rank+1} ≪ σ_1 or after enough power iterations: the
 * error of the rank-k result is, in expectation, within a factor (1 + small)·(σ_{k+p+1}/σ_k)^{2q+1}-ish of
 * optimal. Weight matrices of language models have slowly decaying spectra, so q = 2 is the default.
 * When rank + oversampling reaches min(m, n) the range finder would sample the whole space anyway, and the
 * exact SVD is used instead. The result is deterministic for a seed (same seed → bit-identical output).
 *
 * Cost: 2q + 2 products of A with an ℓ-column matrix (2·m·n·ℓ flops each), q + 1 QRs of m × ℓ, q + 1 of
 * n × ℓ, and one ℓ × ℓ Jacobi SVD.
 */
export interface TruncatedSvdOptions {
  rank: number;
  /** Extra random directions sampled beyond the rank (default 10). */
  oversampling?: number;
  /** Power iterations q (default 2). */
  powerIterations?: number;
  /** Seed of the Gaussian test matrix (default 0). */
  seed?: number;
}

export const TSVD_DEFAULTS = { oversampling: 10, powerIterations: 2, seed: 0 } as const;

export function truncatedSvd(a: MatrixLike, options: TruncatedSvdOptions): SVD {
  const { rows: m, cols: n } = a;
  const kmax = Math.min(m, n);
  const rank = options.rank;
  const p = options.oversampling ?? TSVD_DEFAULTS.oversampling;
  const q = options.powerIterations ?? TSVD_DEFAULTS.powerIterations;
  if (!Number.isInteger(rank) || rank < 1 || rank > kmax) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `truncatedSvd: rank ${rank} must be an integer in [1, ${kmax}] for a ${m}×${n} matrix`);
  }
  if (!Number.isInteger(p) || p < 0) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `truncatedSvd: oversampling ${p} must be an integer ≥ 0`);
  if (!Number.isInteger(q) || q < 0) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `truncatedSvd: powerIterations ${q} must be an integer ≥ 0`);
  for (let i = 0; i < a.data.length; i++) {
    if (!Number.isFinite(a.data[i]!)) {
      throw new UltraSketchError(ErrorCodes.NOT_FINITE, `truncatedSvd: entry ${i} of the ${m}×${n} matrix is ${a.data[i]}`);
    }
  }
  const l = Math.min(kmax, rank + p);
  if (l >= kmax) return truncate(svd(a), rank);

  const rng = new Rng(options.seed ?? TSVD_DEFAULTS.seed);
  const omega = new Float64Array(n * l);
  for (let i = 0; i < omega.length; i++) omega[i] = rng.normal();
  let Q = qr(matmul(a, { rows: n, cols: l, data: omega })).q;
  for (let it = 0; it < q; it++) {
    const Qz = qr(matmulTN(a, Q)).q;
    Q = qr(matmul(a, Qz)).q;
  }
  const bt = matmulTN(a, Q); // [n, l] = (Qᵀ A)ᵀ
  const small = svd(bt); // bt = Ũ S W̃ᵀ
  const u = matmul(Q, small.v); // [m, l]
  return truncate(normalizeSigns({ u, s: small.s, v: small.u }), rank);
}

/** The first `rank` singular triplets. */
export function truncate(r: SVD, rank: number): SVD {
  const k = r.s.length;
  if (rank >= k) return r;
  const cut = (mat: Matrix): Matrix => {
    const out = new Float64Array(mat.rows * rank);
    for (let i = 0; i < mat.rows; i++) for (let c = 0; c < rank; c++) out[i * rank + c] = mat.data[i * k + c]!;
    return { rows: mat.rows, cols: rank, data: out };
  };
  return { u: cut(r.u), s: r.s.slice(0, rank), v: cut(r.v) };
}

/**
 * The leading singular triplet (σ₁, u₁, v₁) of A [m, n], by power iteration on the smaller Gram matrix
 * (AᵀA or AAᵀ), started from the all-ones vector — for a nonnegative matrix (LittleBit's |U'|, |V'|) that
 * start is already close to the Perron vector, and u₁, v₁ come out nonnegative. Stops when the iterate
 * moves less than `tolerance` (2-norm) or after `maxIterations`; with a tiny gap σ₁ ≈ σ₂ the vector is then
 * some unit vector of the near-degenerate top subspace, whose Rayleigh quotient is still ≈ σ₁².
 * Sign convention as in `svd`: the largest-magnitude entry of u is positive. A zero matrix gives σ = 0,
 * u = e₁, v = e₁.
 */
export function leadingSingularPair(
  a: MatrixLike,
  options: { maxIterations?: number; tolerance?: number } = {},
): { sigma: number; u: Float64Array; v: Float64Array } {
  const { rows: m, cols: n } = a;
  if (m === 0 || n === 0) throw new UltraSketchError(ErrorCodes.BAD_DIMENSION, `leadingSingularPair: empty ${m}×${n} matrix`);
  const maxIt = options.maxIterations ?? 2000;
  const tol = options.tolerance ?? 1e-14;
  const small = Math.min(m, n);
  // Gram matrix of the smaller side: G = AᵀA (n ≤ m) or AAᵀ.
  const G = n <= m ? matmulTN(a, a) : matmulNT(a, a);
  let x: Float64Array = new Float64Array(small).fill(1 / Math.sqrt(small));
  let y: Float64Array = new Float64Array(small);
  for (let it = 0; it < maxIt; it++) {
    y = matvec(G, x);
    let ny = 0;
    for (let i = 0; i < small; i++) ny += y[i]! * y[i]!;
    ny = Math.sqrt(ny);
    if (ny === 0) break;
    let diff = 0;
    for (let i = 0; i < small; i++) {
      y[i] = y[i]! / ny;
      diff += (y[i]! - x[i]!) ** 2;
    }
    const t = x;
    x = y;
    y = t;
    if (Math.sqrt(diff) < tol) break;
  }
  // x is the leading singular vector of the smaller side; map it to the other side.
  let v: Float64Array;
  let u: Float64Array;
  if (n <= m) {
    v = x;
    u = matvec(a, v);
  } else {
    u = x;
    v = matvecT(a, u);
  }
  const other = n <= m ? u : v;
  let sigma = 0;
  for (let i = 0; i < other.length; i++) sigma += other[i]! * other[i]!;
  sigma = Math.sqrt(sigma);
  if (sigma === 0) {
    const e = (len: number) => {
      const z = new Float64Array(len);
      z[0] = 1;
      return z;
    };
    return { sigma: 0, u: e(m), v: e(n) };
  }
  for (let i = 0; i < other.length; i++) other[i] = other[i]! / sigma;
  let best = 0;
  for (let i = 1; i < m; i++) if (Math.abs(u[i]!) > Math.abs(u[best]!)) best = i;
  if (u[best]! < 0) {
    for (let i = 0; i < m; i++) u[i] = -u[i]!;
    for (let i = 0; i < n; i++) v[i] = -v[i]!;
  }
  return { sigma, u, v };
}
