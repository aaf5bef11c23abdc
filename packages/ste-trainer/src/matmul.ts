/**
 * The one matrix product the trainer uses, behind one small interface so a faster kernel (the WebAssembly
 * SIMD gemm in runtime-node) can replace it later without touching the graph.
 *
 *   matmul(A, B, C, m, n, k, transA, transB, accumulate)
 *     C[m, n] = op(A)[m, k] · op(B)[k, n]   (+ C when accumulate)
 *   op(A) = A, stored [m, k] row-major      (transA = false)
 *         = Aᵀ, A stored [k, m] row-major    (transA = true)
 *   op(B) = B, stored [k, n] row-major      (transB = false)
 *         = Bᵀ, B stored [n, k] row-major    (transB = true)
 *
 * Every case runs the same "NT" kernel C[i, j] = Σ_p A'[i, p] · B'[j, p] over two row-contiguous operands:
 * an operand in the other layout is first transposed into a reusable scratch buffer (O(mk) or O(nk) work
 * against the product's O(mnk)). The kernel computes 4 × 4 tiles of C with 16 accumulators held in locals
 * (16 multiply-adds per 8 loads), in blocks of 64 B-rows × 256 k-columns so the B panel stays in cache.
 * Arithmetic is float64 (JavaScript numbers); the result is rounded to the array's precision once per
 * k-block. Deterministic: the summation order depends only on (m, n, k).
 *
 * Scratch buffers are module-level and only grow, so a training step allocates nothing here once warm.
 */

export type FloatArray = Float32Array | Float64Array;

/** The swappable kernel: the NT product with C = A'·B'ᵀ (+ C). Both operands row-major, rows of length k. */
export type GemmNT = (
  a: FloatArray,
  b: FloatArray,
  c: FloatArray,
  m: number,
  n: number,
  k: number,
  accumulate: boolean,
) => void;

let kernel: GemmNT = gemmNTBlocked;

/** Replace the NT kernel (e.g. with a WebAssembly SIMD gemm); returns the previous one. */
export function setGemmKernel(k: GemmNT): GemmNT {
  const prev = kernel;
  kernel = k;
  return prev;
}

/**
 * A whole-product kernel that may take over `matmul` (layouts included): it returns true when it computed
 * the product, false to leave it to the NT path below (e.g. for Float64Array operands or tiny shapes).
 */
export type MatmulKernel = (
  a: FloatArray,
  b: FloatArray,
  c: FloatArray,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  accumulate: boolean,
) => boolean;

let full: MatmulKernel | null = null;

/**
 * Install (or, with null, remove) a whole-product kernel tried before the NT path — how the Node entry
 * plugs in the WebAssembly SIMD gemm, which transposes straight into its own memory. Returns the previous one.
 */
export function setMatmulKernel(k: MatmulKernel | null): MatmulKernel | null {
  const prev = full;
  full = k;
  return prev;
}

let allocator: ((length: number) => Float32Array) | null = null;

/**
 * Install (or remove, with null) where the trainer's float32 buffers (graph activations, optimizer moments,
 * attention scratch) are allocated: the Node entry puts them in the WebAssembly gemm's memory, whose kernels
 * then read and write them in place instead of copying them in and out around every call. Returns the
 * previous one. Buffers already allocated stay where they are (every kernel also accepts other arrays).
 */
export function setFloat32Allocator(a: ((length: number) => Float32Array) | null): ((length: number) => Float32Array) | null {
  const prev = allocator;
  allocator = a;
  return prev;
}

/** A zero-filled Float32Array of `length`, from the installed allocator (else an ordinary one). */
export function allocFloat32(length: number): Float32Array {
  return allocator !== null ? allocator(length) : new Float32Array(length);
}

const scratch32: [Float32Array, Float32Array] = [new Float32Array(0), new Float32Array(0)];
const scratch64: [Float64Array, Float64Array] = [new Float64Array(0), new Float64Array(0)];

function scratchLike(like: FloatArray, slot: 0 | 1, size: number): FloatArray {
  if (like instanceof Float64Array) {
    if (scratch64[slot].length < size) scratch64[slot] = new Float64Array(size);
    return scratch64[slot];
  }
  if (scratch32[slot].length < size) scratch32[slot] = new Float32Array(size);
  return scratch32[slot];
}

/** C[m, n] (+)= op(A) · op(B); see the file comment for the layouts. */
export function matmul(
  a: FloatArray,
  b: FloatArray,
  c: FloatArray,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  accumulate = false,
): void {
  if (m === 0 || n === 0) return;
  if (k === 0) {
    if (!accumulate) c.fill(0, 0, m * n);
    return;
  }
  if (full !== null && full(a, b, c, m, n, k, transA, transB, accumulate)) return;
  let a2 = a;
  if (transA) {
    a2 = scratchLike(a, 0, m * k);
    transpose(a, a2, k, m);
  }
  let b2 = b;
  if (!transB) {
    b2 = scratchLike(b, 1, n * k);
    transpose(b, b2, k, n);
  }
  kernel(a2, b2, c, m, n, k, accumulate);
}

