import { ErrorCodes, UltraSketchError, f16BitsToF32 } from '@ultrasketch/core';

/**
 * ggml tensor types as GGUF files store them, and their decoding to float32.
 *
 * Every ggml type packs a row of `ne[0]` values into consecutive blocks of `blockSize` values taking
 * `typeSize` bytes each. The header reader needs the (blockSize, typeSize) of every type a real file may
 * hold, decodable or not, to check each tensor's byte range; only the types below marked `decodable` can
 * be turned into float32 here. The table follows ggml's type ids (ggml.h) and block sizes (ggml-common.h);
 * ids 4 and 5 (Q4_2/Q4_3) and 31–33, 36–38 (the repacked Q4_0_4_4 ... IQ4_NL_8_8) were removed from ggml
 * and no longer occur in files, so they are absent and read as unknown.
 */

export type GgmlTypeName =
  | 'F32'
  | 'F16'
  | 'Q4_0'
  | 'Q4_1'
  | 'Q5_0'
  | 'Q5_1'
  | 'Q8_0'
  | 'Q8_1'
  | 'Q2_K'
  | 'Q3_K'
  | 'Q4_K'
  | 'Q5_K'
  | 'Q6_K'
  | 'Q8_K'
  | 'IQ2_XXS'
  | 'IQ2_XS'
  | 'IQ3_XXS'
  | 'IQ1_S'
  | 'IQ4_NL'
  | 'IQ3_S'
  | 'IQ2_S'
  | 'IQ4_XS'
  | 'I8'
  | 'I16'
  | 'I32'
  | 'I64'
  | 'F64'
  | 'IQ1_M'
  | 'BF16'
  | 'TQ1_0'
  | 'TQ2_0'
  | 'MXFP4';

export interface GgmlTypeInfo {
  name: GgmlTypeName;
  /** ggml's numeric id, as stored in a GGUF tensor info. */
  id: number;
  /** Values per block (1 for plain element types). A row length must be a multiple of it. */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
  /** True when `dequantizeGgml` can decode this type. */
  decodable: boolean;
}

const QK_K = 256;

// [name, id, blockSize, typeSize, decodable]
const TABLE: ReadonlyArray<[GgmlTypeName, number, number, number, boolean]> = [
  ['F32', 0, 1, 4, true],
  ['F16', 1, 1, 2, true],
  ['Q4_0', 2, 32, 18, true],
  ['Q4_1', 3, 32, 20, false],
  ['Q5_0', 6, 32, 22, true],
  ['Q5_1', 7, 32, 24, true],
  ['Q8_0', 8, 32, 34, true],
  ['Q8_1', 9, 32, 36, false],
  ['Q2_K', 10, QK_K, 84, false],
  ['Q3_K', 11, QK_K, 110, false],
  ['Q4_K', 12, QK_K, 144, true],
  ['Q5_K', 13, QK_K, 176, true],
  ['Q6_K', 14, QK_K, 210, true],
  ['Q8_K', 15, QK_K, 292, false],
  ['IQ2_XXS', 16, QK_K, 66, false],
  ['IQ2_XS', 17, QK_K, 74, false],
  ['IQ3_XXS', 18, QK_K, 98, false],
  ['IQ1_S', 19, QK_K, 50, false],
  ['IQ4_NL', 20, 32, 18, false],
  ['IQ3_S', 21, QK_K, 110, false],
  ['IQ2_S', 22, QK_K, 82, false],
  ['IQ4_XS', 23, QK_K, 136, false],
  ['I8', 24, 1, 1, false],
  ['I16', 25, 1, 2, false],
  ['I32', 26, 1, 4, false],
  ['I64', 27, 1, 8, false],
  ['F64', 28, 1, 8, false],
  ['IQ1_M', 29, QK_K, 56, false],
  ['BF16', 30, 1, 2, true],
  ['TQ1_0', 34, QK_K, 54, false],
  ['TQ2_0', 35, QK_K, 66, false],
  ['MXFP4', 39, 32, 17, false],
];

const BY_ID = new Map<number, GgmlTypeInfo>(
  TABLE.map(([name, id, blockSize, typeSize, decodable]) => [id, { name, id, blockSize, typeSize, decodable }]),
);
const BY_NAME = new Map<GgmlTypeName, GgmlTypeInfo>([...BY_ID.values()].map((t) => [t.name, t]));

