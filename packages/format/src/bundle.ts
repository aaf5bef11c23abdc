import {
  type CodecParams,
  ErrorCodes,
  type StoredTensor,
  UltraSketchError,
  getCodec,
} from '@ultrasketch/core';
import { ByteWriter } from './byteWriter.js';
import { crc32Tag } from './crc32.js';
import { LIMITS } from './limits.js';
import {
  type SafetensorsFile,
  type SafetensorsTensorInput,
  readSafetensors,
  safetensorsLayout,
  writeSafetensors,
} from './safetensors.js';
import { sha256Hex } from './sha256.js';
import { scanJson } from './strictJson.js';
import { decodeUtf8Strict, encodeUtf8 } from './utf8.js';
import { inflateRaw } from './inflate.js';
import { llama2cColumns, llama2cFromColumns } from './pack.js';

/**
 * The `.usk` bundle: one self-describing file holding a compressed model. It IS a safetensors file, so any
 * safetensors reader can open it; UltraSketch's own structure lives in tensor names and `__metadata__`:
 *
 * tensors
 * - `<weight name>.<component>` — the stored parameters of each 2-D weight (linears, embedding, untied
 *   classifier), as its codec's `toTensors` produced them (e.g. `...q_proj.weight.codes`);
 * - `<vector name>` — 1-D float tensors kept as F32 (RMSNorm weights), under their canonical names;
 * - the tokenizer the source had, as U8 tensors, so a bundle needs nothing else to run: `tokenizer.llama2c`
 *   (a llama2.c tokenizer file: kinds `llama2c`, and `gguf-llama` for a GGUF SentencePiece vocabulary written
 *   in that format), or `tokenizer.json` + `tokenizer_config.json` (kind `hf-json`: a Hugging Face tokenizer,
 *   also the form a GGUF `gpt2` vocabulary is stored in);
 *
 * `__metadata__` (string → string; structured values are JSON text)
 * - `format` = "ultrasketch.usk", `format_version` = "2" (version 1, without `metadata_checksum`, is still read);
 * - `metadata_checksum`: "sha256:" + hex over every other metadata entry AND the tensor table (names, dtypes,
 *   shapes, data_offsets), in the canonical encoding of `metadataChecksumBytes`; always verified on load;
 * - `model_config`: the model config (JSON);
 * - `tokenizer`: {"kind": "llama2c", "tensor": "tokenizer.llama2c"} (the only form before tokenizer kinds; still
 *   written byte for byte the same), {"kind": "gguf-llama", "tensor": "tokenizer.llama2c", "bosId", "eosIds"} or
 *   {"kind": "hf-json", "tensor": "tokenizer.json", "configTensor": "tokenizer_config.json", "bosId", "eosIds",
 *   "origin"}; bosId is null when the tokenizer adds none (Qwen), eosIds are the ids generation stops at;
 * - `weights`: {name: {codec, version, options, seed, rows, cols}} for every 2-D weight;
 * - `vectors`: [names of the 1-D tensors];
 * - `checksums`: {tensor name: "crc32:xxxxxxxx"} for EVERY tensor, verified on load unless skipped;
 * - `provenance`, `accounting`, `quality` (and any other `extra` sections): JSON objects for reports.
 *
 * Nothing time-dependent is written, so the same inputs give a byte-identical file.
 */

export const USK_FORMAT = 'ultrasketch.usk';
/** The version this build writes. */
export const USK_FORMAT_VERSION = 2;
/**
 * The version written when the caller asks for a packed header (`writeBundle(input, { pack })`): the metadata
 * and the tokenizer deflated into tensors, for whole-file budgets near one bit per parameter (docs/bundle.md,
 * "Format 3").
 */
export const USK_PACKED_FORMAT_VERSION = 3;
/** Versions this build reads: 1 (before the metadata checksum, which it lacks), 2, and 3 (packed). */
export const USK_READABLE_VERSIONS: readonly number[] = [1, 2, 3];
/** Format 3: the tensor holding the deflated metadata, and the outer metadata key describing it. */
export const USK_PACKED_METADATA_TENSOR = 'usk.metadata';
export const USK_PACKED_METADATA_KEY = 'packed_metadata';
/** Format 3: the inner metadata key saying how the tokenizer tensors are packed. */
export const USK_TOKENIZER_PACKING_KEY = 'tokenizer_packing';
/** Largest inflated metadata or tokenizer a format-3 reader accepts (the safetensors header limit). */
const MAX_PACKED_BYTES = LIMITS.maxSafetensorsHeaderBytes;
export const USK_TOKENIZER_TENSOR = 'tokenizer.llama2c';
/** The tensors of an `hf-json` tokenizer: the tokenizer.json and tokenizer_config.json files' bytes. */
export const USK_HF_TOKENIZER_TENSOR = 'tokenizer.json';
export const USK_HF_TOKENIZER_CONFIG_TENSOR = 'tokenizer_config.json';

/**
 * How a bundle stores its tokenizer: `llama2c` (a llama2.c tokenizer file, as every bundle before tokenizer kinds),
 * `gguf-llama` (a GGUF SentencePiece vocabulary, stored as a llama2.c tokenizer file: the same algorithm runs it),
 * `hf-json` (a Hugging Face tokenizer.json with its tokenizer_config.json; a GGUF `gpt2` vocabulary is stored as
 * the tokenizer.json it runs as, origin "gguf-gpt2").
 */
