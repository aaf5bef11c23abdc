import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { LlamaForward } from '@ultrasketch/model';

/**
 * Calibration statistics: for every linear layer, the mean squared activation entering each input channel,
 * E[a_j²], over calibration tokens. Sketch allocation uses it to decide which channels deserve more states.
 *
 * The float model runs over the calibration stream in non-overlapping windows (each from an empty KV cache,
 * like evaluation), and a forward hook accumulates Σ a_j² in float64 per channel. Order is fixed, so the
 * result is deterministic; memory is one accumulator per input channel per linear.
 */
export interface SaliencyStats {
  /** Tokens whose activations were accumulated. */
  tokens: number;
  /** Window length used. */
  window: number;
  /** E[a_j²] per input channel, by canonical linear name. */
  meanSquare: Map<string, Float64Array>;
}

export interface SaliencyProgress {
  tokensDone: number;
  tokensTotal: number;
}

export interface CollectSaliencyOptions {
  /** The float reference model. */
  forward: LlamaForward;
  /** Calibration token stream (documents with BOS, concatenated). Never evaluation text. */
  tokens: ArrayLike<number>;
  /** Use at most this many tokens (the work bound). Default: all. */
  maxTokens?: number;
  /** Window length; default the model's seq_len. A final partial window is used too. */
  window?: number;
  /** Only these linear names (default: every linear, classifier excluded). */
  include?: (name: string) => boolean;
  onProgress?(p: SaliencyProgress): void;
}

export function collectSaliency(options: CollectSaliencyOptions): SaliencyStats {
  const { forward } = options;
  const W = options.window ?? forward.config.seqLen;
  if (!Number.isInteger(W) || W < 1 || W > forward.config.seqLen) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `calibration window ${W} must be in 1..${forward.config.seqLen}`);
  }
  const total = Math.min(options.tokens.length, options.maxTokens ?? Infinity);
  if (!(total > 0)) {
    throw new UltraSketchError(ErrorCodes.EMPTY_INPUT, 'no calibration tokens', {
      hint: 'pass a non-empty calibration text and a positive --calib-tokens',
    });
  }
  const include = options.include ?? ((name: string) => name !== 'lm_head.weight');
  const sums = new Map<string, Float64Array>();
  const hooks = {
    onLinearInput(name: string, x: Float32Array, n: number, inFeatures: number) {
      if (!include(name)) return;
      let acc = sums.get(name);
      if (!acc) {
        acc = new Float64Array(inFeatures);
        sums.set(name, acc);
      }
      for (let t = 0; t < n; t++) {
        const o = t * inFeatures;
        for (let j = 0; j < inFeatures; j++) acc[j] = acc[j]! + x[o + j]! * x[o + j]!;
      }
    },
  };
  const cache = forward.createCache(W);
  const chunk: number[] = [];
  for (let start = 0; start < total; start += W) {
    const end = Math.min(start + W, total);
    chunk.length = 0;
    for (let i = start; i < end; i++) chunk.push(options.tokens[i]!);
    cache.reset();
    forward.forward(chunk, cache, { logits: 'none', hooks });
    options.onProgress?.({ tokensDone: end, tokensTotal: total });
  }
  const meanSquare = new Map<string, Float64Array>();
  for (const [name, acc] of sums) meanSquare.set(name, acc.map((v) => v / total));
  return { tokens: total, window: W, meanSquare };
}
