import { ErrorCodes, UltraSketchError, type ErrorCode } from '@ultrasketch/core';
import { LIMITS } from './limits.js';
import { decodeUtf8Strict } from './utf8.js';
import {
  DECODABLE_GGML_TYPES,
  dequantizeGgml,
  ggmlByteLength,
  ggmlTypeById,
  type GgmlTypeInfo,
  type GgmlTypeName,
} from './ggufQuants.js';

/**
 * GGUF (llama.cpp's model file), versions 2 and 3, read with every size checked before it is used.
 *
 * Layout (little-endian): magic "GGUF"; u32 version; u64 tensor count; u64 metadata count; the metadata
 * key/values (key: u64 length + UTF-8 bytes; u32 value type; the value); the tensor infos (name; u32
 * n_dims; n_dims × u64 dims, innermost first; u32 ggml type; u64 offset relative to the data section);
 * padding to `general.alignment` (default 32); the data section. Version 1 used u32 counts and lengths
 * and is not read; version 3 only added big-endian files, which are refused (their version field reads
 * byte-swapped).
 *
 * Why not `@huggingface/gguf` (0.4.6, inspected with npm pack) for the metadata layer: its entry point
 * `gguf(uri)` takes a URL or, in Node only, a local path (through a dynamic import of node:fs), and fetches
 * ranges itself; there is no function that parses bytes we already hold, which the streaming loader and
 * the browser both need. Its errors are plain `Error`s (no code, no source, no hint), its limits are fixed
 * constants we cannot tighten in tests, it decodes strings non-fatally (invalid UTF-8 silently becomes
 * U+FFFD), it does not check tensor offsets against the file, alignment, overlaps or tensor types, it
 * decodes no tensor data, and it pulls in `@huggingface/tasks`. The format itself is small, so we read it
 * here, with the same discipline as the safetensors reader.
 *
 * Streaming: `parseGgufHeader(head, fileSize)` parses from the first bytes of a file; when the header runs
 * past `head` it answers how many bytes to read instead of failing, so a loader can read the header, then
 * each tensor's bytes (`tensor.fileOffset`, `tensor.byteLength`) and decode them one at a time with
 * `decodeGgufTensor`. `readGguf` does both for a whole file held in memory.
 */

// ---------------------------------------------------------------------------------------------- limits

/**
 * Limits of the GGUF reader. (They live here while limits.ts is being reworked; they belong in LIMITS.)
 * A hostile header can claim any count; each is refused against these and against the bytes the file
 * actually has before anything sized by it is allocated.
 */
export const GGUF_LIMITS = {
  /** Largest header (metadata + tensor infos), in bytes. Real headers are ~0.1–30 MB (big vocabularies). */
  maxHeaderBytes: 256 * 1024 * 1024,
  /** Most metadata key/values. Real files have tens. */
  maxKvCount: 1 << 16,
  /** Longest string (key, value, tensor name, array element), in bytes. Chat templates and embedded tokenizer JSON are the long ones. */
  maxStringBytes: 64 * 1024 * 1024,
  /** Most elements in one metadata array (vocabularies and merge lists: ~10^5–10^6). */
  maxArrayLength: 1 << 24,
  /** Deepest nesting of arrays inside arrays (llama.cpp writes none; the format allows them). */
  maxArrayDepth: 4,
  /** Most tensors. */
  maxTensorCount: LIMITS.maxTensorCount,
  /** Most dimensions of one tensor (ggml's GGML_MAX_DIMS). */
  maxTensorRank: 4,
  /** Largest single dimension. */
  maxTensorDim: LIMITS.maxTensorDim,
  /** Largest tensor, in elements. */
  maxTensorElements: LIMITS.maxTensorElements,
} as const;

export type GgufLimits = { readonly [K in keyof typeof GGUF_LIMITS]: number };

// ---------------------------------------------------------------------------------------------- types

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** GGUF metadata value types, by their stored id. */
export const GGUF_VALUE_TYPES = [
  'uint8',
  'int8',
  'uint16',
  'int16',
  'uint32',
  'int32',
  'float32',
  'bool',
  'string',
  'array',
  'uint64',
  'int64',
  'float64',
] as const;
export type GgufValueType = (typeof GGUF_VALUE_TYPES)[number];

