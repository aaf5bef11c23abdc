import { registerAll } from '@ultrasketch/baselines';
import { describe, expect, it } from 'vitest';
import { Trainer, type TrainerOptions, makeProviders, shardSizes } from '../src/index.js';
import { workerThreads } from '../src/node.js';
import { randomModel, tinyConfig } from './helpers.js';
import { expectRunsClose, runToEnd, snapshot, syntheticCalib, useBuiltWorker } from './thread-fixtures.js';

/**
 * Data-parallel training over worker threads. The workers run the BUILT entry (dist/worker.js): it is
 * (re)built here when missing or older than a source file.
 */
useBuiltWorker();

registerAll();

const model = randomModel(tinyConfig({ dim: 16, nHeads: 4, nKvHeads: 2, hiddenDim: 24, vocabSize: 32, seqLen: 32 }), 5);
const calib = syntheticCalib(500, 37, 32);
const options = (over: Partial<TrainerOptions> = {}): TrainerOptions => ({
  teacher: model,
  providers: makeProviders(model, (l, kind) =>
    kind === 'o' ? { kind: 'dense' } : l === 0 ? { kind: 'ste', options: { codec: 'binary', rebuildEvery: 2 } } : { kind: 'ste', options: { codec: 'rtn', codecOptions: { bits: 2, groupSize: 8 } } },
  ),
  calibTokens: calib,
  data: 'both',
  batch: 5,
  seqLen: 8,
  steps: 6,
  lr: 3e-3,
  trainNorms: true,
  loss: { kl: 1, mse: 10, ce: 0.5 },
  seed: 3,
  ...over,
});

describe('data-parallel worker threads', () => {
  it('shards: contiguous, sizes differ by at most one, never empty', () => {
    expect(shardSizes(5, 2)).toEqual([3, 2]);
    expect(shardSizes(8, 3)).toEqual([3, 3, 2]);
    expect(shardSizes(2, 4)).toEqual([1, 1]);
    expect(shardSizes(4, 1)).toEqual([4]);
  });

  it('3 threads: deterministic, equal to 1 thread up to float summation order, resumable exactly', () => {
    const run = (threads: number) => runToEnd(options(threads > 1 ? { parallel: workerThreads(threads, { timeoutMs: 60_000 }) } : {}));
    const one = run(1);
    const a = run(3);
    const b = run(3);
    expect(a.params).toEqual(b.params);
    expect(a.losses).toEqual(b.losses);
    expectRunsClose(a, one, 1e-4);

    // resume with threads: 3 + 3 steps equals 6 straight
    const first = new Trainer(options({ parallel: workerThreads(3, { timeoutMs: 60_000 }) }));
    first.run(3);
    const state = first.state();
    first.dispose();
    const second = new Trainer(options({ parallel: workerThreads(3, { timeoutMs: 60_000 }) }));
    second.loadState(state);
    second.run();
    expect(snapshot(second)).toEqual(a.params);
    second.dispose();
    // a checkpoint of another thread count is refused
    const single = new Trainer(options());
    expect(() => single.loadState(state)).toThrow(/differs in: threads/);
  });

  it('a worker error surfaces as a typed error (here: a teacher tensor withheld from the workers)', () => {
    const inner = workerThreads(2);
    const withholding = {
      threads: 2,
      create: (s: Parameters<typeof inner.create>[0]) =>
        inner.create({ ...s, teacher: new Map([...s.teacher].filter(([k]) => !k.includes('norm'))) }),
    };
    expect(() => new Trainer(options({ parallel: withholding }))).toThrow(/a training worker failed: worker: teacher tensor .* missing/);
  });

  it('a worker that stops answering is a typed error naming its counters once it makes no progress for timeoutMs', () => {
    process.env.ULTRASKETCH_TEST_STALL_WORKER = '1';
    let t: Trainer;
    try {
      t = new Trainer(options({ parallel: workerThreads(2, { timeoutMs: 400 }) }));
    } finally {
      delete process.env.ULTRASKETCH_TEST_STALL_WORKER;
    }
    const t0 = performance.now();
    expect(() => t.step()).toThrow(/training worker 1 made no progress for 400 ms during a training step .*step 1; worker counters: job 1, done 0, ready 1, ops 0/);
    expect(performance.now() - t0).toBeLessThan(20_000);
    t.dispose();
  });
});
