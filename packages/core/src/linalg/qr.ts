import { type Matrix, type MatrixLike } from './matrix.js';

/**
 * Thin Householder QR: A [m, n] = Q [m, k] · R [k, n] with k = min(m, n), Q with orthonormal columns and R
 * upper triangular (upper trapezoidal when m < n), diag(R) ≥ 0 (so the factorization is unique when A has
 * full column rank).
 *
 * Householder rather than Gram–Schmidt: Q is orthonormal to rounding (‖QᵀQ − I‖ ≈ 1e-15) whatever the
 * conditioning of A, which is what re-orthonormalization between power iterations relies on. The work
 * array is column-major (each column of A contiguous), so reflecting a column is a dot product and an
 * axpy over contiguous float64 memory.
 */
export interface QR {
  q: Matrix;
  r: Matrix;
}

export function qr(a: MatrixLike): QR {
  const { rows: m, cols: n } = a;
  const k = Math.min(m, n);
  // cols[c·m + i] = A[i, c]
  const w = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let c = 0; c < n; c++) w[c * m + i] = a.data[i * n + c]!;
  const diag = new Float64Array(k);
  // Reflector j is H_j = I − 2 v vᵀ with unit v stored in vs[j·m + j .. (j+1)·m) (zero when A[j:, j] = 0).
  const vs = new Float64Array(k * m);
  for (let j = 0; j < k; j++) {
    const cj = j * m;
    let scale = 0;
    for (let i = j; i < m; i++) scale = Math.max(scale, Math.abs(w[cj + i]!));
    if (scale === 0) {
      diag[j] = 0;
      continue;
    }
    let ss = 0;
    for (let i = j; i < m; i++) {
      const x = w[cj + i]! / scale;
      ss += x * x;
    }
    const norm = scale * Math.sqrt(ss);
    const x0 = w[cj + j]!;
    const alpha = x0 >= 0 ? -norm : norm; // reflect x onto alpha·e_j, away from x to avoid cancellation
    const vj = j * m;
    vs[vj + j] = x0 - alpha;
    for (let i = j + 1; i < m; i++) vs[vj + i] = w[cj + i]!;
    let vn = 0;
    for (let i = j; i < m; i++) vn += (vs[vj + i]! / scale) ** 2;
    vn = scale * Math.sqrt(vn);
    for (let i = j; i < m; i++) vs[vj + i] = vs[vj + i]! / vn;
    diag[j] = alpha;
    for (let c = j + 1; c < n; c++) {
      const cc = c * m;
      let d = 0;
      for (let i = j; i < m; i++) d += vs[vj + i]! * w[cc + i]!;
      d *= 2;
      if (d === 0) continue;
      for (let i = j; i < m; i++) w[cc + i] = w[cc + i]! - d * vs[vj + i]!;
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
  // Q = H_0 H_1 … H_{k−1} [I_k; 0], column by column (column c is touched by reflectors 0..c only).
  const qc = new Float64Array(k * m);
  for (let c = 0; c < k; c++) {
    const o = c * m;
    qc[o + c] = 1;
    for (let j = Math.min(c, k - 1); j >= 0; j--) {
      const vj = j * m;
      let d = 0;
      for (let i = j; i < m; i++) d += vs[vj + i]! * qc[o + i]!;
      d *= 2;
      if (d === 0) continue;
      for (let i = j; i < m; i++) qc[o + i] = qc[o + i]! - d * vs[vj + i]!;
    }
  }
  const q = new Float64Array(m * k);
  for (let c = 0; c < k; c++) {
    const f = flip[c]!;
    for (let i = 0; i < m; i++) q[i * k + c] = f * qc[c * m + i]!;
  }
  return { q: { rows: m, cols: k, data: q }, r: { rows: k, cols: n, data: r } };
}