/** An array value: numeric elements as a typed array, bools, strings, or nested arrays. */
export type GgufArrayValues =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | boolean[]
  | string[]
  | GgufArray[];

export interface GgufArray {
  elementType: GgufValueType;
  values: GgufArrayValues;
}

/** A scalar (64-bit integers as bigint, so they are exact), a string, or an array. */
export type GgufValue = number | bigint | boolean | string | GgufArray;

export interface GgufMetadataEntry {
  type: GgufValueType;
  value: GgufValue;
}

export interface GgufTensorInfo {
  name: string;
  /** Dimensions as stored: innermost (fastest-varying) first, i.e. ggml's ne. A [rows, cols] matrix is [cols, rows]. */
  dims: number[];
  /** Dimensions outermost first (row-major, as safetensors and PyTorch write them): `dims` reversed. */
  shape: number[];
  type: GgmlTypeName;
  /** ggml's numeric type id. */
  typeId: number;
  /** Offset of the data relative to the data section, as stored. */
  offset: number;
  /** Absolute offset of the data in the file (data section start + offset). */
  fileOffset: number;
  byteLength: number;
  elements: number;
  /** Values per row (dims[0]) and bytes per row: whole rows are whole blocks, so a row range can be decoded alone. */
  rowLength: number;
  rowBytes: number;
}

export interface GgufHeader {
  version: 2 | 3;
  /** Metadata in file order. */
  metadata: Map<string, GgufMetadataEntry>;
  /** Tensor infos in file order. */
  tensors: Map<string, GgufTensorInfo>;
  /** `general.alignment`, or 32 when absent. */
  alignment: number;
  /** Where the tensor infos end (before the padding). */
  headerBytes: number;
  /** Where the data section starts: `headerBytes` rounded up to `alignment`. */
  dataOffset: number;
  fileSize: number;
}

/** The result of parsing from the start of a file: the header, or how many bytes it needs. */
export type GgufHeaderParse =
  | { done: true; header: GgufHeader }
  | {
      done: false;
      /** Call again with at least this many bytes from the start of the file. */
      needBytes: number;
    };

/** A whole GGUF file in memory: its header and bytes. */
export interface GgufFile extends GgufHeader {
  bytes: Uint8Array;
}

// ---------------------------------------------------------------------------------------------- errors

const NOT_GGUF = 'the file is not a valid GGUF file; re-download or re-convert it';
const TRUNCATED_HINT = 'the file is incomplete or corrupt; re-download it';

function fail(code: ErrorCode, problem: string, source: string, hint = NOT_GGUF): never {
  throw new UltraSketchError(code, problem, { source, hint });
}

/** Thrown inside the parser when `head` ends before the file does; turned into `{ done: false }`. */
class NeedMore {
  constructor(readonly end: number) {}
}

// ---------------------------------------------------------------------------------------------- cursor

/**
 * A cursor over the first bytes of a file of known size. A read past the end of the FILE is TRUNCATED,
 * a read past `maxHeaderBytes` is LIMIT_EXCEEDED, and a read past the end of `head` (bytes the file has
 * but we were not given yet) is NeedMore.
 */
class Cursor {
  readonly view: DataView;
  at = 0;

  constructor(
    readonly head: Uint8Array,
    readonly fileSize: number,
    readonly source: string,
    readonly limits: GgufLimits,
  ) {
    this.view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  }

