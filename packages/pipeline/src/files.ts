/**
 * Path safety for commands that read and write the user's files:
 * - `assertOutputNotInput` refuses an output that is (by real path or by device + inode) one of the command's
 *   own inputs, so `compress -o model.bin model.bin` can never replace the model with the bundle;
 * - `assertOutputDirectory` refuses an output directory that exists as something else (a file);
 * - `describeFileKind` names what a non-regular path is (FIFO, device, ...), for messages.
 */
import { type Stats, closeSync, constants as fsConstants, fstatSync, lstatSync, mkdirSync, openSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ErrorCodes, UltraSketchError, fromSystemError } from '@ultrasketch/core';
import { describeFileKind } from '@ultrasketch/node-files';

/** A path the command reads, with what it is to the user ("checkpoint", "evaluation text (--eval-text)"). */
export interface NamedPath {
  path: string;
  what: string;
}

// describeFileKind lives beside the atomic writer (which names what it refuses to replace); re-exported here.
export { describeFileKind };

/**
 * Open a user-named input for reading, regular files only: refused by its stat before it is opened, and again
 * by an fstat of the open descriptor (the path may have been swapped in between). The open is non-blocking, so
 * even a FIFO swapped in cannot hang it. Missing → E_FILE_NOT_FOUND (naming `flag`, the option that takes
 * another path); a directory, FIFO, device or socket → E_NOT_A_FILE; any other system error typed by
 * `fromSystemError`. Returns the descriptor (the caller closes it) and the size at open.
 */
export function openRegularFile(path: string, what: string, flag?: string): { fd: number; size: number } {
  const notFound = (cause?: unknown) =>
    new UltraSketchError(ErrorCodes.FILE_NOT_FOUND, `${what} not found`, {
      source: path,
      hint: flag ? `check the path, or pass another with ${flag}` : 'check the path',
      ...(cause === undefined ? {} : { cause }),
    });
  const notAFile = (st: Stats) =>
    new UltraSketchError(ErrorCodes.NOT_A_FILE, `${what} is ${describeFileKind(st)}, not a regular file`, {
      source: path,
      hint: st.isDirectory()
        ? `pass the file itself${flag ? ` with ${flag}` : ''}, not its directory`
        : `pass a regular file${flag ? ` with ${flag}` : ''}; a pipe or device is never read, so copy its data into a file first`,
    });
  const openError = (err: unknown) => ((err as NodeJS.ErrnoException)?.code === 'ENOENT' ? notFound(err) : fromSystemError(err, path, 'open'));
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    throw openError(err);
  }
  if (!st.isFile()) throw notAFile(st);
  let fd: number;
  try {
    // O_NONBLOCK: had the path become a FIFO since the stat, a blocking open would wait for a writer forever.
    fd = openSync(path, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
  } catch (err) {
    throw openError(err);
  }
  try {
    const fst = fstatSync(fd);
    if (!fst.isFile()) throw notAFile(fst);
    return { fd, size: fst.size };
  } catch (err) {
    closeSync(fd);
    throw fromSystemError(err, path, 'open');
  }
}

interface Identity {
  /** The real path (symbolic links and `..` resolved), or the absolute path when it does not exist. */
  real: string;
  /** Device and inode of what the path names, when it exists (hard links share them). */
  id?: string;
}

