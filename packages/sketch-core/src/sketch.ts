import {
  type Codec,
  type CodecParams,
  ErrorCodes,
  type StoredTensor,
  UltraSketchError,
  badOption,
  expectStored,
  f16BitsTensor,
  f16BitsToF32,
  packCodes,
  packedBytes,
  storedBits,
  unpackCodes,
} from '@ultrasketch/core';
import { buildAbsMaxMin, queryAbsMaxMinRow } from './absmaxmin.js';
import {
  ALLOC_KINDS,
  type AllocKind,
  type GroupAllocation,
  SPLIT_KINDS,
  type SplitKind,
  allocateStates,
  channelScores,
  groupAllocationOf,
  groupChannels,
  minGroupStates,
  partitionChannels,
} from './alloc.js';
import { HASH_FAMILIES, type HashFamily, type HashFamilyName, createHashFamily } from './hash.js';
import { SKETCH_QUERIES, type SketchQuery, buildSignMean, groupColumnSigns, querySignMeanRow } from './signmean.js';
import { STATE_BITS, STATE_FORMATS, type StateArray, type StateFormat, allocStates, quantizeRow } from './states.js';
import {
  assertFiniteMatrix,
  badStored,
  bytesOf,
  checkSeed,
  enumOption,
  nonFiniteStored,
  numberOption,
  rejectUnknownOptions,
  typedOf,
  u32Tensor,
  u32Values,
} from './util.js';

/**
 * `sketch`: the AbsMaxMin sketch of UltraSketchLLM (docs/methods.md §1; design in docs/sketch.md).
 *
 * The matrix's input channels are split into `groups` channel groups (alloc.ts); each group gets its own
 * sketch of `rows` (d) sketch rows × width_g states, hashed by the family `hash` under the codec seed with
 * stream = group index — or, when its share reaches one state per weight, is stored exactly (no hashing).
 * The state budget is the largest that keeps every stored bit within `bpw` × rows × cols.
 *
 * Stored tensors (all counted; bits() = 8 × their bytes):
 * - `states`:      F16 | I8 | F32 [T] — the groups one after another; a sketch group stores its d sketch rows
 *                  (k-major, width_g states each), an exact group its weights row-major (rows × |group|);
 * - `seed`:        U32 [1] — the hash seed (the codec context's seed);
 * - `scales`:      F16 [Σ stored sketch rows] — int8 only: d per sketch group, 1 per exact group;
 * - `groupMap`:    U8 [⌈cols·⌈log2 G⌉/8⌉] — groups > 1 only: each input channel's group, packed (core/bits);
 * - `groupStates`: U32 [G] — groups > 1 only: states of each group (= weights → exact, else d · width_g).
 * bits = 16|8|32 · T + 32 + [int8] 16 · Σ sketch rows + [G > 1] (8·⌈cols·⌈log2 G⌉/8⌉ + 32 G).
 */
export interface SketchOptions {
  /** Target bits per weight: every stored bit ÷ (rows · cols) stays ≤ this. Required. */
  bpw: number;
  /** Sketch rows d (default 3). */
  rows: number;
  /** State format (default f16). */
  state: StateFormat;
  /** Hash family (default rowrun). */
  hash: HashFamilyName;
  /** Channel groups G, 1..256 (default 1). */
  groups: number;
  /** How states are split among groups (default uniform). */
  alloc: AllocKind;
  /** Saliency exponent α ≥ 0 (default 1; only used by alloc saliency). */
  alpha: number;
  /** How channels are cut into groups (default count). */
  split: SplitKind;
  /**
   * Build and query (default absmaxmin, the paper's): `signmean` stores signed bucket means under seed-derived
   * column signs and decodes ŵ = (1/d) Σ_k ξ_k(c) S_k[h_k] (signmean.ts; same stored tensors and bits).
   * Absent means absmaxmin: resolveOptions leaves the key out for the default so that a default bundle's
   * stored options (and so its bytes) are exactly those written before the option existed.
   */
  query?: SketchQuery;
}

export interface SketchParams extends CodecParams<SketchOptions> {
  /** uint32 hash seed. */
  seed: number;
  /** All groups' states, in the state format: f16 bits, int8 codes or float32 values. */
  states: StateArray;
  /** int8 only: f16 scale bits, one per stored sketch row. */
  scales: Uint16Array | null;
  /** groups > 1: the group of each input channel. */
  groupOf: Uint8Array | null;
  /** States of each group. */
  groupStates: Uint32Array;
}

