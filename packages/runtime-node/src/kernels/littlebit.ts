import type { LittleBitParams, LittleBitPath } from '@ultrasketch/littlebit';
import type { Linear } from '@ultrasketch/model';
import { f16ArrayToF32 } from './float.js';

/**
 * `littlebit` kernel: y = Σ_paths h ⊙ (U_s (ℓ ⊙ (V_sᵀ (g ⊙ x)))), computed from the packed sign bits —
 * additions and subtractions only for the two ±1 products, three element-wise scalings, never a dense Ŵ.
 *
 * Each ±1 product is "rows of packed signs dotted with a vector" (V_sᵀ: r rows of `in` bits; U_s: out rows
 * of r bits), done with subset-sum tables: for a vector x and every group of 8 (or 4) consecutive columns,
 * T[m] = Σ_i (bit i of m ? −x_i : +x_i) for all 256 (16) bit patterns m, built with one subtraction per
 * entry (T[2^i + m] = T[m] − 2·x_i). A row then costs one table lookup and one addition per 8 (4) signs.
 * Building a byte table costs 256 additions per 8 columns, so byte tables pay off for many rows (> 224),
 * nibble tables for few (the V_sᵀ stage at low ranks): the choice is made per stage from that count.
 *
 * Rows must start on a byte boundary for the lookups. The stored bitstreams are unpadded (docs/littlebit.md):
 * when the row length is a multiple of 8 (in % 8 == 0, or r % 8 == 0 as 'multiple8' rank rounding gives)
 * the stored bytes are used in place; otherwise they are re-packed once, at kernel construction, into rows
 * padded to whole bytes (at most 7 extra bits per row — a bit copy, not a dense expansion). Padding bits
 * are 0 and meet zero-padded inputs, so they contribute nothing.
 *
 * Tables are float32 (each entry sums at most 8 terms); every dot product accumulates in float64.
 */

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Byte tables above this many rows per stage, nibble tables below (256 + R < 2·(16 + R) ⇔ R > 224). */
const BYTE_TABLE_MIN_ROWS = 225;

/**
 * The subset-sum table of the `width` inputs x[xo ..] (8: a byte table, 4: a nibble table) into T[base ..]:
 * T[m] = Σ_i (bit i of m ? −x_i : +x_i) for the 2^width patterns m — T[0] the plain sum (left to right, in
 * float64), then T[2^i + m] = T[m] − 2·x_i.
 */
function fillSignTable(T: Float32Array, base: number, x: Float64Array, xo: number, width: number): void {
  let sum = x[xo]!;
  for (let i = 1; i < width; i++) sum += x[xo + i]!;
  T[base] = sum;
  for (let i = 0, half = 1; i < width; i++, half <<= 1) {
    const d = 2 * x[xo + i]!;
    for (let m = 0; m < half; m++) T[base + half + m] = T[base + m]! - d;
  }
}

/** A matrix of ±1 entries [rows, len] as byte-aligned packed rows, dotted with vectors via subset-sum tables. */
class SignRows {
  readonly rowBytes: number;
  /** Input length padded to whole bytes: callers zero the tail of their vectors. */
  readonly paddedLen: number;
  private readonly bytes: Uint8Array;
  private readonly byteTables: boolean;
  private readonly table: Float32Array;

  constructor(
    words: Uint32Array,
    readonly rows: number,
    readonly len: number,
  ) {
    this.rowBytes = Math.ceil(len / 8);
    this.paddedLen = this.rowBytes * 8;
    this.bytes = byteAlignedRows(words, rows, len);
    this.byteTables = rows >= BYTE_TABLE_MIN_ROWS;
    this.table = new Float32Array(this.byteTables ? this.rowBytes * 256 : this.rowBytes * 32);
  }

  /** out[k] = Σ_j s_kj · x[j] for every row k; x has `paddedLen` entries, zero past `len`. */
  dot(x: Float64Array, out: Float64Array): void {
    if (this.byteTables) this.dotBytes(x, out);
    else this.dotNibbles(x, out);
  }

  private dotBytes(x: Float64Array, out: Float64Array): void {
    const T = this.table;
    const nb = this.rowBytes;
    for (let b = 0; b < nb; b++) fillSignTable(T, b * 256, x, b * 8, 8);
    const B = this.bytes;
    for (let k = 0; k < this.rows; k++) {
      const o = k * nb;
      let s = 0;
      let b = 0;
      for (; b + 3 < nb; b += 4) {
        s += T[b * 256 + B[o + b]!]! + T[(b + 1) * 256 + B[o + b + 1]!]! + T[(b + 2) * 256 + B[o + b + 2]!]! + T[(b + 3) * 256 + B[o + b + 3]!]!;
      }
      for (; b < nb; b++) s += T[b * 256 + B[o + b]!]!;
      out[k] = s;
    }
  }

