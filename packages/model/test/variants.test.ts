import { describe, expect, it } from 'vitest';
import { LlamaForward, type ModelConfig, validateModelWeights } from '../src/index.js';
import { independentForward } from './independent-forward.js';
import { VARIANTS, independentModel, maxDiff, randomWeights, sampleTokens } from './variant-models.js';

/**
 * Issue 11 done-when 3: each architecture variant (Qwen2 q/k/v bias, Qwen3 q/k norm and explicit head_dim,
 * llama3 RoPE scaling, GGUF rope_freqs, Llama attention_bias, GQA/MQA, tied/untied) through LlamaForward against
 * the independent float64 forward of independent-forward.ts: max logit difference ≤ 1e-4.
 */

const N = 14;

describe.each(VARIANTS)('$name', (variant) => {
  const weights = randomWeights(variant, 11);
  const tokens = sampleTokens(N, variant.spec.vocab);
  const want = independentForward(independentModel(variant, weights), tokens);
  const vocab = variant.spec.vocab;

  it('the weights validate against the config (every tensor the architecture defines, no more)', () => {
    expect(() => validateModelWeights(weights)).not.toThrow();
  });

  it('batched prefill: logits of every position within 1e-4 of the independent forward', () => {
    const fwd = LlamaForward.fromWeights(weights);
    const got = fwd.forward(tokens, fwd.createCache(), { logits: 'all' });
    expect(maxDiff(got, want, vocab)).toBeLessThanOrEqual(1e-4);
  });

  it('one position at a time against the KV cache: the same logits', () => {
    const fwd = LlamaForward.fromWeights(weights);
    const cache = fwd.createCache(N);
    const rows = new Float32Array(N * vocab);
    tokens.forEach((t, pos) => rows.set(fwd.forward([t], cache), pos * vocab));
    expect(maxDiff(rows, want, vocab)).toBeLessThanOrEqual(1e-4);
  });

  it('the variant matters: the same weights without it differ from the independent forward by far more than 1e-4', () => {
    // Guards the test itself: if the feature were ignored, the comparison above would fail.
    const c = variant.config;
    const without: ModelConfig = { ...c };
    if (c.ropeScaling) delete without.ropeScaling;
    else if (c.ropeLayout === 'halves') without.ropeLayout = 'pairs';
    const tensors = new Map(weights.tensors);
    if (c.qkvBias || c.oBias) {
      delete without.qkvBias;
      delete without.oBias;
      for (const name of [...tensors.keys()]) if (name.endsWith('.bias')) tensors.delete(name);
    }
    if (c.qkNorm) {
      delete without.qkNorm;
      for (const name of [...tensors.keys()]) if (name.includes('_norm.weight') && name.includes('self_attn')) tensors.delete(name);
    }
    const fwd = LlamaForward.fromWeights({ config: without, tensors });
    expect(maxDiff(fwd.forward(tokens, fwd.createCache(), { logits: 'all' }), want, vocab)).toBeGreaterThan(1e-2);
  });
});

describe('RoPE scaling forms agree', () => {
  it("llama.cpp's rope_freqs divisors that equal the llama3 formula's give the same logits as the llama3 parameters", () => {
    const v = VARIANTS.find((x) => x.config.ropeScaling?.type === 'llama3')!;
    const weights = randomWeights(v, 3);
    const rs = v.spec.scaling as { factor: number; low: number; high: number; original: number };
    // Divisors from the published llama3 rule: f / f' for each frequency of head size 16, theta 1e4.
    const factors = Array.from({ length: 8 }, (_, i) => {
      const f = Math.pow(1e4, (-2 * i) / 16);
      const lambda = (2 * Math.PI) / f;
      if (lambda < rs.original / rs.high) return 1;
      if (lambda > rs.original / rs.low) return rs.factor;
      const s = (rs.original / lambda - rs.low) / (rs.high - rs.low);
      return 1 / ((1 - s) / rs.factor + s);
    });
    expect(new Set(factors.map((x) => (x === 1 ? 'kept' : x === rs.factor ? 'divided' : 'blended'))).size).toBe(3);
    const tokens = sampleTokens(N, v.spec.vocab);
    const a = LlamaForward.fromWeights(weights);
    const la = a.forward(tokens, a.createCache(), { logits: 'all' }).slice();
    const b = LlamaForward.fromWeights({ config: { ...v.config, ropeScaling: { type: 'freq-factors', factors } }, tensors: weights.tensors });
    const lb = b.forward(tokens, b.createCache(), { logits: 'all' });
    let m = 0;
    for (let i = 0; i < la.length; i++) m = Math.max(m, Math.abs(la[i]! - lb[i]!));
    expect(m).toBeLessThanOrEqual(1e-5);
  });
});
