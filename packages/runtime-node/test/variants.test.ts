import { floatCodec } from '@ultrasketch/baselines';
import { readBundle } from '@ultrasketch/format';
import type { ModelWeights } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { independentForward } from '../../model/test/independent-forward.js';
import { VARIANTS, independentModel, maxDiff, randomWeights, sampleTokens } from '../../model/test/variant-models.js';
import { NodeSession, sessionFromBundle } from '../src/index.js';
import { bundleOf } from './bundle-fixture.js';

/**
 * The family's variants (Qwen2 bias, Qwen3 q/k norm + explicit head_dim, llama3 RoPE scaling, rope_freqs, Llama
 * attention_bias, GQA/MQA, tied/untied) through the CPU runtime — wasm and JS kernels, and a `.usk` bundle written
 * and read back (float codec, f32) — against the independent float64 forward: max logit difference ≤ 1e-4.
 */

const N = 12;

/** A bundle of the model with every matrix in the float codec (f32) and every vector as stored F32. */
const f32BundleOf = (weights: ModelWeights) => bundleOf(weights, () => ({ codec: floatCodec, options: { dtype: 'f32' } }));

describe.each(VARIANTS)('$name on runtime-node', (variant) => {
  const weights = randomWeights(variant, 23);
  const tokens = sampleTokens(N, variant.spec.vocab, 9);
  const want = independentForward(independentModel(variant, weights), tokens);
  const vocab = variant.spec.vocab;

  it.each(['wasm', 'js'] as const)('NodeSession (%s kernels): prefill and incremental logits within 1e-4', (kernels) => {
    const s = NodeSession.fromWeights(weights, { kernels });
    expect(maxDiff(s.forward(tokens, { logits: 'all' }), want, vocab)).toBeLessThanOrEqual(1e-4);
    s.reset();
    const rows = new Float32Array(N * vocab);
    tokens.forEach((t, pos) => rows.set(s.forward([t]), pos * vocab));
    expect(maxDiff(rows, want, vocab)).toBeLessThanOrEqual(1e-4);
  });

  it('a .usk bundle (float codec, f32) written and read back: the same logits, the config kept whole', () => {
    const bundle = readBundle(f32BundleOf(weights), '<variant bundle>');
    expect(bundle.config).toEqual(JSON.parse(JSON.stringify(variant.config)));
    const s = sessionFromBundle(bundle);
    expect(maxDiff(s.forward(tokens, { logits: 'all' }), want, vocab)).toBeLessThanOrEqual(1e-4);
  });

  it('generate runs (greedy) and stays within the vocabulary', async () => {
    const s = NodeSession.fromWeights(weights, { kernels: 'wasm' });
    const out: number[] = [];
    for await (const step of s.generate([tokens[0]!], { steps: 10, temperature: 0, stopToken: -1 })) out.push(step.next);
    expect(out).toHaveLength(10);
    expect(out.every((t) => t >= 0 && t < vocab)).toBe(true);
  });
});

describe('bundles missing a variant vector', () => {
  it('a bundle whose config asks for q/k/v biases but lacks one is refused naming the vector', () => {
    const v = VARIANTS.find((x) => x.config.qkvBias)!;
    const weights = randomWeights(v, 1);
    const tensors = new Map(weights.tensors);
    tensors.delete('model.layers.1.self_attn.v_proj.bias');
    const bundle = readBundle(f32BundleOf({ config: v.config, tensors: new Map([...tensors, ['model.layers.1.self_attn.v_proj.bias', { shape: [3], data: new Float32Array(3) }]]) }));
    expect(() => sessionFromBundle(bundle)).toThrow(/model\.layers\.1\.self_attn\.v_proj\.bias of length 16 is missing/);
  });
});
