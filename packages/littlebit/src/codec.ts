import {
  type BitCount,
  type Codec,
  type CodecParams,
  ErrorCodes,
  type StoredTensor,
  UltraSketchError,
  expectStored,
  f16BitsOf,
  f16BitsTensor,
  storedBits,
  describeValue,
} from '@ultrasketch/core';
import { type RankRounding, littlebitFormulaBits, resolveRank, signWords } from './bits.js';
import { type LittleBitPath, dualSvidFactors, pathDense, toPath } from './dualSvid.js';
import { refinePaths } from './refine.js';
import { paddingIsZero } from './signs.js';

/**
 * `littlebit`: LittleBit binary latent factorization (Lee et al. 2025; docs/methods.md §2, docs/littlebit.md).
 *
 *   Ŵ = Σ_paths diag(h) · U_s · diag(ℓ) · V_sᵀ · diag(g)      (1 path, or 2 with the residual path)
 *
 * initialized by Dual-SVID; the residual path is Dual-SVID of W − Ŵ₁ (Ŵ₁ with its f16-rounded scales, i.e.
 * what is actually stored), at the same rank — the budget is split evenly between the paths.
 *
 * Stored tensors, per path (the residual path's names start with `res_`):
 * - `u_signs`: U32 [⌈out·r/32⌉] — U_s [out, r], row-major, packed (signs.ts);
 * - `v_signs`: U32 [⌈r·in/32⌉] — V_sᵀ [r, in], row-major, packed;
 * - `h`: F16 [out], `g`: F16 [in], `l`: F16 [r].
 * The rank is not stored: it follows from (rows, cols, options) (`littlebitRank`), and every tensor's size is
 * checked against it on load. bits() = stored bytes × 8 = the paper's formula + the padding of each sign
 * matrix to a whole 32-bit word (at most 31 bits per sign matrix).
 */
export interface LittleBitOptions {
  /** Target bits per weight of this matrix (formula bits); null when `rank` is given. */
  bpw: number | null;
  /** Explicit rank per path; null when `bpw` is given. */
  rank: number | null;
  /** Add the residual path (default true). */
  residual: boolean;
  /** How the rank from `bpw` is rounded: 'floor' (the paper, default) or 'multiple8' (the reference code). */
  rankRounding: RankRounding;
  /** Truncated SVD: extra sampled directions (default 10). */
  oversampling: number;
  /** Truncated SVD: power iterations (default 2). */
  powerIterations: number;
  /**
   * Opt-in refinements of the initialization (refine.ts; docs/littlebit.md, "The residual path at equal bits, and a refined initialization"). Same
   * stored tensors and bits; only the signs and scales differ. Absent (not 0) in the resolved options when not
   * asked for, so default options, bundles and encodings are unchanged.
   * - `refineRounds`: backfitting rounds — re-fit path 1 by Dual-SVID on W − Ŵ₂, then path 2 on W − Ŵ₁
   *   (needs the residual path);
   * - `lsRounds`: rounds of closed-form least-squares updates of the scales ℓ, h, g of every path;
   * - `refineSigns`: with lsRounds, each round also re-fits the signs of every path by greedy flips (scales
   *   fixed; every flip lowers the objective) — alternating minimization over signs and scales;
   * - `refineObjective`: what all of them minimize — 'frobenius' (default) or 'activation' (Σ (W − Ŵ)²_ij E[a_j²],
   *   needs ctx.saliency at encode).
   * The stored result's objective is never above the plain initialization's (the best round is kept).
   */
  refineRounds?: number;
  lsRounds?: number;
  refineSigns?: boolean;
  refineObjective?: RefineObjective;
}

export type RefineObjective = 'frobenius' | 'activation';

export interface LittleBitParams extends CodecParams<LittleBitOptions> {
  rank: number;
  /** One path, or two with the residual path (paths[1]). */
  paths: LittleBitPath[];
}

/** The bpw used when neither bpw nor rank is given: the paper's headline 0.55. */
export const LITTLEBIT_DEFAULT_BPW = 0.55;

const OPTION_KEYS = ['bpw', 'rank', 'residual', 'rankRounding', 'oversampling', 'powerIterations', 'refineRounds', 'lsRounds', 'refineSigns', 'refineObjective'];

/** The rank the codec uses for a matrix [rows, cols] under these options (INFEASIBLE_BUDGET / BAD_ARGUMENT). */
export function littlebitRank(options: LittleBitOptions, rows: number, cols: number, source = 'littlebit'): number {
  return resolveRank(options, rows, cols, source);
}

