import { ErrorCodes, UltraSketchError } from '../errors.js';
import { type Matrix, type MatrixLike, matmul, transpose } from './matrix.js';
import { qr } from './qr.js';

/**
 * Exact thin SVD of a small dense matrix: A [m, n] = U · diag(s) · Vᵀ with k = min(m, n), U [m, k] and
 * V [n, k] with orthonormal columns, s descending and ≥ 0.
 *
 * Method: one-sided (Hestenes) Jacobi. A tall matrix is first reduced by Householder QR (A = QR, the SVD
 * of the n × n R is cheaper and U = Q·U_R); a wide one is handled through its transpose. Jacobi then
 * rotates pairs of columns of R until every pair is orthogonal to working precision; the column norms are
 * the singular values. It is slower than Golub–Kahan bidiagonalization (O(n³) per sweep, ~6–10 sweeps)
 * but simple, and its singular values are accurate to a small multiple of machine precision relative to
 * ‖A‖ (and often relative to each σ) — it is the oracle our tests measure other code against.
 *
 * Sign convention (deterministic output): each pair (u_i, v_i) is flipped so that the entry of u_i with the
 * largest magnitude (first one on ties) is positive. Columns of U for zero singular values are completed to
 * an orthonormal set.
 */
export interface SVD {
  u: Matrix;
  s: Float64Array;
  v: Matrix;
}

/** Most Jacobi sweeps before giving up (convergence is quadratic; real inputs need well under 20). */
const MAX_SWEEPS = 80;

export function svd(a: MatrixLike): SVD {
  const { rows: m, cols: n } = a;
  for (let i = 0; i < a.data.length; i++) {
    if (!Number.isFinite(a.data[i]!)) {
      throw new UltraSketchError(ErrorCodes.NOT_FINITE, `svd: entry ${i} of the ${m}×${n} matrix is ${a.data[i]}`);
    }
  }
  if (m < n) {
    const t = svd(transpose(a));
    return normalizeSigns({ u: t.v, s: t.s, v: t.u });
  }
  const k = n;
  if (k === 0) return { u: { rows: m, cols: 0, data: new Float64Array(0) }, s: new Float64Array(0), v: { rows: n, cols: 0, data: new Float64Array(0) } };
  // Precondition: A = Q R (Householder), then run Jacobi on the COLUMNS OF Rᵀ (the rows of R). R's rows are
  // already nearly orthogonal with decreasing norms, which cuts the number of sweeps several-fold
  // (Drmač & Veselić 2008). With Rᵀ = Ũ Σ Ṽᵀ (Ṽ = the accumulated rotations) we get R = Ṽ Σ Ũᵀ, so
  // A = (Q Ṽ) Σ Ũᵀ: U = Q·Ṽ and V = Ũ, the normalized rotated columns.
  const { q, r: R } = qr(a);
  const p = k;
  // g[c·p + i] = Rᵀ[i, c] = R[c, i]: column c of Rᵀ is row c of R, already contiguous.
  const g = Float64Array.from(R.data);
  const vt = new Float64Array(k * k);
  for (let c = 0; c < k; c++) vt[c * k + c] = 1;
  const norms = new Float64Array(k);
  for (let c = 0; c < k; c++) norms[c] = dot(g, c * p, g, c * p, p);
  const tol = Number.EPSILON * p;
  let converged = false;
  for (let sweep = 0; sweep < MAX_SWEEPS && !converged; sweep++) {
    converged = true;
    for (let i = 0; i < k - 1; i++) {
      for (let j = i + 1; j < k; j++) {
        const alpha = norms[i]!;
        const beta = norms[j]!;
        if (alpha === 0 || beta === 0) continue;
        const gamma = dot(g, i * p, g, j * p, p);
        if (Math.abs(gamma) <= tol * Math.sqrt(alpha) * Math.sqrt(beta)) continue;
        converged = false;
        // Rotation that zeroes the (i, j) entry of the 2 × 2 Gram matrix [[alpha, gamma], [gamma, beta]].
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.hypot(1, zeta));
        const c = 1 / Math.hypot(1, t);
        const s = c * t;
        rotate(g, i * p, j * p, p, c, s, norms, i, j);
        rotate(vt, i * k, j * k, k, c, s, null, i, j);
      }
    }
  }
  if (!converged) {
    throw new UltraSketchError(ErrorCodes.NOT_FINITE, `svd: Jacobi did not converge in ${MAX_SWEEPS} sweeps on a ${m}×${n} matrix`);
  }
  const sv = new Float64Array(k);
  for (let c = 0; c < k; c++) sv[c] = norm(g, c * p, p);
  const order = Array.from({ length: k }, (_, i) => i).sort((x, y) => sv[y]! - sv[x]! || x - y);
  const s = new Float64Array(k);
  const ut = new Float64Array(k * k); // Ṽ, row-major [k, k]: the left vectors of R
  const v = new Float64Array(n * k); // Ũ, row-major [n, k]
  const zero: number[] = [];
  order.forEach((c, col) => {
    s[col] = sv[c]!;
    for (let i = 0; i < k; i++) ut[i * k + col] = vt[c * k + i]!;
    if (sv[c]! > 0) {
      for (let i = 0; i < n; i++) v[i * k + col] = g[c * p + i]! / sv[c]!;
    } else {
      zero.push(col);
    }
  });
  completeOrthonormal(v, n, k, zero);
  const u = matmul(q, { rows: k, cols: k, data: ut });
  return normalizeSigns({ u, s, v: { rows: n, cols: k, data: v } });
}

