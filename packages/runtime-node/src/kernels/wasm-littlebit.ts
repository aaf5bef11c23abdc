import type { LittleBitParams } from '@ultrasketch/littlebit';
import type { DecodeCall, Linear } from '@ultrasketch/model';
import { ArenaVector, ArenaVectorPair, type WasmArena } from '../wasm/arena.js';
import { recordCalls } from '../wasm/decode-program.js';
import { ModuleBuilder, lanesSum } from '../wasm/emitter.js';
import { byteAlignedRows, littlebitKernel } from './littlebit.js';
import { HeapViews, compressedWasmAvailable, onesVector, kernelExports, memoryImport, storeBytes, withArena, checkApplyShape } from './wasm-common.js';
import { emitF16ToF32 } from './wasm-float.js';
import { KFn, forRange, whileLtU } from './wasm-emit.js';
import { type RowBody, type RowCall, directCall, splitRows } from '../threads.js';

/**
 * The LittleBit kernel in WebAssembly (docs/kernels.md): y = Σ_paths h ⊙ (U_s (ℓ ⊙ (V_sᵀ (g ⊙ x)))), each ±1
 * product by subset-sum tables exactly like `littlebitKernel` (T[m] = Σ_i (bit i of m ? −v_i : +v_i) over
 * groups of 8 — byte tables — or 4 — nibble tables — consecutive inputs; a row of signs is then one lookup
 * and one addition per 8 or 4 signs), with:
 * - tables built with f32x4 arithmetic, fully unrolled (T[2^i + m] = T[m] − 2·v_i, four entries per op);
 * - lookups in straight wasm: a byte load, a table load at a constant offset, an add — four independent
 *   accumulators per row;
 * - the diagonal scalings fused: g ⊙ x while building the V tables, ℓ ⊙ z and h ⊙ u when storing the rows'
 *   sums, the second path accumulating into the first's output;
 * - **four input vectors per table** when n > 1: every table entry is an f32x4 holding the subset sums of
 *   4 tokens, so one 16-byte lookup serves 4 tokens — the rows' sign bytes are read once per 4 tokens.
 * Single-vector sums accumulate in float64 (the JS kernel's choice); 4-vector sums in float32 lanes.
 * Rows whose length is not a multiple of 8 are re-packed once at construction (byteAlignedRows).
 * The f16 scales stay f16 in the arena (the bytes the bundle holds; issue 12, done-when 4): each call first widens
 * them into scratch with one wasm call (f16tof32, the float kernel's exact conversion: the same float32 numbers
 * the kernel used to store), so the weights held are the stored bytes plus the re-packing of U's rows.
 */

/**
 * Table kind per stage: byte tables (256 entries per 8 inputs: half the lookups, 8× the building) for stages
 * with at least `byteMinRows*` rows whose tables fit in `maxTableBytes`, nibble tables (16 per 4) otherwise.
 */
export interface LittleBitTiling {
  byteMinRows1: number;
  byteMinRows4: number;
  maxTableBytes: number;
}
export const DEFAULT_LITTLEBIT_TILING: LittleBitTiling = { byteMinRows1: 64, byteMinRows4: 64, maxTableBytes: 1 << 20 };

/** Bits per table group (8: byte tables, 4: nibble tables) for a stage of `rows` rows over `len` inputs. */
export function tableBits(t: LittleBitTiling, rows: number, len: number, lanes: 1 | 4): 4 | 8 {
  const byteTables = Math.ceil(len / 8) * 256 * 4 * lanes;
  return rows >= (lanes === 1 ? t.byteMinRows1 : t.byteMinRows4) && byteTables <= t.maxTableBytes ? 8 : 4;
}

/** Rows of at most this many sign bytes get straight-line lookup code (no loop) in byte-table stages. */
export const SHORT_ROW_BYTES = 16;

const SPLAT_LANE = (i: number) => Array.from({ length: 16 }, (_, b) => 4 * i + (b & 3));

/** Push splat(lane i of vector v). */
function splatLane(f: KFn, v: number, i: number): void {
  f.get(v).get(v).i8x16Shuffle(SPLAT_LANE(i));
}

/**
 * First 4 entries [T0, T0 − d0, T0 − d1, T0 − d0 − d1] of a single-vector table from the group's values
 * (vector `lo` = v0..v3 times 2 in `d`), T0 = Σ values: left in `e`.
 */
function firstFour(f: KFn, t0: number, d: number, e: number): void {
  f.get(t0).f32x4Splat();
  splatLane(f, d, 0);
  f.v128ConstF32(0, 1, 0, 1).f32x4Mul().f32x4Sub();
  splatLane(f, d, 1);
  f.v128ConstF32(0, 0, 1, 1).f32x4Mul().f32x4Sub();
  f.set(e);
}

/**
 * build1(x, g, groups, T, bits): single-vector tables, groups of 8 (bits 8) or 4 (bits 4) inputs.
 * v = x ⊙ g; byte group b at T + 1024·b, nibble group q at T + 64·q.
 */
function emitBuild1(bits: 4 | 8): KFn {
  const f = new KFn(['i32', 'i32', 'i32', 'i32']);
  const [x, g, groups, T] = [0, 1, 2, 3];
  const b = f.local('i32');
  const xp = f.local('i32');
  const gp = f.local('i32');
  const tp = f.local('i32');
  const t0 = f.local('f32');
  const lo = f.local('v128');
  const hi = f.local('v128');
  const dlo = f.local('v128');
  const dhi = f.local('v128');
  const e = [f.local('v128'), f.local('v128'), f.local('v128'), f.local('v128')];
  f.get(x).set(xp);
  f.get(g).set(gp);
  f.get(T).set(tp);
  forRange(f, b, groups, () => {
    f.get(xp).v128LoadA(0).get(gp).v128LoadA(0).f32x4Mul().set(lo);
    f.get(lo).get(lo).f32x4Add().set(dlo);
    if (bits === 8) {
      f.get(xp).v128LoadA(16).get(gp).v128LoadA(16).f32x4Mul().set(hi);
      f.get(hi).get(hi).f32x4Add().set(dhi);
      f.get(lo).get(hi).f32x4Add().set(e[0]!);
      lanesSum(f, e[0]!);
    } else {
      lanesSum(f, lo);
    }
    f.set(t0);
    firstFour(f, t0, dlo, e[0]!);
    // entries 4..7 and 8..15 in registers
    f.get(e[0]!);
    splatLane(f, dlo, 2);
    f.f32x4Sub().set(e[1]!);
    for (let m = 0; m < 2; m++) {
      f.get(e[m]!);
      splatLane(f, dlo, 3);
      f.f32x4Sub().set(e[2 + m]!);
    }
    for (let m = 0; m < 4; m++) f.get(tp).get(e[m]!).v128StoreA(16 * m, 16);
    if (bits === 8) {
      // entries 16..255: T[2^i + m] = T[m] − 2·v_i, four at a time, from memory
      for (let i = 4; i < 8; i++) {
        const half = 1 << i;
        for (let m = 0; m < half; m += 4) {
          f.get(tp);
          f.get(tp).v128LoadA(4 * m, 16);
          splatLane(f, dhi, i - 4);
          f.f32x4Sub().v128StoreA(4 * (half + m), 16);
        }
      }
    }
    f.get(xp).i32Const(4 * bits).i32Add().set(xp);
    f.get(gp).i32Const(4 * bits).i32Add().set(gp);
    f.get(tp).i32Const(bits === 8 ? 1024 : 64).i32Add().set(tp);
  });
  return f;
}

