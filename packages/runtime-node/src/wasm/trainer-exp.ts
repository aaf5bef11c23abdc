/**
 * Row-wise exponentials for the STE trainer in WebAssembly SIMD (f32x4):
 *
 *     y[r, c] = exp(scale · x[r, c] − shift[r])      r < rows, c < cols   (row stride `cols`)
 *
 * — the soft-max over the vocabulary (the KD/CE losses), the causal soft-max of attention and SwiGLU's
 * sigmoid all reduce to it, and with Math.exp at ~13 ns a call (measured on this 2-core machine) they were a
 * sixth of a training step. The trainer installs it with `setExpKernel` (ste-trainer/src/ops.ts).
 *
 * How (standard range reduction, evaluated 4 lanes at a time): v = scale·x − shift clamped to
 * [−87.33, 88.0] (so 2^k stays a normal float32), k = nearest(v·log2 e), r = v − k·ln 2 ∈ [−½ ln 2, ½ ln 2]
 * (Cody–Waite, ln 2 split in two), e^r by its Taylor series to degree 7 in Horner form (truncation error
 * 0.347^8 / 8! ≈ 5e-9, below float32's 6e-8), and 2^k built directly as the float bits (k + 127) << 23.
 * Relative error a few float32 ulps of exp(v) for the float32 v (tested ≤ 1e-6; v itself is rounded to
 * float32, as any float32 computation of it is); a NaN input gives NaN; inputs below −87.33 give
 * 2^−126 ≈ 1.2e-38 instead of 0 or a subnormal (a soft-max sums them as 0 within float32 precision).
 * The last cols % 4 columns of each row are computed by the caller with Math.exp (see `expRows` below).
 *
 * Each thread makes its own instance over its TrainerMemory (shared with the trainer gemm): arrays in that
 * memory are used in place, others are copied in and results out, like the gemm's.
 */
import { FunctionBuilder, ModuleBuilder, lanesSum, whileLtU } from './emitter.js';
import { type WasmInstance, requireWasm } from './engine.js';
import { TRAINER_MEMORY_IMPORT, TrainerMemory, createFmaOrPlain } from './trainer-memory.js';

/** SIMD sub-opcodes used here that the shared emitter does not name (BinarySIMD.md, spec 2.0). */
export const SIMD_OPS = {
  f32x4_nearest: 0x6a,
  i32x4_shl: 0xab,
  i32x4_add: 0xae,
  f32x4_sub: 0xe5,
  f32x4_min: 0xe8,
  f32x4_max: 0xe9,
  // pseudo-min/max (b < a ? b : a, a < b ? b : a): one minps/maxps on x64, where f32x4.min/max need ~6
  // instructions for their NaN and ±0 rules; with the value as the first operand a NaN still comes through
  f32x4_pmin: 0xea,
  f32x4_pmax: 0xeb,
  i32x4_trunc_sat_f32x4_s: 0xf8,
  i32x4_splat: 0x11,
  i32x4_lt_s: 0x39,
  v128_and: 0x4e,
} as const;

/** The emitter's builder plus the few SIMD instructions the exponential needs (written as raw bytes). */
export class ExpBuilder extends FunctionBuilder {
  f32Sub(): this {
    this.code.push(0x93);
    return this;
  }
  f32Div(): this {
    this.code.push(0x95);
    return this;
  }
  f32Max(): this {
    this.code.push(0x97);
    return this;
  }
  /** f32x4.relaxed_madd (relaxed SIMD): pops a, b, c and pushes a·b + c (one fused instruction on x64 with FMA). */
  relaxedMadd(): this {
    this.code.push(0xfd, 0x85, 0x02);
    return this;
  }
  /** v128.const of four i32 lanes. */
  i32x4Const(lanes: readonly [number, number, number, number]): this {
    this.code.push(0xfd, 0x0c);
    for (const v of lanes) this.code.push(v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >>> 24) & 0xff);
    return this;
  }
  simdOp(sub: number): this {
    this.code.push(0xfd);
    // sub-opcodes are unsigned LEB128; all of these but the ones ≥ 0x80 fit one byte
    if (sub < 0x80) this.code.push(sub);
    else this.code.push((sub & 0x7f) | 0x80, sub >> 7);
    return this;
  }
}

const LOG2E = Math.LOG2E;
// ln 2 = LN2_HI + LN2_LO, LN2_HI with 9 significant bits (355/512), so k·LN2_HI is exact for |k| ≤ 2^15.
const LN2_HI = 0.693359375;
const LN2_LO = Math.LN2 - LN2_HI;
// Taylor coefficients of e^r = Σ r^i / i!, i = 0..7 (|r| ≤ ½ ln 2: truncation error 0.347^8 / 8! ≈ 5e-9).
const POLY = [1, 1, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040];
const LO = -87.33;
const HI = 88.0;

