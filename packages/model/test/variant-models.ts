import { Rng } from '@ultrasketch/core';
import type { ModelConfig, ModelWeights, Tensor } from '../src/index.js';
import type { IndependentModel } from './independent-forward.js';

/**
 * Tiny random-weight models, one per architecture variant of the Llama family that no real fixture covers.
 * Tensor names and shapes are written out here from the architectures' definitions (not taken from the code
 * under test), so a wrong shape in the model package shows up as a load error or a wrong logit.
 */

export interface Variant {
  name: string;
  config: ModelConfig;
  /** What the independent forward needs to know (its own reading of the architecture). */
  spec: Omit<IndependentModel, 'get'>;
}

const base = { architecture: 'llama' as const, vocabSize: 61, seqLen: 32, normEps: 1e-5, nLayers: 2 };

export const VARIANTS: Variant[] = [
  {
    // Qwen2: q/k/v biases (no o bias), halves RoPE, GQA 4 → 2, untied classifier.
    name: 'Qwen2 (q/k/v bias, GQA, untied)',
    config: { ...base, sourceArchitecture: 'Qwen2ForCausalLM', dim: 32, hiddenDim: 48, nHeads: 4, nKvHeads: 2, ropeTheta: 1e6, ropeLayout: 'halves', tiedClassifier: false, qkvBias: true },
    spec: { dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2, headDim: 8, vocab: 61, eps: 1e-5, theta: 1e6, layout: 'halves', tied: false },
  },
  {
    // Qwen3: per-head q/k RMSNorm, explicit head_dim 16 with dim 32 and 4 heads (q is 64 wide), GQA 4 → 2, tied.
    name: 'Qwen3 (q/k norm, head_dim ≠ dim/heads, tied)',
    config: { ...base, sourceArchitecture: 'Qwen3ForCausalLM', dim: 32, hiddenDim: 40, nHeads: 4, nKvHeads: 2, headDim: 16, ropeTheta: 1e6, ropeLayout: 'halves', tiedClassifier: true, qkNorm: true },
    spec: { dim: 32, hidden: 40, layers: 2, heads: 4, kvHeads: 2, headDim: 16, vocab: 61, eps: 1e-5, theta: 1e6, layout: 'halves', tied: true },
  },
  {
    // Llama 3.1-style scaling. The original context (64) is chosen so that, with head size 16 and theta 1e4, the
    // frequencies fall in all three regimes (kept, blended, divided) and positions < 16 already feel the change.
    name: 'Llama 3 (llama3 RoPE scaling, MQA, untied)',
    config: {
      ...base,
      sourceArchitecture: 'LlamaForCausalLM',
      dim: 32,
      hiddenDim: 64,
      nHeads: 2,
      nKvHeads: 1,
      ropeTheta: 1e4,
      ropeLayout: 'halves',
      tiedClassifier: false,
      ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 },
    },
    spec: { dim: 32, hidden: 64, layers: 2, heads: 2, kvHeads: 1, headDim: 16, vocab: 61, eps: 1e-5, theta: 1e4, layout: 'halves', tied: false, scaling: { type: 'llama3', factor: 8, low: 1, high: 4, original: 64 } },
  },
  {
    // GGUF llama with rope_freqs (pairs layout): llama.cpp's frequency divisors.
    name: 'GGUF llama (rope_freqs factors, pairs, GQA)',
    config: {
      ...base,
      sourceArchitecture: 'LlamaForCausalLM',
      dim: 32,
      hiddenDim: 48,
      nHeads: 4,
      nKvHeads: 2,
      ropeTheta: 1e4,
      ropeLayout: 'pairs',
      tiedClassifier: true,
      ropeScaling: { type: 'freq-factors', factors: [1, 1.5, 3, 8] },
    },
    spec: { dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2, headDim: 8, vocab: 61, eps: 1e-5, theta: 1e4, layout: 'pairs', tied: true, scaling: { type: 'factors', factors: [1, 1.5, 3, 8] } },
  },
  {
    // Llama with attention_bias (q, k, v and o biases) and head_dim 12 ≠ 32 / 4 (q is 48 wide).
    name: 'Llama (attention_bias on q/k/v/o, head_dim 12 ≠ dim/heads, GQA)',
    config: { ...base, sourceArchitecture: 'LlamaForCausalLM', dim: 32, hiddenDim: 48, nHeads: 4, nKvHeads: 2, headDim: 12, ropeTheta: 1e4, ropeLayout: 'halves', tiedClassifier: false, qkvBias: true, oBias: true },
    spec: { dim: 32, hidden: 48, layers: 2, heads: 4, kvHeads: 2, headDim: 12, vocab: 61, eps: 1e-5, theta: 1e4, layout: 'halves', tied: false },
  },
];