  need(n: number, what: string): void {
    const end = this.at + n;
    if (end > this.fileSize) {
      fail(
        ErrorCodes.TRUNCATED,
        `file is truncated: ${what} needs ${n} bytes at offset ${this.at}, only ${this.fileSize - this.at} remain`,
        this.source,
        TRUNCATED_HINT,
      );
    }
    if (end > this.limits.maxHeaderBytes) {
      fail(
        ErrorCodes.LIMIT_EXCEEDED,
        `the header is larger than the limit of ${this.limits.maxHeaderBytes} bytes (${what} at offset ${this.at})`,
        this.source,
        'the header counts are corrupt, or the model needs a higher GGUF_LIMITS.maxHeaderBytes',
      );
    }
    if (end > this.head.byteLength) throw new NeedMore(end);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.at++);
  }

  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.at, true);
    this.at += 4;
    return v;
  }

  u64(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.at, true);
    this.at += 8;
    return v;
  }

  /** A GGUF string: u64 byte length (checked against the limit and the file first), strict UTF-8. */
  string(what: string): string {
    const n = this.u64(`the length of ${what}`);
    if (n > BigInt(this.limits.maxStringBytes)) {
      fail(ErrorCodes.LIMIT_EXCEEDED, `${what} claims ${n} bytes, more than the limit of ${this.limits.maxStringBytes}`, this.source);
    }
    const len = Number(n);
    this.need(len, what);
    const text = decodeUtf8Strict(this.head.subarray(this.at, this.at + len));
    if (text === undefined) fail(ErrorCodes.BAD_HEADER, `${what} at offset ${this.at} is not valid UTF-8`, this.source);
    this.at += len;
    return text;
  }
}

// ---------------------------------------------------------------------------------------------- header

/**
 * Parse a GGUF header from `head`, the first bytes of a file of `fileSize` bytes. Returns the header when
 * `head` holds all of it, or `{ done: false, needBytes }` when it does not (read that many bytes from the
 * start of the file and call again; the request at least doubles each time, so the total work stays
 * linear in the header's size). Every count, length, dimension and offset is checked against
 * `limits` and against `fileSize` before it is used or anything is allocated from it; tensor byte ranges
 * must lie inside the file, be aligned and not overlap.
 */
export function parseGgufHeader(
  head: Uint8Array,
  fileSize: number,
  source = '<gguf>',
  limits: GgufLimits = GGUF_LIMITS,
): GgufHeaderParse {
  if (!Number.isSafeInteger(fileSize) || fileSize < head.byteLength) {
    fail(ErrorCodes.BAD_ARGUMENT, `file size ${fileSize} is not a whole number of bytes at least as long as the ${head.byteLength} bytes given`, source, 'pass the size of the whole file');
  }
  try {
    return { done: true, header: parseHeader(new Cursor(head, fileSize, source, limits)) };
  } catch (err) {
    if (!(err instanceof NeedMore)) throw err;
    const cap = Math.min(fileSize, limits.maxHeaderBytes);
    return { done: false, needBytes: Math.max(err.end, Math.min(cap, 2 * head.byteLength)) };
  }
}

