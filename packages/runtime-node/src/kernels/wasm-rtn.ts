import { type RtnParams, rtnGroupLength } from '@ultrasketch/baselines';
import { readCode } from '@ultrasketch/core';
import type { Linear } from '@ultrasketch/model';
import type { WasmArena } from '../wasm/arena.js';
import { ModuleBuilder, lanesSum } from '../wasm/emitter.js';
import { rtnKernel } from './rtn.js';
import { compressedWasmAvailable, kernelExports, memoryImport, storeBytes, withArena } from './wasm-common.js';
import { type BlockedLayout, BlockedWasmLinear } from './wasm-blocked.js';
import type { RowBody, RowCall } from '../threads.js';
import { KFn, forRange, whileLtU } from './wasm-emit.js';

/**
 * The `rtn` kernel in WebAssembly SIMD for 2-, 4- and 8-bit codes (3-bit codes use the JS `rtnKernel`):
 *
 *     y_r = Σ_groups ( scale_g · Σ_{j∈g} code_j x_j  +  offset_g · Σ_{j∈g} x_j )
 *
 * — the decoded weight offset + code · scale, regrouped so that the inner loop is code × x only. The group
 * sums of x are computed once per call (shared by every row); the codes of 16 bytes (a "chunk": 16·8/k codes)
 * are split into their 8/k bit planes (one shift and one mask per plane), widened to i32 and converted to
 * f32 (the codes are small integers: exact), multiplied by x and summed in float32 lanes per group, then
 * scaled. The inputs are permuted once per call to match the plane order (plane p of a chunk holds the
 * codes at columns ≡ p mod 8/k), so no shuffles are needed per weight. Up to 4 input vectors share each
 * decoded chunk.
 *
 * Codes are used in place when rows and groups fill whole chunks (cols and the group length multiples of
 * 16·8/k — every Llama shape with groups of 64); otherwise they are re-packed once, at construction, with each
 * group padded to whole chunks (padding codes meet zero inputs). Scales and offsets (f16) are converted to f32
 * in the per-call scratch by a SIMD routine, so the memory held stays the stored bytes.
 */

const MAX_T = 4;

/** half2float(src, dst, count): f16 bits → f32, 8 at a time (writes ≤ 7 past count); Inf/NaN preserved. */
function emitHalfToFloat(): KFn {
  const f = new KFn(['i32', 'i32', 'i32']);
  const [src, dst, count] = [0, 1, 2];
  const i = f.local('i32');
  const h8 = f.local('v128');
  const h = f.local('v128');
  const m = f.local('v128');
  const one = (half: 0 | 1) => {
    f.get(dst).get(i).i32Const(2).i32Shl().i32Add();
    f.get(h8);
    if (half === 0) f.i32x4ExtendLowI16x8U();
    else f.i32x4ExtendHighI16x8U();
    f.set(h);
    f.get(h).v128ConstI32(0x7fff).v128And().set(m);
    // subnormal: convert(m)·2^-24; normal: (m << 13) + (112 << 23), + another 112 << 23 for Inf/NaN
    f.get(m).f32x4ConvertI32x4S().v128ConstF32(2 ** -24).f32x4Mul();
    f.get(m).i32Const(13).i32x4Shl().v128ConstI32(112 << 23).i32x4Add();
    f.get(m).v128ConstI32(0x7bff).i32x4GtS().v128ConstI32(112 << 23).v128And().i32x4Add();
    f.get(m).v128ConstI32(0x400).i32x4LtS();
    f.v128Bitselect();
    f.get(h).i32Const(16).i32x4Shl().v128ConstI32(0x80000000 | 0).v128And().v128Or();
    f.v128StoreA(16 * half);
  };
  whileLtU(f, i, count, 8, () => {
    f.get(src).get(i).i32Const(1).i32Shl().i32Add().v128LoadA(0, 2).set(h8);
    one(0);
    one(1);
  });
  return f;
}

/** Single-thread cost per multiply-add of the rtn kernels (~5 Gweights/s at 1B shapes, docs/kernels.md). */
const RTN_NS_PER_MAC = 0.2;

