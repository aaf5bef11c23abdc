import { type FloatArray, allocFloat32, matmul } from './matmul.js';

/**
 * The element-wise and attention operations of the Llama block, each as a forward and a hand-derived
 * backward over preallocated buffers. Activations are stored in the arrays' precision (float32 in
 * training, float64 in the gradient checks); every reduction accumulates in float64 (JavaScript numbers).
 * Backward functions ADD into their input-gradient buffers where noted, so residual branches sum for free.
 * Tensors are row-major; `n` is the number of rows (batch × sequence positions).
 */

// ------------------------------------------------------------------------------------ exponential kernel

/**
 * y[r·cols + c] = exp(scale · x[r·cols + c] − shift[r]) over float32 rows (x and y may be the same array).
 * The vocabulary soft-maxes (distillLosses) and SwiGLU's sigmoid go through it when one is installed (the
 * Node entry installs runtime-node's WebAssembly SIMD one: Math.exp costs ~13 ns here, and these exponentials
 * with attention's were a sixth of a training step); float64 arrays — the gradient checks — always use
 * Math.exp.
 */
export type ExpRowsKernel = (x: Float32Array, y: Float32Array, rows: number, cols: number, scale: number, shift: ArrayLike<number>) => void;

let expKernel: ExpRowsKernel | null = null;

/** Install (or remove, with null) the row-wise exponential kernel; returns the previous one. */
export function setExpKernel(k: ExpRowsKernel | null): ExpRowsKernel | null {
  const prev = expKernel;
  expKernel = k;
  return prev;
}

const ZERO_SHIFT = [0];

/**
 * out[i] = exp(scale · |x[i]|) for i < count, through the installed exponential kernel (else Math.exp) —
 * LittleBit's SmoothSign derivative, k(1 − tanh²(ku)) = 4k·e/(1 + e)² with e = exp(−2k|u|), over every latent
 * (Math.tanh per latent was most of that provider's backward).
 */
export function expOfAbs(x: Float32Array, out: Float32Array, count: number, scale: number): void {
  if (ew !== null && ew.expAbs(x, out, count, scale)) return;
  for (let i = 0; i < count; i++) out[i] = Math.abs(x[i]!);
  if (expKernel !== null) expKernel(out, out, 1, count, scale, ZERO_SHIFT);
  else for (let i = 0; i < count; i++) out[i] = Math.exp(scale * out[i]!);
}

/**
 * The KD loss's exponential and gradient passes over float32 [rows, V] logits (see runtime-node's
 * trainer-exp.ts kd_rows): d ← (a + c)·p_s − a·p_t and, per row, stats[3r..3r+2] = Σ exp(z − max_z),
 * Σ exp(x − max_x), Σ exp(x − max_x)(x − z); `maxima` = the student's and teacher's maximum of each row.
 * distillLosses uses it for a training step's float32 logits (the JS passes it replaces were 7% of a step).
 */
export type KdRowsKernel = (
  z: Float32Array,
  x: Float32Array,
  maxima: ArrayLike<number>,
  d: Float32Array,
  stats: Float32Array,
  rows: number,
  V: number,
  a: number,
  c: number,
) => void;

let kdKernel: KdRowsKernel | null = null;

/** Install (or remove, with null) the KD rows kernel; returns the previous one. */
export function setKdKernel(k: KdRowsKernel | null): KdRowsKernel | null {
  const prev = kdKernel;
  kdKernel = k;
  return prev;
}

/**
 * Attention's causal soft-max and its backward over float32 [rows, L] blocks (row r = position r mod L), in
 * place — the Node entry installs runtime-node's WebAssembly SIMD ones (these row loops were the largest JS
 * part of attention); without one, ops.ts's float64 loops run.
 */
export interface SoftmaxKernel {
  /** s[r, p] ← softmax_p(scale · s[r, 0..t]) for p ≤ t = r mod L, 0 after. */
  causal(s: Float32Array, rows: number, L: number, scale: number): void;
  /** d[r, :] ← scale · p[r, :] ⊙ (d[r, :] − Σ_j p[r, j] d[r, j]). */
  backward(p: Float32Array, d: Float32Array, rows: number, L: number, scale: number): void;
}

let softmaxKernel: SoftmaxKernel | null = null;

/**
 * Attention's products that can skip what causality zeroes, for G stacked heads (Node: the wasm gemm's
 * `causalScores`, `causalRows`, `causalCols`, installed together). Each returns false when it does not take the
 * call (the caller then runs the full product).
 */
export interface CausalKernels {
  /**
   * S[j·L + t, p] = q[j·L + t] · k[p] written at least for p ≤ t — key blocks wholly after t are skipped (~37% of
   * the work at L = 128), their entries left as they were (the causal soft-max never reads them; its backward
   * multiplies them by P = 0, so they must only be finite: they hold earlier finite scores or zeros).
   */
  causalScores(q: Float32Array, k: Float32Array, s: Float32Array, G: number, L: number, hs: number): boolean;
  /**
   * Products that reduce over keys: C [G·L, hs] = A [G·L, L] · B [L, hs] where A is 0 after each row's position
   * t (P, dS): the kernel may stop each row's reduction after the key block that holds t (same values).
   */
  causalRows(a: Float32Array, b: Float32Array, c: Float32Array, G: number, L: number, hs: number): boolean;
  /**
   * Products that reduce over queries: C [L, hs] = Aᵀ B summed over G stacked heads, A [G·L, L] being 0 where the
   * query t < key p (P, dS): the kernel may skip those terms (the same value up to float32 summation order).
   */
  causalCols(a: Float32Array, b: Float32Array, c: Float32Array, G: number, L: number, hs: number): boolean;
}

