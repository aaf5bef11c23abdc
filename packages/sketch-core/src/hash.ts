import { ErrorCodes, Rng, UltraSketchError, describeValue } from '@ultrasketch/core';

/**
 * Index-free hash families: a deterministic map (row, col, sketch row k) → state index in [0, width),
 * computed from a 32-bit seed and the matrix shape only, so a bundle stores the family's NAME and the SEED
 * and never a per-weight index.
 *
 * - `mixed`: every (row, col, k) is hashed independently through a murmur3-style finalizer — the textbook
 *   random hash; loads are Poisson (empty fraction e^(−n/m)), and decoding a row means d·cols random gathers,
 *   each preceded by a hash evaluation.
 * - `rowrun` (ours, decode-friendly): a weight row is cut into `segments` runs of ≤ width consecutive
 *   columns; in sketch row k, run (row, s) reads the CONTIGUOUS cyclic slice of states starting at
 *   offset_k(row, s). Offsets are jittered-stratified: the V = rows·segments runs are placed on the ring by
 *   a seeded random permutation, one run per stratum of width width/V, at a random position inside it.
 *   So every state is covered by (almost exactly) the mean number of runs — near-constant loads, no empty
 *   states once the mean load reaches 1 — and, because each sketch row draws its own permutation and jitter,
 *   two weights that share a state in row k share one in row k' only by chance (≈ 1/width), as with random
 *   hashing. A row decodes from `segments` contiguous slices per sketch row, no per-weight hashing.
 *   See docs/sketch.md for the design, trade-offs and measured statistics.
 *
 * `stream` separates independent families under one seed (the sketch codec uses the channel-group index).
 */

export const HASH_FAMILIES = ['mixed', 'rowrun'] as const;
export type HashFamilyName = (typeof HASH_FAMILIES)[number];

export interface HashFamilyConfig {
  /** uint32 seed (from the codec context). */
  seed: number;
  /** Independent stream under the same seed (e.g. the channel group); default 0. */
  stream?: number;
  /** Rows and columns of the (sub-)matrix whose weights are hashed. */
  rows: number;
  cols: number;
  /** States per sketch row. */
  width: number;
  /** Sketch rows d. */
  depth: number;
}

export interface HashFamily {
  readonly name: HashFamilyName;
  readonly rows: number;
  readonly cols: number;
  readonly width: number;
  readonly depth: number;
  /** State index of weight (row, col) in sketch row k. */
  index(row: number, col: number, k: number): number;
  /** Fast path: out[c] = index(row, c, k) for c in [0, cols). */
  rowIndices(row: number, k: number, out: Int32Array): void;
}

/** Largest number of states per sketch row a family accepts (indices stay exact small integers). */
export const MAX_HASH_WIDTH = 2 ** 31 - 1;

/** murmur3's 32-bit finalizer: a bijection on uint32 with full avalanche. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * ⌊h · width / 2^32⌋ computed exactly (Lemire's multiply-shift range reduction, no modulo bias beyond the
 * unavoidable 1/2^32), split into 16-bit halves so every intermediate stays below 2^53.
 */
export function reduceRange(h: number, width: number): number {
  const hi = h >>> 16;
  const lo = h & 0xffff;
  return Math.floor((hi * width + Math.floor((lo * width) / 65536)) / 65536);
}

/** The 32-bit key of (seed, stream, k, family): everything a family's hash depends on besides (row, col). */
export function familyKey(seed: number, stream: number, k: number, salt: number): number {
  let h = fmix32((seed ^ 0x3c6ef372) >>> 0);
  h = fmix32((h ^ Math.imul(stream + 1, 0x9e3779b1)) >>> 0);
  h = fmix32((h ^ Math.imul(k + 1, 0x85ebca77)) >>> 0);
  return fmix32((h ^ salt) >>> 0);
}

function checkConfig(name: string, c: HashFamilyConfig): void {
  const ok =
    Number.isInteger(c.seed) && c.seed >= 0 && c.seed <= 0xffffffff &&
    Number.isInteger(c.rows) && c.rows >= 1 &&
    Number.isInteger(c.cols) && c.cols >= 1 &&
    Number.isInteger(c.width) && c.width >= 1 && c.width <= MAX_HASH_WIDTH &&
    Number.isInteger(c.depth) && c.depth >= 1 &&
    (c.stream === undefined || (Number.isInteger(c.stream) && c.stream >= 0));
  if (!ok) {
    throw new UltraSketchError(
      ErrorCodes.BAD_ARGUMENT,
      `hash family ${name}: invalid configuration ${describeValue(c)} (seed uint32, rows/cols/width/depth positive integers)`,
    );
  }
}

