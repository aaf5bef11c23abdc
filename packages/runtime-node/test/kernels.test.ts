import { readFileSync } from 'node:fs';
import { registerAll } from '@ultrasketch/baselines';
import { type Codec, Rng, getCodec } from '@ultrasketch/core';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { LINEAR_KINDS, TensorNames, linearShape, modelFromLlama2c } from '@ultrasketch/model';
import { beforeAll, describe, expect, it } from 'vitest';
import { getKernel, registerAllKernels } from '../src/index.js';
import { worstKernelError } from './oracle.js';
import { AWKWARD_SHAPES } from './shapes.js';

/**
 * Every fused kernel against the oracle: decode() to dense, then a float64 product. The tolerance is
 * relative to Σ_j |ŵ_ij x_j| — the scale of the rounding error of any order of summation — at 1e-5.
 */
const CASES: Array<[string, string, Record<string, unknown>]> = [
  ['float f16', 'float', { dtype: 'f16' }],
  ['float f32', 'float', { dtype: 'f32' }],
  ['rtn 2 g16', 'rtn', { bits: 2, groupSize: 16 }],
  ['rtn 3 g5', 'rtn', { bits: 3, groupSize: 5 }],
  ['rtn 4 row', 'rtn', { bits: 4, groupSize: 0 }],
  ['rtn 8 g64', 'rtn', { bits: 8, groupSize: 64 }],
  ['binary', 'binary', {}],
];
const SHAPES = AWKWARD_SHAPES;

beforeAll(() => {
  registerAll();
  registerAllKernels();
});

function worstRelativeError(codec: Codec<any, any>, params: any, x: Float32Array, n: number): number {
  return worstKernelError(codec.decode(params), params.rows, params.cols, getKernel(codec.id)(params), x, n);
}

describe.each(CASES)('%s kernel equals decode-then-dense', (_label, id, raw) => {
  it.each(SHAPES)('random %i×%i, n = 1, 3, 5', (rows, cols) => {
    const codec = getCodec(id);
    const rng = new Rng(rows * 7919 + cols);
    const params = codec.encode(rng.normalArray(rows * cols), rows, cols, codec.resolveOptions(raw), { name: 't', seed: 1 });
    for (const n of [1, 3, 5]) {
      expect(worstRelativeError(codec, params, rng.normalArray(n * cols), n)).toBeLessThanOrEqual(1e-5);
    }
  });

  it('every linear of stories3M, n = 1 and n = 4', () => {
    const ckpt = readLlama2cCheckpoint(readFileSync(new URL('../../../../shared/models/stories3M/stories3M-q80.bin', import.meta.url)));
    const model = modelFromLlama2c(ckpt);
    const codec = getCodec(id);
    const options = codec.resolveOptions(raw);
    const rng = new Rng(3);
    for (let l = 0; l < model.config.nLayers; l++) {
      for (const kind of LINEAR_KINDS) {
        const [rows, cols] = linearShape(model.config, kind);
        const name = TensorNames.linear(l, kind);
        const params = codec.encode(model.tensors.get(name)!.data, rows, cols, options, { name, seed: 1 });
        for (const n of [1, 4]) {
          expect(worstRelativeError(codec, params, rng.normalArray(n * cols), n), name).toBeLessThanOrEqual(1e-5);
        }
      }
    }
  });
});
