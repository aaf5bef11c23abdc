import {
  DTYPE_BYTES,
  ErrorCodes,
  UltraSketchError,
  bf16ArrayToF32,
  f16ArrayToF32,
  isDType,
  type DType,
  type ErrorCode,
} from '@ultrasketch/core';
import { ByteWriter } from './byteWriter.js';
import { LIMITS, type Limits } from './limits.js';
import { scanJson } from './strictJson.js';
import { decodeUtf8Strict, encodeUtf8 } from './utf8.js';

/**
 * safetensors (https://github.com/huggingface/safetensors), read and written.
 *
 * Layout: an 8-byte little-endian uint64 N; N bytes of UTF-8 JSON (starting with "{", possibly padded
 * with trailing spaces) mapping each tensor name to {dtype, shape, data_offsets: [begin, end]} plus an
 * optional "__metadata__" object of string → string; then the data area. Offsets are relative to the
 * start of the data area. The tensors' byte ranges must tile the data area exactly: no overlaps, no
 * holes, nothing after the last tensor.
 *
 * The reader treats the file as hostile: every number in the header is checked against a named limit
 * and against the file before it is used. A header with a duplicate JSON key at any level (two tensors of
 * one name, a metadata key twice, a field twice in a tensor entry) is refused: parsers resolve duplicates
 * differently (JSON.parse keeps the last), so such a file means different things to different readers.
 */

/** A tensor in a safetensors file. `data` is a view into the file's bytes, not a copy. */
export interface SafetensorsTensor {
  dtype: DType;
  shape: number[];
  data: Uint8Array;
  /** [begin, end) of `data` relative to the data area, as the header states them. */
  dataOffsets: [number, number];
}

export interface SafetensorsFile {
  /** Tensors by name, in header order. */
  tensors: Map<string, SafetensorsTensor>;
  /** The `__metadata__` strings (empty when the file has none). */
  metadata: Record<string, string>;
  /** N: the length of the JSON header in bytes, padding included. */
  headerBytes: number;
  /** Where the data area starts in the file: 8 + N. */
  dataOffset: number;
}

/** The limits the safetensors reader and writer enforce (tests pass tighter ones). */
export type SafetensorsLimits = Pick<
  Limits,
  'maxSafetensorsHeaderBytes' | 'maxTensorCount' | 'maxTensorRank' | 'maxTensorDim' | 'maxTensorElements'
> &
  Partial<Pick<Limits, 'maxJsonDepth'>>;

const LENGTH_PREFIX_BYTES = 8;
const METADATA_KEY = '__metadata__';
const OPEN_BRACE = 0x7b;
const SPACE = 0x20;
const NOT_SAFETENSORS = 'the file is not a valid safetensors file';

function fail(code: ErrorCode, problem: string, source: string, hint = NOT_SAFETENSORS): never {
  throw new UltraSketchError(code, problem, { source, hint });
}

// ---------------------------------------------------------------------------------------------- reader

/**
 * Read and fully validate a safetensors file. Nothing is allocated from a size read from the file until
 * that size has been checked; tensor data are views into `bytes`.
 */
export function readSafetensors(
  bytes: Uint8Array,
  source = '<safetensors>',
  limits: SafetensorsLimits = LIMITS,
): SafetensorsFile {
  const headerBytes = readHeaderLength(bytes, source, limits);
  const dataOffset = LENGTH_PREFIX_BYTES + headerBytes;
  const { metadata, infos } = parseHeaderEntries(bytes.subarray(LENGTH_PREFIX_BYTES, dataOffset), bytes.byteLength - dataOffset, source, limits);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const t of infos) {
    const data = bytes.subarray(dataOffset + t.begin, dataOffset + t.end);
    tensors.set(t.name, { dtype: t.dtype, shape: t.shape, data, dataOffsets: [t.begin, t.end] });
  }
  return { tensors, metadata, headerBytes, dataOffset };
}