/**
 * dot{1|4}_{8|4}(B, rows, nb, T, scale, out, accumulate): out[k] (+)= scale[k] · Σ_b lookups of row k's nb sign
 * bytes (B + k·nb), four accumulators, U bytes per iteration (fixedNb > 0: straight-line code for rows of
 * exactly fixedNb bytes). One emitter for both table layouts, `lanes`:
 * - 1 (single vector): f32 entries, float64 accumulators, out f32 [rows]. Byte tables: T + 1024·b + 4·byte;
 *   nibble tables: T + 128·b + 4·(byte & 15) and T + 128·b + 64 + 4·(byte >> 4);
 * - 4 (four vectors): f32x4 entries (16 bytes, one lane a vector), f32x4 accumulators, out4 f32x4 [rows].
 */
function emitDot(lanes: 1 | 4, bits: 4 | 8, U = 4, fixedNb = 0): KFn {
  const f = new KFn(Array(7).fill('i32'));
  const [B, rows, nb, T, scale, out, accumulate] = [0, 1, 2, 3, 4, 5, 6];
  const wide = lanes === 4;
  const num = wide ? 'v128' : 'f64';
  const k = f.local('i32');
  const bp = f.local('i32');
  const tp = f.local('i32');
  const end = f.local('i32');
  const endU = f.local('i32');
  const rowB = f.local('i32');
  const v = f.local('i32');
  const op = f.local('i32');
  const sum = f.local(num);
  const acc = [f.local(num), f.local(num), f.local(num), f.local(num)];
  const entryShift = wide ? 4 : 2; // log2 bytes per table entry (and per output row)
  const tableBytes = (bits === 8 ? 256 : 32) << entryShift; // one group's table(s)
  /** Push the table entry at the address on the stack + offset. */
  const entry = (offset: number) => (wide ? f.v128LoadA(offset, 16) : f.f32Load(offset));
  /** acc = acc + the entry on the stack. */
  const addEntry = () => (wide ? f.f32x4Add() : f.f64PromoteF32().f64Add());
  const lookup = (byteOff: number, a: number) => {
    // acc[a] += T[...] for the byte at bp + byteOff, table tp + byteOff·tableBytes
    if (bits === 8) {
      f.get(acc[a]!);
      f.get(tp).get(bp).i32Load8U(byteOff).i32Const(entryShift).i32Shl().i32Add();
      entry(byteOff * tableBytes);
    } else {
      f.get(bp).i32Load8U(byteOff).set(v);
      f.get(acc[a]!);
      f.get(tp).get(v).i32Const(15).i32And().i32Const(entryShift).i32Shl().i32Add();
      entry(byteOff * tableBytes);
      f.get(tp).get(v).i32Const(4).i32ShrU().i32Const(entryShift).i32Shl().i32Add();
      entry(byteOff * tableBytes + (16 << entryShift));
      if (wide) f.f32x4Add();
      else f.f32Add();
    }
    addEntry().set(acc[a]!);
  };
  f.get(B).set(rowB);
  forRange(f, k, rows, () => {
    for (const a of acc) (wide ? f.v128Zero() : f.f64Const(0)).set(a);
    f.get(rowB).set(bp);
    f.get(T).set(tp);
    if (fixedNb > 0) {
      // straight-line: the row's nb bytes at constant offsets (short rows: U_s at low ranks)
      for (let b = 0; b < fixedNb; b++) lookup(b, b % 4);
    } else {
      f.get(rowB).get(nb).i32Add().set(end);
      f.get(rowB).get(nb).i32Const(-U).i32And().i32Add().set(endU);
      whileLtU(f, bp, endU, U, () => {
        for (let u = 0; u < U; u++) lookup(u, u % 4);
        f.get(tp).i32Const(U * tableBytes).i32Add().set(tp);
      });
      whileLtU(f, bp, end, 1, () => {
        lookup(0, 0);
        f.get(tp).i32Const(tableBytes).i32Add().set(tp);
      });
    }
    // out[k] (+)= scale[k] · sum
    f.get(out).get(k).i32Const(entryShift).i32Shl().i32Add().set(op);
    if (wide) {
      f.get(acc[0]!).get(acc[1]!).f32x4Add().get(acc[2]!).get(acc[3]!).f32x4Add().f32x4Add();
      f.get(scale).get(k).i32Const(2).i32Shl().i32Add().v128Load32Splat().f32x4Mul().set(sum);
      f.get(accumulate).if_();
      f.get(sum).get(op).v128LoadA(0, 16).f32x4Add().set(sum);
      f.end();
      f.get(op).get(sum).v128StoreA(0, 16);
    } else {
      f.get(acc[0]!).get(acc[1]!).f64Add().get(acc[2]!).get(acc[3]!).f64Add().f64Add();
      f.get(scale).get(k).i32Const(2).i32Shl().i32Add().f32Load().f64PromoteF32().f64Mul().set(sum);
      f.get(accumulate).if_();
      f.get(sum).get(op).f32Load().f64PromoteF32().f64Add().set(sum);
      f.end();
      f.get(op).get(sum).f32DemoteF64().f32Store();
    }
    f.get(rowB).get(nb).i32Add().set(rowB);
  });
  return f;
}

/**
 * build4v_{8|4}(x4, g, groups, T): four-vector tables. x4 holds, per input j, the 4 vectors' values as one
 * f32x4 (x4 + 16·j); v_j = x4[j] · g[j]. Entry m of group b is an f32x4 at T + 16·(2^bits·b + m).
 */
