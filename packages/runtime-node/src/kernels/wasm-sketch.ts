import type { DecodeCall, Linear } from '@ultrasketch/model';
import {
  type HashedNetsParams,
  MixedHashFamily,
  RowRunHashFamily,
  type SketchParams,
  hashedNetsFamily,
  sketchGroups,
} from '@ultrasketch/sketch-core';
import type { ArenaVector, WasmArena } from '../wasm/arena.js';
import { recordCalls } from '../wasm/decode-program.js';
import { ModuleBuilder, lanesSum } from '../wasm/emitter.js';
import { ArenaVectorPair, HeapViews, compressedWasmAvailable, kernelExports, memoryImport, storeBytes, withArena, checkApplyShape } from './wasm-common.js';
import { KFn, forRange, whileLtU } from './wasm-emit.js';
import { type RowCall, directCall, splitRows } from '../threads.js';
import { hashednetsKernel } from './hashednets.js';
import { sketchKernel } from './sketch.js';
import { wasmSignMeanSketchKernel } from './sketch-signmean.js';

/**
 * WebAssembly SIMD kernels of the `sketch` (AbsMaxMin) and `hashednets` codecs, f16 states
 * (docs/kernels.md). Same results as `sketchKernel` / `hashednetsKernel` up to float32 summation order.
 *
 * Per call:
 * 1. **Expand** every stored f16 state, once, into a 32-bit *key* in the arena's scratch:
 *        key = bits(|v| as float32) | (15 − k) << 1 | sign(v)
 *    A float32 made from an f16 has its low 13 mantissa bits zero, so they can carry the sketch row's
 *    priority (bits 1–4) and the sign (bit 0). Integer order of keys = order of |v|, ties broken toward the
 *    LOWEST sketch row k — exactly the codec's query (largest |candidate|, ties to the lowest k). So the
 *    abs-max over the d candidates of a weight is d − 1 `i32x4.max_s`, and the winner's value is
 *    (key & ~0x1fff) | key << 31: three more operations. The expansion costs O(states) per call — a few
 *    percent of the decode, which is O(d · weights) — and reads each stored byte once.
 *    For `rowrun` groups each sketch row is followed by a copy of its first runLength states, so every run
 *    of a row is ONE contiguous slice (no wrap-around split).
 * 2. **Decode and multiply**, row by row, never storing Ŵ: for 4 columns at a time, d contiguous `v128`
 *    loads (rowrun) or d hashed gathers (mixed: murmur3 fmix32 and Lemire's range reduction in i32x4 /
 *    i64x2, then four lane loads), d − 1 maxima, 3 ops to rebuild the float, then one multiply-add per input
 *    vector of the block (up to 8 vectors share each decoded weight). Runs whose length is not a multiple of
 *    4 end with one masked step. Channel groups: inputs are permuted into group order once per call, each
 *    group's kernel accumulates its columns' share into Y; exact groups are runs of `C` states at r · C.
 * The sums are float32 in 4 lanes per row (like the dense wasm kernel); kernel vs decode-then-dense stays
 * within the tests' 1e-5 relative tolerance.
 *
 * int8 and f32 states (research formats) use the JS kernel (`sketchKernel`).
 */

const MAX_T = 8;
const KEY_MASK = 0xffffe000 | 0;
const C2 = 0x1b873593;

/** f16 bits (zero-extended in an i32x4 on the stack) → keys; uses locals m (v128). */
function emitKeyFromHalf(f: KFn, h: number, m: number, prioV: number): void {
  // m = h & 0x7fff
  f.get(h).v128ConstI32(0x7fff).v128And().set(m);
  // subnormal: convert(m) · 2^-24 (exact); normal: (m << 13) + (112 << 23)
  f.get(m).f32x4ConvertI32x4S().v128ConstF32(2 ** -24).f32x4Mul();
  f.get(m).i32Const(13).i32x4Shl().v128ConstI32(112 << 23).i32x4Add();
  f.get(m).v128ConstI32(0x400).i32x4LtS();
  f.v128Bitselect();
  // | prio | sign
  f.get(prioV).v128Or();
  f.get(h).i32Const(15).i32x4ShrU().v128Or();
}

/** expand(src, dst, count, prio): dst[i] = key(f16 src[i]) for i < count, 8 at a time (writes ≤ 7 past). */
function emitExpand(): KFn {
  const f = new KFn(['i32', 'i32', 'i32', 'i32']);
  const [src, dst, count, prio] = [0, 1, 2, 3];
  const i = f.local('i32');
  const h8 = f.local('v128');
  const h = f.local('v128');
  const m = f.local('v128');
  const prioV = f.local('v128');
  f.get(prio).i32x4Splat().set(prioV);
  whileLtU(f, i, count, 8, () => {
    f.get(src).get(i).i32Const(1).i32Shl().i32Add().v128LoadA(0, 2).set(h8);
    f.get(dst).get(i).i32Const(2).i32Shl().i32Add(); // address for the two stores
    f.get(h8).i32x4ExtendLowI16x8U().set(h);
    emitKeyFromHalf(f, h, m, prioV);
    f.v128StoreA(0);
    f.get(dst).get(i).i32Const(2).i32Shl().i32Add();
    f.get(h8).i32x4ExtendHighI16x8U().set(h);
    emitKeyFromHalf(f, h, m, prioV);
    f.v128StoreA(16);
  });
  return f;
}

/** Push the float32 weights of key vector `v`: (v & ~0x1fff) | v << 31. */
function emitKeyToWeight(f: KFn, v: number): void {
  f.get(v).v128ConstI32(KEY_MASK).v128And();
  f.get(v).i32Const(31).i32x4Shl().v128Or();
}

/** Y[t, r] += lanes of acc[t] summed ((0 + 1) + (2 + 3)), t < T. */
function emitRowOut(f: KFn, T: number, acc: number[], yp: number, yStrideB: number, tmp: number): void {
  for (let t = 0; t < T; t++) {
    f.get(yp);
    if (t > 0) f.get(yStrideB).i32Const(t).i32Mul().i32Add();
    f.set(tmp);
    const a = acc[t]!;
    f.get(tmp);
    f.get(tmp).f32Load();
    lanesSum(f, a);
    f.f32Add();
    f.f32Store();
  }
}

/** mask = lanes [0, 1, 2, 3] < rem (rem = (lenB & 15) >> 2). */
function emitTailMask(f: KFn, lenB: number, mask: number): void {
  f.v128ConstI32(0, 1, 2, 3);
  f.get(lenB).i32Const(15).i32And().i32Const(2).i32ShrU().i32x4Splat();
  f.i32x4LtS().set(mask);
}

/**
 * Register tiling of the rowrun kernel, per block size T (input vectors sharing each decoded weight):
 * rows decoded together (independent add chains; each x load serves them all) and column steps per loop
 * iteration. Chosen by measurement (docs/kernels.md).
 */