function parseHeader(c: Cursor): GgufHeader {
  const source = c.source;
  // Compare whatever magic bytes there are first, so a short file of another kind is BAD_MAGIC, not TRUNCATED.
  const first = c.head.subarray(0, 4);
  if (first.some((b, i) => b !== MAGIC_BYTES[i])) {
    const seen = [...first].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    fail(ErrorCodes.BAD_MAGIC, `not a GGUF file: it starts with bytes ${seen}, not "GGUF" (47 47 55 46)`, source, 'pass a .gguf model file');
  }
  c.u32('the magic');
  const version = c.u32('the version');
  if (version !== 2 && version !== 3) {
    const swapped = ((version & 0xff) << 24) | ((version >>> 8) & 0xff) << 16 | ((version >>> 16) & 0xff) << 8 | (version >>> 24);
    const hint =
      version === 1
        ? 'GGUF version 1 (2023) is obsolete; re-convert the model with a current llama.cpp'
        : swapped === 2 || swapped === 3
          ? 'this is a big-endian GGUF; use the little-endian file of the model'
          : NOT_GGUF;
    fail(ErrorCodes.BAD_VERSION, `GGUF version ${version} is not supported (versions 2 and 3 are)`, source, hint);
  }
  const tensorCount = c.u64('the tensor count');
  const kvCount = c.u64('the metadata count');
  if (kvCount > BigInt(c.limits.maxKvCount)) {
    fail(ErrorCodes.LIMIT_EXCEEDED, `header claims ${kvCount} metadata entries, more than the limit of ${c.limits.maxKvCount}`, source);
  }
  if (tensorCount > BigInt(c.limits.maxTensorCount)) {
    fail(ErrorCodes.LIMIT_EXCEEDED, `header claims ${tensorCount} tensors, more than the limit of ${c.limits.maxTensorCount}`, source);
  }
  // Each entry takes at least 13 bytes (8 key length, 4 type, 1 value) and each tensor info at least 33
  // (8 name length, 1 name byte, 4 n_dims, 8 one dim, 4 type, 8 offset): refuse counts the file cannot hold.
  const minBytes = Number(kvCount) * MIN_KV_BYTES + Number(tensorCount) * MIN_TENSOR_INFO_BYTES;
  if (minBytes > c.fileSize - c.at) {
    fail(
      ErrorCodes.TRUNCATED,
      `file is truncated: ${kvCount} metadata entries and ${tensorCount} tensor infos need at least ${minBytes} bytes, only ${c.fileSize - c.at} remain`,
      source,
      'the counts are corrupt or the file is incomplete; re-download it',
    );
  }

  const metadata = new Map<string, GgufMetadataEntry>();
  for (let i = 0; i < Number(kvCount); i++) {
    const at = c.at;
    const key = c.string(`metadata key ${i}`);
    if (metadata.has(key)) {
      fail(ErrorCodes.BAD_HEADER, `metadata key ${JSON.stringify(key)} appears twice (the second at offset ${at})`, source, 'readers disagree on which of two equal keys wins; rewrite the file with each key once');
    }
    const typeId = c.u32(`the value type of ${JSON.stringify(key)}`);
    const type = valueType(typeId, `metadata ${JSON.stringify(key)}`, source);
    metadata.set(key, { type, value: readValue(c, type, JSON.stringify(key), 0) });
  }

  const alignment = readAlignment(metadata, source);

  const infos: RawTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < Number(tensorCount); i++) {
    const info = readTensorInfo(c, i, alignment);
    if (names.has(info.name)) fail(ErrorCodes.BAD_HEADER, `tensor ${JSON.stringify(info.name)} appears twice`, source);
    names.add(info.name);
    infos.push(info);
  }
  const headerBytes = c.at;
  const dataOffset = Math.ceil(headerBytes / alignment) * alignment;
  const tensors = placeTensors(infos, dataOffset, alignment, c.fileSize, source);
  return { version, metadata, tensors, alignment, headerBytes, dataOffset, fileSize: c.fileSize };
}

const MIN_KV_BYTES = 8 + 4 + 1;
const MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 8 + 4 + 8;

const MAGIC_BYTES = [0x47, 0x47, 0x55, 0x46];

function valueType(id: number, what: string, source: string): GgufValueType {
  const t = GGUF_VALUE_TYPES[id];
  if (t === undefined) {
    fail(ErrorCodes.BAD_HEADER, `${what} has unknown value type ${id} (known: 0–${GGUF_VALUE_TYPES.length - 1})`, source);
  }
  return t;
}

/** Bytes of one value of each fixed-size type; strings and arrays have a minimum instead. */
const FIXED_BYTES: Partial<Record<GgufValueType, number>> = {
  uint8: 1,
  int8: 1,
  bool: 1,
  uint16: 2,
  int16: 2,
  uint32: 4,
  int32: 4,
  float32: 4,
  uint64: 8,
  int64: 8,
  float64: 8,
};
/** The fewest bytes one value of `t` can take: a string is at least its length; an array its type and count. */
function minValueBytes(t: GgufValueType): number {
  return FIXED_BYTES[t] ?? (t === 'string' ? 8 : 12);
}

function readValue(c: Cursor, type: GgufValueType, what: string, depth: number): GgufValue {
  switch (type) {
    case 'string':
      return c.string(`the value of ${what}`);
    case 'array':
      return readArray(c, what, depth + 1);
    case 'bool': {
      const b = c.u8(`the value of ${what}`);
      if (b > 1) fail(ErrorCodes.BAD_HEADER, `${what} is a bool stored as ${b} (only 0 and 1 are valid)`, c.source);
      return b === 1;
    }
    default: {
      const n = FIXED_BYTES[type]!;
      c.need(n, `the value of ${what}`);
      const v = readScalar(c.view, c.at, type);
      c.at += n;
      return v;
    }
  }
}

