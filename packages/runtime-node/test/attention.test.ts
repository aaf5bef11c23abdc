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
});