/** A tensor as a header describes it, without its data: where its bytes are in the file. */
export interface SafetensorsTensorInfo {
  dtype: DType;
  shape: number[];
  /** [begin, end) relative to the data area, as the header states them. */
  dataOffsets: [number, number];
  /** Absolute offset of the data in the file (dataOffset + begin). */
  fileOffset: number;
  byteLength: number;
}

/** A safetensors header read from the first bytes of a file, validated against the file's size. */
export interface SafetensorsHeader {
  tensors: Map<string, SafetensorsTensorInfo>;
  metadata: Record<string, string>;
  headerBytes: number;
  dataOffset: number;
  fileSize: number;
}

/**
 * Parse a safetensors header from `head`, the first bytes of a file of `fileSize` bytes, with every check
 * `readSafetensors` makes (limits, offsets inside the data area, exact tiling, no duplicate keys), but without
 * the data: a streaming loader reads the header, then each tensor's `byteLength` bytes at `fileOffset`. When
 * `head` is shorter than the header, the answer is how many bytes to read from the start of the file.
 */
export function parseSafetensorsHeader(
  head: Uint8Array,
  fileSize: number,
  source = '<safetensors>',
  limits: SafetensorsLimits = LIMITS,
): { done: true; header: SafetensorsHeader } | { done: false; needBytes: number } {
  if (!Number.isSafeInteger(fileSize) || fileSize < head.byteLength) {
    fail(ErrorCodes.BAD_ARGUMENT, `file size ${fileSize} is not a whole number of bytes at least as long as the ${head.byteLength} bytes given`, source, 'pass the size of the whole file');
  }
  if (head.byteLength < LENGTH_PREFIX_BYTES && fileSize >= LENGTH_PREFIX_BYTES) return { done: false, needBytes: LENGTH_PREFIX_BYTES };
  // The length is checked against the whole file, not against `head`: only the file can be too short.
  const headerBytes = readHeaderLength(head, source, limits, fileSize);
  const dataOffset = LENGTH_PREFIX_BYTES + headerBytes;
  if (head.byteLength < dataOffset) return { done: false, needBytes: dataOffset };
  const { metadata, infos } = parseHeaderEntries(head.subarray(LENGTH_PREFIX_BYTES, dataOffset), fileSize - dataOffset, source, limits);
  const tensors = new Map<string, SafetensorsTensorInfo>();
  for (const t of infos) {
    tensors.set(t.name, { dtype: t.dtype, shape: t.shape, dataOffsets: [t.begin, t.end], fileOffset: dataOffset + t.begin, byteLength: t.end - t.begin });
  }
  return { done: true, header: { tensors, metadata, headerBytes, dataOffset, fileSize } };
}

/**
 * The header's JSON (`raw`, without the length prefix) parsed and checked against a data area of `dataBytes`:
 * the tensor count against the limit, the metadata, each tensor's dtype, shape and offsets, and that the
 * tensors tile the data area exactly. Shared by the whole-file reader and the streaming header parser.
 */
function parseHeaderEntries(
  raw: Uint8Array,
  dataBytes: number,
  source: string,
  limits: SafetensorsLimits,
): { metadata: Record<string, string>; infos: TensorInfo[] } {
  const header = parseHeaderJson(raw, source, limits.maxJsonDepth ?? LIMITS.maxJsonDepth);
  const names = Object.keys(header).filter((k) => k !== METADATA_KEY);
  if (names.length > limits.maxTensorCount) {
    fail(ErrorCodes.LIMIT_EXCEEDED, `header lists ${names.length} tensors, more than the limit of ${limits.maxTensorCount}`, source);
  }
  const metadata = readMetadata(header[METADATA_KEY], source);
  const infos = names.map((name) => parseTensorInfo(name, header[name], dataBytes, source, limits));
  checkTiling(infos, dataBytes, source);
  return { metadata, infos };
}

/**
 * The u64 header length, checked against the limit and the file before anything else. `fileSize` is the size
 * of the whole file when `bytes` holds only its beginning (streaming); by default the file is `bytes`.
 */
