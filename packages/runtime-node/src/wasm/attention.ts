/**
 * Attention over the KV cache in WebAssembly SIMD (the model's `AttentionKernel`): the KV cache of a session
 * lives in this kernel's own wasm memory (`allocate` hands out views of it), so `attend` reads keys and values
 * where the forward wrote them — no copies; only q goes in and the heads' outputs come out (O(n · qDim)).
 *
 * Per new position t (pos = start + t) and head h, over the positions p ≤ pos of h's KV head:
 *   scores[p] = (q_h · k_p) · scale           f32x4 products, summed (l0 + l1) + (l2 + l3)
 *   e_p = exp(scores[p] − max_p scores)        the trainer's SIMD exponential (trainer-exp.ts, a few ulps)
 *   out_h = (Σ_p e_p v_p) / Σ_p e_p            4 output values at a time, positions in the inner loop
 * — what `LlamaForward`'s reference loops compute, in float32 (they sum in float64): logits move by ~1e-6,
 * far inside the 1e-4 of the golden tests. Needs headDim % 4 == 0 (every Llama shape); otherwise the session
 * keeps the reference loops.
 *
 * The memory is SHARED (a SharedArrayBuffer): growing it for a second cache or a larger scratch does not
 * detach the views already handed out (a private memory's growth would). Its allocator never frees: a forward
 * pass reuses one cache (`reset()`); each `createCache` adds its size until the kernel is dropped with its parts
 * (every session builds its own).
 *
 * The same module also has SwiGLU (silu(gate) · up, 4 at a time with the same exponential): the model's
 * `swiglu` hook, so the FFN's 'hidden' exponentials per position do not go through Math.exp.
 */
import { type AttentionKernel, type DecodeCall, type DecodeGlue, type ForwardGlue, type ModelConfig, atPos } from '@ultrasketch/model';
import { emitCopyBytes } from './gemm.js';
import { headDim, kvDim } from '@ultrasketch/model';
import { ModuleBuilder, type ValTypeName, whileLtU } from './emitter.js';
import { paramsOf, registerSignatures } from './decode-program.js';
import { type WasmInstance, type WasmMemory, type WasmModule, requireWasm } from './engine.js';
import { ExpBuilder, SIMD_OPS, expV } from './trainer-exp.js';
import { WASM32_MAX_PAGES, WASM_PAGE_BYTES, type WasmArena } from './arena.js';
import type { RowBody, ThreadPool } from '../threads.js';

/**
 * (l0 + l2) + (l1 + l3): the order the 4-position blocks of the scores loop reduce in (see `reduce4`), so a
 * position's score is the same bits whether it falls in a block or in the tail.
 */
function hsum(f: ExpBuilder, a: number): void {
  f.get(a).f32x4ExtractLane(0).get(a).f32x4ExtractLane(2).f32Add();
  f.get(a).f32x4ExtractLane(1).get(a).f32x4ExtractLane(3).f32Add();
  f.f32Add();
}

/** ExpBuilder plus i8x16.shuffle (lanes given as f32 lanes 0–7: 0–3 the first operand, 4–7 the second). */
class AttendBuilder extends ExpBuilder {
  shuffleF32(lanes: readonly [number, number, number, number]): this {
    this.code.push(0xfd, 0x0d);
    for (const l of lanes) this.code.push(4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3);
    return this;
  }
}

/**
 * Pushes [Σ a, Σ b, Σ c, Σ d] (each (l0 + l2) + (l1 + l3), as `hsum`) of four accumulators: two rounds of
 * shuffles and adds instead of four extract-and-add chains.
 */
function reduce4(f: AttendBuilder, a: number, b: number, c: number, d: number, tmp: number): void {
  // (a0+a2, b0+b2, a1+a3, b1+b3)
  f.get(a).get(b).shuffleF32([0, 4, 1, 5]).get(a).get(b).shuffleF32([2, 6, 3, 7]).f32x4Add().set(tmp);
  // (c0+c2, d0+d2, c1+c3, d1+d3), then lanes (0 + 2, 1 + 3) of both
  f.get(c).get(d).shuffleF32([0, 4, 1, 5]).get(c).get(d).shuffleF32([2, 6, 3, 7]).f32x4Add().set(a);
  f.get(tmp).get(a).shuffleF32([0, 1, 4, 5]).get(tmp).get(a).shuffleF32([2, 3, 6, 7]).f32x4Add();
}

