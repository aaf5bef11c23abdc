import { ErrorCodes, UltraSketchError, type ErrorCode } from '@ultrasketch/core';
import { LIMITS } from './limits.js';

/**
 * `model.safetensors.index.json`, the map of a sharded Hugging Face checkpoint:
 * `{"metadata": {"total_size": N, ...}, "weight_map": {"<tensor name>": "<shard file name>", ...}}`.
 *
 * The shard names come from a downloaded file and are joined to the model directory by the loader, so each
 * must be a plain file name in that directory: no separator, no "." or "..", nothing that could make the
 * loader read outside the directory (or a device, or a file on another drive).
 */

export interface HfShardIndex {
  /** Tensor name → shard file name, in the file's order. */
  weightMap: Map<string, string>;
  /** The distinct shard file names, in order of first appearance. */
  shards: string[];
  /** `metadata.total_size` (bytes of tensor data over all shards), when stated. */
  totalSize: number | null;
}

/** Most shards one index may name (real checkpoints have up to a few hundred). */
export const MAX_SHARDS = 1 << 16;

const HINT = 'model.safetensors.index.json must map each tensor name to a shard file in the same directory; re-download it';

function fail(code: ErrorCode, problem: string, source: string, hint = HINT): never {
  throw new UltraSketchError(code, problem, { source, hint });
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'missing';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Why `name` is not a plain file name in the model directory, or undefined when it is one. Refused: empty
 * names, path separators (/ and \, either platform's), "." and "..", a drive or stream colon, NUL and other
 * control characters; and names not ending in ".safetensors" (an index of safetensors shards names only those).
 */
export function shardNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (name.includes('/') || name.includes('\\')) return 'contains a path separator';
  if (name === '.' || name === '..') return 'is a directory reference';
  if (name.includes(':')) return 'contains ":" (a drive or stream name on Windows)';
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'contains a control character';
  if (!name.endsWith('.safetensors')) return 'does not end in .safetensors';
  return undefined;
}

/**
 * Parse a `model.safetensors.index.json` (the parsed JSON value). `weight_map` is required and must be a
 * non-empty object of tensor name → shard file name; `metadata` is optional, and its `total_size`, when
 * present, must be a non-negative integer. Every shard name must pass `shardNameProblem`.
 */
export function parseHfShardIndex(json: unknown, source = 'model.safetensors.index.json'): HfShardIndex {
  if (!isObject(json)) fail(ErrorCodes.BAD_HEADER, `the index is ${typeName(json)}, expected a JSON object`, source);
  const map = json.weight_map;
  if (!isObject(map)) fail(ErrorCodes.BAD_HEADER, `weight_map is ${typeName(map)}, expected an object of tensor name → shard file`, source);
  const names = Object.keys(map);
  if (names.length === 0) fail(ErrorCodes.BAD_HEADER, 'weight_map is empty: the index names no tensors', source);
  if (names.length > LIMITS.maxTensorCount) {
    fail(ErrorCodes.LIMIT_EXCEEDED, `weight_map lists ${names.length} tensors, more than the limit of ${LIMITS.maxTensorCount}`, source);
  }
  const weightMap = new Map<string, string>();
  const shards: string[] = [];
  const seen = new Set<string>();
  for (const name of names) {
    const shard = map[name];
    if (name.length === 0) fail(ErrorCodes.BAD_HEADER, 'weight_map has an empty tensor name', source);
    if (typeof shard !== 'string') {
      fail(ErrorCodes.BAD_HEADER, `weight_map entry ${JSON.stringify(name)} is ${typeName(shard)}, expected a shard file name`, source);
    }
    const problem = shardNameProblem(shard);
    if (problem) {
      fail(
        ErrorCodes.BAD_HEADER,
        `weight_map entry ${JSON.stringify(name)} names shard ${JSON.stringify(shard)}, which ${problem}`,
        source,
        'a shard must be a plain .safetensors file name in the model directory (no paths); the index is corrupt or crafted',
      );
    }
    weightMap.set(name, shard);
    if (!seen.has(shard)) {
      if (seen.size >= MAX_SHARDS) fail(ErrorCodes.LIMIT_EXCEEDED, `the index names more than ${MAX_SHARDS} shard files`, source);
      seen.add(shard);
      shards.push(shard);
    }
  }
  let totalSize: number | null = null;
  const metadata = json.metadata;
  if (metadata !== undefined && metadata !== null) {
    if (!isObject(metadata)) fail(ErrorCodes.BAD_HEADER, `metadata is ${typeName(metadata)}, expected an object`, source);
    const t = metadata.total_size;
    if (t !== undefined && t !== null) {
      if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0) {
        fail(ErrorCodes.BAD_HEADER, `metadata.total_size is ${typeof t === 'number' ? t : typeName(t)}, expected a byte count`, source);
      }
      totalSize = t;
    }
  }
  return { weightMap, shards, totalSize };
}