/**
 * Push exp(v) (4 lanes) for the v128 local `v` (clobbered), using locals k and p: clamp, Cody–Waite
 * reduction, degree-7 Horner, times 2^k built from its float bits.
 */
export function expV(f: ExpBuilder, v: number, k: number, p: number, fma = false): void {
  const splat = (value: number) => f.f32Const(value).f32x4Splat();
  f.get(v);
  splat(LO).simdOp(SIMD_OPS.f32x4_pmax); // pmax(v, LO): v unless v < LO (NaN stays NaN)
  splat(HI).simdOp(SIMD_OPS.f32x4_pmin); // pmin(v, HI): v unless HI < v
  f.set(v);
  // k = nearest(v·log2 e); r = v − k·ln2 in two parts (Cody–Waite: k·LN2_HI is exact in float32, so r
  // keeps full precision even where v·log2 e itself would have lost low bits)
  f.get(v).f32Const(LOG2E).f32x4Splat().f32x4Mul().simdOp(SIMD_OPS.f32x4_nearest).set(k);
  f.get(v).get(k).f32Const(LN2_HI).f32x4Splat().f32x4Mul().simdOp(SIMD_OPS.f32x4_sub);
  f.get(k).f32Const(LN2_LO).f32x4Splat().f32x4Mul().simdOp(SIMD_OPS.f32x4_sub).set(v);
  // p = Σ POLY[i] r^i (Horner)
  splat(POLY[7]!).set(p);
  // fma (the trainer's kernels where relaxed SIMD compiles): each Horner step one fused multiply-add, rounded
  // once instead of twice — as accurate or more, and fixed for a machine like the gemm's
  if (fma) for (let i = 6; i >= 0; i--) f.get(p).get(v).f32Const(POLY[i]!).f32x4Splat().relaxedMadd().set(p);
  else for (let i = 6; i >= 0; i--) f.get(p).get(v).f32x4Mul().f32Const(POLY[i]!).f32x4Splat().f32x4Add().set(p);
  // p · bits((int(k) + 127) << 23)
  f.get(p);
  f.get(k).simdOp(SIMD_OPS.i32x4_trunc_sat_f32x4_s).i32Const(127).simdOp(SIMD_OPS.i32x4_splat).simdOp(SIMD_OPS.i32x4_add);
  f.i32Const(23).simdOp(SIMD_OPS.i32x4_shl);
  f.f32x4Mul();
}


/**
 * The row loop of both causal soft-max emitters, over [rows, L] at byte address sp: row r (at byte address rp)
 * is position t = r mod L of its sequence, and `body` sees valid = (t + 1)·4, the row's bytes at p ≤ t, and
 * full = valid rounded down to whole vectors. Sets rowBytes = 4L and sc = splat(scale) first.
 */
function causalRowLoop(
  f: ExpBuilder,
  l: { sp: number; rows: number; L: number; scale: number; r: number; t: number; rp: number; rowBytes: number; valid: number; full: number; sc: number },
  body: () => void,
): void {
  f.get(l.L).i32Const(2).i32Shl().set(l.rowBytes);
  f.get(l.scale).f32x4Splat().set(l.sc);
  f.get(l.sp).set(l.rp);
  f.i32Const(0).set(l.t);
  f.i32Const(0).set(l.r);
  whileLtU(f, l.r, l.rows, 1, () => {
    f.get(l.t).i32Const(1).i32Add().i32Const(2).i32Shl().set(l.valid); // (t + 1)·4 bytes
    f.get(l.valid).i32Const(~15).i32And().set(l.full);
    body();
    f.get(l.rp).get(l.rowBytes).i32Add().set(l.rp);
    // t = (t + 1) mod L
    f.get(l.t).i32Const(1).i32Add().set(l.t);
    f.block().get(l.t).get(l.L).i32LtU().brIf(0).i32Const(0).set(l.t).end();
  });
}

/** The row's whole vectors (bytes [0, end) at rp, c counting from 0) times the v128 local `v`, in place. */
function emitScaleVectors(f: ExpBuilder, rp: number, c: number, end: number, v: number): void {
  f.i32Const(0).set(c);
  whileLtU(f, c, end, 16, () => {
    f.get(rp).get(c).i32Add().get(rp).get(c).i32Add().v128Load().get(v).f32x4Mul().v128Store();
  });
}

/**
 * A causal soft-max row's shift (both emitters): mx = the max of the row's first `valid` bytes (whole vectors up
 * to `full`, then one value at a time), and sh = splat(mx · scale).
 */