function emitBuild4(bits: 4 | 8): KFn {
  const f = new KFn(['i32', 'i32', 'i32', 'i32']);
  const [x, g, groups, T] = [0, 1, 2, 3];
  const b = f.local('i32');
  const xp = f.local('i32');
  const gp = f.local('i32');
  const tp = f.local('i32');
  const vals = Array.from({ length: bits }, () => f.local('v128'));
  const e0 = f.local('v128');
  f.get(x).set(xp);
  f.get(g).set(gp);
  f.get(T).set(tp);
  forRange(f, b, groups, () => {
    for (let i = 0; i < bits; i++) {
      f.get(xp).v128LoadA(16 * i, 16).get(gp).v128Load32Splat(4 * i).f32x4Mul().set(vals[i]!);
    }
    // T0 = Σ v_i (pairwise), then d_i = 2 v_i in place
    f.get(vals[0]!).get(vals[1]!).f32x4Add().get(vals[2]!).get(vals[3]!).f32x4Add().f32x4Add();
    if (bits === 8) f.get(vals[4]!).get(vals[5]!).f32x4Add().get(vals[6]!).get(vals[7]!).f32x4Add().f32x4Add().f32x4Add();
    f.set(e0);
    for (const v of vals) f.get(v).get(v).f32x4Add().set(v);
    f.get(tp).get(e0).v128StoreA(0, 16);
    const size = 1 << bits;
    for (let i = 0; i < bits; i++) {
      const half = 1 << i;
      for (let m = 0; m < half; m++) {
        f.get(tp);
        if (m === 0) f.get(e0);
        else f.get(tp).v128LoadA(16 * m, 16);
        f.get(vals[i]!).f32x4Sub().v128StoreA(16 * (half + m), 16);
      }
    }
    f.get(xp).i32Const(16 * bits).i32Add().set(xp);
    f.get(gp).i32Const(4 * bits).i32Add().set(gp);
    f.get(tp).i32Const(16 * size).i32Add().set(tp);
  });
  return f;
}

/**
 * interleave4(src, dst, T, inF, padIn): dst[4j + t] = src[t·inF + j] for t < T, j < inF, every other entry of
 * dst's padIn × 4 floats 0 — the 4-token block layout of the tables, as the JS loop of `apply` writes it (bits
 * copied with i32 loads/stores). deinterleave4(src, dst, T, out): dst[t·out + i] = src[4i + t]. Used by the
 * token-block split of a prefill (issue 12, fifth slice), where a worker thread fills its own block buffers.
 */
/** Byte lanes of an i8x16.shuffle that picks f32 lanes (0–3: the first operand, 4–7: the second). */
const F32_LANES = (lanes: readonly number[]) => lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]);

/**
 * Transposes the 4×4 block held in v128 locals a[0..3] (a[t] = 4 consecutive values of row t) and hands the
 * result's rows to `store(k)` one at a time (on the stack: (a0[k], a1[k], a2[k], a3[k])). Pure data movement:
 * the same bits the scalar loops copy. `tmp` are 2 v128 scratch locals.
 */
function transpose4(f: KFn, a: readonly number[], tmp: readonly number[], store: (k: number, value: () => void) => void): void {
  for (const half of [0, 1]) {
    // (a0[2h], a1[2h], a0[2h+1], a1[2h+1]) and the same of a2, a3
    f.get(a[0]!).get(a[1]!).i8x16Shuffle(F32_LANES(half ? [2, 6, 3, 7] : [0, 4, 1, 5])).set(tmp[0]!);
    f.get(a[2]!).get(a[3]!).i8x16Shuffle(F32_LANES(half ? [2, 6, 3, 7] : [0, 4, 1, 5])).set(tmp[1]!);
    store(2 * half, () => f.get(tmp[0]!).get(tmp[1]!).i8x16Shuffle(F32_LANES([0, 1, 4, 5])));
    store(2 * half + 1, () => f.get(tmp[0]!).get(tmp[1]!).i8x16Shuffle(F32_LANES([2, 3, 6, 7])));
  }
}

/**
 * interleave4(src, dst, T, inF, padIn): dst[4j + t] = src[t·inF + j] for t < T, j < inF, every other entry of
 * dst's padIn × 4 floats 0 — the 4-token block layout of the tables, as the JS loop of `apply` writes it (bits
 * copied). deinterleave4(src, dst, T, out): dst[t·out + i] = src[4i + t]. Used by the token-block split of a
 * prefill (issue 12, fifth slice), where a worker thread fills its own block buffers. A full block (T = 4) of a
 * width that is a multiple of 4 moves as 4×4 SIMD transposes (4 loads, 8 shuffles, 4 stores per 16 values: the
 * scalar loops were ~7% of a LittleBit prefill); anything else goes value by value.
 */
function emitInterleave4(): KFn {
  const f = new KFn(['i32', 'i32', 'i32', 'i32', 'i32']);
  const [src, dst, T, inF, padIn] = [0, 1, 2, 3, 4];
  const j = f.local('i32');
  const t = f.local('i32');
  const sp = f.local('i32');
  const end = f.local('i32');
  const rowB = f.local('i32');
  const a = [f.local('v128'), f.local('v128'), f.local('v128'), f.local('v128')];
  const tmp = [f.local('v128'), f.local('v128')];
  f.get(padIn).i32Const(4).i32Shl().set(end);
  whileLtU(f, j, end, 16, () => {
    f.get(dst).get(j).i32Add().v128ConstI32(0).v128StoreA(0, 4);
  });
  f.get(T).i32Const(4).i32Eq().get(inF).i32Const(3).i32And().i32Eqz().i32And();
  f.if_();
  {
    // sp = src + 4j walks the first token's row; token t's value j is at sp + t·rowB
    f.get(inF).i32Const(2).i32Shl().set(rowB);
    f.get(src).set(sp);
    f.get(inF).i32Const(4).i32Shl().get(dst).i32Add().set(end);
    f.get(dst).set(j); // j: the destination address (16 bytes per input)
    whileLtU(f, j, end, 64, () => {
      for (let k = 0; k < 4; k++) {
        f.get(sp);
        if (k > 0) f.get(rowB).i32Const(k).i32Mul().i32Add();
        f.v128LoadA(0, 4).set(a[k]!);
      }
      transpose4(f, a, tmp, (k, value) => {
        f.get(j);
        value();
        f.v128StoreA(16 * k, 4);
      });
      f.get(sp).i32Const(16).i32Add().set(sp);
    });
  }
  f.else_();
  forRange(f, t, T, () => {
    f.get(src).get(t).get(inF).i32Mul().i32Const(2).i32Shl().i32Add().set(sp);
    f.i32Const(0).set(j);
    whileLtU(f, j, inF, 1, () => {
      f.get(dst).get(j).i32Const(4).i32Shl().i32Add().get(t).i32Const(2).i32Shl().i32Add();
      f.get(sp).get(j).i32Const(2).i32Shl().i32Add().i32Load();
      f.i32Store();
    });
  });
  f.end();
  return f;
}

