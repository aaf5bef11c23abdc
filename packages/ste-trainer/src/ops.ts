import type { FloatArray } from './matmul.js';

/**
 * The element-wise and attention operations of the Llama block, each as a forward and a hand-derived
 * backward over preallocated buffers. Activations are stored in the arrays' precision (float32 in
 * training, float64 in the gradient checks); every reduction accumulates in float64 (JavaScript numbers).
 * Backward functions ADD into their input-gradient buffers where noted, so residual branches sum for free.
 * Tensors are row-major; `n` is the number of rows (batch × sequence positions).
 */

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
  const half = headSize / 2;
  const sgn = inverse ? -1 : 1;
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
        vec[a] = v0 * fc - v1 * fs;
        vec[b] = v0 * fs + v1 * fc;
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
 * Causal softmax attention with grouped KV heads over [batch, seqLen] rows.
 * q, out: [n, nHeads·hs]; k, v: [n, nKvHeads·hs]; probs: [batch, nHeads, seqLen, seqLen] (row t holds
 * the softmax over positions 0..t; the rest of the row is left untouched and never read).
 */
export function attentionForward(
  q: FloatArray,
  k: FloatArray,
  v: FloatArray,
  probs: FloatArray,
  out: FloatArray,
  s: AttentionShape,
): void {
  const { batch, seqLen: L, nHeads, nKvHeads, headSize: hs } = s;
  const dim = nHeads * hs;
  const kv = nKvHeads * hs;
  const kvMul = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(hs);
  if (rowScratch.length < L) rowScratch = new Float64Array(L);
  if (headScratch.length < hs) headScratch = new Float64Array(hs);
  const e = rowScratch;
  const acc = headScratch;
  for (let b = 0; b < batch; b++) {
    const row0 = b * L;
    for (let h = 0; h < nHeads; h++) {
      const kvo = Math.floor(h / kvMul) * hs;
      const pBase = (b * nHeads + h) * L * L;
      for (let t = 0; t < L; t++) {
        const qo = (row0 + t) * dim + h * hs;
        const pr = pBase + t * L;
        let max = -Infinity;
        for (let p = 0; p <= t; p++) {
          const ko = (row0 + p) * kv + kvo;
          let d0 = 0;
          let d1 = 0;
          let i = 0;
          for (; i + 1 < hs; i += 2) {
            d0 += q[qo + i]! * k[ko + i]!;
            d1 += q[qo + i + 1]! * k[ko + i + 1]!;
          }
          if (i < hs) d0 += q[qo + i]! * k[ko + i]!;
          const sc = (d0 + d1) * scale;
          e[p] = sc;
          if (sc > max) max = sc;
        }
        let sum = 0;
        for (let p = 0; p <= t; p++) {
          const x = Math.exp(e[p]! - max);
          e[p] = x;
          sum += x;
        }
        // O_t = (Σ_p e_p V_p) / Σ e, accumulated in float64 and rounded once (as the reference forward does).
        acc.fill(0, 0, hs);
        for (let p = 0; p <= t; p++) {
          const a = e[p]!;
          const vo = (row0 + p) * kv + kvo;
          for (let i = 0; i < hs; i++) acc[i] = acc[i]! + a * v[vo + i]!;
        }
        const inv = 1 / sum;
        for (let p = 0; p <= t; p++) probs[pr + p] = e[p]! * inv;
        const oo = (row0 + t) * dim + h * hs;
        for (let i = 0; i < hs; i++) out[oo + i] = acc[i]! * inv;
      }
    }
  }
}

let rowScratch = new Float64Array(0);
let headScratch = new Float64Array(0);

/**
 * Backward of attentionForward. With O_t = Σ_{p≤t} P_tp V_p and S_tp = scale · Q_t·K_p:
 *   dP_tp = dO_t · V_p;  dS_tp = P_tp (dP_tp − Σ_p' P_tp' dP_tp');  dQ_t = scale Σ_p dS_tp K_p;
 *   dK_p += scale Σ_t dS_tp Q_t;  dV_p += Σ_t P_tp dO_t.
 * dq, dk, dv are overwritten (not accumulated). `scratch` holds one row of dS (length ≥ seqLen).
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
  scratch: FloatArray,
  s: AttentionShape,
): void {
  const { batch, seqLen: L, nHeads, nKvHeads, headSize: hs } = s;
  const dim = nHeads * hs;
  const kv = nKvHeads * hs;
  const kvMul = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(hs);
  dq.fill(0, 0, batch * L * dim);
  dk.fill(0, 0, batch * L * kv);
  dv.fill(0, 0, batch * L * kv);
  for (let b = 0; b < batch; b++) {
    const row0 = b * L;
    for (let h = 0; h < nHeads; h++) {
      const kvo = Math.floor(h / kvMul) * hs;
      const pBase = (b * nHeads + h) * L * L;
      for (let t = 0; t < L; t++) {
        const oo = (row0 + t) * dim + h * hs;
        const pr = pBase + t * L;
        // dP and the softmax correction term Σ_p P·dP.
        let corr = 0;
        for (let p = 0; p <= t; p++) {
          const vo = (row0 + p) * kv + kvo;
          let d = 0;
          for (let i = 0; i < hs; i++) d += dout[oo + i]! * v[vo + i]!;
          scratch[p] = d;
          corr += probs[pr + p]! * d;
        }
        for (let p = 0; p <= t; p++) {
          const a = probs[pr + p]!;
          const ds = a * (scratch[p]! - corr) * scale;
          const ko = (row0 + p) * kv + kvo;
          // dQ_t += ds K_p; dK_p += ds Q_t; dV_p += P_tp dO_t
          for (let i = 0; i < hs; i++) {
            dq[oo + i] = dq[oo + i]! + ds * k[ko + i]!;
            dk[ko + i] = dk[ko + i]! + ds * q[oo + i]!;
            dv[ko + i] = dv[ko + i]! + a * dout[oo + i]!;
          }
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------- SwiGLU

/** h = silu(g) ⊙ u, silu(g) = g · σ(g) — written as the reference forward writes it. */
export function swigluForward(g: FloatArray, u: FloatArray, h: FloatArray, count: number): void {
  for (let i = 0; i < count; i++) {
    const x = g[i]!;
    h[i] = (x / (1 + Math.exp(-x))) * u[i]!;
  }
}

/** dg = dh ⊙ u ⊙ σ(g)(1 + g(1 − σ(g))); du = dh ⊙ silu(g). Overwrites dg and du. */
export function swigluBackward(dh: FloatArray, g: FloatArray, u: FloatArray, dg: FloatArray, du: FloatArray, count: number): void {
  for (let i = 0; i < count; i++) {
    const x = g[i]!;
    const sg = 1 / (1 + Math.exp(-x));
    const d = dh[i]!;
    dg[i] = d * u[i]! * sg * (1 + x * (1 - sg));
    du[i] = d * x * sg;
  }
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
  for (let i = 0; i < count; i++) {
    const d = x[i]! - target[i]!;
    sum += d * d;
    if (dx) dx[i] = dx[i]! + g * d;
  }
  return sum / count;
}