function emitCausalRowMax(
  f: ExpBuilder,
  l: { rp: number; c: number; full: number; valid: number; vmax: number; mx: number; scale: number; sh: number },
): void {
  f.f32Const(-Infinity).f32x4Splat().set(l.vmax);
  f.i32Const(0).set(l.c);
  whileLtU(f, l.c, l.full, 16, () => {
    f.get(l.vmax).get(l.rp).get(l.c).i32Add().v128Load().simdOp(SIMD_OPS.f32x4_max).set(l.vmax);
  });
  f.get(l.vmax).f32x4ExtractLane(0).get(l.vmax).f32x4ExtractLane(1).f32Max();
  f.get(l.vmax).f32x4ExtractLane(2).get(l.vmax).f32x4ExtractLane(3).f32Max().f32Max().set(l.mx);
  whileLtU(f, l.c, l.valid, 4, () => {
    f.get(l.mx).get(l.rp).get(l.c).i32Add().f32Load().f32Max().set(l.mx);
  });
  f.get(l.mx).get(l.scale).f32Mul().f32x4Splat().set(l.sh);
}

/** exp(x · sc − sh) over a row's whole vectors (bytes [0, full)), stored in place and summed into vsum. */
function emitExpFullVectors(
  f: ExpBuilder,
  l: { rp: number; c: number; full: number; sc: number; sh: number; v: number; k: number; p: number; vsum: number },
  fma: boolean,
): void {
  f.v128Zero().set(l.vsum);
  f.i32Const(0).set(l.c);
  whileLtU(f, l.c, l.full, 16, () => {
    f.get(l.rp).get(l.c).i32Add().v128Load().get(l.sc).f32x4Mul().get(l.sh).simdOp(SIMD_OPS.f32x4_sub).set(l.v);
    expV(f, l.v, l.k, l.p, fma);
    f.set(l.v);
    f.get(l.rp).get(l.c).i32Add().get(l.v).v128Store();
    f.get(l.vsum).get(l.v).f32x4Add().set(l.vsum);
  });
}

/**
 * softmax_causal(s, rows, L, scale): in place over [rows, L] (byte address s); row r is position t = r mod L of
 * its sequence: s[r, p] = exp(scale·s[r, p] − m) / Σ_{p' ≤ t} exp(…) for p ≤ t (m = scale · max_{p ≤ t} s[r, p])
 * and 0 for p > t. Attention's causal soft-max over stacked heads; sums in float32 (4 lanes, then pairwise).
 */
function emitSoftmaxCausal(fma: boolean): FunctionBuilder {
  const f = new ExpBuilder(['i32', 'i32', 'i32', 'f32']);
  const [sp, rows, L, scale] = [0, 1, 2, 3];
  const r = f.local('i32');
  const t = f.local('i32');
  const c = f.local('i32');
  const rp = f.local('i32');
  const rowBytes = f.local('i32');
  const valid = f.local('i32');
  const full = f.local('i32');
  const mx = f.local('f32');
  const sumS = f.local('f32');
  const inv = f.local('f32');
  const e = f.local('f32');
  const vmax = f.local('v128');
  const vsum = f.local('v128');
  const sh = f.local('v128');
  const sc = f.local('v128');
  const v = f.local('v128');
  const k = f.local('v128');
  const p = f.local('v128');
  causalRowLoop(f, { sp, rows, L, scale, r, t, rp, rowBytes, valid, full, sc }, () => {
    emitCausalRowMax(f, { rp, c, full, valid, vmax, mx, scale, sh });
    // exponentials, summed
    emitExpFullVectors(f, { rp, c, full, sc, sh, v, k, p, vsum }, fma);
    f.f32Const(0).set(sumS);
    whileLtU(f, c, valid, 4, () => {
      // one value through the vector code (splat, exp, lane 0)
      f.get(rp).get(c).i32Add().f32Load().f32x4Splat().get(sc).f32x4Mul().get(sh).simdOp(SIMD_OPS.f32x4_sub).set(v);
      expV(f, v, k, p, fma);
      f.f32x4ExtractLane(0).set(e);
      f.get(rp).get(c).i32Add().get(e).f32Store();
      f.get(sumS).get(e).f32Add().set(sumS);
    });
    // inv = 1 / (lanes + tail); normalise p ≤ t
    f.f32Const(1);
    lanesSum(f, vsum);
    f.get(sumS).f32Add().f32Div().set(inv);
    f.get(inv).f32x4Splat().set(v);
    emitScaleVectors(f, rp, c, full, v);
    whileLtU(f, c, valid, 4, () => {
      f.get(rp).get(c).i32Add().get(rp).get(c).i32Add().f32Load().get(inv).f32Mul().f32Store();
    });
    // zeros after t
    whileLtU(f, c, rowBytes, 4, () => {
      f.get(rp).get(c).i32Add().f32Const(0).f32Store();
    });
  });
  return f;
}

