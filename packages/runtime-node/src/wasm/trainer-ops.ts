/**
 * The STE trainer's element-wise kernels in WebAssembly SIMD (f32x4), over the same TrainerMemory as its
 * gemm and exponentials (trainer-memory.ts): arrays living there are read and written in place, others are
 * copied in and out. Issue 13's profile had these ops in float64 JS at ~20% of a training step:
 *
 *   swiglu_fwd   σ = 1/(1 + exp(−g)) (saved for the backward), h = g·σ·u
 *   swiglu_bwd   dg = dh·u·σ·(1 + g(1 − σ)), du = dh·g·σ
 *   rmsnorm_fwd  r = 1/√(Σx²/dim + eps) per row (saved), y = w ⊙ (r·x)
 *   rmsnorm_bwd  dx += r·(w ⊙ dy) − x·r³/dim·Σ dy⊙w⊙x; dw += Σ_rows dy ⊙ x · r (when dw ≠ 0)
 *   add          out = a + b (the residual adds)
 *   adamw        AdamW over one parameter (decoupled decay, bias-corrected moments), gradient zeroed
 *   row_maxcheck per row: the maximum, and Σ x·0 (0 exactly when the row is finite) for the losses
 *   rope_pairs   RoPE on (2i, 2i+1) pairs, in place;  mse  Σ (x − t)² (float64) and dx += g·(x − t)
 *
 * Arithmetic is float32 (sums in 4 lanes, then pairwise), where the JS versions round float64 results once:
 * results differ from them within float32 rounding (tested against them), deterministically. Every kernel
 * needs its element count (or row length) to be a multiple of 4; the class says false otherwise and the caller
 * keeps its JS loop.
 */
import { FunctionBuilder, ModuleBuilder, lanesSum, whileLtU } from './emitter.js';
import { type WasmInstance, requireWasm } from './engine.js';
import { ExpBuilder, expV } from './trainer-exp.js';
import { TRAINER_MEMORY_IMPORT, TrainerMemory, createFmaOrPlain } from './trainer-memory.js';

// SIMD and scalar opcodes the emitter does not name (BinarySIMD.md; the core spec's numeric opcodes).
const F32X4_ABS = 0xe0;
const F32X4_NEG = 0xe1;
const F32X4_SQRT = 0xe3;
const F32X4_SUB = 0xe5;
const F32X4_DIV = 0xe7;
const F32X4_PMAX = 0xeb;
const F32_SQRT = 0x91;
const F64_ADD = 0xa0;
const F64X2_PROMOTE_LOW = 0x5f;
const F64X2_EXTRACT_LANE = 0x21;
const F64X2_ADD = 0xf0;
const F64X2_SUB = 0xf1;
const I8X16_SHUFFLE = 0x0d;
const F64X2_MUL = 0xf2;

class OpsBuilder extends ExpBuilder {
  f32Sqrt(): this {
    this.code.push(F32_SQRT);
    return this;
  }
  /** Raw bytes (an opcode or immediate the emitter does not name). */
  raw(...bytes: number[]): this {
    for (const b of bytes) this.code.push(b);
    return this;
  }
  /** x → x·0 (0 for a finite x, NaN for NaN or ±Inf) */
  zeroTimes(): this {
    return this.v128Zero().f32x4Mul();
  }
  /** f32x4 splat of a constant. */
  splat(v: number): this {
    return this.f32Const(v).f32x4Splat();
  }
  /** v128.load at (local a + local i). */
  loadAt(a: number, i: number): this {
    return this.get(a).get(i).i32Add().v128Load();
  }
  /** Push the address (local a + local i) for a following v128.store. */
  addr(a: number, i: number): this {
    return this.get(a).get(i).i32Add();
  }
}

/** swiglu_fwd(g, u, h, s, bytes) */
function emitSwigluFwd(fma: boolean): FunctionBuilder {
  const f = new OpsBuilder(['i32', 'i32', 'i32', 'i32', 'i32']);
  const [gp, up, hp, sp, bytes] = [0, 1, 2, 3, 4];
  const i = f.local('i32');
  const v = f.local('v128');
  const k = f.local('v128');
  const p = f.local('v128');
  const sv = f.local('v128');
  whileLtU(f, i, bytes, 16, () => {
    f.loadAt(gp, i).simdOp(F32X4_NEG).set(v);
    f.splat(1);
    expV(f, v, k, p, fma);
    f.splat(1).f32x4Add().simdOp(F32X4_DIV).set(sv);
    f.addr(sp, i).get(sv).v128Store();
    f.addr(hp, i).loadAt(gp, i).get(sv).f32x4Mul().loadAt(up, i).f32x4Mul().v128Store();
  });
  return f;
}