export const littlebitCodec: Codec<LittleBitOptions, LittleBitParams> = {
  id: 'littlebit',
  version: 1,
  description: 'LittleBit: Σ diag(h)·U_s·diag(ℓ)·V_sᵀ·diag(g) with ±1 factors (Dual-SVID init, optional residual path)',

  resolveOptions(raw) {
    for (const key of Object.keys(raw)) {
      if (raw[key] !== undefined && !OPTION_KEYS.includes(key)) {
        throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `codec littlebit has no option "${key}" (options: ${OPTION_KEYS.join(', ')})`);
      }
    }
    const given = (k: string) => raw[k] !== undefined && raw[k] !== null;
    if (given('bpw') && given('rank')) {
      bad('bpw', raw.bpw, 'give either bpw or rank, not both');
    }
    let bpw: number | null = null;
    let rank: number | null = null;
    if (given('rank')) {
      rank = num(raw, 'rank');
      if (!Number.isInteger(rank) || rank < 1 || rank > 1 << 16) bad('rank', raw.rank, 'use an integer rank in [1, 65536]');
    } else {
      bpw = given('bpw') ? num(raw, 'bpw') : LITTLEBIT_DEFAULT_BPW;
      if (!Number.isFinite(bpw) || bpw <= 0 || bpw > 64) bad('bpw', raw.bpw, 'use a number of bits per weight in (0, 64]');
    }
    const residual = bool(raw, 'residual', true);
    const rankRounding = raw.rankRounding ?? 'floor';
    if (rankRounding !== 'floor' && rankRounding !== 'multiple8') bad('rankRounding', rankRounding, "allowed: 'floor', 'multiple8'");
    const oversampling = given('oversampling') ? num(raw, 'oversampling') : 10;
    if (!Number.isInteger(oversampling) || oversampling < 0 || oversampling > 1024) bad('oversampling', raw.oversampling, 'use an integer in [0, 1024]');
    const powerIterations = given('powerIterations') ? num(raw, 'powerIterations') : 2;
    if (!Number.isInteger(powerIterations) || powerIterations < 0 || powerIterations > 64) {
      bad('powerIterations', raw.powerIterations, 'use an integer in [0, 64]');
    }
    const resolved: LittleBitOptions = { bpw, rank, residual, rankRounding, oversampling, powerIterations };
    // Refinement options: only present when they change something (defaults keep the old resolved form).
    const rounds = (key: 'refineRounds' | 'lsRounds') => {
      if (!given(key)) return 0;
      const n = num(raw, key);
      if (!Number.isInteger(n) || n < 0 || n > 64) bad(key, raw[key], 'use an integer in [0, 64]');
      return n;
    };
    const refineRounds = rounds('refineRounds');
    const lsRounds = rounds('lsRounds');
    if (refineRounds > 0 && !residual) bad('refineRounds', raw.refineRounds, 'backfitting needs the residual path (residual: true); use lsRounds for one path');
    const refineSigns = bool(raw, 'refineSigns', false);
    if (refineSigns && lsRounds === 0) bad('refineSigns', raw.refineSigns, 'sign refits run inside the least-squares rounds: give lsRounds > 0');
    const objective = raw.refineObjective ?? 'frobenius';
    if (objective !== 'frobenius' && objective !== 'activation') bad('refineObjective', objective, "allowed: 'frobenius', 'activation'");
    if (objective === 'activation' && refineRounds === 0 && lsRounds === 0) {
      bad('refineObjective', objective, 'it only applies with refineRounds or lsRounds > 0');
    }
    if (refineRounds > 0) resolved.refineRounds = refineRounds;
    if (lsRounds > 0) resolved.lsRounds = lsRounds;
    if (refineSigns) resolved.refineSigns = true;
    if (objective === 'activation') resolved.refineObjective = 'activation';
    return resolved;
  },

  encode(w, rows, cols, options, ctx) {
    assertFiniteMatrix(w, rows, cols, ctx.name);
    const rank = littlebitRank(options, rows, cols, ctx.name);
    const svd = { oversampling: options.oversampling, powerIterations: options.powerIterations };
    const first = toPath(dualSvidFactors({ rows, cols, data: w }, rank, { ...svd, seed: ctx.seed }), ctx.name);
    const paths = [first];
    if (options.residual) {
      const approx = pathDense(first, rows, cols, rank).data;
      const res = new Float32Array(rows * cols);
      for (let i = 0; i < res.length; i++) res[i] = w[i]! - approx[i]!;
      paths.push(toPath(dualSvidFactors({ rows, cols, data: res }, rank, { ...svd, seed: (ctx.seed + 1) >>> 0 }), ctx.name));
    }
    if ((options.refineRounds ?? 0) > 0 || (options.lsRounds ?? 0) > 0) {
      let colWeight: Float64Array | undefined;
      if (options.refineObjective === 'activation') {
        if (!ctx.saliency || ctx.saliency.length !== cols) {
          throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `refineObjective 'activation' needs calibration statistics (E[a_j²], ${cols} values) for ${ctx.name}`, {
            source: ctx.name,
            hint: "calibrate first, or use refineObjective 'frobenius'",
          });
        }
        colWeight = Float64Array.from(ctx.saliency);
      }
      const refined = refinePaths({ rows, cols, data: w }, paths, paths.map(() => rank), {
        ...(options.refineRounds ? { backfitRounds: options.refineRounds } : {}),
        ...(options.lsRounds ? { lsRounds: options.lsRounds } : {}),
        ...(options.refineSigns ? { refineSigns: true } : {}),
        ...(colWeight ? { colWeight } : {}),
        svd,
        seed: ctx.seed,
        source: ctx.name,
      });
      return { rows, cols, options, rank, paths: refined.paths };
    }
    return { rows, cols, options, rank, paths };
  },

  decode(p) {
    const out = new Float32Array(p.rows * p.cols);
    this.decodeRows(p, 0, p.rows, out);
    return out;
  },

  decodeRows(p, row0, count, out) {
    if (count <= 0) return;
    const parts = p.paths.map((path) => pathDense(path, p.rows, p.cols, p.rank, row0, count).data);
    for (let i = 0; i < count * p.cols; i++) {
      let s = 0;
      for (const d of parts) s += d[i]!;
      out[i] = s;
    }
  },

  bits(p): BitCount {
    return storedBits(this.toTensors(p));
  },

  toTensors(p) {
    const t: Record<string, StoredTensor> = {};
    p.paths.forEach((path, index) => {
      const pre = index === 0 ? '' : 'res_';
      t[`${pre}u_signs`] = u32Tensor(path.uSigns);
      t[`${pre}v_signs`] = u32Tensor(path.vSigns);
      t[`${pre}h`] = f16BitsTensor(path.h, [p.rows]);
      t[`${pre}g`] = f16BitsTensor(path.g, [p.cols]);
      t[`${pre}l`] = f16BitsTensor(path.l, [p.rank]);
    });
    return t;
  },

  fromTensors(tensors, rows, cols, options, source) {
    const rank = littlebitRank(options, rows, cols, source);
    const paths: LittleBitPath[] = [];
    for (let index = 0; index < (options.residual ? 2 : 1); index++) {
      const pre = index === 0 ? '' : 'res_';
      const words = (name: string, n: number) => {
        const t = expectStored(tensors, name, 'U32', [signWords(n)], source);
        const w = new Uint32Array(signWords(n));
        new Uint8Array(w.buffer).set(t.data);
        if (!paddingIsZero(w, n)) {
          throw new UltraSketchError(ErrorCodes.TRAILING_DATA, `codec tensor "${name}" has bits set past its ${n} signs`, {
            source,
            hint: 'the bundle is corrupt or was written by an incompatible codec version',
          });
        }
        return w;
      };
      const scales = (name: string, n: number) => {
        const bits = f16BitsOf(expectStored(tensors, name, 'F16', [n], source));
        for (let i = 0; i < n; i++) {
          if ((bits[i]! & 0x7c00) === 0x7c00) {
            throw new UltraSketchError(ErrorCodes.NOT_FINITE, `codec tensor "${name}"[${i}] is not finite`, { source });
          }
        }
        return bits;
      };
      paths.push({
        uSigns: words(`${pre}u_signs`, rows * rank),
        vSigns: words(`${pre}v_signs`, rank * cols),
        h: scales(`${pre}h`, rows),
        g: scales(`${pre}g`, cols),
        l: scales(`${pre}l`, rank),
      });
    }
    return { rows, cols, options, rank, paths };
  },
};

