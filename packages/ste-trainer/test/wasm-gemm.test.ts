import { setFlagsFromString } from 'node:v8';
import { createTrainerGemm } from '@ultrasketch/runtime-node';
import { describe, expect, it } from 'vitest';
import { matmul, setMatmulKernel } from '../src/matmul.js';

/** The WebAssembly SIMD adapter against the JS matmul: every layout, accumulate, awkward shapes. */
function rand(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

describe('wasm trainer gemm', () => {
  const gemm = createTrainerGemm({ minWork: 0 });
  // null means this engine cannot validate the SIMD kernels: say so loudly, and fail under CI (Node ≥ 20 has
  // WebAssembly SIMD, so there it would mean the kernels are broken, not absent).
  if (gemm === null) {
    const message = 'wasm trainer gemm: this engine could not validate the WebAssembly SIMD kernels';
    if (process.env.CI) throw new Error(`${message}; CI runs Node ≥ 20, which must have them`);
    console.warn(`\n*** SKIPPING ${message} ***\n`);
  }
  // The fused multiply-add tiles (relaxed SIMD; the V8 flag Node 20 needs is set by the gemm itself).
  const fma = createTrainerGemm({ minWork: 0, fma: true, setFlags: setFlagsFromString });
  it.skipIf(fma === null)('relaxed SIMD is available here (Node 20 with the V8 flag), so the trainer uses fused multiply-adds', () => {
    expect(fma!.fma).toBe(true);
  });

  for (const [label, g] of [['plain SIMD', gemm], ['fused multiply-add', fma]] as const)
  it.skipIf(g === null)(`${label}: equals the JS matmul within 1e-5 relative (all transposes, accumulate)`, () => {
    const gemm = g;
    const shapes: Array<[number, number, number]> = [[1, 1, 1], [3, 5, 7], [13, 17, 19], [37, 29, 130], [65, 66, 257], [5, 131, 3]];
    let seed = 1;
    for (const [m, n, k] of shapes) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          for (const accumulate of [false, true]) {
            const a = rand(m * k, seed++);
            const b = rand(k * n, seed++);
            const c0 = rand(m * n, seed++);
            const want = c0.slice();
            setMatmulKernel(null);
            matmul(a, b, want, m, n, k, transA, transB, accumulate);
            const got = c0.slice();
            expect(gemm!.matmul(a, b, got, m, n, k, transA, transB, accumulate)).toBe(true);
            let err = 0;
            let mag = 0;
            for (let i = 0; i < m * n; i++) {
              err = Math.max(err, Math.abs(got[i]! - want[i]!));
              mag = Math.max(mag, Math.abs(want[i]!));
            }
            expect(err / mag, `${m}x${n}x${k} tA=${transA} tB=${transB} acc=${accumulate}`).toBeLessThan(1e-5);
            // and through matmul() with the kernel installed
            const via = c0.slice();
            setMatmulKernel(gemm!.matmul);
            matmul(a, b, via, m, n, k, transA, transB, accumulate);
            setMatmulKernel(null);
            expect(Array.from(via)).toEqual(Array.from(got));
          }
        }
      }
    }
  });

  it.skipIf(gemm === null)('leaves Float64Array and tiny products to the JS path', () => {
    const g = createTrainerGemm()!;
    expect(g.matmul(new Float64Array(4), new Float64Array(4), new Float64Array(4), 2, 2, 1, false, true, false)).toBe(false);
    expect(g.matmul(new Float32Array(4), new Float32Array(4), new Float32Array(4), 2, 2, 1, false, true, false)).toBe(false);
  });
});
