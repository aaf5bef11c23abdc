/**
 * Build GGUF files byte by byte for tests, independently of the reader under test: every field is written
 * exactly as given (counts, lengths, offsets and types may all lie), so hostile files are easy to make.
 */
import { concat } from './helpers.js';

const enc = new TextEncoder();

/** GGUF value type ids. */
export const T = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

/** ggml tensor type ids used in the tests. */
export const G = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 8, Q4_K: 12, BF16: 30 } as const;

function bytesOf(size: number, set: (v: DataView) => void): Uint8Array {
  const out = new Uint8Array(size);
  set(new DataView(out.buffer));
  return out;
}

export const u8 = (v: number) => Uint8Array.of(v);
export const u16 = (v: number) => bytesOf(2, (d) => d.setUint16(0, v, true));
export const u32 = (v: number) => bytesOf(4, (d) => d.setUint32(0, v, true));
export const i32 = (v: number) => bytesOf(4, (d) => d.setInt32(0, v, true));
export const u64 = (v: bigint | number) => bytesOf(8, (d) => d.setBigUint64(0, BigInt(v), true));
export const i64 = (v: bigint) => bytesOf(8, (d) => d.setBigInt64(0, v, true));
export const f32 = (v: number) => bytesOf(4, (d) => d.setFloat32(0, v, true));
export const f64 = (v: number) => bytesOf(8, (d) => d.setFloat64(0, v, true));

/** A GGUF string: u64 byte length, then the bytes (a string is UTF-8 encoded; raw bytes are kept). */
export function str(s: string | Uint8Array, declaredLength?: bigint): Uint8Array {
  const b = typeof s === 'string' ? enc.encode(s) : s;
  return concat(u64(declaredLength ?? BigInt(b.byteLength)), b);
}

/** One metadata entry: key, u32 type, value bytes. */
export function kv(key: string | Uint8Array, type: number, value: Uint8Array): Uint8Array {
  return concat(str(key), u32(type), value);
}

/** An array value: u32 element type, u64 count (may lie), then the element bytes. */
export function arr(elementType: number, count: bigint | number, ...elements: Uint8Array[]): Uint8Array {
  return concat(u32(elementType), u64(count), ...elements);
}

/** One tensor info: name, u32 n_dims, u64 dims (innermost first), u32 type, u64 offset. */
export function tensorInfo(name: string, dims: Array<bigint | number>, type: number, offset: bigint | number, nDims = dims.length): Uint8Array {
  return concat(str(name), u32(nDims), ...dims.map((d) => u64(d)), u32(type), u64(offset));
}

export interface RawGguf {
  magic?: Uint8Array;
  version?: number;
  /** Defaults to the number of infos. */
  tensorCount?: bigint;
  /** Defaults to the number of kvs. */
  kvCount?: bigint;
  kvs?: Uint8Array[];
  infos?: Uint8Array[];
  /** Pad the header to this before the data (default 32; 0 for no padding). */
  alignment?: number;
  data?: Uint8Array;
}

/** A file from parts, written as given. */
export function rawGguf(p: RawGguf): Uint8Array<ArrayBuffer> {
  const kvs = p.kvs ?? [];
  const infos = p.infos ?? [];
  const head = concat(
    p.magic ?? enc.encode('GGUF'),
    u32(p.version ?? 3),
    u64(p.tensorCount ?? BigInt(infos.length)),
    u64(p.kvCount ?? BigInt(kvs.length)),
    ...kvs,
    ...infos,
  );
  const align = p.alignment ?? 32;
  const pad = align > 0 ? (align - (head.byteLength % align)) % align : 0;
  const out = concat(head, new Uint8Array(pad), p.data ?? new Uint8Array());
  return new Uint8Array(out);
}

export interface SimpleTensor {
  name: string;
  dims: number[];
  type: number;
  data: Uint8Array;
}

/** A valid file: tensors packed in order, each aligned, offsets computed. */
export function simpleGguf(tensors: SimpleTensor[], kvs: Uint8Array[] = [], alignment = 32, version = 3): Uint8Array<ArrayBuffer> {
  let at = 0;
  const infos: Uint8Array[] = [];
  const parts: Uint8Array[] = [];
  for (const t of tensors) {
    const pad = (alignment - (at % alignment)) % alignment;
    if (pad) parts.push(new Uint8Array(pad));
    at += pad;
    infos.push(tensorInfo(t.name, t.dims, t.type, at));
    parts.push(t.data);
    at += t.data.byteLength;
  }
  return rawGguf({ version, kvs, infos, alignment, data: concat(...parts) });
}

/** Little-endian float32 bytes. */
export function f32Data(values: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(values).buffer);
}

/** Little-endian u16 bytes (f16 or bf16 bit patterns). */
export function u16Data(bits: number[]): Uint8Array {
  return new Uint8Array(new Uint16Array(bits).buffer);
}

/** Where tensor `name`'s info fields sit in a file's header (found by its length-prefixed name). */
export function tensorInfoFields(bytes: Uint8Array, name: string): { nDims: number; dims: number; type: number; offset: number } {
  const needle = str(name);
  outer: for (let i = 24; i + needle.byteLength <= bytes.byteLength; i++) {
    for (let j = 0; j < needle.byteLength; j++) if (bytes[i + j] !== needle[j]) continue outer;
    const nDimsAt = i + needle.byteLength;
    const nDims = new DataView(bytes.buffer, bytes.byteOffset).getUint32(nDimsAt, true);
    const dims = nDimsAt + 4;
    const type = dims + 8 * nDims;
    return { nDims: nDimsAt, dims, type, offset: type + 4 };
  }
  throw new Error(`tensor info ${name} not found`);
}

/** A copy of `bytes` with `value` written at `at`. */
export function patch(bytes: Uint8Array, at: number, value: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes);
  out.set(value, at);
  return out;
}
