/**
 * The one atomic file writer of UltraSketch: bundles, sweep results and teacher corpora (the pipeline) and
 * training checkpoints (ste-trainer/node) all go through `writeFileAtomic`, so every leftover of a killed run
 * has the one name pattern that the pipeline's stale.ts recognises and removes.
 */
import { randomBytes } from 'node:crypto';
import { type BigIntStats, type Stats, closeSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ErrorCodes, type FileAction, UltraSketchError, fromSystemError } from '@ultrasketch/core';

export interface WriteAtomicOptions {
  /** Bytes per write call (default 4 MiB). */
  chunkBytes?: number;
  /**
   * Called after each chunk is written, with the bytes written so far. A throw aborts the write (the
   * temporary file is removed). Tests use it to slow a write down and kill the process mid-way (the crash
   * tests' `killMidWrite`).
   */
  onChunk?(written: number, total: number): void;
}

/** What a path that is not a regular file is, in words (with an article: "a named pipe (FIFO)"). */
export function describeFileKind(st: Stats | BigIntStats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

/**
 * The temporary name a write goes to first: `${path}.tmp-<pid>-<12 hex digits>`, in the same directory (the
 * pattern `temporaryWriterPid` in the pipeline's stale.ts parses: change both together).
 */
export function temporaryPathFor(path: string): string {
  return join(dirname(path), `${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
}

/**
 * Write `bytes` to `path` so that `path` either keeps its old content or holds ALL the new bytes, never a
 * part: write to a temporary file in the same directory (same file system, so the rename is atomic),
 * fsync it, rename it into place, then fsync the directory (best effort: not every platform allows it).
 * On any error the temporary file is removed and the error is rethrown, system errors as typed errors
 * naming `path` (E_NO_SPACE for a full disk, E_PERMISSION_DENIED, ...). A process killed mid-write can leave
 * a `*.tmp-*` file behind, never `path`. An existing `path` that is not a regular file (a directory, a
 * device such as /dev/null, a FIFO) is refused: the rename would replace the special file itself.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array, options: WriteAtomicOptions = {}): void {
  const dir = dirname(path);
  let dirStat: Stats | undefined;
  try {
    dirStat = statSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw fromSystemError(err, dir, 'open');
  }
  if (dirStat === undefined || !dirStat.isDirectory()) {
    throw new UltraSketchError(ErrorCodes.FILE_NOT_FOUND, `output directory ${dir} does not exist`, {
      source: path,
      hint: 'create the directory first, or choose another output path',
    });
  }
  let existing: Stats | undefined;
  try {
    existing = statSync(path);
  } catch {
    // missing (the usual case), or unreadable: the create below reports a real problem, typed
  }
  if (existing?.isDirectory()) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'the output path is a directory', {
      source: path,
      hint: 'name a file, e.g. model.usk',
    });
  }
  if (existing !== undefined && !existing.isFile()) {
    throw new UltraSketchError(ErrorCodes.NOT_A_FILE, `the output path is ${describeFileKind(existing)}; writing would replace it`, {
      source: path,
      hint: 'name a regular file, e.g. model.usk',
    });
  }
  const chunk = options.chunkBytes ?? 4 * 1024 * 1024;
  if (!Number.isInteger(chunk) || chunk <= 0) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `chunkBytes ${chunk} must be a positive integer`, { source: path });
  }
  const tmp = temporaryPathFor(path);
  let fd: number | undefined;
  // What was being done when an error came: phrases the typed error ("cannot create", "cannot write", ...).
  let action: FileAction = 'create';
  try {
    fd = openSync(tmp, 'wx', 0o644);
    action = 'write';
    let written = 0;
    while (written < bytes.byteLength) {
      const n = Math.min(chunk, bytes.byteLength - written);
      let done = 0;
      while (done < n) done += writeSync(fd, bytes, written + done, n - done);
      written += n;
      options.onChunk?.(written, bytes.byteLength);
    }
    // A full disk can show up only here (delayed allocation) or at close: both are inside this try.
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    action = 'rename';
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // already failing; the original error is the one to report
      }
    }
    try {
      rmSync(tmp, { force: true });
    } catch {
      // cannot remove it (the directory became unwritable): the original error is the one to report
    }
    // ENOENT on creating a file in a directory that exists: the file system takes no new files there (/proc,
    // /sys); "no such file" would send the user looking for a missing directory.
    if (action === 'create' && (err as NodeJS.ErrnoException)?.code === 'ENOENT') {
      throw new UltraSketchError(ErrorCodes.PERMISSION_DENIED, `cannot create files in ${dir}: the file system refuses new files there`, {
        source: path,
        hint: 'choose a directory this user can write to',
        cause: err,
      });
    }
    throw fromSystemError(err, path, action);
  }
  syncDirectory(dir);
}

/** fsync a directory so the rename itself is durable; silently skipped where directories cannot be opened. */
function syncDirectory(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Windows and some file systems refuse; the rename has still happened.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
