import {
  ErrorCodes,
  type Matrix,
  type MatrixLike,
  TSVD_DEFAULTS,
  UltraSketchError,
  f16BitsToF32,
  f32ToF16Bits,
  leadingSingularPair,
  matmulNT,
  truncatedSvd,
} from '@ultrasketch/core';
import { packSigns } from './signs.js';

/**
 * One LittleBit path: Ŵ = diag(h) · U_s · diag(ℓ) · V_sᵀ · diag(g), with U_s ∈ {±1}^{out×r},
 * V_s ∈ {±1}^{in×r} packed (see signs.ts) and h, g, ℓ as f16 bit patterns.
 *
 * Layout, chosen for the fused kernel y = h ⊙ (U_s (ℓ ⊙ (V_sᵀ (g ⊙ x)))), which is two "rows of packed
 * signs dotted with a vector" stages:
 * - `vSigns` holds V_sᵀ [r, in] row-major: entry (k, j) = V_s[j, k] is bit k·in + j — so V_sᵀ(g ⊙ x) is r
 *   dot products over contiguous runs of `in` bits;
 * - `uSigns` holds U_s [out, r] row-major: entry (i, k) is bit i·r + k — so U_s(ℓ ⊙ z) is out dot products
 *   over runs of r bits.
 * Each matrix is ONE bitstream padded to a whole 32-bit word at its end only (rows are not padded: padding
 * every row would cost up to 31 bits per row — 20% more sign bits for U_s at r = 133 — beyond the formula).
 */
export interface LittleBitPath {
  uSigns: Uint32Array;
  vSigns: Uint32Array;
  h: Uint16Array;
  g: Uint16Array;
  l: Uint16Array;
}

/** The float64 factors of a path before f16 rounding (for measurements and tests). */
export interface LittleBitFactors {
  rank: number;
  /** U' = U√Σ [out, r] and V' = V√Σ [in, r]: their signs are U_s, V_s. */
  uPrime: Matrix;
  vPrime: Matrix;
  h: Float64Array;
  g: Float64Array;
  l: Float64Array;
}

export interface SvdSettings {
  oversampling?: number;
  powerIterations?: number;
  seed?: number;
}

/**
 * Dual-SVID initialization (docs/methods.md §2), exactly:
 *   W ≈ U Σ Vᵀ (truncated SVD at rank r);  U' = U√Σ,  V' = V√Σ;
 *   U_s = sign(U'), V_s = sign(V') with sign(0) = +1;
 *   |U'| ≈ h ℓ_uᵀ and |V'| ≈ g ℓ_vᵀ — the leading singular pair of each nonnegative matrix, σ₁ split as
 *   √σ₁ on each side (as the reference code does); ℓ = ℓ_u ⊙ ℓ_v.
 * Then one storage detail: (h, g, ℓ) → (a·h, b·g, ℓ/(ab)) leaves Ŵ unchanged, and a, b are chosen so
 * max|h|, max|g| and max|ℓ| are equal (their geometric mean), keeping all three well inside the f16 range.
 */
export function dualSvidFactors(w: MatrixLike, rank: number, svd: SvdSettings = {}): LittleBitFactors {
  const { rows: out, cols: inp } = w;
  const t = truncatedSvd(w, {
    rank,
    oversampling: svd.oversampling ?? TSVD_DEFAULTS.oversampling,
    powerIterations: svd.powerIterations ?? TSVD_DEFAULTS.powerIterations,
    seed: svd.seed ?? TSVD_DEFAULTS.seed,
  });
  const r = rank;
  const sq = Float64Array.from(t.s, (s) => Math.sqrt(s));
  const uPrime = scaleColumns(t.u, sq);
  const vPrime = scaleColumns(t.v, sq);
  const pu = leadingSingularPair(absMatrix(uPrime));
  const pv = leadingSingularPair(absMatrix(vPrime));
  const su = Math.sqrt(pu.sigma);
  const sv = Math.sqrt(pv.sigma);
  // Perron vectors of nonnegative matrices are nonnegative; clamp rounding-level negatives to 0.
  const h = Float64Array.from(pu.u, (x) => Math.max(0, x) * su);
  const lu = Float64Array.from(pu.v, (x) => Math.max(0, x) * su);
  const g = Float64Array.from(pv.u, (x) => Math.max(0, x) * sv);
  const lv = Float64Array.from(pv.v, (x) => Math.max(0, x) * sv);
  const l = new Float64Array(r);
  for (let k = 0; k < r; k++) l[k] = lu[k]! * lv[k]!;
  balanceScales(h, g, l);
  if (out !== h.length || inp !== g.length) throw new Error('dualSvid: internal shape error');
  return { rank: r, uPrime, vPrime, h, g, l };
}

