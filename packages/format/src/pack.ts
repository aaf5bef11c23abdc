import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';

/**
 * The reversible "columns" transform of a llama2.c tokenizer file, used by format-3 bundles before deflate
 * (docs/bundle.md, "Format 3"). The file interleaves, per token, an f32 score, an i32 length and the token's
 * bytes; deflate sees little structure in that. Columns put like with like:
 *
 *   i32 max_token_length, u32 N,
 *   N i32 lengths, as 4 byte planes (all low bytes, then all second bytes, ...),
 *   N u32 differences of consecutive score bit patterns (mod 2^32; llama2.c scores step by −1), as 4 byte planes,
 *   the N tokens' bytes, concatenated.
 *
 * On stories3M's 54,184-byte tok4096.bin deflate alone gives 24,690 bytes, columns then deflate 13,572.
 * `llama2cColumns` returns null for bytes that are not exactly such a file (the writer then deflates them as they
 * are); `llama2cFromColumns` rebuilds the file byte for byte.
 */
export function llama2cColumns(file: Uint8Array): Uint8Array<ArrayBuffer> | null {
  if (file.length < 4) return null;
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const starts: number[] = [];
  let o = 4;
  while (o < file.length) {
    if (o + 8 > file.length) return null;
    const len = dv.getInt32(o + 4, true);
    if (len < 0 || o + 8 + len > file.length) return null;
    starts.push(o);
    o += 8 + len;
  }
  const n = starts.length;
  let strBytes = 0;
  for (const s of starts) strBytes += dv.getInt32(s + 4, true);
  const out = new Uint8Array(8 + 8 * n + strBytes);
  const ov = new DataView(out.buffer);
  ov.setInt32(0, dv.getInt32(0, true), true);
  ov.setUint32(4, n, true);
  let prev = 0;
  let p = 8 + 8 * n;
  for (let i = 0; i < n; i++) {
    const s = starts[i]!;
    const len = dv.getUint32(s + 4, true);
    const bits = dv.getUint32(s, true);
    const delta = (bits - prev) >>> 0;
    prev = bits;
    for (let b = 0; b < 4; b++) {
      out[8 + b * n + i] = (len >>> (8 * b)) & 0xff;
      out[8 + 4 * n + b * n + i] = (delta >>> (8 * b)) & 0xff;
    }
    out.set(file.subarray(s + 8, s + 8 + len), p);
    p += len;
  }
  return out;
}

/** The inverse of `llama2cColumns`: the llama2.c tokenizer file, byte for byte. */
export function llama2cFromColumns(cols: Uint8Array, source = '<tokenizer>'): Uint8Array<ArrayBuffer> {
  const fail = (problem: string): never => {
    throw new UltraSketchError(ErrorCodes.BAD_HEADER, `packed tokenizer: ${problem}`, { source, hint: 'the bundle is corrupt; re-create or re-copy it' });
  };
  if (cols.length < 8) fail('shorter than its 8-byte head');
  const cv = new DataView(cols.buffer, cols.byteOffset, cols.byteLength);
  const n = cv.getUint32(4, true);
  if (8 + 8 * n > cols.length) fail(`${n} tokens do not fit in ${cols.length} bytes`);
  const lens = new Uint32Array(n);
  let strBytes = 0;
  for (let i = 0; i < n; i++) {
    let len = 0;
    for (let b = 0; b < 4; b++) len |= cols[8 + b * n + i]! << (8 * b);
    lens[i] = len >>> 0;
    strBytes += lens[i]!;
  }
  if (8 + 8 * n + strBytes !== cols.length) fail(`token lengths add up to ${strBytes} bytes, ${cols.length - 8 - 8 * n} are stored`);
  const out = new Uint8Array(4 + 8 * n + strBytes);
  const ov = new DataView(out.buffer);
  ov.setInt32(0, cv.getInt32(0, true), true);
  let bits = 0;
  let o = 4;
  let p = 8 + 8 * n;
  for (let i = 0; i < n; i++) {
    let delta = 0;
    for (let b = 0; b < 4; b++) delta |= cols[8 + 4 * n + b * n + i]! << (8 * b);
    bits = (bits + (delta >>> 0)) >>> 0;
    ov.setUint32(o, bits, true);
    ov.setUint32(o + 4, lens[i]!, true);
    out.set(cols.subarray(p, p + lens[i]!), o + 8);
    p += lens[i]!;
    o += 8 + lens[i]!;
  }
  return out;
}
