import { Rng } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import {
  attentionBackward,
  attentionForward,
  logitLosses,
  distillLosses,
  logSoftmaxRows,
  matmul,
  mseLoss,
  rmsNormBackward,
  rmsNormForward,
  rope,
  ropeTables,
  swigluBackward,
  swigluForward,
} from '../src/index.js';
import { randomF64, range, worstGradError } from './helpers.js';

/**
 * Every op's backward pass against central finite differences, in float64 (the same code runs on
 * Float64Array, so the check measures the derivation, not float32 noise). The scalar is Σ r ⊙ out for a
 * fixed random r, whose gradient with respect to out is r.
 */
const H = 1e-4;
const TOL = 1e-6;

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

describe('matmul', () => {
  const naive = (a: Float64Array, b: Float64Array, m: number, n: number, k: number, ta: boolean, tb: boolean) => {
    const c = new Float64Array(m * n);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += (ta ? a[p * m + i]! : a[i * k + p]!) * (tb ? b[j * k + p]! : b[p * n + j]!);
        c[i * n + j] = s;
      }
    return c;
  };
  for (const [m, n, k] of [
    [7, 9, 5],
    [4, 4, 4],
    [13, 70, 300],
    [1, 3, 600],
    [66, 5, 1],
  ] as const) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        it(`${m}×${n}×${k} transA=${ta} transB=${tb}, f64 and f32, with accumulate`, () => {
          const rng = new Rng(m * 1000 + n * 10 + k);
          const a = randomF64(rng, m * k);
          const b = randomF64(rng, n * k);
          const want = naive(a, b, m, n, k, ta, tb);
          const c = new Float64Array(m * n);
          matmul(a, b, c, m, n, k, ta, tb);
          for (let i = 0; i < c.length; i++) expect(Math.abs(c[i]! - want[i]!)).toBeLessThan(1e-9 * Math.max(1, Math.abs(want[i]!)) * k);
          matmul(a, b, c, m, n, k, ta, tb, true);
          for (let i = 0; i < c.length; i++) expect(Math.abs(c[i]! - 2 * want[i]!)).toBeLessThan(1e-9 * Math.max(1, Math.abs(want[i]!)) * k);
          const c32 = new Float32Array(m * n);
          matmul(Float32Array.from(a), Float32Array.from(b), c32, m, n, k, ta, tb);
          for (let i = 0; i < c.length; i++) expect(Math.abs(c32[i]! - want[i]!)).toBeLessThan(1e-5 * Math.sqrt(k) * Math.max(1, Math.abs(want[i]!)));
        });
      }
    }
  }
});

describe('RMSNorm backward', () => {
  it('matches finite differences for x and w', () => {
    const rng = new Rng(2);
    const n = 3;
    const dim = 8;
    const x = randomF64(rng, n * dim);
    const w = randomF64(rng, dim);
    const r = randomF64(rng, n * dim);
    const y = new Float64Array(n * dim);
    const inv = new Float64Array(n);
    const f = () => {
      rmsNormForward(x, w, y, inv, n, dim, 1e-5);
      return dot(y, r);
    };
    f();
    const dx = new Float64Array(n * dim).fill(0.5); // backward ADDS: start from a non-zero value
    const dw = new Float64Array(dim);
    rmsNormBackward(r, x, w, inv, dx, dw, n, dim);
    for (let i = 0; i < dx.length; i++) dx[i] = dx[i]! - 0.5;
    expect(worstGradError(f, x, dx, range(n * dim), H, 1e-8).worst).toBeLessThan(TOL);
    expect(worstGradError(f, w, dw, range(dim), H, 1e-8).worst).toBeLessThan(TOL);
  });
});

describe('RoPE backward', () => {
  for (const layout of ['pairs', 'halves'] as const) {
    it(`${layout}: the inverse rotation is the gradient, at positions t mod seqLen`, () => {
      const rng = new Rng(3);
      const L = 5;
      const hs = 4;
      const width = 8;
      const n = 2 * L;
      const [cos, sin] = ropeTables(L, hs, 10000);
      const x = randomF64(rng, n * width);
      const r = randomF64(rng, n * width);
      const y = new Float64Array(n * width);
      const f = () => {
        y.set(x);
        rope(y, n, width, L, hs, cos, sin, layout === 'pairs', false);
        return dot(y, r);
      };
      const dx = r.slice();
      rope(dx, n, width, L, hs, cos, sin, layout === 'pairs', true);
      expect(worstGradError(f, x, dx, range(n * width), H, 1e-8).worst).toBeLessThan(TOL);
      // forward then inverse is the identity
      const z = x.slice();
      rope(z, n, width, L, hs, cos, sin, layout === 'pairs', false);
      rope(z, n, width, L, hs, cos, sin, layout === 'pairs', true);
      // (float32 cos/sin tables: cos² + sin² = 1 only to ~1e-7)
      for (let i = 0; i < z.length; i++) expect(Math.abs(z[i]! - x[i]!)).toBeLessThan(1e-6 * Math.max(1, Math.abs(x[i]!)));
    });
  }
});

