import { isUltraSketchError } from '@ultrasketch/core';
import { type LittleBitOptions, littlebitMinBpw, littlebitRank } from '@ultrasketch/littlebit';
import {
  type HashedNetsOptions,
  type SketchOptions,
  countSplitSizes,
  hashedNetsMinBpw,
  hashedNetsWidth,
  sketchBudget,
} from '@ultrasketch/sketch-core';

/**
 * Budget feasibility of one matrix for codecs with a bits-per-weight target, decided BEFORE encoding (so a
 * run refuses, or keeps matrices dense, before spending minutes on the others):
 * - `sketch`: the codec's budget arithmetic (`sketchBudget`, channel groups of the `count` split; a `mass`
 *   split's sizes depend on the weights, and `compress` also catches the codec's refusal at encode time);
 * - `hashednets`: one state plus the seed must fit;
 * - `littlebit` with a bpw target: rank 1 (rank 8 with multiple8 rounding) must fit.
 * Codecs without a target (rtn, binary, float, littlebit with an explicit rank) return null.
 */
export interface MatrixFeasibility {
  feasible: boolean;
  /** The smallest target this matrix can meet with these options (bpw, 4 decimals or the exact formula). */
  minBpw: number;
}

export function matrixFeasibility(codecId: string, options: unknown, rows: number, cols: number): MatrixFeasibility | null {
  switch (codecId) {
    case 'sketch': {
      const o = options as SketchOptions;
      const G = Math.min(o.groups, cols);
      const b = sketchBudget(rows, cols, o, countSplitSizes(cols, G).map((c) => rows * c));
      return { feasible: b.feasible, minBpw: b.minBpw };
    }
    case 'hashednets': {
      const o = options as HashedNetsOptions;
      return { feasible: hashedNetsWidth(rows, cols, o) >= 1, minBpw: hashedNetsMinBpw(rows, cols, o) };
    }
    case 'littlebit': {
      const o = options as LittleBitOptions;
      if (o.bpw === null) return null;
      let feasible = true;
      try {
        littlebitRank(o, rows, cols);
      } catch (err) {
        if (!isUltraSketchError(err, 'E_INFEASIBLE_BUDGET')) throw err;
        feasible = false;
      }
      return { feasible, minBpw: littlebitMinBpw(rows, cols, o.residual, o.rankRounding) };
    }
    default:
      return null;
  }
}

/** The bits-per-weight target of resolved codec options, when the codec has one. */
export function targetBpw(options: unknown): number | null {
  if (typeof options !== 'object' || options === null) return null;
  const bpw = (options as { bpw?: unknown }).bpw;
  return typeof bpw === 'number' ? bpw : null;
}