/**
 * attend(q, out, keys, values, scores, start, n, nHeads, kvMul, hsB, kvRowB, scale, h0, h1): heads h0..h1−1 of the
 * n new positions; byte addresses; q and out [n, nHeads · hs]; keys/values rows of kvRowB bytes; scores: scratch
 * of ≥ (start + n) floats; hsB = 4·hs. A head's result does not depend on the range it is computed in (threads
 * take ranges of heads, each with its own scores scratch).
 */
function emitAttend(): ExpBuilder {
  const f = new AttendBuilder(['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f32', 'i32', 'i32']);
  const [q, out, keys, values, scores, start, n, nHeads, kvMul, hsB, kvRowB, scale, h0, h1] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
  const t = f.local('i32');
  const h = f.local('i32');
  const kvo = f.local('i32');
  const qp = f.local('i32');
  const op = f.local('i32');
  const kp = f.local('i32');
  const sp = f.local('i32');
  const sEnd = f.local('i32');
  const sFull = f.local('i32');
  const i = f.local('i32');
  const mx = f.local('f32');
  const sum = f.local('f32');
  const s = f.local('f32');
  const acc = f.local('v128');
  const v = f.local('v128');
  const k = f.local('v128');
  const p = f.local('v128');
  const vmx = f.local('v128');
  const vsum = f.local('v128');
  const inv = f.local('v128');
  const acc4 = [f.local('v128'), f.local('v128'), f.local('v128'), f.local('v128')];
  const kp1 = f.local('i32');
  const kp2 = f.local('i32');
  const kp3 = f.local('i32');
  const hsB64 = f.local('i32');

  f.get(hsB).i32Const(~63).i32And().set(hsB64);
  f.i32Const(0).set(t);
  whileLtU(f, t, n, 1, () => {
    // scores of positions 0..pos: [scores, sEnd); sFull: its whole 16-byte chunks
    f.get(scores).get(start).get(t).i32Add().i32Const(1).i32Add().i32Const(2).i32Shl().i32Add().set(sEnd);
    f.get(scores).get(sEnd).get(scores).i32Sub().i32Const(~15).i32And().i32Add().set(sFull);
    f.get(h0).set(h);
    whileLtU(f, h, h1, 1, () => {
      // q and out of (t, h); the KV head h / kvMul
      f.get(t).get(nHeads).i32Mul().get(h).i32Add().get(hsB).i32Mul().set(qp);
      f.get(out).get(qp).i32Add().set(op);
      f.get(q).get(qp).i32Add().set(qp);
      f.get(h).get(kvMul);
      f.code.push(0x6e); // i32.div_u
      f.get(hsB).i32Mul().set(kvo);
      // scores and their max
      f.f32Const(-Infinity).set(mx);
      f.get(keys).get(kvo).i32Add().set(kp);
      f.get(scores).set(sp);
      // blocks of 4 positions: q's chunk loaded once for 4 keys, 4 independent add chains (one position alone
      // was bound by the latency of its adds), the 4 sums reduced together and stored as one vector
      f.f32Const(-Infinity).f32x4Splat().set(vmx);
      whileLtU(f, sp, sFull, 16, () => {
        for (const a of acc4) f.v128Zero().set(a);
        f.get(kp).get(kvRowB).i32Add().set(kp1);
        f.get(kp1).get(kvRowB).i32Add().set(kp2);
        f.get(kp2).get(kvRowB).i32Add().set(kp3);
        f.i32Const(0).set(i);
        whileLtU(f, i, hsB, 16, () => {
          f.get(qp).get(i).i32Add().v128Load().set(v);
          [kp, kp1, kp2, kp3].forEach((ptr, r) => {
            const a = acc4[r]!;
            f.get(a).get(v).get(ptr).get(i).i32Add().v128Load().f32x4Mul().f32x4Add().set(a);
          });
        });
        reduce4(f, acc4[0]!, acc4[1]!, acc4[2]!, acc4[3]!, k);
        f.get(scale).f32x4Splat().f32x4Mul().set(v);
        f.get(sp).get(v).v128Store();
        f.get(vmx).get(v).simdOp(SIMD_OPS.f32x4_max).set(vmx);
        f.get(kp3).get(kvRowB).i32Add().set(kp);
      });
      f.get(vmx).f32x4ExtractLane(0).get(vmx).f32x4ExtractLane(1).f32Max();
      f.get(vmx).f32x4ExtractLane(2).get(vmx).f32x4ExtractLane(3).f32Max();
      f.f32Max().set(mx);
      // the last positions (fewer than 4) one at a time
      whileLtU(f, sp, sEnd, 4, () => {
        f.v128Zero().set(acc);
        f.i32Const(0).set(i);
        whileLtU(f, i, hsB, 16, () => {
          f.get(acc).get(qp).get(i).i32Add().v128Load().get(kp).get(i).i32Add().v128Load().f32x4Mul().f32x4Add().set(acc);
        });
        hsum(f, acc);
        f.get(scale).f32Mul().set(s);
        f.get(sp).get(s).f32Store();
        f.get(mx).get(s).f32Max().set(mx);
        f.get(kp).get(kvRowB).i32Add().set(kp);
      });
      // e_p = exp(s_p − max), summed: whole chunks, then the last positions one by one
      f.get(mx).f32x4Splat().set(vmx);
      f.v128Zero().set(vsum);
      f.f32Const(0).set(sum);
      f.get(scores).set(sp);
      whileLtU(f, sp, sFull, 16, () => {
        f.get(sp).v128Load().get(vmx).simdOp(SIMD_OPS.f32x4_sub).set(v);
        expV(f, v, k, p);
        f.set(v);
        f.get(sp).get(v).v128Store();
        f.get(vsum).get(v).f32x4Add().set(vsum);
      });
      whileLtU(f, sp, sEnd, 4, () => {
        f.get(sp).f32Load().f32x4Splat().get(vmx).simdOp(SIMD_OPS.f32x4_sub).set(v);
        expV(f, v, k, p);
        f.f32x4ExtractLane(0).set(s);
        f.get(sp).get(s).f32Store();
        f.get(sum).get(s).f32Add().set(sum);
      });
      f.f32Const(1);
      hsum(f, vsum);
      f.get(sum).f32Add().f32Div().f32x4Splat().set(inv);
      // out: 16 values at a time (4 independent chains sharing each weight's splat), positions in the inner loop;
      // every output is the same sum, in the same order, as in the 4-at-a-time loop after it
      f.i32Const(0).set(i);
      whileLtU(f, i, hsB64, 64, () => {
        for (const a of acc4) f.v128Zero().set(a);
        f.get(values).get(kvo).i32Add().get(i).i32Add().set(kp);
        f.get(scores).set(sp);
        whileLtU(f, sp, sEnd, 4, () => {
          f.get(sp).f32Load().f32x4Splat().set(p);
          acc4.forEach((a, c) => {
            f.get(a).get(p).get(kp).v128Load(16 * c).f32x4Mul().f32x4Add().set(a);
          });
          f.get(kp).get(kvRowB).i32Add().set(kp);
        });
        acc4.forEach((a, c) => {
          f.get(op).get(i).i32Add().get(a).get(inv).f32x4Mul().v128Store(16 * c);
        });
      });
      whileLtU(f, i, hsB, 16, () => {
        f.v128Zero().set(acc);
        f.get(values).get(kvo).i32Add().get(i).i32Add().set(kp);
        f.get(scores).set(sp);
        whileLtU(f, sp, sEnd, 4, () => {
          f.get(acc).get(sp).f32Load().f32x4Splat().get(kp).v128Load().f32x4Mul().f32x4Add().set(acc);
          f.get(kp).get(kvRowB).i32Add().set(kp);
        });
        f.get(op).get(i).i32Add().get(acc).get(inv).f32x4Mul().v128Store();
      });
    });
  });
  return f;
}

