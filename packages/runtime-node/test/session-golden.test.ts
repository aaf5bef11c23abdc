import { readFileSync } from 'node:fs';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { modelFromLlama2c } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { NodeSession, WASM_PAGE_BYTES } from '../src/index.js';
import { GOLDEN_MODELS, argmax, readGolden, shared } from '../../model/test/golden.js';

function maxAbsDiff(a: Float32Array, b: Float32Array, n: number): number {
  let m = 0;
  for (let i = 0; i < n; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe.each(GOLDEN_MODELS)('NodeSession with wasm kernels on $name matches llama2.c', (entry) => {
  const { model, golden, goldenLogits, vocab } = readGolden(entry);

  it('defaults to wasm kernels', () => {
    expect(NodeSession.fromWeights(model).kernels).toBe('wasm');
    expect(NodeSession.fromWeights(model, { kernels: 'js' }).kernels).toBe('js');
  });

  it('greedy tokens (one position at a time) and logits of positions 0..63', () => {
    const session = NodeSession.fromWeights(model, { kernels: 'wasm' });
    const fed = [1];
    let maxDiff = 0;
    for (let pos = 0; pos < golden.length; pos++) {
      const logits = session.forward([fed[pos]!]);
      if (pos < 64) maxDiff = Math.max(maxDiff, maxAbsDiff(logits, goldenLogits.subarray(pos * vocab), vocab));
      if (pos + 1 < golden.length) fed.push(argmax(logits));
    }
    expect(fed).toEqual(golden);
    expect(maxDiff).toBeLessThanOrEqual(1e-4);
  });

  it('a batched prefill (logits: all) gives the golden logits', () => {
    const session = NodeSession.fromWeights(model, { kernels: 'wasm' });
    const all = session.forward(golden.slice(0, 64), { logits: 'all' });
    expect(maxAbsDiff(all, goldenLogits, 64 * vocab)).toBeLessThanOrEqual(1e-4);
  });

  it("'js' and 'wasm' sessions agree on a long prefill and on generation", async () => {
    const js = NodeSession.fromWeights(model, { kernels: 'js' });
    const wasm = NodeSession.fromWeights(model, { kernels: 'wasm' });
    const n = Math.min(golden.length, 200);
    const a = js.forward(golden.slice(0, n), { logits: 'all' }).slice();
    const b = wasm.forward(golden.slice(0, n), { logits: 'all' });
    expect(maxAbsDiff(a, b, n * vocab)).toBeLessThanOrEqual(1e-4);
    const gen = async (s: NodeSession) => {
      const out: number[] = [];
      for await (const step of s.generate([1], { steps: 40, temperature: 0.8, seed: 7 })) out.push(step.next);
      return out;
    };
    expect(await gen(wasm)).toEqual(await gen(js));
  });
});

describe('wasm sessions, other paths', () => {
  const file = 'models/stories260K/stories260K.bin';
  const model = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(shared(file)), file));
  const golden = readFileSync(shared('reference/stories260K/greedy_tokens.txt'), 'utf8').trim().split('\n').map(Number);

  it('a model split across several small arenas gives the same logits', () => {
    const one = NodeSession.fromWeights(model, { kernels: 'wasm' });
    const split = NodeSession.fromWeights(model, {
      kernels: 'wasm',
      wasm: { arena: { maximumBytes: 8 * WASM_PAGE_BYTES, initialBytes: WASM_PAGE_BYTES } },
    });
    const a = one.forward(golden.slice(0, 32), { logits: 'all' }).slice();
    const b = split.forward(golden.slice(0, 32), { logits: 'all' });
    expect(maxAbsDiff(a, b, 32 * model.config.vocabSize)).toBe(0);
  });

  it('an untied classifier is a wasm linear too', () => {
    const tensors = new Map(model.tensors);
    const emb = tensors.get('model.embed_tokens.weight')!;
    tensors.set('lm_head.weight', { shape: [...emb.shape], data: emb.data.map((v, i) => v * (1 + (i % 3) * 0.01)) });
    const untied = { config: { ...model.config, tiedClassifier: false }, tensors };
    const a = NodeSession.fromWeights(untied, { kernels: 'js' }).forward(golden.slice(0, 16), { logits: 'all' }).slice();
    const b = NodeSession.fromWeights(untied, { kernels: 'wasm' }).forward(golden.slice(0, 16), { logits: 'all' });
    expect(maxAbsDiff(a, b, 16 * model.config.vocabSize)).toBeLessThanOrEqual(1e-5);
  });

  it('rejects an unknown kernel choice', () => {
    expect(() => NodeSession.fromWeights(model, { kernels: 'gpu' as never })).toThrow(/kernels must be/);
  });
});
