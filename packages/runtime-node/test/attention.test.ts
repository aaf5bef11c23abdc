import { readFileSync } from 'node:fs';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { LlamaForward, type ModelConfig, denseForwardParts, modelFromLlama2c } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { NodeSession, wasmForwardParts } from '../src/index.js';
import { WasmAttention, emitAttentionModule } from '../src/wasm/attention.js';

/**
 * The WebAssembly SIMD attention and SwiGLU (wasm/attention.ts) against the reference JS loops of LlamaForward:
 * the same model with and without the kernel, real stories3M weights (grouped KV heads: 6 query heads on 2 KV heads),
 * a long prefill and decoding; and the kernel alone at awkward sizes (one position, 3 positions, kvMul 1 and
 * 4, headDim 4 and 12).
 */
const shared = (p: string) => new URL(`../../../../shared/${p}`, import.meta.url);

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return m / scale;
}

describe('WasmAttention', () => {
  it('validates', () => {
    expect(WebAssembly.validate(emitAttentionModule())).toBe(true);
  });

  it('stories3M: the session uses it, and its logits match the reference attention (prefill 300, then decode)', () => {
    const file = 'models/stories3M/stories3M-q80.bin';
    const model = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(shared(file)), file));
    const parts = wasmForwardParts(model);
    expect(parts.attention).toBeInstanceOf(WasmAttention);
    const fwd = new LlamaForward(parts);
    expect(fwd.createCache(8).kernel).toBe(parts.attention); // the cache lives in the kernel's memory
    const fast = new NodeSession(fwd);
    const ref = new NodeSession(new LlamaForward(wasmForwardParts(model, { attention: false })));
    expect(NodeSession.fromWeights(model, { kernels: 'wasm' }).forward([1, 2])).toEqual(fast.forward([1, 2]));
    fast.reset();
    const tokens = Array.from({ length: 300 }, (_, i) => 1 + ((i * 2654435761) >>> 20));
    const a = fast.forward(tokens, { logits: 'all' }).slice();
    const b = ref.forward(tokens, { logits: 'all' }).slice();
    expect(maxRelDiff(a, b)).toBeLessThan(1e-5);
    let worst = 0;
    for (let i = 0; i < 40; i++) worst = Math.max(worst, maxRelDiff(fast.forward([tokens[i]!]), ref.forward([tokens[i]!])));
    expect(worst).toBeLessThan(1e-5);
  });

  it.each([
    { hs: 4, nHeads: 2, nKv: 2, start: 0, n: 1 },
    { hs: 12, nHeads: 4, nKv: 1, start: 0, n: 3 },
    { hs: 8, nHeads: 8, nKv: 2, start: 5, n: 7 },
    { hs: 32, nHeads: 6, nKv: 2, start: 17, n: 1 },
  ])('headDim $hs, $nHeads heads on $nKv KV heads, from position $start, $n new: as the reference loops', ({ hs, nHeads, nKv, start, n }) => {
    const dim = hs * nHeads;
    const config: ModelConfig = {
      architecture: 'llama', dim, hiddenDim: 8, nLayers: 1, nHeads, nKvHeads: nKv, vocabSize: 8, seqLen: 64,
      normEps: 1e-5, ropeTheta: 10000, ropeLayout: 'pairs', tiedClassifier: true,
    } as ModelConfig;
    const kernel = new WasmAttention(config);
    const kvd = hs * nKv;
    const keys = kernel.allocate(64 * kvd);
    const values = kernel.allocate(64 * kvd);
    let seed = 7;
    const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 4;
    for (let i = 0; i < (start + n) * kvd; i++) {
      keys[i] = rnd();
      values[i] = rnd();
    }
    const q = Float32Array.from({ length: n * dim }, rnd);
    const out = new Float32Array(n * dim);
    kernel.attend(keys, values, q, out, start, n);
    // reference: float64
    const scale = 1 / Math.sqrt(hs);
    for (let t = 0; t < n; t++) {
      for (let h = 0; h < nHeads; h++) {
        const kvo = Math.floor(h / (nHeads / nKv)) * hs;
        const sc: number[] = [];
        for (let p = 0; p <= start + t; p++) {
          let d = 0;
          for (let i = 0; i < hs; i++) d += q[t * dim + h * hs + i]! * keys[p * kvd + kvo + i]!;
          sc.push(d * scale);
        }
        const mx = Math.max(...sc);
        const e = sc.map((s) => Math.exp(s - mx));
        const sum = e.reduce((x, y) => x + y, 0);
        for (let i = 0; i < hs; i++) {
          let o = 0;
          for (let p = 0; p <= start + t; p++) o += e[p]! * values[p * kvd + kvo + i]!;
          expect(out[t * dim + h * hs + i]).toBeCloseTo(o / sum, 5);
        }
      }
    }
  });

  it('swiglu: silu(g)·u as the reference loop (any count, large |g|, ±0)', () => {
    const kernel = new WasmAttention({ dim: 8, nHeads: 2, nKvHeads: 2 } as ModelConfig);
    for (const count of [1, 3, 4, 7, 513]) {
      const g = Float32Array.from({ length: count }, (_, i) => (i === 0 ? -0 : i === 1 ? -120 : i === 2 ? 95 : Math.sin(i * 1.7) * 12));
      const u = Float32Array.from({ length: count }, (_, i) => Math.cos(i * 0.3) * 3);
      const want = Array.from(g, (x, i) => (x / (1 + Math.exp(-x))) * u[i]!);
      kernel.swiglu(g, u, count);
      for (let i = 0; i < count; i++) {
        expect(Number.isFinite(g[i]!)).toBe(true);
        expect(Math.abs(g[i]! - want[i]!)).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(want[i]!)));
      }
    }
  });

  it('a head width that is not a multiple of 4 keeps the reference loops', () => {
    expect(WasmAttention.supports({ dim: 30, nHeads: 5, nKvHeads: 5 } as ModelConfig)).toBe(false);
    const parts = denseForwardParts(modelFromLlama2c(readLlama2cCheckpoint(readFileSync(shared('models/stories260K/stories260K.bin')), 'x')));
    expect(parts.attention).toBeUndefined();
  });

  describe('the forward glue (norms, RoPE, residual adds, cache writes in the kernel memory)', () => {
    const config = { dim: 24, hiddenDim: 16, nHeads: 2, nKvHeads: 1, headDim: 12 } as ModelConfig;
    let seed = 11;
    const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 6;
    const fill = (a: Float32Array) => {
      for (let i = 0; i < a.length; i++) a[i] = rnd();
      return a;
    };
    const close = (got: ArrayLike<number>, want: ArrayLike<number>) => {
      expect(got.length).toBe(want.length);
      for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(2e-6 * Math.max(1, Math.abs(want[i]!)));
    };

    it('is offered only when dim, kvDim and hiddenDim are multiples of 4', () => {
      expect(new WasmAttention(config).glue).toBeDefined();
      expect(new WasmAttention({ ...config, hiddenDim: 18 }).glue).toBeUndefined();
    });

    it('rmsNorm (with and without the residual add, from a later row) as the reference in float64', () => {
      const k = new WasmAttention(config);
      const g = k.glue!;
      const dim = 24;
      const eps = 1e-5;
      for (const [n, xRow, withAdd] of [[1, 0, false], [3, 0, true], [2, 1, false]] as const) {
        const x = fill(g.scratch((n + xRow) * dim));
        const y = fill(g.scratch(n * dim));
        const w = fill(g.scratch(dim));
        const out = g.scratch(n * dim);
        const x0 = Float64Array.from(x);
        if (withAdd) for (let i = 0; i < n * dim; i++) x0[i] = Math.fround(x0[i]! + y[i]!);
        g.rmsNorm(out, x, xRow, withAdd ? y : undefined, w, n, dim, eps);
        const want: number[] = [];
        for (let t = 0; t < n; t++) {
          const row = Array.from(x0.subarray((xRow + t) * dim, (xRow + t + 1) * dim));
          const inv = 1 / Math.sqrt(row.reduce((a, b) => a + b * b, 0) / dim + eps);
          for (let i = 0; i < dim; i++) want.push(w[i]! * inv * row[i]!);
        }
        close(out, want);
        if (withAdd) close(x.subarray(0, n * dim), Array.from(x0.subarray(0, n * dim))); // the add is exact in float32
      }
    });

    it.each([true, false])('rope (pairs %s) into another array at a later row, add, copyRows', (pairs) => {
      const k = new WasmAttention(config);
      const g = k.glue!;
      const hs = 12;
      const half = 6;
      const rowLen = 24;
      const n = 3;
      const start = 5;
      const cos = fill(g.scratch(16 * half));
      const sin = fill(g.scratch(16 * half));
      const src = fill(g.scratch(n * rowLen));
      const dst = g.scratch(10 * rowLen);
      g.rope(src, dst, 2, cos, sin, n, rowLen, hs, start, pairs);
      const want = new Float64Array(n * rowLen);
      for (let t = 0; t < n; t++) {
        for (let h = 0; h < rowLen; h += hs) {
          for (let i = 0; i < half; i++) {
            const a = t * rowLen + h + (pairs ? 2 * i : i);
            const b = pairs ? a + 1 : a + half;
            const c = cos[(start + t) * half + i]!;
            const s = sin[(start + t) * half + i]!;
            want[a] = src[a]! * c - src[b]! * s;
            want[b] = src[a]! * s + src[b]! * c;
          }
        }
      }
      close(dst.subarray(2 * rowLen, (2 + n) * rowLen), Array.from(want));
      expect(Array.from(dst.subarray(0, 2 * rowLen)).every((v) => v === 0)).toBe(true); // rows before untouched
      g.rope(src, src, 0, cos, sin, n, rowLen, hs, start, pairs); // in place
      close(src, Array.from(want));
      const x = fill(g.scratch(8));
      const y = fill(g.scratch(8));
      const sum = Array.from(x, (v, i) => Math.fround(v + y[i]!));
      g.add(x, y, 8);
      expect(Array.from(x)).toEqual(sum);
      g.copyRows(x, dst, 7, 1, 8);
      expect(Array.from(dst.subarray(56, 64))).toEqual(sum);
    });
  });
});