/** `mixed`: h_k(row, col) = reduce(fmix32(fmix32(key_k ^ row·c1) ^ col·c2)). */
export class MixedHashFamily implements HashFamily {
  readonly name = 'mixed' as const;
  readonly rows: number;
  readonly cols: number;
  readonly width: number;
  readonly depth: number;
  private readonly keys: Uint32Array;

  constructor(c: HashFamilyConfig) {
    checkConfig('mixed', c);
    this.rows = c.rows;
    this.cols = c.cols;
    this.width = c.width;
    this.depth = c.depth;
    this.keys = new Uint32Array(c.depth);
    for (let k = 0; k < c.depth; k++) this.keys[k] = familyKey(c.seed, c.stream ?? 0, k, 0x6d697864);
  }

  /** The per-(row, k) half of the hash, shared by all columns of the row. */
  rowKey(row: number, k: number): number {
    return fmix32((this.keys[k]! ^ Math.imul(row, 0xcc9e2d51)) >>> 0);
  }

  index(row: number, col: number, k: number): number {
    return reduceRange(fmix32((this.rowKey(row, k) ^ Math.imul(col, 0x1b873593)) >>> 0), this.width);
  }

  rowIndices(row: number, k: number, out: Int32Array): void {
    const rk = this.rowKey(row, k);
    const w = this.width;
    for (let c = 0; c < this.cols; c++) {
      let h = (rk ^ Math.imul(c, 0x1b873593)) >>> 0;
      h ^= h >>> 16;
      h = Math.imul(h, 0x85ebca6b);
      h ^= h >>> 13;
      h = Math.imul(h, 0xc2b2ae35);
      h = (h ^ (h >>> 16)) >>> 0;
      out[c] = Math.floor(((h >>> 16) * w + Math.floor(((h & 0xffff) * w) / 65536)) / 65536);
    }
  }
}

/**
 * `rowrun`: runs of consecutive columns read contiguous cyclic slices of states.
 * segments = ⌈cols / width⌉ runs per row of runLength = ⌈cols / segments⌉ ≤ width columns (the last run of a
 * row may be shorter), so no two weights of one run ever share a state. Run v = row·segments + s starts, in
 * sketch row k, at offset_k(v) = ⌊(π_k(v) + u_k(v)) · width / V⌋ with π_k a seeded permutation of [0, V) and
 * u_k(v) ∈ [0, 1) seeded jitter; π_k(row·segments + s) = segments·σ_{k,s}(row) + s with σ_{k,s} independent
 * seeded permutations of the rows (`stratified: false` draws offsets uniformly instead — kept for measurement).
 * index(row, col, k) = (offset_k(row·segments + ⌊col / runLength⌋) + col mod runLength) mod width.
 */
export class RowRunHashFamily implements HashFamily {
  readonly name = 'rowrun' as const;
  readonly rows: number;
  readonly cols: number;
  readonly width: number;
  readonly depth: number;
  /** Runs per weight row. */
  readonly segments: number;
  /** Columns per run (the last run of a row holds cols − (segments − 1)·runLength). */
  readonly runLength: number;
  /** offsets[k·rows·segments + row·segments + s]: start state of run (row, s) in sketch row k. */
  readonly offsets: Int32Array;