/**
 * swiglu(g, u, count): g[i] = g[i] / (1 + exp(−g[i])) · u[i], 4 at a time (count rounded up to 4: the caller
 * pads). exp through expV (its clamp keeps e^−g finite: g < −88 gives ≈ −g·1e-38, i.e. 0 in float32 terms).
 */
function emitSwiglu(): ExpBuilder {
  const f = new ExpBuilder(['i32', 'i32', 'i32']);
  const [g, u, count] = [0, 1, 2];
  const i = f.local('i32');
  const end = f.local('i32');
  const x = f.local('v128');
  const v = f.local('v128');
  const k = f.local('v128');
  const p = f.local('v128');
  f.get(count).i32Const(2).i32Shl().set(end);
  f.i32Const(0).set(i);
  whileLtU(f, i, end, 16, () => {
    f.get(g).get(i).i32Add().v128Load().set(x);
    f.v128Zero().get(x).simdOp(SIMD_OPS.f32x4_sub).set(v); // −g
    expV(f, v, k, p);
    f.f32Const(1).f32x4Splat().f32x4Add().set(v); // 1 + e^−g
    f.get(g).get(i).i32Add();
    f.get(x).get(v).simdOp(F32X4_DIV);
    f.get(u).get(i).i32Add().v128Load().f32x4Mul();
    f.v128Store();
  });
  return f;
}
const F32X4_DIV = 0xe7;
const F32_SQRT = 0x91;

