import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';

export interface WriteAtomicOptions {
  /** Bytes per write call (default 4 MiB). */
  chunkBytes?: number;
  /**
   * Called after each chunk is written, with the bytes written so far. A throw aborts the write (the
   * temporary file is removed). Tests use it to slow a write down and kill the process mid-way.
   */
  onChunk?(written: number, total: number): void;
}

/** The temporary name a write goes to first: `${path}.tmp-<pid>-<random>`, in the same directory. */
export function temporaryPathFor(path: string): string {
  return join(dirname(path), `${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
}

/**
 * Write `bytes` to `path` so that `path` either keeps its old content or holds ALL the new bytes, never a
 * part: write to a temporary file in the same directory (same file system, so the rename is atomic),
 * fsync it, rename it into place, then fsync the directory (best effort: not every platform allows it).
 * On any error the temporary file is removed and the error is rethrown (as a typed error for the usual
 * file-system failures). A process killed mid-write can leave a `*.tmp-*` file behind, never `path`.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array, options: WriteAtomicOptions = {}): void {
  const dir = dirname(path);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new UltraSketchError(ErrorCodes.FILE_NOT_FOUND, `output directory ${dir} does not exist`, {
      source: path,
      hint: 'create the directory first, or choose another output path',
    });
  }
  if (existsSync(path) && statSync(path).isDirectory()) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'the output path is a directory', {
      source: path,
      hint: 'name a file, e.g. model.usk',
    });
  }
  const chunk = options.chunkBytes ?? 4 * 1024 * 1024;
  if (!Number.isInteger(chunk) || chunk <= 0) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `chunkBytes ${chunk} must be a positive integer`, { source: path });
  }
  const tmp = temporaryPathFor(path);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', 0o644);
    let written = 0;
    while (written < bytes.byteLength) {
      const n = Math.min(chunk, bytes.byteLength - written);
      let done = 0;
      while (done < n) done += writeSync(fd, bytes, written + done, n - done);
      written += n;
      options.onChunk?.(written, bytes.byteLength);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // already failing; the original error is the one to report
      }
    }
    rmSync(tmp, { force: true });
    const e = err as NodeJS.ErrnoException;
    if (err instanceof UltraSketchError || typeof e?.syscall !== 'string') throw err;
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `cannot write the file: ${e.code ?? ''} ${e.message}`.trim(), {
      source: path,
      hint: 'check that the directory is writable and the disk has space',
      cause: err,
    });
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