/** Round factors to the stored path: packed signs, f16 scales. NOT_FINITE if a scale overflows f16. */
export function toPath(f: LittleBitFactors, source = 'littlebit'): LittleBitPath {
  const uSigns = packSigns(f.uPrime.data); // U' [out, r] row-major = U_s layout
  // V_sᵀ [r, in]: entry (k, j) = sign(V'[j, k]).
  const { rows: inp, cols: r } = f.vPrime;
  const vt = new Float64Array(r * inp);
  for (let j = 0; j < inp; j++) for (let k = 0; k < r; k++) vt[k * inp + j] = f.vPrime.data[j * r + k]!;
  const vSigns = packSigns(vt);
  const f16 = (x: Float64Array, what: string) => {
    const bits = new Uint16Array(x.length);
    for (let i = 0; i < x.length; i++) {
      bits[i] = f32ToF16Bits(x[i]!);
      if ((bits[i]! & 0x7c00) === 0x7c00) {
        throw new UltraSketchError(ErrorCodes.NOT_FINITE, `LittleBit scale ${what}[${i}] = ${x[i]} does not fit in f16`, {
          source,
          hint: 'the matrix has an extreme dynamic range; keep it in float',
        });
      }
    }
    return bits;
  };
  return { uSigns, vSigns, h: f16(f.h, 'h'), g: f16(f.g, 'g'), l: f16(f.l, 'l') };
}

/**
 * Dense Ŵ of a path [out, in] in float64 — (diag(h) U_s diag(ℓ)) · (diag(g) V_s)ᵀ as one product.
 * Rows [row0, row0 + count) only, when given. The oracle; runtimes never call it.
 */
export function pathDense(p: LittleBitPath, out: number, inp: number, rank: number, row0 = 0, count = out): Matrix {
  const left = new Float64Array(count * rank);
  const lv = Float64Array.from(p.l, f16BitsToF32);
  for (let i = 0; i < count; i++) {
    const hi = f16BitsToF32(p.h[row0 + i]!);
    const base = (row0 + i) * rank;
    for (let k = 0; k < rank; k++) {
      const b = base + k;
      const s = (p.uSigns[b >>> 5]! >>> (b & 31)) & 1 ? -1 : 1;
      left[i * rank + k] = s * hi * lv[k]!;
    }
  }
  const right = new Float64Array(inp * rank); // diag(g) V_s [in, r]
  for (let k = 0; k < rank; k++) {
    for (let j = 0; j < inp; j++) {
      const b = k * inp + j;
      const s = (p.vSigns[b >>> 5]! >>> (b & 31)) & 1 ? -1 : 1;
      right[j * rank + k] = s * f16BitsToF32(p.g[j]!);
    }
  }
  return matmulNT({ rows: count, cols: rank, data: left }, { rows: inp, cols: rank, data: right });
}

/**
 * The naive initialization Dual-SVID improves on (for comparisons): Ŵ = α · sign(U√Σ) · sign(V√Σ)ᵀ with the
 * single L2-optimal scalar α = ⟨W, S⟩ / ‖S‖² (S = the ±1 product). Returns Ŵ [out, in] in float64.
 */
export function naiveSignSvd(w: MatrixLike, rank: number, svd: SvdSettings = {}): Matrix {
  const t = truncatedSvd(w, {
    rank,
    oversampling: svd.oversampling ?? TSVD_DEFAULTS.oversampling,
    powerIterations: svd.powerIterations ?? TSVD_DEFAULTS.powerIterations,
    seed: svd.seed ?? TSVD_DEFAULTS.seed,
  });
  const sq = Float64Array.from(t.s, (x) => Math.sqrt(x));
  const sgn = (m: Matrix) => {
    const p = scaleColumns(m, sq); // sign(U√Σ): a column with σ = 0 is all +1
    return { rows: p.rows, cols: p.cols, data: Float64Array.from(p.data, (x) => (x < 0 ? -1 : 1)) };
  };
  const s = matmulNT(sgn(t.u), sgn(t.v));
  let num = 0;
  let den = 0;
  for (let i = 0; i < s.data.length; i++) {
    num += w.data[i]! * s.data[i]!;
    den += s.data[i]! * s.data[i]!;
  }
  const alpha = den === 0 ? 0 : num / den;
  for (let i = 0; i < s.data.length; i++) s.data[i] = alpha * s.data[i]!;
  return s;
}

function scaleColumns(m: Matrix, s: Float64Array): Matrix {
  const { rows, cols } = m;
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let c = 0; c < cols; c++) out[i * cols + c] = m.data[i * cols + c]! * s[c]!;
  return { rows, cols, data: out };
}

function absMatrix(m: Matrix): Matrix {
  return { rows: m.rows, cols: m.cols, data: Float64Array.from(m.data, Math.abs) };
}

function maxAbs(x: Float64Array): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]!));
  return m;
}

/** Rescale (h, g, ℓ) in place so their max magnitudes are equal; Ŵ is unchanged. */
export function balanceScales(h: Float64Array, g: Float64Array, l: Float64Array): void {
  const H = maxAbs(h);
  const G = maxAbs(g);
  const L = maxAbs(l);
  if (H === 0 || G === 0 || L === 0) return;
  const target = Math.cbrt(H) * Math.cbrt(G) * Math.cbrt(L);
  const a = target / H;
  const b = target / G;
  for (let i = 0; i < h.length; i++) h[i] = h[i]! * a;
  for (let i = 0; i < g.length; i++) g[i] = g[i]! * b;
  const c = 1 / (a * b);
  for (let i = 0; i < l.length; i++) l[i] = l[i]! * c;
}
