import {
  type Codec,
  type CodecParams,
  ErrorCodes,
  type StoredTensor,
  UltraSketchError,
  expectStored,
  f16BitsToF32,
  f32ToF16Bits,
  storedBits,
} from '@ultrasketch/core';
import { MixedHashFamily } from './hash.js';
import { smallestTarget, targetBits } from './sketch.js';
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
 * `hashednets` (Chen et al. 2015, "Compressing Neural Networks with the Hashing Trick"): every weight
 * (row, col) is hashed by the `mixed` family (one sketch row, stream 0) into one of `width` shared states;
 * a state holds the MEAN of the weights hashed to it (float64 sums; empty → 0). No sign hash.
 * width = the largest count whose bits fit the target, capped at one state per weight.
 *
 * Stored tensors: `states` F16 (rounded to nearest) | F32 [width]; `seed` U32 [1].
 * bits = 16|32 · width + 32.
 */
export interface HashedNetsOptions {
  /** Target bits per weight (required). */
  bpw: number;
  /** State format (default f16). */
  state: 'f16' | 'f32';
}

export interface HashedNetsParams extends CodecParams<HashedNetsOptions> {
  seed: number;
  /** f16 bits or float32 values [width]. */
  states: Uint16Array | Float32Array;
}

const HASHEDNETS_STATE_BITS = { f16: 16, f32: 32 } as const;

/** States per matrix a target pays for (may be < 1: infeasible), capped at rows · cols. */
export function hashedNetsWidth(rows: number, cols: number, o: HashedNetsOptions): number {
  const n = rows * cols;
  return Math.min(n, Math.floor((targetBits(o.bpw, n) - 32) / HASHEDNETS_STATE_BITS[o.state]));
}

/** The smallest feasible target: one state plus the seed. */
export function hashedNetsMinBpw(rows: number, cols: number, o: HashedNetsOptions): number {
  return smallestTarget(32 + HASHEDNETS_STATE_BITS[o.state], rows * cols);
}

export function hashedNetsFamily(p: { seed: number; rows: number; cols: number; states: { length: number } }): MixedHashFamily {
  return new MixedHashFamily({ seed: p.seed, stream: 0, rows: p.rows, cols: p.cols, width: p.states.length, depth: 1 });
}

export const hashedNetsCodec: Codec<HashedNetsOptions, HashedNetsParams> = {
  id: 'hashednets',
  version: 1,
  description: 'HashedNets: random (mixed) hashing of weights into shared states, state = bucket mean',

  resolveOptions(raw) {
    rejectUnknownOptions(raw, ['bpw', 'state'], 'hashednets');
    const bpw = numberOption(raw, 'bpw', undefined, (v) => v > 0 && v <= 64, 'a target bits per weight in (0, 64]', 'hashednets');
    const state = enumOption(raw, 'state', 'f16', ['f16', 'f32'] as const, 'hashednets');
    return { bpw, state };
  },

  encode(w, rows, cols, o, ctx) {
    assertFiniteMatrix(w, rows, cols, ctx.name);
    const seed = checkSeed(ctx.seed, ctx.name);
    const width = hashedNetsWidth(rows, cols, o);
    if (width < 1) {
      const min = hashedNetsMinBpw(rows, cols, o);
      throw new UltraSketchError(
        ErrorCodes.INFEASIBLE_BUDGET,
        `codec hashednets: ${o.bpw} bpw is infeasible for this ${rows}×${cols} matrix: ${targetBits(o.bpw, rows * cols)} bits do not pay for the 32-bit seed and one ${o.state} state; the smallest feasible target is ${min} bpw`,
        { source: ctx.name, hint: `use --bpw ${min} or more, or keep this tensor in float` },
      );
    }
    const family = new MixedHashFamily({ seed, stream: 0, rows, cols, width, depth: 1 });
    const sums = new Float64Array(width);
    const counts = new Float64Array(width);
    const idx = new Int32Array(cols);
    for (let r = 0; r < rows; r++) {
      family.rowIndices(r, 0, idx);
      for (let c = 0; c < cols; c++) {
        sums[idx[c]!] = sums[idx[c]!]! + w[r * cols + c]!;
        counts[idx[c]!] = counts[idx[c]!]! + 1;
      }
    }
    const states = o.state === 'f16' ? new Uint16Array(width) : new Float32Array(width);
    for (let s = 0; s < width; s++) {
      const mean = counts[s]! > 0 ? sums[s]! / counts[s]! : 0;
      states[s] = o.state === 'f16' ? f32ToF16Bits(mean) : mean;
    }
    return { rows, cols, options: o, seed, states };
  },

  decode(p) {
    const out = new Float32Array(p.rows * p.cols);
    this.decodeRows(p, 0, p.rows, out);
    return out;
  },

  decodeRows(p, row0, count, out) {
    const family = hashedNetsFamily(p);
    const idx = new Int32Array(p.cols);
    const f16 = p.options.state === 'f16';
    for (let r = row0; r < row0 + count; r++) {
      family.rowIndices(r, 0, idx);
      const o = (r - row0) * p.cols;
      for (let c = 0; c < p.cols; c++) {
        const s = p.states[idx[c]!]!;
        out[o + c] = f16 ? f16BitsToF32(s) : s;
      }
    }
  },

  bits(p) {
    return storedBits(this.toTensors(p));
  },

  toTensors(p): Record<string, StoredTensor> {
    return {
      states: { dtype: p.options.state === 'f16' ? 'F16' : 'F32', shape: [p.states.length], data: bytesOf(p.states) },
      seed: u32Tensor([p.seed]),
    };
  },

  fromTensors(tensors, rows, cols, o, source) {
    const seed = u32Values(tensors, 'seed', 1, source)[0]!;
    const dtype = o.state === 'f16' ? 'F16' : 'F32';
    const t = tensors.states;
    const width = t && t.shape.length === 1 ? t.shape[0]! : 0;
    if (t && !(Number.isInteger(width) && width >= 1 && width <= rows * cols)) {
      badStored('states', `shape [${t.shape}] is not [width] with 1 ≤ width ≤ ${rows * cols}`, source);
    }
    const states = typedOf(expectStored(tensors, 'states', dtype, [width], source), dtype) as Uint16Array | Float32Array;
    for (let i = 0; i < states.length; i++) {
      const bad = o.state === 'f16' ? (states[i]! & 0x7c00) === 0x7c00 : !Number.isFinite(states[i]!);
      if (bad) nonFiniteStored('states', i, source);
    }
    return { rows, cols, options: o, seed, states };
  },
};