function readHeaderLength(bytes: Uint8Array, source: string, limits: SafetensorsLimits, fileSize = bytes.byteLength): number {
  if (fileSize < LENGTH_PREFIX_BYTES) {
    fail(ErrorCodes.TRUNCATED, `file is truncated: ${fileSize} bytes is shorter than the 8-byte header length`, source);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, LENGTH_PREFIX_BYTES);
  // A u64: read it as a BigInt so a value above 2^53 is seen as it is, not rounded.
  const n = view.getBigUint64(0, true);
  if (n > BigInt(limits.maxSafetensorsHeaderBytes)) {
    fail(
      ErrorCodes.LIMIT_EXCEEDED,
      `header length ${n} exceeds the limit of ${limits.maxSafetensorsHeaderBytes} bytes`,
      source,
      'the header length field is corrupt, or this is not a safetensors file',
    );
  }
  const len = Number(n); // exact: at most the limit, far below 2^53
  if (len > fileSize - LENGTH_PREFIX_BYTES) {
    fail(
      ErrorCodes.TRUNCATED,
      `file is truncated: the header length is ${len} bytes but only ${fileSize - LENGTH_PREFIX_BYTES} follow the length field`,
      source,
      'the file is incomplete or corrupt; re-download it',
    );
  }
  if (len < 2) fail(ErrorCodes.BAD_HEADER, `header length ${len} is too short for a JSON object`, source);
  return len;
}

/**
 * The JSON header: must start with "{", be valid UTF-8 and valid JSON, be an object, nest at most
 * `maxDepth` deep and repeat no key.
 */
function parseHeaderJson(raw: Uint8Array, source: string, maxDepth: number): Record<string, unknown> {
  if (raw[0] !== OPEN_BRACE) {
    fail(ErrorCodes.BAD_HEADER, `header does not start with "{" (first byte is 0x${raw[0]!.toString(16).padStart(2, '0')})`, source);
  }
  const text = decodeUtf8Strict(raw);
  if (text === undefined) fail(ErrorCodes.BAD_HEADER, 'header is not valid UTF-8', source);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    fail(ErrorCodes.BAD_HEADER, `header is not valid JSON: ${(err as Error).message}`, source);
  }
  if (!isPlainObject(parsed)) fail(ErrorCodes.BAD_HEADER, 'header is not a JSON object', source);
  const problem = scanJson(text, maxDepth);
  if (problem?.kind === 'depth') {
    const where = problem.path.length === 0 ? '' : ` (under ${problem.path.map((p) => JSON.stringify(p)).join(' → ')})`;
    fail(ErrorCodes.LIMIT_EXCEEDED, `header JSON nests deeper than the limit of ${maxDepth} levels${where}`, source);
  }
  if (problem?.kind === 'duplicate') {
    fail(
      ErrorCodes.BAD_HEADER,
      `header has a duplicate key: ${describeDuplicate(problem.key, problem.path)}`,
      source,
      'JSON readers disagree on which of two equal keys wins, so the file is ambiguous; rewrite it with each key once',
    );
  }
  return parsed;
}

