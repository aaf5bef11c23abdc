import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';

/**
 * LittleBit's bit accounting (docs/methods.md §2) and the rank it implies for a target bits-per-weight.
 *
 * One path stores two sign matrices (U_s [out, r], V_s [in, r]: r·(in + out) bits) and three FP16 scale
 * vectors (h [out], g [in], ℓ [r]: 16·(out + in + r) bits):
 *
 *   without residual:  bits(r) = r·(in + out + 16) + 16·(in + out)
 *   with residual:     bits(r) = 2r·(in + out + 16) + 32·(in + out)      (two paths of rank r each)
 *
 * The rank for a target b bpw solves bits(r) = b·in·out and is floored (the paper; the reference code also
 * rounds down to a multiple of 8 — `rankRounding: 'multiple8'`). The codec's stored bits add the padding of
 * each packed sign matrix to whole 32-bit words (< 32 bits per matrix): see `littlebitStoredBits`.
 */
export type RankRounding = 'floor' | 'multiple8';

/** Formula bits of a rank-r LittleBit matrix [out, in] (no word padding). */
export function littlebitFormulaBits(out: number, inp: number, rank: number, residual: boolean): number {
  return residual ? 2 * rank * (inp + out + 16) + 32 * (inp + out) : rank * (inp + out + 16) + 16 * (inp + out);
}

/** Formula bits per weight of a rank-r LittleBit matrix. */
export function littlebitFormulaBpw(out: number, inp: number, rank: number, residual: boolean): number {
  return littlebitFormulaBits(out, inp, rank, residual) / (out * inp);
}

/** Bits actually stored: the formula plus the padding of each packed sign matrix to a whole 32-bit word. */
export function littlebitStoredBits(out: number, inp: number, rank: number, residual: boolean): number {
  const one = 32 * signWords(out * rank) + 32 * signWords(rank * inp) + 16 * (out + inp + rank);
  return residual ? 2 * one : one;
}

/** 32-bit words holding n packed signs. */
export function signWords(n: number): number {
  return Math.ceil(n / 32);
}

/**
 * The real-valued solution r* of bits(r) = bpw·in·out. Its floor is the rank (before multiple-of-8 rounding).
 */
export function rankForBpwExact(out: number, inp: number, bpw: number, residual: boolean): number {
  const budget = bpw * out * inp;
  return residual ? (budget - 32 * (inp + out)) / (2 * (inp + out + 16)) : (budget - 16 * (inp + out)) / (inp + out + 16);
}

/**
 * The rank for a target bpw: ⌊r*⌋ (a relative slack of 1e-9 absorbs float noise when r* is an integer),
 * then rounded down to a multiple of 8 with 'multiple8'. 0 means the budget cannot pay for rank 1 (or rank 8).
 * Not capped here; the codec caps at min(in, out) (see `resolveRank`).
 */
export function rankForBpw(out: number, inp: number, bpw: number, residual: boolean, rounding: RankRounding = 'floor'): number {
  const exact = rankForBpwExact(out, inp, bpw, residual);
  const r = Math.max(0, Math.floor(exact + 1e-9 * Math.max(1, Math.abs(exact))));
  return rounding === 'multiple8' ? r - (r % 8) : r;
}

/** The smallest bpw LittleBit can reach on a matrix: rank 1 (or rank 8 with 'multiple8'). */
export function littlebitMinBpw(out: number, inp: number, residual: boolean, rounding: RankRounding = 'floor'): number {
  return littlebitFormulaBpw(out, inp, rounding === 'multiple8' ? 8 : 1, residual);
}

/** What a codec needs to know to size a matrix: a target bpw or an explicit rank, and the path layout. */
export interface RankSpec {
  bpw: number | null;
  rank: number | null;
  residual: boolean;
  rankRounding: RankRounding;
}

/**
 * The rank the codec uses for a matrix [out, in]:
 * - explicit `rank`: used as given; it must not exceed min(in, out) (the SVD initialization has no more
 *   directions to give) — BAD_ARGUMENT otherwise;
 * - `bpw`: `rankForBpw`, capped at min(in, out) (a budget above full rank then stores fewer bits than asked);
 *   a budget below the rank-1 (rank-8) cost is INFEASIBLE_BUDGET, and the message says the smallest bpw this
 *   matrix can have, with and without the residual path.
 */
export function resolveRank(spec: RankSpec, out: number, inp: number, source = 'littlebit'): number {
  const full = Math.min(out, inp);
  if (spec.rank !== null) {
    if (spec.rank > full) {
      throw new UltraSketchError(
        ErrorCodes.BAD_ARGUMENT,
        `rank ${spec.rank} exceeds min(out, in) = ${full} of this ${out}×${inp} matrix`,
        { source, hint: `use a rank ≤ ${full}, or a --bpw target` },
      );
    }
    return spec.rank;
  }
  const bpw = spec.bpw!;
  const r = rankForBpw(out, inp, bpw, spec.residual, spec.rankRounding);
  if (r >= 1) return Math.min(r, full);
  const fmt = (x: number) => x.toFixed(4);
  const minHere = littlebitMinBpw(out, inp, spec.residual, spec.rankRounding);
  const scalesOnly = (spec.residual ? 32 : 16) * (out + inp) / (out * inp);
  const parts = [
    `LittleBit${spec.residual ? ' with residual' : ''} cannot reach ${bpw} bpw on this ${out}×${inp} matrix: ` +
      `rank ${spec.rankRounding === 'multiple8' ? 8 : 1} already costs ${fmt(minHere)} bpw ` +
      `(the FP16 scales alone are ${fmt(scalesOnly)} bpw)`,
  ];
  if (spec.rankRounding === 'multiple8' && rankForBpw(out, inp, bpw, spec.residual, 'floor') >= 1) {
    parts.push(`rankRounding 'floor' would allow rank ${rankForBpw(out, inp, bpw, spec.residual, 'floor')}`);
  }
  if (spec.residual) parts.push(`without the residual path the minimum is ${fmt(littlebitMinBpw(out, inp, false, spec.rankRounding))} bpw`);
  throw new UltraSketchError(ErrorCodes.INFEASIBLE_BUDGET, parts.join('; '), {
    source,
    hint: `ask for at least ${fmt(minHere)} bpw, or keep this matrix in another codec (e.g. float)`,
  });
}