function emitDeinterleave4(): KFn {
  const f = new KFn(['i32', 'i32', 'i32', 'i32']);
  const [src, dst, T, out] = [0, 1, 2, 3];
  const i = f.local('i32');
  const t = f.local('i32');
  const dp = f.local('i32');
  const end = f.local('i32');
  const rowB = f.local('i32');
  const a = [f.local('v128'), f.local('v128'), f.local('v128'), f.local('v128')];
  const tmp = [f.local('v128'), f.local('v128')];
  f.get(T).i32Const(4).i32Eq().get(out).i32Const(3).i32And().i32Eqz().i32And();
  f.if_();
  {
    // i: the source address (16 bytes per output: its 4 tokens); dp = dst + 4·i0 walks token 0's row
    f.get(out).i32Const(2).i32Shl().set(rowB);
    f.get(dst).set(dp);
    f.get(out).i32Const(4).i32Shl().get(src).i32Add().set(end);
    f.get(src).set(i);
    whileLtU(f, i, end, 64, () => {
      for (let k = 0; k < 4; k++) f.get(i).v128LoadA(16 * k, 4).set(a[k]!);
      transpose4(f, a, tmp, (k, value) => {
        f.get(dp);
        if (k > 0) f.get(rowB).i32Const(k).i32Mul().i32Add();
        value();
        f.v128StoreA(0, 4);
      });
      f.get(dp).i32Const(16).i32Add().set(dp);
    });
  }
  f.else_();
  forRange(f, t, T, () => {
    f.get(dst).get(t).get(out).i32Mul().i32Const(2).i32Shl().i32Add().set(dp);
    f.i32Const(0).set(i);
    whileLtU(f, i, out, 1, () => {
      f.get(dp).get(i).i32Const(2).i32Shl().i32Add();
      f.get(src).get(i).i32Const(4).i32Shl().i32Add().get(t).i32Const(2).i32Shl().i32Add().i32Load();
      f.i32Store();
    });
  });
  f.end();
  return f;
}

/**
 * The descriptor a `blocks` call reads (i32 words at `desc`, written by the caller before the chunks run): where x
 * and y are staged, the shapes and the slot layout (words 0–7, both kernels), then the kernel's own: LittleBit's
 * rank, padded rank, ones vector and paths (each path's scales as absolute addresses in scratch), binary's ones
 * vector, sign rows and widened row scales.
 */
export const BLOCKS_DESC = {
  // both kernels: where x and y are staged, the shapes, the slot layout
  xs: 0, ys: 1, n: 2, inF: 3, padIn: 4, out: 5, x4Bytes: 6, w4Bytes: 7, y4Bytes: 8,
  // LittleBit; its paths' words (g, vBytes, l, uBytes, h) follow from word 16 on (BLOCKS_PATH)
  rank: 9, padR: 10, ones: 11, paths: 12,
  // binary (one stage; `ones` as above)
  signs: 13, scales: 14,
} as const;
const BLOCKS_PATH = { words: 5, at: 16 } as const;
/** Bytes of the descriptor: two paths at most, rounded to 32 words so the slots after it stay 16-byte aligned. */
export const BLOCKS_DESC_BYTES = 128;

/** The name of a LittleBit `blocks` function for a stage set (see emitLittleBitBlocks). */
function blocksName(vBits: 4 | 8, uBits: 4 | 8, dotU: string): string {
  return `blocks_v${vBits}_u${uBits}_${dotU}`;
}

/** The name of the binary kernel's `blocks` function for its table kind (see emitBinaryBlocks). */
export function binaryBlocksName(bits: 4 | 8): string {
  return `blocks_binary_${bits}`;
}

interface BlockLoop {
  f: KFn;
  /** Push descriptor word w. */
  word: (w: number) => void;
  /** Locals: the slot's x4 (a parameter), w4, y4 and table addresses. */
  slot: number;
  wAt: number;
  yAt: number;
  tAt: number;
}

/**
 * blocks(desc, b0, b1, slot): the 4-token blocks b0..b1−1 of a batch, each as the kernel's JS used to make its
 * calls, made here in the same order with the same arguments (so the same bits): interleave the block's x into
 * the slot (x4), `body` (the kernel's stages, x4 → y4), deinterleave y4 into y. One call per chunk of blocks
 * instead of several per block: the ~40,000 calls of a stories3M LittleBit prefill cost ~1% of it on one thread,
 * and recording them for the thread pool made a split batch slower than one thread (results §2.1). The stage
 * functions are called directly by their index in the module.
 */
function emitBlockLoop(index: (name: string) => number, body: (loop: BlockLoop) => void): KFn {
  const f = new KFn(['i32', 'i32', 'i32', 'i32']);
  const [desc, b0, b1, slot] = [0, 1, 2, 3];
  const [b, t0, T, wAt, yAt, tAt, rem] = Array.from({ length: 7 }, () => f.local('i32'));
  const word = (w: number) => {
    f.get(desc).i32Load(4 * w);
  };
  word(BLOCKS_DESC.x4Bytes);
  f.get(slot).i32Add().set(wAt);
  word(BLOCKS_DESC.w4Bytes);
  f.get(wAt).i32Add().set(yAt);
  word(BLOCKS_DESC.y4Bytes);
  f.get(yAt).i32Add().set(tAt);
  f.get(b0).set(b);
  whileLtU(f, b, b1, 1, () => {
    // t0 = 4b; T = min(4, n − t0)
    f.get(b).i32Const(2).i32Shl().set(t0);
    word(BLOCKS_DESC.n);
    f.get(t0).i32Sub().set(rem);
    f.get(rem).i32Const(4).get(rem).i32Const(4).i32LtS().select().set(T);
    // interleave4(xs + 4·t0·inF, x4, T, inF, padIn)
    word(BLOCKS_DESC.xs);
    f.get(t0);
    word(BLOCKS_DESC.inF);
    f.i32Mul().i32Const(2).i32Shl().i32Add().get(slot).get(T);
    word(BLOCKS_DESC.inF);
    word(BLOCKS_DESC.padIn);
    f.call(index('interleave4'));
    body({ f, word, slot, wAt, yAt, tAt });
    // deinterleave4(y4, ys + 4·t0·out, T, out)
    f.get(yAt);
    word(BLOCKS_DESC.ys);
    f.get(t0);
    word(BLOCKS_DESC.out);
    f.i32Mul().i32Const(2).i32Shl().i32Add().get(T);
    word(BLOCKS_DESC.out);
    f.call(index('deinterleave4'));
  });
  return f;
}