  private dotNibbles(x: Float64Array, out: Float64Array): void {
    const T = this.table;
    const nb = this.rowBytes;
    for (let c = 0; c < 2 * nb; c++) fillSignTable(T, c * 16, x, c * 4, 4);
    const B = this.bytes;
    for (let k = 0; k < this.rows; k++) {
      const o = k * nb;
      let s = 0;
      for (let b = 0; b < nb; b++) {
        const v = B[o + b]!;
        s += T[b * 32 + (v & 15)]! + T[b * 32 + 16 + (v >>> 4)]!;
      }
      out[k] = s;
    }
  }
}

/**
 * A packed ±1 matrix [rows, len] (LSB-first 32-bit words, unpadded rows) as rows of ⌈len/8⌉ whole bytes:
 * the stored bytes themselves when len % 8 == 0 (little-endian hosts), else a re-packed copy (padding bits 0).
 */
export function byteAlignedRows(words: Uint32Array, rows: number, len: number): Uint8Array {
  const stream = LITTLE_ENDIAN
    ? new Uint8Array(words.buffer, words.byteOffset, words.byteLength)
    : Uint8Array.from({ length: words.length * 4 }, (_, i) => (words[i >>> 2]! >>> (8 * (i & 3))) & 0xff);
  return byteAlignedRowsOfBytes(stream, rows, len);
}

/** The same for an LSB-first byte stream (e.g. the `binary` codec's signs). */
export function byteAlignedRowsOfBytes(stream: Uint8Array, rows: number, len: number): Uint8Array {
  return len % 8 === 0 ? stream : repackRows(stream, rows, len, Math.ceil(len / 8));
}

/** Copy `rows` rows of `len` bits from an unpadded LSB-first bitstream into rows of `rowBytes` whole bytes. */
function repackRows(stream: Uint8Array, rows: number, len: number, rowBytes: number): Uint8Array {
  const out = new Uint8Array(rows * rowBytes);
  for (let k = 0; k < rows; k++) {
    for (let b = 0; b < rowBytes; b++) {
      const pos = k * len + 8 * b; // first bit of this output byte
      const at = pos >>> 3;
      let v = ((stream[at] ?? 0) | ((stream[at + 1] ?? 0) << 8)) >>> (pos & 7);
      const left = len - 8 * b;
      if (left < 8) v &= (1 << left) - 1;
      out[k * rowBytes + b] = v & 0xff;
    }
  }
  return out;
}

class PathKernel {
  private readonly v: SignRows; // V_sᵀ [r, in]
  private readonly u: SignRows; // U_s [out, r]
  private readonly h: Float32Array;
  private readonly g: Float32Array;
  private readonly l: Float32Array;
  private readonly xs: Float64Array; // g ⊙ x, zero-padded
  private readonly z: Float64Array; // V_sᵀ (g ⊙ x)
  private readonly ws: Float64Array; // ℓ ⊙ z, zero-padded
  private readonly yy: Float64Array; // U_s (ℓ ⊙ z)

  constructor(p: LittleBitPath, out: number, inp: number, rank: number) {
    this.h = f16ArrayToF32(p.h);
    this.g = f16ArrayToF32(p.g);
    this.l = f16ArrayToF32(p.l);
    this.v = new SignRows(p.vSigns, rank, inp);
    this.u = new SignRows(p.uSigns, out, rank);
    this.xs = new Float64Array(this.v.paddedLen);
    this.z = new Float64Array(rank);
    this.ws = new Float64Array(this.u.paddedLen);
    this.yy = new Float64Array(out);
  }

  /** acc[i] += h_i · (U_s (ℓ ⊙ (V_sᵀ (g ⊙ x))))_i for the input row x[xo, xo + in). */
  run(x: Float32Array, xo: number, acc: Float64Array): void {
    const { g, l, h, xs, z, ws, yy } = this;
    for (let j = 0; j < g.length; j++) xs[j] = g[j]! * x[xo + j]!;
    this.v.dot(xs, z);
    for (let k = 0; k < l.length; k++) ws[k] = l[k]! * z[k]!;
    this.u.dot(ws, yy);
    for (let i = 0; i < h.length; i++) acc[i] = acc[i]! + h[i]! * yy[i]!;
  }
}

class LittleBitLinear implements Linear {
  readonly outFeatures: number;
  readonly inFeatures: number;
  private readonly paths: PathKernel[];
  private readonly acc: Float64Array;

  constructor(p: LittleBitParams) {
    this.outFeatures = p.rows;
    this.inFeatures = p.cols;
    this.paths = p.paths.map((path) => new PathKernel(path, p.rows, p.cols, p.rank));
    this.acc = new Float64Array(p.rows);
  }

  apply(x: Float32Array, y: Float32Array, n: number): void {
    const acc = this.acc;
    for (let t = 0; t < n; t++) {
      acc.fill(0);
      for (const path of this.paths) path.run(x, t * this.inFeatures, acc);
      const yo = t * this.outFeatures;
      for (let i = 0; i < this.outFeatures; i++) y[yo + i] = acc[i]!;
    }
  }
}

/** The fused LittleBit linear for stored `littlebit` params. */
export function littlebitKernel(p: LittleBitParams): Linear {
  return new LittleBitLinear(p);
}