/**
 * The option keys `resolveOptions` accepts. `softQuery` is a TRAINING option (the state-training provider's
 * annealed soft AbsMax pick, ste-trainer providers-sketch.ts): resolveOptions validates it
 * (`sketchSoftQuery`) but never returns it, so a bundle's stored options — the hard sketch the runtimes
 * decode — are the same with or without it.
 */
export const SKETCH_OPTION_KEYS = ['bpw', 'rows', 'state', 'hash', 'groups', 'alloc', 'alpha', 'split', 'query', 'softQuery'] as const;

/**
 * The soft query's initial temperature τ0 from raw options (undefined when not given), validated: a positive
 * number ≤ 100 (relative to the RMS of the matrix's weights), and only for the AbsMaxMin query with
 * d ≥ 2 sketch rows — signmean has no pick to soften and one sketch row has nothing to choose.
 */
export function sketchSoftQuery(raw: Record<string, unknown>): number | undefined {
  const v = raw.softQuery;
  if (v === undefined) return undefined;
  const bad = (why: string, hint: string): never => {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `codec sketch: softQuery = ${JSON.stringify(v)}: ${why}`, { source: '--soft-query', hint });
  };
  const tau = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof tau !== 'number' || !Number.isFinite(tau) || !(tau > 0) || tau > 100) {
    bad('the initial temperature must be a number in (0, 100]', 'e.g. --soft-query 1 (τ0 = 1 × the RMS of the matrix\'s weights)');
  }
  if ((raw.query ?? 'absmaxmin') !== 'absmaxmin') bad(`the ${String(raw.query)} query has no pick to soften`, 'use it with --query absmaxmin');
  const rows = raw.rows === undefined ? 3 : Number(raw.rows);
  if (rows < 2) bad(`${rows} sketch row has nothing to choose between`, 'use --rows 2 or more (the paper\'s sketch has 3)');
  return tau as number;
}
export const SKETCH_MAX_ROWS = 16;
export const SKETCH_MAX_GROUPS = 256;
/** Default hash family: rowrun measured no worse than mixed in error (docs/sketch.md) and decodes from runs. */
export const SKETCH_DEFAULT_HASH: HashFamilyName = 'rowrun';

/** Bits of the channel→group code of one channel. */
export function groupMapBits(groups: number): number {
  return groups <= 1 ? 0 : Math.ceil(Math.log2(groups));
}

/** The budget arithmetic of one matrix: what the target allows, what is fixed, and the smallest feasible target. */
export interface SketchBudget {
  /** ⌊bpw · rows · cols⌋. */
  budgetBits: number;
  /** Seed, group map and per-group state counts, and int8 scales (d per group). */
  fixedBits: number;
  bitsPerState: number;
  /** States the budget pays for (may be negative when the fixed costs alone exceed it). */
  totalStates: number;
  /** The fewest states any plan needs: Σ_g min(d, n_g). */
  minStates: number;
  /** fixedBits + minStates · bitsPerState, and that ÷ (rows · cols) rounded UP to 4 decimals. */
  minBits: number;
  minBpw: number;
  feasible: boolean;
}

export function sketchBudget(rows: number, cols: number, o: SketchOptions, groupWeights: number[]): SketchBudget {
  const n = rows * cols;
  const G = groupWeights.length;
  const bitsPerState = STATE_BITS[o.state];
  const fixedBits =
    32 + (G > 1 ? 8 * packedBytes(cols, groupMapBits(G)) + 32 * G : 0) + (o.state === 'int8' ? 16 * o.rows * G : 0);
  const budgetBits = targetBits(o.bpw, n);
  const totalStates = Math.floor((budgetBits - fixedBits) / bitsPerState);
  const minStates = groupWeights.reduce((a, nw) => a + minGroupStates(nw, o.rows), 0);
  const minBits = fixedBits + minStates * bitsPerState;
  return {
    budgetBits,
    fixedBits,
    bitsPerState,
    totalStates,
    minStates,
    minBits,
    minBpw: smallestTarget(minBits, n),
    feasible: totalStates >= minStates,
  };
}

/** ⌊bpw · n⌋ bits, forgiving the float rounding of bpw · n (e.g. 0.1 · 30 = 3.0000000000000004). */
export function targetBits(bpw: number, n: number): number {
  return Math.floor(bpw * n * (1 + 1e-12));
}