/** LittleBit's stages per block: per path the V tables, V stage, U tables, U stage (the second path accumulating). */
function emitLittleBitBlocks(index: (name: string) => number, vBits: 4 | 8, uBits: 4 | 8, dotU: string): KFn {
  return emitBlockLoop(index, ({ f, word, slot, wAt, yAt, tAt }) => {
    const p = f.local('i32');
    const pd = f.local('i32');
    const pathWord = (w: number) => f.get(pd).i32Load(4 * w);
    f.i32Const(0).set(p);
    f.get(0).i32Const(4 * BLOCKS_PATH.at).i32Add().set(pd); // (param 0: desc)
    const np = f.local('i32');
    word(BLOCKS_DESC.paths);
    f.set(np);
    whileLtU(f, p, np, 1, () => {
      // buildV(x4, g, padIn / vBits, tables); dotV(vBytes, rank, padIn / 8, tables, l, w4, 0)
      f.get(slot);
      pathWord(0);
      word(BLOCKS_DESC.padIn);
      f.i32Const(vBits === 8 ? 3 : 2).i32ShrU().get(tAt).call(index(`build4_${vBits}`));
      pathWord(1);
      word(BLOCKS_DESC.rank);
      word(BLOCKS_DESC.padIn);
      f.i32Const(3).i32ShrU().get(tAt);
      pathWord(2);
      f.get(wAt).i32Const(0).call(index(`dot4_${vBits}`));
      // buildU(w4, ones, padR / uBits, tables); dotU(uBytes, out, padR / 8, tables, h, y4, p > 0)
      f.get(wAt);
      word(BLOCKS_DESC.ones);
      word(BLOCKS_DESC.padR);
      f.i32Const(uBits === 8 ? 3 : 2).i32ShrU().get(tAt).call(index(`build4_${uBits}`));
      pathWord(3);
      word(BLOCKS_DESC.out);
      word(BLOCKS_DESC.padR);
      f.i32Const(3).i32ShrU().get(tAt);
      pathWord(4);
      f.get(yAt).get(p).i32Const(0).i32GtU().call(index(dotU));
      f.get(pd).i32Const(4 * BLOCKS_PATH.words).i32Add().set(pd);
    });
  });
}

/** The binary kernel's one stage per block: tables over x4 (build, ones as g), then the rows' dot with their scales. */
function emitBinaryBlocks(index: (name: string) => number, bits: 4 | 8): KFn {
  return emitBlockLoop(index, ({ f, word, slot, yAt, tAt }) => {
    // build(x4, ones, padIn / bits, tables); dot(signs, out, padIn / 8, tables, scales, y4, 0)
    f.get(slot);
    word(BLOCKS_DESC.ones);
    word(BLOCKS_DESC.padIn);
    f.i32Const(bits === 8 ? 3 : 2).i32ShrU().get(tAt).call(index(`build4_${bits}`));
    word(BLOCKS_DESC.signs);
    word(BLOCKS_DESC.out);
    word(BLOCKS_DESC.padIn);
    f.i32Const(3).i32ShrU().get(tAt);
    word(BLOCKS_DESC.scales);
    f.get(yAt).i32Const(0).call(index(`dot4_${bits}`));
  });
}

/** U's dot functions a 4-token stage set can use (stages()): the straight-line short rows and the two loops. */
const DOT4_U = ['dot4_4', 'dot4_8', ...Array.from({ length: SHORT_ROW_BYTES }, (_, i) => `dot4_8_nb${i + 1}`)];

function buildModule(shared: boolean, maxPages: number): ModuleBuilder {
  const m = new ModuleBuilder(memoryImport(shared, maxPages));
  const names: string[] = [];
  const add = (name: string, fn: KFn) => {
    m.addFunction(name, fn);
    names.push(name);
  };
  add('interleave4', emitInterleave4());
  add('f16tof32', emitF16ToF32());
  add('f16tof32_finite', emitF16ToF32(true));
  add('deinterleave4', emitDeinterleave4());
  add('build1_8', emitBuild1(8));
  add('build1_4', emitBuild1(4));
  add('dot1_8', emitDot(1, 8));
  add('dot1_4', emitDot(1, 4));
  add('build4_8', emitBuild4(8));
  add('build4_4', emitBuild4(4));
  add('dot4_8', emitDot(4, 8));
  add('dot4_4', emitDot(4, 4));
  for (let nb = 1; nb <= SHORT_ROW_BYTES; nb++) {
    add(`dot1_8_nb${nb}`, emitDot(1, 8, 4, nb));
    add(`dot4_8_nb${nb}`, emitDot(4, 8, 4, nb));
  }
  // the module imports no functions: its own are numbered from 0 in the order added
  const index = (name: string) => {
    const i = names.indexOf(name);
    if (i < 0) throw new RangeError(`littlebit module: no function ${name}`);
    return i;
  };
  for (const vBits of [4, 8] as const) {
    for (const dotU of DOT4_U) {
      const uBits = dotU === 'dot4_4' ? 4 : 8;
      add(blocksName(vBits, uBits, dotU), emitLittleBitBlocks(index, vBits, uBits, dotU));
    }
    add(binaryBlocksName(vBits), emitBinaryBlocks(index, vBits));
  }
  return m;
}

/** The module's bytes (for the tests' WebAssembly.validate). */
export function emitLittleBitModule(): Uint8Array {
  return buildModule(false, 65536).emit();
}

/** Single-thread cost of one table lookup of a dot stage (ns, ~1 lookup per cycle, docs/kernels.md). */
const NS_PER_LOOKUP = 0.5;

/** Estimated single-thread ns of a dot stage: `rows` rows of `nb` sign bytes, one lookup per byte (8) or nibble (4). */
export function stageNs(rows: number, nb: number, bits: 4 | 8): number {
  return rows * nb * (bits === 8 ? 1 : 2) * NS_PER_LOOKUP;
}

/** Single-thread cost of one four-vector table entry of a batch block (ns: an f32x4 add and a 16-byte store). */
const NS_PER_TABLE_ENTRY = 0.34;

