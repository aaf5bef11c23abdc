import { readFileSync } from 'node:fs';
import { registerAll } from '@ultrasketch/baselines';
import { ErrorCodes } from '@ultrasketch/core';
import { readSafetensors, writeSafetensors } from '@ultrasketch/format';
import { type ModelWeights, TensorNames } from '@ultrasketch/model';
import { documentTokenStream, loadModel } from '@ultrasketch/pipeline';
import { describe, expect, it } from 'vitest';
import { CHECKPOINT_VERSION, Trainer, type TrainerOptions, makeProviders } from '../src/index.js';

/**
 * Training faults (issue 18): a NaN loss stops training at that step, before the optimiser or a checkpoint
 * can take it in; the last step's losses travel in the checkpoint, so a run resumed from its final
 * checkpoint still knows them; version-1 checkpoints (without them) still load.
 */
registerAll();

const MODEL = '/work/shared/models/stories260K/stories260K.bin';
const model = loadModel(MODEL);
const calibTokens = documentTokenStream(model.tokenizer, readFileSync('/work/shared/data/tinystories/calib.txt', 'utf8').slice(0, 20_000));

const options = (over: Partial<TrainerOptions> = {}): TrainerOptions => ({
  teacher: model.weights,
  providers: makeProviders(model.weights, (_l, kind) => (kind === 'up' ? { kind: 'ste', options: { codec: 'rtn', codecOptions: { bits: 2 } } } : undefined)),
  calibTokens,
  batch: 1,
  seqLen: 16,
  steps: 4,
  lr: 1e-3,
  seed: 3,
  ...over,
});

/** The teacher with one FFN norm scaled by 1e30: finite weights, an overflowing forward pass. */
function overflowing(layer: number): ModelWeights {
  const tensors = new Map(model.weights.tensors);
  const name = TensorNames.ffnNorm(layer);
  const t = tensors.get(name)!;
  tensors.set(name, { shape: t.shape, data: t.data.map((v) => v * 1e30) });
  return { config: model.weights.config, tensors };
}

describe('a non-finite training loss', () => {
  it('an overflowing teacher stops training at step 1 with NOT_FINITE naming the teacher, step and position; no parameter moved', () => {
    const teacher = overflowing(2);
    const t = new Trainer(options({ teacher, providers: makeProviders(teacher, (_l, k) => (k === 'up' ? { kind: 'dense', options: { trainable: true } } : undefined)) }));
    const before = t.params.map((p) => p.data.slice());
    let err: unknown;
    try {
      t.step();
    } catch (e) {
      err = e;
    }
    // Named as the teacher's fault, where it appears (its NaN rows would otherwise read as KL 0 and the error
    // would only come from the gradient norm, naming neither the model nor the loss).
    expect(err).toMatchObject({
      code: ErrorCodes.NOT_FINITE,
      problem: expect.stringMatching(/^the teacher \(the float model\) gives a non-finite logit \(NaN\) at step 1, sequence 0, position 0: the training loss would be NaN/),
    });
    expect(t.completedSteps).toBe(0);
    expect(t.lastStep).toBeNull();
    expect(t.params.map((p) => p.data.slice())).toEqual(before);
  });

  it('Trainer.evaluate() against an overflowing teacher is NOT_FINITE naming the window, not KL 0', () => {
    const teacher = overflowing(0);
    const t = new Trainer(options({ teacher, providers: makeProviders(teacher, (_l, k) => (k === 'up' ? { kind: 'dense', options: { trainable: true } } : undefined)) }));
    const windows = [0, 1, 2].map((w) => calibTokens.subarray(w * 17, w * 17 + 17));
    expect(() => t.evaluate(windows)).toThrow(
      expect.objectContaining({ code: ErrorCodes.NOT_FINITE, problem: expect.stringMatching(/^the teacher \(the float model\) gives a non-finite logit \(NaN\) at evaluation, sequence 0, position 0/) }),
    );
  });

  it('with --loss ce (no teacher) the unmeasured KL and MSE are not errors', () => {
    const t = new Trainer(options({ loss: { kl: 0, mse: 0, ce: 1 }, steps: 2 }));
    const r = t.step();
    expect(Number.isFinite(r.loss)).toBe(true);
    expect(r.kl).toBeNaN();
    expect(r.mse).toBeNaN();
  });
});

describe('the last step travels in the checkpoint', () => {
  it(`state() (version ${CHECKPOINT_VERSION}) → loadState(): lastStep restored exactly, also after the final step`, () => {
    const a = new Trainer(options());
    a.run();
    const last = a.lastStep!;
    expect(last.step).toBe(4);
    const b = new Trainer(options());
    expect(b.lastStep).toBeNull();
    b.loadState(a.state(), 'a.ckpt');
    expect(b.completedSteps).toBe(4);
    expect(b.lastStep).toEqual(last);
  });

  it('unmeasured terms (NaN) survive the round trip as NaN, not 0', () => {
    const o = options({ loss: { kl: 0, mse: 0, ce: 1 }, steps: 2 });
    const a = new Trainer(o);
    a.run();
    const b = new Trainer(o);
    b.loadState(a.state());
    expect(b.lastStep!.kl).toBeNaN();
    expect(b.lastStep!.mse).toBeNaN();
    expect(b.lastStep!.ce).toBe(a.lastStep!.ce);
  });

  it('a version-1 checkpoint (no last step) still loads, with lastStep null', () => {
    const a = new Trainer(options());
    a.run(2);
    const file = readSafetensors(a.state());
    const { last: _dropped, ...meta } = file.metadata;
    const v1 = writeSafetensors(
      [...file.tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.data })),
      { ...meta, version: '1' },
    );
    const b = new Trainer(options());
    b.loadState(v1, 'v1.ckpt');
    expect(b.completedSteps).toBe(2);
    expect(b.lastStep).toBeNull();
    // …and it trains on to the same end as an uninterrupted run
    b.run();
    const straight = new Trainer(options());
    straight.run();
    expect(b.lastStep!.loss).toBe(straight.lastStep!.loss);
  });

  it('a checkpoint whose last-step record is damaged is refused, naming it', () => {
    const a = new Trainer(options());
    a.run(1);
    const file = readSafetensors(a.state());
    const bad = writeSafetensors(
      [...file.tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.data })),
      { ...file.metadata, last: JSON.stringify({ ...JSON.parse(file.metadata.last!), loss: null }) },
    );
    expect(() => new Trainer(options()).loadState(bad, 'bad.ckpt')).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_HEADER, source: 'bad.ckpt' }));
  });
});
