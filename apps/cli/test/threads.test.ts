/**
 * `--threads N` / ULTRASKETCH_THREADS on the BUILT command with real models: the same greedy tokens whatever the
 * thread count (threads split rows, never change results), the count and the memory report in the JSON, and a
 * bad environment value as a typed error naming the variable.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HAVE_SHARED, MODELS, cli, ensureBuilt, parseOneObject } from './helpers.js';

let tmp: string;
let bundle: string;
beforeAll(() => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'ultrasketch-threads-'));
  bundle = join(tmp, 'binary.usk');
  if (HAVE_SHARED) {
    const r = cli(['compress', MODELS.stories260K, '--codec', 'binary', '--small-matrix', 'keep', '-o', bundle, '-q']);
    if (r.code !== 0) throw new Error(`compress failed: ${r.stderr}`);
  }
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

type Gen = { tokens: number[]; threads: number; memory: { weightsBytes: number; kvCacheBytes: number; scratchBytes: number; fileBytes: number; bundleTensorBytes: number | null; threads: number } };

describe.runIf(HAVE_SHARED)('--threads', () => {
  it.each([
    ['checkpoint', () => MODELS.stories260K],
    ['bundle', () => bundle],
  ])('generate on a %s: the same tokens with 1 and 2 threads, and the memory held', (_kind, path) => {
    const args = ['generate', path(), '--temperature', '0', '--steps', '40', '--json', '-q'];
    const one = cli([...args, '--threads', '1']);
    const two = cli([...args], { ULTRASKETCH_THREADS: '2' });
    expect(one.code, one.stderr).toBe(0);
    expect(two.code, two.stderr).toBe(0);
    const a = parseOneObject(one.stdout) as unknown as Gen;
    const b = parseOneObject(two.stdout) as unknown as Gen;
    expect(a.threads).toBe(1);
    expect(b.threads).toBe(2);
    expect(b.tokens).toEqual(a.tokens);
    expect(a.memory.weightsBytes).toBeGreaterThan(0);
    expect(a.memory.kvCacheBytes).toBeGreaterThan(0);
    if (a.memory.bundleTensorBytes !== null) {
      // stories260K's 64-wide matrices make the kernels' fixed per-linear extras (f32 row scales, 16-byte
      // alignment) ~11% of its 100 KB; on stories3M it is within 10% (pipeline threads.test.ts)
      expect(a.memory.weightsBytes / a.memory.bundleTensorBytes).toBeGreaterThan(0.9);
      expect(a.memory.weightsBytes / a.memory.bundleTensorBytes).toBeLessThan(1.15);
    }
  });

  it('bench --threads 2 reports the thread count and both sessions\' memory', () => {
    const r = cli(['bench', bundle, '--baseline', MODELS.stories260K, '--threads', '2', '--tokens', '3', '--runs', '1', '--warmup', '0', '--json', '-q']);
    expect(r.code, r.stderr).toBe(0);
    const out = parseOneObject(r.stdout) as { settings: { threads: number }; memory: { model: Gen['memory']; baseline: Gen['memory'] } };
    expect(out.settings.threads).toBe(2);
    expect(out.memory.model.threads).toBe(2);
    expect(out.memory.baseline.threads).toBe(2);
    expect(out.memory.model.weightsBytes).toBeLessThan(out.memory.baseline.weightsBytes);
  });

  it('a bad ULTRASKETCH_THREADS is a typed error naming it; --threads 0 is a usage error', () => {
    const bad = cli(['generate', MODELS.stories260K, '--temperature', '0', '--steps', '4', '-q'], { ULTRASKETCH_THREADS: 'many' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/E_BAD_ARGUMENT/);
    expect(bad.stderr).toMatch(/ULTRASKETCH_THREADS/);
    const zero = cli(['generate', MODELS.stories260K, '--threads', '0', '-q']);
    expect(zero.code).toBe(2);
  });
});
