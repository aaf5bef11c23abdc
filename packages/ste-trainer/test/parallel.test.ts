import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { registerAll } from '@ultrasketch/baselines';
import { beforeAll, describe, expect, it } from 'vitest';
import { Trainer, type TrainerOptions, makeProviders, shardSizes } from '../src/index.js';
import { workerThreads } from '../src/node.js';
import { randomModel, tinyConfig } from './helpers.js';

/**
 * Data-parallel training over worker threads. The workers run the BUILT entry (dist/worker.js): it is
 * (re)built here when missing or older than a source file.
 */
const PKG = fileURLToPath(new URL('..', import.meta.url));

beforeAll(() => {
  const worker = `${PKG}dist/worker.js`;
  const newest = Math.max(...readdirSync(`${PKG}src`).map((f) => statSync(`${PKG}src/${f}`).mtimeMs));
  if (!existsSync(worker) || statSync(worker).mtimeMs < newest) {
    execFileSync('npx', ['tsup'], { cwd: PKG, stdio: 'ignore' });
  }
}, 300_000);

registerAll();

const model = randomModel(tinyConfig({ dim: 16, nHeads: 4, nKvHeads: 2, hiddenDim: 24, vocabSize: 32, seqLen: 32 }), 5);
const calib = Int32Array.from({ length: 500 }, (_, i) => (i % 37 === 0 ? 1 : (i * 7 + (i >> 3)) % 32));
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
const snapshot = (t: Trainer) => t.params.map((p) => p.data.slice());

describe('data-parallel worker threads', () => {
  it('shards: contiguous, sizes differ by at most one, never empty', () => {
    expect(shardSizes(5, 2)).toEqual([3, 2]);
    expect(shardSizes(8, 3)).toEqual([3, 3, 2]);
    expect(shardSizes(2, 4)).toEqual([1, 1]);
    expect(shardSizes(4, 1)).toEqual([4]);
  });

  it('3 threads: deterministic, equal to 1 thread up to float summation order, resumable exactly', () => {
    const run = (threads: number) => {
      const t = new Trainer(options(threads > 1 ? { parallel: workerThreads(threads, { timeoutMs: 60_000 }) } : {}));
      const losses: number[] = [];
      try {
        while (t.completedSteps < t.steps) losses.push(t.step().loss);
        return { params: snapshot(t), losses };
      } finally {
        t.dispose();
      }
    };
    const one = run(1);
    const a = run(3);
    const b = run(3);
    expect(a.params).toEqual(b.params);
    expect(a.losses).toEqual(b.losses);
    for (let i = 0; i < one.losses.length; i++) expect(Math.abs(a.losses[i]! - one.losses[i]!)).toBeLessThan(1e-4 * Math.abs(one.losses[i]!));
    let num = 0;
    let den = 0;
    one.params.forEach((p, k) => {
      for (let i = 0; i < p.length; i++) {
        num += (p[i]! - a.params[k]![i]!) ** 2;
        den += p[i]! ** 2;
      }
    });
    expect(Math.sqrt(num / den)).toBeLessThan(1e-4);

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