function readScalar(view: DataView, at: number, type: GgufValueType): number | bigint {
  switch (type) {
    case 'uint8':
      return view.getUint8(at);
    case 'int8':
      return view.getInt8(at);
    case 'uint16':
      return view.getUint16(at, true);
    case 'int16':
      return view.getInt16(at, true);
    case 'uint32':
      return view.getUint32(at, true);
    case 'int32':
      return view.getInt32(at, true);
    case 'float32':
      return view.getFloat32(at, true);
    case 'float64':
      return view.getFloat64(at, true);
    case 'uint64':
      return view.getBigUint64(at, true);
    case 'int64':
      return view.getBigInt64(at, true);
    default:
      throw new Error(`unreachable: ${type} is not a scalar type`);
  }
}

function readArray(c: Cursor, what: string, depth: number): GgufArray {
  if (depth > c.limits.maxArrayDepth) {
    fail(ErrorCodes.LIMIT_EXCEEDED, `${what} nests arrays ${depth} deep, more than the limit of ${c.limits.maxArrayDepth}`, c.source);
  }
  const elementType = valueType(c.u32(`the element type of ${what}`), `an array in ${what}`, c.source);
  const count = c.u64(`the length of ${what}`);
  if (count > BigInt(c.limits.maxArrayLength)) {
    fail(ErrorCodes.LIMIT_EXCEEDED, `${what} claims ${count} elements, more than the limit of ${c.limits.maxArrayLength}`, c.source);
  }
  const n = Number(count);
  // Before allocating n of anything: n elements need at least n × (smallest element) bytes of the file.
  const least = n * minValueBytes(elementType);
  if (least > c.fileSize - c.at) {
    fail(
      ErrorCodes.TRUNCATED,
      `file is truncated: ${what} claims ${n} ${elementType} elements, which need at least ${least} bytes at offset ${c.at}, only ${c.fileSize - c.at} remain`,
      c.source,
      TRUNCATED_HINT,
    );
  }
  const fixed = FIXED_BYTES[elementType];
  if (fixed !== undefined) {
    c.need(n * fixed, `the elements of ${what}`);
    const values = readFixedArray(c, elementType, n, what);
    c.at += n * fixed;
    return { elementType, values };
  }
  // Strings and arrays grow as they are read, so memory follows the bytes actually present.
  if (elementType === 'string') {
    const values: string[] = [];
    for (let i = 0; i < n; i++) values.push(c.string(`element ${i} of ${what}`));
    return { elementType, values };
  }
  const values: GgufArray[] = [];
  for (let i = 0; i < n; i++) values.push(readArray(c, `element ${i} of ${what}`, depth + 1));
  return { elementType, values };
}

function readFixedArray(c: Cursor, type: GgufValueType, n: number, what: string): GgufArrayValues {
  const at = c.at;
  const bytes = c.head.subarray(at, at + n * FIXED_BYTES[type]!);
  // Copy the bytes into a fresh (aligned) buffer and view it: elements in a file are not aligned in
  // memory. Little-endian host assumed, as everywhere in this package.
  const copy = () => {
    const buf = new Uint8Array(bytes.byteLength);
    buf.set(bytes);
    return buf.buffer;
  };
  switch (type) {
    case 'uint8':
      return bytes.slice();
    case 'int8':
      return new Int8Array(copy());
    case 'uint16':
      return new Uint16Array(copy());
    case 'int16':
      return new Int16Array(copy());
    case 'uint32':
      return new Uint32Array(copy());
    case 'int32':
      return new Int32Array(copy());
    case 'float32':
      return new Float32Array(copy());
    case 'float64':
      return new Float64Array(copy());
    case 'uint64':
      return new BigUint64Array(copy());
    case 'int64':
      return new BigInt64Array(copy());
    case 'bool': {
      const out: boolean[] = new Array<boolean>(n);
      for (let i = 0; i < n; i++) {
        const b = bytes[i]!;
        if (b > 1) fail(ErrorCodes.BAD_HEADER, `element ${i} of ${what} is a bool stored as ${b} (only 0 and 1 are valid)`, c.source);
        out[i] = b === 1;
      }
      return out;
    }
    default:
      throw new Error(`unreachable: ${type} is not fixed-size`);
  }
}

