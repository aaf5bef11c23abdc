import { type Matrix, type MatrixLike, f16BitsToF32, matmul, matmulNT, matmulTN } from '@ultrasketch/core';
import { type LittleBitFactors, type LittleBitPath, type SvdSettings, balanceScales, dualSvidFactors, toPath } from './dualSvid.js';
import { signAt } from './signs.js';

/**
 * Opt-in refinements of the LittleBit initialization (docs/littlebit.md, "The residual path at equal bits, and a refined initialization"). None of
 * them changes the stored form: they return paths of the same ranks (same tensors, same bits), only with
 * other signs and scales. The default codec does not call them.
 *
 * - Least-squares scales (`lsRefine`): with the signs fixed, Ŵ_p = diag(h) U_s diag(ℓ) V_sᵀ diag(g) is linear
 *   in each of h, ℓ, g separately, so each has a closed-form minimizer of ‖(T − Ŵ_p)·diag(w)^½‖_F for a
 *   target T (W minus the other path) and optional column weights w (the activation second moments E[a_j²]):
 *     h_i = Σ_j T_ij M_ij w_j / Σ_j M_ij² w_j                    M = U_s diag(ℓ) V_sᵀ diag(g)
 *     g_j = Σ_i T_ij N_ij / Σ_i N_ij²                            N = diag(h) U_s diag(ℓ) V_sᵀ (w_j cancels)
 *     ℓ   = G⁻¹ c,  G = (AᵀA) ∘ (BᵀWB),  c_k = a_kᵀ T W b_k      A = diag(h) U_s, B = diag(g) V_s, W = diag(w)
 *   Block-coordinate descent over (ℓ, h, g) of every path: each update is an exact block minimizer, so the
 *   objective never increases in exact arithmetic; f16 rounding is guarded by keeping the best stored result.
 * - Backfitting (`backfit`): re-fit path 1 by Dual-SVID on W − Ŵ₂, then path 2 on W − Ŵ₁, for N rounds,
 *   keeping a round only if it lowers the objective of the stored (f16) paths.
 */

/** A path in float64 with unpacked signs (±1), for refinement. Rank may differ between paths. */
export interface WorkPath {
  rank: number;
  /** U_s [out, r] row-major, ±1. */
  u: Float64Array;
  /** V_s [in, r] row-major, ±1. */
  v: Float64Array;
  h: Float64Array;
  g: Float64Array;
  l: Float64Array;
}

export function workFromFactors(f: LittleBitFactors): WorkPath {
  const sgn = (x: number) => (x < 0 ? -1 : 1);
  return {
    rank: f.rank,
    u: Float64Array.from(f.uPrime.data, sgn),
    v: Float64Array.from(f.vPrime.data, sgn),
    h: Float64Array.from(f.h),
    g: Float64Array.from(f.g),
    l: Float64Array.from(f.l),
  };
}

/** A stored path back to float64 (signs unpacked, f16 scales widened). */
export function workFromPath(p: LittleBitPath, out: number, inp: number, rank: number): WorkPath {
  const u = new Float64Array(out * rank);
  for (let i = 0; i < out * rank; i++) u[i] = signAt(p.uSigns, i);
  const v = new Float64Array(inp * rank);
  for (let k = 0; k < rank; k++) for (let j = 0; j < inp; j++) v[j * rank + k] = signAt(p.vSigns, k * inp + j);
  const f = (x: Uint16Array) => Float64Array.from(x, f16BitsToF32);
  return { rank, u, v, h: f(p.h), g: f(p.g), l: f(p.l) };
}

/** Balance the scales (Ŵ unchanged) and round to the stored path. */
export function workToPath(w: WorkPath, out: number, inp: number, source = 'littlebit'): LittleBitPath {
  const h = Float64Array.from(w.h);
  const g = Float64Array.from(w.g);
  const l = Float64Array.from(w.l);
  balanceScales(h, g, l);
  return toPath(
    { rank: w.rank, uPrime: { rows: out, cols: w.rank, data: w.u }, vPrime: { rows: inp, cols: w.rank, data: w.v }, h, g, l },
    source,
  );
}

