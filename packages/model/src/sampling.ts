import { ErrorCodes, Rng, UltraSketchError } from '@ultrasketch/core';

/**
 * Next-token sampling as llama2.c's `run.c` does it (`sample`, `sample_argmax`, `sample_mult`, `sample_topp`),
 * with our seeded {@link Rng} in place of its xorshift, so the same seed gives the same tokens on every platform.
 *
 * - temperature 0: argmax (the first maximum wins);
 * - otherwise softmax(logits / temperature), then one uniform coin in [0, 1):
 *   - topP = 1: inverse-CDF sampling from the whole distribution (`sample_mult`);
 *   - 0 < topP < 1: nucleus sampling (`sample_topp`): keep tokens with probability ≥ (1 − topP)/(n − 1) (they
 *     cannot be in the nucleus otherwise), order them by probability (descending; ties by lower id), keep the
 *     shortest prefix whose cumulative probability exceeds topP (or all of them), sample within that mass.
 *
 * Differences from run.c, none of which changes the distribution: arithmetic is float64 rather than float32; the
 * logits are scaled as (logit − max)/temperature, which cannot overflow for tiny temperatures; the caller's
 * logits are never modified; the nucleus is found with a heap (only its members get ordered) rather than a full
 * qsort; where run.c would read out of bounds (one-token vocabulary, or no token reaching the cutoff — possible
 * when topP·n < 1), we use the whole distribution for the candidate set instead; rounding fall-backs return the
 * last token with non-zero probability rather than the last token.
 *
 * Working buffers are allocated on the first call (and when a longer logits vector arrives); `sample` allocates
 * nothing afterwards.
 */

export interface SamplerOptions {
  /** ≥ 0 and finite; 0 means greedy (argmax). Default 1. */
  temperature?: number;
  /** In (0, 1]; 1 disables nucleus filtering. Default 0.9. */
  topP?: number;
  /** Seed of the random stream (an integer, number or bigint). Default 0: sampling is reproducible by default. */
  seed?: number | bigint;
}

export class Sampler {
  readonly temperature: number;
  readonly topP: number;
  readonly seed: number | bigint;
  private readonly rng: Rng;
  private probs = new Float64Array(0);
  private heap = new Int32Array(0);

  constructor(opts: SamplerOptions = {}) {
    const { temperature = 1, topP = 0.9, seed = 0 } = opts;
    if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `temperature ${String(temperature)} is not a finite number ≥ 0`, {
        source: 'temperature',
        hint: 'use 0 for greedy decoding, 1 for the model distribution, or a value in between',
      });
    }
    if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `top-p ${String(topP)} is outside (0, 1]`, {
        source: 'topP',
        hint: 'use 1 to sample from the full distribution, or e.g. 0.9 for nucleus sampling',
      });
    }
    if (!(typeof seed === 'bigint' || (typeof seed === 'number' && Number.isSafeInteger(seed)))) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `seed ${String(seed)} is not an integer`, {
        source: 'seed',
        hint: 'pass an integer seed (a number up to 2^53 or a bigint)',
      });
    }
    this.temperature = temperature;
    this.topP = topP;
    this.seed = seed;
    this.rng = new Rng(seed);
  }

  /** The next token id for these logits (not modified). */
  sample(logits: Float32Array): number {
    const n = logits.length;
    if (n === 0) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'cannot sample from an empty logits vector', {
        source: 'logits',
        hint: 'pass the model output for one position (vocabulary-sized)',
      });
    }
    let max = -Infinity;
    let maxIdx = 0;
    let nan = false;
    for (let i = 0; i < n; i++) {
      const v = logits[i]!;
      if (v > max) {
        max = v;
        maxIdx = i;
      } else if (v !== v) nan = true;
    }
    if (nan || (this.temperature > 0 && !Number.isFinite(max))) {
      throw new UltraSketchError(ErrorCodes.NOT_FINITE, 'the logits contain NaN, +Infinity, or only -Infinity', {
        source: 'logits',
        hint: 'the forward pass produced non-finite values',
      });
    }
    if (this.temperature === 0 || n === 1) return maxIdx;

    if (this.probs.length < n) {
      this.probs = new Float64Array(n);
      this.heap = new Int32Array(n);
    }
    const probs = this.probs;
    const invT = 1 / this.temperature;
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const e = Math.exp((logits[i]! - max) * invT);
      probs[i] = e;
      sum += e;
    }
    const invSum = 1 / sum;
    for (let i = 0; i < n; i++) probs[i]! *= invSum;

    const coin = this.rng.next();
    return this.topP >= 1 ? sampleMult(probs, n, coin) : this.sampleTopP(n, coin);
  }

  /** llama2.c `sample_topp` over this.probs[0..n). */
  private sampleTopP(n: number, coin: number): number {
    const probs = this.probs;
    const heap = this.heap;
    const topP = this.topP;
    const cutoff = (1 - topP) / (n - 1);
    let size = 0;
    for (let i = 0; i < n; i++) if (probs[i]! >= cutoff) heap[size++] = i;
    if (size === 0) for (let i = 0; i < n; i++) heap[size++] = i;

    // Heapify (max-heap by probability, ties by lower id), then pop in descending order until the cumulative
    // probability exceeds topP, as heapsort does: the k-th popped id is stored at heap[end - k].
    const end = size;
    for (let i = (size >> 1) - 1; i >= 0; i--) siftDown(heap, probs, i, size);
    let cumulative = 0;
    while (size > 0) {
      const top = heap[0]!;
      heap[0] = heap[--size]!;
      siftDown(heap, probs, 0, size);
      heap[size] = top; // the k-th largest lands at end - k
      cumulative += probs[top]!;
      if (cumulative > topP) break;
    }
    // The nucleus, largest first, is heap[end - 1], heap[end - 2], ..., heap[size].
    const r = coin * cumulative;
    let cdf = 0;
    let lastNonZero = heap[end - 1]!;
    for (let k = end - 1; k >= size; k--) {
      const id = heap[k]!;
      const p = probs[id]!;
      cdf += p;
      if (p > 0) lastNonZero = id;
      if (r < cdf) return id;
    }
    return lastNonZero;
  }
}

/** Index of the largest value; the first one of equal maxima. NaN never wins; 0 if nothing beats -Infinity. */
export function argmax(logits: ArrayLike<number>): number {
  let best = -Infinity;
  let idx = 0;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (v > best) {
      best = v;
      idx = i;
    }
  }
  return idx;
}

/** llama2.c `sample_mult`: the first index whose running CDF exceeds the coin. */
function sampleMult(probs: Float64Array, n: number, coin: number): number {
  let cdf = 0;
  let lastNonZero = 0;
  for (let i = 0; i < n; i++) {
    const p = probs[i]!;
    cdf += p;
    if (p > 0) lastNonZero = i;
    if (coin < cdf) return i;
  }
  return lastNonZero;
}

/** a comes before b in the max-heap: higher probability, or equal probability and lower id. */
function above(probs: Float64Array, a: number, b: number): boolean {
  const pa = probs[a]!;
  const pb = probs[b]!;
  return pa > pb || (pa === pb && a < b);
}

function siftDown(heap: Int32Array, probs: Float64Array, pos: number, size: number): void {
  const item = heap[pos]!;
  for (;;) {
    let child = 2 * pos + 1;
    if (child >= size) break;
    if (child + 1 < size && above(probs, heap[child + 1]!, heap[child]!)) child++;
    if (!above(probs, heap[child]!, item)) break;
    heap[pos] = heap[child]!;
    pos = child;
  }
  heap[pos] = item;
}
