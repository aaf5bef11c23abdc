import { closeSync, constants, fstatSync, openSync, readSync, statSync } from 'node:fs';

/**
 * True when `bytes` start like a safetensors file: a little-endian u64 header length that fits in the file,
 * followed by "{". A llama2.c checkpoint never does: its first 8 bytes are dim and hidden_dim (legacy) or the
 * magic "ak42" and a version (v2), both far larger than any file as a u64.
 */
export function looksLikeSafetensorsBytes(bytes: Uint8Array): boolean {
  if (bytes.byteLength < 10) return false;
  const n = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  return n >= 2n && n <= BigInt(bytes.byteLength - 8) && bytes[8] === 0x7b;
}

/**
 * `looksLikeSafetensorsBytes` on the first bytes of a file; false when it is not a regular file or cannot be
 * read (the reader that follows reports why, typed). Never blocks: a FIFO is refused by its stat, and the open
 * is non-blocking and checked again by fstat in case the path changed in between.
 */
export function looksLikeSafetensors(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
  } catch {
    return false;
  }
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch {
    return false;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return false;
    const head = new Uint8Array(9);
    const n = readSync(fd, head, 0, 9, 0);
    if (n < 9) return false;
    const len = new DataView(head.buffer).getBigUint64(0, true);
    return len >= 2n && len <= BigInt(st.size - 8) && head[8] === 0x7b;
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}