/** Formula bits (no padding) of stored params — for reports next to bits(). */
export function littlebitParamsFormulaBits(p: LittleBitParams): number {
  return littlebitFormulaBits(p.rows, p.cols, p.rank, p.paths.length === 2);
}

function u32Tensor(words: Uint32Array): StoredTensor {
  return { dtype: 'U32', shape: [words.length], data: new Uint8Array(words.buffer, words.byteOffset, words.byteLength) };
}

function num(raw: Record<string, unknown>, key: string): number {
  const v = raw[key];
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number') bad(key, v, 'expected a number');
  return n;
}

function bool(raw: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const v = raw[key];
  if (v === undefined || v === null) return fallback;
  if (v === true || v === 'true') return true;
  if (v === false || v === 'false') return false;
  return bad(key, v, 'expected true or false');
}

function bad(key: string, value: unknown, allowed: string): never {
  throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `codec littlebit: option ${key} = ${describeValue(value)} is invalid; ${allowed}`, {
    source: `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`,
  });
}

function assertFiniteMatrix(w: Float32Array, rows: number, cols: number, name: string): void {
  if (w.length !== rows * cols) {
    throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `matrix has ${w.length} values, expected ${rows}×${cols}`, { source: name });
  }
  for (let i = 0; i < w.length; i++) {
    if (w[i]! - w[i]! !== 0) {
      throw new UltraSketchError(ErrorCodes.NOT_FINITE, `weight at row ${Math.floor(i / cols)}, column ${i % cols} is ${w[i]}`, {
        source: name,
        hint: 'the model has non-finite weights; it cannot be compressed',
      });
    }
  }
}
