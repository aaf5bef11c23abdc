import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';

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

/** `looksLikeSafetensorsBytes` on the first bytes of a file (false when it cannot be read). */
export function looksLikeSafetensors(path: string): boolean {
  if (!existsSync(path) || !statSync(path).isFile()) return false;
  const size = statSync(path).size;
  const fd = openSync(path, 'r');
  try {
    const head = new Uint8Array(9);
    const n = readSync(fd, head, 0, 9, 0);
    if (n < 9) return false;
    const len = new DataView(head.buffer).getBigUint64(0, true);
    return len >= 2n && len <= BigInt(size - 8) && head[8] === 0x7b;
  } finally {
    closeSync(fd);
  }
}