/** The type with ggml id `id`, or undefined when this reader does not know it. */
export function ggmlTypeById(id: number): GgmlTypeInfo | undefined {
  return BY_ID.get(id);
}

/** The type named `name` (e.g. 'Q4_K'). */
export function ggmlType(name: GgmlTypeName): GgmlTypeInfo {
  return BY_NAME.get(name)!;
}

/** The names of the types `dequantizeGgml` decodes, for messages and docs. */
export const DECODABLE_GGML_TYPES: readonly GgmlTypeName[] = TABLE.filter((t) => t[4]).map((t) => t[0]);

/** Bytes that `count` values of `type` occupy (`count` must be a multiple of the block size). */
export function ggmlByteLength(type: GgmlTypeInfo, count: number): number {
  return (count / type.blockSize) * type.typeSize;
}

/**
 * Decode `out.length` values of ggml type `type` from `src` into `out`. `src` must hold exactly the blocks
 * for that many values (so a caller can decode a whole tensor, or any run of whole rows, from just those
 * bytes). The arithmetic is ggml's, in float32, so the values are bit-identical to ggml's
 * `dequantize_row_*` and gguf-py's `dequantize`: each product whose exact value needs more than 24 bits is
 * rounded once with Math.fround, in the order ggml computes it.
 */
export function dequantizeGgml(type: GgmlTypeInfo, src: Uint8Array, out: Float32Array, what = '<tensor>'): void {
  const n = out.length;
  if (n % type.blockSize !== 0) {
    throw new UltraSketchError(ErrorCodes.BAD_DIMENSION, `${n} values of ${type.name} are not a whole number of ${type.blockSize}-value blocks`, {
      source: what,
      hint: 'decode whole rows; a GGUF row length is always a multiple of its type\'s block size',
    });
  }
  const expected = ggmlByteLength(type, n);
  if (src.byteLength !== expected) {
    throw new UltraSketchError(
      src.byteLength < expected ? ErrorCodes.TRUNCATED : ErrorCodes.BAD_ARGUMENT,
      `${n} values of ${type.name} take ${expected} bytes, got ${src.byteLength}`,
      { source: what, hint: 'pass exactly the bytes of the tensor (or of the rows) being decoded' },
    );
  }
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  switch (type.name) {
    case 'F32':
      return decodeF32(src, view, out);
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = f16BitsToF32(view.getUint16(2 * i, true));
      return;
    case 'BF16': {
      // bfloat16 is the top half of a float32: widen through the bit pattern (exact, NaN payloads kept).
      const bits = new Uint32Array(out.buffer, out.byteOffset, n);
      for (let i = 0; i < n; i++) bits[i] = view.getUint16(2 * i, true) << 16;
      return;
    }
    case 'Q8_0':
      return decodeQ8_0(src, view, out);
    case 'Q4_0':
      return decodeQ4_0(src, view, out);
    case 'Q5_0':
      return decodeQ5(src, view, out, false);
    case 'Q5_1':
      return decodeQ5(src, view, out, true);
    case 'Q4_K':
      return decodeQ4K(src, view, out);
    case 'Q5_K':
      return decodeQ5K(src, view, out);
    case 'Q6_K':
      return decodeQ6K(src, view, out);
    default:
      throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `tensor type ${type.name} cannot be decoded by this reader`, {
        source: what,
        hint: `decodable types are ${DECODABLE_GGML_TYPES.join(', ')}; re-quantize the model to one of them (llama-quantize) or use its F16/BF16 GGUF`,
      });
  }
}

function decodeF32(src: Uint8Array, view: DataView, out: Float32Array): void {
  // Fast path when the bytes happen to be 4-byte aligned in memory (they are in a whole-file read, since
  // GGUF aligns tensor data to 32 bytes); otherwise read through the DataView. Little-endian host assumed,
  // as by the safetensors reader.
  if (src.byteOffset % 4 === 0) {
    out.set(new Float32Array(src.buffer, src.byteOffset, out.length));
    return;
  }
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
}

/** Q8_0: 32 values per 34-byte block: f16 d, then 32 int8 q; x = d·q. */
function decodeQ8_0(src: Uint8Array, view: DataView, out: Float32Array): void {
  const blocks = out.length / 32;
  for (let b = 0; b < blocks; b++) {
    const at = b * 34;
    const d = f16BitsToF32(view.getUint16(at, true));
    const y = b * 32;
    for (let j = 0; j < 32; j++) out[y + j] = d * ((src[at + 2 + j]! << 24) >> 24);
  }
}

