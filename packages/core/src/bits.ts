/**
 * Tight k-bit code packing, shared by codecs: code i occupies bits [i·k, (i+1)·k) of one little-endian
 * bitstream (LSB-first within each byte), so a matrix of n codes takes exactly ⌈n·k / 8⌉ bytes.
 * For k ∈ {1, 2, 4, 8} a code never straddles a byte; for other k it may, and readers handle that.
 */

/** Pack codes (each < 2^k) into a tight LSB-first bitstream of ⌈n·k/8⌉ bytes. */
export function packCodes(codes: ArrayLike<number>, k: number): Uint8Array<ArrayBuffer> {
  checkWidth(k);
  const out = new Uint8Array(Math.ceil((codes.length * k) / 8));
  let bit = 0;
  for (let i = 0; i < codes.length; i++, bit += k) {
    let v = codes[i]!;
    let pos = bit;
    let left = k;
    while (left > 0) {
      const byte = pos >>> 3;
      const shift = pos & 7;
      const take = Math.min(left, 8 - shift);
      out[byte] = out[byte]! | ((v & ((1 << take) - 1)) << shift);
      v >>>= take;
      pos += take;
      left -= take;
    }
  }
  return out;
}

/** Read code i of width k from a packed bitstream. */
export function readCode(packed: Uint8Array, i: number, k: number): number {
  const bit = i * k;
  const byte = bit >>> 3;
  const shift = bit & 7;
  // Up to 16 bits starting at `shift` cover any k ≤ 8 (shift ≤ 7, k ≤ 8 → at most 15 bits).
  const window = packed[byte]! | ((byte + 1 < packed.length ? packed[byte + 1]! : 0) << 8);
  return (window >>> shift) & ((1 << k) - 1);
}

/** Unpack n codes of width k. */
export function unpackCodes(packed: Uint8Array, n: number, k: number): Uint8Array<ArrayBuffer> {
  checkWidth(k);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = readCode(packed, i, k);
  return out;
}

/** Bytes needed for n codes of width k. */
export function packedBytes(n: number, k: number): number {
  return Math.ceil((n * k) / 8);
}

function checkWidth(k: number): void {
  if (!Number.isInteger(k) || k < 1 || k > 8) throw new RangeError(`code width ${k} must be 1..8 bits`);
}