/** Flip each singular pair so the largest-magnitude entry of u_i is positive (in place). */
export function normalizeSigns(r: SVD): SVD {
  const { u, v } = r;
  const k = r.s.length;
  for (let c = 0; c < k; c++) {
    let best = 0;
    let bestAbs = -1;
    for (let i = 0; i < u.rows; i++) {
      const x = Math.abs(u.data[i * k + c]!);
      if (x > bestAbs) {
        bestAbs = x;
        best = i;
      }
    }
    if (u.data[best * k + c]! < 0) {
      for (let i = 0; i < u.rows; i++) u.data[i * k + c] = -u.data[i * k + c]!;
      for (let i = 0; i < v.rows; i++) v.data[i * k + c] = -v.data[i * k + c]!;
    }
  }
  return r;
}

/** Fill the listed (zero) columns of U [p, k] with unit vectors orthogonal to all other columns. */
function completeOrthonormal(u: Float64Array, p: number, k: number, cols: number[]): void {
  if (cols.length === 0) return;
  const filled = new Set(Array.from({ length: k }, (_, i) => i).filter((c) => !cols.includes(c)));
  let e = 0;
  for (const c of cols) {
    for (; e < p; e++) {
      const x = new Float64Array(p);
      x[e] = 1;
      for (let pass = 0; pass < 2; pass++) {
        for (const f of filled) {
          let d = 0;
          for (let i = 0; i < p; i++) d += u[i * k + f]! * x[i]!;
          for (let i = 0; i < p; i++) x[i] = x[i]! - d * u[i * k + f]!;
        }
      }
      const nx = norm(x, 0, p);
      if (nx > 0.5) {
        for (let i = 0; i < p; i++) u[i * k + c] = x[i]! / nx;
        filled.add(c);
        e++;
        break;
      }
    }
  }
}

function dot(x: Float64Array, xo: number, y: Float64Array, yo: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += x[xo + i]! * y[yo + i]!;
  return s;
}

function norm(x: Float64Array, o: number, n: number): number {
  let scale = 0;
  for (let i = 0; i < n; i++) scale = Math.max(scale, Math.abs(x[o + i]!));
  if (scale === 0) return 0;
  let s = 0;
  for (let i = 0; i < n; i++) s += (x[o + i]! / scale) ** 2;
  return scale * Math.sqrt(s);
}

/**
 * [x, y] ← [c·x − s·y, s·x + c·y] over n entries at offsets xo, yo; with `norms`, the squared norms of the
 * new columns are computed in the same pass and stored at norms[ix], norms[iy].
 */
function rotate(
  a: Float64Array,
  xo: number,
  yo: number,
  n: number,
  c: number,
  s: number,
  norms: Float64Array | null,
  ix: number,
  iy: number,
): void {
  let nx = 0;
  let ny = 0;
  for (let i = 0; i < n; i++) {
    const x = a[xo + i]!;
    const y = a[yo + i]!;
    const x2 = c * x - s * y;
    const y2 = s * x + c * y;
    a[xo + i] = x2;
    a[yo + i] = y2;
    nx += x2 * x2;
    ny += y2 * y2;
  }
  if (norms !== null) {
    norms[ix] = nx;
    norms[iy] = ny;
  }
}