/**
 * Estimated single-thread ns of one batch block of a sign-table stage over `cols` inputs: building its four-vector
 * tables (256 entries per byte of inputs, 16 per nibble) and the lookups of `rows` rows. The tables are the larger
 * part at small `rows` (a 64 × 192 LittleBit product's block: 0.28 µs of lookups, ~1.1 µs measured): counting only
 * the lookups kept such products under the pool's threshold, on one thread (results §2.1).
 */
export function blockStageNs(rows: number, cols: number, bits: 4 | 8): number {
  const entries = bits === 8 ? (cols / 8) * 256 : (cols / 4) * 16;
  return entries * NS_PER_TABLE_ENTRY + stageNs(rows, cols / 8, bits);
}

/**
 * One vector's dot(bytes, rows, nb, T, scale, out, accumulate) over its rows, split across the arena's threads
 * (rows are independent: row k reads bytes + k·nb, scale + 4k and writes out + 4k, whatever the range; batches go
 * by token blocks instead, runBlocks). `record`
 * given: all rows as one call through it on this thread, whatever the pool (what one thread without a pool
 * calls: a decode plan records it with `recordingCall`).
 */
export function splitDot(arena: WasmArena, dot: Fn, bytes: number, rows: number, nb: number, T: number, scale: number, out: number, accumulate: number, bits: 4 | 8, record?: RowCall): void {
  const body: RowBody = (call, r0, r1) => call(dot, bytes + r0 * nb, r1 - r0, nb, T, scale + 4 * r0, out + r0 * 4, accumulate);
  if (record) {
    body(record, 0, rows);
    return;
  }
  splitRows(arena, rows, stageNs(rows, nb, bits), 1, body);
}

/**
 * The scales' widening function: f16tof32_finite (about half the work: no Inf/NaN fix-up, the same bits for every
 * finite half) unless some scale is Inf or NaN.
 */
export function widenFunction(fn: Record<string, Fn>, halves: Uint16Array): Fn {
  const finite = halves.every((h) => (h & 0x7c00) !== 0x7c00);
  return finite ? fn.f16tof32_finite! : fn.f16tof32!;
}

/**
 * The subset-sum table functions (build1_8/4, dot1_8/4, build4_8/4, dot4_8/4, and f16tof32 / f16tof32_finite for
 * the scales) instantiated over `arena`.
 */
export function signTableFunctions(arena: WasmArena): Record<string, (...a: number[]) => void> {
  return kernelExports(arena, 'littlebit', buildModule) as Record<string, (...a: number[]) => void>;
}

type Fn = (...a: number[]) => void;

/**
 * One path: the sign rows' addresses in the arena, and where its scales land in the widened f32 block (byte
 * offsets from the block's start in scratch: `scalesAt + g` etc.).
 */
interface PathPlan {
  vBytes: number; // V_sᵀ rows [r, nbIn]
  uBytes: number; // U_s rows [out, nbR]
  g: number; // f32 [padIn], zeros past in
  l: number; // f32 [r]
  h: number; // f32 [out]
}

/**
 * The f16 scales of every path as one array, each path's block [g (padIn, zeros past in) | ℓ (r) | h (out)]
 * padded with zeros to a multiple of 8 halves: f16tof32 then converts whole 8-half blocks (reading nothing past
 * the array) and every path's widened g starts 16-byte aligned. Returns the halves and the block length.
 */
function scalesF16(p: LittleBitParams, padIn: number): { halves: Uint16Array; block: number } {
  const block = up8(padIn + p.rank + p.rows);
  const halves = new Uint16Array(block * p.paths.length);
  p.paths.forEach((path, i) => {
    halves.set(path.g, i * block);
    halves.set(path.l, i * block + padIn);
    halves.set(path.h, i * block + padIn + p.rank);
  });
  return { halves, block };
}

const up8 = (v: number) => Math.ceil(v / 8) * 8;

/**
 * The frame of the sign-table kernels (this file's LittleBit kernel and wasm-binary.ts's): one vector through
 * `oneVector` — x read where it is when it is a view of the arena and its row needs no padding (the tables read
 * whole groups of 8 inputs), y always — and batches through `applyBatch`; `decodeCalls` records oneVector's calls.
 */
export abstract class SignTableLinear implements Linear {
  /** The input length rounded up to whole bytes of signs. */
  protected readonly padIn: number;
  protected readonly views: HeapViews;
  /** x and y of the one-vector path, in place or staged (x only when in % 8 == 0: no padding). */
  protected readonly vectors1: ArenaVectorPair;
  /** x and y of batches (n > 1), read and written in place when they are views of the arena (runBlocks). */
  protected readonly vectorsN: ArenaVectorPair;

  constructor(
    readonly arena: WasmArena,
    readonly outFeatures: number,
    readonly inFeatures: number,
    /** The codec's name, for the errors. */
    private readonly kernel: string,
  ) {
    this.padIn = up8(inFeatures);
    this.views = new HeapViews(arena);
    this.vectors1 = new ArenaVectorPair(arena, this.padIn === inFeatures);
    this.vectorsN = new ArenaVectorPair(arena);
  }

  /**
   * One vector x → y (x and y: `vectors1`'s), every wasm call through `record` when given (a decode plan: one
   * thread), else run here; returns the scratch address y was written to when staged (for `written`).
   */
  protected abstract oneVector(xv: ArenaVector, yv: ArenaVector, record?: RowCall): number;

  /** n > 1 vectors, in blocks of 4. */
  protected abstract applyBatch(x: Float32Array, y: Float32Array, n: number): void;

  apply(x: Float32Array, y: Float32Array, n: number): void {
    checkApplyShape(this.kernel, x, y, n, this.outFeatures, this.inFeatures);
    if (n > 1) {
      this.applyBatch(x, y, n);
      return;
    }
    const { x: xv, y: yv } = this.vectors1.of(x, y);
    const yStaged = this.oneVector(xv, yv);
    yv.written(this.views.f32, 0, this.outFeatures, yStaged); // (the calls do not grow the memory: the view is current)
  }

  /**
   * `apply(x, y, 1)`'s wasm calls on one thread (the same functions, arguments and order; with a pool on the
   * arena too: a decode program runs on one thread), for a decode plan; undefined where that call would do more
   * than its wasm calls: x / y staged through scratch (not views of the arena, x needing padding: in % 8 ≠ 0,
   * or y overlapping x).
   */
  decodeCalls(x: Float32Array, y: Float32Array): DecodeCall[] | undefined {
    if (x.length < this.inFeatures || y.length < this.outFeatures) return undefined;
    const { x: xv, y: yv } = this.vectors1.of(x, y);
    if (!xv.inPlace || !yv.inPlace) return undefined;
    return recordCalls((call) => this.oneVector(xv, yv, call));
  }
}

