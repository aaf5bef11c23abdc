/**
 * The WebAssembly SIMD gemm behind the STE trainer's `matmul` contract (ste-trainer/src/matmul.ts):
 *
 *     C[m, n] = op(A)[m, k] · op(B)[k, n]   (+ C when accumulate)
 *     op(A) = A stored [m, k] (transA false) or Aᵀ with A stored [k, m] (transA true)
 *     op(B) = B stored [k, n] (transB false) or Bᵀ with B stored [n, k] (transB true)
 *
 * The kernels of gemm.ts compute Y[t, i] = W[i, :] · X[t, :] with both operands row-contiguous along the
 * reduction, so X = op(A) as [m, k] rows and W = op(B)ᵀ as [n, k] rows; an operand whose reduction dimension
 * is not contiguous (transA true, transB false) is copied into the wasm memory and transposed there
 * (trainer-transpose.ts), the others are copied. Y = C (ldy = n) is copied back, or added to C when accumulating. The weight rows
 * are walked in chunks of about 128 KiB so a chunk stays in cache while every input row passes over it.
 *
 * Float32 only (Float64Array operands — the trainer's gradient checks — return false: the caller's float64
 * path handles them), and products below `minWork` multiply-adds also go back to the caller, where the copies
 * would cost more than they save. Arithmetic: float32 products summed in float32 (4 lanes, pairwise), not the
 * JS kernel's float64 — within a few ulps·√k of it. Deterministic for given shapes.
 *
 * Not thread-safe across threads by design: each thread (the trainer's and every worker) makes its own.
 */
import { gemmModule, wasmSimdSupported } from './arena.js';
import { requireWasm } from './engine.js';
import { DEFAULT_TILE_PLAN, GemmKernels } from './gemm.js';
import { FmaGemmKernels, enableRelaxedSimd } from './trainer-gemm-fma.js';
import { TRAINER_MODULE_MAX_PAGES, TrainerMemory } from './trainer-memory.js';
import { type WasmTrainerOps, createTrainerOps } from './trainer-ops.js';
import { WasmTranspose } from './trainer-transpose.js';

type FloatArray = Float32Array | Float64Array;

export interface WasmTrainerGemmOptions {
  /** Products with m·n·k below this go back to the caller (default 8192). */
  minWork?: number;
  /** Bytes of W rows per cache chunk (default 128 KiB). */
  chunkBytes?: number;
  /**
   * Use the fused multiply-add tiles (trainer-gemm-fma.ts) when the engine compiles relaxed SIMD (default
   * false). `setFlags` (e.g. Node's v8.setFlagsFromString) lets an engine that needs a flag for it turn it on.
   */
  fma?: boolean;
  setFlags?: (flags: string) => void;
  /** The memory to work in (default: a new TrainerMemory); the trainer's other kernels share it. */
  memory?: TrainerMemory;
}

// Scratch slots of the TrainerMemory used here.
const SLOT_GEMM = 0;

export class WasmTrainerGemm {
  /** The memory the kernels run in; arrays from `mem.allocF32` are used in place (no copies). */
  readonly mem: TrainerMemory;
  private readonly minWork: number;
  private readonly chunkBytes: number;
  /** Products computed here and multiply-adds done (for diagnostics). */
  calls = 0;
  macs = 0;
  /** Floats copied into and out of the wasm memory (diagnostics: what resident operands save). */
  copiedFloats = 0;

  /** The tile kernels in use: the plain SIMD ones or the FMA ones. */
  private readonly kernels: { gemm(w: number, x: number, y: number, n: number, cols: number, ldy: number, rowBegin: number, rowEnd: number): void };
  /** Whether the fused multiply-add kernels are in use. */
  readonly fma: boolean;

  constructor(options: WasmTrainerGemmOptions = {}) {
    this.mem = options.memory ?? new TrainerMemory();
    this.minWork = options.minWork ?? 8192;
    this.chunkBytes = options.chunkBytes ?? 128 * 1024;
    this.fma = options.fma === true && enableRelaxedSimd(options.setFlags);
    const memory = this.mem.memory;
    this.kernels = this.fma
      ? new FmaGemmKernels(memory, undefined, true)
      : new GemmKernels(new (requireWasm().Instance)(gemmModule(DEFAULT_TILE_PLAN, true, TRAINER_MODULE_MAX_PAGES), { env: { memory } }).exports, DEFAULT_TILE_PLAN);
    this.transposer = new WasmTranspose(memory, true);
  }