describe('attention backward', () => {
  for (const [nHeads, nKvHeads] of [
    [2, 1],
    [4, 2],
    [2, 2],
  ] as const) {
    it(`${nHeads} heads, ${nKvHeads} KV heads: dq, dk, dv match finite differences`, () => {
      const rng = new Rng(4 + nHeads);
      const shape = { batch: 2, seqLen: 5, nHeads, nKvHeads, headSize: 4 };
      const n = shape.batch * shape.seqLen;
      const dim = nHeads * 4;
      const kv = nKvHeads * 4;
      const q = randomF64(rng, n * dim);
      const k = randomF64(rng, n * kv);
      const v = randomF64(rng, n * kv);
      const r = randomF64(rng, n * dim);
      const probs = new Float64Array(shape.batch * nHeads * shape.seqLen * shape.seqLen);
      const out = new Float64Array(n * dim);
      const f = () => {
        attentionForward(q, k, v, probs, out, shape);
        return dot(out, r);
      };
      f();
      const dq = new Float64Array(n * dim).fill(9); // overwritten, not accumulated
      const dk = new Float64Array(n * kv).fill(9);
      const dv = new Float64Array(n * kv).fill(9);
      attentionBackward(r, q, k, v, probs, dq, dk, dv, shape);
      expect(worstGradError(f, q, dq, range(q.length), H, 1e-8).worst).toBeLessThan(TOL);
      expect(worstGradError(f, k, dk, range(k.length), H, 1e-8).worst).toBeLessThan(TOL);
      expect(worstGradError(f, v, dv, range(v.length), H, 1e-8).worst).toBeLessThan(TOL);
    });
  }

  it('is causal: outputs at position t do not depend on later positions', () => {
    const rng = new Rng(9);
    const shape = { batch: 1, seqLen: 6, nHeads: 2, nKvHeads: 1, headSize: 4 };
    const q = randomF64(rng, 6 * 8);
    const k = randomF64(rng, 6 * 4);
    const v = randomF64(rng, 6 * 4);
    const probs = new Float64Array(2 * 36);
    const a = new Float64Array(6 * 8);
    attentionForward(q, k, v, probs, a, shape);
    k[5 * 4] = k[5 * 4]! + 3;
    v[5 * 4 + 1] = v[5 * 4 + 1]! - 2;
    const b = new Float64Array(6 * 8);
    attentionForward(q, k, v, probs, b, shape);
    for (let i = 0; i < 5 * 8; i++) expect(b[i]).toBe(a[i]);
    expect(b.slice(40)).not.toEqual(a.slice(40));
  });
});

describe('SwiGLU backward', () => {
  it('matches finite differences for gate and up', () => {
    const rng = new Rng(5);
    const count = 40;
    const g = randomF64(rng, count, 2);
    const u = randomF64(rng, count);
    const r = randomF64(rng, count);
    const h = new Float64Array(count);
    const f = () => {
      swigluForward(g, u, h, count);
      return dot(h, r);
    };
    const dg = new Float64Array(count);
    const du = new Float64Array(count);
    swigluBackward(r, g, u, dg, du, count);
    expect(worstGradError(f, g, dg, range(count), H, 1e-8).worst).toBeLessThan(TOL);
    expect(worstGradError(f, u, du, range(count), H, 1e-8).worst).toBeLessThan(TOL);
  });
});