/**
 * The forward's per-layer glue (issue 12, fourth slice), so a layer's work between its products is a few wasm
 * calls over arrays in this memory instead of JS loops. All in float32 (the JS loops round float64 results to
 * float32 on store): llama2.c computes the same way.
 *
 * rmsnorm(out, x, y, w, rows, dimB, dim, eps): if y ≠ 0, x += y first (the residual add, stored); then
 * out = w ⊙ x · 1/√(mean(x²) + eps) row by row. The sum of squares in f32x4 lanes reduced (l0 + l2) + (l1 + l3).
 */
function emitRmsNorm(): ExpBuilder {
  const f = new ExpBuilder(['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'f32', 'f32']);
  const [out, x, y, w, rows, dimB, dim, eps] = [0, 1, 2, 3, 4, 5, 6, 7];
  const t = f.local('i32');
  const j = f.local('i32');
  const acc = f.local('v128');
  const xv = f.local('v128');
  const iv = f.local('v128');
  whileLtU(f, t, rows, 1, () => {
    f.v128Zero().set(acc);
    f.i32Const(0).set(j);
    f.block().get(y).i32Eqz().brIf(0);
    // x += y, stored; the sum of squares of the new x
    whileLtU(f, j, dimB, 16, () => {
      f.get(x).get(j).i32Add();
      f.get(x).get(j).i32Add().v128Load().get(y).get(j).i32Add().v128Load().f32x4Add().tee(xv);
      f.v128Store();
      f.get(acc).get(xv).get(xv).f32x4Mul().f32x4Add().set(acc);
    });
    f.get(y).get(dimB).i32Add().set(y);
    f.end();
    whileLtU(f, j, dimB, 16, () => {
      f.get(x).get(j).i32Add().v128Load().tee(xv).get(xv).f32x4Mul().get(acc).f32x4Add().set(acc);
    });
    // inv = 1 / √(ss / dim + eps)
    f.f32Const(1);
    hsum(f, acc);
    f.get(dim).f32Div().get(eps).f32Add();
    f.code.push(F32_SQRT);
    f.f32Div().f32x4Splat().set(iv);
    f.i32Const(0).set(j);
    whileLtU(f, j, dimB, 16, () => {
      f.get(out).get(j).i32Add();
      f.get(w).get(j).i32Add().v128Load().get(iv).get(x).get(j).i32Add().v128Load().f32x4Mul().f32x4Mul();
      f.v128Store();
    });
    f.get(x).get(dimB).i32Add().set(x);
    f.get(out).get(dimB).i32Add().set(out);
  });
  return f;
}

/**
 * rope(src, dst, cos, sin, rows, rowB, hsB, halfB, aShift, bOffB, start): each head (hsB bytes) of each row
 * (rowB bytes) of src, rotated for position start + row, into dst (may be src). Pair i of a head is (a, b) with
 * a = i << aShift (bytes; 1: llama2.c's adjacent pairs, 0: halves) and b = a + bOffB; cos/sin tables [position,
 * halfB bytes]. a' = a·c − b·s, b' = a·s + b·c, as `LlamaForward.rope`.
 */
function emitRope(): ExpBuilder {
  const f = new ExpBuilder(['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [src, dst, cos, sin, rows, rowB, hsB, halfB, aShift, bOffB, start] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const t = f.local('i32');
  const h = f.local('i32');
  const i = f.local('i32');
  const cp = f.local('i32');
  const sp = f.local('i32');
  const pa = f.local('i32');
  const qa = f.local('i32');
  const c = f.local('f32');
  const s = f.local('f32');
  const v0 = f.local('f32');
  const v1 = f.local('f32');
  whileLtU(f, t, rows, 1, () => {
    f.get(start).get(t).i32Add().get(halfB).i32Mul().set(cp);
    f.get(sin).get(cp).i32Add().set(sp);
    f.get(cos).get(cp).i32Add().set(cp);
    f.i32Const(0).set(h);
    whileLtU(f, h, rowB, 0, () => {
      f.i32Const(0).set(i);
      whileLtU(f, i, halfB, 4, () => {
        f.get(cp).get(i).i32Add().f32Load().set(c);
        f.get(sp).get(i).i32Add().f32Load().set(s);
        f.get(i).get(aShift).i32Shl().get(h).i32Add().set(pa);
        f.get(src).get(pa).i32Add().tee(qa).f32Load().set(v0);
        f.get(qa).get(bOffB).i32Add().f32Load().set(v1);
        f.get(dst).get(pa).i32Add().tee(qa);
        f.get(v0).get(c).f32Mul().get(v1).get(s).f32Mul().f32Sub().f32Store();
        f.get(qa).get(bOffB).i32Add();
        f.get(v0).get(s).f32Mul().get(v1).get(c).f32Mul().f32Add().f32Store();
      });
      f.get(h).get(hsB).i32Add().set(h);
    });
    f.get(src).get(rowB).i32Add().set(src);
    f.get(dst).get(rowB).i32Add().set(dst);
  });
  return f;
}

/** add(x, y, bytes): x += y, 4 at a time (bytes a multiple of 16). */
function emitAdd(): ExpBuilder {
  const f = new ExpBuilder(['i32', 'i32', 'i32']);
  const [x, y, bytes] = [0, 1, 2];
  const j = f.local('i32');
  whileLtU(f, j, bytes, 16, () => {
    f.get(x).get(j).i32Add();
    f.get(x).get(j).i32Add().v128Load().get(y).get(j).i32Add().v128Load().f32x4Add();
    f.v128Store();
  });
  return f;
}

function addFunctions(m: ModuleBuilder): void {
  m.addFunction('attend', emitAttend());
  m.addFunction('swiglu', emitSwiglu());
  m.addFunction('rmsnorm', emitRmsNorm());
  m.addFunction('rope', emitRope());
  m.addFunction('add', emitAdd());
  m.addFunction('copy', emitCopyBytes());
}

let compiled: { module: WasmModule; sigs: ReadonlyMap<string, readonly ValTypeName[]> } | undefined;
function attentionModule(): { module: WasmModule; sigs: ReadonlyMap<string, readonly ValTypeName[]> } {
  if (!compiled) {
    const m = new ModuleBuilder({ module: 'env', name: 'memory', minPages: 1, maxPages: WASM32_MAX_PAGES, shared: true });
    addFunctions(m);
    compiled = { module: new (requireWasm().Module)(m.emit()), sigs: m.signatures() };
  }
  return compiled;
}

/** The module's bytes (for the tests' WebAssembly.validate). */
export function emitAttentionModule(): Uint8Array {
  const m = new ModuleBuilder({ module: 'env', name: 'memory', minPages: 1, maxPages: WASM32_MAX_PAGES, shared: true });
  addFunctions(m);
  return m.emit();
}

/** Single-thread cost of attention per multiply-add of q·k and of the weighted sum (ns, rough). */
const ATTENTION_NS_PER_MAC = 0.15;
/**
 * Single-thread cost of the glue per value (ns, rough; CPU time of a stories3M 512-token prefill's calls on the
 * development VM, /tmp-script measurement in results §2.1 fifth slice): the pool's threshold and chunking use it.
 */
const GLUE_NS = { rmsNorm: 0.5, rope: 1, add: 0.4, swiglu: 2 } as const;

export class WasmAttention implements AttentionKernel, ForwardGlue {
  readonly memory: WasmMemory;
  /** The memory is shared (thread pools may split the heads of `attend`; see threads.ts). */
  readonly shared = true;
  /** The arena this kernel allocates from (its memory is the arena's), or undefined: a memory of its own. */
  readonly arena: WasmArena | undefined;
  /** The pool splitting this kernel's heads across threads (set by the pool); undefined: one thread. */
  threads: ThreadPool | undefined;
  private readonly instance: WasmInstance;
  private readonly attendFn: (...a: number[]) => void;
  private readonly swigluFn: (...a: number[]) => void;
  private readonly rmsNormFn: (...a: number[]) => void;
  private readonly ropeFn: (...a: number[]) => void;
  private readonly addFn: (...a: number[]) => void;
  private readonly copyFn: (...a: number[]) => void;
  /**
   * Arrays handed out by `allocate`/`scratch` (views of this memory): attend and swiglu read them in place. Over
   * an arena it is the arena's set, so its products read and write the forward's activations in place too.
   */
  private readonly owned: WeakSet<Float32Array>;
  /** The forward's glue (this kernel) when the model's widths allow it (dim, kvDim, hiddenDim multiples of 4). */
  readonly glue: ForwardGlue | undefined;
  /** Bytes handed out by `scratch` (the forward's activations, RoPE tables, norm weights). */
  glueBytes = 0;
  private swAt = 0;
  private swBytes = 0;
  private top = 16;
  private scratchAt = 0;
  private scratchBytes = 0;
  private heap: Float32Array;
  private readonly hs: number;
  private readonly qd: number;
  private readonly kvRowB: number;
  private readonly kvMul: number;
  private readonly scale: number;
  /** Bytes handed out for KV caches. */
  cacheBytes = 0;
  /** Bytes this kernel took from its arena (0 with a memory of its own). */
  private lent = 0;

  /** A float32 view of the whole memory, current (the arena's other users may have grown it). */
  private get heapNow(): Float32Array {
    if (this.heap.length * 4 !== this.memory.buffer.byteLength) this.heap = new Float32Array(this.memory.buffer);
    return this.heap;
  }

  /**
   * `arena`: a SHARED arena to allocate the KV cache and the forward's activations from (the kernel then runs
   * over the arena's memory, and the arena's dense products read their inputs and write their outputs in place:
   * no copy into and out of its scratch per product — wasmForwardParts does this); otherwise the kernel has a
   * shared memory of its own.
   */
  constructor(readonly config: ModelConfig, arena?: WasmArena) {
    this.hs = headDim(config);
    this.qd = config.nHeads * this.hs;
    this.kvRowB = kvDim(config) * 4;
    this.kvMul = config.nHeads / config.nKvHeads;
    this.scale = Math.fround(1 / Math.sqrt(this.hs));
    const wasm = requireWasm();
    if (arena && !arena.shared) throw new RangeError('WasmAttention: the arena must be shared (its views must survive growth)');
    this.arena = arena;
    this.owned = arena ? arena.views : new WeakSet<Float32Array>();
    this.memory = arena ? arena.memory : new wasm.Memory({ initial: 1, maximum: WASM32_MAX_PAGES, shared: true });
    this.instance = new wasm.Instance(attentionModule().module, { env: { memory: this.memory } });
    registerSignatures(this.instance.exports, attentionModule().sigs); // for decode plans (see `decode`)
    this.attendFn = this.instance.exports.attend as (...a: number[]) => void;
    this.swigluFn = this.instance.exports.swiglu as (...a: number[]) => void;
    this.rmsNormFn = this.instance.exports.rmsnorm as (...a: number[]) => void;
    this.ropeFn = this.instance.exports.rope as (...a: number[]) => void;
    this.addFn = this.instance.exports.add as (...a: number[]) => void;
    this.copyFn = this.instance.exports.copy as (...a: number[]) => void;
    const c = config;
    this.glue = c.dim % 4 === 0 && kvDim(c) % 4 === 0 && c.hiddenDim % 4 === 0 ? this : undefined;
    this.heap = new Float32Array(this.memory.buffer);
  }

  /** Whether this kernel can serve a config (head width a multiple of 4). */
  static supports(config: ModelConfig): boolean {
    return headDim(config) % 4 === 0 && config.nHeads % config.nKvHeads === 0;
  }

  private reserve(bytes: number): number {
    if (this.arena) {
      const at = this.arena.lend(bytes);
      this.lent += bytes;
      return at;
    }
    const at = Math.ceil(this.top / 16) * 16;
    const end = at + bytes;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      this.memory.grow(Math.max(Math.ceil((end - have) / WASM_PAGE_BYTES), Math.ceil(have / WASM_PAGE_BYTES / 4)));
      this.heap = new Float32Array(this.memory.buffer);
    }
    this.top = end;
    return at;
  }

  allocate(length: number): Float32Array {
    const a = this.view(length);
    this.cacheBytes += length * 4;
    return a;
  }

  private view(length: number): Float32Array {
    const at = this.reserve(length * 4); // may grow the memory: read its buffer after
    const a = new Float32Array(this.heapNow.buffer, at, length);
    this.owned.add(a);
    return a;
  }

  // --- ForwardGlue (arrays from allocate/scratch; addresses are their byte offsets in this memory)

  scratch(length: number): Float32Array {
    // rounded up to whole 16-byte chunks (the SIMD loops run over whole chunks)
    const a = this.view(Math.ceil(length / 4) * 4).subarray(0, length);
    this.owned.add(a);
    this.glueBytes += Math.ceil(length / 4) * 16;
    return a;
  }

  // With a thread pool, a prefill's glue is split like a product (issue 12, fifth slice): the norm and RoPE by
  // rows (each row is independent), the add and SwiGLU by element ranges; every row/element is computed by the
  // same function on the same inputs whichever thread runs it (bit-identical), and a one-token call (a few µs)
  // stays under the pool's threshold, so generation never pays a hand-off for it.

  rmsNorm(out: Float32Array, x: Float32Array, xRow: number, add: Float32Array | undefined, weight: Float32Array, n: number, dim: number, eps: number): void {
    const fn = this.rmsNormFn;
    const dimB = dim * 4;
    const outAt = out.byteOffset;
    const xAt = x.byteOffset + xRow * dimB;
    const addAt = add ? add.byteOffset : 0;
    const pool = this.threads;
    if (!pool) {
      fn(outAt, xAt, addAt, weight.byteOffset, n, dimB, dim, eps);
      return;
    }
    pool.rows(n, n * dim * GLUE_NS.rmsNorm, 1, (call, r0, r1) =>
      call(fn, outAt + r0 * dimB, xAt + r0 * dimB, addAt && addAt + r0 * dimB, weight.byteOffset, r1 - r0, dimB, dim, eps),
    );
  }

  rope(src: Float32Array, dst: Float32Array, dstRow: number, cos: Float32Array, sin: Float32Array, n: number, rowLen: number, headDim: number, start: number, pairs: boolean): void {
    const fn = this.ropeFn;
    const halfB = headDim * 2;
    const rowB = rowLen * 4;
    const srcAt = src.byteOffset;
    const dstAt = dst.byteOffset + dstRow * rowB;
    const pool = this.threads;
    if (!pool) {
      fn(srcAt, dstAt, cos.byteOffset, sin.byteOffset, n, rowB, headDim * 4, halfB, pairs ? 1 : 0, pairs ? 4 : halfB, start);
      return;
    }
    pool.rows(n, n * rowLen * GLUE_NS.rope, 1, (call, r0, r1) =>
      call(fn, srcAt + r0 * rowB, dstAt + r0 * rowB, cos.byteOffset, sin.byteOffset, r1 - r0, rowB, headDim * 4, halfB, pairs ? 1 : 0, pairs ? 4 : halfB, start + r0),
    );
  }

  add(x: Float32Array, y: Float32Array, count: number): void {
    const fn = this.addFn;
    const pool = this.threads;
    if (!pool) {
      fn(x.byteOffset, y.byteOffset, count * 4);
      return;
    }
    const xAt = x.byteOffset;
    const yAt = y.byteOffset;
    // count is a multiple of 4: ranges of whole 16-byte chunks
    pool.rows(count, count * GLUE_NS.add, 4, (call, i0, i1) => call(fn, xAt + i0 * 4, yAt + i0 * 4, (i1 - i0) * 4));
  }

  copyRows(src: Float32Array, dst: Float32Array, dstRow: number, n: number, rowLen: number): void {
    const from = src.byteOffset / 4;
    this.heapNow.copyWithin(dst.byteOffset / 4 + dstRow * rowLen, from, from + n * rowLen);
  }

  attend(keys: Float32Array, values: Float32Array, q: Float32Array, out: Float32Array, start: number, n: number): void {
    const qBytes = n * this.qd * 4;
    const nHeads = this.config.nHeads;
    // q and out in this memory (the forward's glue scratch) are read and written in place; others are copied
    const inPlace = this.owned.has(q) && this.owned.has(out);
    // one scores region per head: threads that take ranges of heads each use their first head's region
    const scoreBytes = Math.ceil((start + n + 4) / 4) * 16;
    const need = (inPlace ? 0 : 2 * qBytes) + nHeads * scoreBytes;
    if (need > this.scratchBytes) {
      this.scratchBytes = Math.max(need, Math.ceil(this.scratchBytes * 1.5));
      this.scratchAt = this.reserve(this.scratchBytes);
    }
    const qAt = inPlace ? q.byteOffset : this.scratchAt;
    const outAt = inPlace ? out.byteOffset : qAt + qBytes;
    const scoresAt = inPlace ? this.scratchAt : outAt + qBytes;
    if (!inPlace) this.heapNow.set(q.subarray(0, n * this.qd), qAt / 4);
    const fn = this.attendFn;
    const hsB = this.hs * 4;
    const pool = this.threads;
    if (pool) {
      const body: RowBody = (call, h0, h1) =>
        call(fn, qAt, outAt, keys.byteOffset, values.byteOffset, scoresAt + h0 * scoreBytes, start, n, nHeads, this.kvMul, hsB, this.kvRowB, this.scale, h0, h1);
      pool.rows(nHeads, n * nHeads * (start + (n + 1) / 2) * this.hs * 2 * ATTENTION_NS_PER_MAC, 1, body);
    } else fn(qAt, outAt, keys.byteOffset, values.byteOffset, scoresAt, start, n, nHeads, this.kvMul, hsB, this.kvRowB, this.scale, 0, nHeads);
    if (!inPlace) out.set(this.heapNow.subarray(outAt / 4, outAt / 4 + n * this.qd));
  }

  /**
   * The glue's one-token calls for a decode plan (model's DecodeGlue): each the call its method above makes for
   * n = 1 on one thread (the same function, the same arguments), the position symbolic; undefined for arrays
   * outside this memory (the plan then falls back to the forward's calls).
   */
  readonly decode: DecodeGlue = {
    rmsNorm: (out, x, add, weight, dim, eps) =>
      this.call(this.rmsNormFn, [out.byteOffset, x.byteOffset, add ? add.byteOffset : 0, weight.byteOffset, 1, dim * 4, dim, eps], [out, x, weight, ...(add ? [add] : [])]),
    rope: (src, dst, toRowPos, cos, sin, rowLen, headDim, pairs) =>
      this.call(
        this.ropeFn,
        [src.byteOffset, toRowPos ? atPos(dst.byteOffset, rowLen * 4) : dst.byteOffset, cos.byteOffset, sin.byteOffset, 1, rowLen * 4, headDim * 4, headDim * 2, pairs ? 1 : 0, pairs ? 4 : headDim * 2, atPos(0, 1)],
        [src, dst, cos, sin],
      ),
    copyRowToPos: (src, dst, rowLen) => this.call(this.copyFn, [atPos(dst.byteOffset, rowLen * 4), src.byteOffset, rowLen * 4], [src, dst]),
    attend: (keys, values, q, out, capacity) => {
      // the scores region of attend at its largest position (the region only grows; this address stays ours)
      const need = this.config.nHeads * Math.ceil((capacity + 4) / 4) * 16;
      if (need > this.scratchBytes) {
        this.scratchBytes = need;
        this.scratchAt = this.reserve(need);
      }
      const nHeads = this.config.nHeads;
      const args = [q.byteOffset, out.byteOffset, keys.byteOffset, values.byteOffset, this.scratchAt, atPos(0, 1), 1, nHeads, this.kvMul, this.hs * 4, this.kvRowB, this.scale, 0, nHeads];
      return this.call(this.attendFn, args, [keys, values, q, out]);
    },
    swiglu: (gate, up, count) => (count % 4 === 0 ? this.call(this.swigluFn, [gate.byteOffset, up.byteOffset, count], [gate, up]) : undefined),
    add: (x, y, count) => this.call(this.addFn, [x.byteOffset, y.byteOffset, count * 4], [x, y]),
  };

  /** A decode call of one of this module's functions, when every array it touches lives in this memory. */
  private call(fn: (...a: number[]) => void, args: DecodeCall['args'], arrays: Float32Array[]): DecodeCall | undefined {
    return arrays.every((a) => this.owned.has(a)) ? { fn, params: paramsOf(fn), args } : undefined;
  }

  /** The module and its exports (a thread pool instantiates the same over this memory). */
  get modules(): { module: WasmModule; exports: Record<string, unknown> }[] {
    return [{ module: attentionModule().module, exports: this.instance.exports }];
  }

  swiglu(gate: Float32Array, up: Float32Array, count: number): void {
    if (count % 4 === 0 && this.owned.has(gate) && this.owned.has(up)) {
      // in place, in this memory
      const fn = this.swigluFn;
      const pool = this.threads;
      const gAt = gate.byteOffset;
      const uAt = up.byteOffset;
      if (!pool) fn(gAt, uAt, count);
      else pool.rows(count, count * GLUE_NS.swiglu, 4, (call, i0, i1) => call(fn, gAt + i0 * 4, uAt + i0 * 4, i1 - i0));
      return;
    }
    const padded = Math.ceil(count / 4) * 4;
    if (2 * padded * 4 > this.swBytes) {
      this.swBytes = 2 * padded * 4;
      this.swAt = this.reserve(this.swBytes);
    }
    const gAt = this.swAt;
    const uAt = gAt + padded * 4;
    const heap = this.heapNow;
    heap.set(gate.subarray(0, count), gAt / 4);
    heap.set(up.subarray(0, count), uAt / 4);
    this.swigluFn(gAt, uAt, count);
    gate.set(heap.subarray(gAt / 4, gAt / 4 + count));
  }

  /** Bytes of the kernel's wasm memory (KV caches, scratch, headroom); over an arena, the bytes it lent. */
  get reservedBytes(): number {
    return this.arena ? this.lent : this.memory.buffer.byteLength;
  }

  /** Bytes of the kernel's scratch (q, out, scores). */
  get scratchSize(): number {
    return this.scratchBytes + this.swBytes + this.glueBytes;
  }
}
