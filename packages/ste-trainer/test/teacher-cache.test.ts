import { mkdtempSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { registerAll } from '@ultrasketch/baselines';
import { documentTokenStream, loadModel } from '@ultrasketch/pipeline';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TeacherCache, Trainer, makeProviders } from '../src/index.js';
import { teacherCacheDir, workerThreads } from '../src/node.js';

/**
 * The teacher cache stores exact float32 teacher outputs per window: runs with a cold cache, a warm one, a
 * bounded one and a damaged one all end with byte-identical parameters to a run without it.
 */
const MODELS = '/work/shared/models';
const CALIB = '/work/shared/data/tinystories/calib.txt';
let dir = '';
beforeAll(() => {
  registerAll();
  dir = mkdtempSync(join(tmpdir(), 'ste-tcache-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const { weights, tokenizer } = loadModel(`${MODELS}/stories260K/stories260K.bin`);
const calib = documentTokenStream(tokenizer, readFileSync(CALIB, 'utf8'));

function train(cache?: TeacherCache, threads = 1) {
  const providers = makeProviders(weights, (_l, kind) => (kind === 'o' ? undefined : { kind: 'ste', options: { codec: 'binary' } }));
  const t = new Trainer({
    teacher: weights,
    providers,
    calibTokens: calib,
    batch: 3,
    seqLen: 32,
    steps: 4,
    lr: 1e-3,
    seed: 5,
    ...(cache ? { teacherCache: cache } : {}),
    ...(threads > 1 ? { parallel: workerThreads(threads) } : {}),
  });
  const losses = [0, 1, 2, 3].map(() => t.step().loss);
  const params = t.params.map((p) => Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength).toString('base64'));
  const r = { losses, params, hits: t.teacherCacheHits, misses: t.teacherCacheMisses };
  t.dispose();
  return r;
}

describe('teacher cache', () => {
  it('cold, warm, bounded and damaged caches give byte-identical training; a warm cache skips the teacher', () => {
    const plain = train();
    const cold = teacherCacheDir(join(dir, 'a'));
    const r1 = train(cold);
    expect(r1.params).toEqual(plain.params);
    expect(r1.losses).toEqual(plain.losses);
    expect([r1.hits, r1.misses]).toEqual([0, 12]);
    const files = readdirSync(join(dir, 'a')).filter((f) => f.endsWith('.tch'));
    expect(files.length).toBe(12); // 4 steps × 3 windows, 4·32·(1 + 512 + 5·64) + 20 bytes each
    expect(cold.bytes).toBe(12 * 4 * (5 + 32 + 32 * 512 + 5 * 32 * 64));

    const r2 = train(teacherCacheDir(join(dir, 'a')));
    expect(r2.params).toEqual(plain.params);
    expect(r2.losses).toEqual(plain.losses);
    expect([r2.hits, r2.misses]).toEqual([12, 0]);

    // bounded: room for 5 entries, then the run computes the rest
    const small = teacherCacheDir(join(dir, 'b'), { maxBytes: 5.5 * statSync(join(dir, 'a', files[0]!)).size });
    expect(train(small).params).toEqual(plain.params);
    expect(readdirSync(join(dir, 'b')).filter((f) => f.endsWith('.tch')).length).toBe(5);

    // 2 threads: the worker opens the same directory (workerSpec) and reads its shard's windows
    const plain2 = train(undefined, 2);
    const r4 = train(teacherCacheDir(join(dir, 'a')), 2);
    expect(r4.params).toEqual(plain2.params);
    expect(r4.misses).toBe(0); // the trainer's shard; the worker's reads are not counted here

    // a truncated entry (a torn write) is a miss, not wrong data
    truncateSync(join(dir, 'a', files[0]!), 100);
    const r3 = train(teacherCacheDir(join(dir, 'a')));
    expect(r3.params).toEqual(plain.params);
    expect(r3.misses).toBeGreaterThan(0);
  });
});
