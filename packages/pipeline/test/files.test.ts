/**
 * Reliability of the pipeline's file handling (issue 18): outputs that are inputs, non-regular and unreadable
 * inputs, files that change while read, full and read-only disks, an output directory that is a file, and
 * calibration text that is evaluation text in disguise. Real files in a temporary directory; the real texts
 * of ../shared are read in place.
 */
import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  copyFileSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  MAX_READ_BYTES,
  OVERLAP_MIN_DOCUMENT_CHARS,
  assertNotEvaluationText,
  assertOutputDirectory,
  assertOutputNotInput,
  comparableDocuments,
  ensureOutputDirectory,
  evaluationOverlap,
  looksLikeSafetensors,
  readFileChecked,
  writeFileAtomic,
} from '../src/index.js';
import { IS_ROOT, loudSkip, mountTmpfs, unreadableFile } from './fs-faults.js';

const SHARED = fileURLToPath(new URL('../../../../shared/', import.meta.url));
const TOKENIZER = join(SHARED, 'models/stories260K/tok512.bin');
const EVAL_TEXT = join(SHARED, 'data/tinystories/eval.txt');
const CALIB_TEXT = join(SHARED, 'data/tinystories/calib.txt');
const HAVE_SHARED = existsSync(TOKENIZER) && existsSync(EVAL_TEXT) && existsSync(CALIB_TEXT);
if (!HAVE_SHARED) {
  const message = `../shared (the real tokenizer and texts) is not at ${SHARED}`;
  if (process.env.CI) throw new Error(`${message}: CI must have it`);
  console.warn(`\n*** SKIPPING the files tests that need real files: ${message} ***\n`);
}

let dir: string;
const mounts: Array<{ unmount(): void }> = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'usk-files-'));
});
afterAll(() => {
  for (const m of mounts) m.unmount();
  rmSync(dir, { recursive: true, force: true });
});

/** The typed error `fn` throws (fails the test when it returns or throws anything else). */
function typedError(fn: () => unknown): UltraSketchError {
  try {
    fn();
  } catch (err) {
    if (err instanceof UltraSketchError) return err;
    throw new Error(`expected an UltraSketchError, got ${String(err)}`);
  }
  throw new Error('expected a throw');
}

function mkfifo(path: string): void {
  execFileSync('mkfifo', [path]);
}

describe.skipIf(!HAVE_SHARED)('assertOutputNotInput', () => {
  let model: string;
  let inputs: Array<{ path: string; what: string }>;
  beforeAll(() => {
    mkdirSync(join(dir, 'out'), { recursive: true });
    model = join(dir, 'model.bin');
    copyFileSync(TOKENIZER, model);
    inputs = [
      { path: join(dir, 'missing.txt'), what: 'text that does not exist' },
      { path: model, what: 'checkpoint' },
    ];
  });

  it('refuses the input itself, by any spelling, naming both paths', () => {
    for (const out of [model, join(dir, 'out', '..', 'model.bin'), relative(process.cwd(), model)]) {
      const err = typedError(() => assertOutputNotInput(out, inputs, { what: 'bundle' }));
      expect(err.code).toBe(ErrorCodes.OUTPUT_IS_INPUT);
      expect(err.source).toBe(out);
      expect(err.message).toContain(`the bundle would overwrite the checkpoint ${model}`);
      expect(err.hint).toContain('-o');
    }
  });

  it('refuses a symbolic link to the input, a path through a linked directory, and a hard link', () => {
    symlinkSync(model, join(dir, 'link.usk'));
    symlinkSync(dir, join(dir, 'dirlink'));
    linkSync(model, join(dir, 'hard.usk'));
    for (const out of [join(dir, 'link.usk'), join(dir, 'dirlink', 'model.bin'), join(dir, 'hard.usk')]) {
      expect(typedError(() => assertOutputNotInput(out, inputs)).code).toBe(ErrorCodes.OUTPUT_IS_INPUT);
    }
    expect(typedError(() => assertOutputNotInput(join(dir, 'hard.usk'), inputs)).message).toContain('is a hard link to it');
    // A dangling link that leads to where an input is named (one that does not exist yet) is refused too.
    symlinkSync(join(dir, 'missing.txt'), join(dir, 'dangling.usk'));
    expect(typedError(() => assertOutputNotInput(join(dir, 'dangling.usk'), inputs)).code).toBe(ErrorCodes.OUTPUT_IS_INPUT);
  });

  it('accepts a new file, an existing other file, and a copy of the input', () => {
    copyFileSync(model, join(dir, 'out', 'copy.bin'));
    for (const out of [join(dir, 'out', 'new.usk'), join(dir, 'out', 'copy.bin'), join(dir, 'nope', 'x.usk')]) {
      expect(() => assertOutputNotInput(out, inputs)).not.toThrow();
    }
  });
});