export type BundleTokenizerKind = 'llama2c' | 'gguf-llama' | 'hf-json';
export const USK_TOKENIZER_KINDS: readonly BundleTokenizerKind[] = ['llama2c', 'gguf-llama', 'hf-json'];

export interface BundleTokenizer {
  kind: BundleTokenizerKind;
  /** A llama2.c tokenizer file (llama2c, gguf-llama) or tokenizer.json (hf-json). */
  bytes: Uint8Array;
  /** hf-json: the tokenizer_config.json bytes (`{}` when the source had none). */
  configBytes?: Uint8Array;
  /** gguf-llama, hf-json: the BOS id the tokenizer adds (null: none). */
  bosId?: number | null;
  /** gguf-llama, hf-json: the ids generation stops at (end of sequence). */
  eosIds?: number[];
  /** hf-json: where the tokenizer.json came from ("tokenizer.json", or "gguf-gpt2" when built from a GGUF vocabulary). */
  origin?: string;
}

/** The names of the tensors a tokenizer of this kind is stored in. */
export function tokenizerTensorNames(kind: BundleTokenizerKind): string[] {
  return kind === 'hf-json' ? [USK_HF_TOKENIZER_TENSOR, USK_HF_TOKENIZER_CONFIG_TENSOR] : [USK_TOKENIZER_TENSOR];
}
/** The metadata key holding the checksum over the rest of the header (format version 2 on). */
export const USK_METADATA_CHECKSUM_KEY = 'metadata_checksum';

export interface BundleWeightEntry {
  codec: string;
  version: number;
  /** The codec's resolved options (JSON). */
  options: unknown;
  seed: number;
  rows: number;
  cols: number;
}

export interface BundleWeightInput {
  entry: BundleWeightEntry;
  tensors: Record<string, StoredTensor>;
}

export interface BundleInput {
  config: Record<string, unknown>;
  tokenizer: BundleTokenizer;
  weights: Map<string, BundleWeightInput>;
  vectors: Map<string, Float32Array>;
  /** Further JSON sections: provenance, accounting, quality, training, ... */
  sections?: Record<string, unknown>;
}

export interface BundleWeight {
  entry: BundleWeightEntry;
  /** Codec parameters, validated by the codec against (rows, cols, options). */
  params: CodecParams;
}

export interface Bundle {
  formatVersion: number;
  config: Record<string, unknown>;
  /** The tokenizer as stored; its tensors are `tokenizerTensorNames(tokenizer.kind)`. */
  tokenizer: BundleTokenizer;
  weights: Map<string, BundleWeight>;
  vectors: Map<string, Float32Array>;
  sections: Record<string, unknown>;
  /** What protected this bundle's bytes on this read. */
  integrity: BundleIntegrity;
  /** The safetensors view underneath (tensor bytes, header size). */
  file: SafetensorsFile;
}

/** Which parts of a bundle a checksum covered when it was read (docs/bundle.md, "Integrity"). */
export interface BundleIntegrity {
  /**
   * 'sha256': the metadata and the tensor table matched `metadata_checksum` (format version 2 on; always
   * checked). 'none': a version-1 bundle, written before that checksum existed, so its metadata is
   * protected only by the structure checks.
   */
  metadata: 'sha256' | 'none';
  /** The stored metadata checksum ("sha256:…"), null for version 1. */
  metadataChecksum: string | null;
  /** True when every tensor's CRC-32 was verified on this read (false when the caller skipped it). */
  tensorsVerified: boolean;
}

const RESERVED_KEYS = [
  'format',
  'format_version',
  'model_config',
  'tokenizer',
  'weights',
  'vectors',
  'checksums',
  USK_METADATA_CHECKSUM_KEY,
  USK_PACKED_METADATA_KEY,
  USK_TOKENIZER_PACKING_KEY,
];

/** One tensor-table row as the metadata checksum sees it: the header's four facts about the tensor. */
export interface ChecksummedTensor {
  name: string;
  dtype: string;
  shape: readonly number[];
  dataOffsets: readonly [number, number];
}

const CHECKSUM_DOMAIN = 'ultrasketch.usk metadata_checksum v1\n';

/**
 * The canonical bytes the metadata checksum is computed over. They are built from the header's parsed
 * values, not its text, so a tool that re-serializes the JSON (other spacing, escapes, key order) keeps the
 * checksum valid, while any change of a value changes them. Unambiguous by construction (every string
 * length-prefixed, every list counted), and simple to reproduce in another language:
 *
 *   CHECKSUM_DOMAIN (UTF-8)
 *   u32 count, then for each metadata entry except `metadata_checksum`, sorted by the key's UTF-8 bytes:
 *     str key, str value
 *   u32 count, then for each tensor, sorted by the name's UTF-8 bytes:
 *     str name, str dtype, u32 rank, rank × u64 dimension, u64 begin, u64 end
 *
 * where str = u32 byte length + UTF-8 bytes, and every integer is little-endian. Strings must be well-formed
 * Unicode (a lone surrogate has no UTF-8 form, so two different strings could encode alike): such a
 * string is refused by the reader and the writer.
 */