/**
 * softmax_causal4(s, rows, L, scale): softmax_causal for L a multiple of 4 (attention's usual case), with
 * fewer instructions per row: the last, partial vector of p ≤ t goes through the vector exponential once,
 * its lanes after t zeroed by a mask (instead of one exponential per remaining value through the vector
 * code), and the zeros after t are written 4 at a time. Same values up to float32 summation order: the
 * partial vector's lanes are summed with the others (lanes, then pairwise) instead of after them.
 */
function emitSoftmaxCausal4(fma: boolean): FunctionBuilder {
  const f = new ExpBuilder(['i32', 'i32', 'i32', 'f32']);
  const [sp, rows, L, scale] = [0, 1, 2, 3];
  const r = f.local('i32');
  const t = f.local('i32');
  const c = f.local('i32');
  const rp = f.local('i32');
  const rowBytes = f.local('i32');
  const valid = f.local('i32');
  const full = f.local('i32');
  const up = f.local('i32');
  const mx = f.local('f32');
  const vmax = f.local('v128');
  const vsum = f.local('v128');
  const sh = f.local('v128');
  const sc = f.local('v128');
  const v = f.local('v128');
  const k = f.local('v128');
  const p = f.local('v128');
  const mask = f.local('v128');
  causalRowLoop(f, { sp, rows, L, scale, r, t, rp, rowBytes, valid, full, sc }, () => {
    f.get(valid).i32Const(15).i32Add().i32Const(~15).i32And().set(up); // ≤ rowBytes: L is a multiple of 4
    emitCausalRowMax(f, { rp, c, full, valid, vmax, mx, scale, sh });
    // exponentials of the whole vectors, summed
    emitExpFullVectors(f, { rp, c, full, sc, sh, v, k, p, vsum }, fma);
    // the partial vector: lanes < (valid − full)/4 kept (bitwise: an overflow or NaN after t becomes +0)
    f.block().get(full).get(valid).i32GeU().brIf(0);
    f.i32x4Const([0, 1, 2, 3]).get(valid).get(full).i32Sub().i32Const(2).i32ShrU().simdOp(SIMD_OPS.i32x4_splat);
    f.simdOp(SIMD_OPS.i32x4_lt_s).set(mask);
    f.get(rp).get(full).i32Add().v128Load().get(sc).f32x4Mul().get(sh).simdOp(SIMD_OPS.f32x4_sub).set(v);
    expV(f, v, k, p, fma);
    f.get(mask).simdOp(SIMD_OPS.v128_and).set(v);
    f.get(rp).get(full).i32Add().get(v).v128Store();
    f.get(vsum).get(v).f32x4Add().set(vsum);
    f.end();
    // normalise p ≤ t (and the partial vector's zeros) by 1 / Σ
    f.f32Const(1);
    lanesSum(f, vsum);
    f.f32Div().f32x4Splat().set(v);
    emitScaleVectors(f, rp, c, up, v);
    // zeros after the partial vector, 4 at a time
    f.get(up).set(c);
    whileLtU(f, c, rowBytes, 16, () => {
      f.get(rp).get(c).i32Add().v128Zero().v128Store();
    });
  });
  return f;
}

/**
 * softmax_backward(p, d, rows, L, scale): in place over d [rows, L]: d[r, :] = scale · p ⊙ (d − Σ_j p_j d_j)
 * — the soft-max's backward (dS from dP). Rows are whole: a causal P is 0 after t, so is dS there.
 */
function emitSoftmaxBackward(): FunctionBuilder {
  const f = new ExpBuilder(['i32', 'i32', 'i32', 'i32', 'f32']);
  const [pp, dp, rows, L, scale] = [0, 1, 2, 3, 4];
  const r = f.local('i32');
  const c = f.local('i32');
  const rowBytes = f.local('i32');
  const full = f.local('i32');
  const pr = f.local('i32');
  const dr = f.local('i32');
  const corr = f.local('f32');
  const vsum = f.local('v128');
  const vc = f.local('v128');
  const sc = f.local('v128');
  f.get(L).i32Const(2).i32Shl().set(rowBytes);
  f.get(rowBytes).i32Const(~15).i32And().set(full);
  f.get(scale).f32x4Splat().set(sc);
  f.get(pp).set(pr);
  f.get(dp).set(dr);
  f.i32Const(0).set(r);
  whileLtU(f, r, rows, 1, () => {
    f.v128Zero().set(vsum);
    f.i32Const(0).set(c);
    whileLtU(f, c, full, 16, () => {
      f.get(vsum).get(pr).get(c).i32Add().v128Load().get(dr).get(c).i32Add().v128Load().f32x4Mul().f32x4Add().set(vsum);
    });
    lanesSum(f, vsum);
    f.set(corr);
    whileLtU(f, c, rowBytes, 4, () => {
      f.get(corr).get(pr).get(c).i32Add().f32Load().get(dr).get(c).i32Add().f32Load().f32Mul().f32Add().set(corr);
    });
    f.get(corr).f32x4Splat().set(vc);
    f.i32Const(0).set(c);
    whileLtU(f, c, full, 16, () => {
      f.get(dr).get(c).i32Add();
      f.get(pr).get(c).i32Add().v128Load();
      f.get(dr).get(c).i32Add().v128Load().get(vc).simdOp(SIMD_OPS.f32x4_sub);
      f.f32x4Mul().get(sc).f32x4Mul().v128Store();
    });
    whileLtU(f, c, rowBytes, 4, () => {
      f.get(dr).get(c).i32Add();
      f.get(pr).get(c).i32Add().f32Load();
      f.get(dr).get(c).i32Add().f32Load().get(corr).f32Sub();
      f.f32Mul().get(scale).f32Mul().f32Store();
    });
    f.get(pr).get(rowBytes).i32Add().set(pr);
    f.get(dr).get(rowBytes).i32Add().set(dr);
  });
  return f;
}

