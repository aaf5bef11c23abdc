import { type CodecContext, ErrorCodes, UltraSketchError, f16BitsToF32 } from '@ultrasketch/core';
import {
  type LittleBitFactors,
  type LittleBitOptions,
  type LittleBitParams,
  dualSvidFactors,
  littlebitCodec,
  littlebitRank,
  pathDense,
  registerLittleBitCodec,
  toPath,
  unpackSigns,
} from '@ultrasketch/littlebit';
import { type FloatArray, allocFloat32, matmul } from './matmul.js';
import { expOfAbs } from './ops.js';
import { registerProviderFactory } from './plan.js';
import type { Param, WeightProvider } from './providers.js';

/**
 * LittleBit quantization-aware training (methods.md §2; docs/ste-trainer.md §2).
 *
 * Per path p (1, or 2 with the residual path), trainable float masters:
 *   U [out, r], V [in, r]  — latent real factors (init: Dual-SVID's U' = U√Σ, V' = V√Σ, so sign(U) = U_s);
 *   h [out], g [in], ℓ [r] — the scales (init: Dual-SVID's, before f16 rounding; decay off).
 * Forward (dense, for training):
 *   A = sign(U) diag(ℓ) [out, r],  B = diag(g) sign(V) [in, r],  Ŵ = Σ_p diag(h) A Bᵀ,
 *   sign(x) = −1 for x < 0, else +1 (sign(0) = +1, as the codec's packing).
 * Backward, from G = ∂L/∂Ŵ [out, in], per path (all linear in G):
 *   GB = G B [out, r];                 dA = diag(h) GB              (∂L/∂A)
 *   dB = Gᵀ (diag(h) A) [in, r]                                     (∂L/∂B)
 *   dh_i = Σ_j G_ij (A Bᵀ)_ij = Σ_k A_ik GB_ik
 *   dℓ_k = Σ_i dA_ik sign(U)_ik        (A_ik = sign(U_ik) ℓ_k)
 *   dg_j = Σ_k dB_jk sign(V)_jk        (B_jk = g_j sign(V_jk))
 *   dU_ik = dA_ik ℓ_k SmoothSign′(U_ik),  dV_jk = dB_jk g_j SmoothSign′(V_jk)
 * where SmoothSign′(x) = k(1 − tanh²(kx)) with k = 100 (`smoothK`): the derivative of tanh(kx), used as the
 * surrogate for sign's zero-almost-everywhere derivative (the paper's "SmoothSign 100·(1 − tanh²(100x))").
 * NOTE the scale: it is ≈ 0 once |x| ≳ 0.05 (1 − tanh²(5) ≈ 1.8e-4), so only latent entries near zero — the
 * ones close to flipping — get a gradient; the scales carry most of the training.
 * `toCodecParams()` packs sign(U), sign(V)ᵀ exactly as the codec stores them (signs.ts) and rounds h, g, ℓ to
 * f16 (`toPath`), so decode(toCodecParams()) equals this forward up to the f16 rounding of the scales.
 *
 * With the codec's opt-in refinements (`lsRounds` and/or `refineRounds`, optionally `refineSigns`,
 * `refineObjective: 'activation'`; docs/littlebit.md) the init is the codec's own `encode` result instead —
 * exactly what a post-training bundle would store:
 *   sign(U), sign(V) = the stored U_s, V_s of each path (after sign refits / backfitting);
 *   h, g, ℓ = the stored f16 scales (as float), so the initial Ŵ = decode(encode(W)) up to summation order;
 *   |U|, |V| = the magnitudes of the plain Dual-SVID real factors |U√Σ|, |V√Σ| of that path (path 1 of W,
 *   path 2 of W − Ŵ₁ with the plain Ŵ₁ — the factors the refinement starts from), floored at 1e-6·max so that
 *   a stored −1 never lands on ±0 (sign(0) = +1). An entry whose sign the refinement flipped keeps its
 *   Dual-SVID magnitude: it starts as far from flipping back as Dual-SVID was from zero there.
 * Without refinement options the init is unchanged (Dual-SVID's unrounded factors and scales, above).
 * `refineObjective: 'activation'` needs `context.saliency` (E[a_j²] from calibration), as encode does.
 */