interface Stages {
  vBits: 4 | 8;
  uBits: 4 | 8;
  buildV: Fn;
  dotV: Fn;
  buildU: Fn;
  dotU: Fn;
  /** Four lanes only: the function that runs whole chunks of 4-token blocks with these stages (emitBlocks). */
  blocks?: Fn;
}

class WasmLittleBitLinear extends SignTableLinear {
  private readonly rank: number;
  private readonly padR: number;
  private readonly paths: PathPlan[];
  /** The f16 scales of all paths (scalesF16) in the arena, and their count (halves, a multiple of 8). */
  private readonly scalesAt: number;
  private readonly scaleCount: number;
  private readonly widen: Fn;
  private readonly ones: number;
  private readonly fn: Record<string, Fn>;
  /** The two stages' table kinds and functions, for one vector (n = 1) and for blocks of four. */
  private readonly stages1: Stages;
  private readonly stages4: Stages;

  constructor(arena: WasmArena, p: LittleBitParams, tiling: LittleBitTiling) {
    super(arena, p.rows, p.cols, 'littlebit');
    this.rank = p.rank;
    this.padR = up8(p.rank);
    // ONE allocation: the f16 scales (whole 8-half blocks), then each path's V and U sign rows (read byte by
    // byte, nothing past a row: no padding after them) — per-array alignment and padding would be ~10% of a
    // 64-row matrix's bytes
    const { halves, block } = scalesF16(p, this.padIn);
    const nbIn = this.padIn / 8;
    const nbR = this.padR / 8;
    const signs = p.paths.map((path) => [
      byteAlignedRows(path.vSigns, p.rank, p.cols).subarray(0, p.rank * nbIn),
      byteAlignedRows(path.uSigns, p.rows, p.rank).subarray(0, p.rows * nbR),
    ]);
    const all = new Uint8Array(halves.byteLength + signs.reduce((s, [v, u]) => s + v!.length + u!.length, 0));
    all.set(new Uint8Array(halves.buffer), 0);
    let off = halves.byteLength;
    const offsets = signs.map(([v, u]) => {
      all.set(v!, off);
      all.set(u!, off + v!.length);
      const at = off;
      off += v!.length + u!.length;
      return [at, at + v!.length] as const;
    });
    this.scalesAt = storeBytes(arena, all, 0);
    this.scaleCount = halves.length;
    this.paths = offsets.map(([v, u], i) => ({
      vBytes: this.scalesAt + v,
      uBytes: this.scalesAt + u,
      g: 4 * i * block,
      l: 4 * (i * block + this.padIn),
      h: 4 * (i * block + this.padIn + p.rank),
    }));
    this.ones = onesVector(arena, this.padR);
    this.fn = signTableFunctions(arena);
    this.widen = widenFunction(this.fn, halves);
    this.stages1 = this.stages(tiling, 1);
    this.stages4 = this.stages(tiling, 4);
  }

  /** Table kind per stage (8: byte, 4: nibble) and its functions; U's lookups straight-line for short rows. */
  private stages(tiling: LittleBitTiling, lanes: 1 | 4): Stages {
    const vBits = tableBits(tiling, this.rank, this.inFeatures, lanes);
    const uBits = tableBits(tiling, this.outFeatures, this.rank, lanes);
    const nbR = this.padR / 8;
    const fn = (name: string) => this.fn[name]!;
    const dotU = uBits === 8 && nbR <= SHORT_ROW_BYTES ? `dot${lanes}_8_nb${nbR}` : `dot${lanes}_${uBits}`;
    return {
      vBits,
      uBits,
      buildV: fn(`build${lanes}_${vBits}`),
      dotV: fn(`dot${lanes}_${vBits}`),
      buildU: fn(`build${lanes}_${uBits}`),
      dotU: fn(dotU),
      ...(lanes === 4 ? { blocks: fn(blocksName(vBits, uBits, dotU)) } : {}),
    };
  }

  /** n > 1: blocks of 4 tokens, one thread or several (the same calls either way; runBlocks). */
  protected applyBatch(x: Float32Array, y: Float32Array, n: number): void {
    const { arena, views, paths, ones, rank, padIn, padR, scalesAt, scaleCount, widen } = this;
    const { x: xv, y: yv } = this.vectorsN.of(x, y);
    const st = this.stages4;
    runBlocks(
      {
        arena,
        views,
        inF: this.inFeatures,
        padIn,
        out: this.outFeatures,
        w4Bytes: padR * 16,
        tableBytes: this.tableBytes(st, 4),
        ownBytes: 4 * scaleCount,
        run: st.blocks!,
        blockNs: (blockStageNs(rank, padIn, st.vBits) + blockStageNs(this.outFeatures, padR, st.uBits)) * paths.length,
        fill: (i32, sAt) => {
          // the scales widened once per call (every block reads them)
          widen(scalesAt, sAt, scaleCount);
          i32.set([rank, padR, ones, paths.length], BLOCKS_DESC.rank);
          paths.forEach((path, i) => i32.set([sAt + path.g, path.vBytes, sAt + path.l, path.uBytes, sAt + path.h], BLOCKS_PATH.at + BLOCKS_PATH.words * i));
        },
        // w4's padding lanes (ranks r..padR) stay 0, as in apply
        initSlot: (f32, slotAt) => {
          const w4 = (slotAt + padIn * 16) / 4;
          f32.fill(0, w4 + 4 * rank, w4 + 4 * padR);
        },
      },
      xv,
      yv,
      n,
    );
  }

  /** Scratch bytes of one stage set's tables (the larger of the V and U stages', `lanes` vectors). */
  private tableBytes(st: Stages, lanes: 1 | 4): number {
    const entry = 4 * lanes;
    return Math.max((this.padIn / st.vBits) * (1 << st.vBits) * entry, (this.padR / st.uBits) * (1 << st.uBits) * entry);
  }