/**
 * kd_rows(z, x, mx, d, et, stats, rows, V, a, c): the exponential and gradient passes of the KD loss over
 * float32 rows of student logits z and teacher logits x (byte addresses; mx holds 2 floats per row, the
 * student's and the teacher's row maximum). Per row:
 *   e_s = exp(z − m_s) → d,  e_t = exp(x − m_t) → et,
 *   stats[3r..3r+2] = Σ e_s, Σ e_t, Σ e_t (x − z)       (float32, 4 lanes then pairwise, then the tail)
 *   d = (a + c) · e_s / Σ e_s − a · e_t / Σ e_t         (the caller subtracts c at the target)
 * so the caller's JS does only the row maxima (and top-1) before and the logarithms after.
 */
function emitKdRows(fma: boolean): FunctionBuilder {
  const f = new ExpBuilder(['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f32', 'f32']);
  const [zp0, xp0, mxp, dp0, ep0, stp, rows, V, a, c] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const r = f.local('i32');
  const j = f.local('i32');
  const rowBytes = f.local('i32');
  const full = f.local('i32');
  const zp = f.local('i32');
  const xp = f.local('i32');
  const dp = f.local('i32');
  const ep = f.local('i32');
  const sS = f.local('f32');
  const sT = f.local('f32');
  const cr = f.local('f32');
  const es = f.local('f32');
  const et = f.local('f32');
  const shS = f.local('v128');
  const shT = f.local('v128');
  const vS = f.local('v128');
  const vT = f.local('v128');
  const vC = f.local('v128');
  const zv = f.local('v128');
  const xv = f.local('v128');
  const v = f.local('v128');
  const k = f.local('v128');
  const p = f.local('v128');
  const e1 = f.local('v128');
  const e2 = f.local('v128');
  const cS = f.local('v128'); // splat((a + c) / Σ e_s)
  const cT = f.local('v128'); // splat(a / Σ e_t)
  f.get(V).i32Const(2).i32Shl().set(rowBytes);
  f.get(rowBytes).i32Const(~15).i32And().set(full);
  f.get(zp0).set(zp);
  f.get(xp0).set(xp);
  f.get(dp0).set(dp);
  f.get(ep0).set(ep);
  f.i32Const(0).set(r);
  whileLtU(f, r, rows, 1, () => {
    f.get(mxp).get(r).i32Const(3).i32Shl().i32Add().f32Load(0).f32x4Splat().set(shS);
    f.get(mxp).get(r).i32Const(3).i32Shl().i32Add().f32Load(4).f32x4Splat().set(shT);
    f.v128Zero().set(vS);
    f.v128Zero().set(vT);
    f.v128Zero().set(vC);
    f.i32Const(0).set(j);
    whileLtU(f, j, full, 16, () => {
      f.get(zp).get(j).i32Add().v128Load().set(zv);
      f.get(xp).get(j).i32Add().v128Load().set(xv);
      f.get(zv).get(shS).simdOp(SIMD_OPS.f32x4_sub).set(v);
      expV(f, v, k, p, fma);
      f.set(e1);
      f.get(xv).get(shT).simdOp(SIMD_OPS.f32x4_sub).set(v);
      expV(f, v, k, p, fma);
      f.set(e2);
      f.get(dp).get(j).i32Add().get(e1).v128Store();
      f.get(ep).get(j).i32Add().get(e2).v128Store();
      f.get(vS).get(e1).f32x4Add().set(vS);
      f.get(vT).get(e2).f32x4Add().set(vT);
      f.get(vC).get(e2).get(xv).get(zv).simdOp(SIMD_OPS.f32x4_sub).f32x4Mul().f32x4Add().set(vC);
    });
    lanesSum(f, vS);
    f.set(sS);
    lanesSum(f, vT);
    f.set(sT);
    lanesSum(f, vC);
    f.set(cr);
    whileLtU(f, j, rowBytes, 4, () => {
      // one logit of each model through the vector code (splat, exp, lane 0)
      f.get(zp).get(j).i32Add().f32Load().f32x4Splat().get(shS).simdOp(SIMD_OPS.f32x4_sub).set(v);
      expV(f, v, k, p, fma);
      f.f32x4ExtractLane(0).set(es);
      f.get(xp).get(j).i32Add().f32Load().f32x4Splat().get(shT).simdOp(SIMD_OPS.f32x4_sub).set(v);
      expV(f, v, k, p, fma);
      f.f32x4ExtractLane(0).set(et);
      // the cross term reads z before e_s is stored over it (d may alias z)
      f.get(cr).get(et).get(xp).get(j).i32Add().f32Load().get(zp).get(j).i32Add().f32Load().f32Sub().f32Mul().f32Add().set(cr);
      f.get(dp).get(j).i32Add().get(es).f32Store();
      f.get(ep).get(j).i32Add().get(et).f32Store();
      f.get(sS).get(es).f32Add().set(sS);
      f.get(sT).get(et).f32Add().set(sT);
    });
    f.get(stp).get(r).i32Const(12).i32Mul().i32Add().get(sS).f32Store(0);
    f.get(stp).get(r).i32Const(12).i32Mul().i32Add().get(sT).f32Store(4);
    f.get(stp).get(r).i32Const(12).i32Mul().i32Add().get(cr).f32Store(8);
    // d = (a + c)/Σe_s · e_s − a/Σe_t · e_t
    f.get(a).get(c).f32Add().get(sS).f32Div().set(es);
    f.get(a).get(sT).f32Div().set(et);
    f.get(es).f32x4Splat().set(cS);
    f.get(et).f32x4Splat().set(cT);
    f.i32Const(0).set(j);
    whileLtU(f, j, full, 16, () => {
      f.get(dp).get(j).i32Add();
      f.get(dp).get(j).i32Add().v128Load().get(cS).f32x4Mul();
      f.get(ep).get(j).i32Add().v128Load().get(cT).f32x4Mul().simdOp(SIMD_OPS.f32x4_sub);
      f.v128Store();
    });
    whileLtU(f, j, rowBytes, 4, () => {
      f.get(dp).get(j).i32Add();
      f.get(dp).get(j).i32Add().f32Load().get(es).f32Mul();
      f.get(ep).get(j).i32Add().f32Load().get(et).f32Mul().f32Sub();
      f.f32Store();
    });
    f.get(zp).get(rowBytes).i32Add().set(zp);
    f.get(xp).get(rowBytes).i32Add().set(xp);
    f.get(dp).get(rowBytes).i32Add().set(dp);
    f.get(ep).get(rowBytes).i32Add().set(ep);
  });
  return f;
}