export interface SketchTiling {
  rows: (T: number) => number;
  unroll: (T: number) => number;
  /**
   * Input vectors per block, at most 8 (default 8): n tokens run as ⌈n / tokens⌉ blocks, each reading the
   * states once for all its vectors. Every (row, token) sum runs in the same order whatever the block, so
   * the result does not depend on it.
   */
  tokens?: number;
}
export const DEFAULT_SKETCH_TILING: SketchTiling = {
  rows: (T) => (T === 2 || T === 3 ? 2 : 1),
  unroll: (T) => (T === 1 ? 2 : 1),
};
/**
 * Tiling of the raw (signmean) rowrun kernel: with no abs-max per weight a step is 1 state load per row and T
 * input loads per R·T multiply-adds. Blocks of at most 4 tokens × 2 rows (8 accumulators, 2 weights and the
 * input: 11 of the 16 vector registers) — the dense kernel's own largest tile; 8 tokens run as two blocks
 * over the same states, which stay in L1 (apply runs each group's blocks back to back). One token: 4 rows,
 * 2 column steps unrolled; 2 tokens: 2 rows, 2 steps. Measured at 1B shapes against the dense f32 kernel in
 * the same process (docs/sketch.md §10): at 512×2048, n = 8, the earlier 8-token × 4-row blocks (32
 * accumulators: spilled) ran 0.97× dense, this ~1.1×; n = 4 0.90× → 1.1×; n = 1 1.9× → 2.2×. Tried and
 * slower at n = 8: 8 tokens × 1–2 rows, 5–6 tokens × 2 rows, 4 tokens × 4 rows, and one fused call over all
 * groups' runs per row (one reduction per row instead of one per group, but the groups' states then
 * compete for L1: 1.03× vs 1.08× in the same run).
 */
export const RAW_SKETCH_TILING: SketchTiling = {
  rows: (T) => (T === 1 ? 4 : 2),
  unroll: (T) => (T <= 2 ? 2 : 1),
  tokens: 4,
};
const tilingKey = (t: SketchTiling) => Array.from({ length: tokensOf(t) }, (_, i) => `${t.rows(i + 1)}.${t.unroll(i + 1)}`).join(',');
function tokensOf(t: SketchTiling): number {
  const T = t.tokens ?? MAX_T;
  if (!Number.isInteger(T) || T < 1 || T > MAX_T) throw new RangeError(`sketch tiling: tokens ${T} (1..${MAX_T})`);
  return T;
}

/**
 * The input block of T vectors is stored chunk-major: for every 4 consecutive columns ("chunk") the T
 * vectors' 4 floats follow each other (16·T bytes per chunk), so one pointer and constant offsets reach
 * every token. Columns are cut into *pieces* — per channel group, per rowrun segment — each padded with
 * zero columns to whole chunks, so every run starts on a chunk.
 */

/**
 * rowrun_tT(keys, kStrideB, offs, rows, C, L, segs, x, y, yStrideB, tableRows): for every row r < rows, the
 * runs (r, s) of the D sketch rows read keys + k·kStrideB + 4·offs[(k·tableRows + r)·segs + s] for
 * len = min(L, C − s·L) columns; x is the group's first piece (offs and y may point at a range's first row). Rows in blocks of R (every row has the same run boundaries), then singly.
 */
