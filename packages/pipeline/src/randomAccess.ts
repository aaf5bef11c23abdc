import { createHash } from 'node:crypto';
import { closeSync, readSync } from 'node:fs';
import { ErrorCodes, UltraSketchError, fromSystemError } from '@ultrasketch/core';
import { openRegularFile } from './files.js';

/**
 * A model file read in pieces: the header first, then one tensor's byte range at a time, so a multi-GB model is
 * never held in memory whole (`readFileChecked` reads a file into one buffer; this reads ranges of it).
 *
 * Opened by `openRegularFile` (files.ts), as `readFileChecked` opens its files: a regular file only (refused
 * by its stat, then by an fstat of the open descriptor), non-blocking, so a FIFO put in its place can never
 * hang the command. The size is taken once at
 * open; a read that comes back short (the file shrank) or a file whose size changed is E_TRUNCATED, never
 * silently different bytes.
 */
export class RandomAccessFile {
  readonly size: number;
  private fd: number | null;

  private constructor(
    readonly path: string,
    readonly what: string,
    fd: number,
    size: number,
  ) {
    this.fd = fd;
    this.size = size;
  }

  /** Open `path` for reading ranges; `what` names it in errors ("safetensors shard"), `flag` is the option that takes another. */
  static open(path: string, what: string, flag?: string): RandomAccessFile {
    const { fd, size } = openRegularFile(path, what, flag);
    return new RandomAccessFile(path, what, fd, size);
  }

  /**
   * `length` bytes at `offset`, as a new Uint8Array (the caller owns it). The range must lie inside the size the
   * file had when opened (a header that points past the end is refused before this is called; this is the
   * last line of defence: E_BAD_OFFSET naming the range).
   */
  read(offset: number, length: number, what = 'data'): Uint8Array {
    const fd = this.live();
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new UltraSketchError(ErrorCodes.BAD_OFFSET, `${what}: bytes [${offset}, ${offset + length}) lie outside the file's ${this.size} bytes`, {
        source: this.path,
        hint: 'the file is truncated or its header is corrupt; re-download it',
      });
    }
    let out: Uint8Array;
    try {
      out = new Uint8Array(length);
    } catch (err) {
      throw new UltraSketchError(ErrorCodes.OUT_OF_MEMORY, `cannot allocate ${length} bytes to read ${what}`, { source: this.path, hint: 'free memory', cause: err });
    }
    let done = 0;
    // One read call may return less than asked (and at most 2 GiB): loop in chunks.
    const chunk = 64 * 1024 * 1024;
    try {
      while (done < length) {
        const n = readSync(fd, out, done, Math.min(chunk, length - done), offset + done);
        if (n === 0) {
          throw new UltraSketchError(ErrorCodes.TRUNCATED, `${this.what} ended at byte ${offset + done} while reading ${what}: it is shorter than the ${this.size} bytes it had when opened`, {
            source: this.path,
            hint: 'the file shrank while being read; wait until whatever writes it has finished, then run the command again',
          });
        }
        done += n;
      }
    } catch (err) {
      throw fromSystemError(err, this.path, 'read');
    }
    return out;
  }

  /**
   * SHA-256 of the whole file, read in chunks (memory: one chunk), and a check that the file still has the size
   * it had at open (E_TRUNCATED otherwise: the hash would describe another file than the one read).
   */
  sha256(): string {
    const fd = this.live();
    const hash = createHash('sha256');
    const buf = new Uint8Array(16 * 1024 * 1024);
    let pos = 0;
    try {
      while (pos < this.size) {
        const n = readSync(fd, buf, 0, Math.min(buf.byteLength, this.size - pos), pos);
        if (n === 0) break;
        hash.update(buf.subarray(0, n));
        pos += n;
      }
      if (pos !== this.size || readSync(fd, new Uint8Array(1), 0, 1, this.size) !== 0) {
        throw new UltraSketchError(ErrorCodes.TRUNCATED, `${this.what} changed size while being read (${this.size} bytes at open, ${pos} read)`, {
          source: this.path,
          hint: 'wait until whatever writes the file has finished, then run the command again',
        });
      }
    } catch (err) {
      throw fromSystemError(err, this.path, 'read');
    }
    return hash.digest('hex');
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }

  private live(): number {
    if (this.fd === null) throw new Error(`RandomAccessFile ${this.path}: used after close()`);
    return this.fd;
  }
}