/** exp_rows(x, y, shifts, rows, cols, cols4, scale): addresses in bytes; only the first cols4 (a multiple of 4) columns. */
function emitExpRows(fma: boolean): FunctionBuilder {
  const f = new ExpBuilder(['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f32']);
  const [x, y, shifts, rows, cols, cols4, scale] = [0, 1, 2, 3, 4, 5, 6];
  const r = f.local('i32');
  const c = f.local('i32'); // byte offset within the row
  const rowBytes = f.local('i32');
  const vecBytes = f.local('i32');
  const xp = f.local('i32');
  const yp = f.local('i32');
  const sh = f.local('v128');
  const sc = f.local('v128');
  const v = f.local('v128');
  const k = f.local('v128');
  const p = f.local('v128');

  f.get(cols).i32Const(2).i32Shl().set(rowBytes);
  f.get(cols4).i32Const(2).i32Shl().set(vecBytes);
  f.get(scale).f32x4Splat().set(sc);
  f.get(x).set(xp);
  f.get(y).set(yp);
  f.i32Const(0).set(r);
  whileLtU(f, r, rows, 1, () => {
    // sh = splat(shifts[r])
    f.get(shifts).get(r).i32Const(2).i32Shl().i32Add().f32Load().f32x4Splat().set(sh);
    f.i32Const(0).set(c);
    whileLtU(f, c, vecBytes, 16, () => {
      // v = clamp(scale·x − shift) · log2(e)
      f.get(yp).get(c).i32Add();
      f.get(xp).get(c).i32Add().v128Load().get(sc).f32x4Mul().get(sh).simdOp(SIMD_OPS.f32x4_sub).set(v);
      expV(f, v, k, p, fma);
      f.v128Store();
    });
    f.get(xp).get(rowBytes).i32Add().set(xp);
    f.get(yp).get(rowBytes).i32Add().set(yp);
  });
  return f;
}