/** The smallest 4-decimal target t with targetBits(t, n) ≥ bits. */
export function smallestTarget(bits: number, n: number): number {
  let t = Math.ceil((bits / n) * 1e4) / 1e4;
  while (targetBits(t, n) < bits) t = Math.round(t * 1e4 + 1) / 1e4;
  return t;
}

/** Column counts of the G `count`-split groups (they depend on cols and G only). */
export function countSplitSizes(cols: number, groups: number): number[] {
  return Array.from({ length: groups }, (_, g) => Math.floor(((g + 1) * cols) / groups) - Math.floor((g * cols) / groups));
}

/**
 * The smallest feasible bpw for a matrix under these options (ignoring options.bpw). With split `mass` the
 * group sizes depend on the weights and saliency: pass `groupCols` from the actual partition.
 */
export function sketchMinBpw(rows: number, cols: number, o: SketchOptions, groupCols?: number[]): number {
  const sizes = groupCols ?? countSplitSizes(cols, Math.min(o.groups, cols));
  return sketchBudget(rows, cols, o, sizes.map((c) => rows * c)).minBpw;
}

/** One channel group as stored. */
export interface SketchGroup {
  index: number;
  /** Original input channels of the group, ascending. */
  channels: Int32Array;
  weights: number;
  alloc: GroupAllocation;
  /** First state of the group in params.states. */
  stateOffset: number;
  /** First int8 scale of the group (alloc.depth scales: one per stored sketch row). */
  scaleOffset: number;
  /** The hash family (null for an exact group). */
  family: HashFamily | null;
  /** query signmean: the column signs ξ_k of the group's channels (index k; null for absmaxmin or an exact group). */
  signs: Float32Array[] | null;
}

const layoutCache = new WeakMap<SketchParams, { key: unknown[]; groups: SketchGroup[] }>();

/** The stored layout of a sketch: groups, their channels, allocations, offsets and hash families (cached). */
export function sketchGroups(p: SketchParams): SketchGroup[] {
  const key = [p.seed, p.groupOf, p.groupStates, p.rows, p.cols, p.options.hash, p.options.rows, p.options.query];
  const hit = layoutCache.get(p);
  if (hit && hit.key.every((v, i) => v === key[i])) return hit.groups;
  const G = p.groupStates.length;
  const channels = p.groupOf ? groupChannels(p.groupOf, G) : [Int32Array.from({ length: p.cols }, (_, j) => j)];
  const d = p.options.rows;
  let stateOffset = 0;
  let scaleOffset = 0;
  const groups = channels.map((ch, g) => {
    const weights = p.rows * ch.length;
    const alloc = groupAllocationOf(p.groupStates[g]!, weights, d);
    if (!alloc) throw new RangeError(`sketch: group ${g} has ${p.groupStates[g]} states, invalid for ${weights} weights and ${d} rows`);
    const family = alloc.exact
      ? null
      : createHashFamily(p.options.hash, { seed: p.seed, stream: g, rows: p.rows, cols: ch.length, width: alloc.width, depth: d });
    const signs = family && p.options.query === 'signmean' ? groupColumnSigns(p.seed, g, d, ch.length) : null;
    const group: SketchGroup = { index: g, channels: ch, weights, alloc, stateOffset, scaleOffset, family, signs };
    stateOffset += alloc.states;
    scaleOffset += alloc.depth;
    return group;
  });
  layoutCache.set(p, { key, groups });
  return groups;
}

/** Every stored state as float32 (int8 through its sketch row's scale). */
export function dequantizeStates(p: SketchParams): Float32Array {
  const { state } = p.options;
  if (state === 'f32') return Float32Array.from(p.states);
  const out = new Float32Array(p.states.length);
  if (state === 'f16') {
    for (let i = 0; i < out.length; i++) out[i] = f16BitsToF32(p.states[i]!);
    return out;
  }
  for (const g of sketchGroups(p)) {
    const perRow = g.alloc.states / g.alloc.depth;
    for (let k = 0; k < g.alloc.depth; k++) {
      const scale = f16BitsToF32(p.scales![g.scaleOffset + k]!);
      const begin = g.stateOffset + k * perRow;
      for (let i = begin; i < begin + perRow; i++) out[i] = Math.fround(p.states[i]! * scale);
    }
  }
  return out;
}

