/**
 * What `compress` does when the caller does not say: which linear kinds each method compresses, how the
 * embedding (and an untied classifier) can be stored, the small-matrix policies, and each weight's seed.
 */
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { LINEAR_KINDS, type LinearKind } from '@ultrasketch/model';

const ALL_LINEARS: readonly LinearKind[] = LINEAR_KINDS;
const ALL_BUT_O: readonly LinearKind[] = ['q', 'k', 'v', 'gate', 'up', 'down'];

/**
 * Which linear kinds each method compresses by default (docs/methods.md): the baselines and LittleBit
 * compress all seven; UltraSketchLLM keeps the attention output projection (O) in float, and hashednets,
 * its comparison baseline, does the same. Codecs not listed default to all seven. Packages that add codecs
 * may set theirs with `setDefaultLayers`.
 */
const DEFAULT_LAYERS = new Map<string, readonly LinearKind[]>([
  ['float', ALL_LINEARS],
  ['rtn', ALL_LINEARS],
  ['binary', ALL_LINEARS],
  ['littlebit', ALL_LINEARS],
  ['sketch', ALL_BUT_O],
  ['hashednets', ALL_BUT_O],
]);

/** The linear kinds `codecId` compresses when the caller does not say. */
export function defaultLayers(codecId: string): LinearKind[] {
  return [...(DEFAULT_LAYERS.get(codecId) ?? ALL_LINEARS)];
}

/** Set (or replace) a codec's default set of compressed linear kinds. */
export function setDefaultLayers(codecId: string, kinds: readonly LinearKind[]): void {
  DEFAULT_LAYERS.set(codecId, parseLayers(kinds));
}

/**
 * Parse a layer list: 'q,k,v,o,gate,up,down' (any subset, any order, comma-separated), 'all', or an array
 * of kinds. Returned in canonical order without duplicates; BAD_ARGUMENT on anything unknown or empty.
 */
export function parseLayers(spec: string | readonly string[]): LinearKind[] {
  const items = (typeof spec === 'string' ? spec.split(',') : [...spec]).map((s) => s.trim()).filter((s) => s !== '');
  if (items.length === 1 && items[0] === 'all') return [...ALL_LINEARS];
  const bad = items.filter((s) => !(LINEAR_KINDS as readonly string[]).includes(s));
  if (bad.length > 0 || items.length === 0) {
    throw new UltraSketchError(
      ErrorCodes.BAD_ARGUMENT,
      items.length === 0 ? 'the layer list is empty' : `unknown linear kind(s): ${bad.join(', ')}`,
      { source: '--layers', hint: `use a comma-separated subset of ${LINEAR_KINDS.join(',')}, or all` },
    );
  }
  return LINEAR_KINDS.filter((k) => items.includes(k));
}

/** How the embedding (and an untied classifier) is stored. */
export type EmbeddingStorage = 'f16' | 'f32' | 'rtn2' | 'rtn3' | 'rtn4' | 'rtn8' | 'vq6' | 'vq7' | 'vq8' | 'binary';
export const EMBEDDING_STORAGES: readonly EmbeddingStorage[] = ['f16', 'f32', 'rtn2', 'rtn3', 'rtn4', 'rtn8', 'vq6', 'vq7', 'vq8', 'binary'];

/** Sub-vector length of vq-stored embeddings: 4 values per codebook index (`vqK`: 2^K entries, K/4 bits a value). */
export const EMBEDDING_VQ_DIM = 4;

/** Group size of rtn-quantized embeddings: groups of 64 consecutive values along each embedding row. */
export const EMBEDDING_RTN_GROUP_SIZE = 64;

/** The codec and raw options that store an embedding-like matrix. */
export function embeddingCodec(storage: EmbeddingStorage, flag = '--embeddings'): { id: string; options: Record<string, unknown> } {
  switch (storage) {
    case 'f16':
    case 'f32':
      return { id: 'float', options: { dtype: storage } };
    // 2 and 3 bits: for whole-file budgets near 1 bit per parameter, where the embedding dominates the file.
    case 'rtn2':
      return { id: 'rtn', options: { bits: 2, groupSize: EMBEDDING_RTN_GROUP_SIZE } };
    case 'rtn3':
      return { id: 'rtn', options: { bits: 3, groupSize: EMBEDDING_RTN_GROUP_SIZE } };
    case 'rtn4':
      return { id: 'rtn', options: { bits: 4, groupSize: EMBEDDING_RTN_GROUP_SIZE } };
    case 'rtn8':
      return { id: 'rtn', options: { bits: 8, groupSize: EMBEDDING_RTN_GROUP_SIZE } };
    // Below 2 bits a value (whole files at ~1 bit per parameter): a shared codebook of 4-value sub-vectors
    // (vq6/vq7/vq8: 1.5/1.75/2 bits a value), fitted to the rows weighted by how often the calibration text
    // uses each token when compress() has one; or 1 bit a value (sign and a scale per row).
    case 'vq6':
    case 'vq7':
    case 'vq8':
      return { id: 'vq', options: { dim: EMBEDDING_VQ_DIM, bits: Number(storage.slice(2)), iterations: 12 } };
    case 'binary':
      return { id: 'binary', options: {} };
    default:
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `unknown storage ${JSON.stringify(storage)}`, {
        source: flag,
        hint: `use one of ${EMBEDDING_STORAGES.join(', ')}`,
      });
  }
}

/** The seed a weight's codec gets: the run's seed mixed with the weight's name (FNV-1a), a uint32. */
export function weightSeed(seed: number, name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h ^ seed) >>> 0;
}

/** What to do with a compressed linear whose budget the codec cannot meet (too small for the target). */
export type SmallMatrixPolicy = 'keep' | 'error';
export const SMALL_MATRIX_POLICIES: readonly SmallMatrixPolicy[] = ['keep', 'error'];