/** Accumulators per input vector for a block of T (independent add chains when T is small). */
const accPer = (T: number) => (T === 1 ? 4 : T === 2 ? 2 : 1);

/**
 * rtn_k{k}_t{T}(codes, rows, rowBytes, gpr, cFull, cLast, scales, offsets, x, xsum, y, yStrideB).
 * x: per chunk, per slot s = 4p + i (plane p, 4 codes i), the T vectors' 4 floats (16·T bytes per slot);
 * xsum: per group, the T vectors' sums (one f32x4). scales/offsets: f32 [rows · gpr].
 */
function emitRtn(k: 2 | 4 | 8, T: number): KFn {
  const P = 8 / k;
  const A = accPer(T);
  const f = new KFn(Array(12).fill('i32'));
  const [codes, rows, rowBytes, gpr, cFull, cLast, scales, offsets, x, xsum, y, yStrideB] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  const r = f.local('i32');
  const g = f.local('i32');
  const c = f.local('i32');
  const nc = f.local('i32');
  const cp = f.local('i32');
  const px = f.local('i32');
  const pxs = f.local('i32');
  const sp = f.local('i32');
  const yp = f.local('i32');
  const tmp = f.local('i32');
  const lastG = f.local('i32');
  const acc = Array.from({ length: T * A }, () => f.local('v128')); // acc[t·A + a]
  const gacc = Array.from({ length: T * A }, () => f.local('v128'));
  const oacc = f.local('v128');
  const sv = f.local('v128');
  const v = f.local('v128');
  const plane = f.local('v128');
  const wide = f.local('v128');
  const fv = f.local('v128');

  f.get(gpr).i32Const(1).i32Sub().set(lastG);
  f.get(codes).set(cp);
  f.get(scales).set(sp);
  f.get(y).set(yp);
  forRange(f, r, rows, () => {
    for (const a of acc) f.v128Zero().set(a);
    f.v128Zero().set(oacc);
    f.get(x).set(px);
    f.get(xsum).set(pxs);
    forRange(f, g, gpr, () => {
      for (const a of gacc) f.v128Zero().set(a);
      f.get(cLast).get(cFull).get(g).get(lastG).i32Eq().select().set(nc);
      forRange(f, c, nc, () => {
        f.get(cp).v128LoadA(0, 16).set(v);
        let slot = 0;
        for (let p = 0; p < P; p++) {
          if (k === 8) f.get(v).set(plane);
          else {
            f.get(v);
            if (p > 0) f.i32Const(k * p).i16x8ShrU();
            f.i32Const((1 << k) - 1).i8x16Splat().v128And().set(plane);
          }
          for (let half = 0; half < 2; half++) {
            f.get(plane);
            if (half === 0) f.i16x8ExtendLowI8x16U();
            else f.i16x8ExtendHighI8x16U();
            f.set(wide);
            for (let q = 0; q < 2; q++, slot++) {
              f.get(wide);
              if (q === 0) f.i32x4ExtendLowI16x8U();
              else f.i32x4ExtendHighI16x8U();
              f.f32x4ConvertI32x4S().set(fv);
              for (let t = 0; t < T; t++) {
                const a = gacc[t * A + (slot % A)]!;
                f.get(a).get(fv).get(px).v128LoadA(16 * (slot * T + t), 16).f32x4Mul().f32x4Add().set(a);
              }
            }
          }
        }
        f.get(cp).i32Const(16).i32Add().set(cp);
        f.get(px).i32Const(16 * 4 * P * T).i32Add().set(px);
      });
      // acc += gacc · scale_g; oacc += offset_g · xsum_g
      f.get(sp).v128Load32Splat().set(sv);
      for (let i = 0; i < T * A; i++) f.get(acc[i]!).get(gacc[i]!).get(sv).f32x4Mul().f32x4Add().set(acc[i]!);
      f.get(oacc).get(sp).get(offsets).i32Add().get(scales).i32Sub().v128Load32Splat().get(pxs).v128LoadA(0, 16).f32x4Mul().f32x4Add().set(oacc);
      f.get(pxs).i32Const(16).i32Add().set(pxs);
      f.get(sp).i32Const(4).i32Add().set(sp);
    });
    // y[t][r] = Σ lanes of the token's accumulators + lane t of oacc
    for (let t = 0; t < T; t++) {
      f.get(yp);
      if (t > 0) f.get(yStrideB).i32Const(t).i32Mul().i32Add();
      f.set(tmp);
      for (let a = 1; a < A; a++) f.get(acc[t * A]!).get(acc[t * A + a]!).f32x4Add().set(acc[t * A]!);
      const s = acc[t * A]!;
      f.get(tmp);
      lanesSum(f, s);
      f.get(oacc).f32x4ExtractLane(t).f32Add();
      f.f32Store();
    }
    f.get(yp).i32Const(4).i32Add().set(yp);
    // (cp has advanced by exactly rowBytes: the next row's codes; sp by gpr scales)
  });
  return f;
}