const moduleBytes = new Map<boolean, Uint8Array>();
/** The module, with fused multiply-add Horner steps (relaxed SIMD) or without. */
function expModuleBytes(fma = false): Uint8Array {
  let bytes = moduleBytes.get(fma);
  if (!bytes) {
    bytes = new ModuleBuilder(TRAINER_MEMORY_IMPORT)
      .addFunction('exp_rows', emitExpRows(fma))
      .addFunction('softmax_causal', emitSoftmaxCausal(fma))
      .addFunction('softmax_causal4', emitSoftmaxCausal4(fma))
      .addFunction('softmax_backward', emitSoftmaxBackward())
      .addFunction('kd_rows', emitKdRows(fma))
      .emit();
    moduleBytes.set(fma, bytes);
  }
  return bytes;
}

type ExpRowsFn = (x: number, y: number, shifts: number, rows: number, cols: number, cols4: number, scale: number) => void;
type SoftmaxCausalFn = (s: number, rows: number, L: number, scale: number) => void;
type SoftmaxBackwardFn = (p: number, d: number, rows: number, L: number, scale: number) => void;
type KdRowsFn = (z: number, x: number, mx: number, d: number, et: number, stats: number, rows: number, V: number, a: number, c: number) => void;

// Scratch slots of the TrainerMemory (slot 0 is the gemm's).
const SLOT_A = 1;
const SLOT_B = 2;
const SLOT_SMALL = 3;

const up4 = (v: number) => (v + 3) & ~3;

/** One thread's instance over a TrainerMemory (its own when none is given) and the kernels. */
export class WasmTrainerExp {
  readonly mem: TrainerMemory;
  private readonly fn: ExpRowsFn;
  private readonly kdFn: KdRowsFn;
  private readonly softmaxFn: SoftmaxCausalFn;
  private readonly softmax4Fn: SoftmaxCausalFn;
  private readonly softmaxBackFn: SoftmaxBackwardFn;
  /** Calls and elements computed here (diagnostics). */
  calls = 0;
  elements = 0;

  /** Whether the exponentials' Horner steps are fused multiply-adds (relaxed SIMD). */
  readonly fma: boolean;

  /** `fma`: fused Horner steps (the caller has checked that relaxed SIMD compiles: enableRelaxedSimd). */
  constructor(mem: TrainerMemory = new TrainerMemory(), fma = false) {
    const wasm = requireWasm();
    this.mem = mem;
    this.fma = fma;
    const instance: WasmInstance = new wasm.Instance(new wasm.Module(expModuleBytes(fma)), { env: { memory: mem.memory } });
    this.fn = instance.exports.exp_rows as ExpRowsFn;
    this.softmaxFn = instance.exports.softmax_causal as SoftmaxCausalFn;
    this.softmax4Fn = instance.exports.softmax_causal4 as SoftmaxCausalFn;
    this.softmaxBackFn = instance.exports.softmax_backward as SoftmaxBackwardFn;
    this.kdFn = instance.exports.kd_rows as KdRowsFn;
  }

  /** Float index of `count` floats of `a` in wasm memory: where it is, or a copy in scratch `slot`. */
  private input(a: Float32Array, count: number, slot: number): number {
    if (this.mem.isResident(a)) return a.byteOffset / 4;
    const at = this.mem.scratch(slot, 4 * up4(count)) / 4;
    this.mem.f32.set(a.length === count ? a : a.subarray(0, count), at);
    return at;
  }

  /** Copy `count` floats at float index `at` back into `a` unless `a` is that memory. */
  private output(a: Float32Array, at: number, count: number): void {
    if (this.mem.isResident(a) && a.byteOffset / 4 === at) return;
    a.set(this.mem.f32.subarray(at, at + count));
  }

