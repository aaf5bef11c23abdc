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
import { encodeUtf8 } from './utf8.js';

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
/** Versions this build reads: 1 (before the metadata checksum, which it lacks) and 2. */
export const USK_READABLE_VERSIONS: readonly number[] = [1, 2];
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

export function writeBundle(input: BundleInput): Uint8Array<ArrayBuffer> {
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
  if (tok.kind === 'hf-json') {
    const config = tok.configBytes ?? encodeUtf8('{}');
    tensors.push({ name: USK_HF_TOKENIZER_TENSOR, dtype: 'U8', shape: [tok.bytes.length], data: tok.bytes });
    tensors.push({ name: USK_HF_TOKENIZER_CONFIG_TENSOR, dtype: 'U8', shape: [config.length], data: config });
  } else {
    tensors.push({ name: USK_TOKENIZER_TENSOR, dtype: 'U8', shape: [tok.bytes.length], data: tok.bytes });
  }

  const checksums: Record<string, string> = {};
  for (const t of [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    checksums[t.name] = crc32Tag(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  const metadata: Record<string, string> = {
    format: USK_FORMAT,
    format_version: String(USK_FORMAT_VERSION),
    model_config: JSON.stringify(input.config),
    tokenizer: JSON.stringify(tokEntry),
    weights: JSON.stringify(entries),
    vectors: JSON.stringify(vectorNames),
    checksums: JSON.stringify(checksums),
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
  const meta = file.metadata;
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
      `bundle format version ${JSON.stringify(meta.format_version ?? null)} is not supported (this build reads ${USK_READABLE_VERSIONS.join(' and ')})`,
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

  // Every tensor must carry a checksum, and every checksum must name a tensor.
  const claimed = new Set(Object.keys(checksums as object));
  for (const name of file.tensors.keys()) {
    if (!claimed.has(name)) bad(ErrorCodes.BAD_HEADER, `tensor "${name}" has no checksum in the metadata`);
  }
  for (const name of claimed) {
    if (!file.tensors.has(name)) bad(ErrorCodes.MISSING_TENSOR, `tensor "${name}" is listed in the checksums but missing`);
  }
  const verifyTensors = options.verifyChecksums ?? true;
  if (verifyTensors) {
    for (const [name, t] of file.tensors) {
      if (crc32Tag(t.data) !== (checksums as Record<string, unknown>)[name]) {
        bad(ErrorCodes.CHECKSUM, `checksum mismatch in tensor "${name}": its bytes changed after the bundle was written`, 'the file is corrupt; re-create or re-copy it');
      }
    }
  }

  const tokenizerTensors = tokenizerTensorNames(tokenizer.kind);
  const used = new Set<string>(tokenizerTensors);
  const tokBytes = tokenizerTensors.map((name) => {
    const t = file.tensors.get(name);
    if (!t || t.dtype !== 'U8' || t.shape.length !== 1) bad(ErrorCodes.MISSING_TENSOR, `tensor "${name}" (U8) is missing`);
    return t!.data;
  });

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