/**
 * rtn_x{k}(x, cols, G, gpr, dst, strideB, xsum): one vector's inputs in the slot order `rtn_k{k}_t{T}` reads, and
 * its group sums (issue 12: this was a JS loop per call). Per group g (columns g·G .. g·G + len) and chunk c of
 * cc = 16·P columns, slot s = 4p + i (plane p, 4 codes i) gets in lane l the group's column c·cc + P·(4i + l) + p,
 * 0 past len; consecutive slots are strideB bytes apart (16·T: a block's T vectors interleaved per slot). The
 * values are copied as bits (i32 loads and stores). xsum + 16·g: the group's sum, accumulated in float64 in column
 * order and rounded to float32 once — the same bits as the JS loop's.
 */
function emitPermute(k: 2 | 4 | 8): KFn {
  const P = 8 / k;
  const cc = 16 * P;
  const f = new KFn(Array(7).fill('i32'));
  const [x, cols, G, gpr, dst, strideB, xsum] = [0, 1, 2, 3, 4, 5, 6];
  const g = f.local('i32');
  const c = f.local('i32');
  const nc = f.local('i32');
  const gx = f.local('i32');
  const xp = f.local('i32');
  const len = f.local('i32');
  const rem = f.local('i32');
  const dp = f.local('i32');
  const end = f.local('i32');
  const sum = f.local('f64');
  /** The chunk at xp into 4P slots from dp; `guarded`: only columns < rem are read, the others are 0. */
  const chunk = (guarded: boolean) => {
    for (let p = 0; p < P; p++) {
      for (let i = 0; i < 4; i++) {
        for (let l = 0; l < 4; l++) {
          const col = P * (4 * i + l) + p;
          if (guarded) {
            f.get(dp).i32Const(0).i32Store(4 * l);
            f.get(rem).i32Const(col).i32GtS().if_();
          }
          f.get(dp).get(xp).i32Load(4 * col).i32Store(4 * l);
          if (guarded) f.end();
        }
        f.get(dp).get(strideB).i32Add().set(dp);
      }
    }
  };
  f.get(dst).set(dp);
  forRange(f, g, gpr, () => {
    // gx = x + 4·g·G; len = min(G, cols − g·G); nc = ⌈len / cc⌉
    f.get(x).get(g).get(G).i32Mul().i32Const(2).i32Shl().i32Add().set(gx);
    f.get(cols).get(g).get(G).i32Mul().i32Sub().set(len);
    f.get(G).get(len).get(G).get(len).i32LtS().select().set(len);
    f.get(len).i32Const(cc - 1).i32Add().i32Const(Math.log2(cc)).i32ShrU().set(nc);
    f.get(gx).set(xp);
    f.get(len).set(rem);
    forRange(f, c, nc, () => {
      f.get(rem).i32Const(cc).i32GeS().if_();
      chunk(false);
      f.else_();
      chunk(true);
      f.end();
      f.get(xp).i32Const(4 * cc).i32Add().set(xp);
      f.get(rem).i32Const(cc).i32Sub().set(rem);
    });
    // the group's sum
    f.f64Const(0).set(sum);
    f.get(gx).set(xp);
    f.get(gx).get(len).i32Const(2).i32Shl().i32Add().set(end);
    whileLtU(f, xp, end, 4, () => {
      f.get(sum).get(xp).f32Load().f64PromoteF32().f64Add().set(sum);
    });
    f.get(xsum).get(g).i32Const(4).i32Shl().i32Add().get(sum).f32DemoteF64().f32Store();
  });
  return f;
}

