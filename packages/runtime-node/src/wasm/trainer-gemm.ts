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
import { WasmArena, wasmSimdSupported } from './arena.js';
import { FmaGemmKernels, enableRelaxedSimd } from './trainer-gemm-fma.js';
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
}

export class WasmTrainerGemm {
  readonly arena: WasmArena;
  private readonly minWork: number;
  private readonly chunkBytes: number;
  /** Products computed here and multiply-adds done (for diagnostics). */
  calls = 0;
  macs = 0;

  /** The tile kernels in use: the arena's plain SIMD ones or the FMA ones. */
  private readonly kernels: { gemm(w: number, x: number, y: number, n: number, cols: number, ldy: number, rowBegin: number, rowEnd: number): void };
  /** Whether the fused multiply-add kernels are in use. */
  readonly fma: boolean;

  constructor(options: WasmTrainerGemmOptions = {}) {
    this.arena = new WasmArena({ initialBytes: 4 << 20 });
    this.minWork = options.minWork ?? 8192;
    this.chunkBytes = options.chunkBytes ?? 128 * 1024;
    this.fma = options.fma === true && enableRelaxedSimd(options.setFlags);
    this.kernels = this.fma ? new FmaGemmKernels(this.arena.memory) : this.arena.kernels;
    this.transposer = new WasmTranspose(this.arena.memory);
  }

  private readonly transposer: WasmTranspose;

  /** The trainer's MatmulKernel: true when computed here, false to leave the product to the caller. */
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
    const up4 = (v: number) => (v + 3) & ~3; // keep every region 16-byte aligned
    const xF = up4(m * k);
    const wF = up4(n * k);
    const mn4 = up4(m * n);
    // [x | w | y | staging]: an operand to transpose is copied to staging (one memcpy), then transposed in wasm.
    const stage = transA || !transB ? Math.max(transA ? xF : 0, transB ? 0 : wF) : 0;
    const base = this.arena.scratch(4 * (xF + wF + mn4 + stage));
    const f = this.arena.f32; // read after scratch(): it may have grown the memory
    const x = base / 4;
    const w = x + xF;
    const y = w + wF;
    const t = y + mn4;
    if (transA) {
      f.set(a.length === m * k ? a : a.subarray(0, m * k), t);
      this.transposer.transpose(4 * t, 4 * x, k, m);
    } else f.set(a.length === m * k ? a : a.subarray(0, m * k), x);
    if (transB) f.set(b.length === n * k ? b : b.subarray(0, n * k), w);
    else {
      f.set(b.length === n * k ? b : b.subarray(0, n * k), t);
      this.transposer.transpose(4 * t, 4 * w, k, n);
    }
    const chunk = Math.max(12, Math.floor(this.chunkBytes / (4 * k) / 12) * 12);
    const kernels = this.kernels;
    for (let r0 = 0; r0 < n; r0 += chunk) {
      kernels.gemm(4 * w, 4 * x, 4 * y, m, k, n, r0, r0 + chunk < n ? r0 + chunk : n);
    }
    const mn = m * n;
    if (accumulate) {
      for (let i = 0; i < mn; i++) c[i] = c[i]! + f[y + i]!;
    } else {
      c.set(f.subarray(y, y + mn));
    }
    this.calls++;
    this.macs += m * n * k;
    return true;
  };
}

/** A WasmTrainerGemm when this engine validates the SIMD kernels, else null (use the JS kernel). */
export function createTrainerGemm(options: WasmTrainerGemmOptions = {}): WasmTrainerGemm | null {
  return wasmSimdSupported() ? new WasmTrainerGemm(options) : null;
}