  /**
   * One vector: x (staged into scratch with its padding unless read in place) → y, all paths; returns the
   * scratch address y was written to when staged (for `written`). x and y that are views of the arena (the
   * forward's activations) are read / written in place — x only when it needs no padding: the V tables read
   * whole groups of 8 inputs, zeros past `in`. Every wasm call goes through `record` when given (a decode plan:
   * one thread), else runs here, the dot stages split over the arena's pool (splitDot).
   */
  protected oneVector(xv: ArenaVector, yv: ArenaVector, record?: RowCall): number {
    const { arena, padIn, padR, rank, inFeatures: inF, outFeatures: out } = this;
    const st = this.stages1;
    const xBytes = xv.stageBytes(padIn);
    const yBytes = yv.stageBytes(out);
    const wBytes = padR * 4;
    const sBytes = 4 * this.scaleCount;
    const at = arena.scratch(sBytes + xBytes + yBytes + wBytes + this.tableBytes(st, 1));
    const sAt = at; // the widened scales (16-byte aligned: each path's g too)
    const xAt = xv.read(this.views.refresh().f32, 0, inF, at + sBytes, padIn - inF);
    const wAt = at + sBytes + xBytes;
    const yAt = yv.target(0, wAt + wBytes);
    const tAt = wAt + wBytes + yBytes;
    const call = record ?? directCall;
    call(this.widen, this.scalesAt, sAt, this.scaleCount);
    // w's padding (ranks rank..padR) is read by the U tables as zeros; scratch is shared, so zero it every call
    if (padR > rank) call(arena.zeroBytes, wAt + 4 * rank, 4 * (padR - rank));
    const { vBits: vB, uBits: uB, buildV, dotV, buildU, dotU } = st;
    this.paths.forEach((path, i) => {
      call(buildV, xAt, sAt + path.g, padIn / vB, tAt);
      splitDot(arena, dotV, path.vBytes, rank, padIn / 8, tAt, sAt + path.l, wAt, 0, vB, record);
      call(buildU, wAt, this.ones, padR / uB, tAt);
      splitDot(arena, dotU, path.uBytes, out, padR / 8, tAt, sAt + path.h, yAt, i > 0 ? 1 : 0, uB, record);
    });
    return wAt + wBytes;
  }
}

/** One kernel's batch through its `blocks` function (runBlocks). */
export interface BlockBatch {
  arena: WasmArena;
  views: HeapViews;
  inF: number;
  padIn: number;
  out: number;
  /** Bytes per slot of the kernel's intermediate vector between x4 and y4 (LittleBit's w4; 0: none). */
  w4Bytes: number;
  /** Bytes of the stage tables per slot. */
  tableBytes: number;
  /** Scratch bytes the kernel needs before the descriptor (its widened scales). */
  ownBytes: number;
  /** The blocks function (emitLittleBitBlocks / emitBinaryBlocks). */
  run: Fn;
  /** Estimated single-thread cost of one block (ns; the pool's threshold and chunk count). */
  blockNs: number;
  /** Fill the kernel's own descriptor words; `ownAt` is its scratch (widen its scales there). */
  fill: (i32: Int32Array, ownAt: number) => void;
  /** Prepare a slot's buffers once per call (LittleBit: w4's padding lanes stay 0). */
  initSlot?: (f32: Float32Array, slotAt: number) => void;
}

/**
 * A batch (n > 1) of a sign-table kernel, in blocks of 4 tokens: the descriptor written, then the blocks run as
 * chunks of the pool (the TOKEN BLOCKS are split: one block's dot stage is a few µs, under the pool's threshold)
 * or all on this thread; each chunk over buffers (a slot) of its own. x and y that are views of the arena (the
 * forward's activations) are read / written in place (xv, yv: the kernel's ArenaVectorPair), others are staged
 * whole. Every block is
 * computed by the same functions on the same inputs whatever the thread count (bit-identical;
 * packages/pipeline/test/threads.test.ts).
 */
export function runBlocks(k: BlockBatch, xv: ArenaVector, yv: ArenaVector, n: number): void {
  const { arena, inF, padIn, out } = k;
  const blocks = Math.ceil(n / 4);
  const xsBytes = xv.stageBytes(n * inF);
  const ysBytes = yv.stageBytes(n * out);
  const x4Bytes = padIn * 16;
  const y4Bytes = Math.ceil(out / 4) * 64;
  const slotBytes = x4Bytes + k.w4Bytes + y4Bytes + Math.ceil(k.tableBytes / 16) * 16;
  // one buffer set per chunk the pool may record (≤ 4 per thread), plus one for a run on this thread; without a
  // pool every block runs here, in one buffer set
  const slots = arena.threads ? 4 * arena.threads.threads + 2 : 1;
  const ownBytes = Math.ceil(k.ownBytes / 16) * 16;
  const at = arena.scratch(xsBytes + ysBytes + ownBytes + BLOCKS_DESC_BYTES + slots * slotBytes);
  const f32 = k.views.refresh().f32;
  const xs = xv.read(f32, 0, n * inF, at);
  const ys = yv.target(0, at + xsBytes);
  // the descriptor, written (and the kernel's scales widened) on this thread before any chunk is handed out
  const descAt = at + xsBytes + ysBytes + ownBytes;
  const i32 = new Int32Array(f32.buffer, descAt, BLOCKS_DESC_BYTES / 4);
  const d = BLOCKS_DESC;
  i32.set([xs, ys, n, inF, padIn, out, x4Bytes, k.w4Bytes, y4Bytes], d.xs);
  k.fill(i32, at + xsBytes + ysBytes);
  const slot0 = descAt + BLOCKS_DESC_BYTES;
  if (k.initSlot) for (let s = 0; s < slots; s++) k.initSlot(f32, slot0 + s * slotBytes);
  let slot = 0;
  splitRows(arena, blocks, blocks * k.blockNs, 1, (call, b0, b1) => {
    call(k.run, descAt, b0, b1, slot0 + Math.min(slot++, slots - 1) * slotBytes);
  });
  yv.written(k.views.refresh().f32, 0, n * out, at + xsBytes);
}

export interface WasmLittleBitOptions {
  /** Arena holding the parameters and the per-call scratch (default: the process-wide compressed arena). */
  arena?: WasmArena;
  /** Table-kind thresholds (for measurements; default DEFAULT_LITTLEBIT_TILING). */
  tiling?: LittleBitTiling;
}

/** The `littlebit` kernel in WebAssembly SIMD; the JS `littlebitKernel` where wasm SIMD is unavailable. */
export function wasmLittlebitKernel(p: LittleBitParams, options: WasmLittleBitOptions = {}): Linear {
  if (!compressedWasmAvailable()) return littlebitKernel(p);
  return withArena(options.arena, (arena) => new WasmLittleBitLinear(arena, p, options.tiling ?? DEFAULT_LITTLEBIT_TILING));
}