/** value(i) = dequantized state i, converting on access (the same values as dequantizeStates). */
function lazyStateValue(p: SketchParams, groups: SketchGroup[]): (i: number) => number {
  const { state } = p.options;
  if (state === 'f32') return (i) => p.states[i]!;
  if (state === 'f16') return (i) => f16BitsToF32(p.states[i]!);
  // int8: the scale of state i is that of its stored sketch row
  return (i) => {
    for (const g of groups) {
      if (i < g.stateOffset + g.alloc.states) {
        const k = Math.floor((i - g.stateOffset) / (g.alloc.states / g.alloc.depth));
        return Math.fround(p.states[i]! * f16BitsToF32(p.scales![g.scaleOffset + k]!));
      }
    }
    return 0;
  };
}

function resolveSketchOptions(raw: Record<string, unknown>): SketchOptions {
  const id = 'sketch';
  rejectUnknownOptions(raw, SKETCH_OPTION_KEYS, id);
  const bpw = numberOption(raw, 'bpw', undefined, (v) => v > 0 && v <= 64, 'a target bits per weight in (0, 64]', id);
  const rows = numberOption(raw, 'rows', 3, (v) => Number.isInteger(v) && v >= 1 && v <= SKETCH_MAX_ROWS, `an integer 1..${SKETCH_MAX_ROWS}`, id);
  const state = enumOption(raw, 'state', 'f16', STATE_FORMATS, id);
  const hash = enumOption(raw, 'hash', SKETCH_DEFAULT_HASH, HASH_FAMILIES, id);
  const groups = numberOption(raw, 'groups', 1, (v) => Number.isInteger(v) && v >= 1 && v <= SKETCH_MAX_GROUPS, `an integer 1..${SKETCH_MAX_GROUPS}`, id);
  // `alloc` accepts the CLI spelling saliency:ALPHA.
  let allocRaw = raw.alloc ?? 'uniform';
  let alphaRaw = raw.alpha;
  if (typeof allocRaw === 'string' && allocRaw.startsWith('saliency:')) {
    if (alphaRaw !== undefined) badOption(id, 'alpha', alphaRaw, `give α either as alloc saliency:α or as alpha, not both`);
    alphaRaw = allocRaw.slice('saliency:'.length);
    allocRaw = 'saliency';
  }
  const alloc = enumOption({ alloc: allocRaw }, 'alloc', 'uniform', ALLOC_KINDS, id);
  const alpha = numberOption({ alpha: alphaRaw }, 'alpha', 1, (v) => v >= 0 && v <= 16, 'a saliency exponent in [0, 16]', id);
  const split = enumOption(raw, 'split', 'count', SPLIT_KINDS, id);
  const query = enumOption(raw, 'query', 'absmaxmin', SKETCH_QUERIES, id);
  sketchSoftQuery(raw); // training only: validated, not part of the options (see SKETCH_OPTION_KEYS)
  return { bpw, rows, state, hash, groups, alloc, alpha, split, ...(query === 'absmaxmin' ? {} : { query }) };
}

function checkSaliency(s: Float64Array | undefined, cols: number, name: string): Float64Array | null {
  if (s === undefined) return null;
  if (s.length !== cols) {
    throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `saliency has ${s.length} channels, the matrix has ${cols} input channels`, { source: name });
  }
  for (let j = 0; j < cols; j++) {
    if (!(s[j]! >= 0) || s[j] === Infinity) {
      throw new UltraSketchError(ErrorCodes.NOT_FINITE, `saliency of channel ${j} is ${s[j]} (must be finite and ≥ 0)`, { source: name });
    }
  }
  return s;
}

export function infeasibleSketchBudget(rows: number, cols: number, o: SketchOptions, b: SketchBudget, name: string): never {
  const why =
    b.totalStates < 0
      ? `its ${b.budgetBits} bits do not even cover the fixed costs (${b.fixedBits} bits: seed${o.groups > 1 ? ', group map, group state counts' : ''}${o.state === 'int8' ? ', int8 scales' : ''})`
      : `its ${b.budgetBits} bits pay for ${b.totalStates} states after ${b.fixedBits} fixed bits, fewer than the ${b.minStates} needed (one state per sketch row of each of ${o.groups} group(s) at ${o.rows} rows)`;
  throw new UltraSketchError(
    ErrorCodes.INFEASIBLE_BUDGET,
    `codec sketch: ${o.bpw} bpw is infeasible for this ${rows}×${cols} matrix: ${why}; the smallest feasible target is ${b.minBpw} bpw`,
    { source: name, hint: `use --bpw ${b.minBpw} or more, fewer --rows or --groups, or keep this tensor in float` },
  );
}

