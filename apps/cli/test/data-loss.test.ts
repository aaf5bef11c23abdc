/**
 * The command never destroys a user's file, never hangs on a special file, and ends every file-system failure
 * in a typed error (issue 18), as a user runs it: the built dist/cli.js, spawned, on real copies of
 * stories260K's checkpoint and tokenizer (and of the TinyStories texts) in a temporary directory. After every
 * refused command the inputs are byte-identical and nothing was written.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { report } from '../src/main.js';
import { IS_ROOT, loudSkip, mountTmpfs, unreadableFile } from '../../../packages/pipeline/test/fs-faults.js';
import { CALIB_TEXT, CLI, EVAL_TEXT, HAVE_SHARED, MODELS, ROOT, TOKENIZERS, ensureBuilt } from './helpers.js';

let tmp: string;
let model: string;
let tokenizer: string;
let calib: string;
let evalText: string;
const mounts: Array<{ unmount(): void }> = [];

beforeAll(() => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'ultrasketch-data-loss-'));
  model = join(tmp, 'stories260K.bin');
  tokenizer = join(tmp, 'tok512.bin');
  calib = join(tmp, 'my-calib.txt');
  evalText = join(tmp, 'my-eval.txt');
});
// Fresh real copies before every test, writable like a user's own files (../shared is read-only): a build that
// does destroy an input fails the test that destroyed it, not every test after it.
beforeEach(() => {
  if (!HAVE_SHARED) return;
  for (const [from, to] of [
    [MODELS.stories260K, model],
    [TOKENIZERS.stories260K, tokenizer],
    [CALIB_TEXT, calib],
    [EVAL_TEXT, evalText],
  ] as const) {
    rmSync(to, { force: true });
    copyFileSync(from, to);
    chmodSync(to, 0o644);
  }
});
afterAll(() => {
  for (const m of mounts) m.unmount();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** `ultrasketch <args>` with a time limit: a command that blocks on a FIFO must fail the test, not hang it. */
function run(args: string[], timeoutMs = 60_000): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, ULTRASKETCH_DEBUG: '' },
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
  });
  if (r.signal === 'SIGKILL') throw new Error(`ultrasketch ${args.join(' ')} was still running after ${timeoutMs} ms (blocked?)`);
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const tmpLeftovers = (dir: string) => readdirSync(dir).filter((f) => f.includes('.tmp-'));

/** Run a command that must be refused with `code`: exit 1, the typed code, no bug message, inputs unchanged. */
function expectRefused(args: string[], code: string, untouched: string[]): string {
  const before = untouched.map(sha);
  const r = run(args);
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(new RegExp(`^error \\[${code}\\]: `, 'm'));
  expect(r.stderr).not.toContain('looks like a bug');
  expect(untouched.map(sha)).toEqual(before);
  expect(tmpLeftovers(tmp)).toEqual([]);
  return r.stderr;
}

const rtn8 = () => ['compress', model, '--codec', 'rtn', '--bits', '8'];