function emitRowRun(D: number, T: number, tiling: SketchTiling, raw = false, offBytes: 2 | 4 = 4): KFn {
  if (raw && D !== 1) throw new RangeError('sketch raw rowrun: one sketch row per call');
  // offsets are Int32, or (raw kernels over rings of < 65536 states) Uint16: half the table, which on small
  // models is as large as the states themselves (docs/results.md §12.5)
  const offShift = offBytes === 2 ? 1 : 2;
  const U = tiling.unroll(T);
  const RB = tiling.rows(T);
  if (![1, 2, 4, 8].includes(RB) || ![1, 2, 4, 8].includes(U)) throw new RangeError(`sketch tiling: rows ${RB}, unroll ${U}`);
  const f = new KFn(Array(11).fill('i32'));
  const [keys, kStrideB, offs, rows, C, L, segs, x, y, yStrideB, tableRows] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const r = f.local('i32');
  const s = f.local('i32');
  const j = f.local('i32');
  const offRow = f.local('i32');
  const offP = f.local('i32');
  const remC = f.local('i32');
  const lenB = f.local('i32');
  const fullB = f.local('i32');
  const xs = f.local('i32');
  const px = f.local('i32');
  const yp = f.local('i32');
  const tmp = f.local('i32');
  const kOffB = f.local('i32');
  const rowOffB = f.local('i32');
  const blockEnd = f.local('i32');
  const keysK = Array.from({ length: D }, () => f.local('i32'));
  const p = Array.from({ length: RB * D }, () => f.local('i32')); // p[rr·D + k]: start of the run
  const ap = Array.from({ length: RB * D }, () => f.local('i32')); // p + j
  const acc = Array.from({ length: RB * T }, () => f.local('v128')); // acc[rr·T + t]
  const wSlot = Array.from({ length: RB }, () => f.local('v128'));
  const v = f.local('v128');
  const xv = f.local('v128');
  const mask = f.local('v128');

  // sketch row k's offsets follow k·tableRows·segs entries on (tableRows: all the matrix's rows, so a call can
  // cover any range of rows: offs and y then point at the range's first row)
  f.get(tableRows).get(segs).i32Mul().i32Const(offShift).i32Shl().set(kOffB);
  f.get(segs).i32Const(offShift).i32Shl().set(rowOffB);
  for (let k = 0; k < D; k++) f.get(keys).get(kStrideB).i32Const(k).i32Mul().i32Add().set(keysK[k]!);
  f.get(offs).set(offRow);
  f.get(y).set(yp);
  f.i32Const(0).set(r);

  const block = (R: number) => {
    const addresses = () => {
      for (let i = 0; i < R * D; i++) f.get(p[i]!).get(j).i32Add().set(ap[i]!);
    };
    /** One step of 4 columns: keys at ap + kOff, x of token t at px + xOff + 16·t. */
    const body = (masked: boolean, kOff: number, xOff: number) => {
      for (let rr = 0; rr < R; rr++) {
        f.get(ap[rr * D]!).v128LoadA(kOff);
        if (!raw) {
          // keys: abs-max over the D candidates, then the winner's float
          f.set(v);
          for (let k = 1; k < D; k++) f.get(v).get(ap[rr * D + k]!).v128LoadA(kOff).i32x4MaxS().set(v);
          emitKeyToWeight(f, v);
        }
        if (masked) f.get(mask).v128And();
        f.set(wSlot[rr]!);
      }
      for (let t = 0; t < T; t++) {
        f.get(px).v128LoadA(xOff + 16 * t, 16);
        if (masked) f.get(mask).v128And();
        f.set(xv);
        for (let rr = 0; rr < R; rr++) {
          const a = acc[rr * T + t]!;
          f.get(a).get(wSlot[rr]!).get(xv).f32x4Mul().f32x4Add().set(a);
        }
      }
    };
    for (const a of acc.slice(0, R * T)) f.v128Zero().set(a);
    f.get(offRow).set(offP);
    f.get(C).set(remC);
    f.get(x).set(xs);
    forRange(f, s, segs, () => {
      // len = min(L, remC) in bytes
      f.get(L).get(remC).get(L).get(remC).i32LtS().select().i32Const(2).i32Shl().set(lenB);
      for (let rr = 0; rr < R; rr++) {
        for (let k = 0; k < D; k++) {
          f.get(keysK[k]!);
          f.get(offP);
          if (k > 0) f.get(kOffB).i32Const(k).i32Mul().i32Add();
          if (rr > 0) f.get(rowOffB).i32Const(rr).i32Mul().i32Add();
          (offBytes === 2 ? f.i32Load16U() : f.i32Load()).i32Const(2).i32Shl().i32Add().set(p[rr * D + k]!);
        }
      }
      f.get(xs).set(px);
      f.i32Const(0).set(j);
      // U steps per iteration, then single steps, then one masked step
      if (U > 1) {
        f.get(lenB).i32Const(-16 * U).i32And().set(fullB);
        whileLtU(f, j, fullB, 16 * U, () => {
          addresses();
          for (let u = 0; u < U; u++) body(false, 16 * u, 16 * T * u);
          f.get(px).i32Const(16 * T * U).i32Add().set(px);
        });
      }
      f.get(lenB).i32Const(~15).i32And().set(fullB);
      whileLtU(f, j, fullB, 16, () => {
        addresses();
        body(false, 0, 0);
        f.get(px).i32Const(16 * T).i32Add().set(px);
      });
      f.get(lenB).i32Const(15).i32And().if_();
      addresses();
      emitTailMask(f, lenB, mask);
      body(true, 0, 0);
      f.end();
      // next piece: the padded length of this one, T vectors
      f.get(xs).get(lenB).i32Const(15).i32Add().i32Const(~15).i32And().i32Const(T).i32Mul().i32Add().set(xs);
      f.get(offP).i32Const(offBytes).i32Add().set(offP);
      f.get(remC).get(lenB).i32Const(2).i32ShrU().i32Sub().set(remC);
    });
    for (let rr = 0; rr < R; rr++) {
      emitRowOut(f, T, acc.slice(rr * T, rr * T + T), yp, yStrideB, tmp);
      f.get(yp).i32Const(4).i32Add().set(yp);
    }
    f.get(offRow).get(rowOffB).i32Const(R).i32Mul().i32Add().set(offRow);
    f.get(r).i32Const(R).i32Add().set(r);
  };
  // blocks of RB rows while they fit, then single rows
  if (RB > 1) {
    f.get(rows).i32Const(-RB).i32And().set(blockEnd); // rows − rows mod RB (RB a power of 2)
    f.block().get(r).get(blockEnd).i32GeS().brIf(0).loop();
    block(RB);
    f.get(r).get(blockEnd).i32LtS().brIf(0);
    f.end().end();
  }
  f.block().get(r).get(rows).i32GeS().brIf(0).loop();
  block(1);
  f.get(r).get(rows).i32LtS().brIf(0);
  f.end().end();
  return f;
}

/**
 * mixed_tT(keys, kStrideB, rowKeys, rows, C, width, x, y, yStrideB, tableRows): weight (r, c) reads, in sketch
 * row k, keys + k·kStrideB + 4·reduce(fmix32(rowKey[k·tableRows + r] ^ c·C2), width) —
 * MixedHashFamily.rowIndices; `rows` rows from rowKeys / y on (a range of the tableRows rows).
 */
function emitMixed(D: number, T: number): KFn {
  const f = new KFn(Array(10).fill('i32'));
  const [keys, kStrideB, rowKeys, rows, C, width, x, y, yStrideB, tableRows] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const r = f.local('i32');
  const j = f.local('i32');
  const rkP = f.local('i32');
  const lenB = f.local('i32');
  const fullB = f.local('i32');
  const px = f.local('i32');
  const yp = f.local('i32');
  const tmp = f.local('i32');
  const kRkB = f.local('i32');
  const baseV = Array.from({ length: D }, () => f.local('v128'));
  const rkV = Array.from({ length: D }, () => f.local('v128'));
  const acc = Array.from({ length: T }, () => f.local('v128'));
  const widthV = f.local('v128');
  const cm = f.local('v128');
  const h = f.local('v128');
  const g = f.local('v128');
  const v = f.local('v128');
  const w = f.local('v128');
  const xv = f.local('v128');
  const mask = f.local('v128');

  f.get(tableRows).i32Const(2).i32Shl().set(kRkB); // row keys are [d, tableRows]; rows may be a sub-range
  f.get(width).i32x4Splat().set(widthV);
  for (let k = 0; k < D; k++) f.get(keys).get(kStrideB).i32Const(k).i32Mul().i32Add().i32x4Splat().set(baseV[k]!);
  f.get(rowKeys).set(rkP);
  f.get(y).set(yp);
  f.get(C).i32Const(2).i32Shl().set(lenB);
  f.get(lenB).i32Const(~15).i32And().set(fullB);

  const body = (masked: boolean) => {
    for (let k = 0; k < D; k++) {
      // h = fmix32(rowKey ^ c·C2)
      f.get(rkV[k]!).get(cm).v128Xor().set(h);
      f.get(h).get(h).i32Const(16).i32x4ShrU().v128Xor().v128ConstI32(0x85ebca6b | 0).i32x4Mul().set(h);
      f.get(h).get(h).i32Const(13).i32x4ShrU().v128Xor().v128ConstI32(0xc2b2ae35 | 0).i32x4Mul().set(h);
      f.get(h).get(h).i32Const(16).i32x4ShrU().v128Xor().set(h);
      // index = (h · width) >> 32: the high words of the two 64-bit products
      f.get(h).get(widthV).i64x2ExtmulLowI32x4U();
      f.get(h).get(widthV).i64x2ExtmulHighI32x4U();
      f.i8x16Shuffle([4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31]);
      f.i32Const(2).i32x4Shl().get(baseV[k]!).i32x4Add().set(h); // key addresses
      f.get(h).i32x4ExtractLane(0).v128Load32Zero().set(g);
      for (let lane = 1; lane < 4; lane++) f.get(h).i32x4ExtractLane(lane).get(g).v128Load32Lane(lane).set(g);
      if (k === 0) f.get(g).set(v);
      else f.get(v).get(g).i32x4MaxS().set(v);
    }
    emitKeyToWeight(f, v);
    if (masked) f.get(mask).v128And();
    f.set(w);
    for (let t = 0; t < T; t++) {
      f.get(px).v128LoadA(16 * t, 16);
      if (masked) f.get(mask).v128And();
      f.set(xv);
      f.get(acc[t]!).get(w).get(xv).f32x4Mul().f32x4Add().set(acc[t]!);
    }
  };

  forRange(f, r, rows, () => {
    for (const a of acc) f.v128Zero().set(a);
    for (let k = 0; k < D; k++) {
      f.get(rkP);
      if (k > 0) f.get(kRkB).i32Const(k).i32Mul().i32Add();
      f.i32Load().i32x4Splat().set(rkV[k]!);
    }
    f.v128ConstI32(0, C2, Math.imul(2, C2), Math.imul(3, C2)).set(cm);
    f.get(x).set(px);
    f.i32Const(0).set(j);
    whileLtU(f, j, fullB, 16, () => {
      body(false);
      f.get(cm).v128ConstI32(Math.imul(4, C2)).i32x4Add().set(cm);
      f.get(px).i32Const(16 * T).i32Add().set(px);
    });
    f.get(lenB).i32Const(15).i32And().if_();
    emitTailMask(f, lenB, mask);
    body(true);
    f.end();
    emitRowOut(f, T, acc, yp, yStrideB, tmp);
    f.get(yp).i32Const(4).i32Add().set(yp);
    f.get(rkP).i32Const(4).i32Add().set(rkP);
  });
  return f;
}