/** Dense Ŵ [out, in] of a work path in float64. */
export function workDense(w: WorkPath, out: number, inp: number): Matrix {
  const r = w.rank;
  const left = new Float64Array(out * r);
  for (let i = 0; i < out; i++) for (let k = 0; k < r; k++) left[i * r + k] = w.h[i]! * w.u[i * r + k]! * w.l[k]!;
  const right = new Float64Array(inp * r);
  for (let j = 0; j < inp; j++) for (let k = 0; k < r; k++) right[j * r + k] = w.g[j]! * w.v[j * r + k]!;
  return matmulNT({ rows: out, cols: r, data: left }, { rows: inp, cols: r, data: right });
}

/** Σ_ij (T_ij − Σ_p Ŵ_p,ij)² · w_j (w = 1 when absent). */
export function weightedError(t: ArrayLike<number>, approx: ArrayLike<number>[], cols: number, colWeight?: Float64Array): number {
  let e = 0;
  for (let i = 0; i < t.length; i++) {
    let d = t[i]!;
    for (const a of approx) d -= a[i]!;
    e += d * d * (colWeight ? colWeight[i % cols]! : 1);
  }
  return e;
}

/** One block-coordinate pass (ℓ, then h, then g) of a work path against the target t [out, in], in place. */
export function lsStep(w: WorkPath, t: Float64Array, out: number, inp: number, colWeight?: Float64Array): void {
  const r = w.rank;
  const wt = (j: number) => (colWeight ? colWeight[j]! : 1);
  const T: Matrix = { rows: out, cols: inp, data: t };
  // ℓ: G ℓ = c with G = (AᵀA) ∘ (Bᵀ W B), c_k = a_kᵀ T W b_k.
  {
    const A = new Float64Array(out * r);
    for (let i = 0; i < out; i++) for (let k = 0; k < r; k++) A[i * r + k] = w.h[i]! * w.u[i * r + k]!;
    const B = new Float64Array(inp * r);
    const BW = new Float64Array(inp * r);
    for (let j = 0; j < inp; j++) {
      for (let k = 0; k < r; k++) {
        B[j * r + k] = w.g[j]! * w.v[j * r + k]!;
        BW[j * r + k] = B[j * r + k]! * wt(j);
      }
    }
    const Am: Matrix = { rows: out, cols: r, data: A };
    const ata = matmulTN(Am, Am).data;
    const btwb = matmulTN({ rows: inp, cols: r, data: B }, { rows: inp, cols: r, data: BW }).data;
    const tb = matmul(T, { rows: inp, cols: r, data: BW }).data; // [out, r]
    const G = new Float64Array(r * r);
    for (let i = 0; i < r * r; i++) G[i] = ata[i]! * btwb[i]!;
    const c = new Float64Array(r);
    for (let i = 0; i < out; i++) for (let k = 0; k < r; k++) c[k] = c[k]! + A[i * r + k]! * tb[i * r + k]!;
    const l = solveSpd(G, c, r);
    if (l) w.l.set(l);
  }
  // h: row-wise, M = U_s diag(ℓ) (diag(g) V_s)ᵀ.
  {
    const left = new Float64Array(out * r);
    for (let i = 0; i < out; i++) for (let k = 0; k < r; k++) left[i * r + k] = w.u[i * r + k]! * w.l[k]!;
    const right = new Float64Array(inp * r);
    for (let j = 0; j < inp; j++) for (let k = 0; k < r; k++) right[j * r + k] = w.g[j]! * w.v[j * r + k]!;
    const M = matmulNT({ rows: out, cols: r, data: left }, { rows: inp, cols: r, data: right }).data;
    for (let i = 0; i < out; i++) {
      let num = 0;
      let den = 0;
      for (let j = 0; j < inp; j++) {
        const m = M[i * inp + j]!;
        num += t[i * inp + j]! * m * wt(j);
        den += m * m * wt(j);
      }
      if (den > 0) w.h[i] = num / den;
    }
  }
  // g: column-wise (a column weight cancels), N = diag(h) U_s diag(ℓ) V_sᵀ.
  {
    const left = new Float64Array(out * r);
    for (let i = 0; i < out; i++) for (let k = 0; k < r; k++) left[i * r + k] = w.h[i]! * w.u[i * r + k]! * w.l[k]!;
    const N = matmulNT({ rows: out, cols: r, data: left }, { rows: inp, cols: r, data: w.v }).data;
    const num = new Float64Array(inp);
    const den = new Float64Array(inp);
    for (let i = 0; i < out; i++) {
      for (let j = 0; j < inp; j++) {
        const n = N[i * inp + j]!;
        num[j] = num[j]! + t[i * inp + j]! * n;
        den[j] = den[j]! + n * n;
      }
    }
    for (let j = 0; j < inp; j++) if (den[j]! > 0) w.g[j] = num[j]! / den[j]!;
  }
}