describe('assertOutputDirectory / ensureOutputDirectory', () => {
  it('a regular file (or a path through one) as the output directory is E_EXISTS, and the file is kept', () => {
    const file = join(dir, 'not-a-dir');
    writeFileSync(file, 'keep me');
    for (const d of [file, join(file, 'sub')]) {
      const a = typedError(() => assertOutputDirectory(d));
      expect(a.code).toBe(ErrorCodes.EXISTS);
      expect(a.message).toContain('--out-dir must be a directory');
      expect(typedError(() => ensureOutputDirectory(d, '--out-dir')).code).toBe(ErrorCodes.EXISTS);
    }
    expect(readFileSync(file, 'utf8')).toBe('keep me');
  });

  it('a missing directory is created with its parents; an existing one is fine', () => {
    const d = join(dir, 'made', 'deeper');
    expect(assertOutputDirectory(d)).toBe(false);
    ensureOutputDirectory(d);
    expect(statSync(d).isDirectory()).toBe(true);
    expect(assertOutputDirectory(d)).toBe(true);
  });
});

describe.skipIf(!HAVE_SHARED)('readFileChecked', () => {
  it('reads a real file in chunks of any size into a plain Uint8Array', () => {
    const want = new Uint8Array(readFileSync(TOKENIZER));
    for (const chunkBytes of [1, 7, 4096, want.byteLength, want.byteLength + 1]) {
      const got = readFileChecked(TOKENIZER, 'tokenizer', '--tokenizer', { chunkBytes });
      expect(Buffer.isBuffer(got)).toBe(false);
      expect(got).toEqual(want);
    }
    const empty = join(dir, 'empty.txt');
    writeFileSync(empty, '');
    expect(readFileChecked(empty, 'text').byteLength).toBe(0);
  });

  it('a named pipe, /dev/zero, a socket and a directory are E_NOT_A_FILE, naming what they are (never opened for a blocking read)', async () => {
    const fifo = join(dir, 'model.fifo');
    mkfifo(fifo);
    const sock = join(dir, 'model.sock');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      const cases: Array<[string, string]> = [
        [fifo, 'a named pipe (FIFO)'],
        ['/dev/zero', 'a character device'],
        [sock, 'a socket'],
        [dir, 'a directory'],
      ];
      for (const [path, kind] of cases) {
        const err = typedError(() => readFileChecked(path, 'checkpoint', '--model'));
        expect(err.code).toBe(ErrorCodes.NOT_A_FILE);
        expect(err.source).toBe(path);
        expect(err.message).toContain(`checkpoint is ${kind}, not a regular file`);
        expect(looksLikeSafetensors(path)).toBe(false);
      }
    } finally {
      server.close();
    }
  });

  it('a missing file is E_FILE_NOT_FOUND naming the flag', () => {
    const err = typedError(() => readFileChecked(join(dir, 'nope.bin'), 'tokenizer', '--tokenizer'));
    expect(err.code).toBe(ErrorCodes.FILE_NOT_FOUND);
    expect(err.hint).toContain('--tokenizer');
  });

  it('an unreadable file is E_PERMISSION_DENIED (and looksLikeSafetensors answers false, not a throw)', () => {
    const path = unreadableFile(dir);
    if (path === undefined) {
      loudSkip('the unreadable-file case', IS_ROOT ? 'running as root and /proc/sys/vm/compact_memory is not an unreadable file here' : 'chmod 000 did not deny reading');
      return;
    }
    const err = typedError(() => readFileChecked(path, 'checkpoint'));
    expect(err.code).toBe(ErrorCodes.PERMISSION_DENIED);
    expect(err.source).toBe(path);
    expect(err.hint).toContain('readable');
    expect(looksLikeSafetensors(path)).toBe(false);
  });

  it('a file over the size limit is E_LIMIT_EXCEEDED naming the limit, before anything is allocated', () => {
    expect(MAX_READ_BYTES).toBe(bufferConstants.MAX_LENGTH);
    const size = statSync(TOKENIZER).size;
    const err = typedError(() => readFileChecked(TOKENIZER, 'tokenizer', undefined, { maxBytes: size - 1 }));
    expect(err.code).toBe(ErrorCodes.LIMIT_EXCEEDED);
    expect(err.message).toContain(`${size} bytes, over the limit of ${size - 1} bytes`);
    // the limit can be lowered, never raised past Node's largest buffer
    expect(readFileChecked(TOKENIZER, 'tokenizer', undefined, { maxBytes: Number.MAX_SAFE_INTEGER }).byteLength).toBe(size);
  });

  it('a file that shrinks or grows while read is E_TRUNCATED, never a silently partial read', () => {
    const path = join(dir, 'changing.bin');
    copyFileSync(TOKENIZER, path);
    const size = statSync(path).size;
    const shrunk = typedError(() =>
      readFileChecked(path, 'tokenizer', undefined, { chunkBytes: 1000, onChunk: (read) => read === 1000 && truncateSync(path, 2500) }),
    );
    expect(shrunk.code).toBe(ErrorCodes.TRUNCATED);
    expect(shrunk.message).toContain(`ended after 2500 of its ${size} bytes`);
    copyFileSync(TOKENIZER, path);
    const grown = typedError(() =>
      readFileChecked(path, 'tokenizer', undefined, { chunkBytes: 1000, onChunk: (read, total) => read === total && appendFileSync(path, 'more') }),
    );
    expect(grown.code).toBe(ErrorCodes.TRUNCATED);
    expect(grown.message).toContain('grew while being read');
  });
});