/**
 * gather(x, idx, factor, P, cols, T, out): the input block of emitRowRun from T token rows at x (cols floats
 * each): out[(q & ~3)·T + 4t + (q & 3)] = factor[q] · x[t·cols + idx[q]] for q < P (P a multiple of 4) —
 * 4 lane loads, one multiply and one aligned store per chunk. The float32 product is the same rounding as
 * JS's double product stored to a Float32Array (a product of two float32 is exact in double). Padding
 * columns have idx 0 and factor 0 (the caller zeroes them after, keeping a non-finite x[0] out).
 */
function emitGather(): KFn {
  const f = new KFn(Array(7).fill('i32'));
  const [x, idx, factor, P, cols, T, out] = [0, 1, 2, 3, 4, 5, 6];
  const t = f.local('i32');
  const qb = f.local('i32');
  const pb = f.local('i32');
  const o = f.local('i32');
  const stepB = f.local('i32');
  const xt = f.local('v128');
  const a = f.local('v128');
  const g = f.local('v128');
  f.get(P).i32Const(2).i32Shl().set(pb);
  f.get(T).i32Const(4).i32Shl().set(stepB);
  forRange(f, t, T, () => {
    f.get(x).get(t).get(cols).i32Mul().i32Const(2).i32Shl().i32Add().i32x4Splat().set(xt);
    f.get(out).get(t).i32Const(4).i32Shl().i32Add().set(o);
    f.i32Const(0).set(qb);
    whileLtU(f, qb, pb, 16, () => {
      f.get(idx).get(qb).i32Add().v128LoadA(0).i32Const(2).i32x4Shl().get(xt).i32x4Add().set(a);
      f.get(a).i32x4ExtractLane(0).v128Load32Zero().set(g);
      for (let lane = 1; lane < 4; lane++) f.get(a).i32x4ExtractLane(lane).get(g).v128Load32Lane(lane).set(g);
      f.get(o);
      f.get(g).get(factor).get(qb).i32Add().v128LoadA(0).f32x4Mul();
      f.v128StoreA(0);
      f.get(o).get(stepB).i32Add().set(o);
    });
  });
  return f;
}

/**
 * gather16(x, idx, P, cols, T, out, mag): `gather` with a 2-byte table entry per column instead of 8 — the
 * source channel in bits 0–14, the factor's sign in bit 15, the factor's magnitude `mag` the same for every
 * column (signmean: ±1/d; exact groups 1 = 1/d when d = 1). factor = mag with the sign bit set by XOR: the
 * same float32 as the 8-byte table held, so the same products. Reads ≤ 6 bytes past the table (P is a
 * multiple of 4: whole 8-byte loads).
 */
function emitGather16(): KFn {
  const f = new KFn(['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f32']);
  const [x, idx, P, cols, T, out, mag] = [0, 1, 2, 3, 4, 5, 6];
  const t = f.local('i32');
  const q = f.local('i32');
  const o = f.local('i32');
  const stepB = f.local('i32');
  const xt = f.local('v128');
  const e = f.local('v128');
  const a = f.local('v128');
  const g = f.local('v128');
  const magV = f.local('v128');
  f.get(mag).f32x4Splat().set(magV);
  f.get(T).i32Const(4).i32Shl().set(stepB);
  forRange(f, t, T, () => {
    f.get(x).get(t).get(cols).i32Mul().i32Const(2).i32Shl().i32Add().i32x4Splat().set(xt);
    f.get(out).get(t).i32Const(4).i32Shl().i32Add().set(o);
    f.i32Const(0).set(q);
    whileLtU(f, q, P, 4, () => {
      f.get(idx).get(q).i32Const(1).i32Shl().i32Add().v128Load16x4U().set(e);
      f.get(e).v128ConstI32(0x7fff).v128And().i32Const(2).i32x4Shl().get(xt).i32x4Add().set(a);
      f.get(a).i32x4ExtractLane(0).v128Load32Zero().set(g);
      for (let lane = 1; lane < 4; lane++) f.get(a).i32x4ExtractLane(lane).get(g).v128Load32Lane(lane).set(g);
      f.get(o);
      f.get(g);
      f.get(e).i32Const(16).i32x4Shl().v128ConstI32(0x80000000 | 0).v128And(); // bit 15 → the sign bit
      f.get(magV).v128Xor();
      f.f32x4Mul();
      f.v128StoreA(0);
      f.get(o).get(stepB).i32Add().set(o);
    });
  });
  return f;
}

/**
 * widen8(src, dst, count, scale): dst[i] = float32(int8 src[i]) · scale, i < count, 8 states per step (reads
 * and writes ≤ 7 past count). float32(q) is exact and f32x4.mul rounds once, so each value has the bits of
 * the codec's Math.fround(q · scale) (the exact product of an int8 and an f16 scale fits a double).
 */
