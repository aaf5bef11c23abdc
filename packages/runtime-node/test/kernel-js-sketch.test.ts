import { Rng } from '@ultrasketch/core';
import { sketchCodec, sketchMinBpw } from '@ultrasketch/sketch-core';
import { describe, expect, it } from 'vitest';
import { sketchKernel } from '../src/kernels/sketch.js';
import { worstKernelError } from './oracle.js';

/**
 * The JS `sketch` kernel's f16 key path (sketch.ts f16Row) for every depth branch — d = 1, 2, 3 (fused loops)
 * and d > 3 (running maximum) — both hash families, several runs per row (rowrun segments), channel groups;
 * against decode-then-dense (float64), 1e-5 relative to Σ_j |ŵ_ij x_j|. (sketch-kernels.test.ts covers the
 * default d = 3 and the int8/f32 formats.)
 */
describe('JS sketch kernel, f16 keys, every depth', () => {
  const SHAPES: Array<[number, number]> = [
    [1, 1],
    [13, 7],
    [33, 130],
    [64, 301],
  ];
  it.each(SHAPES)('random %i×%i: d = 1, 2, 3, 4, 5, 16; rowrun and mixed; groups 1 and 3; n = 1, 3', (rows, cols) => {
    const rng = new Rng(rows * 31 + cols);
    const w = rng.normalArray(rows * cols);
    const saliency = Float64Array.from({ length: cols }, () => rng.next() * 4);
    for (const d of [1, 2, 3, 4, 5, 16]) {
      for (const hash of ['rowrun', 'mixed']) {
        for (const groups of [1, 3]) {
          const o = sketchCodec.resolveOptions({ bpw: 0.75, rows: d, hash, groups: Math.min(groups, cols), alloc: 'saliency' });
          const params = sketchCodec.encode(w, rows, cols, { ...o, bpw: Math.max(o.bpw, sketchMinBpw(rows, cols, o)) }, { name: 't', seed: 7, saliency });
          const dense = sketchCodec.decode(params);
          const k = sketchKernel(params);
          for (const n of [1, 3]) {
            const x = rng.normalArray(n * cols);
            const worst = worstKernelError(dense, rows, cols, k, x, n);
            expect(worst, `d ${d} ${hash} groups ${groups} n ${n}`).toBeLessThanOrEqual(1e-5);
          }
        }
      }
    }
  });
});
