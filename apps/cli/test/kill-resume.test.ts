import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadBundle } from '@ultrasketch/pipeline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, HAVE_SHARED, MODELS, ROOT, cli, ensureBuilt, parseSafetensorsSpec } from './helpers.js';

/**
 * kill -9 during `compress --finetune-steps` (issue 18, done-when 4). The child process SIGKILLs itself at a
 * chosen moment through the test-only hook ULTRASKETCH_TEST_KILL (packages/pipeline/src/test-kill.ts) — right
 * after a step, in the middle of a checkpoint write, in the middle of the bundle write — moments an outside
 * `kill -9` only hits by luck. Then the same command runs again with --resume. Every time: the -o file is
 * either absent or a complete, loadable bundle; after the next run no temporary file is left anywhere; the
 * resumed bundle's tensors are byte-identical to an uninterrupted run's, with the same `training.final`.
 */
let tmp = '';
beforeAll(() => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'ultrasketch-kill-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const M = MODELS.stories260K;
const STEPS = 6;
const args = (dir: string) => [
  'compress', M, '--codec', 'rtn', '--bits', '2',
  '--finetune-steps', String(STEPS), '--batch', '1', '--seq', '16',
  '--checkpoint-dir', join(dir, 'ck'), '--checkpoint-every', '2',
  '-o', join(dir, 'out.usk'), '-q',
];

/** Run the command with a crash point; it must die of SIGKILL. */
function runKilled(dir: string, point: string): void {
  const r = spawnSync(process.execPath, [CLI, ...args(dir)], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, ULTRASKETCH_DEBUG: '', ULTRASKETCH_TEST_KILL: point },
  });
  expect(r.signal, `${point}: exit ${r.status}\n${r.stderr}`).toBe('SIGKILL');
}

/** Every file (not directory) under dir, by name, recursively. */
function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [e.name]));
}
const temporaries = (dir: string) => files(dir).filter((f) => f.includes('.tmp-'));

/** The -o file after a kill: absent, or complete (it loads, every checksum verified). */
function absentOrComplete(dir: string): void {
  const out = join(dir, 'out.usk');
  if (existsSync(out)) expect(() => loadBundle(out)).not.toThrow();
}

/** The data area of a bundle (every tensor) and its training section (stored without the wall time, which only the report carries). */
function comparable(path: string): { data: Buffer; training: Record<string, unknown> } {
  const bytes = readFileSync(path);
  const spec = parseSafetensorsSpec(bytes);
  const training = JSON.parse(spec.metadata.training!) as Record<string, unknown>;
  return { data: bytes.subarray(8 + spec.headerBytes), training };
}

describe.skipIf(!HAVE_SHARED)('kill -9 during compress --finetune-steps, then --resume', () => {
  let straight: ReturnType<typeof comparable>;
  beforeAll(() => {
    const dir = join(tmp, 'straight');
    mkdirSync(dir);
    const r = cli(args(dir));
    expect(r.code, r.stderr).toBe(0);
    straight = comparable(join(dir, 'out.usk'));
    expect((straight.training as { final: unknown }).final).toMatchObject({ loss: expect.any(Number) });
  });

  function resumeAndCompare(dir: string): void {
    const r = cli([...args(dir), '--resume']);
    expect(r.code, r.stderr).toBe(0);
    expect(temporaries(dir)).toEqual([]);
    expect(() => loadBundle(join(dir, 'out.usk'))).not.toThrow();
    const resumed = comparable(join(dir, 'out.usk'));
    expect(resumed.data.equals(straight.data)).toBe(true);
    expect(resumed.training).toEqual(straight.training);
  }

  it('killed right after step 3 (last checkpoint: step 2)', () => {
    const dir = join(tmp, 'step3');
    mkdirSync(dir);
    runKilled(dir, 'step:3');
    absentOrComplete(dir);
    expect(existsSync(join(dir, 'out.usk'))).toBe(false);
    expect(files(join(dir, 'ck'))).toEqual(['finetune.ckpt']);
    resumeAndCompare(dir);
  });

  it('killed in the middle of writing the checkpoint of step 4: the half-written temporary file is removed on resume', () => {
    const dir = join(tmp, 'ckpt4');
    mkdirSync(dir);
    runKilled(dir, 'checkpoint:4');
    absentOrComplete(dir);
    const left = temporaries(join(dir, 'ck'));
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^finetune\.ckpt\.tmp-\d+-[0-9a-f]{12}$/);
    resumeAndCompare(dir);
  });

  it('killed in the middle of writing the bundle, after the last checkpoint: no partial -o, and the resumed bundle keeps training.final', () => {
    const dir = join(tmp, 'bundle');
    mkdirSync(dir);
    runKilled(dir, 'bundle');
    expect(existsSync(join(dir, 'out.usk'))).toBe(false);
    const left = temporaries(dir);
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^out\.usk\.tmp-\d+-[0-9a-f]{12}$/);
    // The checkpoint holds the final step: the resumed run takes no step, yet records the same final losses.
    resumeAndCompare(dir);
  });

  it('killed before the first checkpoint: --resume says there is nothing to resume (nothing written); a fresh run completes', () => {
    const dir = join(tmp, 'step1');
    mkdirSync(dir);
    runKilled(dir, 'step:1');
    const r = cli([...args(dir), '--resume']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/E_FILE_NOT_FOUND.*finetune\.ckpt: --resume: there is no checkpoint to resume from \(drop --resume to start fresh/);
    expect(existsSync(join(dir, 'out.usk'))).toBe(false);
    const fresh = cli(args(dir));
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(temporaries(dir)).toEqual([]);
    const again = comparable(join(dir, 'out.usk'));
    expect(again.data.equals(straight.data)).toBe(true);
    expect(again.training).toEqual(straight.training);
  });

  it('a crash point the hook does not know is refused, not ignored', () => {
    const dir = join(tmp, 'bad-hook');
    mkdirSync(dir);
    const r = cli(args(dir), { ULTRASKETCH_TEST_KILL: 'sometime' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ULTRASKETCH_TEST_KILL=sometime is not step:N, checkpoint:N or bundle/);
  });
});
