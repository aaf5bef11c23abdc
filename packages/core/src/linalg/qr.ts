import { type Matrix, type MatrixLike } from './matrix.js';

/**
 * Thin Householder QR: A [m, n] = Q [m, k] · R [k, n] with k = min(m, n), Q with orthonormal columns and R
 * upper triangular (upper trapezoidal when m < n), diag(R) ≥ 0 (so the factorization is unique when A has
 * full column rank).
 *
 * Householder rather than Gram–Schmidt: Q is orthonormal to rounding (‖QᵀQ − I‖ ≈ 1e-15) whatever the
 * conditioning of A, which is what re-orthonormalization between power iterations relies on. The work
 * array is column-major (each column of A contiguous). Reflectors are made in panels of four; the columns
 * right of a panel (and, when Q is formed, the columns of Q) get the panel's four reflectors in one fused
 * step — four dot products in one pass, the sequential coupling resolved through the reflectors' 4 × 4 Gram
 * matrix, one combined update in a second pass — so each column is read twice per panel instead of eight
 * times (about 2× faster than reflector-at-a-time on 8192 × 266).
 */
export interface QR {
  q: Matrix;
  r: Matrix;
}

export function qr(a: MatrixLike): QR {
  const { rows: m, cols: n } = a;
  const k = Math.min(m, n);
  // w[c·m + i] = A[i, c]
  const w = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let c = 0; c < n; c++) w[c * m + i] = a.data[i * n + c]!;
  const diag = new Float64Array(k);
  // Reflector j is H_j = I − 2 v vᵀ with unit v stored in vs[j·m + j .. (j+1)·m), zeros above row j
  // (v = 0, H_j = I, when A[j:, j] is already 0).
  const vs = new Float64Array(k * m);
  const G = new Float64Array(16);
  for (let j0 = 0; j0 < k; j0 += 4) {
    const nb = Math.min(4, k - j0);
    for (let j = j0; j < j0 + nb; j++) {
      diag[j] = makeReflector(w, j * m, vs, j * m, j, m);
      for (let c = j + 1; c < Math.min(n, j0 + nb); c++) reflect(vs, j * m, w, c * m, j, m);
    }
    if (nb === 4) {
      gram4(vs, j0 * m, m, j0, G);
      for (let c = j0 + 4; c < n; c++) reflect4(vs, j0 * m, m, G, w, c * m, j0, false);
    } else {
      for (let j = j0; j < j0 + nb; j++) for (let c = j0 + nb; c < n; c++) reflect(vs, j * m, w, c * m, j, m);
    }
  }
  // R: row j = diag on the diagonal, w above it; rows flipped so diag(R) ≥ 0 (Q's columns flipped to match).
  const r = new Float64Array(k * n);
  const flip = new Float64Array(k);
  for (let j = 0; j < k; j++) {
    flip[j] = diag[j]! < 0 ? -1 : 1;
    r[j * n + j] = Math.abs(diag[j]!);
    for (let c = j + 1; c < n; c++) r[j * n + c] = flip[j]! * w[c * m + j]!;
  }
  // Q = H_0 H_1 … H_{k−1} [I_k; 0]: panels from the last to the first, each applied (its reflectors in
  // reverse order) to the columns c ≥ its first reflector — columns left of it are still unit vectors
  // that these reflectors do not touch.
  const qc = new Float64Array(k * m);
  for (let c = 0; c < k; c++) qc[c * m + c] = 1;
  for (let j0 = Math.floor((k - 1) / 4) * 4; j0 >= 0; j0 -= 4) {
    const nb = Math.min(4, k - j0);
    if (nb === 4) {
      gram4(vs, j0 * m, m, j0, G);
      for (let c = j0; c < k; c++) reflect4(vs, j0 * m, m, G, qc, c * m, j0, true);
    } else {
      for (let c = j0; c < k; c++) for (let j = j0 + nb - 1; j >= j0; j--) reflect(vs, j * m, qc, c * m, j, m);
    }
  }
  const q = new Float64Array(m * k);
  for (let c = 0; c < k; c++) {
    const f = flip[c]!;
    for (let i = 0; i < m; i++) q[i * k + c] = f * qc[c * m + i]!;
  }
  return { q: { rows: m, cols: k, data: q }, r: { rows: k, cols: n, data: r } };
}

/**
 * The reflector that maps x = w[cj + j .. cj + m) onto alpha·e_j (alpha = −sign(x_j)·‖x‖, away from x to
 * avoid cancellation): stores its unit vector at vs[vj + j ..] and returns alpha (0 for x = 0, v = 0).
 */