/** `general.alignment`: absent → 32; otherwise a u32 power of two (as llama.cpp requires). */
function readAlignment(metadata: Map<string, GgufMetadataEntry>, source: string): number {
  const entry = metadata.get('general.alignment');
  if (!entry) return GGUF_DEFAULT_ALIGNMENT;
  if (entry.type !== 'uint32') {
    fail(ErrorCodes.BAD_HEADER, `general.alignment is a ${entry.type}, expected a uint32`, source);
  }
  const a = entry.value as number;
  if (a === 0 || (a & (a - 1)) !== 0) {
    fail(ErrorCodes.BAD_HEADER, `general.alignment ${a} is not a power of two`, source);
  }
  return a;
}

interface RawTensorInfo {
  name: string;
  dims: number[];
  type: GgmlTypeInfo;
  offset: bigint;
  elements: number;
  byteLength: number;
}

function readTensorInfo(c: Cursor, index: number, alignment: number): RawTensorInfo {
  const source = c.source;
  const name = c.string(`the name of tensor ${index}`);
  const what = `tensor ${JSON.stringify(name)}`;
  if (name.length === 0) fail(ErrorCodes.BAD_HEADER, `tensor ${index} has an empty name`, source);
  const nDims = c.u32(`the dimension count of ${what}`);
  if (nDims === 0 || nDims > c.limits.maxTensorRank) {
    fail(ErrorCodes.BAD_DIMENSION, `${what} has ${nDims} dimensions (1 to ${c.limits.maxTensorRank} are allowed)`, source);
  }
  const dims: number[] = [];
  let elements = 1n;
  for (let d = 0; d < nDims; d++) {
    const dim = c.u64(`dimension ${d} of ${what}`);
    if (dim === 0n || dim > BigInt(c.limits.maxTensorDim)) {
      fail(ErrorCodes.BAD_DIMENSION, `${what} has dimension ${d} = ${dim} (1 to ${c.limits.maxTensorDim} are allowed)`, source);
    }
    // A BigInt product: dimensions that multiply past 2^53 (or 2^64) are seen as they are, never wrapped.
    elements *= dim;
    if (elements > BigInt(c.limits.maxTensorElements)) {
      fail(ErrorCodes.LIMIT_EXCEEDED, `${what} has more than the limit of ${c.limits.maxTensorElements} elements`, source);
    }
    dims.push(Number(dim));
  }
  const typeId = c.u32(`the type of ${what}`);
  const type = ggmlTypeById(typeId);
  if (!type) {
    fail(ErrorCodes.BAD_DTYPE, `${what} has unknown ggml type ${typeId}`, source, 'the file is corrupt, or uses a ggml type newer than this reader knows (ids 0–39)');
  }
  if (dims[0]! % type.blockSize !== 0) {
    fail(ErrorCodes.BAD_DIMENSION, `${what} has rows of ${dims[0]} values, not a multiple of the ${type.name} block of ${type.blockSize}`, source);
  }
  const offset = c.u64(`the offset of ${what}`);
  if (offset % BigInt(alignment) !== 0n) {
    fail(ErrorCodes.BAD_OFFSET, `${what} has offset ${offset}, not a multiple of the alignment ${alignment}`, source);
  }
  const n = Number(elements);
  return { name, dims, type, offset, elements: n, byteLength: ggmlByteLength(type, n) };
}

/**
 * Check every tensor's byte range against the file and against the others, and give each its absolute
 * place. Ranges are checked in offset order: overlapping ranges are OVERLAP; a range that runs past the end
 * of the file is TRUNCATED when it starts where a packing writer would put it (right after the previous
 * one, aligned: a file cut short), and BAD_OFFSET when its offset jumps beyond that, past the end.
 */
