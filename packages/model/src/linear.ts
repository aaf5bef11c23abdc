import type { DecodeCall } from './decode-plan.js';

/**
 * A linear layer as the forward pass sees it: y = W x for a batch of n row vectors.
 * The reference forward uses `DenseLinear`; compressed runtimes supply their own implementations
 * (one fused kernel per codec) behind the same interface, so there is one forward pass to get right.
 */
export interface Linear {
  readonly outFeatures: number;
  readonly inFeatures: number;
  /** Y[t, :] = W · X[t, :] for t in 0..n-1. X is [n, in] row-major, Y is [n, out]; they must not alias. */
  apply(x: Float32Array, y: Float32Array, n: number): void;
  /**
   * Optional: the kernel calls `apply(x, y, 1)` makes, when they are nothing but calls on fixed addresses (x and y
   * read and written in place, one thread) — a decode plan's part for this linear (decode-plan.ts). undefined: not
   * expressible (a staged copy, a thread pool, a JS kernel); the forward then keeps calling `apply`.
   */
  decodeCalls?(x: Float32Array, y: Float32Array): DecodeCall[] | undefined;
}

/** A dense float32 weight matrix W [out, in], row-major. */
export class DenseLinear implements Linear {
  constructor(
    readonly weight: Float32Array,
    readonly outFeatures: number,
    readonly inFeatures: number,
  ) {
    if (weight.length !== outFeatures * inFeatures) {
      throw new RangeError(`DenseLinear: weight has ${weight.length} values, expected ${outFeatures}×${inFeatures}`);
    }
  }

  apply(x: Float32Array, y: Float32Array, n: number): void {
    if (n === 1) denseMatVec(this.weight, x, y, this.outFeatures, this.inFeatures);
    else denseMatMul(this.weight, x, y, n, this.outFeatures, this.inFeatures);
  }
}

/**
 * w[wo .. wo+cols) · x[xo .. xo+cols): four independent float64 accumulators (columns j ≡ 0, 1, 2, 3 mod 4, the
 * cols % 4 tail added to the first) let the CPU overlap the multiply-adds; summed (a0 + a1 + a2 + a3). The JS
 * reference products and the per-row JS kernels of runtime-node all sum this way, so they agree to the bit.
 */
export function dotRow(w: ArrayLike<number>, wo: number, x: ArrayLike<number>, xo: number, cols: number): number {
  const cols4 = cols - (cols % 4);
  let a0 = 0;
  let a1 = 0;
  let a2 = 0;
  let a3 = 0;
  let j = 0;
  for (; j < cols4; j += 4) {
    a0 += w[wo + j]! * x[xo + j]!;
    a1 += w[wo + j + 1]! * x[xo + j + 1]!;
    a2 += w[wo + j + 2]! * x[xo + j + 2]!;
    a3 += w[wo + j + 3]! * x[xo + j + 3]!;
  }
  for (; j < cols; j++) a0 += w[wo + j]! * x[xo + j]!;
  return a0 + a1 + a2 + a3;
}

/**
 * y = W x (`dotRow` per row), each result rounded to float32 once. (llama2.c sums sequentially in float32; the
 * difference is ~1e-6 relative.)
 */
export function denseMatVec(w: Float32Array, x: Float32Array, y: Float32Array, rows: number, cols: number): void {
  for (let i = 0; i < rows; i++) y[i] = dotRow(w, i * cols, x, 0, cols);
}

/**
 * Y = X Wᵀ for n rows of X. Each weight row is read once per block of four input rows, so the weight
 * matrix streams through the cache n/4 times instead of n times.
 */
export function denseMatMul(
  w: Float32Array,
  x: Float32Array,
  y: Float32Array,
  n: number,
  rows: number,
  cols: number,
): void {
  let t = 0;
  for (; t + 4 <= n; t += 4) {
    const x0 = t * cols;
    const x1 = x0 + cols;
    const x2 = x1 + cols;
    const x3 = x2 + cols;
    for (let i = 0; i < rows; i++) {
      const base = i * cols;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      for (let j = 0; j < cols; j++) {
        const wj = w[base + j]!;
        a0 += wj * x[x0 + j]!;
        a1 += wj * x[x1 + j]!;
        a2 += wj * x[x2 + j]!;
        a3 += wj * x[x3 + j]!;
      }
      y[t * rows + i] = a0;
      y[(t + 1) * rows + i] = a1;
      y[(t + 2) * rows + i] = a2;
      y[(t + 3) * rows + i] = a3;
    }
  }
  for (; t < n; t++) {
    denseMatVec(w, x.subarray(t * cols, (t + 1) * cols), y.subarray(t * rows, (t + 1) * rows), rows, cols);
  }
}