  private readonly transposer: WasmTranspose;
  /** The element-wise kernels on the same memory (for accumulating products), made on first use. */
  private ops: WasmTrainerOps | false | undefined;

  /** A zero-filled float32 array in this gemm's memory: products read and write it in place. */
  readonly allocF32 = (length: number): Float32Array => this.mem.allocF32(length);

  /**
   * The trainer's MatmulKernel: true when computed here, false to leave the product to the caller.
   * Operands in this memory (allocF32) are read where they are, a result in it is written where it is;
   * others are copied in (and out). An operand whose reduction dimension is not contiguous is transposed
   * in wasm memory (from where it is, or from a copy).
   */
  readonly matmul = (
    a: FloatArray,
    b: FloatArray,
    c: FloatArray,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
    accumulate: boolean,
  ): boolean => {
    if (!(a instanceof Float32Array) || !(b instanceof Float32Array) || !(c instanceof Float32Array)) return false;
    if (m * n * k < this.minWork || m === 0 || n === 0 || k === 0) return false;
    const mem = this.mem;
    const aIn = mem.isResident(a);
    const bIn = mem.isResident(b);
    // Aᵀ B with both operands reduced down their rows (∂L/∂Ŵ = dYᵀ X): the FMA kernels' TN tiles read them in
    // place — no transposes of either — when everything is in this memory and n is a multiple of 4
    if (transA && !transB && this.tn && aIn && bIn && mem.isResident(c) && this.kernels instanceof FmaGemmKernels) {
      if (this.kernels.gemmTN(a.byteOffset, b.byteOffset, c.byteOffset, m, n, k, m, n, n, accumulate)) {
        this.calls++;
        this.macs += m * n * k;
        return true;
      }
    }
    // A B with B row-major along n (∂L/∂X = dY Ŵ): the same tiles walking A's rows, no transpose of B — on the
    // shapes where they measured faster than transpose + NT (n ≤ 512, k ≤ 1024; the classifier's n = 4096 not)
    if (!transA && !transB && this.nn && n <= 512 && k <= 1024 && aIn && bIn && mem.isResident(c) && this.kernels instanceof FmaGemmKernels) {
      if (this.kernels.gemmNN(a.byteOffset, b.byteOffset, c.byteOffset, m, n, k, k, n, n, accumulate)) {
        this.calls++;
        this.macs += m * n * k;
        return true;
      }
    }
    // an accumulating product into a resident C adds in the FMA tiles themselves (C + the sums: the same
    // float32 add as the separate pass, so the same bits) instead of a scratch result and an add pass
    const accIn = accumulate && this.kernels instanceof FmaGemmKernels && mem.isResident(c);
    const cIn = (!accumulate || accIn) && mem.isResident(c);
    const up4 = (v: number) => (v + 3) & ~3; // keep every region 16-byte aligned
    // Scratch (floats): [x | w | y | staging], each part only when needed.
    const xF = transA || !aIn ? up4(m * k) : 0;
    const wF = !transB || !bIn ? up4(n * k) : 0;
    const yF = cIn ? 0 : up4(m * n);
    const stage = Math.max(transA && !aIn ? up4(m * k) : 0, !transB && !bIn ? up4(n * k) : 0);
    const total = xF + wF + yF + stage;
    const base = total > 0 ? mem.scratch(SLOT_GEMM, 4 * total) / 4 : 0;
    const f = mem.f32; // read after scratch(): it may have grown the memory
    const t = base + xF + wF + yF;
    const x = this.operand(a, m, k, !transA, aIn, base, t); // float index of X = op(A) [m, k]
    const w = this.operand(b, n, k, transB, bIn, base + xF, t); // float index of W = op(B)ᵀ [n, k]
    const y = cIn ? c.byteOffset / 4 : base + xF + wF;
    const chunk = Math.max(12, Math.floor(this.chunkBytes / (4 * k) / 12) * 12);
    const kernels = this.kernels;
    for (let r0 = 0; r0 < n; r0 += chunk) {
      if (accIn) (kernels as FmaGemmKernels).gemm(4 * w, 4 * x, 4 * y, m, k, n, r0, r0 + chunk < n ? r0 + chunk : n, k, k, true);
      else kernels.gemm(4 * w, 4 * x, 4 * y, m, k, n, r0, r0 + chunk < n ? r0 + chunk : n);
    }
    const mn = m * n;
    if (accIn) {
      // added in the tiles
    } else if (accumulate) {
      // c += y: in wasm when c is in this memory (a LittleBit Ŵ summed over paths, dA over products), else JS
      this.ops ??= createTrainerOps(mem) ?? false;
      if (!(this.ops !== false && mem.isResident(c) && this.ops.add(c, f.subarray(y, y + mn), c, mn))) {
        addInto(c, f, y, mn);
        this.copiedFloats += mn;
      }
    } else if (!cIn) {
      c.set(f.subarray(y, y + mn));
      this.copiedFloats += mn;
    }
    this.calls++;
    this.macs += m * n * k;
    return true;
  };