/** Q4_0: 32 values per 18-byte block: f16 d, 16 bytes of nibbles (byte j: value j low, value j+16 high); x = d·(q − 8). */
function decodeQ4_0(src: Uint8Array, view: DataView, out: Float32Array): void {
  const blocks = out.length / 32;
  for (let b = 0; b < blocks; b++) {
    const at = b * 18;
    const d = f16BitsToF32(view.getUint16(at, true));
    const y = b * 32;
    for (let j = 0; j < 16; j++) {
      const q = src[at + 2 + j]!;
      out[y + j] = d * ((q & 0x0f) - 8);
      out[y + j + 16] = d * ((q >> 4) - 8);
    }
  }
}

/**
 * Q5_0 (22 bytes: f16 d, u32 fifth bits, 16 bytes of nibbles; x = d·(q − 16)) and Q5_1 (24 bytes: f16 d,
 * f16 m, u32 fifth bits, nibbles; x = d·q + m). Bit j of the little-endian u32 is the fifth bit of value j.
 */
function decodeQ5(src: Uint8Array, view: DataView, out: Float32Array, withMin: boolean): void {
  const size = withMin ? 24 : 22;
  const blocks = out.length / 32;
  for (let b = 0; b < blocks; b++) {
    const at = b * size;
    const d = f16BitsToF32(view.getUint16(at, true));
    const m = withMin ? f16BitsToF32(view.getUint16(at + 2, true)) : 0;
    const hOff = withMin ? 4 : 2;
    const high = view.getUint32(at + hOff, true);
    const qs = at + hOff + 4;
    const y = b * 32;
    for (let j = 0; j < 16; j++) {
      const q = src[qs + j]!;
      const lo = (q & 0x0f) | (((high >>> j) & 1) << 4);
      const hi = (q >> 4) | (((high >>> (j + 16)) & 1) << 4);
      if (withMin) {
        // d·q is exact (11 + 5 bits), so the one rounding is the sum's, on the store: ggml's float32 x·d + m.
        out[y + j] = d * lo + m;
        out[y + j + 16] = d * hi + m;
      } else {
        out[y + j] = d * (lo - 16);
        out[y + j + 16] = d * (hi - 16);
      }
    }
  }
}

/**
 * The eight 6-bit (scale, min) pairs of a Q4_K/Q5_K super-block, packed into 12 bytes: pairs 0–3 are the
 * low 6 bits of bytes 0–3 (scales) and 4–7 (mins); pairs 4–7 take their low 4 bits from bytes 8–11 (scale
 * in the low nibble, min in the high) and their top 2 bits from the top 2 bits of bytes 0–3 (scales) and
 * 4–7 (mins). Written into `sc` and `mn`.
 */
function unpackScaleMins(src: Uint8Array, at: number, sc: Uint8Array, mn: Uint8Array): void {
  for (let j = 0; j < 4; j++) {
    sc[j] = src[at + j]! & 63;
    mn[j] = src[at + j + 4]! & 63;
  }
  for (let j = 4; j < 8; j++) {
    sc[j] = (src[at + j + 4]! & 0x0f) | ((src[at + j - 4]! >> 6) << 4);
    mn[j] = (src[at + j + 4]! >> 4) | ((src[at + j]! >> 6) << 4);
  }
}

/**
 * Q4_K: 256 values per 144-byte super-block: f16 d, f16 dmin, 12 bytes of scales/mins, 128 bytes of
 * nibbles. Each 64 values share 32 bytes: the low nibbles are the first 32 values (sub-block 2i), the high
 * nibbles the next 32 (sub-block 2i+1). x = (d·scale)·q − dmin·min, one float32 rounding in the subtraction
 * (the products are exact in float32: 11 + 6 + 4 bits).
 */