function fileId(path: string): string | undefined {
  try {
    // bigint: inode numbers above 2^53 exist on some file systems (and must not compare equal by rounding).
    const st = statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/** An input: its real path when it exists (every symbolic link followed). */
function inputIdentity(path: string): Identity {
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    real = resolve(path);
  }
  const id = fileId(real);
  return id === undefined ? { real } : { real, id };
}

/**
 * The output: the real path of its directory plus its name, and, when the name itself is a symbolic link,
 * where the link leads (also when that does not exist yet: a write through the link would create it there).
 */
function outputIdentity(path: string, hops = 0): Identity {
  const abs = resolve(path);
  let isLink = false;
  try {
    isLink = lstatSync(abs).isSymbolicLink();
  } catch {
    // does not exist: resolved through its directory below
  }
  if (isLink && hops < 40) {
    try {
      return inputIdentity(realpathSync(abs));
    } catch {
      // a dangling link (or a loop): follow it one step by hand
      try {
        return outputIdentity(resolve(dirname(abs), readlinkSync(abs)), hops + 1);
      } catch {
        // unreadable link: fall through to the directory-based name
      }
    }
  }
  let real: string;
  try {
    real = join(realpathSync(dirname(abs)), basename(abs));
  } catch {
    real = abs;
  }
  const id = fileId(real);
  return id === undefined ? { real } : { real, id };
}

export interface OutputCheckOptions {
  /** The flag that names the output, for the hint (default '-o'). */
  flag?: string;
  /** What the output is ("bundle", "sweep.json"), for the message (default 'output'). */
  what?: string;
}

/**
 * Refuse (E_OUTPUT_IS_INPUT) to write `output` when it is one of `inputs`: the same real path (symbolic links
 * and `..` followed, a symbolic link at the output itself included) or the same file by device and inode (a
 * hard link, or a path that differs only in case on a case-insensitive disk). Call it before any work, so
 * nothing is written and no time is spent. Inputs that do not exist are compared by absolute path.
 */
export function assertOutputNotInput(output: string, inputs: readonly NamedPath[], options: OutputCheckOptions = {}): void {
  const out = outputIdentity(output);
  for (const input of inputs) {
    const inp = inputIdentity(input.path);
    const samePath = out.real === inp.real;
    const sameFile = out.id !== undefined && out.id === inp.id;
    if (!samePath && !sameFile) continue;
    let how = '';
    if (!samePath) how = ` (${output} is a hard link to it)`;
    else if (resolve(output) !== resolve(input.path)) how = ` (both resolve to ${out.real})`;
    throw new UltraSketchError(
      ErrorCodes.OUTPUT_IS_INPUT,
      `the ${options.what ?? 'output'} would overwrite the ${input.what} ${input.path}${how}; nothing was written`,
      {
        source: output,
        hint: `write the ${options.what ?? 'output'} to another path with ${options.flag ?? '-o'}; an input of the command is never replaced`,
      },
    );
  }
}

/**
 * Refuse (E_EXISTS) an output directory that exists as something other than a directory (a file, a FIFO,
 * ...), which would otherwise fail later as an untyped ENOTDIR/EEXIST; nothing is created. Returns whether
 * the directory exists. Other system errors (permission, ...) become typed errors.
 */
export function assertOutputDirectory(dir: string, flag = '--out-dir'): boolean {
  let st: Stats;
  try {
    st = statSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    if (code === 'ENOENT') return false;
    if (code === 'ENOTDIR') throw notADirectory(dir, flag, 'a part of its path is a file', err);
    throw fromSystemError(err, dir, 'open');
  }
  if (!st.isDirectory()) throw notADirectory(dir, flag, `it is ${describeFileKind(st)}`);
  return true;
}

/** `assertOutputDirectory`, then create the directory (and its parents) when missing. */
export function ensureOutputDirectory(dir: string, flag = '--out-dir'): void {
  if (assertOutputDirectory(dir, flag)) return;
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    // A parent that is a file answers ENOTDIR (or EEXIST on some platforms).
    const code = (err as NodeJS.ErrnoException)?.code;
    if (code === 'ENOTDIR' || code === 'EEXIST') throw notADirectory(dir, flag, 'a part of its path is a file', err);
    throw fromSystemError(err, dir, 'create');
  }
}

function notADirectory(dir: string, flag: string, why: string, cause?: unknown): UltraSketchError {
  return new UltraSketchError(ErrorCodes.EXISTS, `${flag} must be a directory, but ${why}`, {
    source: dir,
    hint: `pass a directory (created if missing) with ${flag}; the existing file is left as it is`,
    ...(cause === undefined ? {} : { cause }),
  });
}