export function metadataChecksumBytes(metadata: Record<string, string>, tensors: Iterable<ChecksummedTensor>): Uint8Array {
  const byBytes = (a: Uint8Array, b: Uint8Array): number => {
    const n = Math.min(a.byteLength, b.byteLength);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
    return a.byteLength - b.byteLength;
  };
  const entries = Object.keys(metadata)
    .filter((k) => k !== USK_METADATA_CHECKSUM_KEY)
    .map((k) => ({ key: encodeUtf8(k), value: encodeUtf8(metadata[k]!) }))
    .sort((a, b) => byBytes(a.key, b.key));
  const rows = [...tensors]
    .map((t) => ({ name: encodeUtf8(t.name), dtype: encodeUtf8(t.dtype), shape: t.shape, offsets: t.dataOffsets }))
    .sort((a, b) => byBytes(a.name, b.name));
  const domain = encodeUtf8(CHECKSUM_DOMAIN);
  let size = domain.byteLength + 8;
  for (const e of entries) size += 8 + e.key.byteLength + e.value.byteLength;
  for (const r of rows) size += 4 + r.name.byteLength + 4 + r.dtype.byteLength + 4 + 8 * r.shape.length + 16;
  const out = new ByteWriter(size);
  const str = (b: Uint8Array) => {
    out.u32(b.byteLength);
    out.raw(b);
  };
  out.raw(domain);
  out.u32(entries.length);
  for (const e of entries) {
    str(e.key);
    str(e.value);
  }
  out.u32(rows.length);
  for (const r of rows) {
    str(r.name);
    str(r.dtype);
    out.u32(r.shape.length);
    for (const d of r.shape) out.u64(BigInt(d));
    out.u64(BigInt(r.offsets[0]));
    out.u64(BigInt(r.offsets[1]));
  }
  return out.finish();
}

/** The value stored under `metadata_checksum`: "sha256:" + 64 lowercase hex digits. */
export function metadataChecksum(metadata: Record<string, string>, tensors: Iterable<ChecksummedTensor>): string {
  return `sha256:${sha256Hex(metadataChecksumBytes(metadata, tensors))}`;
}

/** A string with an unpaired UTF-16 surrogate (no UTF-8 encoding exists for it). */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** How `writeBundle` writes. */
export interface WriteBundleOptions {
  /**
   * Write format 3: the metadata (every entry of format 2 but the format marker, version and checksum) as
   * deflated JSON in the tensor `usk.metadata`, and the tokenizer deflated (a llama2.c file in columns first,
   * pack.ts). `deflateRaw` is any conforming raw-DEFLATE encoder (the pipeline passes node:zlib's); the format
   * package carries only the decoder, so it stays free of Node. Without it, format 2 exactly as before.
   */
  pack?: { deflateRaw(bytes: Uint8Array): Uint8Array };
}

export function writeBundle(input: BundleInput, options: WriteBundleOptions = {}): Uint8Array<ArrayBuffer> {
  const pack = options.pack;
  const tensors: SafetensorsTensorInput[] = [];
  const entries: Record<string, BundleWeightEntry> = {};
  // Metadata lists weights and vectors in the caller's order (model order from compress()): the same
  // input gives the same bytes, and a reader sees layers in their natural order.
  const weightNames = [...input.weights.keys()];
  const vectorNames = [...input.vectors.keys()];
  for (const name of weightNames) {
    const w = input.weights.get(name)!;
    entries[name] = w.entry;
    for (const [component, t] of Object.entries(w.tensors)) {
      if (component.includes('.')) {
        throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `codec component name "${component}" must not contain "."`, {
          source: name,
        });
      }
      tensors.push({ name: `${name}.${component}`, dtype: t.dtype, shape: t.shape, data: t.data });
    }
  }
  for (const name of vectorNames) {
    const v = input.vectors.get(name)!;
    tensors.push({ name, dtype: 'F32', shape: [v.length], data: v });
  }
  const tok = input.tokenizer;
  const tokEntry = tokenizerEntry(tok);
  const { files: tokFiles, packing: tokPacking } = tokenizerTensors(tok, pack);
  for (const [name, data] of tokFiles) tensors.push({ name, dtype: 'U8', shape: [data.length], data });

  const checksums: Record<string, string> = {};
  for (const t of [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    checksums[t.name] = crc32Tag(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  const metadata: Record<string, string> = {
    format: USK_FORMAT,
    format_version: String(pack ? USK_PACKED_FORMAT_VERSION : USK_FORMAT_VERSION),
    model_config: JSON.stringify(input.config),
    tokenizer: JSON.stringify(tokEntry),
    weights: JSON.stringify(entries),
    vectors: JSON.stringify(vectorNames),
    checksums: JSON.stringify(checksums),
    ...(tokPacking ? { [USK_TOKENIZER_PACKING_KEY]: JSON.stringify(tokPacking) } : {}),
  };
  for (const [key, value] of Object.entries(input.sections ?? {})) {
    if (RESERVED_KEYS.includes(key)) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `bundle section name "${key}" is reserved`);
    }
    metadata[key] = JSON.stringify(value);
  }
  for (const [key, value] of Object.entries(metadata)) {
    if (LONE_SURROGATE.test(key) || LONE_SURROGATE.test(value)) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `metadata "${key}" holds an unpaired UTF-16 surrogate, which has no UTF-8 form`);
    }
  }
  if (pack) {
    // Format 3: all of that goes, as JSON, deflated, into one tensor; the safetensors metadata keeps the marker,
    // the version, where the packed metadata is (with the SHA-256 of its stored bytes) and the checksum over
    // those and the tensor table, so every byte of the header and of the packed metadata stays covered.
    const { format: _f, format_version: version, ...inner } = metadata;
    const plain = encodeUtf8(JSON.stringify(inner));
    const packed = pack.deflateRaw(plain);
    tensors.push({ name: USK_PACKED_METADATA_TENSOR, dtype: 'U8', shape: [packed.length], data: packed });
    const outer: Record<string, string> = {
      format: USK_FORMAT,
      format_version: version!,
      [USK_PACKED_METADATA_KEY]: JSON.stringify({
        tensor: USK_PACKED_METADATA_TENSOR,
        encoding: 'deflate-raw',
        length: plain.length,
        sha256: `sha256:${sha256Hex(packed)}`,
      }),
    };
    outer[USK_METADATA_CHECKSUM_KEY] = metadataChecksum(outer, safetensorsLayout(tensors));
    return writeSafetensors(tensors, outer);
  }
  // The checksum needs the tensor table before the file exists: the layout is exactly the writer's.
  metadata[USK_METADATA_CHECKSUM_KEY] = metadataChecksum(metadata, safetensorsLayout(tensors));
  return writeSafetensors(tensors, metadata);
}

