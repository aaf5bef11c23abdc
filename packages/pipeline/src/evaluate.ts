import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { ModelConfig, Tokenizer } from '@ultrasketch/model';
import { documentTokenStream } from './text.js';

/** Anything that can score a window: a runtime session (CPU now, WebGPU later). */
export interface ScoringSession {
  readonly config: ModelConfig;
  reset(): void;
  forward(tokens: ArrayLike<number>, options: { logits: 'all' }): Float32Array | Promise<Float32Array>;
}

export interface EvaluateProgress {
  windowsDone: number;
  windowsTotal: number;
  tokensDone: number;
}

export interface EvaluateOptions {
  session: ScoringSession;
  tokenizer: Tokenizer;
  /** Evaluation text: documents separated by blank lines. */
  text: string;
  /** Name of the text (a path) for messages and reports. */
  textSource?: string;
  /** Window length W; defaults to the model's seq_len. */
  window?: number;
  /** Evaluate only the first N windows; default all. */
  windows?: number;
  /** The float model to compare against on the same windows (KL and top-1). */
  reference?: ScoringSession;
  onProgress?(p: EvaluateProgress): void;
}

export interface EvaluateResult {
  /** The protocol, named in every report (see docs/evaluation.md). */
  protocol: 'llama2c-documents';
  window: number;
  windows: number;
  predictedTokens: number;
  streamTokens: number;
  meanNll: number;
  perplexity: number;
  /** Mean NLL of each window, in order. */
  windowNll: number[];
  /** Present with a reference: mean KL(P_ref ‖ P) per position, in nats. */
  kl?: number;
  /** Present with a reference: fraction of positions where both argmaxes agree. */
  top1?: number;
  /** Present with a reference: the reference model's own figures on the same windows. */
  reference?: { meanNll: number; perplexity: number };
}

/**
 * The llama2.c-documents perplexity protocol: documents split on blank lines, BOS each, one stream,
 * non-overlapping windows of W tokens (remainder dropped), each run from an empty cache; positions
 * 1..W−1 scored. With a reference, KL(P_ref ‖ P) and top-1 agreement on the same positions.
 */
export async function evaluate(options: EvaluateOptions): Promise<EvaluateResult> {
  const { session, tokenizer, reference } = options;
  const config = session.config;
  const source = options.textSource ?? '<text>';
  const W = options.window ?? config.seqLen;
  if (!Number.isInteger(W) || W < 2 || W > config.seqLen) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `window ${W} must be an integer in 2..${config.seqLen} (the model's seq_len)`, {
      source: '--window',
    });
  }
  if (reference && reference.config.vocabSize !== config.vocabSize) {
    throw new UltraSketchError(
      ErrorCodes.TOKENIZER_MISMATCH,
      `reference vocabulary (${reference.config.vocabSize}) differs from the model's (${config.vocabSize})`,
      { source: '--reference', hint: 'compare against the float model this one was compressed from' },
    );
  }
  const stream = documentTokenStream(tokenizer, options.text, source);
  const available = Math.floor(stream.length / W);
  if (available === 0) {
    throw new UltraSketchError(
      ErrorCodes.EMPTY_INPUT,
      `the text has ${stream.length} tokens, fewer than one window of ${W}`,
      { source, hint: 'use a longer text or a smaller --window' },
    );
  }
  if (options.windows !== undefined && (!Number.isInteger(options.windows) || options.windows < 1)) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `windows must be a positive integer, got ${options.windows}`, {
      source: '--windows',
    });
  }
  const nWindows = Math.min(options.windows ?? available, available);
  const vocab = config.vocabSize;
  const windowNll: number[] = [];
  let nllSum = 0;
  let refNllSum = 0;
  let klSum = 0;
  let agree = 0;
  const refCopy = reference ? new Float32Array(W * vocab) : undefined;

  for (let w = 0; w < nWindows; w++) {
    const tokens = stream.subarray(w * W, (w + 1) * W);
    if (reference && refCopy) {
      reference.reset();
      // Copy: a session reuses its logits buffer, and the two may share an implementation.
      refCopy.set(await reference.forward(tokens, { logits: 'all' }));
    }
    session.reset();
    const logits = await session.forward(tokens, { logits: 'all' });
    let windowSum = 0;
    for (let t = 0; t < W - 1; t++) {
      const row = logits.subarray(t * vocab, (t + 1) * vocab);
      const target = tokens[t + 1]!;
      const lse = logSumExp(row);
      windowSum += lse - row[target]!;
      if (refCopy) {
        const refRow = refCopy.subarray(t * vocab, (t + 1) * vocab);
        const refLse = logSumExp(refRow);
        refNllSum += refLse - refRow[target]!;
        klSum += klDivergence(refRow, refLse, row, lse);
        if (argmax(refRow) === argmax(row)) agree++;
      }
    }
    windowNll.push(windowSum / (W - 1));
    nllSum += windowSum;
    options.onProgress?.({ windowsDone: w + 1, windowsTotal: nWindows, tokensDone: (w + 1) * W });
  }

  const predicted = nWindows * (W - 1);
  const meanNll = nllSum / predicted;
  const result: EvaluateResult = {
    protocol: 'llama2c-documents',
    window: W,
    windows: nWindows,
    predictedTokens: predicted,
    streamTokens: stream.length,
    meanNll,
    perplexity: Math.exp(meanNll),
    windowNll,
  };
  if (reference) {
    result.kl = klSum / predicted;
    result.top1 = agree / predicted;
    result.reference = { meanNll: refNllSum / predicted, perplexity: Math.exp(refNllSum / predicted) };
  }
  return result;
}

/** log Σ exp(x), computed stably in float64. */
export function logSumExp(x: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i]! > max) max = x[i]!;
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.exp(x[i]! - max);
  return max + Math.log(sum);
}

/** KL(P ‖ Q) for logits p, q with their log-sum-exps: Σ P (log P − log Q). */
function klDivergence(p: Float32Array, pLse: number, q: Float32Array, qLse: number): number {
  let kl = 0;
  for (let i = 0; i < p.length; i++) {
    const logP = p[i]! - pLse;
    const prob = Math.exp(logP);
    if (prob > 0) kl += prob * (logP - (q[i]! - qLse));
  }
  return Math.max(0, kl);
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}
