import { familyKey, fmix32, type HashFamily } from './hash.js';

/**
 * The `signmean` query of the sketch codec (issue 16; docs/sketch.md §10): a count-sketch-style decode that is
 * LINEAR in the states, replacing AbsMaxMin's min-|w| build and max-|·| query.
 *
 * - Every column c of a channel group gets, in every sketch row k, a sign ξ_k(c) ∈ {−1, +1} derived from the
 *   codec seed, the group (stream) and k alone — nothing stored, so the bits are those of the AbsMaxMin sketch
 *   with the same options.
 * - Build: state S_k[s] = the mean of ξ_k(c) · w over the weights (r, c) hashed to s in sketch row k (float64
 *   sums; empty → 0) — HashedNets' bucket mean with a sign hash, per sketch row.
 * - Query: ŵ(r, c) = (1/d) · Σ_k ξ_k(c) · S_k[h_k(r, c)].
 *
 * Why a column sign and not a per-weight one: the sign factors out of the row, so a kernel multiplies each
 * input by ξ_k(c) once per token and then reads every run of states as a plain contiguous dot product (no
 * per-weight decode at all). Under `rowrun` two weights of different rows share a state only at different
 * columns (a run never shares a state with itself), so ξ_k(c)·ξ_k(c′) is a fair coin for every colliding pair
 * and the bucket mean stays unbiased, which is what the sign hash is for.
 */

export const SKETCH_QUERIES = ['absmaxmin', 'signmean'] as const;
export type SketchQuery = (typeof SKETCH_QUERIES)[number];

const SIGN_SALT = 0x7369676e; // 'sign'
const C2 = 0x1b873593;

/** ξ_k(c) for c < cols, as ±1 floats: the top bit of fmix32(key ^ c·C2) under the (seed, stream, k) key. */
export function columnSigns(seed: number, stream: number, k: number, cols: number): Float32Array {
  const key = familyKey(seed, stream, k, SIGN_SALT);
  const out = new Float32Array(cols);
  for (let c = 0; c < cols; c++) out[c] = fmix32((key ^ Math.imul(c, C2)) >>> 0) >>> 31 ? -1 : 1;
  return out;
}

/** The d sign vectors of one group (index k). */
export function groupColumnSigns(seed: number, stream: number, depth: number, cols: number): Float32Array[] {
  return Array.from({ length: depth }, (_, k) => columnSigns(seed, stream, k, cols));
}

/** Build raw float32 states [depth · width] (k-major): the signed bucket means of the sub-matrix `channels` of w. */
export function buildSignMean(
  w: Float32Array,
  cols: number,
  channels: Int32Array | null,
  family: HashFamily,
  signs: Float32Array[],
): Float32Array {
  const { rows, width, depth } = family;
  const C = family.cols;
  const sums = new Float64Array(depth * width);
  const counts = new Float64Array(depth * width);
  const idx = new Int32Array(C);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let k = 0; k < depth; k++) {
      family.rowIndices(r, k, idx);
      const xi = signs[k]!;
      const off = k * width;
      for (let c = 0; c < C; c++) {
        const v = w[base + (channels ? channels[c]! : c)]!;
        const at = off + idx[c]!;
        sums[at] = sums[at]! + xi[c]! * v;
        counts[at] = counts[at]! + 1;
      }
    }
  }
  const out = new Float32Array(depth * width);
  for (let i = 0; i < out.length; i++) out[i] = counts[i]! > 0 ? sums[i]! / counts[i]! : 0;
  return out;
}

/**
 * Query every weight of row r: out[c] = (1/d) Σ_k ξ_k(c) · value(k, h_k(r, c)), summed in k order in float64
 * and rounded once (the reference the kernels are tested against).
 */
export function querySignMeanRow(
  family: HashFamily,
  r: number,
  value: (k: number, i: number) => number,
  signs: Float32Array[],
  out: Float32Array,
  idx: Int32Array = new Int32Array(family.cols),
): void {
  const C = family.cols;
  const d = family.depth;
  if (d === 1) {
    family.rowIndices(r, 0, idx);
    const xi = signs[0]!;
    for (let c = 0; c < C; c++) out[c] = xi[c]! * value(0, idx[c]!);
    return;
  }
  const acc = new Float64Array(C);
  for (let k = 0; k < d; k++) {
    family.rowIndices(r, k, idx);
    const xi = signs[k]!;
    for (let c = 0; c < C; c++) acc[c] = acc[c]! + xi[c]! * value(k, idx[c]!);
  }
  for (let c = 0; c < C; c++) out[c] = acc[c]! / d;
}
