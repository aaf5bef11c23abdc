import { registerBaselineCodecs } from '@ultrasketch/baselines';
import { TensorNames } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { Trainer, type TrainerOptions, makeProviders } from '../src/index.js';
import { workerThreads } from '../src/node.js';
import { randomModel, tinyConfig } from './helpers.js';

/** TrainerOptions.studentEmbedding: the student trains with the embedding as stored (e.g. 2-bit), the teacher with the float one. */
registerBaselineCodecs();
const model = randomModel(tinyConfig({ dim: 16, nHeads: 4, nKvHeads: 2, hiddenDim: 24, vocabSize: 32, seqLen: 32 }), 9);
const calib = Int32Array.from({ length: 400 }, (_, i) => (i % 29 === 0 ? 1 : (i * 5 + (i >> 2)) % 32));
const float = model.tensors.get(TensorNames.embedding)!.data;
// A coarse stand-in for a stored embedding: every value rounded to a multiple of 0.05.
const stored = float.map((v) => Math.round(v / 0.05) * 0.05);
const options = (over: Partial<TrainerOptions> = {}): TrainerOptions => ({
  teacher: model,
  providers: makeProviders(model, () => ({ kind: 'ste', options: { codec: 'binary' } })),
  calibTokens: calib,
  batch: 4,
  seqLen: 8,
  steps: 3,
  lr: 3e-3,
  seed: 1,
  ...over,
});
const losses = (t: Trainer) => {
  const out: number[] = [];
  try {
    while (t.completedSteps < t.steps) out.push(t.step().loss);
  } finally {
    t.dispose();
  }
  return out;
};

describe('student embedding as stored', () => {
  it('changes what the student computes (not the teacher), is returned by studentWeights, and workers use it too', () => {
    const plain = losses(new Trainer(options()));
    const withStored = new Trainer(options({ studentEmbedding: stored }));
    expect(withStored.studentWeights().tensors.get(TensorNames.embedding)!.data).toEqual(stored);
    const a = losses(withStored);
    expect(a[0]).not.toBe(plain[0]);
    // Two threads: the worker's student uses the stored embedding as well (same losses up to summation order).
    const b = losses(new Trainer(options({ studentEmbedding: stored, parallel: workerThreads(2, { timeoutMs: 60_000 }) })));
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThan(1e-4 * Math.abs(a[i]!));
    // The evaluation teacher keeps the float embedding: the student with the stored one is not at KL 0 to it.
    const t = new Trainer(options({ studentEmbedding: stored }));
    const e = t.evaluate([calib.slice(0, 9)]);
    t.dispose();
    expect(e.kl).toBeGreaterThan(0);
  });

  it('is part of the recipe: a checkpoint made without it is refused by a trainer with it; a wrong size is BAD_ARGUMENT', () => {
    const first = new Trainer(options());
    first.run(1);
    const state = first.state();
    first.dispose();
    const other = new Trainer(options({ studentEmbedding: stored }));
    expect(() => other.loadState(state)).toThrow(/differs in: studentEmbedding/);
    other.dispose();
    expect(() => new Trainer(options({ studentEmbedding: stored.subarray(1) }))).toThrow(/studentEmbedding has \d+ values, the model's has \d+/);
  });
});
