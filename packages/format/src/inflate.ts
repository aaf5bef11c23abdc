import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';

/**
 * A small synchronous DEFLATE decoder (RFC 1951, raw: no zlib or gzip wrapper), for the compact parts of a
 * format-3 bundle (its metadata and tokenizer). The format package runs in browsers and must stay synchronous
 * (DecompressionStream is async), so it carries its own decoder; writers compress with any conforming encoder
 * (the pipeline uses node:zlib's deflateRaw).
 *
 * `expectedLength` is the exact size of the output, stored next to the compressed bytes: decoding stops with
 * an error before writing more than that (no decompression bomb), and a stream that ends short is an error too.
 */
export function inflateRaw(input: Uint8Array, expectedLength: number, source = '<deflate>'): Uint8Array<ArrayBuffer> {
  const fail = (problem: string): never => {
    throw new UltraSketchError(ErrorCodes.BAD_HEADER, `compressed data: ${problem}`, { source, hint: 'the bundle is corrupt; re-create or re-copy it' });
  };
  if (!Number.isInteger(expectedLength) || expectedLength < 0) fail(`invalid expected length ${expectedLength}`);
  const out = new Uint8Array(expectedLength);
  let o = 0;
  let pos = 0; // bit position in input
  const bitLength = input.length * 8;

  const bits = (n: number): number => {
    if (pos + n > bitLength) fail('unexpected end of the compressed stream');
    let v = 0;
    for (let i = 0; i < n; i++, pos++) v |= ((input[pos >>> 3]! >>> (pos & 7)) & 1) << i;
    return v;
  };

  // Canonical Huffman code as (counts per length, symbols sorted by code): decoded bit by bit (RFC 1951 §3.2.2).
  interface Huffman {
    counts: Uint16Array;
    symbols: Uint16Array;
  }
  const build = (lengths: Uint8Array): Huffman => {
    const counts = new Uint16Array(16);
    for (const l of lengths) counts[l]!++;
    counts[0] = 0;
    // An over-subscribed code is invalid (an incomplete one is allowed: a single distance code).
    let left = 1;
    for (let l = 1; l < 16; l++) {
      left = left * 2 - counts[l]!;
      if (left < 0) fail('over-subscribed Huffman code');
    }
    const offs = new Uint16Array(16);
    for (let l = 1; l < 15; l++) offs[l + 1] = offs[l]! + counts[l]!;
    const symbols = new Uint16Array(lengths.length);
    for (let s = 0; s < lengths.length; s++) if (lengths[s] !== 0) symbols[offs[lengths[s]!]!++] = s;
    return { counts, symbols };
  };
  const decode = (h: Huffman): number => {
    let code = 0;
    let first = 0;
    let index = 0;
    for (let l = 1; l < 16; l++) {
      code |= bits(1);
      const count = h.counts[l]!;
      if (code - first < count) return h.symbols[index + code - first]!;
      index += count;
      first = (first + count) << 1;
      code <<= 1;
    }
    return fail('invalid Huffman code');
  };

  const LEN_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
  const LEN_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
  const DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577];
  const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];

  let fixed: [Huffman, Huffman] | null = null;
  const fixedCodes = (): [Huffman, Huffman] => {
    if (fixed) return fixed;
    const l = new Uint8Array(288);
    l.fill(8, 0, 144);
    l.fill(9, 144, 256);
    l.fill(7, 256, 280);
    l.fill(8, 280, 288);
    fixed = [build(l), build(new Uint8Array(30).fill(5))];
    return fixed;
  };
  const ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

  let last = 0;
  while (!last) {
    last = bits(1);
    const type = bits(2);
    if (type === 0) {
      pos = (pos + 7) & ~7; // stored block: skip to the byte boundary
      const len = bits(16);
      const nlen = bits(16);
      if ((len ^ 0xffff) !== nlen) fail('stored block length check failed');
      if (o + len > expectedLength) fail(`output longer than the stored length ${expectedLength}`);
      if (pos / 8 + len > input.length) fail('unexpected end of the compressed stream');
      out.set(input.subarray(pos / 8, pos / 8 + len), o);
      o += len;
      pos += len * 8;
      continue;
    }
    let lit: Huffman;
    let dist: Huffman;
    if (type === 1) [lit, dist] = fixedCodes();
    else if (type === 2) {
      const nlen = bits(5) + 257;
      const ndist = bits(5) + 1;
      const ncode = bits(4) + 4;
      if (nlen > 286 || ndist > 30) fail('too many length or distance codes');
      const cl = new Uint8Array(19);
      for (let i = 0; i < ncode; i++) cl[ORDER[i]!] = bits(3);
      const clh = build(cl);
      const lengths = new Uint8Array(nlen + ndist);
      for (let i = 0; i < nlen + ndist; ) {
        const sym = decode(clh);
        if (sym < 16) lengths[i++] = sym;
        else {
          let rep: number;
          let val = 0;
          if (sym === 16) {
            if (i === 0) fail('repeat with no previous length');
            val = lengths[i - 1]!;
            rep = 3 + bits(2);
          } else if (sym === 17) rep = 3 + bits(3);
          else rep = 11 + bits(7);
          if (i + rep > nlen + ndist) fail('code lengths overflow');
          lengths.fill(val, i, i + rep);
          i += rep;
        }
      }
      if (lengths[256] === 0) fail('no end-of-block code');
      lit = build(lengths.subarray(0, nlen));
      dist = build(lengths.subarray(nlen));
    } else return fail('invalid block type 3');

    for (;;) {
      const sym = decode(lit);
      if (sym < 256) {
        if (o >= expectedLength) fail(`output longer than the stored length ${expectedLength}`);
        out[o++] = sym;
      } else if (sym === 256) break;
      else {
        const li = sym - 257;
        if (li >= 29) fail('invalid length code');
        const len = LEN_BASE[li]! + bits(LEN_EXTRA[li]!);
        const di = decode(dist);
        if (di >= 30) fail('invalid distance code');
        const d = DIST_BASE[di]! + bits(DIST_EXTRA[di]!);
        if (d > o) fail('distance reaches before the start of the output');
        if (o + len > expectedLength) fail(`output longer than the stored length ${expectedLength}`);
        for (let i = 0; i < len; i++, o++) out[o] = out[o - d]!;
      }
    }
  }
  if (o !== expectedLength) fail(`output is ${o} bytes, the stored length is ${expectedLength}`);
  return out;
}
