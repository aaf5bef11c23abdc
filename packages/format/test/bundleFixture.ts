import { registerAll } from '@ultrasketch/baselines';
import { type CodecParams, type ErrorCode, Rng, type StoredTensor, UltraSketchError, getCodec } from '@ultrasketch/core';
import { expect } from 'vitest';
import { type BundleInput, crc32Tag, metadataChecksum, writeSafetensors } from '../src/index.js';

/**
 * A small bundle with one weight per codec configuration worth covering (awkward shapes: 8×8, 4×8, 12×8,
 * 8×12, 10×8), written with the format package's own writer. Tests of the bundle layer only: the model
 * config is carried as opaque JSON here (the pipeline checks it against the tensors).
 */

registerAll();

export interface FixtureWeight {
  name: string;
  codec: string;
  options: Record<string, unknown>;
  rows: number;
  cols: number;
  seed: number;
  values: Float32Array;
  params: CodecParams;
  tensors: Record<string, StoredTensor>;
}

const PLAN: Array<[string, string, Record<string, unknown>, number, number]> = [
  ['model.embed_tokens.weight', 'float', { dtype: 'f32' }, 10, 8],
  ['model.layers.0.self_attn.q_proj.weight', 'rtn', { bits: 4, groupSize: 3 }, 8, 8],
  ['model.layers.0.self_attn.k_proj.weight', 'binary', {}, 4, 8],
  ['model.layers.0.self_attn.v_proj.weight', 'rtn', { bits: 3, groupSize: 5 }, 4, 8],
  ['model.layers.0.self_attn.o_proj.weight', 'float', { dtype: 'f16' }, 8, 8],
  ['model.layers.0.mlp.gate_proj.weight', 'rtn', { bits: 2, groupSize: 0 }, 12, 8],
  ['model.layers.0.mlp.up_proj.weight', 'rtn', { bits: 8, groupSize: 64 }, 12, 8],
  ['model.layers.0.mlp.down_proj.weight', 'binary', {}, 8, 12],
  ['lm_head.weight', 'rtn', { bits: 4, groupSize: 4 }, 10, 8],
];

export function fixtureWeights(seed = 1): FixtureWeight[] {
  const rng = new Rng(seed);
  return PLAN.map(([name, codecId, raw, rows, cols], i) => {
    const codec = getCodec(codecId);
    const options = codec.resolveOptions(raw);
    const values = rng.normalArray(rows * cols, 0.5);
    const params = codec.encode(values, rows, cols, options, { name, seed: 100 + i });
    return { name, codec: codecId, options, rows, cols, seed: 100 + i, values, params, tensors: codec.toTensors(params) };
  });
}

export const FIXTURE_CONFIG = { architecture: 'llama', dim: 8, note: 'opaque to the bundle layer' };
export const FIXTURE_TOKENIZER = new Uint8Array([7, 0, 0, 0, 1, 2, 3, 250, 251]);

export function fixtureInput(seed = 1): { input: BundleInput; weights: FixtureWeight[]; vectors: Map<string, Float32Array> } {
  const weights = fixtureWeights(seed);
  const rng = new Rng(seed + 1000);
  const vectors = new Map<string, Float32Array>([
    ['model.layers.0.input_layernorm.weight', rng.normalArray(8)],
    ['model.layers.0.post_attention_layernorm.weight', rng.normalArray(8)],
    ['model.norm.weight', rng.normalArray(8)],
  ]);
  const input: BundleInput = {
    config: FIXTURE_CONFIG,
    tokenizer: { kind: 'llama2c', bytes: FIXTURE_TOKENIZER },
    weights: new Map(
      weights.map((w) => [
        w.name,
        {
          entry: { codec: w.codec, version: getCodec(w.codec).version, options: w.options, seed: w.seed, rows: w.rows, cols: w.cols },
          tensors: w.tensors,
        },
      ]),
    ),
    vectors,
    sections: { provenance: { tool: 'test', command: 'fixture' }, accounting: { note: 'not checked by the format layer' } },
  };
  return { input, weights, vectors };
}

// --------------------------------------------------------------------------------------------------------
// An independent safetensors parser/writer, from the spec (https://github.com/huggingface/safetensors):
// 8-byte little-endian u64 N, N bytes of UTF-8 JSON {name: {dtype, shape, data_offsets: [begin, end]},
// "__metadata__": {string: string}}, then the data area; offsets are relative to the start of the data area.

export interface SpecTensor {
  dtype: string;
  shape: number[];
  /** Offsets relative to the data area, as in the header. */
  offsets: [number, number];
  bytes: Uint8Array;
}