let causal: CausalKernels | null = null;

/** Install (or remove, with null) the causal attention kernels; returns the previous ones. */
export function setCausalKernels(k: CausalKernels | null): CausalKernels | null {
  const prev = causal;
  causal = k;
  return prev;
}

/** Install (or remove, with null) the attention soft-max kernel; returns the previous one. */
export function setSoftmaxKernel(k: SoftmaxKernel | null): SoftmaxKernel | null {
  const prev = softmaxKernel;
  softmaxKernel = k;
  return prev;
}

/**
 * The element-wise ops in a faster kernel (the Node entry installs runtime-node's WebAssembly SIMD ones, which
 * work in place on arrays in their memory — where the graph's float32 buffers live). Each returns false when
 * it does not take the call (a shape it does not handle), and the JS loop below runs instead. Float32 only.
 */
export interface ElementwiseKernels {
  swigluForward(g: Float32Array, u: Float32Array, h: Float32Array, sig: Float32Array | null, count: number): boolean;
  swigluBackward(dh: Float32Array, g: Float32Array, u: Float32Array, sig: Float32Array, dg: Float32Array, du: Float32Array, count: number): boolean;
  rmsNormForward(x: Float32Array, w: Float32Array, y: Float32Array, r: Float32Array, n: number, dim: number, eps: number): boolean;
  rmsNormBackward(dy: Float32Array, x: Float32Array, w: Float32Array, r: Float32Array, dx: Float32Array, dw: Float32Array | null, n: number, dim: number): boolean;
  add(a: Float32Array, b: Float32Array, out: Float32Array, count: number): boolean;
  /** out[2r] = max of row r, out[2r + 1] = 0 when every value of the row is finite (else NaN). */
  rowMaxCheck(x: Float32Array, rows: number, cols: number, out: Float64Array): boolean;
  /** dst[dstAt + r·dstStride + i] = src[srcAt + r·srcStride + i], r < rows, i < len (attention's head gathers). */
  copyRows(src: Float32Array, srcAt: number, srcStride: number, dst: Float32Array, dstAt: number, dstStride: number, rows: number, len: number): boolean;
  /** RoPE on (2i, 2i+1) pairs in place (see rope); false when it does not take the call. */
  ropePairs(vec: Float32Array, n: number, width: number, seqLen: number, headSize: number, cos: Float32Array, sin: Float32Array, inverse: boolean): boolean;
  /** y = exp(scale · |x|); false when it does not take the call. */
  expAbs(x: Float32Array, y: Float32Array, count: number, scale: number): boolean;
  /** Σ (x − target)² in float64, and dx += g·(x − target) when dx is given; −1 when it does not take the call. */
  mse(x: Float32Array, target: Float32Array, dx: Float32Array | null, count: number, g: number): number;
}

let ew: ElementwiseKernels | null = null;

/** Install (or remove, with null) the element-wise kernels; returns the previous ones. */
export function setElementwiseKernels(k: ElementwiseKernels | null): ElementwiseKernels | null {
  const prev = ew;
  ew = k;
  return prev;
}

const f32 = (a: FloatArray | null): a is Float32Array => a instanceof Float32Array;

// ------------------------------------------------------------------------------------------------ RMSNorm

/**
 * y[t] = w ⊙ x[t] · r[t], r[t] = 1 / sqrt(mean(x[t]²) + eps) — llama2.c's rmsnorm, rounding exactly as the
 * reference forward does (r in float64, w · (r · x) rounded once). Saves r[t] for the backward pass.
 */
export function rmsNormForward(
  x: FloatArray,
  w: FloatArray,
  y: FloatArray,
  r: FloatArray,
  n: number,
  dim: number,
  eps: number,
): void {
  if (ew !== null && f32(x) && f32(w) && f32(y) && f32(r) && ew.rmsNormForward(x, w, y, r, n, dim, eps)) return;
  for (let t = 0; t < n; t++) {
    const o = t * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i]! * x[o + i]!;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    r[t] = inv;
    for (let i = 0; i < dim; i++) y[o + i] = w[i]! * (inv * x[o + i]!);
  }
}

/**
 * Backward of rmsNormForward. dx[t] += r·(w ⊙ dy) − x · r³/dim · Σ_j dy_j w_j x_j;
 * dw (when given) += Σ_t dy[t] ⊙ x[t] · r[t].
 * (r is recomputed from x rather than read back when r holds float32 roundings: both give the same
 * gradient to float32 precision, and reading r keeps forward and backward consistent.)
 */
export function rmsNormBackward(
  dy: FloatArray,
  x: FloatArray,
  w: FloatArray,
  r: FloatArray,
  dx: FloatArray,
  dw: FloatArray | null,
  n: number,
  dim: number,
): void {
  if (ew !== null && f32(dy) && f32(x) && f32(w) && f32(r) && f32(dx) && (dw === null || f32(dw)) && ew.rmsNormBackward(dy, x, w, r, dx, dw, n, dim)) return;
  for (let t = 0; t < n; t++) {
    const o = t * dim;
    const inv = r[t]!;
    let dot = 0;
    for (let i = 0; i < dim; i++) dot += dy[o + i]! * w[i]! * x[o + i]!;
    const c = (inv * inv * inv * dot) / dim;
    for (let i = 0; i < dim; i++) dx[o + i] = dx[o + i]! + inv * w[i]! * dy[o + i]! - c * x[o + i]!;
    if (dw) for (let i = 0; i < dim; i++) dw[i] = dw[i]! + dy[o + i]! * x[o + i]! * inv;
  }
}

