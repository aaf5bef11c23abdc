/**
 * Node-only helpers of the trainer (subpath "@ultrasketch/ste-trainer/node"): checkpoint files written
 * atomically. Nothing else in this package imports node:* modules.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { Trainer } from './trainer.js';

/**
 * Write `bytes` to `path` so that `path` holds either its old content or all of the new bytes, never a
 * part: write a temporary file in the same directory, fsync it, rename it over `path`, fsync the directory
 * (best effort). A process killed mid-write leaves at most a `*.tmp-*` file behind.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const dir = dirname(path);
  if (!existsSync(dir)) {
    throw new UltraSketchError(ErrorCodes.FILE_NOT_FOUND, `directory ${dir} does not exist`, { source: path, hint: 'create it first' });
  }
  const tmp = join(dir, `${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', 0o644);
    let done = 0;
    while (done < bytes.byteLength) done += writeSync(fd, bytes, done, bytes.byteLength - done);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // already failing
      }
    }
    rmSync(tmp, { force: true });
    throw err;
  }
  try {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // some platforms cannot fsync a directory; the rename has happened
  }
}

/** Save the trainer's complete state to `path` atomically. */
export function saveCheckpoint(trainer: Trainer, path: string): void {
  writeFileAtomic(path, trainer.state());
}

/** Restore a trainer from a checkpoint file written by saveCheckpoint. */
export function loadCheckpoint(trainer: Trainer, path: string): void {
  if (!existsSync(path)) {
    throw new UltraSketchError(ErrorCodes.FILE_NOT_FOUND, 'checkpoint not found', { source: path, hint: 'check the --checkpoint-dir' });
  }
  trainer.loadState(readFileSync(path), path);
}
