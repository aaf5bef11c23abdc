import { describe, expect, it } from 'vitest';
import { LlamaForward } from '../src/index.js';
import { GOLDEN_MODELS, argmax, readGolden } from './golden.js';

describe.each(GOLDEN_MODELS)('reference forward on $name matches llama2.c', (entry) => {
  const { model, golden, goldenLogits, vocab } = readGolden(entry);

  it('greedy tokens (one position at a time) and logits of positions 0..63', () => {
    const fwd = LlamaForward.fromWeights(model);
    const cache = fwd.createCache();
    const fed = [1];
    let maxDiff = 0;
    for (let pos = 0; pos < golden.length; pos++) {
      const logits = fwd.forward([fed[pos]!], cache);
      if (pos < 64) {
        for (let i = 0; i < vocab; i++) maxDiff = Math.max(maxDiff, Math.abs(logits[i]! - goldenLogits[pos * vocab + i]!));
      }
      if (pos + 1 < golden.length) fed.push(argmax(logits));
    }
    expect(fed).toEqual(golden);
    expect(maxDiff).toBeLessThanOrEqual(1e-4);
  });

  it('a batched prefill gives the same logits as position-by-position', () => {
    const fwd = LlamaForward.fromWeights(model);
    const all = fwd.forward(golden.slice(0, 64), fwd.createCache(), { logits: 'all' });
    let maxDiff = 0;
    for (let i = 0; i < 64 * vocab; i++) maxDiff = Math.max(maxDiff, Math.abs(all[i]! - goldenLogits[i]!));
    expect(maxDiff).toBeLessThanOrEqual(1e-4);
  });
});