export const sketchCodec: Codec<SketchOptions, SketchParams> = {
  id: 'sketch',
  version: 1,
  description:
    'UltraSketchLLM sketch: d hashed rows of shared states (AbsMaxMin min-|w| build and max-|·| query, or query=signmean: signed bucket means, linear decode), channel groups with saliency allocation',

  resolveOptions: resolveSketchOptions,

  encode(w, rows, cols, o, ctx) {
    assertFiniteMatrix(w, rows, cols, ctx.name);
    const seed = checkSeed(ctx.seed, ctx.name);
    const G = o.groups;
    if (G > cols) badOption('sketch', 'groups', G, `this ${rows}×${cols} matrix has only ${cols} input channels`);
    let groupOf: Uint8Array | null = null;
    let channels: Int32Array[] = [Int32Array.from({ length: cols }, (_, j) => j)];
    let scores: Float64Array | null = null;
    if (G > 1) {
      scores = channelScores(w, rows, cols, checkSaliency(ctx.saliency, cols, ctx.name));
      groupOf = partitionChannels(scores, G, o.split);
      channels = groupChannels(groupOf, G);
    }
    const demands = channels.map((ch) => {
      let score = 0;
      if (scores) for (let i = 0; i < ch.length; i++) score += scores[ch[i]!]!;
      return { weights: rows * ch.length, score };
    });
    const budget = sketchBudget(rows, cols, o, demands.map((d) => d.weights));
    if (!budget.feasible) infeasibleSketchBudget(rows, cols, o, budget, ctx.name);
    const plan = allocateStates(budget.totalStates, demands, o.rows, o.alloc, o.alpha);
    const total = plan.reduce((a, p) => a + p.states, 0);
    const states = allocStates(o.state, total);
    const scales = o.state === 'int8' ? new Uint16Array(plan.reduce((a, p) => a + p.depth, 0)) : null;
    let stateOffset = 0;
    let scaleOffset = 0;
    for (let g = 0; g < G; g++) {
      const a = plan[g]!;
      const ch = channels[g]!;
      let raw: Float32Array;
      if (a.exact) {
        raw = new Float32Array(a.states);
        for (let r = 0; r < rows; r++) for (let c = 0; c < ch.length; c++) raw[r * ch.length + c] = w[r * cols + ch[c]!]!;
      } else {
        const family = createHashFamily(o.hash, { seed, stream: g, rows, cols: ch.length, width: a.width, depth: o.rows });
        raw =
          o.query === 'signmean'
            ? buildSignMean(w, cols, G > 1 ? ch : null, family, groupColumnSigns(seed, g, o.rows, ch.length))
            : buildAbsMaxMin(w, cols, G > 1 ? ch : null, family);
      }
      const perRow = a.states / a.depth;
      for (let k = 0; k < a.depth; k++) {
        const s = quantizeRow(o.state, raw.subarray(k * perRow, (k + 1) * perRow), states, stateOffset + k * perRow);
        if (scales) scales[scaleOffset + k] = s;
      }
      stateOffset += a.states;
      scaleOffset += a.depth;
    }
    return { rows, cols, options: o, seed, states, scales, groupOf, groupStates: Uint32Array.from(plan, (p) => p.states) };
  },

  decode(p) {
    const out = new Float32Array(p.rows * p.cols);
    this.decodeRows(p, 0, p.rows, out);
    return out;
  },

  decodeRows(p, row0, count, out) {
    const groups = sketchGroups(p);
    // Dequantize every state once when the rows touch more candidates than there are states (a full decode);
    // a few rows (an embedding lookup) dequantize only the candidates they read.
    let value: (i: number) => number;
    if (count * p.cols * p.options.rows >= p.states.length) {
      const all = dequantizeStates(p);
      value = (i) => all[i]!;
    } else {
      value = lazyStateValue(p, groups);
    }
    const maxC = Math.max(...groups.map((g) => g.channels.length));
    const tmp = new Float32Array(maxC);
    const idx = new Int32Array(maxC);
    const { cols } = p;
    for (let r = row0; r < row0 + count; r++) {
      const o = (r - row0) * cols;
      for (const g of groups) {
        const ch = g.channels;
        const C = ch.length;
        const so = g.stateOffset;
        if (g.family) {
          const width = g.alloc.width;
          if (g.signs) querySignMeanRow(g.family, r, (k, i) => value(so + k * width + i), g.signs, tmp, idx);
          else queryAbsMaxMinRow(g.family, r, (k, i) => value(so + k * width + i), tmp, idx);
        } else {
          for (let c = 0; c < C; c++) tmp[c] = value(so + r * C + c);
        }
        for (let c = 0; c < C; c++) out[o + ch[c]!] = tmp[c]!;
      }
    }
  },

  bits(p) {
    return storedBits(this.toTensors(p));
  },

  toTensors(p) {
    const o = p.options;
    const dtype = o.state === 'f16' ? 'F16' : o.state === 'int8' ? 'I8' : 'F32';
    const out: Record<string, StoredTensor> = {
      states: { dtype, shape: [p.states.length], data: bytesOf(p.states) },
      seed: u32Tensor([p.seed]),
    };
    if (p.scales) out.scales = f16BitsTensor(p.scales, [p.scales.length]);
    if (p.groupOf) {
      out.groupMap = { dtype: 'U8', shape: [packedBytes(p.cols, groupMapBits(o.groups))], data: packCodes(p.groupOf, groupMapBits(o.groups)) };
      out.groupStates = u32Tensor(p.groupStates);
    }
    return out;
  },

  fromTensors(tensors, rows, cols, o, source) {
    const G = o.groups;
    const d = o.rows;
    const seed = u32Values(tensors, 'seed', 1, source)[0]!;
    let groupOf: Uint8Array | null = null;
    let groupStates: Uint32Array;
    let weights: number[];
    if (G > 1) {
      if (G > cols) badStored('groupMap', `${G} groups for ${cols} input channels`, source);
      const bitsPer = groupMapBits(G);
      const map = expectStored(tensors, 'groupMap', 'U8', [packedBytes(cols, bitsPer)], source).data;
      groupOf = unpackCodes(map, cols, bitsPer);
      const sizes = new Array<number>(G).fill(0);
      for (let j = 0; j < cols; j++) {
        if (groupOf[j]! >= G) badStored('groupMap', `channel ${j} is in group ${groupOf[j]}, but there are ${G} groups`, source);
        sizes[groupOf[j]!]!++;
      }
      const empty = sizes.findIndex((s) => s === 0);
      if (empty >= 0) badStored('groupMap', `group ${empty} has no channels`, source);
      groupStates = u32Values(tensors, 'groupStates', G, source);
      weights = sizes.map((s) => rows * s);
    } else {
      const t = tensors.states;
      const T = t && t.shape.length === 1 ? t.shape[0]! : -1;
      groupStates = Uint32Array.of(Math.max(0, T));
      weights = [rows * cols];
      if (!t) expectStored(tensors, 'states', 'F16', [0], source); // throws MISSING_TENSOR
    }
    let T = 0;
    let sketchRows = 0;
    for (let g = 0; g < G; g++) {
      const a = groupAllocationOf(groupStates[g]!, weights[g]!, d);
      if (!a) {
        badStored(
          G > 1 ? 'groupStates' : 'states',
          `group ${g} has ${groupStates[g]} states; ${weights[g]} weights need exactly that many (exact) or a positive multiple of ${d} below it`,
          source,
        );
      }
      T += a.states;
      sketchRows += a.depth;
    }
    const dtype = o.state === 'f16' ? 'F16' : o.state === 'int8' ? 'I8' : 'F32';
    const states = typedOf(expectStored(tensors, 'states', dtype, [T], source), dtype);
    if (o.state === 'f16') {
      for (let i = 0; i < states.length; i++) if ((states[i]! & 0x7c00) === 0x7c00) nonFiniteStored('states', i, source);
    } else if (o.state === 'f32') {
      for (let i = 0; i < states.length; i++) if (!Number.isFinite(states[i]!)) nonFiniteStored('states', i, source);
    }
    let scales: Uint16Array | null = null;
    if (o.state === 'int8') {
      scales = typedOf(expectStored(tensors, 'scales', 'F16', [sketchRows], source), 'F16') as Uint16Array;
      for (let i = 0; i < scales.length; i++) if ((scales[i]! & 0x7c00) === 0x7c00) nonFiniteStored('scales', i, source);
    }
    return { rows, cols, options: o, seed, states, scales, groupOf, groupStates };
  },
};
