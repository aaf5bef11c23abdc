import { ErrorCodes, isUltraSketchError } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import { VARIANTS, randomWeights } from '../../model/test/variant-models.js';
import { WebGpuSession, ropeTable } from '../src/index.js';

/**
 * The Llama-family variants on WebGPU, checked without a GPU: the ones the WGSL programs do not compute are
 * refused with UNSUPPORTED naming the feature before any device is requested (never run as another model);
 * RoPE scaling, which only changes the CPU-built cos/sin table, is supported, and the table is checked here
 * against the published llama3 rule and llama.cpp's divisors.
 */

describe('variants the WebGPU runtime refuses', () => {
  const cases: Array<[string, RegExp]> = [
    ['Qwen2 (q/k/v bias, GQA, untied)', /q\/k\/v projection biases/],
    ['Qwen3 (q/k norm, head_dim ≠ dim/heads, tied)', /per-head q\/k RMSNorm.*headDim 16 ≠ dim \/ nHeads/],
    ['Llama (attention_bias on q/k/v/o, head_dim 12 ≠ dim/heads, GQA)', /biases.*output projection bias.*headDim 12/],
  ];
  it.each(cases)('%s: UNSUPPORTED naming the feature, before asking for a GPU', async (name, message) => {
    const v = VARIANTS.find((x) => x.name === name)!;
    // No `gpu` and no `context`: reaching device creation would fail differently.
    const err = await WebGpuSession.fromWeights(randomWeights(v, 1), {}).catch((e: unknown) => e);
    expect(isUltraSketchError(err) && err.code).toBe(ErrorCodes.UNSUPPORTED);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain('runtime-node');
  });
});

describe('RoPE tables with scaling (supported)', () => {
  const angleTable = (freqs: number[], positions: number) => {
    const out: number[] = [];
    for (let pos = 0; pos < positions; pos++) for (const f of freqs) out.push(Math.cos(pos * f), Math.sin(pos * f));
    return out;
  };
  const close = (got: Float32Array, want: number[]) => {
    let m = 0;
    want.forEach((w, i) => (m = Math.max(m, Math.abs(got[i]! - w))));
    return m;
  };

  it('llama3 scaling: cos/sin follow the scaled frequencies (kept, blended and divided), not the plain ones', () => {
    const v = VARIANTS.find((x) => x.config.ropeScaling?.type === 'llama3')!;
    const { factor, low, high, original } = v.spec.scaling as { factor: number; low: number; high: number; original: number };
    const freqs = Array.from({ length: 8 }, (_, i) => {
      const f = Math.pow(1e4, (-2 * i) / 16);
      const lambda = (2 * Math.PI) / f;
      if (lambda < original / high) return f;
      if (lambda > original / low) return f / factor;
      const s = (original / lambda - low) / (high - low);
      return ((1 - s) * f) / factor + s * f;
    });
    const table = ropeTable(v.config, 20);
    expect(close(table, angleTable(freqs, 20))).toBeLessThan(1e-5);
    const plain = Array.from({ length: 8 }, (_, i) => Math.pow(1e4, (-2 * i) / 16));
    expect(close(table, angleTable(plain, 20))).toBeGreaterThan(0.1);
  });

  it('rope_freqs divisors', () => {
    const v = VARIANTS.find((x) => x.config.ropeScaling?.type === 'freq-factors')!;
    const factors = [1, 1.5, 3, 8];
    const freqs = factors.map((d, i) => Math.pow(1e4, (-2 * i) / 8) / d);
    expect(close(ropeTable(v.config, 20), angleTable(freqs, 20))).toBeLessThan(1e-5);
  });
});
