import { ErrorCodes, UltraSketchError } from '../errors.js';

/**
 * Dense row-major matrices for the linear algebra the codecs need (QR, SVD, truncated SVD).
 *
 * Results are always Float64 (`Matrix`); inputs may be float32 as well (`MatrixLike`), so a model's weights
 * are used in place without a float64 copy of the whole matrix. Every product accumulates in float64.
 *
 * The three products (A·B, Aᵀ·B, A·Bᵀ) share one float64 kernel written for the shapes the truncated SVD
 * needs — a big matrix A [m, n] (up to 8192 × 8192) against a thin one (k in the hundreds): both operands
 * are packed (4-row strips, 4-column panels) so the transposed forms cost no transpose, and a 4 × 4 tile
 * of accumulators in locals does 16 multiply-adds per 8 loads (about 2.5× a row-axpy loop in V8).
 */
export interface Matrix {
  readonly rows: number;
  readonly cols: number;
  /** Row-major values, length rows · cols. */
  readonly data: Float64Array;
}

/** A read-only matrix operand: float32 or float64, row-major. */
export interface MatrixLike {
  readonly rows: number;
  readonly cols: number;
  readonly data: Float32Array | Float64Array;
}

/** A zero matrix, or one wrapping (not copying) the given float64 data. */
export function matrix(rows: number, cols: number, data?: Float64Array): Matrix {
  checkDims(rows, cols, 'matrix');
  if (data !== undefined && data.length !== rows * cols) {
    throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `matrix data has ${data.length} values, expected ${rows}×${cols}`);
  }
  return { rows, cols, data: data ?? new Float64Array(rows * cols) };
}

/** A float64 copy of any row-major numbers. */
export function matrixFrom(rows: number, cols: number, values: ArrayLike<number>): Matrix {
  checkDims(rows, cols, 'matrixFrom');
  if (values.length !== rows * cols) {
    throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `matrixFrom: ${values.length} values, expected ${rows}×${cols}`);
  }
  return { rows, cols, data: Float64Array.from(values) };
}

export function identity(n: number): Matrix {
  const m = matrix(n, n);
  for (let i = 0; i < n; i++) m.data[i * n + i] = 1;
  return m;
}

export function transpose(a: MatrixLike): Matrix {
  const { rows, cols } = a;
  const out = new Float64Array(rows * cols);
  const B = 32;
  for (let i0 = 0; i0 < rows; i0 += B) {
    const i1 = Math.min(rows, i0 + B);
    for (let j0 = 0; j0 < cols; j0 += B) {
      const j1 = Math.min(cols, j0 + B);
      for (let i = i0; i < i1; i++) for (let j = j0; j < j1; j++) out[j * rows + i] = a.data[i * cols + j]!;
    }
  }
  return { rows: cols, cols: rows, data: out };
}

/** Rows [0, rows) × columns [0, cols) of a, as a new matrix. */
export function slice(a: MatrixLike, rows: number, cols: number): Matrix {
  if (rows > a.rows || cols > a.cols) {
    throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `slice ${rows}×${cols} of a ${a.rows}×${a.cols} matrix`);
  }
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[i * cols + j] = a.data[i * a.cols + j]!;
  return { rows, cols, data: out };
}

/** Frobenius norm, accumulated with scaling so it neither overflows nor underflows. */
export function frobeniusNorm(a: MatrixLike | Float32Array | Float64Array): number {
  const d = 'data' in a ? a.data : a;
  return norm2(d, 0, d.length);
}

/** Euclidean norm of x[offset, offset + n) (LAPACK dnrm2-style scaling). */
export function norm2(x: Float32Array | Float64Array, offset: number, n: number): number {
  let scale = 0;
  let ssq = 1;
  for (let i = offset; i < offset + n; i++) {
    const v = x[i]!;
    if (v !== 0) {
      const a = Math.abs(v);
      if (scale < a) {
        ssq = 1 + ssq * (scale / a) * (scale / a);
        scale = a;
      } else {
        ssq += (a / scale) * (a / scale);
      }
    }
  }
  return scale * Math.sqrt(ssq);
}

/** C = A · B. A [m, n], B [n, k] → C [m, k]. */
export function matmul(a: MatrixLike, b: MatrixLike): Matrix {
  if (a.cols !== b.rows) shapeError('matmul', a, b);
  const { rows: m, cols: n } = a;
  const k = b.cols;
  // opA[i, l] = A[i, l]; opB[l, j] = B[l, j]
  return { rows: m, cols: k, data: gemm(m, k, n, a.data, n, 1, b.data, k, 1) };
}

/** C = Aᵀ · B without forming Aᵀ. A [m, n], B [m, k] → C [n, k]. */
export function matmulTN(a: MatrixLike, b: MatrixLike): Matrix {
  if (a.rows !== b.rows) shapeError('matmulTN', a, b);
  const { rows: m, cols: n } = a;
  const k = b.cols;
  // opA[i, l] = A[l, i] (a column of A, read with stride n); opB[l, j] = B[l, j]
  return { rows: n, cols: k, data: gemm(n, k, m, a.data, 1, n, b.data, k, 1) };
}

/** C = A · Bᵀ without forming Bᵀ. A [m, n], B [k, n] → C [m, k]. */
export function matmulNT(a: MatrixLike, b: MatrixLike): Matrix {
  if (a.cols !== b.cols) shapeError('matmulNT', a, b);
  const { rows: m, cols: n } = a;
  const k = b.rows;
  // opA[i, l] = A[i, l]; opB[l, j] = B[j, l]
  return { rows: m, cols: k, data: gemm(m, k, n, a.data, n, 1, b.data, 1, n) };
}