function buildModule(shared: boolean, maxPages: number): ModuleBuilder {
  const m = new ModuleBuilder(memoryImport(shared, maxPages));
  m.addFunction('half2float', emitHalfToFloat());
  for (const k of [2, 4, 8] as const) {
    for (let T = 1; T <= MAX_T; T++) m.addFunction(`rtn_k${k}_t${T}`, emitRtn(k, T));
    m.addFunction(`rtn_x${k}`, emitPermute(k));
  }
  return m;
}

/** The module's bytes (for the tests' WebAssembly.validate). */
export function emitRtnModule(): Uint8Array {
  return buildModule(false, 65536).emit();
}

type Fn = (...a: number[]) => number | void;

/** Byte addresses of one call's scratch regions (see `scratchLayout`). */
interface Layout extends BlockedLayout {
  /** permuted inputs (TT vectors interleaved), group sums, f32 scales, f32 offsets; then staged y and x */
  xAt: number;
  xsAt: number;
  scAt: number;
  ofAt: number;
}

class WasmRtnLinear extends BlockedWasmLinear<Layout> {
  private readonly k: 2 | 4 | 8;
  private readonly gpr: number;
  private readonly G: number;
  private readonly cFull: number;
  private readonly cLast: number;
  private readonly rowBytes: number;
  private readonly codesAt: number;
  private readonly scalesAt: number;
  private readonly offsetsAt: number;
  /** Slot entries of one vector (chunks × 16·P: the permuted x, padding included). */
  private readonly slotEntries: number;
  private readonly fn: Record<string, Fn>;

  constructor(arena: WasmArena, p: RtnParams) {
    super(arena, p.rows, p.cols, 'rtn', MAX_T);
    const k = p.options.bits as 2 | 4 | 8;
    const { rows, cols } = p;
    this.k = k;
    const P = 8 / k;
    const cc = 16 * P; // codes per chunk
    const G = rtnGroupLength(p.options, cols);
    const gpr = Math.ceil(cols / G);
    const lenLast = cols - (gpr - 1) * G;
    this.G = G;
    this.gpr = gpr;
    this.cFull = Math.ceil(G / cc);
    this.cLast = Math.ceil(lenLast / cc);
    const chunksPerRow = (gpr - 1) * this.cFull + this.cLast;
    this.rowBytes = 16 * chunksPerRow;
    // slot layout of one row: chunk, plane p, 4 codes i → columns of byte b = 4i + q, plane p
    const src = new Int32Array(chunksPerRow * cc).fill(-1);
    let chunk = 0;
    for (let g = 0; g < gpr; g++) {
      const len = g === gpr - 1 ? lenLast : G;
      for (let c = 0; c < Math.ceil(len / cc); c++, chunk++) {
        for (let p2 = 0; p2 < P; p2++) {
          for (let b = 0; b < 16; b++) {
            const j = c * cc + P * b + p2; // column within the group
            // slot s = 4·p2 + ⌊b/4⌋, lane b % 4
            if (j < len) src[chunk * cc + (4 * p2 + (b >> 2)) * 4 + (b & 3)] = g * G + j;
          }
        }
      }
    }
    this.slotEntries = src.length;
    const inPlace = cols % cc === 0 && G % cc === 0;
    let bytes: Uint8Array;
    if (inPlace) bytes = p.codes;
    else {
      bytes = new Uint8Array(rows * this.rowBytes);
      for (let r = 0; r < rows; r++) {
        for (let q = 0; q < chunksPerRow; q++) {
          for (let s = 0; s < 4 * P; s++) {
            for (let l = 0; l < 4; l++) {
              const j = src[q * cc + 4 * s + l]!;
              if (j < 0) continue;
              const code = readCode(p.codes, r * cols + j, k);
              const p2 = s >> 2;
              const b = 4 * (s & 3) + l;
              const at = r * this.rowBytes + 16 * q + b;
              bytes[at] = bytes[at]! | (code << (k * p2));
            }
          }
        }
      }
    }
    this.codesAt = storeBytes(arena, bytes);
    this.scalesAt = storeBytes(arena, p.scales, 32);
    this.offsetsAt = storeBytes(arena, p.offsets, 32);
    this.fn = kernelExports(arena, 'rtn', buildModule) as Record<string, Fn>;
  }