  /**
   * The KD loss's exponentials and gradient over [rows, V] student logits z and teacher logits x (see
   * kd_rows): writes d = (a + c)·p_s − a·p_t (the caller subtracts c at each target) and, per row, into
   * stats[3r..3r+2]: Σ exp(z − max_z), Σ exp(x − max_x), Σ exp(x − max_x)·(x − z). `maxima` holds the
   * student's and the teacher's maximum of each row (2 per row).
   */
  readonly kdRows = (
    z: Float32Array,
    x: Float32Array,
    maxima: ArrayLike<number>,
    d: Float32Array,
    stats: Float32Array,
    rows: number,
    V: number,
    a: number,
    c: number,
  ): void => {
    const count = rows * V;
    const mem = this.mem;
    // small: [maxima | stats]; big scratch for whatever is not resident: z, x, e_t, d
    const mAt = mem.scratch(SLOT_SMALL, 4 * (up4(2 * rows) + up4(3 * rows))) / 4;
    const sAt = mAt + up4(2 * rows);
    const zIn = mem.isResident(z);
    const xIn = mem.isResident(x);
    const dIn = mem.isResident(d);
    const big = (zIn ? 0 : up4(count)) + (xIn ? 0 : up4(count)) + up4(count) + (dIn ? 0 : up4(count));
    let at = mem.scratch(SLOT_A, 4 * big) / 4;
    const f = mem.f32;
    let zAt = z.byteOffset / 4;
    if (!zIn) {
      zAt = at;
      f.set(z.length === count ? z : z.subarray(0, count), zAt);
      at += up4(count);
    }
    let xAt = x.byteOffset / 4;
    if (!xIn) {
      xAt = at;
      f.set(x.length === count ? x : x.subarray(0, count), xAt);
      at += up4(count);
    }
    const eAt = at;
    at += up4(count);
    const dAt = dIn ? d.byteOffset / 4 : at;
    for (let i = 0; i < 2 * rows; i++) f[mAt + i] = maxima[i]!;
    this.kdFn(4 * zAt, 4 * xAt, 4 * mAt, 4 * dAt, 4 * eAt, 4 * sAt, rows, V, a, c);
    if (!dIn) d.set(f.subarray(dAt, dAt + count));
    for (let i = 0; i < 3 * rows; i++) stats[i] = f[sAt + i]!;
  };

  /**
   * In place over s [rows, L]: row r is position t = r mod L of its sequence; s[r, p] ← the soft-max of
   * scale · s[r, 0..t] for p ≤ t, 0 for p > t (attention's causal soft-max; float32 sums).
   */
  readonly softmaxCausal = (s: Float32Array, rows: number, L: number, scale: number): void => {
    const count = rows * L;
    const at = this.input(s, count, SLOT_A);
    (L % 4 === 0 ? this.softmax4Fn : this.softmaxFn)(4 * at, rows, L, scale);
    this.output(s, at, count);
  };

  /** In place over d [rows, L]: d ← scale · p ⊙ (d − rowsum(p ⊙ d)) — the soft-max's backward. */
  readonly softmaxBackward = (p: Float32Array, d: Float32Array, rows: number, L: number, scale: number): void => {
    const count = rows * L;
    const pAt = this.input(p, count, SLOT_A);
    const dAt = this.input(d, count, SLOT_B);
    this.softmaxBackFn(4 * pAt, 4 * dAt, rows, L, scale);
    this.output(d, dAt, count);
  };

  /**
   * y[r·cols + c] = exp(scale · x[r·cols + c] − shift[r]) for r < rows, c < cols (x and y may be the same
   * array). `shift` holds one value per row (float32-rounded). Float32 arithmetic; see the file comment.
   */
  readonly expRows = (x: Float32Array, y: Float32Array, rows: number, cols: number, scale: number, shift: ArrayLike<number>): void => {
    const count = rows * cols;
    if (count === 0) return;
    const mem = this.mem;
    const sAt = mem.scratch(SLOT_SMALL, 4 * up4(rows)) / 4;
    const xAt = this.input(x, count, SLOT_A);
    // y in place when resident; else the kernel writes over x's copy (or a copy when x is resident)
    const yAt = mem.isResident(y) ? y.byteOffset / 4 : mem.isResident(x) ? mem.scratch(SLOT_B, 4 * up4(count)) / 4 : xAt;
    const f = mem.f32;
    for (let r = 0; r < rows; r++) f[sAt + r] = shift[r]!;
    const cols4 = cols & ~3;
    this.fn(4 * xAt, 4 * yAt, 4 * sAt, rows, cols, cols4, scale);
    this.output(y, yAt, count);
    if (cols4 < cols) {
      for (let r = 0; r < rows; r++) {
        const s = shift[r]!;
        for (let c = cols4; c < cols; c++) y[r * cols + c] = Math.exp(scale * x[r * cols + c]! - s);
      }
    }
    this.calls++;
    this.elements += count;
  };
}

/**
 * A WasmTrainerExp (over `mem`, or a memory of its own) when this engine validates the module, else null
 * (the trainer keeps Math.exp).
 */
export function createTrainerExp(mem?: TrainerMemory, options: { fma?: boolean } = {}): WasmTrainerExp | null {
  // fused Horner steps when asked for and this engine compiles relaxed SIMD (the gemm's enableRelaxedSimd
  // decides that once per process), else the plain module
  return createFmaOrPlain(options.fma, expModuleBytes, (fma) => new WasmTrainerExp(mem, fma));
}
