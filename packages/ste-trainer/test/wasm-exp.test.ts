import { createTrainerExp, createTrainerOps } from '@ultrasketch/runtime-node';
import { allocFloat32, setFloat32Allocator } from '../src/matmul.js';
import { AdamW, setAdamWKernel } from '../src/optim.js';
import { describe, expect, it } from 'vitest';
import {
  addRows,
  attentionBackward,
  attentionForward,
  distillLosses,
  expOfAbs,
  mseLoss,
  rmsNormBackward,
  rmsNormForward,
  rope,
  ropeTables,
  setElementwiseKernels,
  setExpKernel,
  setKdKernel,
  setSoftmaxKernel,
  swigluBackward,
  swigluForward,
} from '../src/ops.js';

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

/** The WebAssembly SIMD element-wise kernels (runtime-node trainer-ops.ts) against the JS ops they replace. */
describe('wasm trainer element-wise kernels', () => {
  const ops = createTrainerOps();
  if (ops === null) {
    const message = 'wasm trainer element-wise kernels: this engine could not validate the module';
    if (process.env.CI) throw new Error(`${message}; CI runs Node ≥ 20, which must have it`);
    console.warn(`\n*** SKIPPING ${message} ***\n`);
  }
  /** max |a − b| / max |b| */
  const relErr = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    let e = 0;
    let m = 0;
    for (let i = 0; i < b.length; i++) {
      e = Math.max(e, Math.abs(a[i]! - b[i]!));
      m = Math.max(m, Math.abs(b[i]!));
    }
    return e / m;
  };
  /** Run fn once with the JS loops and once with the kernels, on resident (in wasm memory) or ordinary arrays. */
  const both = (resident: boolean, fn: () => Float32Array[]) => {
    setElementwiseKernels(null);
    const want = fn();
    setElementwiseKernels(ops);
    setFloat32Allocator(resident ? (n) => ops!.mem.allocF32(n) : null);
    try {
      return { want, got: fn() };
    } finally {
      setElementwiseKernels(null);
      setFloat32Allocator(null);
    }
  };
  for (const resident of [false, true]) {
    it.skipIf(ops === null)(`SwiGLU, RMSNorm, the residual add, RoPE, the hidden MSE and exp(s·|x|) within 2e-6 of the JS ops (${resident ? 'in wasm memory' : 'copied'})`, () => {
      const [n, dim, hid] = [6, 16, 24];
      const { want, got } = both(resident, () => {
        const A = (len: number, seed: number, s = 1) => {
          const a = allocFloat32(len);
          a.set(rand(len, seed, s));
          return a;
        };
        const g = A(n * hid, 1, 8);
        const u = A(n * hid, 2, 2);
        const h = allocFloat32(n * hid);
        const sig = allocFloat32(n * hid);
        swigluForward(g, u, h, n * hid, sig);
        const dh = A(n * hid, 3);
        const dg = allocFloat32(n * hid);
        const du = allocFloat32(n * hid);
        swigluBackward(dh, g, u, dg, du, n * hid, sig);
        const x = A(n * dim, 4, 3);
        const w = A(dim, 5);
        const y = allocFloat32(n * dim);
        const r = allocFloat32(n);
        rmsNormForward(x, w, y, r, n, dim, 1e-5);
        const dy = A(n * dim, 6);
        const dx = A(n * dim, 7);
        const dw = A(dim, 8);
        rmsNormBackward(dy, x, w, r, dx, dw, n, dim);
        const sum = allocFloat32(n * dim);
        addRows(x, dy, sum, n * dim);
        // RoPE (pairs; in wasm only for arrays in its memory) forward then inverse, on 4 heads of 4
        const [cos, sin] = ropeTables(3, 4, 10000);
        const rq = A(n * dim, 9);
        rope(rq, n, dim, 3, 4, cos, sin, true, false);
        const rq0 = Float32Array.from(rq);
        rope(rq, n, dim, 3, 4, cos, sin, true, true);
        // hidden-state MSE with its gradient
        const mdx = A(n * dim, 10);
        const mse = new Float32Array([mseLoss(x, dy, n * dim, 0.7, mdx, 99)]);
        // exp(scale·|x|) (LittleBit's SmoothSign derivative)
        const ea = allocFloat32(n * dim);
        expOfAbs(x, ea, n * dim, -0.7);
        return [h, sig, dg, du, y, r, dx, dw, sum, rq0, rq, mdx, mse, ea];
      });
      want.forEach((w, i) => expect(relErr(got[i]!, w), `output ${i}`).toBeLessThan(2e-6));
    });
  }

  it.skipIf(ops === null)('RoPE: the wasm kernel (an array in its memory) and the JS loop (any other array) give the same bits', () => {
    // Which path a call takes depends on where its array lives, i.e. on the memory's history: a resumed run
    // must still equal an uninterrupted one (packages/pipeline/test/finetune.test.ts), so the paths must agree.
    const [n, dim, seqLen, hs] = [7, 32, 5, 8];
    const [cos, sin] = ropeTables(seqLen, hs, 10000);
    const src = rand(n * dim, 21, 3);
    setElementwiseKernels(ops);
    try {
      for (const inverse of [false, true]) {
        const inMemory = ops!.mem.allocF32(n * dim);
        inMemory.set(src);
        const plain = Float32Array.from(src);
        rope(inMemory, n, dim, seqLen, hs, cos, sin, true, inverse);
        rope(plain, n, dim, seqLen, hs, cos, sin, true, inverse);
        expect(ops!.mem.isResident(inMemory)).toBe(true);
        expect(Array.from(inMemory).some((v, i) => v !== src[i])).toBe(true);
        expect(Buffer.from(inMemory.buffer, inMemory.byteOffset, inMemory.byteLength).equals(Buffer.from(plain.buffer))).toBe(true);
      }
    } finally {
      setElementwiseKernels(null);
    }
  });

  it.skipIf(ops === null)('the loss pass finds the same maxima, top-1 and non-finite rows through row_maxcheck', () => {
    const [n, V] = [5, 64];
    const z = rand(n * V, 11, 10);
    const x = rand(n * V, 12, 10);
    x[2 * V + 7] = 50; // a clear teacher arg-max
    z[2 * V + 7] = 40;
    const run = (k: boolean) => {
      setElementwiseKernels(k ? ops : null);
      try {
        return distillLosses(z, x, [1, 2, 3, 4, 5], n, V, 1, 0.5, new Float32Array(n * V));
      } finally {
        setElementwiseKernels(null);
      }
    };
    expect(run(true)).toEqual(run(false));
    z[3 * V + 9] = NaN;
    expect(run(true).studentFinite).toBe(false);
    z[3 * V + 9] = 0;
    x[4 * V] = -Infinity;
    expect(run(true).teacherFinite).toBe(false);
  });

  it.skipIf(ops === null)('AdamW: the kernel equals the float64 loop within float32 rounding and zeroes the gradient', () => {
    const len = 4 * 37;
    const results = [false, true].map((k) => {
      setAdamWKernel(k ? (p, g, m, v, s) => ops!.adamw(p, g, m, v, s) : null);
      try {
        const p = { name: 'w', data: rand(len, 21), grad: rand(len, 22) };
        const opt = new AdamW([p], { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
        for (let t = 1; t <= 3; t++) {
          opt.step(t, 1e-2, 0.7);
          expect(Array.from(p.grad).every((g) => g === 0)).toBe(true);
          p.grad.set(rand(len, 30 + t));
        }
        return [p.data, opt.states[0]!.m, opt.states[0]!.v];
      } finally {
        setAdamWKernel(null);
      }
    });
    results[0]!.forEach((w, i) => expect(relErr(results[1]![i]!, w), `tensor ${i}`).toBeLessThan(1e-5));
  });
});
