import { readFileSync } from 'node:fs';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { type ModelWeights, modelFromLlama2c } from '../src/index.js';
import { shared } from './helpers.js';

/**
 * llama2.c's own outputs (../shared/reference) for the golden tests of the reference forward (this package's
 * forward-golden.test.ts) and of runtime-node's NodeSession (its session-golden.test.ts): the checkpoint, the
 * greedy tokens from BOS, and the f32 logits of the first positions.
 */
export { shared };

export const GOLDEN_MODELS = [
  { name: 'stories260K', file: 'models/stories260K/stories260K.bin' },
  { name: 'stories3M', file: 'models/stories3M/stories3M-q80.bin' },
];

export interface Golden {
  model: ModelWeights;
  /** The greedy token sequence llama2.c produced, starting with BOS. */
  golden: number[];
  /** Its logits, position-major (vocab per position). */
  goldenLogits: Float32Array;
  vocab: number;
}

/** The checkpoint and llama2.c's reference outputs for one of GOLDEN_MODELS. */
export function readGolden({ name, file }: { name: string; file: string }): Golden {
  const model = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(shared(file)), file));
  const golden = readFileSync(shared(`reference/${name}/greedy_tokens.txt`), 'utf8').trim().split('\n').map(Number);
  const goldenLogits = new Float32Array(new Uint8Array(readFileSync(shared(`reference/${name}/greedy_logits.f32`))).buffer);
  return { model, golden, goldenLogits, vocab: model.config.vocabSize };
}

export function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}