export interface ReadBundleOptions {
  /**
   * Verify every tensor's CRC-32 (default true). Skipping saves a pass over the file. The metadata
   * checksum is verified either way: it covers only the header, and without it a damaged header could
   * change the model (a config field, a codec seed) with nothing noticing.
   */
  verifyChecksums?: boolean;
}

/**
 * Read and validate a bundle: the safetensors layer's limits (and no duplicate keys), the format marker and
 * version, the metadata checksum (version 2), then the metadata's structure, then every tensor checksum,
 * then each weight's codec (known id and version, valid options, tensors consistent with the shape). Any
 * failure is a typed error naming the file.
 */
export function readBundle(bytes: Uint8Array, source = '<bundle>', options: ReadBundleOptions = {}): Bundle {
  const file = readSafetensors(bytes, source);
  let meta = file.metadata;
  const bad = (code: (typeof ErrorCodes)[keyof typeof ErrorCodes], problem: string, hint = 'the bundle is corrupt or not an UltraSketch bundle'): never => {
    throw new UltraSketchError(code, problem, { source, hint });
  };
  if (meta.format !== USK_FORMAT) {
    bad(ErrorCodes.BAD_MAGIC, `not an UltraSketch bundle (metadata "format" is ${JSON.stringify(meta.format ?? null)})`, 'this is a plain safetensors file; compress a model with `ultrasketch compress` to make a bundle');
  }
  // Exactly "1" or "2": a lenient Number() would also take " 2", "2.0" or "0x2".
  const formatVersion = USK_READABLE_VERSIONS.find((v) => String(v) === meta.format_version);
  if (formatVersion === undefined) {
    bad(
      ErrorCodes.BAD_VERSION,
      `bundle format version ${JSON.stringify(meta.format_version ?? null)} is not supported (this build reads ${USK_READABLE_VERSIONS.join(', ')})`,
      'use the UltraSketch version that wrote it',
    );
  }
  const storedChecksum = meta[USK_METADATA_CHECKSUM_KEY];
  if (formatVersion === 1) {
    // Version 1 predates the key, so a version-1 header carrying one was a version-2 header whose version
    // changed: refusing it stops a one-field edit from switching the metadata check off.
    if (storedChecksum !== undefined) {
      bad(
        ErrorCodes.BAD_VERSION,
        `format version 1 has no "${USK_METADATA_CHECKSUM_KEY}", but this bundle has one: its "format_version" was changed`,
        'the file is corrupt; re-create or re-copy it',
      );
    }
  } else {
    if (storedChecksum === undefined) {
      bad(ErrorCodes.BAD_HEADER, `metadata "${USK_METADATA_CHECKSUM_KEY}" is missing (required from format version 2)`);
    }
    for (const [key, value] of Object.entries(meta)) {
      if (LONE_SURROGATE.test(key) || LONE_SURROGATE.test(value)) {
        bad(ErrorCodes.BAD_HEADER, `metadata ${JSON.stringify(key)} holds an unpaired UTF-16 surrogate escape`);
      }
    }
    for (const name of file.tensors.keys()) {
      if (LONE_SURROGATE.test(name)) bad(ErrorCodes.BAD_HEADER, `tensor name ${JSON.stringify(name)} holds an unpaired UTF-16 surrogate escape`);
    }
    const table = [...file.tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, dataOffsets: t.dataOffsets }));
    if (metadataChecksum(meta, table) !== storedChecksum) {
      bad(
        ErrorCodes.CHECKSUM,
        'metadata checksum mismatch: the header (model config, codec entries, tensor table or other metadata) changed after the bundle was written',
        'the file is corrupt or was edited; re-create or re-copy it',
      );
    }
  }
  if (formatVersion === USK_PACKED_FORMAT_VERSION) meta = unpackMetadata(file, meta, source, bad);
  const json = (key: string): unknown => {
    const text = meta[key];
    if (text === undefined) bad(ErrorCodes.BAD_HEADER, `metadata "${key}" is missing`);
    let value: unknown;
    try {
      value = JSON.parse(text!);
    } catch {
      return bad(ErrorCodes.BAD_HEADER, `metadata "${key}" is not valid JSON`);
    }
    // The header's rules: a repeated key would let two readers see two different values, and deep nesting
    // would overflow the stack in the messages below (JSON.stringify of a stored value).
    const problem = scanJson(text!, LIMITS.maxJsonDepth);
    if (problem) {
      const where = problem.path.length === 0 ? '' : ` (in ${problem.path.map((p) => JSON.stringify(p)).join(' → ')})`;
      if (problem.kind === 'duplicate') bad(ErrorCodes.BAD_HEADER, `metadata "${key}" has the key ${JSON.stringify(problem.key)} twice${where}`);
      bad(ErrorCodes.LIMIT_EXCEEDED, `metadata "${key}" nests deeper than the limit of ${LIMITS.maxJsonDepth} levels${where}`);
    }
    return value;
  };
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

  const config = json('model_config');
  if (!isObject(config)) bad(ErrorCodes.BAD_HEADER, 'metadata "model_config" is not an object');
  const tokenizer = readTokenizerEntry(json('tokenizer'), bad);
  const checksums = json('checksums');
  if (!isObject(checksums)) bad(ErrorCodes.BAD_HEADER, 'metadata "checksums" is not an object');
  const entries = json('weights');
  if (!isObject(entries)) bad(ErrorCodes.BAD_HEADER, 'metadata "weights" is not an object');
  const vectorNames = json('vectors');
  if (!Array.isArray(vectorNames) || vectorNames.some((v) => typeof v !== 'string')) {
    bad(ErrorCodes.BAD_HEADER, 'metadata "vectors" is not a list of names');
  }

  // Every tensor must carry a checksum, and every checksum must name a tensor (format 3's packed metadata is
  // covered by the SHA-256 in the outer metadata instead: it cannot hold its own checksum).
  const packedTensor = formatVersion === USK_PACKED_FORMAT_VERSION ? USK_PACKED_METADATA_TENSOR : null;
  const claimed = new Set(Object.keys(checksums as object));
  for (const name of file.tensors.keys()) {
    if (!claimed.has(name) && name !== packedTensor) bad(ErrorCodes.BAD_HEADER, `tensor "${name}" has no checksum in the metadata`);
  }
  if (packedTensor !== null && claimed.has(packedTensor)) bad(ErrorCodes.BAD_HEADER, `tensor "${packedTensor}" must not be listed in the checksums`);
  for (const name of claimed) {
    if (!file.tensors.has(name)) bad(ErrorCodes.MISSING_TENSOR, `tensor "${name}" is listed in the checksums but missing`);
  }
  const verifyTensors = options.verifyChecksums ?? true;
  if (verifyTensors) {
    for (const [name, t] of file.tensors) {
      if (name === packedTensor) continue;
      if (crc32Tag(t.data) !== (checksums as Record<string, unknown>)[name]) {
        bad(ErrorCodes.CHECKSUM, `checksum mismatch in tensor "${name}": its bytes changed after the bundle was written`, 'the file is corrupt; re-create or re-copy it');
      }
    }
  }

  const tokenizerTensors = tokenizerTensorNames(tokenizer.kind);
  const used = new Set<string>(tokenizerTensors);
  if (packedTensor !== null) used.add(packedTensor);
  let tokBytes = tokenizerTensors.map((name) => {
    const t = file.tensors.get(name);
    if (!t || t.dtype !== 'U8' || t.shape.length !== 1) bad(ErrorCodes.MISSING_TENSOR, `tensor "${name}" (U8) is missing`);
    return t!.data;
  });
  if (meta[USK_TOKENIZER_PACKING_KEY] !== undefined) {
    if (formatVersion !== USK_PACKED_FORMAT_VERSION) bad(ErrorCodes.BAD_HEADER, `metadata "${USK_TOKENIZER_PACKING_KEY}" exists only in format version 3`);
    tokBytes = unpackTokenizer(json(USK_TOKENIZER_PACKING_KEY), tokenizer.kind, tokBytes, source, bad);
  }

  const vectors = new Map<string, Float32Array>();
  for (const name of vectorNames as string[]) {
    const t = file.tensors.get(name);
    if (!t || t.dtype !== 'F32' || t.shape.length !== 1) bad(ErrorCodes.MISSING_TENSOR, `vector "${name}" (F32, 1-D) is missing`);
    const v = new Float32Array(t!.shape[0]!);
    new Uint8Array(v.buffer).set(t!.data);
    vectors.set(name, v);
    used.add(name);
  }

  // Group component tensors by weight: "<weight>.<component>", component without dots.
  const byWeight = new Map<string, Record<string, StoredTensor>>();
  for (const [name, t] of file.tensors) {
    if (used.has(name)) continue;
    const dot = name.lastIndexOf('.');
    const weight = name.slice(0, dot);
    if (dot <= 0 || !Object.prototype.hasOwnProperty.call(entries, weight)) {
      bad(ErrorCodes.BAD_HEADER, `tensor "${name}" is not described by the bundle's metadata`);
    }
    const group = byWeight.get(weight) ?? {};
    group[name.slice(dot + 1)] = t;
    byWeight.set(weight, group);
  }

  const weights = new Map<string, BundleWeight>();
  for (const [name, raw] of Object.entries(entries as Record<string, unknown>)) {
    const where = `${source} (${name})`;
    if (!isObject(raw)) bad(ErrorCodes.BAD_HEADER, `weight entry "${name}" is not an object`);
    const e = raw as Record<string, unknown>;
    const dims = [e.rows, e.cols];
    if (dims.some((d) => typeof d !== 'number' || !Number.isInteger(d) || d <= 0 || d > LIMITS.maxTensorDim)) {
      bad(ErrorCodes.BAD_DIMENSION, `weight "${name}" has invalid shape ${JSON.stringify(dims)}`);
    }
    if (typeof e.codec !== 'string' || typeof e.version !== 'number' || typeof e.seed !== 'number' || !isObject(e.options)) {
      bad(ErrorCodes.BAD_HEADER, `weight entry "${name}" needs string codec, number version and seed, object options`);
    }
    const codec = getCodec(e.codec as string, e.version as number, where);
    let resolved: unknown;
    try {
      resolved = codec.resolveOptions(e.options as Record<string, unknown>);
    } catch (err) {
      // Stored options are not a command line: re-point the error at the file and weight.
      if (err instanceof UltraSketchError) {
        throw new UltraSketchError(err.code, `stored options of weight "${name}": ${err.problem}`, {
          source,
          hint: 'the bundle is corrupt or was written by an incompatible codec version',
          cause: err,
        });
      }
      throw err;
    }
    const tensors = byWeight.get(name) ?? {};
    const params = codec.fromTensors(tensors, e.rows as number, e.cols as number, resolved, where);
    const expected = Object.keys(codec.toTensors(params)).sort().join(',');
    const present = Object.keys(tensors).sort().join(',');
    if (expected !== present) {
      bad(ErrorCodes.BAD_HEADER, `weight "${name}" has tensors [${present}], codec ${e.codec} stores [${expected}]`);
    }
    const entry: BundleWeightEntry = {
      codec: e.codec as string,
      version: e.version as number,
      options: resolved,
      seed: e.seed as number,
      rows: e.rows as number,
      cols: e.cols as number,
    };
    weights.set(name, { entry, params });
  }

  const sections: Record<string, unknown> = {};
  for (const key of Object.keys(meta)) if (!RESERVED_KEYS.includes(key)) sections[key] = json(key);
  return {
    formatVersion: formatVersion!,
    config: config as Record<string, unknown>,
    tokenizer: { ...tokenizer, bytes: tokBytes[0]!, ...(tokenizer.kind === 'hf-json' ? { configBytes: tokBytes[1]! } : {}) },
    weights,
    vectors,
    sections,
    integrity: {
      metadata: formatVersion === 1 ? 'none' : 'sha256',
      metadataChecksum: formatVersion === 1 ? null : storedChecksum!,
      tensorsVerified: verifyTensors,
    },
    file,
  };
}

