import { registerBaselineCodecs } from '@ultrasketch/baselines';
import { type ModelWeights, TensorNames } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { Trainer, type TrainerOptions, makeProviders } from '../src/index.js';
import { workerThreads } from '../src/node.js';
import { randomModel, tinyConfig } from './helpers.js';

/** TrainerOptions.trainEmbedding: the student's embedding (and an untied classifier) train with the linears. */
registerBaselineCodecs();
const cfg = { dim: 16, nHeads: 4, nKvHeads: 2, hiddenDim: 24, vocabSize: 32, seqLen: 32 };
const tied = randomModel(tinyConfig({ ...cfg, tiedClassifier: true }), 19);
const untied = randomModel(tinyConfig({ ...cfg, tiedClassifier: false }), 20);
const calib = Int32Array.from({ length: 400 }, (_, i) => (i % 29 === 0 ? 1 : (i * 5 + (i >> 2)) % 32));
const options = (model: ModelWeights, over: Partial<TrainerOptions> = {}): TrainerOptions => ({
  teacher: model,
  providers: makeProviders(model, () => ({ kind: 'ste', options: { codec: 'binary' } })),
  calibTokens: calib,
  batch: 4,
  seqLen: 8,
  steps: 4,
  lr: 3e-3,
  seed: 1,
  trainEmbedding: true,
  ...over,
});
const runAll = (t: Trainer) => {
  const losses: number[] = [];
  try {
    while (t.completedSteps < t.steps) losses.push(t.step().loss);
    return { losses, student: t.studentWeights() };
  } finally {
    t.dispose();
  }
};
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

describe('a trained embedding', () => {
  for (const model of [tied, untied]) {
    const kind = model.config.tiedClassifier ? 'tied' : 'untied';
    it(`${kind}: the student's ${kind === 'tied' ? 'embedding moves' : 'embedding and classifier move'}, the teacher's do not; recorded in the recipe`, () => {
      const floatE = model.tensors.get(TensorNames.embedding)!.data.slice();
      const t = new Trainer(options(model));
      expect(t.recipe()).toMatchObject({ trainEmbedding: true, embeddingLrScale: 1 });
      const names = t.params.map((p) => p.name);
      expect(names).toContain(TensorNames.embedding);
      expect(names.includes(TensorNames.classifier)).toBe(kind === 'untied');
      const { student } = runAll(t);
      expect(maxDiff(student.tensors.get(TensorNames.embedding)!.data, floatE)).toBeGreaterThan(1e-5);
      if (kind === 'untied') {
        expect(maxDiff(student.tensors.get(TensorNames.classifier)!.data, model.tensors.get(TensorNames.classifier)!.data)).toBeGreaterThan(1e-5);
      }
      expect(model.tensors.get(TensorNames.embedding)!.data).toEqual(floatE);
      // Without it, nothing of the embedding moves and the losses differ from the second step on.
      const frozen = runAll(new Trainer(options(model, { trainEmbedding: false })));
      expect(frozen.student.tensors.get(TensorNames.embedding)!.data).toEqual(floatE);
    });

    it(`${kind}: two threads train the same embedding as one, up to summation order`, () => {
      const one = runAll(new Trainer(options(model)));
      const two = runAll(new Trainer(options(model, { parallel: workerThreads(2, { timeoutMs: 60_000 }) })));
      for (let i = 0; i < one.losses.length; i++) expect(Math.abs(one.losses[i]! - two.losses[i]!)).toBeLessThan(1e-4 * Math.abs(one.losses[i]!));
      const names = kind === 'tied' ? [TensorNames.embedding] : [TensorNames.embedding, TensorNames.classifier];
      for (const name of names) expect(maxDiff(one.student.tensors.get(name)!.data, two.student.tensors.get(name)!.data)).toBeLessThan(1e-5);
    });
  }

  it('a checkpoint resumes exactly (the graph reads the restored embedding), and one made without it is refused', () => {
    const straight = runAll(new Trainer(options(tied)));
    const first = new Trainer(options(tied));
    first.run(2);
    const state = first.state();
    first.dispose();
    const second = new Trainer(options(tied));
    second.loadState(state);
    const rest = runAll(second);
    expect(rest.losses).toEqual(straight.losses.slice(2));
    expect(rest.student.tensors.get(TensorNames.embedding)!.data).toEqual(straight.student.tensors.get(TensorNames.embedding)!.data);
    const plain = new Trainer(options(tied, { trainEmbedding: false }));
    plain.run(1);
    const plainState = plain.state();
    plain.dispose();
    const other = new Trainer(options(tied));
    expect(() => other.loadState(plainState)).toThrow(/differs in: .*trainEmbedding/);
    other.dispose();
  });

  it('its learning-rate scale must be a positive number', () => {
    for (const bad of [0, -1, Number.NaN]) expect(() => new Trainer(options(tied, { embeddingLrScale: bad }))).toThrow(/embeddingLrScale/);
  });
});