// --------------------------------------------------------------------------------------------------- RoPE

/**
 * cos/sin of every (position, frequency) pair, computed as llama2.c computes them, in float32
 * (frequency = 1 / theta^(2i/headSize), angle = pos · frequency, both rounded to float32) — the same tables
 * as the reference forward, so the two agree bit for bit on the rotation.
 */
export function ropeTables(seqLen: number, headSize: number, theta: number): [Float32Array, Float32Array] {
  const half = headSize / 2;
  const cos = new Float32Array(seqLen * half);
  const sin = new Float32Array(seqLen * half);
  const f = Math.fround;
  for (let i = 0; i < half; i++) {
    const freq = f(1 / f(Math.pow(theta, f((2 * i) / headSize))));
    for (let pos = 0; pos < seqLen; pos++) {
      const angle = f(pos * freq);
      cos[pos * half + i] = Math.cos(angle);
      sin[pos * half + i] = Math.sin(angle);
    }
  }
  return [cos, sin];
}

/**
 * Rotate every head of every row in place. Row t is at position t mod seqLen (each sequence of the batch
 * starts at position 0). `inverse` rotates by −θ: the backward pass of a rotation is its transpose.
 * Layout 'pairs' rotates (2i, 2i+1) (llama2.c); 'halves' rotates (i, i + hs/2) (Hugging Face).
 */