  /**
   * Float index of a product operand as the tiles read it, [rows, k] row-major (X = op(A), W = op(B)ᵀ): `src`
   * where it is when it is stored so (`direct`) and `resident` in this memory, else a copy at float index `at`;
   * stored [k, rows] instead, transposed into `at` — from where it is, or from a copy at `stage`.
   */
  private operand(src: Float32Array, rows: number, k: number, direct: boolean, resident: boolean, at: number, stage: number): number {
    const count = rows * k;
    if (direct && resident) return src.byteOffset / 4;
    let from = src.byteOffset / 4;
    if (!resident) {
      from = direct ? at : stage;
      this.mem.f32.set(src.length === count ? src : src.subarray(0, count), from);
      this.copiedFloats += count;
    }
    if (!direct) this.transposer.transpose(4 * from, 4 * at, k, rows);
    return at;
  }

  /** Use the TN tiles for Aᵀ B (FMA kernels only; see matmul). */
  tn = true;
  /** Use the NN tiles for A B on the shapes where they are faster (FMA kernels only; see matmul). */
  nn = true;

  /** Key block of causalScores (a multiple of the tiles' 4 rows; 32 of L = 128 skips 37.5% of the work). */
  causalBlock = 32;

  /**
   * Attention's causal scores for G stacked heads: S[j·L + t, p] = Σ_i Q[j·L + t, i] · K[p, i] (t, p < L),
   * computed only for the key blocks [p0, p0 + B) with p0 ≤ t: entries after t inside such a block are
   * computed too, those of later blocks are not written (the causal soft-max reads only p ≤ t and writes 0
   * after; its backward multiplies them by P = 0). Same sums, bit for bit, as the full product where written.
   * Only for q, k, s in this memory (else false: the caller runs the full product).
   */
  readonly causalScores = (q: Float32Array, k: Float32Array, s: Float32Array, G: number, L: number, hs: number): boolean => {
    const mem = this.mem;
    if (!mem.isResident(q) || !mem.isResident(k) || !mem.isResident(s) || L * L * hs * G < this.minWork) return false;
    const B = this.causalBlock;
    const kernels = this.kernels;
    for (let j = 0; j < G; j++) {
      for (let p0 = 0; p0 < L; p0 += B) {
        const p1 = p0 + B < L ? p0 + B : L;
        const row = j * L + p0; // first query row that sees this block
        kernels.gemm(k.byteOffset, q.byteOffset + 4 * row * hs, s.byteOffset + 4 * row * L, L - p0, hs, L, p0, p1);
        this.macs += (L - p0) * (p1 - p0) * hs;
      }
    }
    this.calls++;
    return true;
  };