describe.skipIf(!HAVE_SHARED)('compress -o never replaces an input', () => {
  it.each([
    ['the checkpoint', () => model, [], 'the bundle would overwrite the checkpoint'],
    ['its tokenizer (found next to it)', () => tokenizer, [], 'the bundle would overwrite the tokenizer'],
    ['its tokenizer (--tokenizer)', () => tokenizer, () => ['--tokenizer', tokenizer], 'the bundle would overwrite the tokenizer'],
    ['the --calib file', () => calib, () => ['--calib', calib], 'the bundle would overwrite the calibration text (--calib)'],
    ['the --eval-text file', () => evalText, () => ['--eval-text', evalText], 'the bundle would overwrite the evaluation text (--eval-text)'],
  ] as Array<[string, () => string, string[] | (() => string[]), string]>)('-o %s: E_OUTPUT_IS_INPUT, exit 1, the file byte-identical', (_what, out, extra, message) => {
    const args = typeof extra === 'function' ? extra() : extra;
    const stderr = expectRefused([...rtn8(), ...args, '-o', out()], 'E_OUTPUT_IS_INPUT', [model, tokenizer, calib, evalText]);
    expect(stderr).toContain(message);
    expect(stderr).toContain(out());
  });

  it('-o a symbolic link to the checkpoint, a path through a linked directory, or a hard link: refused, links intact', () => {
    const link = join(tmp, 'link.usk');
    symlinkSync(model, link);
    const dirLink = join(tmp, 'same-dir');
    symlinkSync(tmp, dirLink);
    const hard = join(tmp, 'hard.usk');
    linkSync(model, hard);
    try {
      for (const out of [link, join(dirLink, 'stories260K.bin'), join(tmp, 'sub', '..', 'stories260K.bin'), hard]) {
        if (out.includes('sub')) mkdirSync(join(tmp, 'sub'), { recursive: true });
        const stderr = expectRefused([...rtn8(), '-o', out], 'E_OUTPUT_IS_INPUT', [model]);
        expect(stderr).toContain(`the bundle would overwrite the checkpoint ${model}`);
      }
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      // the hard link still shares the checkpoint's inode (it was not replaced by a new file)
      expect(lstatSync(hard).ino).toBe(lstatSync(model).ino);
    } finally {
      for (const p of [link, dirLink, hard, join(tmp, 'sub')]) rmSync(p, { recursive: true, force: true });
    }
  });

  it('-o a file already in --checkpoint-dir (read back by --resume): refused before any training', () => {
    const ckdir = join(tmp, 'ckpt');
    mkdirSync(ckdir, { recursive: true });
    const state = join(ckdir, 'finetune.ckpt');
    writeFileSync(state, 'training state the user wants back');
    try {
      const stderr = expectRefused(
        [...rtn8(), '--finetune-steps', '1', '--checkpoint-dir', ckdir, '--resume', '--calib', calib, '-o', state],
        'E_OUTPUT_IS_INPUT',
        [state, model],
      );
      expect(stderr).toContain('training checkpoint file (--checkpoint-dir)');
    } finally {
      rmSync(ckdir, { recursive: true, force: true });
    }
  });

  it('a --checkpoint-dir that is a regular file: E_EXISTS before any training, the file untouched', () => {
    const file = join(tmp, 'ckpt-file');
    writeFileSync(file, 'not a directory');
    try {
      const stderr = expectRefused([...rtn8(), '--finetune-steps', '1', '--checkpoint-dir', file, '--calib', calib, '-o', join(tmp, 'ft.usk')], 'E_EXISTS', [file]);
      expect(stderr).toContain('--checkpoint-dir must be a directory');
      expect(existsSync(join(tmp, 'ft.usk'))).toBe(false);
    } finally {
      rmSync(file);
    }
  });

  it('a new output next to the inputs still works (the check refuses only inputs)', () => {
    const out = join(tmp, 'ok.usk');
    const r = run([...rtn8(), '--calib', calib, '--eval-text', evalText, '-o', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(out)).toBe(true);
    rmSync(out);
  });
});

describe.skipIf(!HAVE_SHARED)('sweep --out-dir', () => {
  const sweep = (outDir: string, extra: string[] = []) => ['sweep', model, '--codecs', 'rtn:8', '--eval-windows', '1', '--eval-window', '32', '--out-dir', outDir, ...extra];

  it('an --out-dir that is a regular file: E_EXISTS, exit 1, the file untouched', () => {
    const file = join(tmp, 'results');
    writeFileSync(file, 'my notes');
    try {
      const stderr = expectRefused(sweep(file, ['--eval-text', evalText]), 'E_EXISTS', [file]);
      expect(stderr).toContain('--out-dir must be a directory, but it is a regular file');
    } finally {
      rmSync(file);
    }
  });

  it('an input named like a file the sweep writes into --out-dir (sweep.json, a kept bundle): E_OUTPUT_IS_INPUT', () => {
    const out = join(tmp, 'sweep-out');
    mkdirSync(out, { recursive: true });
    const textThere = join(out, 'sweep.json');
    copyFileSync(evalText, textThere);
    // rtn:8's bundle is rtn_8.usk: a tokenizer kept there under that name would be replaced by --keep-bundles
    const tokThere = join(out, 'rtn_8.usk');
    copyFileSync(tokenizer, tokThere);
    try {
      const a = expectRefused(sweep(out, ['--eval-text', textThere]), 'E_OUTPUT_IS_INPUT', [textThere]);
      expect(a).toContain('the sweep.json would overwrite the evaluation text (--eval-text)');
      const b = expectRefused(sweep(out, ['--eval-text', evalText, '--tokenizer', tokThere, '--keep-bundles']), 'E_OUTPUT_IS_INPUT', [tokThere]);
      expect(b).toContain('the rtn_8.usk would overwrite the tokenizer');
      expect(readdirSync(out).sort()).toEqual(['rtn_8.usk', 'sweep.json']);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!HAVE_SHARED)('special and unreadable inputs: typed errors, never a hang', () => {
  it('a named pipe as the checkpoint, the --calib text or the evaluation text: E_NOT_A_FILE naming it', () => {
    const fifo = join(tmp, 'pipe');
    spawnSync('mkfifo', [fifo]);
    try {
      for (const [args, what] of [
        [['compress', fifo, '--codec', 'rtn', '-o', join(tmp, 'x.usk')], 'checkpoint is a named pipe (FIFO)'],
        [[...rtn8(), '--calib', fifo, '-o', join(tmp, 'x.usk')], 'calibration text is a named pipe (FIFO)'],
        [['eval', model, '--text', fifo, '--windows', '1'], 'evaluation text is a named pipe (FIFO)'],
        [['generate', fifo, '--steps', '2'], 'model is a named pipe (FIFO)'],
      ] as Array<[string[], string]>) {
        const stderr = expectRefused(args, 'E_NOT_A_FILE', [model]);
        expect(stderr).toContain(`${fifo}: ${what}, not a regular file`);
      }
      expect(existsSync(join(tmp, 'x.usk'))).toBe(false);
    } finally {
      rmSync(fifo, { force: true });
    }
  });

  it('/dev/zero as the evaluation text or the tokenizer: E_NOT_A_FILE (a character device)', () => {
    expect(expectRefused(['eval', model, '--text', '/dev/zero', '--windows', '1'], 'E_NOT_A_FILE', [model])).toContain('a character device');
    expect(expectRefused([...rtn8(), '--tokenizer', '/dev/zero', '-o', join(tmp, 'y.usk')], 'E_NOT_A_FILE', [model])).toContain('tokenizer is a character device');
  });

  it('an unreadable checkpoint: E_PERMISSION_DENIED with the fix', () => {
    const path = unreadableFile(tmp);
    if (path === undefined) {
      loudSkip('the unreadable-checkpoint CLI case', IS_ROOT ? 'running as root and /proc/sys/vm/compact_memory is not unreadable here' : 'chmod 000 did not deny reading');
      return;
    }
    try {
      const stderr = expectRefused(['compress', path, '--codec', 'rtn', '--tokenizer', tokenizer, '-o', join(tmp, 'z.usk')], 'E_PERMISSION_DENIED', [tokenizer]);
      expect(stderr).toContain(path);
      expect(stderr).toContain('make the file readable');
    } finally {
      if (!IS_ROOT) rmSync(path, { force: true });
    }
  });
});

describe.skipIf(!HAVE_SHARED)('a full or read-only disk: typed errors, nothing left behind', () => {
  it('compress -o onto a full disk (a 64 KiB tmpfs): E_NO_SPACE, no partial bundle, no temporary file', () => {
    const m = mountTmpfs(join(tmp, 'full-disk'), 'size=64k');
    if (!m) {
      loudSkip('the real full-disk CLI case', 'cannot mount a tmpfs here (needs root with mount rights); the in-process ENOSPC case below still runs');
      return;
    }
    mounts.push(m);
    const out = join(m.dir, 'out.usk');
    const stderr = expectRefused([...rtn8(), '-o', out], 'E_NO_SPACE', [model]);
    expect(stderr).toContain(out);
    expect(stderr).toContain('free disk space');
    expect(readdirSync(m.dir)).toEqual([]);
  });

  it('compress -o onto a read-only disk: E_PERMISSION_DENIED', () => {
    const m = mountTmpfs(join(tmp, 'ro-disk'), 'ro');
    let dir = m?.dir;
    if (m) mounts.push(m);
    else if (!IS_ROOT) {
      dir = join(tmp, 'ro-dir');
      mkdirSync(dir);
      chmodSync(dir, 0o555);
    } else {
      loudSkip('the read-only-disk CLI case', 'running as root without mount rights: no directory refuses root');
      return;
    }
    try {
      const stderr = expectRefused([...rtn8(), '-o', join(dir!, 'out.usk')], 'E_PERMISSION_DENIED', [model]);
      expect(stderr).toContain(join(dir!, 'out.usk'));
    } finally {
      if (!m) chmodSync(dir!, 0o755);
    }
  });

  it('an errno error that reaches the command loop untyped is still reported typed (E_NO_SPACE), never as a bug', () => {
    let text = '';
    const io = { stdout: { write: (s: string) => void (text += s) }, stderr: { write: (s: string) => void (text += s) } };
    const err = Object.assign(new Error("ENOSPC: no space left on device, write '/data/run/finetune.ckpt.tmp-1-ab'"), {
      code: 'ENOSPC',
      syscall: 'write',
      path: '/data/run/finetune.ckpt.tmp-1-ab',
      errno: -28,
    });
    expect(report(err, io as never, false)).toBe(1);
    expect(text).toMatch(/^error \[E_NO_SPACE\]: \/data\/run\/finetune\.ckpt\.tmp-1-ab: cannot write: no space left on the device/);
    expect(text).not.toContain('looks like a bug');
    // a programming error is still called one
    text = '';
    report(Object.assign(new TypeError('bad arg'), { code: 'ERR_INVALID_ARG_TYPE' }), io as never, false);
    expect(text).toContain('looks like a bug');
  });
});

describe.skipIf(!HAVE_SHARED)('calibration text that is the evaluation text in disguise', () => {
  it.each([
    ['one more newline', (e: string) => `${e}\n`],
    ['CRLF line ends', (e: string) => e.replace(/\n/g, '\r\n')],
    ['the evaluation text appended to calib.txt', (e: string) => `${readFileSync(calib, 'utf8')}\n\n${e}`],
  ])('--calib = the evaluation text with %s: refused (E_BAD_ARGUMENT), nothing written', (_what, make) => {
    const disguised = join(tmp, 'disguised.txt');
    writeFileSync(disguised, make(readFileSync(evalText, 'utf8')));
    const out = join(tmp, 'never.usk');
    try {
      const stderr = expectRefused([...rtn8(), '--calib', disguised, '--eval-text', evalText, '-o', out], 'E_BAD_ARGUMENT', [evalText]);
      expect(stderr).toContain('refusing to calibrate on the evaluation text');
      expect(existsSync(out)).toBe(false);
    } finally {
      rmSync(disguised, { force: true });
    }
  });
});
