import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes } from '@ultrasketch/core';
import { readBundle } from '@ultrasketch/format';
import { TensorNames } from '@ultrasketch/model';
import { temporaryCheckpointPath } from '@ultrasketch/ste-trainer/node';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CHECKPOINT_FILE,
  type LoadedModel,
  type TrainingSection,
  compress,
  loadModel,
  removeStaleTemporaries,
  temporaryPathFor,
  temporaryWriterPid,
  testKillPoint,
  validateFinetune,
} from '../src/index.js';

/**
 * Training faults (issue 18): temporary files of killed runs are removed on the next start (only ours, only
 * of dead writers); a resumed run that had no steps left records the same `training.final` as an
 * uninterrupted one; `resume` without a checkpoint is an error when the caller requires one; a finetuning
 * flag that the codec's training does not use is refused before encoding; a NaN training loss stops before a
 * checkpoint or a bundle records it.
 */
const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL_PATH = shared('models/stories260K/stories260K.bin');
const model = loadModel(MODEL_PATH);
const calibText = readFileSync(shared('data/tinystories/calib.txt'), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'usk-training-faults-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The pid of a process that has exited (so no live process has it, barring reuse within this test). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}
const HEX = 'a1b2c3d4e5f6';

describe('removeStaleTemporaries', () => {
  it('removes exactly the temporaries of this output name whose writer is dead', () => {
    const d = join(dir, 'stale');
    mkdirSync(d);
    const dead = deadPid();
    const live = process.ppid; // the test runner: alive for the whole test
    const out = join(d, 'out.usk');
    const files = {
      dead: `out.usk.tmp-${dead}-${HEX}`,
      mine: `out.usk.tmp-${process.pid}-${HEX}`, // an earlier process with this pid: no write of ours is in flight
      live: `out.usk.tmp-${live}-${HEX}`,
      otherName: `other.usk.tmp-${dead}-${HEX}`,
      prefixName: `out.usk.bak.tmp-${dead}-${HEX}`,
      badHex: `out.usk.tmp-${dead}-xyz`,
      shortHex: `out.usk.tmp-${dead}-abc`,
      noPid: `out.usk.tmp--${HEX}`,
      output: 'out.usk',
    };
    for (const f of Object.values(files)) writeFileSync(join(d, f), 'x');
    mkdirSync(join(d, `out.usk.tmp-${dead}-bbbbbbbbbbbb`)); // not a file: not ours
    const removed = removeStaleTemporaries(out);
    expect(removed.sort()).toEqual([join(d, files.dead), join(d, files.mine)].sort());
    expect(readdirSync(d).sort()).toEqual(
      [files.live, files.otherName, files.prefixName, files.badHex, files.shortHex, files.noPid, files.output, `out.usk.tmp-${dead}-bbbbbbbbbbbb`].sort(),
    );
    expect(removeStaleTemporaries(join(dir, 'no-such-dir', 'x.usk'))).toEqual([]);
  });

  it('knows the names both writers use: the bundle (temporaryPathFor) and the checkpoint (temporaryCheckpointPath)', () => {
    const base = (p: string) => p.slice(p.lastIndexOf('/') + 1);
    expect(temporaryWriterPid(base(temporaryPathFor(join(dir, 'm.usk'))), 'm.usk')).toBe(process.pid);
    expect(temporaryWriterPid(base(temporaryCheckpointPath(join(dir, CHECKPOINT_FILE))), CHECKPOINT_FILE)).toBe(process.pid);
    expect(temporaryWriterPid(`m.usk.tmp-12-${HEX}`, 'other.usk')).toBeNull();
  });

  it('compress() removes stale temporaries of its output and of its checkpoint when it starts', async () => {
    const d = join(dir, 'compress-clean');
    const ck = join(d, 'ck');
    mkdirSync(ck, { recursive: true });
    const dead = deadPid();
    const out = join(d, 'b.usk');
    writeFileSync(`${out}.tmp-${dead}-${HEX}`, 'partial bundle');
    writeFileSync(join(ck, `${CHECKPOINT_FILE}.tmp-${dead}-${HEX}`), 'partial checkpoint');
    await compress({ model, codec: 'rtn', codecOptions: { bits: 2 }, output: out, finetune: { steps: 1, batch: 1, seq: 8, calibText, checkpointDir: ck } });
    expect(readdirSync(d).sort()).toEqual(['b.usk', 'ck']);
    expect(readdirSync(ck)).toEqual([CHECKPOINT_FILE]);
  });
});

describe('resume', () => {
  const ft = { steps: 3, batch: 1, seq: 16, lr: 1e-3, calibText, calibSource: 'calib.txt', checkpointEvery: 1 };
  const base = { model, codec: 'rtn', codecOptions: { bits: 2 } } as const;

  it('a run resumed from its final checkpoint (killed before the bundle) records the same training.final', async () => {
    const ck = join(dir, 'final-ck');
    const straight = await compress({ ...base, finetune: { ...ft, checkpointDir: ck } });
    expect(straight.report.training!.final).not.toBeNull();
    // The checkpoint now holds step 3 of 3: resuming takes no step, as after a kill during the bundle write.
    const resumed = await compress({ ...base, finetune: { ...ft, checkpointDir: ck, resume: true, requireCheckpoint: true } });
    expect(resumed.report.training!.final).toEqual(straight.report.training!.final);
    const a = readBundle(straight.bytes);
    const b = readBundle(resumed.bytes);
    expect(Buffer.from(resumed.bytes.subarray(b.file.dataOffset)).equals(Buffer.from(straight.bytes.subarray(a.file.dataOffset)))).toBe(true);
    expect((b.sections.training as TrainingSection).final).toEqual((a.sections.training as TrainingSection).final);
  });

  it('--loss ce: the unmeasured KL and MSE are stored as null, never NaN', async () => {
    const r = await compress({ ...base, finetune: { steps: 1, batch: 1, seq: 16, calibText, loss: 'ce' } });
    const final = r.report.training!.final!;
    expect(final.kl).toBeNull();
    expect(final.mse).toBeNull();
    expect(Number.isFinite(final.ce)).toBe(true);
  });

  it('resume with requireCheckpoint and no checkpoint: E_FILE_NOT_FOUND naming it, before any encoding', async () => {
    const ck = join(dir, 'empty-ck');
    let encoded = 0;
    const err = await compress({ ...base, onProgress: () => encoded++, finetune: { ...ft, checkpointDir: ck, resume: true, requireCheckpoint: true } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: ErrorCodes.FILE_NOT_FOUND, source: join(ck, CHECKPOINT_FILE), hint: expect.stringMatching(/drop --resume to start fresh/) });
    expect(encoded).toBe(0);
    expect(existsSync(ck)).toBe(false);
  });
});

describe('finetuning flags the codec does not use are refused before encoding', () => {
  const refused = async (codec: string, codecOptions: Record<string, unknown>, extra: Record<string, unknown>, flag: string, problem: RegExp) => {
    let encoded = 0;
    // 'keep' only where stories260K's small matrices need it (it defers the --train-dense check to finetune()).
    const smallMatrix = codec === 'rtn' ? 'error' : 'keep';
    const err = await compress({ model, codec, codecOptions, smallMatrix, onProgress: () => encoded++, finetune: { steps: 1, batch: 1, seq: 8, calibText, ...extra } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: ErrorCodes.BAD_ARGUMENT, source: flag, problem: expect.stringMatching(problem) });
    expect(encoded).toBe(0);
  };

  it('--smooth-k with rtn, with sketch, and with littlebit trained by --train-mode ste', async () => {
    await refused('rtn', { bits: 2 }, { smoothK: 20 }, '--smooth-k', /^codec rtn trains through the 'ste' provider/);
    await refused('sketch', { bpw: 1 }, { smoothK: 20 }, '--smooth-k', /^codec sketch trains through the 'sketch-states' provider/);
    await refused('littlebit', { bpw: 1 }, { smoothK: 20, mode: 'ste' }, '--smooth-k', /^codec littlebit trains through the 'ste' provider/);
    expect(() => validateFinetune({ steps: 1, calibText, smoothK: 20 }, 'littlebit')).not.toThrow();
  });

  it('--train-dense when the codec compresses every linear; --checkpoint-every without --checkpoint-dir', async () => {
    await refused('rtn', { bits: 2 }, { trainDense: true }, '--train-dense', /^codec rtn compresses every linear/);
    await refused('rtn', { bits: 2 }, { checkpointEvery: 2 }, '--checkpoint-every', /^needs --checkpoint-dir/);
    expect(() => validateFinetune({ steps: 1, calibText, checkpointEvery: 2, checkpointDir: dir })).not.toThrow();
  });
});

describe('a NaN training loss', () => {
  it('stops training with E_NOT_FINITE naming the step; no checkpoint and no bundle record it', async () => {
    const tensors = new Map(model.weights.tensors);
    const name = TensorNames.ffnNorm(1);
    tensors.set(name, { shape: tensors.get(name)!.shape, data: tensors.get(name)!.data.map((v) => v * 1e30) });
    const broken: LoadedModel = { ...model, weights: { config: model.weights.config, tensors } };
    const ck = join(dir, 'nan-ck');
    const out = join(dir, 'nan.usk');
    await expect(
      compress({ model: broken, codec: 'rtn', codecOptions: { bits: 2 }, output: out, finetune: { steps: 3, batch: 1, seq: 8, calibText, checkpointDir: ck, checkpointEvery: 1 } }),
    ).rejects.toMatchObject({ code: ErrorCodes.NOT_FINITE, problem: expect.stringMatching(/non-finite logit \(NaN\) at step 1, .*the training loss would be NaN/) });
    expect(existsSync(join(ck, CHECKPOINT_FILE))).toBe(false);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(ck)).toEqual([]);
  });
});

describe('the kill hook is test-only and strict', () => {
  it('unset: no crash point; a malformed value is refused rather than ignored', () => {
    expect(testKillPoint({})).toBeNull();
    expect(testKillPoint({ ULTRASKETCH_TEST_KILL: 'step:3' })).toEqual({ at: 'step', step: 3 });
    expect(testKillPoint({ ULTRASKETCH_TEST_KILL: 'checkpoint:2' })).toEqual({ at: 'checkpoint', step: 2 });
    expect(testKillPoint({ ULTRASKETCH_TEST_KILL: 'bundle' })).toEqual({ at: 'bundle' });
    expect(() => testKillPoint({ ULTRASKETCH_TEST_KILL: 'step:0' })).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_ARGUMENT }));
  });
});