  /**
   * Attention's products whose reduction runs over keys, for G stacked heads of a causal soft-max (the forward's
   * O = P·V, the backward's dQ = dS·K): C[j·L + t, :] = Σ_p A[j·L + t, p] · B[p, :] (A [G·L, L], B [L, hs],
   * C [G·L, hs]) with the reduction of the rows of query block [t0, t0 + causalBlock) cut at the block's end
   * (t0 + causalBlock): the terms after it have A = 0 (P, and dS = P ⊙ …, are 0 after t), so the values are
   * those of the full product — each lane sums the same nonzero terms in the same order (the cut is a multiple
   * of 4) — for ~37% fewer multiply-adds at L = 128. Needs the strided FMA tiles and a, b, c in this memory;
   * else false (the caller runs the full product).
   */
  readonly causalRows = (a: Float32Array, b: Float32Array, c: Float32Array, G: number, L: number, hs: number): boolean => {
    const mem = this.mem;
    const B = this.causalBlock;
    if (!(this.kernels instanceof FmaGemmKernels) || B % 4 !== 0 || !mem.isResident(a) || !mem.isResident(b) || !mem.isResident(c) || G * L * L * hs < this.minWork) return false;
    const kernels = this.kernels;
    const w = mem.scratch(SLOT_GEMM, 4 * ((L * hs + 3) & ~3)); // Bᵀ [hs, L] (byte address)
    this.transposer.transpose(b.byteOffset, w, L, hs);
    for (let j = 0; j < G; j++) {
      for (let t0 = 0; t0 < L; t0 += B) {
        const rows = t0 + B < L ? B : L - t0;
        const k = t0 + B < L ? t0 + B : L; // keys 0..k − 1: every p ≤ t of these rows
        const r0 = j * L + t0;
        kernels.gemm(w, a.byteOffset + 4 * r0 * L, c.byteOffset + 4 * r0 * hs, rows, k, hs, 0, hs, L, L);
        this.macs += rows * k * hs;
      }
    }
    this.calls++;
    return true;
  };

  /**
   * Attention's products that reduce over queries, for G stacked heads of a causal soft-max (the backward's
   * dV = Pᵀ·dO, dK = dSᵀ·Q): C[p, :] = Σ_j Σ_t A[j·L + t, p] · B[j·L + t, :] (A [G·L, L], B [G·L, hs], C [L, hs])
   * where A[j·L + t, p] = 0 for t < p: the keys of block [p0, p0 + causalBlock) sum over t ≥ p0 only, head
   * by head (the tiles add heads 1.. onto head 0's sums). ~37% fewer multiply-adds at L = 128; the sums are
   * the full product's up to float32 order (per head, then across heads). Needs the strided FMA tiles and a, b, c
   * in this memory; else false (the caller runs the full product).
   */
  readonly causalCols = (a: Float32Array, b: Float32Array, c: Float32Array, G: number, L: number, hs: number): boolean => {
    const mem = this.mem;
    const B = this.causalBlock;
    if (!(this.kernels instanceof FmaGemmKernels) || !mem.isResident(a) || !mem.isResident(b) || !mem.isResident(c) || G * L * L * hs < this.minWork) return false;
    const kernels = this.kernels;
    const GL = G * L;
    const xF = (L * GL + 3) & ~3;
    const x = mem.scratch(SLOT_GEMM, 4 * (xF + ((hs * GL + 3) & ~3))); // Aᵀ [L, G·L], then Bᵀ [hs, G·L] (bytes)
    const w = x + 4 * xF;
    this.transposer.transpose(a.byteOffset, x, GL, L);
    this.transposer.transpose(b.byteOffset, w, GL, hs);
    for (let p0 = 0; p0 < L; p0 += B) {
      const rows = p0 + B < L ? B : L - p0;
      for (let j = 0; j < G; j++) {
        const s = j * L + p0; // this head's queries t ≥ p0
        kernels.gemm(w + 4 * s, x + 4 * (p0 * GL + s), c.byteOffset + 4 * p0 * hs, rows, L - p0, hs, 0, hs, GL, GL, j > 0);
        this.macs += rows * (L - p0) * hs;
      }
    }
    this.calls++;
    return true;
  };
}

/** c[i] += f[y + i] for i < count (a function of its own: V8 optimises the small loop better). */
function addInto(c: Float32Array, f: Float32Array, y: number, count: number): void {
  for (let i = 0; i < count; i++) c[i] = c[i]! + f[y + i]!;
}

/** A WasmTrainerGemm when this engine validates the SIMD kernels, else null (use the JS kernel). */
export function createTrainerGemm(options: WasmTrainerGemmOptions = {}): WasmTrainerGemm | null {
  return wasmSimdSupported() ? new WasmTrainerGemm(options) : null;
}