describe('losses', () => {
  const n = 4;
  const vocab = 11;
  const setup = (seed: number) => {
    const rng = new Rng(seed);
    const logits = randomF64(rng, n * vocab, 2);
    const teacher = randomF64(rng, n * vocab, 2);
    logSoftmaxRows(teacher, n, vocab);
    const targets = Int32Array.from({ length: n }, () => rng.int(vocab));
    return { logits, teacher, targets };
  };

  for (const [wKl, wCe] of [
    [1, 0],
    [0, 1],
    [0.7, 0.3],
  ] as const) {
    it(`KL·${wKl} + CE·${wCe}: gradient wrt logits matches finite differences`, () => {
      const { logits, teacher, targets } = setup(6);
      const f = () => {
        const r = logitLosses(logits, teacher, targets, n, vocab, 0, 0, null);
        return wKl * r.kl + wCe * r.ce;
      };
      const d = new Float64Array(n * vocab);
      logitLosses(logits, teacher, targets, n, vocab, wKl, wCe, d);
      expect(worstGradError(f, logits, d, range(n * vocab), H, 1e-8).worst).toBeLessThan(TOL);
    });
  }

  it('KL is 0 for identical distributions, positive otherwise; CE and top-1 are exact', () => {
    const { logits, teacher, targets } = setup(7);
    const same = teacher.slice();
    const r0 = logitLosses(same, teacher, targets, n, vocab, 0, 0, null);
    expect(Math.abs(r0.kl)).toBeLessThan(1e-12);
    expect(r0.top1).toBe(1);
    let ce = 0;
    for (let t = 0; t < n; t++) ce -= teacher[t * vocab + targets[t]!]!;
    expect(r0.ce).toBeCloseTo(ce / n, 12);
    expect(logitLosses(logits, teacher, targets, n, vocab, 0, 0, null).kl).toBeGreaterThan(0);
  });

  for (const [wKl, wCe] of [
    [1, 0],
    [0, 1],
    [0.7, 0.3],
  ] as const) {
    it(`distillLosses (raw teacher logits), KL·${wKl} + CE·${wCe}: equals logSoftmaxRows + logitLosses, gradient matches finite differences`, () => {
      const rng = new Rng(16);
      const logits = randomF64(rng, n * vocab, 2);
      const raw = randomF64(rng, n * vocab, 2);
      const targets = Int32Array.from({ length: n }, () => rng.int(vocab));
      const lp = raw.slice();
      logSoftmaxRows(lp, n, vocab);
      const d1 = new Float64Array(n * vocab);
      const d2 = new Float64Array(n * vocab);
      const a = logitLosses(logits, lp, targets, n, vocab, wKl, wCe, d1, 7);
      const rawCopy = raw.slice();
      const b = distillLosses(logits, raw, targets, n, vocab, wKl, wCe, d2, 7);
      expect(raw).toEqual(rawCopy); // the teacher's logits are left as they were
      expect(b.teacherFinite && b.studentFinite).toBe(true);
      expect(Math.abs(b.kl - a.kl)).toBeLessThan(1e-12);
      expect(Math.abs(b.ce - a.ce)).toBeLessThan(1e-12);
      expect(b.top1).toBe(a.top1);
      for (let i = 0; i < d1.length; i++) expect(Math.abs(d2[i]! - d1[i]!)).toBeLessThan(1e-15);
      const f = () => {
        const r = distillLosses(logits, raw, targets, n, vocab, 0, 0, null);
        return ((wKl * r.kl + wCe * r.ce) * n) / 7; // the gradient is of the row sum over denom 7
      };
      expect(worstGradError(f, logits, d2, range(n * vocab), H, 1e-8).worst).toBeLessThan(TOL);
    });
  }

  it('distillLosses flags a NaN or ±Inf logit of either model, and CE-only runs without a teacher', () => {
    const rng = new Rng(17);
    const logits = new Float32Array(randomF64(rng, n * vocab, 2));
    const raw = new Float32Array(randomF64(rng, n * vocab, 2));
    const targets = Int32Array.from({ length: n }, () => rng.int(vocab));
    for (const bad of [NaN, Infinity, -Infinity]) {
      const t = raw.slice();
      t[2 * vocab + 3] = bad;
      const r = distillLosses(logits, t, targets, n, vocab, 1, 0, null);
      expect([r.teacherFinite, r.studentFinite]).toEqual([false, true]);
      const s = logits.slice();
      s[vocab + 5] = bad;
      const r2 = distillLosses(s, raw, targets, n, vocab, 1, 0, null);
      expect([r2.teacherFinite, r2.studentFinite]).toEqual([true, false]);
    }
    const ce = distillLosses(logits, null, targets, n, vocab, 0, 1, new Float32Array(n * vocab));
    expect(Number.isNaN(ce.kl) && Number.isNaN(ce.top1)).toBe(true);
    expect(ce.ce).toBeCloseTo(logitLosses(logits, null, targets, n, vocab, 0, 1, null).ce, 10);
  });

  it('hidden-state MSE: value and gradient', () => {
    const rng = new Rng(8);
    const x = randomF64(rng, 30);
    const t = randomF64(rng, 30);
    const f = () => 10 * mseLoss(x, t, 30, 0, null);
    const dx = new Float64Array(30);
    mseLoss(x, t, 30, 10, dx);
    expect(worstGradError(f, x, dx, range(30), H, 1e-8).worst).toBeLessThan(TOL);
  });
});
