/**
 * Sign packing (docs/methods.md §2): one bit per ±1 entry, LSB-first in little-endian 32-bit words,
 * −1 stored as bit 1 and +1 as bit 0 (so sign(0) = +1 is bit 0). Entry i of a row-major matrix is bit
 * (i mod 32) of word ⌊i / 32⌋; bits past the last entry are 0. Because the words are little-endian, the same
 * stream read as bytes is LSB-first too: entry i is bit (i mod 8) of byte ⌊i / 8⌋.
 */

/** Pack the signs of `values` (x < 0 → bit 1; 0, −0 and x > 0 → bit 0). */
export function packSigns(values: ArrayLike<number>): Uint32Array<ArrayBuffer> {
  const n = values.length;
  const out = new Uint32Array(Math.ceil(n / 32));
  for (let i = 0; i < n; i++) if (values[i]! < 0) out[i >>> 5] = out[i >>> 5]! | (1 << (i & 31));
  return out;
}

/** Entry i as ±1. */
export function signAt(words: Uint32Array, i: number): 1 | -1 {
  return (words[i >>> 5]! >>> (i & 31)) & 1 ? -1 : 1;
}

/** The first n entries as ±1. */
export function unpackSigns(words: Uint32Array, n: number): Int8Array<ArrayBuffer> {
  const out = new Int8Array(n);
  for (let i = 0; i < n; i++) out[i] = (words[i >>> 5]! >>> (i & 31)) & 1 ? -1 : 1;
  return out;
}

/** True when every bit at or past entry n is 0 (the canonical padding). */
export function paddingIsZero(words: Uint32Array, n: number): boolean {
  const full = n >>> 5;
  if (n & 31 && full < words.length && words[full]! >>> (n & 31) !== 0) return false;
  for (let w = Math.ceil(n / 32); w < words.length; w++) if (words[w] !== 0) return false;
  return true;
}
