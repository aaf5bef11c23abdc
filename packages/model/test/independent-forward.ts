/**
 * A deliberately plain, slow, float64 Llama-family forward written from the published formulas, sharing no code
 * with packages/model/src: it is the independent computation the variant tests hold LlamaForward and the runtimes
 * to. Every position recomputes attention over all earlier positions from scratch (no KV cache, no batching).
 *
 * Formulas (Hugging Face transformers' modeling_llama / modeling_qwen2 / modeling_qwen3, and Meta's Llama code):
 * - RMSNorm(x) = w ⊙ x / sqrt(mean(x²) + eps)
 * - q = W_q h + b_q, k = W_k h + b_k, v = W_v h + b_v (biases: Qwen2, or Llama's attention_bias)
 * - Qwen3: q and k RMS-normalised per head (weights [head_dim], same eps) before RoPE
 * - RoPE: inv_freq_i = theta^(-2i/d); angle = pos · inv_freq_i; "halves" rotates (x_i, x_{i+d/2}) as
 *   x·cos + rotate_half(x)·sin (rotate_half(x) = [−x₂, x₁]); "pairs" rotates (x_{2i}, x_{2i+1}) (Meta, GGUF llama)
 * - llama3 scaling (Llama 3.1): wavelength λ_i = 2π / inv_freq_i; λ < L/high: unchanged; λ > L/low: inv_freq / factor;
 *   otherwise with s = (L/λ − low) / (high − low): (1 − s) · inv_freq / factor + s · inv_freq (L: original context)
 * - llama.cpp's rope_freqs: inv_freq_i / factors_i
 * - attention: query head h reads key/value head ⌊h / (nHeads / nKvHeads)⌋; softmax(q·k / sqrt(d)) over
 *   positions ≤ t; o = W_o att (+ b_o)
 * - MLP: W_down (silu(W_gate h) ⊙ W_up h), silu(z) = z / (1 + e^(−z))
 * - logits = W_cls RMSNorm(x) with W_cls = the embedding when tied
 */

export interface IndependentModel {
  dim: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  eps: number;
  theta: number;
  layout: 'halves' | 'pairs';
  scaling?: { type: 'llama3'; factor: number; low: number; high: number; original: number } | { type: 'factors'; factors: number[] };
  /** Row-major matrices [out][in] and vectors, by canonical name (missing biases / norms are absent). */
  get(name: string): Float32Array | undefined;
  tied: boolean;
}

function matvec(w: Float32Array, x: number[], rows: number, cols: number): number[] {
  const y = new Array<number>(rows).fill(0);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += w[r * cols + c]! * x[c]!;
    y[r] = s;
  }
  return y;
}

function rmsnorm(x: number[], w: Float32Array, eps: number): number[] {
  const ms = x.reduce((s, v) => s + v * v, 0) / x.length;
  const inv = 1 / Math.sqrt(ms + eps);
  return x.map((v, i) => w[i]! * v * inv);
}

function inverseFrequencies(m: IndependentModel): number[] {
  const out: number[] = [];
  for (let i = 0; i < m.headDim / 2; i++) {
    const f = Math.pow(m.theta, (-2 * i) / m.headDim);
    const s = m.scaling;
    if (!s) out.push(f);
    else if (s.type === 'factors') out.push(f / s.factors[i]!);
    else {
      const lambda = (2 * Math.PI) / f;
      if (lambda < s.original / s.high) out.push(f);
      else if (lambda > s.original / s.low) out.push(f / s.factor);
      else {
        const t = (s.original / lambda - s.low) / (s.high - s.low);
        out.push(((1 - t) * f) / s.factor + t * f);
      }
    }
  }
  return out;
}

function rotate(head: number[], pos: number, freqs: number[], layout: 'halves' | 'pairs'): number[] {
  const d = head.length;
  const out = head.slice();
  for (let i = 0; i < d / 2; i++) {
    const a = layout === 'halves' ? i : 2 * i;
    const b = layout === 'halves' ? i + d / 2 : 2 * i + 1;
    const cos = Math.cos(pos * freqs[i]!);
    const sin = Math.sin(pos * freqs[i]!);
    out[a] = head[a]! * cos - head[b]! * sin;
    out[b] = head[b]! * cos + head[a]! * sin;
  }
  return out;
}

