import { ErrorCodes, isUltraSketchError } from '@ultrasketch/core';
import { describe, expect, it, vi } from 'vitest';
import { Sampler, argmax } from '../src/sampling.js';

function expectCode(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (err) {
    expect(isUltraSketchError(err), String(err)).toBe(true);
    expect((err as { code: string }).code).toBe(code);
    expect((err as { hint?: string }).hint ?? '').not.toBe('');
    return;
  }
  throw new Error(`expected an error with code ${code}`);
}

/** Logits whose softmax is exactly `probs` (up to float32 rounding). */
const logitsFor = (probs: number[]) => Float32Array.from(probs, (p) => Math.log(p));

function frequencies(sampler: Sampler, logits: Float32Array, draws: number): number[] {
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < draws; i++) counts[sampler.sample(logits)]!++;
  return counts;
}

/** Pearson's chi-square statistic of observed counts against expected probabilities. */
function chiSquare(counts: number[], probs: number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  let chi = 0;
  for (let i = 0; i < probs.length; i++) {
    const e = probs[i]! * total;
    if (e === 0) expect(counts[i]).toBe(0);
    else chi += (counts[i]! - e) ** 2 / e;
  }
  return chi;
}

describe('argmax', () => {
  it('returns the first maximum', () => {
    expect(argmax(Float32Array.of(1, 3, 2, 3))).toBe(1);
    expect(argmax([-5, -1, -1])).toBe(1);
    expect(argmax([7])).toBe(0);
    expect(argmax([Number.NaN, 2, Number.NaN])).toBe(1);
  });
});

