import { readFileSync } from 'node:fs';
import { Rng } from '@ultrasketch/core';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { type LittleBitParams, littlebitCodec } from '@ultrasketch/littlebit';
import { LINEAR_KINDS, TensorNames, linearShape, modelFromLlama2c } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { littlebitKernel } from '../src/kernels/littlebit.js';
import { worstKernelError } from './oracle.js';

/**
 * The fused LittleBit kernel against the oracle: decode() to dense, then a float64 product. Tolerance: 1e-5
 * relative to Σ_j |ŵ_ij x_j| (as for every kernel in kernels.test.ts).
 */
function worstRelativeError(params: LittleBitParams, x: Float32Array, n: number): number {
  return worstKernelError(littlebitCodec.decode(params), params.rows, params.cols, littlebitKernel(params), x, n);
}

const encode = (w: Float32Array, rows: number, cols: number, raw: Record<string, unknown>, seed = 1) =>
  littlebitCodec.encode(w, rows, cols, littlebitCodec.resolveOptions(raw), { name: 't', seed });

describe('littlebit kernel equals decode-then-dense', () => {
  const SHAPES: Array<[number, number]> = [
    [1, 1],
    [1, 53],
    [41, 1],
    [13, 7],
    [7, 24],
    [33, 130],
    [300, 40], // > 224 rows: the U_s stage uses byte tables
    [40, 260], // byte-aligned V_sᵀ rows (260 % 8 != 0 → repacked); r up to 40
  ];
  it.each(SHAPES)('random %i×%i, every rank 1..min (≤ 12, plus full), residual on and off, n = 1, 3', (rows, cols) => {
    const rng = new Rng(rows * 7919 + cols);
    const w = rng.normalArray(rows * cols);
    const full = Math.min(rows, cols);
    const ranks = [...new Set([...Array.from({ length: Math.min(full, 12) }, (_, i) => i + 1), full])];
    for (const rank of ranks) {
      for (const residual of [false, true]) {
        const params = encode(w, rows, cols, { rank, residual });
        for (const n of [1, 3]) {
          expect(worstRelativeError(params, rng.normalArray(n * cols), n), `rank ${rank} residual ${residual} n ${n}`).toBeLessThanOrEqual(1e-5);
        }
      }
    }
  });

  it('byte tables on both stages (rank ≥ 225, in % 8 == 0 used in place) and rank % 8 == 0', () => {
    const rng = new Rng(5);
    const [rows, cols] = [260, 240];
    const w = rng.normalArray(rows * cols);
    for (const rank of [225, 232]) {
      const params = encode(w, rows, cols, { rank, residual: true });
      expect(worstRelativeError(params, rng.normalArray(2 * cols), 2)).toBeLessThanOrEqual(1e-5);
    }
  });

  it('zero input gives zero output; a zero matrix gives zero output', () => {
    const rng = new Rng(2);
    const p = encode(rng.normalArray(9 * 11), 9, 11, { rank: 3 });
    const y = new Float32Array(9).fill(7);
    littlebitKernel(p).apply(new Float32Array(11), y, 1);
    expect([...y]).toEqual(new Array(9).fill(0));
    const z = encode(new Float32Array(6 * 5), 6, 5, { rank: 2 });
    littlebitKernel(z).apply(rng.normalArray(5), y, 1);
    expect([...y.subarray(0, 6)]).toEqual(new Array(6).fill(0));
  });

  it('every linear of stories3M at 0.55 bpw (1 path), 1.0 bpw (2 paths), 1.2 bpw multiple8 (2 paths), n = 1 and n = 4', () => {
    const ckpt = readLlama2cCheckpoint(readFileSync(new URL('../../../../shared/models/stories3M/stories3M-q80.bin', import.meta.url)));
    const model = modelFromLlama2c(ckpt);
    const rng = new Rng(3);
    const settings: Array<Record<string, unknown>> = [
      { bpw: 0.55, residual: false },
      { bpw: 1.0, residual: true },
      { bpw: 1.2, residual: true, rankRounding: 'multiple8' },
    ];
    for (let l = 0; l < model.config.nLayers; l += 2) {
      for (const kind of LINEAR_KINDS) {
        const [rows, cols] = linearShape(model.config, kind);
        const name = TensorNames.linear(l, kind);
        for (const raw of settings) {
          const params = encode(model.tensors.get(name)!.data, rows, cols, raw);
          for (const n of [1, 4]) {
            expect(worstRelativeError(params, rng.normalArray(n * cols), n), `${name} ${JSON.stringify(raw)}`).toBeLessThanOrEqual(1e-5);
          }
        }
      }
    }
  });
});