function placeTensors(
  infos: RawTensorInfo[],
  dataOffset: number,
  alignment: number,
  fileSize: number,
  source: string,
): Map<string, GgufTensorInfo> {
  const byOffset = [...infos].sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
  const size = BigInt(fileSize);
  const base = BigInt(dataOffset);
  let last: RawTensorInfo | undefined; // the tensor whose data ends furthest so far
  let lastEnd = 0n; // where it ends, relative to the data section
  for (const t of byOffset) {
    const end = t.offset + BigInt(t.byteLength);
    if (last && t.offset < lastEnd) {
      fail(
        ErrorCodes.OVERLAP,
        `tensors ${JSON.stringify(last.name)} [${last.offset}, ${lastEnd}) and ${JSON.stringify(t.name)} [${t.offset}, ${end}) overlap in the data section`,
        source,
      );
    }
    if (base + end > size) {
      // Where the next tensor of a packed file would start: the previous end, aligned.
      const packedStart = roundUp(lastEnd, BigInt(alignment));
      if (t.offset <= packedStart) {
        fail(
          ErrorCodes.TRUNCATED,
          `file is truncated: tensor ${JSON.stringify(t.name)} needs bytes up to ${base + end}, the file has ${fileSize}`,
          source,
          TRUNCATED_HINT,
        );
      }
      fail(
        ErrorCodes.BAD_OFFSET,
        `tensor ${JSON.stringify(t.name)} has offset ${t.offset}: its ${t.byteLength} bytes at file byte ${base + t.offset} lie past the end of the ${fileSize}-byte file`,
        source,
      );
    }
    if (end > lastEnd) {
      last = t;
      lastEnd = end;
    }
  }
  const tensors = new Map<string, GgufTensorInfo>();
  for (const t of infos) {
    const offset = Number(t.offset); // exact: it ends inside the file
    const rowLength = t.dims[0]!;
    tensors.set(t.name, {
      name: t.name,
      dims: t.dims,
      shape: [...t.dims].reverse(),
      type: t.type.name,
      typeId: t.type.id,
      offset,
      fileOffset: dataOffset + offset,
      byteLength: t.byteLength,
      elements: t.elements,
      rowLength,
      rowBytes: ggmlByteLength(t.type, rowLength),
    });
  }
  return tensors;
}

function roundUp(x: bigint, to: bigint): bigint {
  return ((x + to - 1n) / to) * to;
}

// ---------------------------------------------------------------------------------------------- files & tensors

/**
 * Read a whole GGUF file held in memory: the header, checked as `parseGgufHeader` does, with the bytes.
 * Tensor data are decoded only when asked (`getGgufFloat32`), one tensor at a time.
 */
export function readGguf(bytes: Uint8Array, source = '<gguf>', limits: GgufLimits = GGUF_LIMITS): GgufFile {
  const parsed = parseGgufHeader(bytes, bytes.byteLength, source, limits);
  // With the whole file given, the parser never asks for more: a short file is TRUNCATED.
  if (!parsed.done) throw new Error('unreachable: a whole-file parse asked for more bytes');
  return { ...parsed.header, bytes };
}

/** The info of tensor `name`, or MISSING_TENSOR naming it. */
export function getGgufTensorInfo(header: GgufHeader, name: string, source = '<gguf>'): GgufTensorInfo {
  const t = header.tensors.get(name);
  if (!t) {
    throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `tensor ${JSON.stringify(name)} is not in the file`, {
      source,
      hint: `the file has ${header.tensors.size} tensors`,
    });
  }
  return t;
}

/** A view (no copy) of a tensor's bytes in a whole-file read. */
export function getGgufTensorBytes(file: GgufFile, name: string, source = '<gguf>'): Uint8Array {
  const t = getGgufTensorInfo(file, name, source);
  return file.bytes.subarray(t.fileOffset, t.fileOffset + t.byteLength);
}