// ------------------------------------------------------------------------------------------- tokenizer

/**
 * The `tokenizer` metadata entry. `llama2c` is written exactly as before tokenizer kinds existed
 * ({"kind","tensor"}), so a bundle of a llama2.c model is byte-identical to one written by earlier builds.
 */
function tokenizerEntry(t: BundleTokenizer): Record<string, unknown> {
  if (!USK_TOKENIZER_KINDS.includes(t.kind)) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `unknown tokenizer kind ${JSON.stringify(t.kind)} (one of ${USK_TOKENIZER_KINDS.join(', ')})`);
  }
  if (t.kind === 'llama2c') return { kind: 'llama2c', tensor: USK_TOKENIZER_TENSOR };
  const ids = { bosId: checkedId(t.bosId ?? null), eosIds: (t.eosIds ?? []).map((id) => checkedId(id)!) };
  if (t.kind === 'gguf-llama') return { kind: 'gguf-llama', tensor: USK_TOKENIZER_TENSOR, ...ids };
  return { kind: 'hf-json', tensor: USK_HF_TOKENIZER_TENSOR, configTensor: USK_HF_TOKENIZER_CONFIG_TENSOR, ...ids, origin: t.origin ?? 'tokenizer.json' };
}

function checkedId(id: number | null): number | null {
  if (id !== null && (!Number.isInteger(id) || id < 0 || id >= LIMITS.maxVocab)) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `token id ${id} is not in 0..${LIMITS.maxVocab - 1}`, { source: 'tokenizer' });
  }
  return id;
}