export interface SpecFile {
  headerLength: number;
  header: Record<string, unknown>;
  metadata: Record<string, string>;
  tensors: Map<string, SpecTensor>;
  /** The raw data area. */
  data: Uint8Array;
}

export function specParse(file: Uint8Array): SpecFile {
  const n = Number(new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(file.subarray(8, 8 + n))) as Record<string, any>;
  const data = file.subarray(8 + n);
  const tensors = new Map<string, SpecTensor>();
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [b, e] = v.data_offsets as [number, number];
    tensors.set(name, { dtype: v.dtype, shape: v.shape, offsets: [b, e], bytes: data.subarray(b, e) });
  }
  return { headerLength: n, header, metadata: header.__metadata__ ?? {}, tensors, data };
}

/**
 * A header whose `metadata_checksum` (when it has one) is recomputed for its current metadata and tensor
 * table, as a careful editor would: the hostile tests then exercise the check they are about, not the
 * checksum. A table too malformed to checksum (a test of the safetensors layer) is left as it is.
 */
export function resealed(header: Record<string, unknown>): Record<string, unknown> {
  const meta = header.__metadata__ as Record<string, string> | undefined;
  if (meta === null || typeof meta !== 'object' || typeof meta.metadata_checksum !== 'string') return header;
  const table = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const ints = (x: unknown) => Array.isArray(x) && x.every((d) => Number.isSafeInteger(d) && d >= 0);
    if (typeof e?.dtype !== 'string' || !ints(e.shape) || !ints(e.data_offsets)) return header;
    table.push({ name, dtype: e.dtype, shape: e.shape as number[], dataOffsets: e.data_offsets as [number, number] });
  }
  return { ...header, __metadata__: { ...meta, metadata_checksum: metadataChecksum(meta, table) } };
}

/**
 * A file with `header` (re-serialized, padded to 8) in front of the unchanged data area; its metadata
 * checksum re-sealed unless `reseal` is false.
 */
export function specWithHeader(header: Record<string, unknown>, data: Uint8Array, reseal = true): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(reseal ? resealed(header) : header));
  const n = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + n + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + n);
  out.set(data, 8 + n);
  return out;
}

/**
 * The file with its `__metadata__` changed by `edit` (tensors and their bytes untouched), the metadata
 * checksum re-sealed unless `reseal` is false.
 */
export function editMetadata(file: Uint8Array, edit: (meta: Record<string, string>) => void, reseal = true): Uint8Array {
  const spec = specParse(file);
  const meta = { ...spec.metadata };
  edit(meta);
  return specWithHeader({ ...spec.header, __metadata__: meta }, spec.data, reseal);
}

/** Edit one JSON-valued metadata entry. */
export function editMetadataJson(file: Uint8Array, key: string, edit: (value: any) => unknown): Uint8Array {
  return editMetadata(file, (meta) => {
    const v = JSON.parse(meta[key]!);
    const out = edit(v);
    meta[key] = JSON.stringify(out === undefined ? v : out);
  });
}

/**
 * Rebuild the file with its tensors changed by `edit` (a name → tensor map), rewriting the checksums so
 * that only the change under test is wrong.
 */
export function editTensors(file: Uint8Array, edit: (tensors: Map<string, StoredTensor>) => void): Uint8Array {
  const spec = specParse(file);
  const tensors = new Map<string, StoredTensor>();
  for (const [name, t] of spec.tensors) tensors.set(name, { dtype: t.dtype as StoredTensor['dtype'], shape: t.shape, data: t.bytes.slice() });
  edit(tensors);
  const meta = { ...spec.metadata };
  const checksums: Record<string, string> = {};
  for (const [name, t] of tensors) checksums[name] = crc32Tag(t.data);
  meta.checksums = JSON.stringify(checksums);
  const rebuilt = writeSafetensors([...tensors].map(([name, t]) => ({ name, ...t })), meta);
  const again = specParse(rebuilt);
  return specWithHeader(again.header, again.data);
}

/** Expect a typed error with `code` whose message names `file` (and matches `problem`). */
export function expectBundleError(fn: () => unknown, code: ErrorCode, file: string, problem?: RegExp): UltraSketchError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected an UltraSketchError').toBeInstanceOf(UltraSketchError);
  const err = caught as UltraSketchError;
  expect(err.code, err.message).toBe(code);
  expect(err.message).toContain(file);
  if (problem) expect(err.message).toMatch(problem);
  return err;
}