function emitWiden8(): KFn {
  const f = new KFn(['i32', 'i32', 'i32', 'f32']);
  const [src, dst, count, scale] = [0, 1, 2, 3];
  const i = f.local('i32');
  const q8 = f.local('v128');
  const sv = f.local('v128');
  f.get(scale).f32x4Splat().set(sv);
  const half = (high: boolean, offset: number) => {
    f.get(dst).get(i).i32Const(2).i32Shl().i32Add();
    f.get(q8);
    if (high) f.i32x4ExtendHighI16x8U();
    else f.i32x4ExtendLowI16x8U();
    f.i32Const(24).i32x4Shl().i32Const(24).i32x4ShrS(); // sign-extend the byte
    f.f32x4ConvertI32x4S().get(sv).f32x4Mul();
    f.v128StoreA(offset);
  };
  whileLtU(f, i, count, 8, () => {
    f.get(src).get(i).i32Add().v128Load8x8U().set(q8);
    half(false, 0);
    half(true, 16);
  });
  return f;
}

/**
 * The raw module (query signmean, sketch-signmean.ts): rowrun_tT over float32 states (no keys, no abs-max) —
 * a run of a row is a plain contiguous dot product with the (sign-scaled) inputs; rowrun16_tT the same with
 * Uint16 run offsets; widen8 makes the float32 ring of int8 states per call; gather / gather16 the inputs.
 */
function buildRawModule(tiling: SketchTiling = DEFAULT_SKETCH_TILING) {
  return (shared: boolean, maxPages: number) => {
    const m = new ModuleBuilder(memoryImport(shared, maxPages));
    for (let T = 1; T <= tokensOf(tiling); T++) {
      m.addFunction(`rowrun_t${T}`, emitRowRun(1, T, tiling, true));
      m.addFunction(`rowrun16_t${T}`, emitRowRun(1, T, tiling, true, 2));
    }
    m.addFunction('gather', emitGather());
    m.addFunction('gather16', emitGather16());
    m.addFunction('widen8', emitWiden8());
    return m;
  };
}

/** The raw module's functions, for the tests' WebAssembly.validate. */
export function emitRawSketchModule(tiling: SketchTiling = DEFAULT_SKETCH_TILING): Uint8Array {
  return buildRawModule(tiling)(false, 65536).emit();
}

function buildModule(D: number, tiling: SketchTiling = DEFAULT_SKETCH_TILING) {
  return (shared: boolean, maxPages: number) => {
    const m = new ModuleBuilder(memoryImport(shared, maxPages));
    m.addFunction('expand', emitExpand());
    m.addFunction('gather', emitGather());
    for (let T = 1; T <= tokensOf(tiling); T++) {
      m.addFunction(`rowrun_t${T}`, emitRowRun(D, T, tiling));
      m.addFunction(`mixed_t${T}`, emitMixed(D, T));
    }
    return m;
  };
}

/** The module's functions (by D), for the tests' WebAssembly.validate. */
export function emitSketchModule(D: number, tiling: SketchTiling = DEFAULT_SKETCH_TILING): Uint8Array {
  return buildModule(D, tiling)(false, 65536).emit();
}

type Fn = (...a: number[]) => void;

/** One group's decode plan. */
interface GroupPlan {
  /** raw: float32 states read as they are (query signmean; statesAt is their address, no keys). */
  kind: 'rowrun' | 'mixed' | 'exact' | 'raw';
  d: number;
  /** First column of the group's pieces in the padded input layout (a multiple of 4). */
  xOff: number;
  C: number;
  /** States per sketch row (exact: rows · C). */
  width: number;
  /** Run length (rowrun), C (exact). */
  L: number;
  segs: number;
  /** f16 states of sketch row 0 (byte address); row k at + 2·k·width. */
  statesAt: number;
  /** Keys per sketch row in scratch (entries), and this group's first key (entries from the keys base). */
  kStride: number;
  keysOff: number;
  /** rowrun/exact: Int32 offsets (raw: Uint16 when `off16`); mixed: Uint32 row keys [d, rows]. */
  tableAt: number;
  off16?: boolean;
  /**
   * raw groups of int8 states: the states as stored (byte address `at`, `count` of them) and their scale;
   * each call widens them (then the first `wrap` again) into the float32 ring at ringOff bytes from the
   * call's rings in scratch — statesAt is unused then.
   */
  q8?: { at: number; count: number; wrap: number; scale: number; ringOff: number };
  fns: Record<string, Fn>;
}

const fnsOf = (ex: Record<string, unknown>): Record<string, Fn> => ex as Record<string, Fn>;
const up4 = (v: number) => Math.ceil(v / 4) * 4;

interface GroupSpec {
  channels: Int32Array;
  family: RowRunHashFamily | MixedHashFamily | null;
  width: number;
  d: number;
  stateOffset: number;
}

/**
 * A run-structured group of float32 states read as they are (the signmean kernel's parts): `runs` rows ×
 * `segs` runs of ≤ L columns; run (r, s) reads ring[offsets[r · segs + s] + j]; `ring` already holds the
 * wrap-around copy (ring.length ≥ max offset + L). `scale[c]` multiplies input channel channels[c].
 * Instead of `ring`, `q8` may give int8 states as stored and their scale: ring[i] = fround(q[i] · scale) for
 * i < q.length, then ring[q.length + i] = ring[i] for i < wrap — the wasm kernel keeps the int8 bytes and
 * widens them per call into scratch (a float32 ring held for the session was 4× the stored states).
 */
export interface RawRunGroup {
  channels: Int32Array;
  ring?: Float32Array;
  q8?: { states: Int8Array; scale: number; wrap: number };
  offsets: Int32Array;
  L: number;
  segs: number;
  scale: Float32Array;
}

export class WasmSketchLinear implements Linear {
  readonly outFeatures: number;
  readonly inFeatures: number;
  private readonly plans: GroupPlan[] = [];
  /** Padded input layout: source channel of every column, −1 for padding. */
  private readonly src: Int32Array;
  /** Per padded column, the factor its input is multiplied by (raw groups' column signs), or null: all 1. */
  private readonly scl: Float32Array | null;
  /** writeInputs' gather (wasm) and its tables' addresses; the padding columns (zeroed after the gather). */
  private readonly gather: Fn;
  private readonly gatherAt: number;
  private readonly factorAt: number;
  private readonly pads: Int32Array;
  /** The padding columns as runs of consecutive ones, [first, count] pairs: one vector's zero_bytes calls. */
  private readonly padRuns: Int32Array;
  /** The layout is the identity followed by padding (one group, one piece). */
  private readonly identity: boolean;
  private readonly keysTotal: number;
  /** Bytes of the per-call float32 rings of int8 raw groups (in scratch after the keys). */
  private readonly ringsBytes: number;
  /** The raw module's gather16/widen8 (raw kernels only), and gather16's magnitude (null: the 8-byte gather). */
  private readonly gather16: Fn | undefined;
  private readonly widen8: Fn | undefined;
  private readonly gatherMag: number | null;
  /** Input vectors per block (the tiling's `tokens`). */
  private readonly maxT: number;
  private readonly expand: Fn;
  private readonly views: HeapViews;
  /** x and y of the last call, in place or staged (decided once per pair of arrays). */
  private readonly vectors: ArenaVectorPair;
  /**
   * Estimated single-thread ns per weight and input vector (docs/kernels.md, Gweights/s at 1B shapes): rowrun
   * ~0.1 per sketch row, the hashed gathers of mixed/hashednets ~1.3 per sketch row.
   */
  private readonly nsPerWeight: number;

