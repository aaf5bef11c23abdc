import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes } from '@ultrasketch/core';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { Trainer, makeProviders } from '../src/index.js';
import { runWithCheckpoints, saveCheckpoint, temporaryCheckpointPath } from '../src/node.js';
import { randomModel, tinyConfig } from './helpers.js';

/**
 * A checkpoint write that the operating system refuses is a typed error naming the checkpoint (a full disk is
 * E_NO_SPACE — it used to end in "this looks like a bug"), the temporary file is removed and the previous
 * checkpoint is untouched. The disk is made "full" by failing node:fs writeSync with the errno a full disk gives
 * (a real full disk needs a mount, which tests cannot assume).
 */
const fault = vi.hoisted(() => ({ write: null as string | null, open: null as string | null }));
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const errno = (code: string, syscall: string) => Object.assign(new Error(`${code}: mocked ${syscall}`), { code, syscall });
  return {
    ...fs,
    writeSync: (...args: Parameters<typeof fs.writeSync>) => {
      if (fault.write) throw errno(fault.write, 'write');
      return fs.writeSync(...args);
    },
    openSync: (...args: Parameters<typeof fs.openSync>) => {
      if (fault.open && String(args[0]).includes('.tmp-')) throw errno(fault.open, 'open');
      return fs.openSync(...args);
    },
  };
});

const dir = mkdtempSync(join(tmpdir(), 'ste-ckpt-write-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  fault.write = null;
  fault.open = null;
});

const model = randomModel(tinyConfig(), 7);
const trainer = (steps = 4) =>
  new Trainer({
    teacher: model,
    providers: makeProviders(model, (_l, k) => (k === 'up' ? { kind: 'dense', options: { trainable: true } } : undefined)),
    calibTokens: Int32Array.from({ length: 300 }, (_, i) => (i * 5 + 1) % 11),
    batch: 1,
    seqLen: 8,
    steps,
    seed: 1,
  });
const leftovers = () => readdirSync(dir).filter((f) => f.includes('.tmp-'));

describe('checkpoint writes that the system refuses', () => {
  it('a full disk (ENOSPC) is E_NO_SPACE naming the checkpoint; no temporary file; the old checkpoint is intact', () => {
    const path = join(dir, 'full.ckpt');
    const t = trainer();
    t.run(1);
    saveCheckpoint(t, path);
    const before = readFileSync(path);
    t.run(2);
    fault.write = 'ENOSPC';
    expect(() => saveCheckpoint(t, path)).toThrow(expect.objectContaining({ code: ErrorCodes.NO_SPACE, source: path, problem: expect.stringMatching(/no space left/) }));
    expect(leftovers()).toEqual([]);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it('a quota (EDQUOT) during the periodic checkpoint of runWithCheckpoints stops the run with E_NO_SPACE', async () => {
    const path = join(dir, 'quota.ckpt');
    const t = trainer();
    let steps = 0;
    await expect(
      runWithCheckpoints(t, {
        path,
        every: 2,
        handleSignals: false,
        onStep: () => {
          if (++steps === 2) fault.write = 'EDQUOT';
        },
      }),
    ).rejects.toMatchObject({ code: ErrorCodes.NO_SPACE, source: path });
    expect(leftovers()).toEqual([]);
  });

  it('a directory the user cannot write to (EACCES) is E_PERMISSION_DENIED with a fix', () => {
    const path = join(dir, 'denied.ckpt');
    fault.open = 'EACCES';
    expect(() => saveCheckpoint(trainer(), path)).toThrow(
      expect.objectContaining({ code: ErrorCodes.PERMISSION_DENIED, source: path, problem: expect.stringMatching(/cannot create: permission denied/) }),
    );
    expect(leftovers()).toEqual([]);
  });

  it('temporary names are `${path}.tmp-<pid>-<12 hex>` (the pattern the pipeline cleans up after a kill)', () => {
    const p = join(dir, 'x.ckpt');
    expect(temporaryCheckpointPath(p)).toMatch(new RegExp(`^${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.tmp-${process.pid}-[0-9a-f]{12}$`));
  });
});
