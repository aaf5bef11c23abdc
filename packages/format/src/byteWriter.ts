/**
 * A little-endian writer into a buffer of a size computed up front, with one cached DataView.
 *
 * Our writers always know the exact file size before writing (the same size functions the readers use to
 * validate), so the buffer is allocated once and never grows. Running past its end, or finishing short of
 * it, means the size computation and the writing code disagree: that is a bug in this package, not bad
 * user input, so it throws a plain RangeError rather than a typed UltraSketchError.
 *
 * Float arrays are copied byte for byte, which assumes a little-endian host (every platform we target;
 * the readers make the same assumption).
 */
export class ByteWriter {
  readonly bytes: Uint8Array<ArrayBuffer>;
  private readonly view: DataView;
  offset = 0;

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }

  /** Assert that `n` more bytes fit before writing them. */
  private room(n: number, what: string): number {
    const at = this.offset;
    if (at + n > this.bytes.byteLength) {
      throw new RangeError(`writer overflow: ${what} needs ${n} bytes at ${at} of ${this.bytes.byteLength}`);
    }
    this.offset = at + n;
    return at;
  }

  u8(v: number, what = 'u8'): void {
    this.view.setUint8(this.room(1, what), v);
  }

  i32(v: number, what = 'i32'): void {
    this.view.setInt32(this.room(4, what), v, true);
  }

  u32(v: number, what = 'u32'): void {
    this.view.setUint32(this.room(4, what), v, true);
  }

  u64(v: bigint, what = 'u64'): void {
    this.view.setBigUint64(this.room(8, what), v, true);
  }

  f32(v: number, what = 'f32'): void {
    this.view.setFloat32(this.room(4, what), v, true);
  }

  /** Copy raw bytes (any typed array's memory, viewed as bytes). */
  raw(src: ArrayBufferView, what = 'bytes'): void {
    const at = this.room(src.byteLength, what);
    this.bytes.set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength), at);
  }

  /** `n` bytes of padding, each `byte` (zero by default). */
  pad(n: number, byte = 0, what = 'padding'): void {
    const at = this.room(n, what);
    if (byte !== 0) this.bytes.fill(byte, at, at + n); // the buffer starts zeroed
  }

  /** The finished buffer; asserts that exactly the computed size was written. */
  finish(): Uint8Array<ArrayBuffer> {
    if (this.offset !== this.bytes.byteLength) {
      throw new RangeError(`writer underflow: wrote ${this.offset} of ${this.bytes.byteLength} bytes`);
    }
    return this.bytes;
  }
}