  constructor(
    readonly arena: WasmArena,
    rows: number,
    cols: number,
    groups: GroupSpec[],
    states: Uint16Array,
    tiling: SketchTiling = DEFAULT_SKETCH_TILING,
    rawGroups: RawRunGroup[] = [],
  ) {
    this.outFeatures = rows;
    this.inFeatures = cols;
    this.views = new HeapViews(arena);
    this.vectors = new ArenaVectorPair(arena);
    const statesAt = groups.length > 0 ? storeBytes(arena, states, 32) : 0;
    const tk = tilingKey(tiling);
    const src: number[] = [];
    const scl: number[] = [];
    let keysOff = 0;
    let ringsBytes = 0;
    const rawFns = rawGroups.length > 0 ? fnsOf(kernelExports(arena, `sketch-raw|${tk}`, buildRawModule(tiling))) : undefined;
    for (const g of rawGroups) {
      const C = g.channels.length;
      const xOff = src.length;
      for (let c0 = 0; c0 < C; c0 += g.L) {
        const len = Math.min(g.L, C - c0);
        for (let i = 0; i < up4(len); i++) {
          src.push(i < len ? g.channels[c0 + i]! : -1);
          scl.push(i < len ? g.scale[c0 + i]! : 0);
        }
      }
      const ringLength = g.q8 ? g.q8.states.length + g.q8.wrap : g.ring!.length;
      // every offset is < ringLength: Uint16 when the ring is shorter than 2^16
      const off16 = ringLength <= 0x10000;
      let q8: GroupPlan['q8'];
      if (g.q8) {
        // widen8 reads up to 7 bytes past the states and writes up to 7 floats past each of its two calls
        q8 = { at: storeBytes(arena, g.q8.states, 16), count: g.q8.states.length, wrap: g.q8.wrap, scale: g.q8.scale, ringOff: ringsBytes };
        ringsBytes += 4 * up4(ringLength + 8);
      }
      this.plans.push({
        kind: 'raw',
        d: 1,
        xOff,
        C,
        width: ringLength,
        L: g.L,
        segs: g.segs,
        statesAt: g.q8 ? 0 : storeBytes(arena, g.ring!, 32),
        kStride: 0,
        keysOff: 0,
        tableAt: storeBytes(arena, off16 ? Uint16Array.from(g.offsets) : g.offsets),
        off16,
        ...(q8 ? { q8 } : {}),
        fns: rawFns!,
      });
    }
    this.ringsBytes = ringsBytes;
    for (const g of groups) {
      const C = g.channels.length;
      const xOff = src.length;
      // the group's pieces: rowrun segments, or the whole group; each padded to whole chunks of 4
      const L = g.family instanceof RowRunHashFamily ? g.family.runLength : C;
      for (let c0 = 0; c0 < C; c0 += L) {
        const len = Math.min(L, C - c0);
        for (let i = 0; i < up4(len); i++) {
          src.push(i < len ? g.channels[c0 + i]! : -1);
          scl.push(1);
        }
      }
      const base = { xOff, C, statesAt: statesAt + 2 * g.stateOffset, keysOff };
      let plan: GroupPlan;
      if (!g.family) {
        const offs = Int32Array.from({ length: rows }, (_, r) => r * C);
        const fns = fnsOf(kernelExports(arena, `sketch-d1|${tk}`, buildModule(1, tiling)));
        plan = { ...base, kind: 'exact', d: 1, width: rows * C, L: C, segs: 1, kStride: rows * C + 8, tableAt: storeBytes(arena, offs), fns };
      } else if (g.family instanceof RowRunHashFamily) {
        const fam = g.family;
        const fns = fnsOf(kernelExports(arena, `sketch-d${g.d}|${tk}`, buildModule(g.d, tiling)));
        const kStride = up4(g.width + fam.runLength + 8);
        plan = { ...base, kind: 'rowrun', d: g.d, width: g.width, L: fam.runLength, segs: fam.segments, kStride, tableAt: storeBytes(arena, fam.offsets), fns };
      } else {
        const fam = g.family;
        const rk = new Uint32Array(g.d * rows);
        for (let k = 0; k < g.d; k++) for (let r = 0; r < rows; r++) rk[k * rows + r] = fam.rowKey(r, k);
        const fns = fnsOf(kernelExports(arena, `sketch-d${g.d}|${tk}`, buildModule(g.d, tiling)));
        plan = { ...base, kind: 'mixed', d: g.d, width: g.width, L: C, segs: 1, kStride: up4(g.width + 8), tableAt: storeBytes(arena, rk), fns };
      }
      this.plans.push(plan);
      keysOff += plan.d * plan.kStride;
    }
    this.nsPerWeight = this.plans.reduce((m, g) => Math.max(m, g.d * (g.kind === 'mixed' ? 1.3 : 0.1)), 0);
    this.src = Int32Array.from(src);
    this.scl = scl.every((v) => v === 1) ? null : Float32Array.from(scl);
    // the gather's tables: source channel (padding: 0) and factor (scl; padding: 0), and the padding columns.
    // Raw kernels whose factors share one magnitude (signmean: ±1/d) and whose channels fit 15 bits store
    // both in 2 bytes per column (gather16) instead of 8: at stories3M that was 3% of the weights held.
    const mags = new Set(src.flatMap((c, i) => (c < 0 ? [] : [Math.abs(scl[i]!)])));
    this.gatherMag = rawFns && groups.length === 0 && mags.size === 1 && cols <= 0x8000 ? [...mags][0]! : null;
    if (this.gatherMag !== null) {
      this.gatherAt = storeBytes(arena, Uint16Array.from(src, (c, i) => (c < 0 ? 0 : c | (scl[i]! < 0 || Object.is(scl[i], -0) ? 0x8000 : 0))));
      this.factorAt = 0;
    } else {
      this.gatherAt = storeBytes(arena, Int32Array.from(src, (c) => Math.max(c, 0)));
      this.factorAt = storeBytes(arena, Float32Array.from(src, (c, i) => (c < 0 ? 0 : scl[i]!)));
    }
    this.gather16 = rawFns?.gather16;
    this.widen8 = rawFns?.widen8;
    this.pads = Int32Array.from(src.flatMap((c, i) => (c < 0 ? [i] : [])));
    const runs: number[] = [];
    for (const q of this.pads) {
      const last = runs.length - 1;
      if (last > 0 && runs[last - 1]! + runs[last]! === q) runs[last] = runs[last]! + 1;
      else runs.push(q, 1);
    }
    this.padRuns = Int32Array.from(runs);
    this.identity = this.scl === null && src.length === up4(cols) && src.every((c, i) => (i < cols ? c === i : c === -1));
    this.keysTotal = keysOff;
    this.maxT = tokensOf(tiling);
    const d1 = fnsOf(kernelExports(arena, `sketch-d1|${tk}`, buildModule(1, tiling)));
    this.expand = d1.expand!;
    this.gather = d1.gather!;
  }