function makeReflector(w: Float64Array, cj: number, vs: Float64Array, vj: number, j: number, m: number): number {
  let scale = 0;
  for (let i = j; i < m; i++) scale = Math.max(scale, Math.abs(w[cj + i]!));
  if (scale === 0) return 0;
  let ss = 0;
  for (let i = j; i < m; i++) {
    const x = w[cj + i]! / scale;
    ss += x * x;
  }
  const norm = scale * Math.sqrt(ss);
  const x0 = w[cj + j]!;
  const alpha = x0 >= 0 ? -norm : norm;
  vs[vj + j] = x0 - alpha;
  for (let i = j + 1; i < m; i++) vs[vj + i] = w[cj + i]!;
  let vn = 0;
  for (let i = j; i < m; i++) vn += (vs[vj + i]! / scale) ** 2;
  vn = scale * Math.sqrt(vn);
  for (let i = j; i < m; i++) vs[vj + i] = vs[vj + i]! / vn;
  return alpha;
}

/** x ← (I − 2 v vᵀ) x over rows [j, m), v at vs[vo ..], x at a[xo ..]. */
function reflect(vs: Float64Array, vo: number, a: Float64Array, xo: number, j: number, m: number): void {
  let d = 0;
  for (let i = j; i < m; i++) d += vs[vo + i]! * a[xo + i]!;
  if (d === 0) return;
  d *= 2;
  for (let i = j; i < m; i++) a[xo + i] = a[xo + i]! - d * vs[vo + i]!;
}

/** G[t·4 + s] = v_t · v_s for the four reflectors stored from vs[v0 ..] (rows ≥ j0). */
function gram4(vs: Float64Array, v0: number, m: number, j0: number, G: Float64Array): void {
  for (let t = 0; t < 4; t++) {
    for (let s = 0; s <= t; s++) {
      let d = 0;
      for (let i = j0; i < m; i++) d += vs[v0 + t * m + i]! * vs[v0 + s * m + i]!;
      G[t * 4 + s] = d;
      G[s * 4 + t] = d;
    }
  }
}

/**
 * x ← H_3 H_2 H_1 H_0 x (forward: H_0 applied first) or x ← H_0 H_1 H_2 H_3 x (backward: H_3 first) for the
 * four consecutive reflectors stored from vs[v0 ..], over rows [j0, m). With d_t = v_t·x (the original x),
 * the coefficient of reflector t when it is applied is e_t = d_t − 2 Σ_{s applied before t} e_s (v_t·v_s),
 * and the result is x − 2 Σ_t e_t v_t.
 */
function reflect4(vs: Float64Array, v0: number, m: number, G: Float64Array, a: Float64Array, xo: number, j0: number, backward: boolean): void {
  const o0 = v0;
  const o1 = v0 + m;
  const o2 = v0 + 2 * m;
  const o3 = v0 + 3 * m;
  let d0 = 0;
  let d1 = 0;
  let d2 = 0;
  let d3 = 0;
  for (let i = j0; i < m; i++) {
    const x = a[xo + i]!;
    d0 += vs[o0 + i]! * x;
    d1 += vs[o1 + i]! * x;
    d2 += vs[o2 + i]! * x;
    d3 += vs[o3 + i]! * x;
  }
  let e0: number;
  let e1: number;
  let e2: number;
  let e3: number;
  if (!backward) {
    e0 = d0;
    e1 = d1 - 2 * e0 * G[4]!;
    e2 = d2 - 2 * (e0 * G[8]! + e1 * G[9]!);
    e3 = d3 - 2 * (e0 * G[12]! + e1 * G[13]! + e2 * G[14]!);
  } else {
    e3 = d3;
    e2 = d2 - 2 * e3 * G[11]!;
    e1 = d1 - 2 * (e3 * G[7]! + e2 * G[6]!);
    e0 = d0 - 2 * (e3 * G[3]! + e2 * G[2]! + e1 * G[1]!);
  }
  if (e0 === 0 && e1 === 0 && e2 === 0 && e3 === 0) return;
  e0 *= 2;
  e1 *= 2;
  e2 *= 2;
  e3 *= 2;
  for (let i = j0; i < m; i++) {
    a[xo + i] = a[xo + i]! - (e0 * vs[o0 + i]! + e1 * vs[o1 + i]! + e2 * vs[o2 + i]! + e3 * vs[o3 + i]!);
  }
}