/** The stored `tokenizer` entry, checked key by key: a known kind, its fixed tensor names, ids in range. */
function readTokenizerEntry(
  raw: unknown,
  bad: (code: (typeof ErrorCodes)[keyof typeof ErrorCodes], problem: string) => never,
): Omit<BundleTokenizer, 'bytes' | 'configBytes'> {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(raw) || typeof raw.kind !== 'string' || !(USK_TOKENIZER_KINDS as readonly string[]).includes(raw.kind)) {
    bad(ErrorCodes.BAD_HEADER, `metadata "tokenizer" must name a tokenizer kind (${USK_TOKENIZER_KINDS.join(', ')}), got ${JSON.stringify(raw)}`);
  }
  const entry = raw as Record<string, unknown>;
  const kind = entry.kind as BundleTokenizerKind;
  const want: Record<string, unknown> =
    kind === 'llama2c'
      ? { kind, tensor: USK_TOKENIZER_TENSOR }
      : kind === 'gguf-llama'
        ? { kind, tensor: USK_TOKENIZER_TENSOR, bosId: null, eosIds: null }
        : { kind, tensor: USK_HF_TOKENIZER_TENSOR, configTensor: USK_HF_TOKENIZER_CONFIG_TENSOR, bosId: null, eosIds: null, origin: null };
  const keys = Object.keys(entry).sort().join(',');
  if (keys !== Object.keys(want).sort().join(',')) {
    bad(ErrorCodes.BAD_HEADER, `metadata "tokenizer" of kind ${kind} must have exactly the keys ${Object.keys(want).join(', ')}, has ${Object.keys(entry).join(', ')}`);
  }
  for (const k of ['tensor', 'configTensor'] as const) {
    if (k in want && entry[k] !== want[k]) bad(ErrorCodes.BAD_HEADER, `metadata "tokenizer" ${k} must be ${JSON.stringify(want[k])}, got ${JSON.stringify(entry[k])}`);
  }
  const out: Omit<BundleTokenizer, 'bytes' | 'configBytes'> = { kind };
  if (kind === 'llama2c') return out;
  const id = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < LIMITS.maxVocab;
  if (entry.bosId !== null && !id(entry.bosId)) bad(ErrorCodes.BAD_HEADER, `metadata "tokenizer" bosId ${JSON.stringify(entry.bosId)} is not a token id or null`);
  if (!Array.isArray(entry.eosIds) || entry.eosIds.length > 64 || !entry.eosIds.every(id)) {
    bad(ErrorCodes.BAD_HEADER, `metadata "tokenizer" eosIds ${JSON.stringify(entry.eosIds)} is not a list of at most 64 token ids`);
  }
  out.bosId = entry.bosId as number | null;
  out.eosIds = entry.eosIds as number[];
  if (kind === 'hf-json') {
    if (typeof entry.origin !== 'string' || entry.origin.length > 64) bad(ErrorCodes.BAD_HEADER, `metadata "tokenizer" origin ${JSON.stringify(entry.origin)} is not a short string`);
    out.origin = entry.origin as string;
  }
  return out;
}