function decodeQ4K(src: Uint8Array, view: DataView, out: Float32Array): void {
  const sc = new Uint8Array(8);
  const mn = new Uint8Array(8);
  const blocks = out.length / QK_K;
  for (let b = 0; b < blocks; b++) {
    const at = b * 144;
    const d = f16BitsToF32(view.getUint16(at, true));
    const dmin = f16BitsToF32(view.getUint16(at + 2, true));
    unpackScaleMins(src, at + 4, sc, mn);
    const qs = at + 16;
    for (let chunk = 0; chunk < 4; chunk++) {
      const d1 = d * sc[2 * chunk]!;
      const m1 = dmin * mn[2 * chunk]!;
      const d2 = d * sc[2 * chunk + 1]!;
      const m2 = dmin * mn[2 * chunk + 1]!;
      const y = b * QK_K + chunk * 64;
      const q = qs + chunk * 32;
      for (let l = 0; l < 32; l++) {
        const byte = src[q + l]!;
        out[y + l] = d1 * (byte & 0x0f) - m1;
        out[y + l + 32] = d2 * (byte >> 4) - m2;
      }
    }
  }
}

/**
 * Q5_K: 256 values per 176-byte super-block: f16 d, f16 dmin, 12 bytes of scales/mins, 32 bytes of fifth
 * bits, 128 bytes of nibbles laid out as Q4_K. The fifth bit of value 32·s + j is bit s of byte j of the
 * fifth-bit array. x = (d·scale)·q − dmin·min.
 */
function decodeQ5K(src: Uint8Array, view: DataView, out: Float32Array): void {
  const sc = new Uint8Array(8);
  const mn = new Uint8Array(8);
  const blocks = out.length / QK_K;
  for (let b = 0; b < blocks; b++) {
    const at = b * 176;
    const d = f16BitsToF32(view.getUint16(at, true));
    const dmin = f16BitsToF32(view.getUint16(at + 2, true));
    unpackScaleMins(src, at + 4, sc, mn);
    const qh = at + 16;
    const qs = at + 48;
    for (let chunk = 0; chunk < 4; chunk++) {
      const s1 = 2 * chunk;
      const s2 = 2 * chunk + 1;
      const d1 = d * sc[s1]!;
      const m1 = dmin * mn[s1]!;
      const d2 = d * sc[s2]!;
      const m2 = dmin * mn[s2]!;
      const y = b * QK_K + chunk * 64;
      const q = qs + chunk * 32;
      for (let l = 0; l < 32; l++) {
        const byte = src[q + l]!;
        const h = src[qh + l]!;
        out[y + l] = d1 * ((byte & 0x0f) | (((h >> s1) & 1) << 4)) - m1;
        out[y + l + 32] = d2 * ((byte >> 4) | (((h >> s2) & 1) << 4)) - m2;
      }
    }
  }
}

/**
 * Q6_K: 256 values per 210-byte super-block: 128 bytes of low nibbles (ql), 64 bytes of 2-bit highs (qh),
 * 16 int8 scales (one per 16 values), f16 d. Per 128 values (half h): for l < 32, ql[64h + l] holds values
 * l (low nibble) and l+64 (high nibble), ql[64h + 32 + l] holds l+32 and l+96, and qh[32h + l] holds the
 * top two bits of l, l+32, l+64, l+96 in bit pairs 0, 2, 4, 6. x = d·scale·(q − 32), rounded once (the
 * exact product can need 25 bits).
 */
function decodeQ6K(src: Uint8Array, view: DataView, out: Float32Array): void {
  const blocks = out.length / QK_K;
  for (let b = 0; b < blocks; b++) {
    const at = b * 210;
    const d = f16BitsToF32(view.getUint16(at + 208, true));
    for (let half = 0; half < 2; half++) {
      const ql = at + 64 * half;
      const qh = at + 128 + 32 * half;
      const scales = at + 192 + 8 * half;
      const y = b * QK_K + 128 * half;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const lowA = src[ql + l]!;
        const lowB = src[ql + l + 32]!;
        const h = src[qh + l]!;
        const q1 = ((lowA & 0x0f) | ((h & 3) << 4)) - 32;
        const q2 = ((lowB & 0x0f) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((lowA >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((lowB >> 4) | (((h >> 6) & 3) << 4)) - 32;
        // d·scale is exact in double and float32 alike; the product with q is rounded once, on the store.
        out[y + l] = d * ((src[scales + is]! << 24) >> 24) * q1;
        out[y + l + 32] = d * ((src[scales + is + 2]! << 24) >> 24) * q2;
        out[y + l + 64] = d * ((src[scales + is + 4]! << 24) >> 24) * q3;
        out[y + l + 96] = d * ((src[scales + is + 6]! << 24) >> 24) * q4;
      }
    }
  }
}