/** swiglu_bwd(dh, g, u, s, dg, du, bytes) */
function emitSwigluBwd(): FunctionBuilder {
  const f = new OpsBuilder(['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [dhp, gp, up, sp, dgp, dup, bytes] = [0, 1, 2, 3, 4, 5, 6];
  const i = f.local('i32');
  const dv = f.local('v128');
  const gv = f.local('v128');
  const sv = f.local('v128');
  whileLtU(f, i, bytes, 16, () => {
    f.loadAt(dhp, i).set(dv);
    f.loadAt(gp, i).set(gv);
    f.loadAt(sp, i).set(sv);
    // dg = dh·u·σ·(1 + g(1 − σ))
    f.addr(dgp, i).get(dv).loadAt(up, i).f32x4Mul().get(sv).f32x4Mul();
    f.splat(1).get(gv).splat(1).get(sv).simdOp(F32X4_SUB).f32x4Mul().f32x4Add().f32x4Mul().v128Store();
    // du = dh·g·σ
    f.addr(dup, i).get(dv).get(gv).f32x4Mul().get(sv).f32x4Mul().v128Store();
  });
  return f;
}

/** rmsnorm_fwd(x, w, y, r, rows, dimBytes, dim (f32), eps (f32)) */
function emitRmsNormFwd(): FunctionBuilder {
  const f = new OpsBuilder(['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f32', 'f32']);
  const [xp, wp, yp, rp, rows, dimBytes, dim, eps] = [0, 1, 2, 3, 4, 5, 6, 7];
  const t = f.local('i32');
  const j = f.local('i32');
  const acc = f.local('v128');
  const xv = f.local('v128');
  const iv = f.local('v128');
  const inv = f.local('f32');
  whileLtU(f, t, rows, 1, () => {
    f.v128Zero().set(acc);
    f.i32Const(0).set(j);
    whileLtU(f, j, dimBytes, 16, () => {
      f.loadAt(xp, j).tee(xv).get(xv).f32x4Mul().get(acc).f32x4Add().set(acc);
    });
    // inv = 1 / sqrt(ss / dim + eps)
    f.f32Const(1);
    lanesSum(f, acc);
    f.get(dim).f32Div().get(eps).f32Add().f32Sqrt().f32Div().set(inv);
    f.get(rp).get(inv).f32Store();
    f.get(inv).f32x4Splat().set(iv);
    f.i32Const(0).set(j);
    whileLtU(f, j, dimBytes, 16, () => {
      f.addr(yp, j).loadAt(wp, j).get(iv).loadAt(xp, j).f32x4Mul().f32x4Mul().v128Store();
    });
    f.get(xp).get(dimBytes).i32Add().set(xp);
    f.get(yp).get(dimBytes).i32Add().set(yp);
    f.get(rp).i32Const(4).i32Add().set(rp);
  });
  return f;
}

/** rmsnorm_bwd(dy, x, w, r, dx, dw (0: none), rows, dimBytes, dim (f32)) */
function emitRmsNormBwd(): FunctionBuilder {
  const f = new OpsBuilder(['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f32']);
  const [dyp, xp, wp, rp, dxp, dwp, rows, dimBytes, dim] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
  const t = f.local('i32');
  const j = f.local('i32');
  const acc = f.local('v128');
  const iv = f.local('v128');
  const cv = f.local('v128');
  const inv = f.local('f32');
  whileLtU(f, t, rows, 1, () => {
    f.get(rp).f32Load().set(inv);
    f.v128Zero().set(acc);
    f.i32Const(0).set(j);
    whileLtU(f, j, dimBytes, 16, () => {
      f.loadAt(dyp, j).loadAt(wp, j).f32x4Mul().loadAt(xp, j).f32x4Mul().get(acc).f32x4Add().set(acc);
    });
    // c = inv³ · dot / dim
    f.get(inv).get(inv).f32Mul().get(inv).f32Mul();
    lanesSum(f, acc);
    f.f32Mul().get(dim).f32Div().f32x4Splat().set(cv);
    f.get(inv).f32x4Splat().set(iv);
    f.i32Const(0).set(j);
    whileLtU(f, j, dimBytes, 16, () => {
      // dx += inv·w·dy − c·x
      f.addr(dxp, j).loadAt(dxp, j);
      f.get(iv).loadAt(wp, j).f32x4Mul().loadAt(dyp, j).f32x4Mul().f32x4Add();
      f.get(cv).loadAt(xp, j).f32x4Mul().simdOp(F32X4_SUB).v128Store();
    });
    f.block().get(dwp).i32Eqz().brIf(0);
    f.i32Const(0).set(j);
    whileLtU(f, j, dimBytes, 16, () => {
      // dw += dy·x·inv
      f.addr(dwp, j).loadAt(dwp, j).loadAt(dyp, j).loadAt(xp, j).f32x4Mul().get(iv).f32x4Mul().f32x4Add().v128Store();
    });
    f.end();
    f.get(dyp).get(dimBytes).i32Add().set(dyp);
    f.get(xp).get(dimBytes).i32Add().set(xp);
    f.get(dxp).get(dimBytes).i32Add().set(dxp);
    f.get(rp).i32Const(4).i32Add().set(rp);
  });
  return f;
}

/** add(a, b, out, bytes) */
function emitAdd(): FunctionBuilder {
  const f = new OpsBuilder(['i32', 'i32', 'i32', 'i32']);
  const [ap, bp, op, bytes] = [0, 1, 2, 3];
  const i = f.local('i32');
  whileLtU(f, i, bytes, 16, () => {
    f.addr(op, i).loadAt(ap, i).loadAt(bp, i).f32x4Add().v128Store();
  });
  return f;
}

/**
 * adamw(p, g, m, v, bytes, gradScale, b1, 1 − b1, b2, 1 − b2, decay, lr/bc1, 1/bc2, eps):
 *   g' = g·gradScale; m = b1·m + (1 − b1)·g'; v = b2·v + (1 − b2)·g'²;
 *   p = p·decay − (lr/bc1)·m / (√(v/bc2) + eps); g = 0
 */
function emitAdamW(): FunctionBuilder {
  const f = new OpsBuilder(['i32', 'i32', 'i32', 'i32', 'i32', 'f32', 'f32', 'f32', 'f32', 'f32', 'f32', 'f32', 'f32', 'f32']);
  const [pp, gp, mp, vp, bytes] = [0, 1, 2, 3, 4];
  const scalars = [5, 6, 7, 8, 9, 10, 11, 12, 13];
  const i = f.local('i32');
  const [gs, b1, c1, b2, c2, decay, lrc, ibc2, eps] = scalars.map(() => f.local('v128'));
  scalars.forEach((s, n) => f.get(s).f32x4Splat().set([gs, b1, c1, b2, c2, decay, lrc, ibc2, eps][n]!));
  const gv = f.local('v128');
  const mv = f.local('v128');
  const vv = f.local('v128');
  whileLtU(f, i, bytes, 16, () => {
    f.loadAt(gp, i).get(gs!).f32x4Mul().set(gv);
    f.get(b1!).loadAt(mp, i).f32x4Mul().get(c1!).get(gv).f32x4Mul().f32x4Add().set(mv);
    f.get(b2!).loadAt(vp, i).f32x4Mul().get(c2!).get(gv).f32x4Mul().get(gv).f32x4Mul().f32x4Add().set(vv);
    f.addr(mp, i).get(mv).v128Store();
    f.addr(vp, i).get(vv).v128Store();
    f.addr(pp, i).loadAt(pp, i).get(decay!).f32x4Mul();
    f.get(lrc!).get(mv).f32x4Mul();
    f.get(vv).get(ibc2!).f32x4Mul().simdOp(F32X4_SQRT).get(eps!).f32x4Add();
    f.simdOp(F32X4_DIV).simdOp(F32X4_SUB).v128Store();
    f.addr(gp, i).v128Zero().v128Store();
  });
  return f;
}

/**
 * row_maxcheck(x, rows, colsBytes, out): out[2r] = max of row r, out[2r + 1] = Σ x·0 over the row — 0 when
 * every value is finite, NaN when one is NaN or ±Inf (the max uses pmax, one instruction, which may skip a
 * NaN: the check catches it). Two accumulators of each, to overlap their latencies.
 */
function emitRowMaxCheck(): FunctionBuilder {
  const f = new OpsBuilder(['i32', 'i32', 'i32', 'i32']);
  const [xp, rows, colsBytes, op] = [0, 1, 2, 3];
  const t = f.local('i32');
  const j = f.local('i32');
  const m0 = f.local('v128');
  const m1 = f.local('v128');
  const c0 = f.local('v128');
  const c1 = f.local('v128');
  const xv = f.local('v128');
  const even = f.local('i32');
  const zero = () => f.v128Zero();
  whileLtU(f, t, rows, 1, () => {
    f.get(xp).v128Load().tee(m0).set(m1);
    zero().set(c0);
    zero().set(c1);
    // pairs of vectors from 0 up to the even part, then the last vector if the count is odd
    f.get(colsBytes).i32Const(~31).i32And().set(even);
    f.i32Const(0).set(j);
    whileLtU(f, j, even, 32, () => {
      f.loadAt(xp, j).set(xv);
      f.get(m0).get(xv).simdOp(F32X4_PMAX).set(m0);
      f.get(xv).zeroTimes().get(c0).f32x4Add().set(c0);
      f.get(xp).get(j).i32Add().v128Load(16).set(xv);
      f.get(m1).get(xv).simdOp(F32X4_PMAX).set(m1);
      f.get(xv).zeroTimes().get(c1).f32x4Add().set(c1);
    });
    f.block().get(even).get(colsBytes).i32GeU().brIf(0);
    f.loadAt(xp, even).set(xv);
    f.get(m0).get(xv).simdOp(F32X4_PMAX).set(m0);
    f.get(xv).zeroTimes().get(c0).f32x4Add().set(c0);
    f.end();
    f.get(m0).get(m1).simdOp(F32X4_PMAX).set(m0);
    f.get(c0).get(c1).f32x4Add().set(c0);
    f.get(op);
    f.get(m0).f32x4ExtractLane(0).get(m0).f32x4ExtractLane(1).f32Max();
    f.get(m0).f32x4ExtractLane(2).get(m0).f32x4ExtractLane(3).f32Max().f32Max();
    f.f32Store();
    f.get(op);
    lanesSum(f, c0);
    f.f32Store(4);
    f.get(xp).get(colsBytes).i32Add().set(xp);
    f.get(op).i32Const(8).i32Add().set(op);
  });
  return f;
}

/** copy_rows(src, srcStrideBytes, dst, dstStrideBytes, rows, lenBytes): row-strided copy (attention's head gathers). */
function emitCopyRows(): FunctionBuilder {
  const f = new OpsBuilder(['i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [sp, sStride, dp, dStride, rows, lenBytes] = [0, 1, 2, 3, 4, 5];
  const t = f.local('i32');
  const j = f.local('i32');
  whileLtU(f, t, rows, 1, () => {
    f.i32Const(0).set(j);
    whileLtU(f, j, lenBytes, 16, () => {
      f.addr(dp, j).loadAt(sp, j).v128Store();
    });
    f.get(sp).get(sStride).i32Add().set(sp);
    f.get(dp).get(dStride).i32Add().set(dp);
  });
  return f;
}

/** sumsq(x, bytes): Σ x² in float64 (each float promoted; two f64 lanes, summed at the end). */
function emitSumSq(): FunctionBuilder {
  const f = new OpsBuilder(['i32', 'i32'], ['f64']);
  const [xp, bytes] = [0, 1];
  const i = f.local('i32');
  const acc = f.local('v128');
  const v = f.local('v128');
  f.v128Zero().set(acc);
  whileLtU(f, i, bytes, 16, () => {
    // lanes 0, 1 (load at i) and 2, 3 (load at i + 8), each promoted to float64
    f.loadAt(xp, i).simdOp(F64X2_PROMOTE_LOW).tee(v).get(v).simdOp(F64X2_MUL).get(acc).simdOp(F64X2_ADD).set(acc);
    f.get(xp).get(i).i32Add().v128Load(8).simdOp(F64X2_PROMOTE_LOW).tee(v).get(v).simdOp(F64X2_MUL).get(acc).simdOp(F64X2_ADD).set(acc);
  });
  f.get(acc).simdOp(F64X2_EXTRACT_LANE).raw(0).get(acc).simdOp(F64X2_EXTRACT_LANE).raw(1).raw(F64_ADD);
  return f;
}

/**
 * rope_pairs(vec, rows, widthBytes, cx, sx, seqLen, hsBytes): RoPE on (2i, 2i+1) pairs (llama2.c), in place:
 * v' = v ⊙ C + swap(v) ⊙ S, swap exchanging the two lanes of each pair, with the expanded tables
 * C[pos, 2i] = C[pos, 2i+1] = cos θ_i and S[pos, 2i] = −sin θ_i, S[pos, 2i+1] = sin θ_i (negated for the
 * inverse rotation), pos = row mod seqLen.
 */
function emitRopePairs(): FunctionBuilder {
  const f = new OpsBuilder(['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [vp, rows, widthBytes, cxp, sxp, seqLen, hsBytes] = [0, 1, 2, 3, 4, 5, 6];
  const t = f.local('i32');
  const pos = f.local('i32');
  const h = f.local('i32');
  const i = f.local('i32');
  const row = f.local('i32'); // vec + h
  const tab = f.local('i32'); // pos · hsBytes
  const v = f.local('v128');
  whileLtU(f, t, rows, 1, () => {
    f.get(pos).get(hsBytes).i32Mul().set(tab);
    f.i32Const(0).set(h);
    whileLtU(f, h, widthBytes, 0, () => {
      f.get(vp).get(h).i32Add().set(row);
      f.i32Const(0).set(i);
      whileLtU(f, i, hsBytes, 16, () => {
        f.loadAt(row, i).set(v);
        f.addr(row, i);
        f.get(v).get(cxp).get(tab).i32Add().get(i).i32Add().v128Load().f32x4Mul();
        f.get(v).get(v).simdOp(I8X16_SHUFFLE).raw(4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
        f.get(sxp).get(tab).i32Add().get(i).i32Add().v128Load().f32x4Mul();
        f.f32x4Add().v128Store();
      });
      f.get(h).get(hsBytes).i32Add().set(h);
    });
    f.get(vp).get(widthBytes).i32Add().set(vp);
    // pos = (pos + 1) mod seqLen
    f.get(pos).i32Const(1).i32Add().set(pos);
    f.block().get(pos).get(seqLen).i32LtU().brIf(0).i32Const(0).set(pos).end();
  });
  return f;
}

/**
 * mse(x, target, dx (0: none), bytes, g): Σ (x − target)² in float64 (promoted, exact differences, two lanes
 * summed at the end) and, when dx ≠ 0, dx += g·(x − target) in float32.
 */
function emitMse(): FunctionBuilder {
  const f = new OpsBuilder(['i32', 'i32', 'i32', 'i32', 'f32'], ['f64']);
  const [xp, tp, dxp, bytes, g] = [0, 1, 2, 3, 4];
  const i = f.local('i32');
  const acc = f.local('v128');
  const d = f.local('v128');
  const gv = f.local('v128');
  f.get(g).f32x4Splat().set(gv);
  f.v128Zero().set(acc);
  whileLtU(f, i, bytes, 16, () => {
    for (const off of [0, 8]) {
      f.get(xp).get(i).i32Add().v128Load(off).simdOp(F64X2_PROMOTE_LOW);
      f.get(tp).get(i).i32Add().v128Load(off).simdOp(F64X2_PROMOTE_LOW);
      f.simdOp(F64X2_SUB).tee(d).get(d).simdOp(F64X2_MUL).get(acc).simdOp(F64X2_ADD).set(acc);
    }
  });
  f.block().get(dxp).i32Eqz().brIf(0);
  f.i32Const(0).set(i);
  whileLtU(f, i, bytes, 16, () => {
    f.addr(dxp, i).loadAt(dxp, i).get(gv).loadAt(xp, i).loadAt(tp, i).simdOp(F32X4_SUB).f32x4Mul().f32x4Add().v128Store();
  });
  f.end();
  f.get(acc).simdOp(F64X2_EXTRACT_LANE).raw(0).get(acc).simdOp(F64X2_EXTRACT_LANE).raw(1).raw(F64_ADD);
  return f;
}

/** exp_abs(x, y, bytes, scale): y = exp(scale · |x|) (LittleBit's SmoothSign derivative, e = exp(−2k|u|)). */
function emitExpAbs(fma: boolean): FunctionBuilder {
  const f = new OpsBuilder(['i32', 'i32', 'i32', 'f32']);
  const [xp, yp, bytes, scale] = [0, 1, 2, 3];
  const i = f.local('i32');
  const v = f.local('v128');
  const k = f.local('v128');
  const p = f.local('v128');
  const sc = f.local('v128');
  f.get(scale).f32x4Splat().set(sc);
  whileLtU(f, i, bytes, 16, () => {
    f.loadAt(xp, i).simdOp(F32X4_ABS).get(sc).f32x4Mul().set(v);
    f.addr(yp, i);
    expV(f, v, k, p, fma);
    f.v128Store();
  });
  return f;
}

const moduleBytes = new Map<boolean, Uint8Array>();
/** The module, with fused multiply-add Horner steps in its exponentials (relaxed SIMD) or without. */
function opsModuleBytes(fma = false): Uint8Array {
  const cached = moduleBytes.get(fma);
  if (cached) return cached;
  const bytes = new ModuleBuilder(TRAINER_MEMORY_IMPORT)
    .addFunction('swiglu_fwd', emitSwigluFwd(fma))
    .addFunction('swiglu_bwd', emitSwigluBwd())
    .addFunction('rmsnorm_fwd', emitRmsNormFwd())
    .addFunction('rmsnorm_bwd', emitRmsNormBwd())
    .addFunction('add', emitAdd())
    .addFunction('adamw', emitAdamW())
    .addFunction('row_maxcheck', emitRowMaxCheck())
    .addFunction('copy_rows', emitCopyRows())
    .addFunction('sumsq', emitSumSq())
    .addFunction('rope_pairs', emitRopePairs())
    .addFunction('mse', emitMse())
    .addFunction('exp_abs', emitExpAbs(fma))
    .emit();
  moduleBytes.set(fma, bytes);
  return bytes;
}

type Fn = (...args: number[]) => void;

// Scratch slots of the TrainerMemory (0: gemm, 1–3: exponentials).
const SLOT0 = 4;

const up4 = (v: number) => (v + 3) & ~3;

/** AdamW's per-step constants (see adamw above). */
export interface AdamWScalars {
  gradScale: number;
  beta1: number;
  beta2: number;
  decay: number;
  /** lr / (1 − β1^t) */
  lrOverBc1: number;
  /** 1 / (1 − β2^t) */
  invBc2: number;
  eps: number;
}

/** One thread's instance over a TrainerMemory (its own when none is given). */
export class WasmTrainerOps {
  readonly mem: TrainerMemory;
  private readonly fn: Record<string, Fn>;
  /** Floats copied into and out of the wasm memory (diagnostics). */
  copiedFloats = 0;

  /** Whether the exponentials' Horner steps are fused multiply-adds (relaxed SIMD). */
  readonly fma: boolean;

  /** `fma`: fused Horner steps in SwiGLU's σ and exp_abs (the caller has checked relaxed SIMD compiles). */
  constructor(mem: TrainerMemory = new TrainerMemory(), fma = false) {
    this.mem = mem;
    this.fma = fma;
    const wasm = requireWasm();
    const instance: WasmInstance = new wasm.Instance(new wasm.Module(opsModuleBytes(fma)), { env: { memory: mem.memory } });
    this.fn = instance.exports as Record<string, Fn>;
  }

  /** Byte address of `count` floats of `a`: where it is, or a copy (copyIn) / room (not) in scratch `slot`. */
  private at(a: Float32Array, count: number, slot: number, copyIn = true): number {
    if (this.mem.isResident(a)) return a.byteOffset;
    const at = this.mem.scratch(SLOT0 + slot, 4 * up4(Math.max(count, 4)));
    if (copyIn) {
      this.mem.f32.set(a.length === count ? a : a.subarray(0, count), at / 4);
      this.copiedFloats += count;
    }
    return at;
  }

  /** Copy a result back from scratch unless `a` is resident. */
  private back(a: Float32Array, at: number, count: number): void {
    if (this.mem.isResident(a)) return;
    a.set(this.mem.f32.subarray(at / 4, at / 4 + count));
    this.copiedFloats += count;
  }

  /** h = silu(g) ⊙ u, σ(g) into sig (or scratch). False (nothing done) when count % 4 ≠ 0. */
  swigluForward(g: Float32Array, u: Float32Array, h: Float32Array, sig: Float32Array | null, count: number): boolean {
    if (count % 4 !== 0) return false;
    // scratch for inputs must not be reused for outputs before the call: one slot per operand
    const gA = this.at(g, count, 0);
    const uA = this.at(u, count, 1);
    const hA = this.at(h, count, 2, false);
    const sA = sig ? this.at(sig, count, 3, false) : this.mem.scratch(SLOT0 + 3, 4 * count);
    this.fn.swiglu_fwd!(gA, uA, hA, sA, 4 * count);
    this.back(h, hA, count);
    if (sig) this.back(sig, sA, count);
    return true;
  }

  /** dg, du of h = silu(g) ⊙ u from dh and the saved σ. False when count % 4 ≠ 0. */
  swigluBackward(dh: Float32Array, g: Float32Array, u: Float32Array, sig: Float32Array, dg: Float32Array, du: Float32Array, count: number): boolean {
    if (count % 4 !== 0) return false;
    const a0 = this.at(dh, count, 0);
    const a1 = this.at(g, count, 1);
    const a2 = this.at(u, count, 2);
    const a3 = this.at(sig, count, 3);
    const a4 = this.at(dg, count, 4, false);
    const a5 = this.at(du, count, 5, false);
    this.fn.swiglu_bwd!(a0, a1, a2, a3, a4, a5, 4 * count);
    this.back(dg, a4, count);
    this.back(du, a5, count);
    return true;
  }

  /** y = w ⊙ x·r, r = 1/√(mean x² + eps) per row (saved). False when dim % 4 ≠ 0. */
  rmsNormForward(x: Float32Array, w: Float32Array, y: Float32Array, r: Float32Array, n: number, dim: number, eps: number): boolean {
    if (dim % 4 !== 0) return false;
    const xA = this.at(x, n * dim, 0);
    const wA = this.at(w, dim, 1);
    const yA = this.at(y, n * dim, 2, false);
    const rA = this.at(r, n, 3, false);
    this.fn.rmsnorm_fwd!(xA, wA, yA, rA, n, 4 * dim, dim, eps);
    this.back(y, yA, n * dim);
    this.back(r, rA, n);
    return true;
  }

  /** dx += ∂/∂x, dw (when given) += ∂/∂w of rmsNormForward. False when dim % 4 ≠ 0. */
  rmsNormBackward(dy: Float32Array, x: Float32Array, w: Float32Array, r: Float32Array, dx: Float32Array, dw: Float32Array | null, n: number, dim: number): boolean {
    if (dim % 4 !== 0) return false;
    const a0 = this.at(dy, n * dim, 0);
    const a1 = this.at(x, n * dim, 1);
    const a2 = this.at(w, dim, 2);
    const a3 = this.at(r, n, 3);
    const a4 = this.at(dx, n * dim, 4);
    const a5 = dw ? this.at(dw, dim, 5) : 0;
    this.fn.rmsnorm_bwd!(a0, a1, a2, a3, a4, a5, n, 4 * dim, dim);
    this.back(dx, a4, n * dim);
    if (dw) this.back(dw, a5, dim);
    return true;
  }

  /** out = a + b (out may be a or b). False when count % 4 ≠ 0. */
  add(a: Float32Array, b: Float32Array, out: Float32Array, count: number): boolean {
    if (count % 4 !== 0) return false;
    const aA = this.at(a, count, 0);
    const bA = this.at(b, count, 1);
    const oA = out === a ? aA : out === b ? bA : this.at(out, count, 2, false);
    this.fn.add!(aA, bA, oA, 4 * count);
    this.back(out, oA, count);
    return true;
  }

  /** One AdamW update of a parameter (moments m, v), its gradient zeroed. False when the length % 4 ≠ 0. */
  adamw(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, s: AdamWScalars): boolean {
    const count = p.length;
    if (count % 4 !== 0 || g.length !== count || m.length !== count || v.length !== count) return false;
    const pA = this.at(p, count, 0);
    const gA = this.at(g, count, 1);
    const mA = this.at(m, count, 2);
    const vA = this.at(v, count, 3);
    this.fn.adamw!(pA, gA, mA, vA, 4 * count, s.gradScale, s.beta1, 1 - s.beta1, s.beta2, 1 - s.beta2, s.decay, s.lrOverBc1, s.invBc2, s.eps);
    this.back(p, pA, count);
    if (!this.mem.isResident(g)) g.fill(0);
    this.back(m, mA, count);
    this.back(v, vA, count);
    return true;
  }

  /**
   * dst[dstAt + r·dstStride + i] = src[srcAt + r·srcStride + i] for r < rows, i < len (float offsets). Only
   * between arrays in this memory (else false: a copy into scratch and back would cost more than the JS loop),
   * and len % 4 = 0.
   */
  copyRows(src: Float32Array, srcAt: number, srcStride: number, dst: Float32Array, dstAt: number, dstStride: number, rows: number, len: number): boolean {
    if (len % 4 !== 0 || !this.mem.isResident(src) || !this.mem.isResident(dst)) return false;
    this.fn.copy_rows!(src.byteOffset + 4 * srcAt, 4 * srcStride, dst.byteOffset + 4 * dstAt, 4 * dstStride, rows, 4 * len);
    return true;
  }

  /** Expanded RoPE tables per (cos table, direction): built once per graph's tables, kept in this memory. */
  private readonly ropeTables = new WeakMap<Float32Array, [Float32Array, Float32Array, Float32Array]>();

  /**
   * RoPE in place on the (2i, 2i+1) pairs of every head of `vec` [n, width] (row t at position t mod seqLen),
   * by −θ when `inverse`; cos/sin [seqLen, headSize/2] as ops.ts's ropeTables. False unless vec is in this
   * memory and headSize % 4 = 0 (the JS loop runs).
   */
  ropePairs(vec: Float32Array, n: number, width: number, seqLen: number, headSize: number, cos: Float32Array, sin: Float32Array, inverse: boolean): boolean {
    if (headSize % 4 !== 0 || width % headSize !== 0 || !this.mem.isResident(vec)) return false;
    let t = this.ropeTables.get(cos);
    if (t === undefined || t[0].length !== seqLen * headSize) {
      const half = headSize / 2;
      const C = this.mem.allocF32(seqLen * headSize);
      const S = this.mem.allocF32(seqLen * headSize);
      const Sinv = this.mem.allocF32(seqLen * headSize);
      for (let p = 0; p < seqLen; p++) {
        for (let i = 0; i < half; i++) {
          const c = cos[p * half + i]!;
          const s = sin[p * half + i]!;
          const o = p * headSize + 2 * i;
          C[o] = c;
          C[o + 1] = c;
          S[o] = -s;
          S[o + 1] = s;
          Sinv[o] = s;
          Sinv[o + 1] = -s;
        }
      }
      t = [C, S, Sinv];
      this.ropeTables.set(cos, t);
    }
    if (!this.mem.isResident(t[0])) return false; // the memory was full
    this.fn.rope_pairs!(vec.byteOffset, n, 4 * width, t[0].byteOffset, (inverse ? t[2] : t[1]).byteOffset, seqLen, 4 * headSize);
    return true;
  }

  /**
   * Σ (x − target)² over `count` floats in float64, and dx += g·(x − target) when dx is given. −1 (nothing
   * done) when count % 4 ≠ 0: the caller's loop runs.
   */
  mse(x: Float32Array, target: Float32Array, dx: Float32Array | null, count: number, g: number): number {
    if (count % 4 !== 0) return -1;
    if (count === 0) return 0;
    const xA = this.at(x, count, 0);
    const tA = this.at(target, count, 1);
    const dA = dx ? this.at(dx, count, 2) : 0;
    const sum = (this.fn.mse as unknown as (x: number, t: number, d: number, b: number, g: number) => number)(xA, tA, dA, 4 * count, g);
    if (dx) this.back(dx, dA, count);
    return sum;
  }

  /** y = exp(scale · |x|) over `count` floats. False when count % 4 ≠ 0 (the caller's loop runs). */
  expAbs(x: Float32Array, y: Float32Array, count: number, scale: number): boolean {
    if (count % 4 !== 0) return false;
    if (count === 0) return true;
    const xA = this.at(x, count, 0);
    const yA = this.at(y, count, 1, false);
    this.fn.exp_abs!(xA, yA, 4 * count, scale);
    this.back(y, yA, count);
    return true;
  }

  /** Σ x² over `count` floats, accumulated in float64 (NaN when the length % 4 ≠ 0: the caller's loop runs). */
  sumSquares(x: Float32Array, count: number): number {
    if (count % 4 !== 0) return NaN;
    if (count === 0) return 0;
    return (this.fn.sumsq as unknown as (x: number, bytes: number) => number)(this.at(x, count, 0), 4 * count);
  }

  /**
   * out[2r] = max of row r of x [rows, cols], out[2r + 1] = 0 when every value of the row is finite, else NaN.
   * False when cols % 4 ≠ 0.
   */
  rowMaxCheck(x: Float32Array, rows: number, cols: number, out: Float64Array): boolean {
    if (cols % 4 !== 0 || cols === 0) return false;
    const xA = this.at(x, rows * cols, 0);
    const oA = this.mem.scratch(SLOT0 + 6, 8 * rows);
    this.fn.row_maxcheck!(xA, rows, 4 * cols, oA);
    const f = this.mem.f32;
    for (let i = 0; i < 2 * rows; i++) out[i] = f[oA / 4 + i]!;
    return true;
  }
}

/** A WasmTrainerOps (over `mem`, or a memory of its own) when this engine validates the module, else null. */
export function createTrainerOps(mem?: TrainerMemory, options: { fma?: boolean } = {}): WasmTrainerOps | null {
  return createFmaOrPlain(options.fma, opsModuleBytes, (fma) => new WasmTrainerOps(mem, fma));
}