export interface LittleBitProviderOptions {
  name: string;
  rows: number;
  cols: number;
  weight: Float32Array;
  /**
   * Raw littlebit codec options (bpw or rank, residual, rankRounding, oversampling, powerIterations, and the
   * refinements lsRounds, refineSigns, refineRounds, refineObjective).
   */
  codecOptions?: Record<string, unknown>;
  context?: Partial<CodecContext>;
  /** SmoothSign sharpness k (default 100). */
  smoothK?: number;
  /** Weight decay on the latent factors U, V (default false; scales never decay). */
  decay?: boolean;
  /**
   * Offer the low-rank form (WeightProvider.factorRank: Ŵ = [hA_1 … hA_P] [B_1 … B_P]ᵀ, never built by the
   * CPU graph) where it has fewer multiply-adds than Ŵ (default true; false: the graph uses weight()/backward()).
   */
  lowRank?: boolean;
  dtype?: 'f32' | 'f64';
}

/** The surrogate derivative of sign: k·(1 − tanh²(k·x)) (default k = 100). */
export function smoothSignGrad(x: number, k = 100): number {
  const t = Math.tanh(k * x);
  return k * (1 - t * t);
}

interface PathState<T extends FloatArray> {
  U: Param<T>;
  V: Param<T>;
  h: Param<T>;
  g: Param<T>;
  l: Param<T>;
}

/**
 * Scratch of all paths side by side: path p's rank-r block is columns p·r … p·r + r − 1 of each [·, P·r]
 * matrix. Ŵ = Σ_p diag(h_p) A_p B_pᵀ is then ONE product [hA_1 … hA_P] [B_1 … B_P]ᵀ with reduction P·r, and
 * the backward's G B and Gᵀ hA one product each (G transposed once, not once per path): fewer, longer
 * products run closer to the gemm's peak than P short ones plus an accumulate (docs/ste-trainer.md §8 "Third
 * pass"). With one path it is exactly the per-path layout.
 */
interface Scratch<T extends FloatArray> {
  /** A = [sign(U_p) diag(ℓ_p)] [out, P·r]. */
  A: T;
  /** [hA | B] packed (the low-rank form's factors()): hA = diag(h_p) A per block, then B. */
  hAB: T;
  /** hA = diag(h_p) A [out, P·r] (a view of hAB). */
  hA: T;
  /** B = [diag(g_p) sign(V_p)] [in, P·r] (a view of hAB). */
  B: T;
  /** [G B | Gᵀ hA] packed: backward()'s products ([out, P·r] then [in, P·r]). */
  grad: T;
}

export class LittleBitProvider<T extends FloatArray = Float32Array> implements WeightProvider<T> {
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  readonly codecId = 'littlebit';
  readonly trainable = true;
  readonly rank: number;
  readonly options: LittleBitOptions;
  readonly smoothK: number;
  /** P·r when the low-rank form is offered (see WeightProvider.factorRank), else 0. */
  readonly factorRank: number;
  private readonly paths: PathState<T>[];
  private readonly scratch: Scratch<T>;
  private readonly out: T;

