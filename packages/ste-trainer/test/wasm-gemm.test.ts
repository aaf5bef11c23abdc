import { setFlagsFromString } from 'node:v8';
import { TrainerMemory, createTrainerGemm } from '@ultrasketch/runtime-node';
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

  for (const [label, g] of [['plain SIMD', gemm], ['fused multiply-add', fma]] as const)
  it.skipIf(g === null)(`${label}: operands in its memory are used in place, with the same bits as copies`, () => {
    const gemm = g!;
    const [m, n, k] = [37, 29, 130];
    let seed = 100;
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        for (const accumulate of [false, true]) {
          const a = rand(m * k, seed++);
          const b = rand(k * n, seed++);
          const c0 = rand(m * n, seed++);
          const want = c0.slice();
          expect(gemm.matmul(a, b, want, m, n, k, transA, transB, accumulate)).toBe(true);
          const ra = gemm.allocF32(m * k);
          const rb = gemm.allocF32(k * n);
          const rc = gemm.allocF32(m * n);
          expect(gemm.mem.isResident(ra) && gemm.mem.isResident(rc)).toBe(true);
          ra.set(a);
          rb.set(b);
          rc.set(c0);
          const copied = gemm.copiedFloats;
          expect(gemm.matmul(ra, rb, rc, m, n, k, transA, transB, accumulate)).toBe(true);
          expect(Array.from(rc), `tA=${transA} tB=${transB} acc=${accumulate}`).toEqual(Array.from(want));
          // nothing copied unless accumulating with the plain tiles (the sum is added from scratch); the FMA
          // tiles add into a resident C themselves
          expect(gemm.copiedFloats - copied).toBe(accumulate && !gemm.fma ? m * n : 0);
        }
      }
    }
  });

  it.skipIf(fma === null)('causal scores: the full product\'s bits wherever p ≤ t, later key blocks untouched', () => {
    const g = fma!;
    const [G, L, hs] = [3, 72, 16]; // L not a multiple of the 32-key block
    const q = g.allocF32(G * L * hs);
    const k = g.allocF32(L * hs);
    q.set(rand(G * L * hs, 7));
    k.set(rand(L * hs, 8));
    const full = new Float32Array(G * L * L);
    expect(g.matmul(q, k, full, G * L, L, hs, false, true, false)).toBe(true);
    const s = g.allocF32(G * L * L).fill(12345);
    expect(g.causalScores(q, k, s, G, L, hs)).toBe(true);
    const B = g.causalBlock;
    for (let r = 0; r < G * L; r++) {
      const t = r % L;
      for (let p = 0; p < L; p++) {
        if (p <= t) expect(s[r * L + p], `row ${r} key ${p}`).toBe(full[r * L + p]);
        else if (Math.floor(p / B) > Math.floor(t / B)) expect(s[r * L + p]).toBe(12345);
      }
    }
    // arrays outside its memory: not taken
    expect(g.causalScores(new Float32Array(G * L * hs), k, s, G, L, hs)).toBe(false);
  });

  it.skipIf(gemm === null)('its memory hands out zeroed, aligned, disjoint blocks and ordinary arrays when full', () => {
    const mem = new TrainerMemory({ maximumBytes: 1 << 20 });
    const x = mem.allocF32(1000);
    const y = mem.allocF32(3);
    expect(mem.isResident(x) && mem.isResident(y)).toBe(true);
    expect(x.byteOffset % 16).toBe(0);
    expect(y.byteOffset % 16).toBe(0);
    expect(y.byteOffset >= x.byteOffset + 4000 || y.byteOffset + 12 <= x.byteOffset).toBe(true);
    x.fill(7);
    expect(Array.from(y)).toEqual([0, 0, 0]);
    // over the maximum: still a working array, just not resident
    const big = mem.allocF32(1 << 20);
    expect(big.length).toBe(1 << 20);
    expect(mem.isResident(big)).toBe(false);
    // growing keeps earlier views valid (a shared memory grows in place)
    const grown = new TrainerMemory({ initialBytes: 65536, maximumBytes: 8 << 20 });
    const first = grown.allocF32(100);
    first.fill(3);
    const second = grown.allocF32(1 << 20);
    expect(grown.isResident(second) && grown.isResident(first)).toBe(true);
    expect(first[99]).toBe(3);
    expect(grown.memory.buffer.byteLength).toBeGreaterThanOrEqual(4 << 20);
  });

  it.skipIf(gemm === null)('leaves Float64Array and tiny products to the JS path', () => {
    const g = createTrainerGemm()!;
    expect(g.matmul(new Float64Array(4), new Float64Array(4), new Float64Array(4), 2, 2, 1, false, true, false)).toBe(false);
    expect(g.matmul(new Float32Array(4), new Float32Array(4), new Float32Array(4), 2, 2, 1, false, true, false)).toBe(false);
  });
});