/**
 * One pass of greedy sign flips (U_s rows, then V_s rows) of a work path against t, scales fixed, in place.
 * Row i of U_s: f(u) = h_i²·uᵀGu − 2h_i·uᵀc with G = B W Bᵀ, c = B W t_iᵀ, B = diag(ℓ) V_sᵀ diag(g) [r, in];
 * flipping u_k changes f by Δ = 4u_k·(h_i c_k − h_i²((Gu)_k − G_kk u_k)), flipped when Δ < 0 (so f strictly
 * decreases at every flip; sweeps over k repeat until none flips, at most `maxSweeps`). V_s the same by
 * columns (a column weight factors out). Returns the number of flips.
 */
export function signStep(w: WorkPath, t: Float64Array, out: number, inp: number, colWeight?: Float64Array, maxSweeps = 8): number {
  const r = w.rank;
  let flips = 0;
  // A row-sign problem: rows of `signs` [n, r] against targets (rows of tgt [n, m]) with row scale `sc`.
  const solve = (signs: Float64Array, n: number, sc: Float64Array, G: Float64Array, C: Float64Array) => {
    const gu = new Float64Array(r);
    for (let i = 0; i < n; i++) {
      const hi = sc[i]!;
      if (hi === 0) continue;
      const u = signs.subarray(i * r, (i + 1) * r);
      for (let k = 0; k < r; k++) {
        let s = 0;
        for (let m = 0; m < r; m++) s += G[k * r + m]! * u[m]!;
        gu[k] = s;
      }
      for (let sweep = 0; sweep < maxSweeps; sweep++) {
        let changed = false;
        for (let k = 0; k < r; k++) {
          const uk = u[k]!;
          const delta = 4 * uk * (hi * C[i * r + k]! - hi * hi * (gu[k]! - G[k * r + k]! * uk));
          if (delta < -1e-15 * Math.abs(hi * C[i * r + k]!)) {
            u[k] = -uk;
            for (let m = 0; m < r; m++) gu[m] = gu[m]! - 2 * uk * G[m * r + k]!;
            changed = true;
            flips++;
          }
        }
        if (!changed) break;
      }
    }
  };
  const T: Matrix = { rows: out, cols: inp, data: t };
  // U_s: B [in, r] (columns b_k = ℓ_k g ⊙ v_k), weighted by w.
  {
    const B = new Float64Array(inp * r);
    const BW = new Float64Array(inp * r);
    for (let j = 0; j < inp; j++) {
      for (let k = 0; k < r; k++) {
        B[j * r + k] = w.l[k]! * w.g[j]! * w.v[j * r + k]!;
        BW[j * r + k] = B[j * r + k]! * (colWeight ? colWeight[j]! : 1);
      }
    }
    const G = matmulTN({ rows: inp, cols: r, data: B }, { rows: inp, cols: r, data: BW }).data;
    const C = matmul(T, { rows: inp, cols: r, data: BW }).data; // [out, r]
    solve(w.u, out, w.h, G, C);
  }
  // V_s: A [out, r] (columns a_k = ℓ_k h ⊙ u_k); column j of T against g_j·V_s[j]·Aᵀ.
  {
    const A = new Float64Array(out * r);
    for (let i = 0; i < out; i++) for (let k = 0; k < r; k++) A[i * r + k] = w.l[k]! * w.h[i]! * w.u[i * r + k]!;
    const Am: Matrix = { rows: out, cols: r, data: A };
    const G = matmulTN(Am, Am).data;
    const C = matmulTN(T, Am).data; // [in, r]
    solve(w.v, inp, w.g, G, C);
  }
  return flips;
}

/** Cholesky solve of a symmetric positive semi-definite system (tiny ridge); null if it breaks down. */
function solveSpd(G: Float64Array, c: Float64Array, n: number): Float64Array | null {
  let tr = 0;
  for (let i = 0; i < n; i++) tr += G[i * n + i]!;
  if (!(tr > 0)) return null;
  const ridge = 1e-12 * (tr / n);
  const L = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = G[i * n + j]! + (i === j ? ridge : 0);
      for (let k = 0; k < j; k++) s -= L[i * n + k]! * L[j * n + k]!;
      if (i === j) {
        if (!(s > 0)) return null;
        L[i * n + i] = Math.sqrt(s);
      } else L[i * n + j] = s / L[j * n + j]!;
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = c[i]!;
    for (let k = 0; k < i; k++) s -= L[i * n + k]! * y[k]!;
    y[i] = s / L[i * n + i]!;
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < n; k++) s -= L[k * n + i]! * x[k]!;
    x[i] = s / L[i * n + i]!;
  }
  for (let i = 0; i < n; i++) if (!Number.isFinite(x[i]!)) return null;
  return x;
}

