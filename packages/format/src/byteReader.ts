import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';

/**
 * A bounds-checked little-endian cursor over bytes. Every read checks that the bytes exist first and
 * throws a TRUNCATED error naming the source and what was being read, instead of a bare RangeError.
 */
export class ByteReader {
  readonly view: DataView;
  offset = 0;

  constructor(
    readonly bytes: Uint8Array,
    readonly source: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number {
    return this.bytes.byteLength - this.offset;
  }

  /**
   * Throw TRUNCATED unless `n` more bytes are available. A length that is not a whole, non-negative number is
   * refused too: lengths come from file fields, and a negative one would move the cursor backwards (out of the
   * bytes), a fractional or NaN one would reach a typed-array constructor as a RangeError (found by
   * fuzz-readers.test.ts).
   */
  need(n: number, what: string): void {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new UltraSketchError(ErrorCodes.BAD_HEADER, `${what} has an invalid length ${n} at offset ${this.offset}`, {
        source: this.source,
        hint: 'the file is corrupt',
      });
    }
    if (n > this.remaining) {
      throw new UltraSketchError(
        ErrorCodes.TRUNCATED,
        `file is truncated: ${what} needs ${n} bytes at offset ${this.offset}, only ${this.remaining} remain`,
        { source: this.source, hint: 'the file is incomplete or corrupt; re-export or re-download it' },
      );
    }
  }

  i32(what: string): number {
    this.need(4, what);
    const v = this.view.getInt32(this.offset, true);
    this.offset += 4;
    return v;
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.offset, true);
    this.offset += 4;
    return v;
  }

  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.offset++);
  }

  f32(what: string): number {
    this.need(4, what);
    const v = this.view.getFloat32(this.offset, true);
    this.offset += 4;
    return v;
  }

  /** Copy `n` little-endian float32 values into a new, aligned Float32Array. */
  f32Array(n: number, what: string): Float32Array<ArrayBuffer> {
    // Checked as a count first: n = 0.25 would pass as a 1-byte length and then make a fractional-length array.
    this.need(n, what);
    this.need(n * 4, what);
    const out = new Float32Array(n);
    new Uint8Array(out.buffer).set(this.bytes.subarray(this.offset, this.offset + n * 4));
    this.offset += n * 4;
    return out;
  }

  /** A view (no copy) of the next `n` bytes. */
  take(n: number, what: string): Uint8Array {
    this.need(n, what);
    const out = this.bytes.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }
}