/** out[cols, rows] = inᵀ for in [rows, cols], in 32 × 32 tiles. */
export function transpose(src: FloatArray, dst: FloatArray, rows: number, cols: number): void {
  const T = 32;
  for (let i0 = 0; i0 < rows; i0 += T) {
    const i1 = i0 + T < rows ? i0 + T : rows;
    for (let j0 = 0; j0 < cols; j0 += T) {
      const j1 = j0 + T < cols ? j0 + T : cols;
      for (let i = i0; i < i1; i++) {
        const s = i * cols;
        for (let j = j0; j < j1; j++) dst[j * rows + i] = src[s + j]!;
      }
    }
  }
}

const JB = 64; // B rows per block
const KB = 256; // k columns per block

/** The portable NT kernel: 4 × 4 register tiles, blocked over B rows and k. */
export function gemmNTBlocked(
  A: FloatArray,
  B: FloatArray,
  C: FloatArray,
  m: number,
  n: number,
  k: number,
  accumulate: boolean,
): void {
  const m4 = m - (m % 4);
  for (let p0 = 0; p0 < k; p0 += KB) {
    const p1 = p0 + KB < k ? p0 + KB : k;
    const add = accumulate || p0 > 0;
    for (let j0 = 0; j0 < n; j0 += JB) {
      const j1 = j0 + JB < n ? j0 + JB : n;
      const j4 = j0 + ((j1 - j0) & ~3);
      for (let i = 0; i < m4; i += 4) {
        const a0 = i * k;
        const a1 = a0 + k;
        const a2 = a1 + k;
        const a3 = a2 + k;
        let j = j0;
        for (; j < j4; j += 4) {
          const b0 = j * k;
          const b1 = b0 + k;
          const b2 = b1 + k;
          const b3 = b2 + k;
          let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
          let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
          let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
          let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
          for (let p = p0; p < p1; p++) {
            const x0 = A[a0 + p]!;
            const x1 = A[a1 + p]!;
            const x2 = A[a2 + p]!;
            const x3 = A[a3 + p]!;
            const y0 = B[b0 + p]!;
            const y1 = B[b1 + p]!;
            const y2 = B[b2 + p]!;
            const y3 = B[b3 + p]!;
            c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
            c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
            c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
            c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
          }
          let o = i * n + j;
          if (add) {
            C[o] = C[o]! + c00; C[o + 1] = C[o + 1]! + c01; C[o + 2] = C[o + 2]! + c02; C[o + 3] = C[o + 3]! + c03;
            o += n;
            C[o] = C[o]! + c10; C[o + 1] = C[o + 1]! + c11; C[o + 2] = C[o + 2]! + c12; C[o + 3] = C[o + 3]! + c13;
            o += n;
            C[o] = C[o]! + c20; C[o + 1] = C[o + 1]! + c21; C[o + 2] = C[o + 2]! + c22; C[o + 3] = C[o + 3]! + c23;
            o += n;
            C[o] = C[o]! + c30; C[o + 1] = C[o + 1]! + c31; C[o + 2] = C[o + 2]! + c32; C[o + 3] = C[o + 3]! + c33;
          } else {
            C[o] = c00; C[o + 1] = c01; C[o + 2] = c02; C[o + 3] = c03;
            o += n;
            C[o] = c10; C[o + 1] = c11; C[o + 2] = c12; C[o + 3] = c13;
            o += n;
            C[o] = c20; C[o + 1] = c21; C[o + 2] = c22; C[o + 3] = c23;
            o += n;
            C[o] = c30; C[o + 1] = c31; C[o + 2] = c32; C[o + 3] = c33;
          }
        }
        for (; j < j1; j++) {
          const b0 = j * k;
          let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          for (let p = p0; p < p1; p++) {
            const y = B[b0 + p]!;
            s0 += A[a0 + p]! * y;
            s1 += A[a1 + p]! * y;
            s2 += A[a2 + p]! * y;
            s3 += A[a3 + p]! * y;
          }
          const o = i * n + j;
          if (add) {
            C[o] = C[o]! + s0; C[o + n] = C[o + n]! + s1; C[o + 2 * n] = C[o + 2 * n]! + s2; C[o + 3 * n] = C[o + 3 * n]! + s3;
          } else {
            C[o] = s0; C[o + n] = s1; C[o + 2 * n] = s2; C[o + 3 * n] = s3;
          }
        }
      }
      for (let i = m4; i < m; i++) {
        const a0 = i * k;
        for (let j = j0; j < j1; j++) {
          const b0 = j * k;
          let s0 = 0, s1 = 0;
          let p = p0;
          for (; p + 1 < p1; p += 2) {
            s0 += A[a0 + p]! * B[b0 + p]!;
            s1 += A[a0 + p + 1]! * B[b0 + p + 1]!;
          }
          if (p < p1) s0 += A[a0 + p]! * B[b0 + p]!;
          const o = i * n + j;
          C[o] = add ? C[o]! + s0 + s1 : s0 + s1;
        }
      }
    }
  }
}
