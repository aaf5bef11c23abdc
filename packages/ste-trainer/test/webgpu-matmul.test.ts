import { describe, expect, it } from 'vitest';
import { matmul as cpuMatmul } from '../src/matmul.js';
import { matmul } from '../src/webgpu/index.js';
import { randArray, relErr, trainContext } from './webgpu-helpers.js';

describe('WebGPU matmul (tiled, workgroup-memory tiles)', () => {
  // Odd sizes straddle the 64-wide output blocks and the 16-long k tiles: partial blocks in m, n and k.
  const shapes: Array<[number, number, number]> = [
    [1, 1, 1],
    [3, 5, 7],
    [65, 17, 33],
    [70, 129, 19],
    [16, 64, 64],
  ];
  for (const [m, n, k] of shapes) {
    it(`every layout (A·B, Aᵀ·B, A·Bᵀ, Aᵀ·Bᵀ) with and without accumulate = the CPU matmul, ${m}×${n}×${k}`, async () => {
      const ctx = await trainContext();
      let worst = 0;
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          for (const accumulate of [false, true]) {
            const a = randArray(m * k, 1 + m + 3 * k);
            const b = randArray(k * n, 2 + n + 5 * k);
            const c0 = randArray(m * n, 3 + m * n);
            const want = c0.slice();
            cpuMatmul(a, b, want, m, n, k, transA, transB, accumulate);
            const A = ctx.upload(a, 'A');
            const B = ctx.upload(b, 'B');
            const C = ctx.upload(c0, 'C');
            matmul(ctx, A, B, C, m, n, k, transA, transB, accumulate);
            const got = await ctx.read(C);
            const err = relErr(got, want);
            worst = Math.max(worst, err);
            expect(err, `transA ${transA} transB ${transB} accumulate ${accumulate}`).toBeLessThan(1e-5);
            for (const t of [A, B, C]) ctx.free(t);
          }
        }
      }
      console.log(`[webgpu] matmul ${m}×${n}×${k}: worst relative error ${worst.toExponential(2)}`);
    });
  }

  it('refuses an output that is also an input, and operands too small for the shape (typed errors)', async () => {
    const ctx = await trainContext();
    const A = ctx.tensor(12, 'A');
    const B = ctx.tensor(12, 'B');
    expect(() => matmul(ctx, A, B, A, 3, 3, 4, false, true)).toThrow(/also an input/);
    expect(() => matmul(ctx, A, B, ctx.tensor(4, 'C'), 3, 3, 4, false, true)).toThrowError(expect.objectContaining({ code: 'E_SHAPE_MISMATCH' }));
  });
});
