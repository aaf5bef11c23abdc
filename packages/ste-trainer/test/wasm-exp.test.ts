import { createTrainerExp } from '@ultrasketch/runtime-node';
import { describe, expect, it } from 'vitest';
import { attentionBackward, attentionForward, distillLosses, setExpKernel, setKdKernel, setSoftmaxKernel, swigluForward } from '../src/ops.js';

/** The WebAssembly SIMD exponential against Math.exp, alone and inside the ops that use it. */
function rand(n: number, seed: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 2 ** 32 - 0.5) * scale;
  }
  return a;
}

describe('wasm trainer exponential', () => {
  const exp = createTrainerExp();
  if (exp === null) {
    const message = 'wasm trainer exponential: this engine could not validate the WebAssembly SIMD module';
    if (process.env.CI) throw new Error(`${message}; CI runs Node ≥ 20, which must have it`);
    console.warn(`\n*** SKIPPING ${message} ***\n`);
  }

  it.skipIf(exp === null)('equals exp of the float32 argument within 2e-7 relative; the cols % 4 tail; NaN; clamping', () => {
    const rows = 5;
    for (const cols of [1, 3, 4, 129, 4096]) {
      const x = rand(rows * cols, cols, 120);
      const shift = [0, 1.5, -3, 20, 0.25];
      const y = new Float32Array(rows * cols);
      exp!.expRows(x, y, rows, cols, 0.5, shift);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const i = r * cols + c;
          if (c >= (cols & ~3)) {
            expect(y[i]).toBe(Math.fround(Math.exp(0.5 * x[i]! - shift[r]!))); // tail: Math.exp
            continue;
          }
          const v = Math.fround(Math.fround(0.5 * x[i]!) - Math.fround(shift[r]!));
          if (v < -87.33 || v > 88) continue;
          expect(Math.abs(y[i]! / Math.exp(v) - 1)).toBeLessThan(2e-7);
        }
      }
    }
    const x = Float32Array.from([NaN, -1000, 1000, 0]);
    const y = new Float32Array(4);
    exp!.expRows(x, y, 1, 4, 1, [0]);
    expect(Number.isNaN(y[0])).toBe(true);
    expect(y[1]).toBeGreaterThan(0);
    expect(y[1]).toBeLessThan(1.2e-38 * 1.01); // 2^−126, not 0 or a subnormal
    expect(Number.isFinite(y[2])).toBe(true); // clamped at e^88
    expect(y[3]).toBe(1);
  });

  it.skipIf(exp === null)('SwiGLU, attention (forward and backward) and the KD/CE losses (vocabulary 37: a scalar tail) agree with their Math.exp versions (float32)', () => {
    const run = (on: boolean) => {
      const prev = setExpKernel(on ? exp!.expRows : null);
      const prevSoftmax = setSoftmaxKernel(on ? { causal: exp!.softmaxCausal, backward: exp!.softmaxBackward } : null);
      const prevKd = setKdKernel(on ? exp!.kdRows : null);
      try {
        const count = 1027;
        const g = rand(count, 1, 16);
        const u = rand(count, 2, 4);
        const h = new Float32Array(count);
        const sig = new Float32Array(count);
        swigluForward(g, u, h, count, sig);
        const shape = { batch: 2, seqLen: 7, nHeads: 4, nKvHeads: 2, headSize: 8 };
        const n = 14;
        const q = rand(n * 32, 3, 4);
        const k = rand(n * 16, 4, 4);
        const v = rand(n * 16, 5);
        const probs = new Float32Array(2 * 4 * 49);
        const out = new Float32Array(n * 32);
        attentionForward(q, k, v, probs, out, shape);
        const dout = rand(n * 32, 8);
        const dq = new Float32Array(n * 32);
        const dk = new Float32Array(n * 16);
        const dv = new Float32Array(n * 16);
        attentionBackward(dout, q, k, v, probs, dq, dk, dv, shape);
        const vocab = 37;
        const z = rand(n * vocab, 6, 20);
        const t = rand(n * vocab, 7, 20);
        const targets = Int32Array.from({ length: n }, (_, i) => (i * 5) % vocab);
        const d = new Float32Array(n * vocab);
        const r = distillLosses(z, t, targets, n, vocab, 0.7, 0.3, d);
        return { h, sig, probs, out, dq, dk, dv, d, r };
      } finally {
        setExpKernel(prev);
        setSoftmaxKernel(prevSoftmax);
        setKdKernel(prevKd);
      }
    };
    const a = run(false);
    const b = run(true);
    const close = (x: Float32Array, y: Float32Array, tol: number) => {
      let scale = 0;
      for (const v of x) scale = Math.max(scale, Math.abs(v));
      for (let i = 0; i < x.length; i++) expect(Math.abs(x[i]! - y[i]!)).toBeLessThanOrEqual(tol * scale);
    };
    close(a.h, b.h, 1e-6);
    close(a.sig, b.sig, 1e-6);
    close(a.probs, b.probs, 1e-6);
    close(a.out, b.out, 1e-6);
    close(a.dq, b.dq, 1e-6);
    close(a.dk, b.dk, 1e-6);
    close(a.dv, b.dv, 1e-6);
    close(a.d, b.d, 1e-6);
    expect(Math.abs(a.r.kl - b.r.kl)).toBeLessThan(1e-6 * Math.max(1, a.r.kl));
    expect(Math.abs(a.r.ce - b.r.ce)).toBeLessThan(1e-6 * Math.max(1, a.r.ce));
    expect(b.r.top1).toBe(a.r.top1);
  });
});