const L = (l: number, s: string) => `model.layers.${l}.${s}`;

/** Logits [tokens.length][vocab] of the model on `tokens` from position 0. */
export function independentForward(m: IndependentModel, tokens: number[]): number[][] {
  const need = (name: string) => {
    const t = m.get(name);
    if (!t) throw new Error(`independent forward: ${name} missing`);
    return t;
  };
  const freqs = inverseFrequencies(m);
  const d = m.headDim;
  const group = m.heads / m.kvHeads;
  const emb = need('model.embed_tokens.weight');
  let xs: number[][] = tokens.map((t) => Array.from(emb.subarray(t * m.dim, (t + 1) * m.dim)));
  for (let l = 0; l < m.layers; l++) {
    const qs: number[][][] = [];
    const ks: number[][][] = [];
    const vs: number[][][] = [];
    for (let t = 0; t < xs.length; t++) {
      const h = rmsnorm(xs[t]!, need(L(l, 'input_layernorm.weight')), m.eps);
      const proj = (kind: string, rows: number) => {
        const y = matvec(need(L(l, `self_attn.${kind}_proj.weight`)), h, rows, m.dim);
        const b = m.get(L(l, `self_attn.${kind}_proj.bias`));
        return b ? y.map((v, i) => v + b[i]!) : y;
      };
      const q = proj('q', m.heads * d);
      const k = proj('k', m.kvHeads * d);
      const v = proj('v', m.kvHeads * d);
      const qn = m.get(L(l, 'self_attn.q_norm.weight'));
      const kn = m.get(L(l, 'self_attn.k_norm.weight'));
      const heads = (x: number[], n: number, norm: Float32Array | undefined) =>
        Array.from({ length: n }, (_, i) => {
          const hd = x.slice(i * d, (i + 1) * d);
          return rotate(norm ? rmsnorm(hd, norm, m.eps) : hd, t, freqs, m.layout);
        });
      qs.push(heads(q, m.heads, qn));
      ks.push(heads(k, m.kvHeads, kn));
      vs.push(Array.from({ length: m.kvHeads }, (_, i) => v.slice(i * d, (i + 1) * d)));
    }
    const next: number[][] = [];
    for (let t = 0; t < xs.length; t++) {
      const att: number[] = [];
      for (let h = 0; h < m.heads; h++) {
        const g = Math.floor(h / group);
        const scores = Array.from({ length: t + 1 }, (_, p) => qs[t]![h]!.reduce((s, qv, i) => s + qv * ks[p]![g]![i]!, 0) / Math.sqrt(d));
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const z = e.reduce((a, b) => a + b, 0);
        for (let i = 0; i < d; i++) att.push(e.reduce((s, p, pi) => s + p * vs[pi]![g]![i]!, 0) / z);
      }
      let o = matvec(need(L(l, 'self_attn.o_proj.weight')), att, m.dim, m.heads * d);
      const bo = m.get(L(l, 'self_attn.o_proj.bias'));
      if (bo) o = o.map((v, i) => v + bo[i]!);
      const x1 = xs[t]!.map((v, i) => v + o[i]!);
      const h2 = rmsnorm(x1, need(L(l, 'post_attention_layernorm.weight')), m.eps);
      const gate = matvec(need(L(l, 'mlp.gate_proj.weight')), h2, m.hidden, m.dim);
      const up = matvec(need(L(l, 'mlp.up_proj.weight')), h2, m.hidden, m.dim);
      const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]!);
      const down = matvec(need(L(l, 'mlp.down_proj.weight')), act, m.dim, m.hidden);
      next.push(x1.map((v, i) => v + down[i]!));
    }
    xs = next;
  }
  const cls = m.tied ? emb : need('lm_head.weight');
  return xs.map((x) => matvec(cls, rmsnorm(x, need('model.norm.weight'), m.eps), m.vocab, m.dim));
}