  constructor(o: LittleBitProviderOptions) {
    this.name = o.name;
    this.rows = o.rows;
    this.cols = o.cols;
    this.smoothK = o.smoothK ?? 100;
    if (!(this.smoothK > 0)) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `littlebit provider: smoothK ${this.smoothK} must be > 0`, { source: o.name });
    this.options = littlebitCodec.resolveOptions(o.codecOptions ?? {});
    const seed = o.context?.seed ?? 0;
    const rows = o.rows;
    const cols = o.cols;
    const r = littlebitRank(this.options, rows, cols, o.name);
    this.rank = r;
    // Exactly the codec's encode (same SVD settings and seeds), keeping the real factors.
    const svd = { oversampling: this.options.oversampling, powerIterations: this.options.powerIterations };
    const factors: LittleBitFactors[] = [dualSvidFactors({ rows, cols, data: o.weight }, r, { ...svd, seed })];
    if (this.options.residual) {
      const approx = pathDense(toPath(factors[0]!, o.name), rows, cols, r).data;
      const res = new Float32Array(rows * cols);
      for (let i = 0; i < res.length; i++) res[i] = o.weight[i]! - approx[i]!;
      factors.push(dualSvidFactors({ rows, cols, data: res }, r, { ...svd, seed: (seed + 1) >>> 0 }));
    }
    // With refinements: start from the codec's own encode (stored signs and f16 scales of every path).
    const refined = hasRefinement(this.options)
      ? littlebitCodec.encode(o.weight, rows, cols, this.options, {
          name: o.name,
          seed,
          ...(o.context?.saliency ? { saliency: o.context.saliency } : {}),
        })
      : undefined;
    const f64 = o.dtype === 'f64';
    // float32 arrays from the trainer's allocator (Node: the wasm kernels' memory, so Ŵ, the factors and the
    // parameters are used in place by the gemm and AdamW)
    const mk = (n: number) => (f64 ? new Float64Array(n) : allocFloat32(n)) as T;
    const from = (a: ArrayLike<number>) => {
      const t = mk(a.length);
      for (let i = 0; i < a.length; i++) t[i] = a[i]!;
      return t;
    };
    const param = (name: string, a: ArrayLike<number>, decay: boolean): Param<T> => ({ name, data: from(a), grad: mk(a.length), decay });
    const decay = o.decay ?? false;
    this.paths = factors.map((f, p) => {
      const pre = `${o.name}/${p === 0 ? '' : 'res_'}`;
      const stored = refined?.paths[p];
      let init = { U: f.uPrime.data as ArrayLike<number>, V: f.vPrime.data as ArrayLike<number>, h: f.h as ArrayLike<number>, g: f.g as ArrayLike<number>, l: f.l as ArrayLike<number> };
      if (stored) {
        // U_s [out, r] row-major (the U layout); V_sᵀ [r, in] row-major → V [in, r].
        const us = unpackSigns(stored.uSigns, rows * r);
        const vt = unpackSigns(stored.vSigns, r * cols);
        const vs = new Int8Array(cols * r);
        for (let k = 0; k < r; k++) for (let j = 0; j < cols; j++) vs[j * r + k] = vt[k * cols + j]!;
        const f32 = (bits: Uint16Array) => Float64Array.from(bits, (b) => f16BitsToF32(b));
        init = { U: signedMagnitudes(us, f.uPrime.data), V: signedMagnitudes(vs, f.vPrime.data), h: f32(stored.h), g: f32(stored.g), l: f32(stored.l) };
      }
      return {
        U: param(`${pre}U`, init.U, decay),
        V: param(`${pre}V`, init.V, decay),
        h: param(`${pre}h`, init.h, false),
        g: param(`${pre}g`, init.g, false),
        l: param(`${pre}l`, init.l, false),
      };
    });
    const R = this.paths.length * r;
    // hAB and grad are single blocks with views into them (a view keeps its block's buffer, but the
    // allocator frees a block when the array it returned is collected: the scratch keeps those arrays)
    const hAB = mk((rows + cols) * R);
    this.scratch = {
      A: mk(rows * R),
      hAB,
      hA: hAB.subarray(0, rows * R) as T,
      B: hAB.subarray(rows * R) as T,
      grad: mk((rows + cols) * R),
    };
    this.factorRank = (o.lowRank ?? true) && R * (rows + cols) < rows * cols ? R : 0;
    this.out = mk(rows * cols);
  }

  /** A = sign(U) diag(ℓ), B = diag(g) sign(V) and hA = diag(h) A of path `index` (into its block of the scratch). */
  private pathFactors(p: PathState<T>, index: number): void {
    const r = this.rank;
    const R = this.paths.length * r;
    const off = index * r;
    const U = p.U.data;
    const V = p.V.data;
    const l = p.l.data;
    const g = p.g.data;
    const h = p.h.data;
    const { A, B, hA } = this.scratch; // locals: the loops below run rows·r and cols·r times per step
    // A = sign(U) diag(ℓ) and hA = diag(h) A in one pass
    for (let i = 0; i < this.rows; i++) {
      const hi = h[i]!;
      for (let k = 0; k < r; k++) {
        const a = U[i * r + k]! < 0 ? -l[k]! : l[k]!;
        A[i * R + off + k] = a;
        hA[i * R + off + k] = hi * a;
      }
    }
    for (let j = 0; j < this.cols; j++) {
      const gj = g[j]!;
      for (let k = 0; k < r; k++) B[j * R + off + k] = V[j * r + k]! < 0 ? -gj : gj;
    }
  }

  weight(): T {
    const { rows, cols, rank: r, out } = this;
    this.paths.forEach((p, index) => this.pathFactors(p, index)); // A, B and hA = diag(h) A, every path
    matmul(this.scratch.hA, this.scratch.B, out, rows, cols, this.paths.length * r, false, true, false); // out = Σ_p hA_p B_pᵀ
    return out;
  }

  /** The low-rank form: [hA | B] with Ŵ = hA Bᵀ (every path side by side; WeightProvider.factors). */
  factors(): T {
    this.paths.forEach((p, index) => this.pathFactors(p, index));
    return this.scratch.hAB;
  }

  /** From packed [∂L/∂hA | ∂L/∂B] = [G B | Gᵀ hA] (WeightProvider.backwardFactors); A is the last factors()'. */
  backwardFactors(grad: T): void {
    const R = this.paths.length * this.rank;
    this.chainRule(grad.subarray(0, this.rows * R) as T, grad.subarray(this.rows * R, (this.rows + this.cols) * R) as T);
  }

  /** exp(−2K|U|), exp(−2K|V|) of the current path (float32 backward scratch, grow-only). */
  private eU: Float32Array = new Float32Array(0);
  private eV: Float32Array = new Float32Array(0);

  backward(G: T): void {
    const { rows, cols } = this;
    const R = this.paths.length * this.rank;
    const GB = this.scratch.grad.subarray(0, rows * R) as T;
    const dB = this.scratch.grad.subarray(rows * R, (rows + cols) * R) as T;
    // A, B, hA are those of the last forward (parameters have not changed since); every path in one product
    matmul(G, this.scratch.B, GB, rows, R, cols, false, false, false); // GB = G B
    matmul(G, this.scratch.hA, dB, cols, R, rows, true, false, false); // dB = Gᵀ (diag(h) A)
    this.chainRule(GB, dB);
  }

  /** Every parameter's gradient from GB = ∂L/∂hA [out, P·r] and dB = ∂L/∂B [in, P·r] (added). */
  private chainRule(GB: T, dB: T): void {
    const { rows, cols, rank: r } = this;
    const K = this.smoothK;
    const R = this.paths.length * r;
    const A = this.scratch.A;
    for (let index = 0; index < this.paths.length; index++) {
      const p = this.paths[index]!;
      const off = index * r;
      const U = p.U.data;
      const V = p.V.data;
      const h = p.h.data;
      const l = p.l.data;
      const g = p.g.data;
      const dU = p.U.grad;
      const dV = p.V.grad;
      const dh = p.h.grad;
      const dl = p.l.grad;
      const dg = p.g.grad;
      const dlAcc = new Float64Array(r);
      // float32: SmoothSign′ = 4K·e/(1 + e)², e = exp(−2K|u|), all exponentials in one kernel call (what
      // Math.tanh per latent cost: most of this backward); float64 (gradient checks): Math.tanh
      const fast = U instanceof Float32Array && V instanceof Float32Array;
      if (fast) {
        if (this.eU.length < rows * r) this.eU = allocFloat32(rows * r);
        if (this.eV.length < cols * r) this.eV = allocFloat32(cols * r);
        expOfAbs(U, this.eU, rows * r, -2 * K);
        expOfAbs(V, this.eV, cols * r, -2 * K);
      }
      const eU = this.eU;
      const eV = this.eV;
      for (let i = 0; i < rows; i++) {
        let sh = 0;
        const hi = h[i]!;
        for (let k = 0; k < r; k++) {
          const at = i * r + k;
          const gb = GB[i * R + off + k]!;
          sh += A[i * R + off + k]! * gb;
          const dA = hi * gb;
          const u = U[at]!;
          dlAcc[k] = dlAcc[k]! + (u < 0 ? -dA : dA);
          let ds: number;
          if (fast) {
            const e = eU[at]!;
            ds = (4 * K * e) / ((1 + e) * (1 + e));
          } else {
            const t = Math.tanh(K * u);
            ds = K * (1 - t * t);
          }
          dU[at] = dU[at]! + dA * l[k]! * ds;
        }
        dh[i] = dh[i]! + sh;
      }
      for (let k = 0; k < r; k++) dl[k] = dl[k]! + dlAcc[k]!;
      for (let j = 0; j < cols; j++) {
        let sg = 0;
        const gj = g[j]!;
        for (let k = 0; k < r; k++) {
          const at = j * r + k;
          const db = dB[j * R + off + k]!;
          const v = V[at]!;
          sg += v < 0 ? -db : db;
          let ds: number;
          if (fast) {
            const e = eV[at]!;
            ds = (4 * K * e) / ((1 + e) * (1 + e));
          } else {
            const t = Math.tanh(K * v);
            ds = K * (1 - t * t);
          }
          dV[at] = dV[at]! + db * gj * ds;
        }
        dg[j] = dg[j]! + sg;
      }
    }
  }

  parameters(): Param<T>[] {
    return this.paths.flatMap((p) => [p.U, p.V, p.h, p.g, p.l]);
  }

  /** The packed signs of the current latents and the f16 scales, exactly as the codec stores them. */
  toCodecParams(): LittleBitParams {
    const r = this.rank;
    const paths = this.paths.map((p) =>
      toPath(
        {
          rank: r,
          uPrime: { rows: this.rows, cols: r, data: Float64Array.from(p.U.data) },
          vPrime: { rows: this.cols, cols: r, data: Float64Array.from(p.V.data) },
          h: Float64Array.from(p.h.data),
          g: Float64Array.from(p.g.data),
          l: Float64Array.from(p.l.data),
        },
        this.name,
      ),
    );
    return { rows: this.rows, cols: this.cols, options: this.options, rank: r, paths };
  }
}

