import { Rng } from '@ultrasketch/core';
import type { Linear } from '@ultrasketch/model';
import { type HashedNetsParams, hashedNetsCodec, sketchCodec } from '@ultrasketch/sketch-core';
import { describe, it } from 'vitest';
import { hashednetsKernel } from '../src/kernels/hashednets.js';
import { sketchKernel } from '../src/kernels/sketch.js';
import { SKETCH_SHAPES, type SketchCase, checkRandomSketchShape, checkRealSketchLinears, sketchCaseOf } from './kernel-cases.js';

/**
 * The fused `sketch` and `hashednets` kernels against the oracle: decode() to dense, then a float64
 * product; tolerance 1e-5 relative to Σ_j |ŵ_ij x_j| (as in kernels.test.ts). Every hash family × state
 * format, channel groups with saliency allocation (including exact groups), awkward shapes and the real
 * stories3M linears (cases and loops in kernel-cases.ts, shared with kernel-wasm-sketch.test.ts).
 */
const sketch = sketchCaseOf((p) => sketchKernel(p));
const CASES: SketchCase[] = [
  ...['rowrun', 'mixed'].flatMap((hash) => ['f16', 'int8', 'f32'].map((state) => sketch({ bpw: 1, hash, state }))),
  sketch({ bpw: 0.5, hash: 'rowrun', state: 'f16', rows: 1 }),
  sketch({ bpw: 1.5, hash: 'rowrun', state: 'int8', groups: 3, alloc: 'saliency', alpha: 1 }),
  sketch({ bpw: 1.5, hash: 'mixed', state: 'f16', groups: 4, alloc: 'saliency:2', split: 'mass' }),
  sketch({ bpw: 6, hash: 'rowrun', state: 'f16', groups: 4, alloc: 'saliency:3' }), // some groups exact
  sketch({ bpw: 6, hash: 'mixed', state: 'int8', groups: 2, alloc: 'saliency:3' }),
  sketch({ bpw: 40, hash: 'rowrun', state: 'f32' }), // the whole matrix exact
  // query signmean (issue 16)
  sketch({ bpw: 0.5, rows: 1, query: 'signmean' }),
  sketch({ bpw: 1, rows: 3, state: 'int8', query: 'signmean' }),
  sketch({ bpw: 6, rows: 2, state: 'f16', groups: 4, alloc: 'saliency:3', query: 'signmean' }), // some groups exact
  sketch({ bpw: 1, rows: 2, hash: 'mixed', query: 'signmean' }),
  ['hashednets f16', hashedNetsCodec, { bpw: 1 }, (p: HashedNetsParams) => hashednetsKernel(p)],
  ['hashednets f32', hashedNetsCodec, { bpw: 1, state: 'f32' }, (p: HashedNetsParams) => hashednetsKernel(p)],
];

describe.each(CASES)('%s: kernel equals decode-then-dense', (...c) => {
  it.each(SKETCH_SHAPES)('random %i×%i, n = 1, 3, 5', (rows, cols) => {
    checkRandomSketchShape(c, rows, cols, [1, 3, 5]);
  });
});

describe('real matrices (stories3M)', () => {
  it.each(CASES)('%s: every linear of layers 0 and 5, n = 1 and 4', (...c) => {
    checkRealSketchLinears(c);
  });
});

/**
 * A rough speed comparison, printed (not a benchmark harness; the benchmark script is separate):
 *   SKETCH_MEASURE=1 npx vitest run packages/runtime-node/test/sketch-kernels.test.ts -t speed
 */
describe.runIf(process.env.SKETCH_MEASURE === '1')('speed (printed)', () => {
  it('fused sketch matvec vs dense f32, per hash family', async () => {
    const { DenseLinear } = await import('@ultrasketch/model');
    const lines: string[] = [];
    for (const [rows, cols] of [
      [2048, 2048],
      [512, 2048],
      [8192, 2048],
      [2048, 8192],
    ] as Array<[number, number]>) {
      const rng = new Rng(1);
      const w = rng.normalArray(rows * cols, 0.02);
      const x = rng.normalArray(cols);
      const y = new Float32Array(rows);
      const time = (lin: Linear) => {
        for (let i = 0; i < 2; i++) lin.apply(x, y, 1);
        const reps = 5;
        const t0 = performance.now();
        for (let i = 0; i < reps; i++) lin.apply(x, y, 1);
        return (performance.now() - t0) / reps;
      };
      const dense = time(new DenseLinear(w, rows, cols));
      const cells = [`${rows}×${cols}`, dense.toFixed(2)];
      for (const raw of [
        { bpw: 0.5, hash: 'rowrun' },
        { bpw: 0.5, hash: 'mixed' },
        { bpw: 0.5, hash: 'rowrun', state: 'int8' },
      ]) {
        const p = sketchCodec.encode(w, rows, cols, sketchCodec.resolveOptions(raw), { name: 'w', seed: 1 });
        const t = time(sketchKernel(p));
        cells.push(`${t.toFixed(2)} (${(t / dense).toFixed(2)}×)`);
      }
      const h = hashedNetsCodec.encode(w, rows, cols, hashedNetsCodec.resolveOptions({ bpw: 0.5 }), { name: 'w', seed: 1 });
      const th = time(hashednetsKernel(h));
      cells.push(`${th.toFixed(2)} (${(th / dense).toFixed(2)}×)`);
      lines.push(`| ${cells.join(' | ')} |`);
    }
    console.log(
      `\nMATVEC ms (n = 1), ratio to dense f32 in the same run\n| shape | dense f32 | sketch rowrun f16 0.5 | sketch mixed f16 0.5 | sketch rowrun int8 0.5 | hashednets f16 0.5 |\n| --- | --- | --- | --- | --- | --- |\n${lines.join('\n')}`,
    );
  });
});