export interface RefineSettings {
  /** Backfitting rounds (two paths only): Dual-SVID of W − Ŵ₂ for path 1, then of W − Ŵ₁ for path 2. */
  backfitRounds?: number;
  /** Rounds of least-squares scale updates (ℓ, h, g of every path in turn). */
  lsRounds?: number;
  /** With lsRounds: also re-fit the signs (greedy flips, `signStep`) of every path in every round. */
  refineSigns?: boolean;
  /** Column weights of the objective (E[a_j²] per input channel); Frobenius when absent. */
  colWeight?: Float64Array;
  svd?: SvdSettings;
  /** SVD seed of path p in backfitting round t: seed + p + 2t (path seeds of the plain init are seed, seed + 1). */
  seed?: number;
  source?: string;
}

export interface RefineResult {
  paths: LittleBitPath[];
  /** The objective of the stored paths before and after (never larger after). */
  before: number;
  after: number;
}

/**
 * Refine stored paths (any ranks, one or two paths) for the objective Σ (W − ΣŴ_p)² w_j. Returns paths with
 * the same ranks; the result's objective (of the f16-rounded, stored paths) is never above the input's.
 */
export function refinePaths(
  wIn: MatrixLike,
  paths: LittleBitPath[],
  ranks: number[],
  settings: RefineSettings,
): RefineResult {
  const { rows: out, cols: inp } = wIn;
  const W = Float64Array.from(wIn.data);
  const cw = settings.colWeight;
  const source = settings.source ?? 'littlebit';
  const denseOf = (ps: LittleBitPath[]) => ps.map((p, i) => workDense(workFromPath(p, out, inp, ranks[i]!), out, inp).data);
  const objective = (ps: LittleBitPath[]) => weightedError(W, denseOf(ps), inp, cw);
  let best = paths;
  let bestErr = objective(paths);
  const before = bestErr;
  const seed = settings.seed ?? 0;

  // Backfitting with Dual-SVID re-initialization of each path on what the other leaves.
  if (paths.length === 2) {
    let cur = paths;
    for (let t = 1; t <= (settings.backfitRounds ?? 0); t++) {
      const next = cur.slice();
      for (let p = 0; p < 2; p++) {
        const other = workDense(workFromPath(next[1 - p]!, out, inp, ranks[1 - p]!), out, inp).data;
        const target = new Float64Array(out * inp);
        for (let i = 0; i < target.length; i++) target[i] = W[i]! - other[i]!;
        const f = dualSvidFactors({ rows: out, cols: inp, data: target }, ranks[p]!, { ...settings.svd, seed: (seed + p + 2 * t) >>> 0 });
        next[p] = toPath(f, source);
      }
      const e = objective(next);
      cur = next;
      if (e < bestErr) {
        best = next;
        bestErr = e;
      }
    }
  }

  // Least-squares scales, block-coordinate over the paths, from the best so far.
  const lsRounds = settings.lsRounds ?? 0;
  if (lsRounds > 0) {
    const work = best.map((p, i) => workFromPath(p, out, inp, ranks[i]!));
    const dense = work.map((w) => workDense(w, out, inp).data);
    for (let t = 0; t < lsRounds; t++) {
      for (let p = 0; p < work.length; p++) {
        const target = Float64Array.from(W);
        for (let q = 0; q < work.length; q++) if (q !== p) for (let i = 0; i < target.length; i++) target[i] = target[i]! - dense[q]![i]!;
        if (settings.refineSigns) signStep(work[p]!, target, out, inp, cw);
        lsStep(work[p]!, target, out, inp, cw);
        dense[p] = workDense(work[p]!, out, inp).data;
      }
      // Round to f16 after every round (what is stored) and keep the best stored result.
      const stored = work.map((w) => workToPath(w, out, inp, source));
      const e = objective(stored);
      if (e < bestErr) {
        best = stored;
        bestErr = e;
      }
    }
  }
  return { paths: best, before, after: bestErr };
}