  /** A kernel of raw run groups only (the signmean kernel, sketch-signmean.ts). */
  static raw(arena: WasmArena, rows: number, cols: number, rawGroups: RawRunGroup[], tiling?: SketchTiling): Linear {
    return new WasmSketchLinear(arena, rows, cols, [], new Uint16Array(0), tiling ?? RAW_SKETCH_TILING, rawGroups);
  }

  /**
   * Where one call's data sit: scratch as apply(x, y, n) asks for it (decodeCalls asks for the same bytes, so a
   * decode plan records the addresses the call itself uses), x's kernel layout, y's target, the keys, the staged
   * copy of x the gather reads, and the float32 rings of int8 raw groups.
   */
  private layout(n: number, x: Float32Array, xv: ArenaVector, yv: ArenaVector): CallLayout {
    const rows = this.outFeatures;
    const cols = this.inFeatures;
    const P = this.src.length;
    // The kernels read x in the padded, chunk-major layout of `src`, which the gather writes into scratch from x
    // as given (in place, or a copy of it in scratch); only one vector in the identity layout with no padding
    // (P = cols) is that layout already, and is read in place as is.
    const direct = n === 1 && this.identity && P === cols && xv.inPlace;
    const xBytes = direct ? 0 : n * P * 4;
    const yBytes = yv.stageBytes(n * rows);
    const rawBytes = n === 1 && this.identity ? 0 : xv.stageBytes(n * cols); // the gather's source
    const at = this.arena.scratch(xBytes + yBytes + this.keysTotal * 4 + rawBytes + this.ringsBytes);
    const yStage = at + xBytes;
    const keysAt = yStage + yBytes;
    const xRawStage = keysAt + this.keysTotal * 4;
    return { direct, xAt: direct ? x.byteOffset : at, yStage, yAt: yv.target(0, yStage), keysAt, xRawStage, ringsAt: xRawStage + rawBytes };
  }

  /** widen8 of int8 raw group g into its float32 ring in scratch (then the ring's start again). */
  private widen(call: RowCall, g: GroupPlan, ringsAt: number): void {
    const q = g.q8!;
    const dst = ringsAt + q.ringOff;
    call(this.widen8!, q.at, dst, q.count, q.scale);
    if (q.wrap > 0) call(this.widen8!, q.at, dst + 4 * q.count, q.wrap, q.scale);
  }

  /**
   * Everything a call does before the row-parallel product, on the calling thread: the rings of int8 raw groups
   * when a pool splits the rows (`preWiden`), the keys of f16 groups, y zeroed, and x in the kernels' layout.
   * Every wasm call goes through `call` (a direct call in apply; recorded in decodeCalls). The only JS-side
   * work left is for x outside the arena (its values copied in) and the padding of token blocks (n > 1): a call
   * that needs it has no decode plan.
   */
  private prologue(call: RowCall, n: number, at: CallLayout, x: Float32Array, xv: ArenaVector, preWiden: boolean): void {
    if (preWiden) for (const g of this.plans) if (g.q8) this.widen(call, g, at.ringsAt);
    const expand = this.expand;
    for (const g of this.plans) {
      if (g.kind === 'raw') continue; // float32 states, read as stored or widened
      const k0 = at.keysAt + 4 * g.keysOff;
      for (let k = 0; k < g.d; k++) {
        const src = g.statesAt + 2 * k * g.width;
        const dst = k0 + 4 * k * g.kStride;
        const prio = (15 - k) << 1;
        call(expand, src, dst, g.width, prio);
        if (g.kind === 'rowrun') call(expand, src, dst + 4 * g.width, g.L, prio); // the ring's start again
      }
    }
    call(this.arena.zeroBytes, at.yAt, 4 * n * this.outFeatures);
    if (at.direct) return;
    const cols = this.inFeatures;
    const P = this.src.length;
    // x as given, for the gather: where it is, or a copy in scratch; 0 for one vector outside the arena in the
    // identity layout (copied from x itself, below)
    const xRawAt = n === 1 && this.identity && !xv.inPlace ? 0 : xv.read(this.views.refresh().f32, 0, n * cols, at.xRawStage);
    const maxT = this.maxT;
    for (let t0 = 0; t0 < n; t0 += maxT) this.writeInputs(call, x, t0, Math.min(maxT, n - t0), at.xAt + t0 * P * 4, xRawAt);
  }

  /**
   * Write tokens [t0, t0 + T) of x at byte address `o`, chunk-major (see emitRowRun); x's n tokens are at byte
   * address xRawAt (0: one vector not in the arena, read from x). The wasm `gather` permutes and scales (the JS
   * loop it replaces, with a test per column, was ~13% of a signmean call at 512×2048, n = 8: docs/sketch.md §10).
   * One vector's padding is zeroed by zero_bytes calls (a few runs of 1-3 floats); a block's (T > 1: every
   * padding column once per token, 16 bytes apart) by JS, where a call per 1-3 floats would cost more.
   */
  private writeInputs(call: RowCall, x: Float32Array, t0: number, T: number, o: number, xRawAt: number): void {
    const cols = this.inFeatures;
    const P = this.src.length;
    if (T === 1 && this.identity) {
      if (xRawAt !== 0) call(this.arena.copyBytes, o, xRawAt + 4 * t0 * cols, 4 * cols);
      else this.views.refresh().f32.set(x.subarray(t0 * cols, t0 * cols + cols), o / 4);
    } else if (this.gatherMag !== null) call(this.gather16!, xRawAt + 4 * t0 * cols, this.gatherAt, P, cols, T, o, this.gatherMag);
    else call(this.gather, xRawAt + 4 * t0 * cols, this.gatherAt, this.factorAt, P, cols, T, o);
    if (T === 1) {
      const runs = this.padRuns;
      for (let i = 0; i < runs.length; i += 2) call(this.arena.zeroBytes, o + 4 * runs[i]!, 4 * runs[i + 1]!);
      return;
    }
    const f32 = this.views.refresh().f32;
    const pads = this.pads;
    for (let i = 0; i < pads.length; i++) {
      const q = pads[i]!;
      const d = o / 4 + (q & ~3) * T + (q & 3);
      for (let t = 0; t < T; t++) f32[d + 4 * t] = 0;
    }
  }