export function rope(
  vec: FloatArray,
  n: number,
  width: number,
  seqLen: number,
  headSize: number,
  cos: Float32Array,
  sin: Float32Array,
  pairs: boolean,
  inverse: boolean,
): void {
  if (pairs && ew !== null && f32(vec) && ew.ropePairs(vec, n, width, seqLen, headSize, cos, sin, inverse)) return;
  const half = headSize / 2;
  const sgn = inverse ? -1 : 1;
  // A float32 vector rounds each product to float32, as the wasm kernel does (it declines calls whose vector is not
  // in its memory, and which calls those are depends on the memory's history): either path gives the same bits,
  // so a resumed run equals an uninterrupted one. float64 vectors (gradient checks) keep full precision.
  const round = f32(vec) ? Math.fround : (x: number) => x;
  for (let t = 0; t < n; t++) {
    const row = (t % seqLen) * half;
    const base = t * width;
    for (let h = base; h < base + width; h += headSize) {
      for (let i = 0; i < half; i++) {
        const a = pairs ? h + 2 * i : h + i;
        const b = pairs ? a + 1 : a + half;
        const fc = cos[row + i]!;
        const fs = sgn * sin[row + i]!;
        const v0 = vec[a]!;
        const v1 = vec[b]!;
        vec[a] = round(v0 * fc) - round(v1 * fs);
        vec[b] = round(v0 * fs) + round(v1 * fc);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------- attention

export interface AttentionShape {
  /** Sequences in the batch. */
  batch: number;
  /** Positions per sequence. */
  seqLen: number;
  nHeads: number;
  nKvHeads: number;
  headSize: number;
}

/**
 * Causal softmax attention with grouped KV heads over [batch, seqLen] rows, as batched matrix products.
 * q, out: [n, nHeads·hs]; k, v: [n, nKvHeads·hs]; probs: [batch, nHeads, seqLen, seqLen] (row t holds the
 * softmax over positions 0..t and zeros after t).
 *
 * Per sequence b and KV head g, the G = nHeads/nKvHeads query heads sharing g are stacked into one
 * [G·L, hs] matrix Q_g (heads of a group are consecutive, so their probability rows are one contiguous
 * [G·L, L] block of `probs`), and the attention is three products through `matmul` — the WebAssembly SIMD
 * gemm in Node — instead of scalar dot products:
 *   S = Q_g K_gᵀ  [G·L, L];  P = causal-softmax(scale · S) (row-wise, float64 arithmetic);  O_g = P V_g.
 * The products run over the full L × L square: the upper triangle's scores are computed and discarded
 * (P is 0 there), which costs 2× the causal multiply-adds but keeps each product one dense gemm call; at
 * L = 128 that waste is ~1% of a training step's multiply-adds.
 * Rounding: scores and outputs are the gemm's (float32 sums for float32 arrays; float64 in the gradient
 * checks); the soft-max is the installed SoftmaxKernel's for float32 (Node: WebAssembly SIMD, float32 sums)
 * or float64 arithmetic rounded once to the array's precision.
 */
export function attentionForward(
  q: FloatArray,
  k: FloatArray,
  v: FloatArray,
  probs: FloatArray,
  out: FloatArray,
  s: AttentionShape,
): void {
  const { batch, L, nHeads, nKvHeads, hs, dim, kv, G, GL, scale, Qs, Ks, Vs } = stackedHeads(s, q);
  const S = attnScratch(q, 3, GL * L);
  const Os = attnScratch(q, 4, GL * hs);
  if (rowScratch.length < L) rowScratch = new Float64Array(L);
  const row = rowScratch; // one row's exponentials, float64 until normalised
  for (let b = 0; b < batch; b++) {
    const row0 = b * L;
    for (let g = 0; g < nKvHeads; g++) {
      gatherHeads(q, Qs, row0, L, dim, g * G * hs, G, hs);
      gatherHeads(k, Ks, row0, L, kv, g * hs, 1, hs);
      gatherHeads(v, Vs, row0, L, kv, g * hs, 1, hs);
      const pBase = (b * nHeads + g * G) * L * L;
      const pBlock = GL * L;
      const sk = softmaxKernel;
      if (sk !== null && probs instanceof Float32Array) {
        // Scores straight into this block of probs, the soft-max in place there, O = P V from there.
        const P = probs.subarray(pBase, pBase + pBlock);
        const ck = causal;
        if (!(ck !== null && f32(Qs) && f32(Ks) && ck.causalScores(Qs, Ks, P, G, L, hs))) matmul(Qs, Ks, P, GL, L, hs, false, true);
        sk.causal(P, GL, L, scale);
        if (!(ck !== null && f32(Vs) && f32(Os) && ck.causalRows(P, Vs, Os, G, L, hs))) matmul(P, Vs, Os, GL, hs, L, false, false);
        scatterHeads(Os, out, row0, L, dim, g * G * hs, G, hs);
        continue;
      }
      matmul(Qs, Ks, S, GL, L, hs, false, true);
      for (let r = 0; r < GL; r++) {
        const t = r % L;
        const o = r * L;
        let max = -Infinity;
        for (let p = 0; p <= t; p++) {
          const x = S[o + p]! * scale;
          if (x > max) max = x;
        }
        let sum = 0;
        for (let p = 0; p <= t; p++) {
          const e = Math.exp(S[o + p]! * scale - max);
          row[p] = e;
          sum += e;
        }
        const inv = 1 / sum;
        for (let p = 0; p <= t; p++) {
          const pr = row[p]! * inv;
          S[o + p] = pr;
          probs[pBase + o + p] = pr;
        }
        for (let p = t + 1; p < L; p++) {
          S[o + p] = 0;
          probs[pBase + o + p] = 0;
        }
      }
      matmul(S, Vs, Os, GL, hs, L, false, false);
      scatterHeads(Os, out, row0, L, dim, g * G * hs, G, hs);
    }
  }
}

/**
 * Backward of attentionForward, with the same stacking (per sequence b and KV head g, G query heads):
 *   dP = dO_g V_gᵀ;  dS = scale · P ⊙ (dP − rowsum(P ⊙ dP));  dQ_g = dS K_g;
 *   dK_g = dSᵀ Q_g;  dV_g = Pᵀ dO_g
 * — the KV-head gradients summed over the heads sharing them by the stacked reduction (length G·L).
 * dq, dk, dv are overwritten (not accumulated).
 */
export function attentionBackward(
  dout: FloatArray,
  q: FloatArray,
  k: FloatArray,
  v: FloatArray,
  probs: FloatArray,
  dq: FloatArray,
  dk: FloatArray,
  dv: FloatArray,
  s: AttentionShape,
): void {
  const { batch, L, nHeads, nKvHeads, hs, dim, kv, G, GL, scale, Qs, Ks, Vs } = stackedHeads(s, q);
  const dP = attnScratch(q, 3, GL * L);
  const dOs = attnScratch(q, 4, GL * hs);
  const sk = softmaxKernel;
  // With the soft-max kernel (float32), P is read where the forward left it; else copied into scratch.
  const inPlace = sk !== null && probs instanceof Float32Array && dP instanceof Float32Array;
  let Ps = inPlace ? probs : attnScratch(q, 5, GL * L);
  const dQs = attnScratch(q, 6, GL * hs);
  const dKs = attnScratch(q, 7, L * hs);
  const dVs = attnScratch(q, 8, L * hs);
  for (let b = 0; b < batch; b++) {
    const row0 = b * L;
    for (let g = 0; g < nKvHeads; g++) {
      gatherHeads(q, Qs, row0, L, dim, g * G * hs, G, hs);
      gatherHeads(dout, dOs, row0, L, dim, g * G * hs, G, hs);
      gatherHeads(k, Ks, row0, L, kv, g * hs, 1, hs);
      gatherHeads(v, Vs, row0, L, kv, g * hs, 1, hs);
      const pBase = (b * nHeads + g * G) * L * L;
      if (inPlace) Ps = (probs as Float32Array).subarray(pBase, pBase + GL * L);
      else for (let i = 0; i < GL * L; i++) Ps[i] = probs[pBase + i]!;
      const ck = causal;
      // dP only where P ≠ 0 (p ≤ t) matters: the causal kernel when installed (dP's scratch holds finite values)
      if (!(inPlace && ck !== null && f32(dOs) && f32(Vs) && ck.causalScores(dOs, Vs, dP as Float32Array, G, L, hs))) matmul(dOs, Vs, dP, GL, L, hs, false, true);
      if (inPlace) sk!.backward(Ps as Float32Array, dP as Float32Array, GL, L, scale);
      else for (let r = 0; r < GL; r++) {
        const t = r % L;
        const o = r * L;
        let corr = 0;
        for (let p = 0; p <= t; p++) corr += Ps[o + p]! * dP[o + p]!;
        for (let p = 0; p <= t; p++) dP[o + p] = Ps[o + p]! * (dP[o + p]! - corr) * scale;
        for (let p = t + 1; p < L; p++) dP[o + p] = 0;
      }
      // dS is 0 after t (P is): the causal rows kernel when installed
      if (!(inPlace && ck !== null && f32(Ks) && f32(dQs) && ck.causalRows(dP as Float32Array, Ks, dQs, G, L, hs))) matmul(dP, Ks, dQs, GL, hs, L, false, false);
      const useCols = inPlace && ck !== null && f32(Qs) && f32(dKs) && f32(dOs) && f32(dVs);
      if (!(useCols && ck.causalCols(dP as Float32Array, Qs, dKs, G, L, hs))) matmul(dP, Qs, dKs, L, hs, GL, true, false);
      if (!(useCols && ck.causalCols(Ps as Float32Array, dOs, dVs, G, L, hs))) matmul(Ps, dOs, dVs, L, hs, GL, true, false);
      scatterHeads(dQs, dq, row0, L, dim, g * G * hs, G, hs);
      scatterHeads(dKs, dk, row0, L, kv, g * hs, 1, hs);
      scatterHeads(dVs, dv, row0, L, kv, g * hs, 1, hs);
    }
  }
}

/**
 * dst[(j·L + t)·hs + i] = src[(row0 + t)·width + col0 + j·hs + i] for heads j < count: `count` consecutive
 * heads of L rows, stacked head after head into a contiguous [count·L, hs] matrix.
 */
function gatherHeads(src: FloatArray, dst: FloatArray, row0: number, L: number, width: number, col0: number, count: number, hs: number): void {
  if (ew !== null && f32(src) && f32(dst) && ew.copyRows(src, row0 * width + col0, width, dst, 0, hs, L, hs)) {
    for (let j = 1; j < count; j++) ew.copyRows(src, row0 * width + col0 + j * hs, width, dst, j * L * hs, hs, L, hs);
    return;
  }
  for (let j = 0; j < count; j++) {
    for (let t = 0; t < L; t++) {
      const si = (row0 + t) * width + col0 + j * hs;
      const di = (j * L + t) * hs;
      for (let i = 0; i < hs; i++) dst[di + i] = src[si + i]!;
    }
  }
}

/** The inverse of gatherHeads: write a stacked [count·L, hs] matrix back into its rows and columns. */
function scatterHeads(src: FloatArray, dst: FloatArray, row0: number, L: number, width: number, col0: number, count: number, hs: number): void {
  if (ew !== null && f32(src) && f32(dst) && ew.copyRows(src, 0, hs, dst, row0 * width + col0, width, L, hs)) {
    for (let j = 1; j < count; j++) ew.copyRows(src, j * L * hs, hs, dst, row0 * width + col0 + j * hs, width, L, hs);
    return;
  }
  for (let j = 0; j < count; j++) {
    for (let t = 0; t < L; t++) {
      const di = (row0 + t) * width + col0 + j * hs;
      const si = (j * L + t) * hs;
      for (let i = 0; i < hs; i++) dst[di + i] = src[si + i]!;
    }
  }
}

// Attention scratch, per precision: module-level and grow-only, so a training step allocates nothing here once
// warm (the graph calls these one at a time; worker threads have their own module instances).
let rowScratch = new Float64Array(0);
const attn32: Float32Array[] = [];
const attn64: Float64Array[] = [];
function attnScratch(like: FloatArray, slot: number, size: number): FloatArray {
  if (like instanceof Float64Array) {
    if (!(attn64[slot]!?.length >= size)) attn64[slot] = new Float64Array(size);
    return attn64[slot]!;
  }
  if (!(attn32[slot]!?.length >= size)) attn32[slot] = allocFloat32(size);
  return attn32[slot]!;
}

/**
 * What attentionForward and attentionBackward both derive from the shape: the widths, G query heads per KV head
 * stacked into GL = G·L rows, the soft-max scale 1/√hs, and the scratch the heads are gathered into (slots 0-2:
 * Q_g [GL, hs], K_g and V_g [L, hs]) in the precision of `like`.
 */
function stackedHeads(s: AttentionShape, like: FloatArray) {
  const { batch, seqLen: L, nHeads, nKvHeads, headSize: hs } = s;
  const G = nHeads / nKvHeads;
  const GL = G * L;
  return {
    batch,
    L,
    nHeads,
    nKvHeads,
    hs,
    dim: nHeads * hs,
    kv: nKvHeads * hs,
    G,
    GL,
    scale: 1 / Math.sqrt(hs),
    Qs: attnScratch(like, 0, GL * hs),
    Ks: attnScratch(like, 1, L * hs),
    Vs: attnScratch(like, 2, L * hs),
  };
}

// ------------------------------------------------------------------------------------------------- SwiGLU

/**
 * h = silu(g) ⊙ u, silu(g) = g · σ(g) — written as the reference forward writes it. When `sig` is given,
 * σ(g) is saved there for swigluBackward (the exponential is most of this op's cost; the backward would
 * otherwise compute it again).
 */
export function swigluForward(g: FloatArray, u: FloatArray, h: FloatArray, count: number, sig: FloatArray | null = null): void {
  if (ew !== null && f32(g) && f32(u) && f32(h) && (sig === null || f32(sig)) && ew.swigluForward(g, u, h, sig, count)) return;
  const ek = expKernel;
  if (ek !== null && g instanceof Float32Array) {
    // e = exp(−g) in one kernel call (into σ's buffer, or a scratch), then σ = 1/(1 + e), h = g·σ·u.
    const e = sig instanceof Float32Array ? sig : (swigluScratch.length >= count ? swigluScratch : (swigluScratch = new Float32Array(count)));
    ek(g, e, 1, count, -1, ZERO_SHIFT);
    for (let i = 0; i < count; i++) {
      const d = 1 + e[i]!;
      e[i] = 1 / d;
      h[i] = (g[i]! / d) * u[i]!;
    }
    return;
  }
  if (sig) {
    for (let i = 0; i < count; i++) {
      const x = g[i]!;
      const d = 1 + Math.exp(-x);
      sig[i] = 1 / d;
      h[i] = (x / d) * u[i]!;
    }
    return;
  }
  for (let i = 0; i < count; i++) {
    const x = g[i]!;
    h[i] = (x / (1 + Math.exp(-x))) * u[i]!;
  }
}

let swigluScratch = new Float32Array(0);

/**
 * dg = dh ⊙ u ⊙ σ(g)(1 + g(1 − σ(g))); du = dh ⊙ silu(g). Overwrites dg and du. `sig`: σ(g) saved by the
 * forward (else recomputed; a saved float32 σ differs from the float64 one by one rounding).
 */
export function swigluBackward(
  dh: FloatArray,
  g: FloatArray,
  u: FloatArray,
  dg: FloatArray,
  du: FloatArray,
  count: number,
  sig: FloatArray | null = null,
): void {
  if (ew !== null && sig !== null && f32(dh) && f32(g) && f32(u) && f32(sig) && f32(dg) && f32(du) && ew.swigluBackward(dh, g, u, sig, dg, du, count)) return;
  // Two loops rather than a per-element test of `sig` (measured: the branch in the loop cost ~2× here).
  if (sig) {
    for (let i = 0; i < count; i++) {
      const x = g[i]!;
      const sg = sig[i]!;
      const d = dh[i]!;
      dg[i] = d * u[i]! * sg * (1 + x * (1 - sg));
      du[i] = d * x * sg;
    }
    return;
  }
  for (let i = 0; i < count; i++) {
    const x = g[i]!;
    const sg = 1 / (1 + Math.exp(-x));
    const d = dh[i]!;
    dg[i] = d * u[i]! * sg * (1 + x * (1 - sg));
    du[i] = d * x * sg;
  }
}

/** out[i] = a[i] + b[i] for i < count (the residual adds; out may be a or b). */
export function addRows(a: FloatArray, b: FloatArray, out: FloatArray, count: number): void {
  if (ew !== null && f32(a) && f32(b) && f32(out) && ew.add(a, b, out, count)) return;
  for (let i = 0; i < count; i++) out[i] = a[i]! + b[i]!;
}

// ------------------------------------------------------------------------------------------------- losses

export interface LogitLossResult {
  /** Mean over rows of KL(teacher ‖ student) (NaN without a teacher). */
  kl: number;
  /** Mean over rows of −log p_student(target). */
  ce: number;
  /** Fraction of rows where the student's argmax equals the teacher's (NaN without a teacher). */
  top1: number;
}

/**
 * Cross-entropy on next tokens and KL(teacher ‖ student) on the logits, both averaged over the n rows,
 * and (when dLogits is given) the gradient of  wKl · KL + wCe · CE  with respect to the logits:
 *   dz = (wKl (p_s − p_t) + wCe (p_s − onehot(target))) / denom,
 * denom = n by default (a shard of a larger batch passes the whole batch's row count).
 * teacherLogProbs holds log-softmax rows of the teacher (or null: KL is NaN and wKl must be 0).
 * Everything is accumulated in float64 (log-sum-exp with the row max subtracted).
 */
export function logitLosses(
  logits: FloatArray,
  teacherLogProbs: FloatArray | null,
  targets: ArrayLike<number>,
  n: number,
  vocab: number,
  wKl: number,
  wCe: number,
  dLogits: FloatArray | null,
  denom = n,
): LogitLossResult {
  let klSum = 0;
  let ceSum = 0;
  let agree = 0;
  const invN = 1 / n;
  const invD = 1 / denom;
  for (let t = 0; t < n; t++) {
    const o = t * vocab;
    let max = -Infinity;
    let arg = 0;
    for (let j = 0; j < vocab; j++) {
      if (logits[o + j]! > max) {
        max = logits[o + j]!;
        arg = j;
      }
    }
    let sum = 0;
    for (let j = 0; j < vocab; j++) sum += Math.exp(logits[o + j]! - max);
    const lse = max + Math.log(sum);
    const y = targets[t]!;
    ceSum += lse - logits[o + y]!;
    if (teacherLogProbs) {
      let kl = 0;
      let tMax = -Infinity;
      let tArg = 0;
      for (let j = 0; j < vocab; j++) {
        const lt = teacherLogProbs[o + j]!;
        if (lt > tMax) {
          tMax = lt;
          tArg = j;
        }
        const pt = Math.exp(lt);
        if (pt > 0) kl += pt * (lt - (logits[o + j]! - lse));
      }
      klSum += kl;
      if (tArg === arg) agree++;
    }
    if (dLogits) {
      for (let j = 0; j < vocab; j++) {
        const ps = Math.exp(logits[o + j]! - lse);
        let d = 0;
        if (wKl !== 0) d += wKl * (ps - Math.exp(teacherLogProbs![o + j]!));
        if (wCe !== 0) d += wCe * (j === y ? ps - 1 : ps);
        dLogits[o + j] = d * invD;
      }
    }
  }
  return {
    kl: teacherLogProbs ? klSum * invN : NaN,
    ce: ceSum * invN,
    top1: teacherLogProbs ? agree * invN : NaN,
  };
}

export interface DistillLossResult extends LogitLossResult {
  /** False when a teacher logit is NaN or ±Inf (the figures are then meaningless; nothing else is checked). */
  teacherFinite: boolean;
  /** False when a student logit is NaN or ±Inf. */
  studentFinite: boolean;
}

/**
 * logSoftmaxRows(teacher) + logitLosses in one pass per row over RAW teacher logits (not log-probabilities),
 * with 2 exponentials per logit instead of 5 — the soft-maxes over the vocabulary were a tenth of a
 * training step. Same figures and gradient (float64 arithmetic):
 *   KL = Σ_j p_t (log p_t − log p_s) = (Σ_j e_t,j (x_j − z_j)) / Σ_j e_t,j − lse_t + lse_s
 *   (e_t,j = exp(x_j − max x), using Σ p_t = 1), CE = lse_s − z_y,
 *   dz = (wKl (p_s − p_t) + wCe (p_s − onehot(y))) / denom.
 * Finiteness is reported instead of thrown: Σ_j x_j (float64) is finite exactly when every float32 logit is,
 * so the caller can run its detailed (naming) check only when a row failed. `teacherLogits` may be null
 * (CE only: KL and top-1 NaN, wKl must be 0). The teacher logits are not modified.
 */
export function distillLosses(
  logits: FloatArray,
  teacherLogits: FloatArray | null,
  targets: ArrayLike<number>,
  n: number,
  vocab: number,
  wKl: number,
  wCe: number,
  dLogits: FloatArray | null,
  denom = n,
): DistillLossResult {
  const tl = teacherLogits;
  // With an exponential kernel (float32 logits), every row's maximum first, then all exponentials of each
  // model in one call into float32 scratch; otherwise row by row with Math.exp into float64 rows.
  const ek = logits instanceof Float32Array && (tl === null || tl instanceof Float32Array) ? expKernel : null;
  if (rowS.length < vocab) {
    rowS = new Float64Array(vocab);
    rowT = new Float64Array(vocab);
  }
  if (maxS.length < n) {
    maxS = new Float64Array(n);
    maxT = new Float64Array(n);
  }
  if (ek !== null && allS.length < n * vocab) {
    allS = new Float32Array(n * vocab);
    allT = new Float32Array(n * vocab);
  }
  let studentFinite = true;
  let teacherFinite = true;
  const kd = kdKernel !== null && tl instanceof Float32Array && logits instanceof Float32Array && dLogits instanceof Float32Array ? kdKernel : null;
  if (kd !== null && maxBoth.length < 2 * n) {
    maxBoth = new Float64Array(2 * n);
    kdStats = new Float32Array(3 * n);
  }
  // Pass 1: maxima, arg-maxima (top-1), finiteness (Σ_j x_j is finite exactly when every float32 x_j is).
  let agree = 0;
  if (ew !== null && f32(logits) && (tl === null || f32(tl)) && passOneKernel(ew, logits, tl, n, vocab)) {
    // The kernel's row maxima and finiteness checks; the arg-max is the first index of the maximum (what the
    // loop below finds; TypedArray indexOf is native).
    for (let t = 0; t < n; t++) {
      const o = t * vocab;
      const max = mmS[2 * t]!;
      if (mmS[2 * t + 1] !== 0) studentFinite = false;
      maxS[t] = max;
      if (tl) {
        const tMax = mmT[2 * t]!;
        if (mmT[2 * t + 1] !== 0) teacherFinite = false;
        maxT[t] = tMax;
        if (studentFinite && teacherFinite) {
          // the first index of each row's maximum, the same test as comparing both indexOf scans: the teacher's
          // scan is needed only when its row holds its maximum at the student's arg-max (else they differ)
          const arg = logits.indexOf(max, o);
          if (tl[arg] === tMax && tl.indexOf(tMax, o) === arg) agree++;
        }
      }
    }
  } else for (let t = 0; t < n; t++) {
    const o = t * vocab;
    let max = -Infinity;
    let arg = 0;
    let check = 0;
    for (let j = 0; j < vocab; j++) {
      const z = logits[o + j]!;
      check += z;
      if (z > max) {
        max = z;
        arg = j;
      }
    }
    if (!Number.isFinite(check)) studentFinite = false;
    maxS[t] = max;
    if (tl) {
      let tMax = -Infinity;
      let tArg = 0;
      let tCheck = 0;
      for (let j = 0; j < vocab; j++) {
        const x = tl[o + j]!;
        tCheck += x;
        if (x > tMax) {
          tMax = x;
          tArg = j;
        }
      }
      if (!Number.isFinite(tCheck)) teacherFinite = false;
      maxT[t] = tMax;
      if (tArg === arg) agree++;
    }
  }
  const invD = 1 / denom;
  const a = wKl * invD;
  const c = wCe * invD;
  if (kd !== null) {
    // Exponentials, sums and the gradient in the kernel; log-sum-exps, KL, CE and the target's −c here.
    for (let t = 0; t < n; t++) {
      maxBoth[2 * t] = maxS[t]!;
      maxBoth[2 * t + 1] = maxT[t]!;
    }
    kd(logits as Float32Array, tl as Float32Array, maxBoth, dLogits as Float32Array, kdStats, n, vocab, a, c);
    let klSum = 0;
    let ceSum = 0;
    for (let t = 0; t < n; t++) {
      const o = t * vocab;
      const lse = maxS[t]! + Math.log(kdStats[3 * t]!);
      const tSum = kdStats[3 * t + 1]!;
      const y = targets[t]!;
      ceSum += lse - logits[o + y]!;
      klSum += kdStats[3 * t + 2]! / tSum - (maxT[t]! + Math.log(tSum)) + lse;
      if (c !== 0) dLogits![o + y] = dLogits![o + y]! - c;
    }
    return { kl: klSum / n, ce: ceSum / n, top1: agree / n, teacherFinite, studentFinite };
  }
  if (ek !== null) {
    ek(logits as Float32Array, allS, n, vocab, 1, maxS);
    if (tl) ek(tl as Float32Array, allT, n, vocab, 1, maxT);
  }
  let klSum = 0;
  let ceSum = 0;
  for (let t = 0; t < n; t++) {
    const o = t * vocab;
    const max = maxS[t]!;
    // es[eo + j] = exp(z_j − max): the kernel's float32 row, or a float64 row computed here
    let es: FloatArray = rowS;
    let eo = 0;
    let sum = 0;
    if (ek !== null) {
      es = allS;
      eo = o;
      for (let j = 0; j < vocab; j++) sum += es[o + j]!;
    } else {
      for (let j = 0; j < vocab; j++) {
        const e = Math.exp(logits[o + j]! - max);
        rowS[j] = e;
        sum += e;
      }
    }
    const lse = max + Math.log(sum);
    const y = targets[t]!;
    ceSum += lse - logits[o + y]!;
    const invS = 1 / sum;
    let invT = 0;
    let et: FloatArray = rowT;
    if (tl) {
      const tMax = maxT[t]!;
      let tSum = 0;
      let cross = 0;
      if (ek !== null) {
        et = allT;
        for (let j = 0; j < vocab; j++) {
          const e = et[o + j]!;
          tSum += e;
          cross += e * (tl[o + j]! - logits[o + j]!);
        }
      } else {
        for (let j = 0; j < vocab; j++) {
          const x = tl[o + j]!;
          const e = Math.exp(x - tMax);
          rowT[j] = e;
          tSum += e;
          cross += e * (x - logits[o + j]!);
        }
      }
      invT = 1 / tSum;
      klSum += cross * invT - (tMax + Math.log(tSum)) + lse;
    }
    if (dLogits) {
      for (let j = 0; j < vocab; j++) {
        let d = (a + c) * es[eo + j]! * invS;
        if (a !== 0) d -= a * et[eo + j]! * invT;
        if (j === y) d -= c;
        dLogits[o + j] = d;
      }
    }
  }
  const invN = 1 / n;
  return {
    kl: tl ? klSum * invN : NaN,
    ce: ceSum * invN,
    top1: tl ? agree * invN : NaN,
    teacherFinite,
    studentFinite,
  };
}

let mmS = new Float64Array(0);
let mmT = new Float64Array(0);

/** Row maxima and finiteness checks of the student's (and teacher's) logits into mmS (mmT) through the kernel. */
function passOneKernel(k: ElementwiseKernels, z: Float32Array, x: Float32Array | null, n: number, vocab: number): boolean {
  if (mmS.length < 2 * n) {
    mmS = new Float64Array(2 * n);
    mmT = new Float64Array(2 * n);
  }
  if (!k.rowMaxCheck(z, n, vocab, mmS)) return false;
  return x === null || k.rowMaxCheck(x, n, vocab, mmT);
}

let maxS = new Float64Array(0);
let maxT = new Float64Array(0);
let maxBoth = new Float64Array(0);
let kdStats = new Float32Array(0);
let allS = new Float32Array(0);
let allT = new Float32Array(0);
let rowS = new Float64Array(0);
let rowT = new Float64Array(0);

/** Turn rows of logits into log-softmax rows, in place (float64 log-sum-exp). */
export function logSoftmaxRows(x: FloatArray, n: number, vocab: number): void {
  for (let t = 0; t < n; t++) {
    const o = t * vocab;
    let max = -Infinity;
    for (let j = 0; j < vocab; j++) if (x[o + j]! > max) max = x[o + j]!;
    let sum = 0;
    for (let j = 0; j < vocab; j++) sum += Math.exp(x[o + j]! - max);
    const lse = max + Math.log(sum);
    for (let j = 0; j < vocab; j++) x[o + j] = x[o + j]! - lse;
  }
}

/**
 * Mean squared error between two [count] arrays (a hidden state against the teacher's), and when dx is
 * given, dx += weight · 2 (x − target) / denom — the gradient of weight · MSE (denom = count by default;
 * a shard of a larger batch passes the whole batch's element count).
 */
export function mseLoss(
  x: FloatArray,
  target: FloatArray,
  count: number,
  weight: number,
  dx: FloatArray | null,
  denom = count,
): number {
  let sum = 0;
  const g = (2 * weight) / denom;
  if (ew !== null && f32(x) && f32(target) && (dx === null || f32(dx))) {
    const s = ew.mse(x, target, dx, count, g);
    if (s !== -1) return s / count; // NaN when an element is: the caller's finiteness checks report it
  }
  for (let i = 0; i < count; i++) {
    const d = x[i]! - target[i]!;
    sum += d * d;
    if (dx) dx[i] = dx[i]! + g * d;
  }
  return sum / count;
}