  protected scratchLayout(TT: number, yBytes: number, stageBytes: number): Layout {
    const xBytes = this.slotEntries * 4 * TT;
    const xsBytes = this.gpr * 16;
    const sBytes = Math.ceil((this.outFeatures * this.gpr + 8) / 4) * 16; // half2float writes ≤ 7 past the count
    const xAt = this.arena.scratch(xBytes + xsBytes + 2 * sBytes + yBytes + stageBytes);
    const xsAt = xAt + xBytes;
    const scAt = xsAt + xsBytes;
    const ofAt = scAt + sBytes;
    const yAt = ofAt + sBytes;
    return { xAt, xsAt, scAt, ofAt, yAt, stageAt: yAt + yBytes };
  }

  /**
   * The serial calls: scales and offsets to f32, then each block's inputs permuted (rtn_x, reading x where it is)
   * and its group sums; the row-parallel call writes one float per row and vector, y rows apart.
   */
  protected run(
    call: RowCall,
    n: number,
    xIn: number,
    s: Layout,
    yTarget: (t0: number) => number,
    rowsOf: (work: number, body: RowBody) => void,
    written: (t0: number, T: number) => void,
  ): void {
    const { outFeatures: rows, inFeatures: cols, gpr, fn } = this;
    call(fn.half2float!, this.scalesAt, s.scAt, rows * gpr);
    call(fn.half2float!, this.offsetsAt, s.ofAt, rows * gpr);
    const permute = fn[`rtn_x${this.k}`]!;
    for (let t0 = 0; t0 < n; t0 += MAX_T) {
      const T = Math.min(MAX_T, n - t0);
      // inputs in slot order, T vectors interleaved per 4 lanes; group sums per vector, lane t of each group's
      // 16 bytes (lanes ≥ T: 0 — zeroed first when T < 4, the permutes then write lanes < T)
      if (T < MAX_T) call(this.arena.zeroBytes, s.xsAt, gpr * 16);
      for (let t = 0; t < T; t++) call(permute, xIn + 4 * (t0 + t) * cols, cols, this.G, gpr, s.xAt + 16 * t, 16 * T, s.xsAt + 4 * t);
      // rows are independent (row r: codes + r·rowBytes, scales/offsets + 4·r·gpr, y + 4r): split across threads
      const fnT = fn[`rtn_k${this.k}_t${T}`]!;
      const yRound = yTarget(t0);
      rowsOf(T * rows * cols * RTN_NS_PER_MAC, (c, r0, r1) =>
        c(fnT, this.codesAt + r0 * this.rowBytes, r1 - r0, this.rowBytes, gpr, this.cFull, this.cLast, s.scAt + 4 * r0 * gpr, s.ofAt + 4 * r0 * gpr, s.xAt, s.xsAt, yRound + 4 * r0, rows * 4),
      );
      written(t0, T);
    }
  }
}

/** The `rtn` kernel in WebAssembly SIMD (2, 4, 8 bits); 3-bit codes, or no wasm SIMD, get the JS `rtnKernel`. */
export function wasmRtnKernel(p: RtnParams, options: { arena?: WasmArena } = {}): Linear {
  if (p.options.bits === 3 || !compressedWasmAvailable()) return rtnKernel(p);
  return withArena(options.arena, (arena) => new WasmRtnLinear(arena, p));
}