describe('Sampler', () => {
  it('is greedy at temperature 0 (first maximum wins), whatever topP', () => {
    for (const topP of [0.1, 0.9, 1]) {
      const s = new Sampler({ temperature: 0, topP, seed: 1 });
      expect(s.sample(Float32Array.of(0.5, 2, -1, 2))).toBe(1);
      expect(s.sample(Float32Array.of(-3, -2, -1))).toBe(2);
    }
  });

  it('gives the same sequence for the same seed and a different one for another seed', () => {
    const logits = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i) * 2);
    const run = (seed: number | bigint, topP: number) => {
      const s = new Sampler({ temperature: 0.8, topP, seed });
      return Array.from({ length: 200 }, () => s.sample(logits));
    };
    for (const topP of [0.9, 1]) {
      expect(run(42, topP)).toEqual(run(42, topP));
      expect(run(42, topP)).toEqual(run(42n, topP));
      expect(run(42, topP)).not.toEqual(run(43, topP));
    }
  });

  it('does not modify the logits', () => {
    const logits = Float32Array.of(1, 2, 3, 4);
    const copy = logits.slice();
    new Sampler({ temperature: 0.7, topP: 0.5, seed: 3 }).sample(logits);
    new Sampler({ temperature: 0.7, topP: 1, seed: 3 }).sample(logits);
    expect(logits).toEqual(copy);
  });

  it('restricts nucleus sampling to the nucleus', () => {
    // One token holds 95% of the mass: with topP 0.9 the nucleus is that token alone.
    const probs = [0.01, 0.02, 0.95, 0.01, 0.01];
    const s = new Sampler({ temperature: 1, topP: 0.9, seed: 7 });
    const counts = frequencies(s, logitsFor(probs), 2000);
    expect(counts).toEqual([0, 0, 2000, 0, 0]);

    // Masses 0.5, 0.3, 0.15, 0.05 with topP 0.7: the nucleus is {0.5, 0.3} (cumulative 0.8 > 0.7),
    // sampled in proportion 5:3.
    const probs2 = [0.15, 0.5, 0.05, 0.3];
    const s2 = new Sampler({ temperature: 1, topP: 0.7, seed: 11 });
    const draws = 40_000;
    const counts2 = frequencies(s2, logitsFor(probs2), draws);
    expect(counts2[0]).toBe(0);
    expect(counts2[2]).toBe(0);
    // chi-square with 1 degree of freedom: 10.83 is the 0.1% critical value.
    expect(chiSquare(counts2, [0, 5 / 8, 0, 3 / 8])).toBeLessThan(10.83);
  });

  it('samples the full distribution in the right proportions at topP 1', () => {
    const probs = [0.1, 0.2, 0.3, 0.4];
    const s = new Sampler({ temperature: 1, topP: 1, seed: 2024 });
    const counts = frequencies(s, logitsFor(probs), 50_000);
    // 3 degrees of freedom: 16.27 is the 0.1% critical value.
    expect(chiSquare(counts, probs)).toBeLessThan(16.27);
  });

  it('applies the temperature', () => {
    // logits ln(p) at temperature 2 → probabilities ∝ sqrt(p).
    const probs = [0.1, 0.2, 0.3, 0.4];
    const s = new Sampler({ temperature: 2, topP: 1, seed: 5 });
    const counts = frequencies(s, logitsFor(probs), 50_000);
    const root = probs.map(Math.sqrt);
    const z = root.reduce((a, b) => a + b, 0);
    expect(chiSquare(counts, root.map((r) => r / z))).toBeLessThan(16.27);
    // A tiny temperature does not overflow: it is (almost) greedy.
    const cold = new Sampler({ temperature: 1e-30, topP: 1, seed: 5 });
    expect(frequencies(cold, Float32Array.of(1, 3, 2), 100)).toEqual([0, 100, 0]);
  });

  it('never samples a token of zero probability and handles tiny vocabularies', () => {
    const logits = Float32Array.of(-Infinity, 0, -Infinity, 0);
    for (const topP of [0.05, 0.5, 1]) {
      const counts = frequencies(new Sampler({ topP, seed: 9 }), logits, 2000);
      expect(counts[0]).toBe(0);
      expect(counts[2]).toBe(0);
    }
    expect(new Sampler({ seed: 1 }).sample(Float32Array.of(3))).toBe(0);
    // topP·n < 1: no token reaches run.c's cutoff; the top token is still kept.
    const flat = new Sampler({ topP: 0.1, seed: 1 });
    const counts = frequencies(flat, Float32Array.of(0, 0), 1000);
    expect(counts[0]).toBe(1000); // equal probabilities: the lower id is ordered first
  });

  it('works across vocabulary sizes with one sampler', () => {
    const s = new Sampler({ temperature: 1, topP: 0.95, seed: 3 });
    for (const n of [10, 4096, 7, 512]) {
      const logits = Float32Array.from({ length: n }, (_, i) => -i * 0.01);
      const id = s.sample(logits);
      expect(id).toBeGreaterThanOrEqual(0);
      expect(id).toBeLessThan(n);
    }
  });

  it('samples a 32000-token vocabulary without sorting it and without allocating per token', () => {
    // Work done, not time: no full sort of the vocabulary (top-p pops a heap only until the nucleus is
    // covered), and the probability and heap buffers are allocated once and reused for every token.
    const n = 32_000;
    const logits = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 4);
    const sorts = [Array.prototype, Float64Array.prototype, Float32Array.prototype, Int32Array.prototype].map((p) => vi.spyOn(p, 'sort'));
    try {
      for (const topP of [0.9, 1]) {
        const s = new Sampler({ temperature: 0.9, topP, seed: 8 });
        s.sample(logits);
        const buffers = s as unknown as { probs: Float64Array; heap: Int32Array };
        const probs = buffers.probs;
        const heap = buffers.heap;
        expect(probs.length).toBeGreaterThanOrEqual(n);
        for (let i = 0; i < 50; i++) s.sample(logits);
        expect(buffers.probs).toBe(probs);
        expect(buffers.heap).toBe(heap);
      }
      for (const spy of sorts) expect(spy).not.toHaveBeenCalled();
    } finally {
      for (const spy of sorts) spy.mockRestore();
    }
  });

  it('rejects invalid options with BAD_ARGUMENT and a hint', () => {
    for (const temperature of [-0.1, Number.NaN, Infinity, '1' as unknown as number]) {
      expectCode(() => new Sampler({ temperature }), ErrorCodes.BAD_ARGUMENT);
    }
    for (const topP of [0, -0.5, 1.01, Number.NaN, Infinity]) {
      expectCode(() => new Sampler({ topP }), ErrorCodes.BAD_ARGUMENT);
    }
    for (const seed of [1.5, Number.NaN, 2 ** 60, '3' as unknown as number]) {
      expectCode(() => new Sampler({ seed }), ErrorCodes.BAD_ARGUMENT);
    }
    expect(new Sampler().temperature).toBe(1);
    expect(new Sampler().topP).toBe(0.9);
    expect(new Sampler({ topP: 1, temperature: 0 }).topP).toBe(1);
  });

  it('rejects empty and non-finite logits', () => {
    const s = new Sampler({ seed: 1 });
    expectCode(() => s.sample(new Float32Array(0)), ErrorCodes.BAD_ARGUMENT);
    expectCode(() => s.sample(Float32Array.of(1, Number.NaN)), ErrorCodes.NOT_FINITE);
    expectCode(() => s.sample(Float32Array.of(1, Infinity)), ErrorCodes.NOT_FINITE);
    expectCode(() => s.sample(Float32Array.of(-Infinity, -Infinity)), ErrorCodes.NOT_FINITE);
    expectCode(() => new Sampler({ temperature: 0 }).sample(Float32Array.of(Number.NaN, 1)), ErrorCodes.NOT_FINITE);
  });
});