/** Random weights for a variant, named and shaped from the spec (the architecture's own definition). */
export function randomWeights(v: Variant, seed: number): ModelWeights {
  const s = v.spec;
  const rng = new Rng(seed);
  const tensors = new Map<string, Tensor>();
  const put = (name: string, shape: number[], scale: number, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = offset + scale * (2 * rng.next() - 1);
    tensors.set(name, { shape, data });
  };
  const q = s.heads * s.headDim;
  const kv = s.kvHeads * s.headDim;
  put('model.embed_tokens.weight', [s.vocab, s.dim], 1);
  for (let l = 0; l < s.layers; l++) {
    const p = `model.layers.${l}.`;
    put(`${p}input_layernorm.weight`, [s.dim], 0.2, 1);
    put(`${p}post_attention_layernorm.weight`, [s.dim], 0.2, 1);
    put(`${p}self_attn.q_proj.weight`, [q, s.dim], 1.5 / Math.sqrt(s.dim));
    put(`${p}self_attn.k_proj.weight`, [kv, s.dim], 1.5 / Math.sqrt(s.dim));
    put(`${p}self_attn.v_proj.weight`, [kv, s.dim], 1 / Math.sqrt(s.dim));
    put(`${p}self_attn.o_proj.weight`, [s.dim, q], 1 / Math.sqrt(q));
    put(`${p}mlp.gate_proj.weight`, [s.hidden, s.dim], 1 / Math.sqrt(s.dim));
    put(`${p}mlp.up_proj.weight`, [s.hidden, s.dim], 1 / Math.sqrt(s.dim));
    put(`${p}mlp.down_proj.weight`, [s.dim, s.hidden], 1 / Math.sqrt(s.hidden));
    if (v.config.qkvBias) {
      put(`${p}self_attn.q_proj.bias`, [q], 0.5);
      put(`${p}self_attn.k_proj.bias`, [kv], 0.5);
      put(`${p}self_attn.v_proj.bias`, [kv], 0.5);
    }
    if (v.config.oBias) put(`${p}self_attn.o_proj.bias`, [s.dim], 0.5);
    if (v.config.qkNorm) {
      put(`${p}self_attn.q_norm.weight`, [s.headDim], 0.5, 1);
      put(`${p}self_attn.k_norm.weight`, [s.headDim], 0.5, 1);
    }
  }
  put('model.norm.weight', [s.dim], 0.2, 1);
  if (!s.tied) put('lm_head.weight', [s.vocab, s.dim], 1 / Math.sqrt(s.dim));
  return { config: v.config, tensors };
}

export function independentModel(v: Variant, w: ModelWeights): IndependentModel {
  return { ...v.spec, get: (name) => w.tensors.get(name)?.data };
}

/** A fixed token sequence of length n within the vocabulary. */
export function sampleTokens(n: number, vocab: number, seed = 5): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => Math.floor(rng.next() * vocab));
}

/** Largest |a − b| over rows of logits. */
export function maxDiff(got: Float32Array, want: number[][], vocab: number): number {
  let m = 0;
  want.forEach((row, t) => row.forEach((v, i) => (m = Math.max(m, Math.abs(got[t * vocab + i]! - v)))));
  return m;
}