  apply(x: Float32Array, y: Float32Array, n: number): void {
    const rows = this.outFeatures;
    const cols = this.inFeatures;
    checkApplyShape('sketch', x, y, n, rows, cols);
    // x and y that are views of the arena (the forward's activations) are read/written where they are
    const { x: xv, y: yv } = this.vectors.of(x, y);
    const at = this.layout(n, x, xv, yv);
    // The float32 rings of int8 raw groups. With worker threads: all of them in the prologue, on the calling
    // thread, before the product may be split (the workers then read them like stored states). Without: each
    // just before its group's rows (product), so it is still in cache when read (8192×2048, n = 1,
    // bench/kernels-1b.mjs: 1.60 ms CPU widening all first — 4 MiB of rings written, then read back — vs
    // 1.37 ms; two runs at load 3.5–4).
    const preWiden = this.arena.threads !== undefined;
    this.prologue(directCall, n, at, x, xv, preWiden);
    // Rows split across threads at multiples of 8 (every row-block height divides 8): each row is computed
    // by one thread with the same block and the same group order as with one thread.
    splitRows(this.arena, rows, n * rows * cols * this.nsPerWeight, 8, (call, r0, r1) => this.product(call, r0, r1, n, at, preWiden));
    yv.written(this.views.refresh().f32, 0, n * rows, at.yStage);
  }

  /**
   * `apply(x, y, 1)`'s wasm calls on one thread (the same functions, arguments and order: prologue and product;
   * with a pool on the arena too — a decode program runs on one thread, so the int8 rings are widened per group,
   * as one thread does), for a decode plan; undefined where that call would do more than its wasm calls: x / y not
   * views of the arena (staged through scratch by JS copies), or y overlapping x.
   */
  decodeCalls(x: Float32Array, y: Float32Array): DecodeCall[] | undefined {
    if (x.length < this.inFeatures || y.length < this.outFeatures) return undefined;
    const { x: xv, y: yv } = this.vectors.of(x, y);
    if (!xv.inPlace || !yv.inPlace) return undefined;
    const at = this.layout(1, x, xv, yv);
    return recordCalls((call) => {
      this.prologue(call, 1, at, x, xv, false);
      this.product(call, 0, this.outFeatures, 1, at, false);
    });
  }

  /**
   * The product's calls for output rows [r0, r1) (apply's row-parallel body). Groups outer, token blocks inner: a
   * group's states (a few tens of KiB) stay in L1 for all its blocks. Each (row, token) still sums the groups in
   * plan order, so the order of the loops changes no bit.
   */
  private product(call: RowCall, r0: number, r1: number, n: number, at: CallLayout, preWiden: boolean): void {
    const rows = this.outFeatures;
    const P = this.src.length;
    const maxT = this.maxT;
    for (const g of this.plans) {
      if (g.q8 && !preWiden) this.widen(call, g, at.ringsAt); // one thread: this call is the whole product
      const k0 = g.q8 ? at.ringsAt + g.q8.ringOff : g.kind === 'raw' ? g.statesAt : at.keysAt + 4 * g.keysOff;
      for (let t0 = 0; t0 < n; t0 += maxT) {
        const T = Math.min(maxT, n - t0);
        const xa = at.xAt + t0 * P * 4;
        const ya = at.yAt + (t0 * rows + r0) * 4;
        const xg = xa + 4 * T * g.xOff;
        if (g.kind === 'mixed') call(g.fns[`mixed_t${T}`]!, k0, 4 * g.kStride, g.tableAt + 4 * r0, r1 - r0, g.C, g.width, xg, ya, rows * 4, rows);
        else if (g.off16) call(g.fns[`rowrun16_t${T}`]!, k0, 4 * g.kStride, g.tableAt + 2 * r0 * g.segs, r1 - r0, g.C, g.L, g.segs, xg, ya, rows * 4, rows);
        else call(g.fns[`rowrun_t${T}`]!, k0, 4 * g.kStride, g.tableAt + 4 * r0 * g.segs, r1 - r0, g.C, g.L, g.segs, xg, ya, rows * 4, rows);
      }
    }
  }
}

/** The scratch addresses of one call (WasmSketchLinear.layout). */
interface CallLayout {
  /** x for the kernels: the padded, chunk-major layout in scratch, or x itself (`direct`). */
  readonly direct: boolean;
  readonly xAt: number;
  /** y as the kernels write it (in place, or yStage). */
  readonly yAt: number;
  readonly yStage: number;
  readonly keysAt: number;
  /** A copy of x (as given) for the gather, when x is not in the arena. */
  readonly xRawStage: number;
  readonly ringsAt: number;
}

export interface WasmKernelOptions {
  /** Arena holding the parameters and the per-call scratch (default: the process-wide compressed arena). */
  arena?: WasmArena;
  /** Register tiling (for measurements; default DEFAULT_SKETCH_TILING). */
  tiling?: SketchTiling;
}

/**
 * The `sketch` kernel in WebAssembly SIMD (f16 states, any hash family, channel groups, exact groups);
 * int8/f32 states, or an engine without wasm SIMD, get the JS `sketchKernel`.
 */
export function wasmSketchKernel(p: SketchParams, options: WasmKernelOptions = {}): Linear {
  if (p.options.query === 'signmean') return wasmSignMeanSketchKernel(p, options);
  if (p.options.state !== 'f16' || !compressedWasmAvailable()) return sketchKernel(p);
  const groups: GroupSpec[] = sketchGroups(p).map((g) => ({
    channels: g.channels,
    family: g.family as RowRunHashFamily | MixedHashFamily | null,
    width: g.alloc.width,
    d: g.family ? g.family.depth : 1,
    stateOffset: g.stateOffset,
  }));
  for (const g of groups) {
    if (g.family && !(g.family instanceof RowRunHashFamily) && !(g.family instanceof MixedHashFamily)) return sketchKernel(p);
  }
  return withArena(options.arena, (arena) => new WasmSketchLinear(arena, p.rows, p.cols, groups, p.states as Uint16Array, options.tiling));
}

/** The `hashednets` kernel in WebAssembly SIMD (f16 states): the mixed path with one sketch row. */
export function wasmHashednetsKernel(p: HashedNetsParams, options: WasmKernelOptions = {}): Linear {
  if (!(p.states instanceof Uint16Array) || !compressedWasmAvailable()) return hashednetsKernel(p);
  const family = hashedNetsFamily(p);
  const channels = Int32Array.from({ length: p.cols }, (_, j) => j);
  const states = p.states;
  return withArena(
    options.arena,
    (arena) => new WasmSketchLinear(arena, p.rows, p.cols, [{ channels, family, width: states.length, d: 1, stateOffset: 0 }], states, options.tiling),
  );
}