/** Whether resolved options ask for a refined initialization (refineSigns and 'activation' need lsRounds or refineRounds). */
function hasRefinement(o: LittleBitOptions): boolean {
  return (o.lsRounds ?? 0) > 0 || (o.refineRounds ?? 0) > 0;
}

/**
 * Latent factors with the given signs and the magnitudes of the Dual-SVID real factors, floored at
 * 1e-6·max|real| (and a positive normal f32) so a −1 never becomes ±0, whose sign is +1.
 */
function signedMagnitudes(signs: Int8Array, real: ArrayLike<number>): Float64Array {
  let max = 0;
  for (let i = 0; i < real.length; i++) max = Math.max(max, Math.abs(real[i]!));
  const floor = Math.max(1e-6 * max, 1e-30);
  const out = new Float64Array(signs.length);
  for (let i = 0; i < signs.length; i++) out[i] = signs[i]! * Math.max(Math.abs(real[i]!), floor);
  return out;
}

/**
 * Register the littlebit codec and the provider kind 'littlebit' (options: codecOptions {bpw | rank, residual,
 * rankRounding, lsRounds, refineSigns, …} or those keys at top level; smoothK; decay; the context's saliency
 * reaches encode for refineObjective 'activation'). Explicit and idempotent.
 */
export function registerLittleBitProviders(): void {
  registerLittleBitCodec();
  registerProviderFactory('littlebit', (ctx, o) => {
    const codecOptions: Record<string, unknown> = { ...((o.codecOptions as Record<string, unknown> | undefined) ?? {}) };
    for (const k of ['bpw', 'rank', 'residual', 'rankRounding', 'oversampling', 'powerIterations', 'refineRounds', 'lsRounds', 'refineSigns', 'refineObjective']) {
      if (o[k] !== undefined && codecOptions[k] === undefined) codecOptions[k] = o[k];
    }
    return new LittleBitProvider({
      name: ctx.name,
      rows: ctx.rows,
      cols: ctx.cols,
      weight: ctx.weight,
      codecOptions,
      context: { seed: ctx.seed, ...(ctx.saliency ? { saliency: ctx.saliency } : {}) },
      ...(typeof o.smoothK === 'number' ? { smoothK: o.smoothK } : {}),
      ...(typeof o.decay === 'boolean' ? { decay: o.decay } : {}),
      ...(typeof o.lowRank === 'boolean' ? { lowRank: o.lowRank } : {}),
    });
  });
}