describe('looksLikeSafetensors', () => {
  it('still recognises a safetensors file, and refuses a FIFO without blocking on it', () => {
    const header = new TextEncoder().encode('{}');
    const st = new Uint8Array(8 + header.byteLength);
    new DataView(st.buffer).setBigUint64(0, BigInt(header.byteLength), true);
    st.set(header, 8);
    const path = join(dir, 'tiny.safetensors');
    writeFileSync(path, st);
    expect(looksLikeSafetensors(path)).toBe(true);
    const fifo = join(dir, 'sniff.fifo');
    mkfifo(fifo);
    expect(looksLikeSafetensors(fifo)).toBe(false);
  });
});

/** An errno error as Node's fs throws it. */
function errnoError(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated, ${syscall} '${path}'`), { code, syscall, path, errno: -1 });
}

describe('writeFileAtomic: full disk, read-only disk, special files', () => {
  const tmpFiles = (d: string) => readdirSync(d).filter((f) => f.includes('.tmp-'));

  it('ENOSPC mid-write (injected) is E_NO_SPACE; the temporary file is removed and the old file kept', () => {
    const path = join(dir, 'full.usk');
    writeFileSync(path, 'old bundle');
    const err = typedError(() =>
      writeFileAtomic(path, new Uint8Array(10_000), {
        chunkBytes: 1000,
        onChunk: (written) => {
          if (written >= 3000) throw errnoError('ENOSPC', 'write', path);
        },
      }),
    );
    expect(err.code).toBe(ErrorCodes.NO_SPACE);
    expect(err.source).toBe(path);
    expect(err.hint).toContain('free disk space');
    expect(readFileSync(path, 'utf8')).toBe('old bundle');
    expect(tmpFiles(dir).filter((f) => f.startsWith('full.usk'))).toEqual([]);
  });

  it('a real full disk (a 64 KiB tmpfs) is E_NO_SPACE with nothing left behind', () => {
    const m = mountTmpfs(join(dir, 'tiny-disk'), 'size=64k');
    if (!m) {
      loudSkip('the real full-disk case', 'cannot mount a tmpfs here (needs root with mount rights); the injected ENOSPC case above still runs');
      return;
    }
    mounts.push(m);
    const err = typedError(() => writeFileAtomic(join(m.dir, 'big.usk'), new Uint8Array(1024 * 1024).fill(7)));
    expect(err.code).toBe(ErrorCodes.NO_SPACE);
    expect(readdirSync(m.dir)).toEqual([]);
  });

  it('a read-only file system is E_PERMISSION_DENIED naming the output', () => {
    const m = mountTmpfs(join(dir, 'ro-disk'), 'ro');
    if (!m) {
      loudSkip('the read-only file-system case', 'cannot mount a tmpfs here (needs root with mount rights); atomic.test.ts covers an unwritable directory for non-root users');
      return;
    }
    mounts.push(m);
    const out = join(m.dir, 'x.usk');
    const err = typedError(() => writeFileAtomic(out, new Uint8Array(10)));
    expect(err.code).toBe(ErrorCodes.PERMISSION_DENIED);
    expect(err.source).toBe(out);
    expect(err.message).toContain('read-only file system');
  });

  it('an output that is a FIFO (or a device) is E_NOT_A_FILE and stays what it was', () => {
    const fifo = join(dir, 'out.fifo');
    mkfifo(fifo);
    const err = typedError(() => writeFileAtomic(fifo, new Uint8Array(10)));
    expect(err.code).toBe(ErrorCodes.NOT_A_FILE);
    expect(err.message).toContain('a named pipe');
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(tmpFiles(dir).filter((f) => f.startsWith('out.fifo'))).toEqual([]);
  });
});

describe.skipIf(!HAVE_SHARED)('calibration text vs evaluation text: compared document by document', () => {
  const evalBytes = () => new Uint8Array(readFileSync(EVAL_TEXT));
  const evalText = () => readFileSync(EVAL_TEXT, 'utf8');
  const calibText = () => readFileSync(CALIB_TEXT, 'utf8');
  const evaluation = () => [{ path: EVAL_TEXT, bytes: evalBytes() }];
  const asCalibration = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return { path, bytes: new Uint8Array(readFileSync(path)) };
  };
  const refusal = (name: string, text: string) => typedError(() => assertNotEvaluationText(asCalibration(name, text), evaluation()));

  it('the evaluation text with one more newline, CRLF line ends, trailing blank lines or re-wrapped spaces is refused', () => {
    const e = evalText();
    for (const [name, text] of [
      ['plus-newline.txt', `${e}\n`],
      ['crlf.txt', e.replace(/\n/g, '\r\n')],
      ['blank-tail.txt', `${e}\n\n \n\t\n\n`],
      ['spaces.txt', e.replace(/\. /g, '.  ')],
    ] as const) {
      const err = refusal(name, text);
      expect(err.code).toBe(ErrorCodes.BAD_ARGUMENT);
      expect(err.message).toContain('refusing to calibrate on the evaluation text: it has the same documents as the evaluation text');
    }
  });

  it('a calibration text that contains the evaluation text (appended) or a few of its stories is refused; the hint states the rule', () => {
    const superset = refusal('superset.txt', `${calibText()}\n\n${evalText()}`);
    expect(superset.code).toBe(ErrorCodes.BAD_ARGUMENT);
    const o = evaluationOverlap(`${calibText()}\n\n${evalText()}`, evalText());
    expect(o.shared).toBe(o.evaluationDocuments);
    expect(superset.message).toContain(`${o.shared} of the ${o.evaluationDocuments} documents of the evaluation text`);
    expect(superset.hint).toContain('1 % or more');
    // 20 stories of eval.txt pasted into calib.txt: more than 1 % of the ~1700 documents
    const stories = comparableDocuments(evalText()).filter((d) => d.length >= OVERLAP_MIN_DOCUMENT_CHARS).slice(100, 120);
    expect(refusal('pasted.txt', `${calibText()}\n\n${stories.join('\n\n')}\n`).code).toBe(ErrorCodes.BAD_ARGUMENT);
    // a small evaluation text: one shared story of three is refused
    const small = stories.slice(0, 3);
    const tiny = evaluationOverlap(`${small[0]}\n\nsomething else entirely, written for calibration and nowhere else at all.`, small.join('\n\n'));
    expect(tiny.refused).toBe(true);
  });

  it('the real calib.txt is accepted (it shares only short lines such as "The end."), and so is one duplicate story in 1700', () => {
    expect(() => assertNotEvaluationText({ path: CALIB_TEXT, bytes: new Uint8Array(readFileSync(CALIB_TEXT)) }, evaluation())).not.toThrow();
    const o = evaluationOverlap(calibText(), evalText());
    expect(o.shared).toBe(0);
    expect(comparableDocuments(calibText())).toContain('The end.');
    expect(comparableDocuments(evalText())).toContain('The end.');
    const one = comparableDocuments(evalText()).filter((d) => d.length >= OVERLAP_MIN_DOCUMENT_CHARS)[5]!;
    expect(evaluationOverlap(`${calibText()}\n\n${one}`, evalText())).toMatchObject({ shared: 1, refused: false });
  });

  it('a hard link to the evaluation text under another name is the same file', () => {
    const copy = join(dir, 'eval-copy.txt');
    copyFileSync(EVAL_TEXT, copy);
    const link = join(dir, 'not-eval.txt');
    linkSync(copy, link);
    const err = typedError(() => assertNotEvaluationText({ path: link, bytes: new Uint8Array(readFileSync(link)) }, [{ path: copy, bytes: new Uint8Array(readFileSync(copy)) }]));
    expect(err.message).toContain('it is the same file as the evaluation text');
  });
});