// ------------------------------------------------------------------------------------------- format 3

/**
 * The tokenizer's tensors as written: the files as they are, or (format 3) each deflated, a llama2.c file turned
 * into columns first when it parses as one, with the packing entry that says how.
 */
function tokenizerTensors(
  tok: BundleTokenizer,
  pack: WriteBundleOptions['pack'],
): { files: [string, Uint8Array][]; packing: { encoding: string; lengths: number[] } | null } {
  const files: [string, Uint8Array][] =
    tok.kind === 'hf-json'
      ? [
          [USK_HF_TOKENIZER_TENSOR, tok.bytes],
          [USK_HF_TOKENIZER_CONFIG_TENSOR, tok.configBytes ?? encodeUtf8('{}')],
        ]
      : [[USK_TOKENIZER_TENSOR, tok.bytes]];
  if (!pack) return { files, packing: null };
  const columns = tok.kind === 'hf-json' ? null : llama2cColumns(tok.bytes);
  const packing = { encoding: columns ? 'llama2c-columns+deflate-raw' : 'deflate-raw', lengths: [] as number[] };
  for (const entry of files) {
    const plain = entry[0] === USK_TOKENIZER_TENSOR && columns ? columns : entry[1];
    packing.lengths.push(plain.length);
    entry[1] = pack.deflateRaw(plain);
  }
  return { files, packing };
}

/** Bytes the tokenizer's tensors take in a bundle written with these options (for the stored accounting). */
export function storedTokenizerBytes(tok: BundleTokenizer, options: WriteBundleOptions = {}): number {
  return tokenizerTensors(tok, options.pack).files.reduce((n, [, data]) => n + data.byteLength, 0);
}

type Bad = (code: (typeof ErrorCodes)[keyof typeof ErrorCodes], problem: string, hint?: string) => never;

/**
 * Format 3: the metadata a format-2 header holds, read back from its deflated tensor. The outer metadata has
 * exactly format, format_version, packed_metadata and metadata_checksum (already verified, and covering
 * packed_metadata's SHA-256 of the stored bytes, checked here before inflating). The inner JSON follows the
 * header's rules (no duplicate keys, bounded depth) and may not repeat the outer keys.
 */