/** Decode tensor `name` of a whole-file read to a new Float32Array (row-major, `shape` order). */
export function getGgufFloat32(file: GgufFile, name: string, source = '<gguf>'): Float32Array<ArrayBuffer> {
  return decodeGgufTensor(getGgufTensorInfo(file, name, source), getGgufTensorBytes(file, name, source), `${source}: ${name}`);
}

/**
 * Decode one tensor to float32 from just its bytes (`info.byteLength` of them, read from
 * `info.fileOffset`), so a streaming loader never holds more than one tensor. Types the reader knows but
 * cannot decode (IQ*, Q2_K, ...) are UNSUPPORTED, naming the type.
 */
export function decodeGgufTensor(info: GgufTensorInfo, bytes: Uint8Array, source = info.name): Float32Array<ArrayBuffer> {
  const type = ggmlTypeById(info.typeId)!;
  if (!type.decodable) {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `tensor ${JSON.stringify(info.name)} is ${type.name}, which this reader cannot decode`, {
      source,
      hint: `decodable types are ${DECODABLE_GGML_TYPES.join(', ')}; use a GGUF of the model in one of them`,
    });
  }
  const out = new Float32Array(info.elements);
  dequantizeGgml(type, bytes, out, source);
  return out;
}

/**
 * Decode rows [first, first + count) of a tensor (a row is `rowLength` values), given just those rows'
 * bytes (`count × rowBytes` from `fileOffset + first × rowBytes`): for tensors too large to widen at once.
 */
export function decodeGgufRows(info: GgufTensorInfo, bytes: Uint8Array, count: number, source = info.name): Float32Array<ArrayBuffer> {
  const type = ggmlTypeById(info.typeId)!;
  const rows = info.elements / info.rowLength;
  if (!Number.isSafeInteger(count) || count < 0 || count > rows) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `cannot decode ${count} rows of a tensor with ${rows}`, { source });
  }
  if (!type.decodable) return decodeGgufTensor(info, bytes, source); // throws UNSUPPORTED naming the type
  const out = new Float32Array(count * info.rowLength);
  dequantizeGgml(type, bytes, out, source);
  return out;
}

// ---------------------------------------------------------------------------------------------- metadata access

/** A metadata entry, or undefined. */
export function getGgufMetadata(header: GgufHeader, key: string): GgufMetadataEntry | undefined {
  return header.metadata.get(key);
}

/**
 * A metadata value as a JavaScript number: any integer or float scalar type (llama.cpp's writers differ:
 * u32, i32 and u64 all occur for counts). 64-bit values beyond 2^53 are refused, not rounded.
 * Undefined when absent; BAD_HEADER when present with a non-numeric type.
 */
export function getGgufNumber(header: GgufHeader, key: string, source = '<gguf>'): number | undefined {
  const e = header.metadata.get(key);
  if (!e) return undefined;
  if (typeof e.value === 'number') return e.value;
  if (typeof e.value === 'bigint') {
    if (e.value > BigInt(Number.MAX_SAFE_INTEGER) || e.value < -BigInt(Number.MAX_SAFE_INTEGER)) {
      fail(ErrorCodes.BAD_HEADER, `metadata ${key} = ${e.value} is too large to use`, source);
    }
    return Number(e.value);
  }
  fail(ErrorCodes.BAD_HEADER, `metadata ${key} is a ${e.type}, expected a number`, source);
}

/** A string metadata value; undefined when absent, BAD_HEADER when of another type. */
export function getGgufString(header: GgufHeader, key: string, source = '<gguf>'): string | undefined {
  const e = header.metadata.get(key);
  if (!e) return undefined;
  if (typeof e.value !== 'string') fail(ErrorCodes.BAD_HEADER, `metadata ${key} is a ${e.type}, expected a string`, source);
  return e.value;
}

/** An array metadata value; undefined when absent, BAD_HEADER when of another type. */
export function getGgufArray(header: GgufHeader, key: string, source = '<gguf>'): GgufArray | undefined {
  const e = header.metadata.get(key);
  if (!e) return undefined;
  if (e.type !== 'array') fail(ErrorCodes.BAD_HEADER, `metadata ${key} is a ${e.type}, expected an array`, source);
  return e.value as GgufArray;
}