  constructor(c: HashFamilyConfig, options: { stratified?: boolean } = {}) {
    checkConfig('rowrun', c);
    this.rows = c.rows;
    this.cols = c.cols;
    this.width = c.width;
    this.depth = c.depth;
    this.segments = Math.ceil(c.cols / c.width);
    this.runLength = Math.ceil(c.cols / this.segments);
    const V = c.rows * this.segments;
    this.offsets = new Int32Array(c.depth * V);
    const stratified = options.stratified ?? true;
    const perm = new Int32Array(V);
    for (let k = 0; k < c.depth; k++) {
      const rng = new Rng(familyKey(c.seed, c.stream ?? 0, k, stratified ? 0x72756e73 : 0x72756e75));
      const base = k * V;
      if (!stratified) {
        for (let v = 0; v < V; v++) this.offsets[base + v] = Math.floor(rng.next() * c.width);
        continue;
      }
      // Position of run (row, s) on the ring: segments · σ_s(row) + s, with σ_s a seeded permutation of the
      // rows drawn independently for every segment index s (and sketch row k). Every block of `segments`
      // consecutive strata then holds one run of each segment index — so runs of unequal length (the last
      // run of a row may be shorter) are spread evenly — while the runs of one row land at unrelated places.
      const sigma = new Int32Array(c.rows);
      for (let s = 0; s < this.segments; s++) {
        for (let r = 0; r < c.rows; r++) sigma[r] = r;
        for (let r = c.rows - 1; r > 0; r--) {
          const j = rng.int(r + 1);
          const t = sigma[r]!;
          sigma[r] = sigma[j]!;
          sigma[j] = t;
        }
        for (let r = 0; r < c.rows; r++) perm[r * this.segments + s] = sigma[r]! * this.segments + s;
      }
      for (let v = 0; v < V; v++) {
        const o = Math.floor(((perm[v]! + rng.next()) * c.width) / V);
        this.offsets[base + v] = o < c.width ? o : c.width - 1;
      }
    }
  }

  /** Start state of run `segment` of `row` in sketch row k. */
  offset(row: number, segment: number, k: number): number {
    return this.offsets[(k * this.rows + row) * this.segments + segment]!;
  }

  index(row: number, col: number, k: number): number {
    const s = Math.floor(col / this.runLength);
    const x = this.offset(row, s, k) + (col - s * this.runLength);
    return x >= this.width ? x - this.width : x;
  }

  rowIndices(row: number, k: number, out: Int32Array): void {
    const w = this.width;
    const L = this.runLength;
    const base = (k * this.rows + row) * this.segments;
    for (let s = 0; s < this.segments; s++) {
      const o = this.offsets[base + s]!;
      const c0 = s * L;
      const c1 = Math.min(c0 + L, this.cols);
      // Two straight runs: up to the end of the ring, then from its start.
      const split = Math.min(c1, c0 + (w - o));
      let x = o;
      let c = c0;
      for (; c < split; c++) out[c] = x++;
      for (x = 0; c < c1; c++) out[c] = x++;
    }
  }
}

export function isHashFamilyName(s: unknown): s is HashFamilyName {
  return typeof s === 'string' && (HASH_FAMILIES as readonly string[]).includes(s);
}

/** Construct a family by name. */
export function createHashFamily(name: HashFamilyName, config: HashFamilyConfig): HashFamily {
  switch (name) {
    case 'mixed':
      return new MixedHashFamily(config);
    case 'rowrun':
      return new RowRunHashFamily(config);
    default:
      throw new UltraSketchError(
        ErrorCodes.BAD_ARGUMENT,
        `unknown hash family ${describeValue(name)} (known: ${HASH_FAMILIES.join(', ')})`,
      );
  }
}

/** How the rows·cols items of a family fill its d·width states (pooled over the d sketch rows). */
export interface OccupancyStats {
  /** Items hashed per sketch row (n = rows·cols) and states per sketch row (m = width). */
  items: number;
  bins: number;
  /** Fraction of states no item maps to, and its random-hashing (Poisson) expectation e^(−n/m). */
  emptyFraction: number;
  poissonEmptyFraction: number;
  /** Mean, variance and maximum of the number of items per state (Poisson: variance = mean). */
  meanLoad: number;
  loadVariance: number;
  maxLoad: number;
}

export function occupancy(family: HashFamily): OccupancyStats {
  const { rows, cols, width, depth } = family;
  const load = new Int32Array(width);
  const idx = new Int32Array(cols);
  let empty = 0;
  let sumSq = 0;
  let max = 0;
  for (let k = 0; k < depth; k++) {
    load.fill(0);
    for (let r = 0; r < rows; r++) {
      family.rowIndices(r, k, idx);
      for (let c = 0; c < cols; c++) load[idx[c]!]!++;
    }
    for (let s = 0; s < width; s++) {
      const l = load[s]!;
      if (l === 0) empty++;
      sumSq += l * l;
      if (l > max) max = l;
    }
  }
  const n = rows * cols;
  const mean = n / width;
  return {
    items: n,
    bins: width,
    emptyFraction: empty / (depth * width),
    poissonEmptyFraction: Math.exp(-n / width),
    meanLoad: mean,
    loadVariance: sumSq / (depth * width) - mean * mean,
    maxLoad: max,
  };
}