/** Where a duplicated header key sits, in the header's own terms. */
function describeDuplicate(key: string, path: string[]): string {
  const k = JSON.stringify(key);
  if (path.length === 0) return key === METADATA_KEY ? `${METADATA_KEY} appears twice` : `tensor ${k} appears twice`;
  if (path[0] === METADATA_KEY && path.length === 1) return `${METADATA_KEY} key ${k} appears twice`;
  if (path.length === 1) return `tensor ${JSON.stringify(path[0])} has the field ${k} twice`;
  return `key ${k} appears twice in ${path.map((p) => JSON.stringify(p)).join(' → ')}`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** What a JSON value is, for messages: "an array", "a number", "missing", ... */
function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'missing';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** `__metadata__`, when present, is an object whose values are all strings. */
function readMetadata(raw: unknown, source: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (raw === undefined) return out;
  if (!isPlainObject(raw)) fail(ErrorCodes.BAD_HEADER, `__metadata__ is ${typeName(raw)}, expected an object`, source);
  for (const [key, value] of Object.entries(raw)) {
    if (typeof value !== 'string') {
      fail(ErrorCodes.BAD_HEADER, `__metadata__ value for key ${JSON.stringify(key)} is ${typeName(value)}, expected a string`, source);
    }
    // defineProperty, not assignment: a key named "__proto__" must stay an ordinary own property.
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

interface TensorInfo {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

/** One header entry: dtype known, shape within limits, offsets inside the data and matching the shape. */
function parseTensorInfo(
  name: string,
  raw: unknown,
  dataBytes: number,
  source: string,
  limits: SafetensorsLimits,
): TensorInfo {
  const where = `tensor ${JSON.stringify(name)}`;
  if (!isPlainObject(raw)) fail(ErrorCodes.BAD_HEADER, `${where} is ${typeName(raw)}, expected an object`, source);
  const dtype = parseDtype(raw.dtype, where, source);
  const shape = parseShape(raw.shape, where, source, limits);
  const [begin, end] = parseOffsets(raw.data_offsets, where, dataBytes, source);
  const elements = shape.reduce((a, b) => a * b, 1); // ≤ maxTensorElements, checked by parseShape
  const needed = elements * DTYPE_BYTES[dtype];
  if (needed !== end - begin) {
    fail(
      ErrorCodes.SHAPE_MISMATCH,
      `${where} of shape [${shape.join(', ')}] and dtype ${dtype} needs ${needed} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
      source,
    );
  }
  return { name, dtype, shape, begin, end };
}

function parseDtype(raw: unknown, where: string, source: string): DType {
  if (typeof raw !== 'string') fail(ErrorCodes.BAD_HEADER, `${where} has a dtype that is ${typeName(raw)}, expected a string`, source);
  if (!isDType(raw)) {
    fail(
      ErrorCodes.BAD_DTYPE,
      `${where} has dtype ${JSON.stringify(raw)}, which is unknown or unsupported (supported: ${Object.keys(DTYPE_BYTES).join(', ')})`,
      source,
      'convert the tensor to a supported dtype',
    );
  }
  return raw;
}

/** Shape: an array of non-negative integers; rank, each dim and the element count within limits. */
function parseShape(raw: unknown, where: string, source: string, limits: SafetensorsLimits): number[] {
  if (!Array.isArray(raw)) fail(ErrorCodes.BAD_HEADER, `${where} has a shape that is ${typeName(raw)}, expected an array`, source);
  if (raw.length > limits.maxTensorRank) {
    fail(ErrorCodes.LIMIT_EXCEEDED, `${where} has rank ${raw.length}, more than the limit of ${limits.maxTensorRank}`, source);
  }
  let elements = 1;
  for (const d of raw) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      fail(ErrorCodes.BAD_DIMENSION, `${where} has dimension ${JSON.stringify(d)}, expected a non-negative integer`, source);
    }
    if (d > limits.maxTensorDim) {
      fail(ErrorCodes.LIMIT_EXCEEDED, `${where} has dimension ${d}, more than the limit of ${limits.maxTensorDim}`, source);
    }
    // Checked at every step, so the product stays far below 2^53 and is exact.
    elements *= d;
    if (elements > limits.maxTensorElements) {
      fail(
        ErrorCodes.LIMIT_EXCEEDED,
        `${where} of shape [${raw.join(', ')}] has more elements than the limit of ${limits.maxTensorElements}`,
        source,
      );
    }
  }
  return raw as number[];
}

/** data_offsets: two safe integers with 0 ≤ begin ≤ end ≤ size of the data area. */
function parseOffsets(raw: unknown, where: string, dataBytes: number, source: string): [number, number] {
  if (!Array.isArray(raw) || raw.length !== 2 || !raw.every((x) => typeof x === 'number' && Number.isSafeInteger(x))) {
    fail(ErrorCodes.BAD_HEADER, `${where} has data_offsets ${JSON.stringify(raw)}, expected [begin, end] integers`, source);
  }
  const [begin, end] = raw as [number, number];
  if (begin < 0 || end < begin || end > dataBytes) {
    fail(
      ErrorCodes.BAD_OFFSET,
      `${where} has data_offsets [${begin}, ${end}], outside the data area of ${dataBytes} bytes (or begin > end)`,
      source,
    );
  }
  return [begin, end];
}

/** The ranges must tile [0, dataBytes) exactly: sorted, each starting where the previous ended. */
function checkTiling(infos: TensorInfo[], dataBytes: number, source: string): void {
  const sorted = [...infos].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: TensorInfo | undefined;
  for (const t of sorted) {
    if (t.begin < covered) {
      fail(
        ErrorCodes.OVERLAP,
        `tensor ${JSON.stringify(t.name)} [${t.begin}, ${t.end}] overlaps tensor ${JSON.stringify(previous!.name)} [${previous!.begin}, ${previous!.end}]`,
        source,
      );
    }
    if (t.begin > covered) {
      fail(
        ErrorCodes.TRAILING_DATA,
        `data bytes [${covered}, ${t.begin}) before tensor ${JSON.stringify(t.name)} belong to no tensor (a hole)`,
        source,
      );
    }
    covered = t.end;
    previous = t;
  }
  if (covered !== dataBytes) {
    fail(
      ErrorCodes.TRAILING_DATA,
      `${dataBytes - covered} trailing bytes after the last tensor (data area is ${dataBytes} bytes, tensors cover ${covered})`,
      source,
    );
  }
}

// ------------------------------------------------------------------------------------------- accessors

/** A tensor by name, or a MISSING_TENSOR error naming the file. */
export function getSafetensorsTensor(file: SafetensorsFile, name: string, source = '<safetensors>'): SafetensorsTensor {
  const t = file.tensors.get(name);
  if (!t) {
    throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `tensor ${JSON.stringify(name)} is not in the file`, {
      source,
      hint: `the file has ${file.tensors.size} tensors`,
    });
  }
  return t;
}

/**
 * A float tensor's values as a new, aligned Float32Array: F32 is copied, F16 and BF16 are widened
 * exactly, F64 is rounded to float32. Other dtypes are refused (use `tensor.data`).
 * Works whatever the alignment of the tensor within the file (it copies bytes first).
 */
export function tensorDataToFloat32(t: SafetensorsTensor, what = '<tensor>'): Float32Array<ArrayBuffer> {
  switch (t.dtype) {
    case 'F32':
      return new Float32Array(alignedCopy(t.data));
    case 'F16':
      return f16ArrayToF32(new Uint16Array(alignedCopy(t.data)));
    case 'BF16':
      return bf16ArrayToF32(new Uint16Array(alignedCopy(t.data)));
    case 'F64':
      return Float32Array.from(new Float64Array(alignedCopy(t.data)));
    default:
      throw new UltraSketchError(ErrorCodes.BAD_DTYPE, `dtype ${t.dtype} is not a float type; cannot read it as float32`, {
        source: what,
      });
  }
}

/** Shorthand: look a tensor up by name and read it as float32. */
export function getSafetensorsFloat32(file: SafetensorsFile, name: string, source = '<safetensors>'): Float32Array<ArrayBuffer> {
  return tensorDataToFloat32(getSafetensorsTensor(file, name, source), `${source}: ${name}`);
}

/** Copy bytes into a fresh ArrayBuffer (offset 0, so any typed array can view it). Little-endian host. */
function alignedCopy(data: Uint8Array): ArrayBuffer {
  const out = new Uint8Array(data.byteLength);
  out.set(data);
  return out.buffer;
}

// ---------------------------------------------------------------------------------------------- writer

/** A tensor to write: raw bytes or any typed array whose memory holds the little-endian elements. */
export interface SafetensorsTensorInput {
  name: string;
  dtype: DType;
  shape: readonly number[];
  data: ArrayBufferView;
}

/**
 * Write a safetensors file. Deterministic: the same tensors and metadata give the same bytes whatever the
 * order they are passed in.
 * - Tensors are laid out by element size, largest first, then by name (UTF-16 code-unit order), as the
 *   reference implementation does: with the header padded to a multiple of 8, every tensor then starts at
 *   a file offset that is a multiple of its element size, so readers can view it without copying.
 * - The header lists `__metadata__` first (omitted when empty) with its keys sorted, then the tensors in
 *   data order, and is padded with spaces so that 8 + N is a multiple of 8.
 * - Everything is validated as the reader would: names, dtypes, shapes and limits, and each tensor's byte
 *   length against shape × dtype size.
 */
export function writeSafetensors(
  tensors: Iterable<SafetensorsTensorInput> | Map<string, Omit<SafetensorsTensorInput, 'name'>>,
  metadata: Record<string, string> = {},
  limits: SafetensorsLimits = LIMITS,
): Uint8Array<ArrayBuffer> {
  const checked = planLayout(tensors, limits);
  const entries: string[] = [];
  const metaJson = metadataJson(metadata);
  if (metaJson !== undefined) entries.push(`${JSON.stringify(METADATA_KEY)}:${metaJson}`);
  let offset = 0;
  for (const t of checked) {
    entries.push(`${JSON.stringify(t.name)}:${JSON.stringify({ dtype: t.dtype, shape: t.shape, data_offsets: t.dataOffsets })}`);
    offset = t.dataOffsets[1];
  }
  const json = encodeUtf8(`{${entries.join(',')}}`);
  const headerBytes = Math.ceil(json.byteLength / 8) * 8;
  if (headerBytes > limits.maxSafetensorsHeaderBytes) {
    writerError(ErrorCodes.LIMIT_EXCEEDED, `header of ${headerBytes} bytes exceeds the limit of ${limits.maxSafetensorsHeaderBytes}`, '<header>');
  }

  const out = new ByteWriter(LENGTH_PREFIX_BYTES + headerBytes + offset);
  out.u64(BigInt(headerBytes), 'header length');
  out.raw(json, 'header');
  out.pad(headerBytes - json.byteLength, SPACE, 'header padding');
  for (const t of checked) out.raw(t.bytes, t.name);
  return out.finish();
}

/** A tensor's entry in the header as `writeSafetensors` will write it. */
export interface SafetensorsLayoutEntry {
  name: string;
  dtype: DType;
  shape: number[];
  dataOffsets: [number, number];
}

/**
 * The tensor table `writeSafetensors` would write for these tensors, in data order, without writing
 * anything: for callers that must know the header's entries before the file exists (the bundle writer
 * checksums them). Validates the inputs exactly as the writer does.
 */
export function safetensorsLayout(
  tensors: Iterable<SafetensorsTensorInput> | Map<string, Omit<SafetensorsTensorInput, 'name'>>,
  limits: SafetensorsLimits = LIMITS,
): SafetensorsLayoutEntry[] {
  return planLayout(tensors, limits).map(({ name, dtype, shape, dataOffsets }) => ({ name, dtype, shape, dataOffsets }));
}

/** Validated inputs in data order (element size, largest first, then name), each with its byte range. */
function planLayout(
  tensors: Iterable<SafetensorsTensorInput> | Map<string, Omit<SafetensorsTensorInput, 'name'>>,
  limits: SafetensorsLimits,
): Array<CheckedInput & { dataOffsets: [number, number] }> {
  const checked = normalizeInputs(tensors).map((t) => checkInput(t, limits));
  checkUniqueNames(checked);
  if (checked.length > limits.maxTensorCount) {
    writerError(ErrorCodes.LIMIT_EXCEEDED, `${checked.length} tensors, more than the limit of ${limits.maxTensorCount}`, '<tensors>');
  }
  checked.sort((a, b) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype] || compareStrings(a.name, b.name));
  let offset = 0;
  return checked.map((t) => {
    const begin = offset;
    offset += t.bytes.byteLength;
    return { ...t, dataOffsets: [begin, offset] };
  });
}

function writerError(code: ErrorCode, problem: string, source: string): never {
  throw new UltraSketchError(code, problem, { source, hint: 'fix the tensors passed to writeSafetensors' });
}

function normalizeInputs(
  tensors: Iterable<SafetensorsTensorInput> | Map<string, Omit<SafetensorsTensorInput, 'name'>>,
): SafetensorsTensorInput[] {
  if (tensors instanceof Map) return [...tensors].map(([name, t]) => ({ ...t, name }));
  return [...tensors];
}

interface CheckedInput {
  name: string;
  dtype: DType;
  shape: number[];
  bytes: Uint8Array;
}

/** Validate one input tensor exactly as the reader will, so every file we write can be read back. */
function checkInput(t: SafetensorsTensorInput, limits: SafetensorsLimits): CheckedInput {
  const name = t.name;
  if (typeof name !== 'string' || name.length === 0 || name === METADATA_KEY) {
    writerError(ErrorCodes.BAD_ARGUMENT, `invalid tensor name ${JSON.stringify(name)}`, '<tensors>');
  }
  if (typeof t.dtype !== 'string' || !isDType(t.dtype)) {
    writerError(ErrorCodes.BAD_DTYPE, `unknown dtype ${JSON.stringify(t.dtype)}`, name);
  }
  const shape = [...t.shape];
  if (shape.length > limits.maxTensorRank) writerError(ErrorCodes.LIMIT_EXCEEDED, `rank ${shape.length} exceeds ${limits.maxTensorRank}`, name);
  let elements = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) writerError(ErrorCodes.BAD_DIMENSION, `dimension ${d} is not a non-negative integer`, name);
    if (d > limits.maxTensorDim) writerError(ErrorCodes.LIMIT_EXCEEDED, `dimension ${d} exceeds ${limits.maxTensorDim}`, name);
    elements *= d;
    if (elements > limits.maxTensorElements) {
      writerError(ErrorCodes.LIMIT_EXCEEDED, `shape [${shape.join(', ')}] exceeds ${limits.maxTensorElements} elements`, name);
    }
  }
  if (!ArrayBuffer.isView(t.data)) writerError(ErrorCodes.BAD_ARGUMENT, 'data is not a Uint8Array or typed array', name);
  const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const needed = elements * DTYPE_BYTES[t.dtype];
  if (bytes.byteLength !== needed) {
    writerError(
      ErrorCodes.SHAPE_MISMATCH,
      `has ${bytes.byteLength} bytes of data but shape [${shape.join(', ')}] of ${t.dtype} needs ${needed}`,
      name,
    );
  }
  return { name, dtype: t.dtype, shape, bytes };
}

function checkUniqueNames(list: CheckedInput[]): void {
  const seen = new Set<string>();
  for (const t of list) {
    if (seen.has(t.name)) writerError(ErrorCodes.BAD_ARGUMENT, 'tensor name given twice', t.name);
    seen.add(t.name);
  }
}

/** `__metadata__` as JSON with sorted keys (built by hand: JSON.stringify would move integer-like keys first). */
function metadataJson(metadata: Record<string, string>): string | undefined {
  const keys = Object.keys(metadata).sort(compareStrings);
  if (keys.length === 0) return undefined;
  const parts = keys.map((k) => {
    const v = metadata[k];
    if (typeof v !== 'string') writerError(ErrorCodes.BAD_ARGUMENT, `metadata value for ${JSON.stringify(k)} is ${typeName(v)}, expected a string`, METADATA_KEY);
    return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
  });
  return `{${parts.join(',')}}`;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
