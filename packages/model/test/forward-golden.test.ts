import { readFileSync } from 'node:fs';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { describe, expect, it } from 'vitest';
import { LlamaForward, modelFromLlama2c } from '../src/index.js';

const shared = (p: string) => new URL(`../../../../shared/${p}`, import.meta.url);
const MODELS = [
  { name: 'stories260K', file: 'models/stories260K/stories260K.bin' },
  { name: 'stories3M', file: 'models/stories3M/stories3M-q80.bin' },
];

function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}

describe.each(MODELS)('reference forward on $name matches llama2.c', ({ name, file }) => {
  const model = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(shared(file)), file));
  const golden = readFileSync(shared(`reference/${name}/greedy_tokens.txt`), 'utf8').trim().split('\n').map(Number);
  const goldenLogits = new Float32Array(new Uint8Array(readFileSync(shared(`reference/${name}/greedy_logits.f32`))).buffer);
  const vocab = model.config.vocabSize;

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