/** y = A · x (A [m, n], x [n]) in float64. */
export function matvec(a: MatrixLike, x: ArrayLike<number>): Float64Array {
  if (x.length !== a.cols) {
    throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `matvec: ${a.rows}×${a.cols} matrix times a vector of ${x.length}`);
  }
  const y = new Float64Array(a.rows);
  for (let i = 0; i < a.rows; i++) {
    let s = 0;
    const o = i * a.cols;
    for (let j = 0; j < a.cols; j++) s += a.data[o + j]! * x[j]!;
    y[i] = s;
  }
  return y;
}

/** y = Aᵀ · x (A [m, n], x [m]) in float64. */
export function matvecT(a: MatrixLike, x: ArrayLike<number>): Float64Array {
  if (x.length !== a.rows) {
    throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `matvecT: (${a.rows}×${a.cols})ᵀ times a vector of ${x.length}`);
  }
  const y = new Float64Array(a.cols);
  for (let i = 0; i < a.rows; i++) {
    const xi = x[i]!;
    if (xi === 0) continue;
    const o = i * a.cols;
    for (let j = 0; j < a.cols; j++) y[j] += a.data[o + j]! * xi;
  }
  return y;
}

// ---------------------------------------------------------------------------------------------------------

/** Length of the blocks of the summation index: a packed 4-row strip of opA (4 · L_BLOCK doubles) and
 * the 4-column panel slice of opB it meets stay in L1. */
const L_BLOCK = 256;

/**
 * C [M, K] = opA [M, L] · opB [L, K] in float64, with a 4 × 4 register tile: sixteen accumulators held in
 * locals, fed by four values of opA and four of opB per step of the summation index — no loads or stores
 * of C in the inner loop. opB is packed once into 4-column panels (zero-padded), opA into 4-row strips per
 * block of the summation index (zero-padded rows are computed and dropped).
 *
 * The operands are strided views: opA[i, l] = A[i · aRow + l · aCol], opB[l, j] = B[l · bRow + j · bCol]
 * (a transposed operand is the same data with its strides swapped).
 */
function gemm(
  M: number,
  K: number,
  L: number,
  A: Float32Array | Float64Array,
  aRow: number,
  aCol: number,
  B: Float32Array | Float64Array,
  bRow: number,
  bCol: number,
): Float64Array {
  const C = new Float64Array(M * K);
  if (M === 0 || K === 0 || L === 0) return C;
  const panels = Math.ceil(K / 4);
  const P = new Float64Array(panels * L * 4);
  for (let jb = 0; jb < panels; jb++) {
    for (let u = 0; u < 4; u++) {
      const j = jb * 4 + u;
      if (j >= K) continue;
      let o = jb * L * 4 + u;
      for (let l = 0, bo = j * bCol; l < L; l++, o += 4, bo += bRow) P[o] = B[bo]!;
    }
  }
  const Ap = new Float64Array(4 * L_BLOCK);
  for (let l0 = 0; l0 < L; l0 += L_BLOCK) {
    const len = Math.min(L_BLOCK, L - l0);
    for (let i = 0; i < M; i += 4) {
      const rowsHere = Math.min(4, M - i);
      if (rowsHere < 4) Ap.fill(0);
      for (let t = 0; t < rowsHere; t++) {
        // Ap[l · 4 + t] = opA[i + t, l0 + l]
        for (let l = 0, ao = (i + t) * aRow + l0 * aCol; l < len; l++, ao += aCol) Ap[l * 4 + t] = A[ao]!;
      }
      for (let jb = 0; jb < panels; jb++) tile(Ap, P, (jb * L + l0) * 4, len, C, i, jb * 4, rowsHere, Math.min(4, K - jb * 4), K);
    }
  }
  return C;
}

/** C[i .. i+rows, j .. j+cols) += strip (4 × len) · panel slice (len × 4). */
function tile(
  Ap: Float64Array,
  P: Float64Array,
  po: number,
  len: number,
  C: Float64Array,
  i: number,
  j: number,
  rows: number,
  cols: number,
  K: number,
): void {
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  for (let l = 0, ao = 0; l < len; l++, ao += 4, po += 4) {
    const b0 = P[po]!;
    const b1 = P[po + 1]!;
    const b2 = P[po + 2]!;
    const b3 = P[po + 3]!;
    const a0 = Ap[ao]!;
    const a1 = Ap[ao + 1]!;
    const a2 = Ap[ao + 2]!;
    const a3 = Ap[ao + 3]!;
    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
  }
  if (rows === 4 && cols === 4) {
    let o = i * K + j;
    C[o] += c00; C[o + 1] += c01; C[o + 2] += c02; C[o + 3] += c03; o += K;
    C[o] += c10; C[o + 1] += c11; C[o + 2] += c12; C[o + 3] += c13; o += K;
    C[o] += c20; C[o + 1] += c21; C[o + 2] += c22; C[o + 3] += c23; o += K;
    C[o] += c30; C[o + 1] += c31; C[o + 2] += c32; C[o + 3] += c33;
    return;
  }
  const acc = [c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33];
  for (let t = 0; t < rows; t++) for (let u = 0; u < cols; u++) C[(i + t) * K + j + u] += acc[t * 4 + u]!;
}

function checkDims(rows: number, cols: number, what: string): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) {
    throw new UltraSketchError(ErrorCodes.BAD_DIMENSION, `${what}: invalid shape ${rows}×${cols}`);
  }
}

function shapeError(op: string, a: MatrixLike, b: MatrixLike): never {
  throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `${op}: shapes ${a.rows}×${a.cols} and ${b.rows}×${b.cols} do not fit`);
}