function unpackMetadata(file: SafetensorsFile, outer: Record<string, string>, source: string, bad: Bad): Record<string, string> {
  const want = ['format', 'format_version', USK_METADATA_CHECKSUM_KEY, USK_PACKED_METADATA_KEY];
  const text = outer[USK_PACKED_METADATA_KEY];
  if (text === undefined) {
    bad(ErrorCodes.BAD_VERSION, `format version 3 stores its metadata packed, but "${USK_PACKED_METADATA_KEY}" is missing`, 'the file is corrupt or its format_version was changed');
  }
  const extra = Object.keys(outer).filter((k) => !want.includes(k));
  if (extra.length > 0) bad(ErrorCodes.BAD_HEADER, `format version 3 keeps its metadata packed; the header also has ${extra.map((k) => JSON.stringify(k)).join(', ')}`);
  let desc: unknown;
  try {
    desc = JSON.parse(text!);
  } catch {
    bad(ErrorCodes.BAD_HEADER, `metadata "${USK_PACKED_METADATA_KEY}" is not valid JSON`);
  }
  const d = desc as Record<string, unknown>;
  if (
    typeof d !== 'object' || d === null || Array.isArray(d) ||
    Object.keys(d).sort().join(',') !== 'encoding,length,sha256,tensor' ||
    d.tensor !== USK_PACKED_METADATA_TENSOR || d.encoding !== 'deflate-raw' ||
    typeof d.length !== 'number' || !Number.isInteger(d.length) || d.length < 2 || d.length > MAX_PACKED_BYTES ||
    typeof d.sha256 !== 'string'
  ) {
    bad(ErrorCodes.BAD_HEADER, `metadata "${USK_PACKED_METADATA_KEY}" must be {tensor: "${USK_PACKED_METADATA_TENSOR}", encoding: "deflate-raw", length, sha256}, got ${text!.slice(0, 200)}`);
  }
  const t = file.tensors.get(USK_PACKED_METADATA_TENSOR);
  if (!t || t.dtype !== 'U8' || t.shape.length !== 1) bad(ErrorCodes.MISSING_TENSOR, `tensor "${USK_PACKED_METADATA_TENSOR}" (U8) is missing`);
  if (`sha256:${sha256Hex(t!.data)}` !== d.sha256) {
    bad(ErrorCodes.CHECKSUM, `checksum mismatch in tensor "${USK_PACKED_METADATA_TENSOR}" (the packed metadata): its bytes changed after the bundle was written`, 'the file is corrupt; re-create or re-copy it');
  }
  const plain = inflateRaw(t!.data, d.length as number, `${source} (${USK_PACKED_METADATA_TENSOR})`);
  const innerText = decodeUtf8Strict(plain) ?? bad(ErrorCodes.BAD_HEADER, 'the packed metadata is not UTF-8');
  let inner: unknown;
  try {
    inner = JSON.parse(innerText);
  } catch {
    bad(ErrorCodes.BAD_HEADER, 'the packed metadata is not valid JSON');
  }
  const problem = scanJson(innerText, LIMITS.maxJsonDepth);
  if (problem) {
    if (problem.kind === 'duplicate') bad(ErrorCodes.BAD_HEADER, `the packed metadata has the key ${JSON.stringify(problem.key)} twice`);
    bad(ErrorCodes.LIMIT_EXCEEDED, `the packed metadata nests deeper than the limit of ${LIMITS.maxJsonDepth} levels`);
  }
  if (typeof inner !== 'object' || inner === null || Array.isArray(inner)) bad(ErrorCodes.BAD_HEADER, 'the packed metadata is not an object');
  const out: Record<string, string> = { format: outer.format!, format_version: outer.format_version! };
  for (const [k, v] of Object.entries(inner as Record<string, unknown>)) {
    if (want.includes(k)) bad(ErrorCodes.BAD_HEADER, `the packed metadata repeats the outer key ${JSON.stringify(k)}`);
    if (typeof v !== 'string') bad(ErrorCodes.BAD_HEADER, `the packed metadata entry ${JSON.stringify(k)} is not a string`);
    if (LONE_SURROGATE.test(k) || LONE_SURROGATE.test(v as string)) bad(ErrorCodes.BAD_HEADER, `the packed metadata entry ${JSON.stringify(k)} holds an unpaired UTF-16 surrogate escape`);
    out[k] = v as string;
  }
  return out;
}

/** Format 3: the tokenizer files back from their deflated tensors (`tokenizer_packing`: encoding and lengths). */
function unpackTokenizer(raw: unknown, kind: BundleTokenizerKind, stored: Uint8Array[], source: string, bad: Bad): Uint8Array[] {
  const r = raw as Record<string, unknown>;
  const encodings = kind === 'hf-json' ? ['deflate-raw'] : ['deflate-raw', 'llama2c-columns+deflate-raw'];
  if (
    typeof r !== 'object' || r === null || Array.isArray(r) ||
    Object.keys(r).sort().join(',') !== 'encoding,lengths' ||
    !encodings.includes(r.encoding as string) ||
    !Array.isArray(r.lengths) || r.lengths.length !== stored.length ||
    !r.lengths.every((n) => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_PACKED_BYTES)
  ) {
    bad(ErrorCodes.BAD_HEADER, `metadata "${USK_TOKENIZER_PACKING_KEY}" must be {encoding: ${encodings.map((e) => JSON.stringify(e)).join(' | ')}, lengths: [${stored.length} byte counts]}, got ${JSON.stringify(raw).slice(0, 200)}`);
  }
  const names = tokenizerTensorNames(kind);
  return stored.map((bytes, i) => {
    const where = `${source} (${names[i]})`;
    const plain = inflateRaw(bytes, (r.lengths as number[])[i]!, where);
    return r.encoding === 'llama2c-columns+deflate-raw' && names[i] === USK_TOKENIZER_TENSOR ? llama2cFromColumns(plain, where) : plain;
  });
}
