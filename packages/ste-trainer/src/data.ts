import { ErrorCodes, Rng, UltraSketchError } from '@ultrasketch/core';
import { LlamaForward, type ModelWeights } from '@ultrasketch/model';

/**
 * Training data: batches of `batch` windows of seqLen + 1 tokens (inputs are tokens 0..L−1 of a window,
 * next-token targets 1..L). Every source is a pure function of (seed, step): the randomness of step s comes
 * from its own generator `stepRng(seed, s, stream)`, so resuming at step s needs no generator state and
 * reproduces the exact batches an uninterrupted run would have seen.
 */
export interface BatchSource {
  /** Fill windows [first, first + count) of `out` ([batch, seqLen + 1]) for training step `step`. */
  fill(step: number, out: Int32Array, first: number, count: number): void;
}

/** A generator for one step and one random stream (0 = calibration offsets, 1 = teacher sampling). */
export function stepRng(seed: number, step: number, stream: number): Rng {
  return new Rng((BigInt(seed >>> 0) << 32n) | BigInt(((step * 4 + stream) >>> 0) & 0xffffffff));
}

/**
 * Windows cut at seeded random offsets from a calibration token stream (documents with BOS, as
 * `documentTokenStream` makes them). The offset is uniform over every start that leaves L + 1 tokens.
 */
export class CalibrationBatches implements BatchSource {
  constructor(
    readonly stream: Int32Array,
    readonly seqLen: number,
    readonly seed: number,
  ) {
    if (stream.length < seqLen + 1) {
      throw new UltraSketchError(
        ErrorCodes.EMPTY_INPUT,
        `the calibration stream has ${stream.length} tokens, fewer than one window of ${seqLen + 1}`,
        { hint: 'use more calibration text or a shorter --seq' },
      );
    }
  }

  fill(step: number, out: Int32Array, first: number, count: number): void {
    const w = this.seqLen + 1;
    const rng = stepRng(this.seed, step, 0);
    const starts = this.stream.length - w + 1;
    for (let b = first; b < first + count; b++) {
      const off = rng.int(starts);
      out.set(this.stream.subarray(off, off + w), b * w);
    }
  }
}

export interface TeacherSamplesOptions {
  /** Softmax temperature (default 1: the teacher's own distribution). */
  temperature?: number;
  /** First token of every sample (default 1, llama2.c's BOS). */
  bos?: number;
}

/**
 * Data-free distillation: windows sampled from the float teacher itself, starting from BOS, with the
 * reference forward and a KV cache; sampling at temperature 1 by default, seeded per step.
 */
export class TeacherSamples implements BatchSource {
  private readonly fwd: LlamaForward;
  private readonly cache;
  private readonly probs: Float64Array;
  readonly temperature: number;
  readonly bos: number;

  constructor(
    teacher: ModelWeights,
    readonly seqLen: number,
    readonly seed: number,
    options: TeacherSamplesOptions = {},
  ) {
    this.fwd = LlamaForward.fromWeights(teacher);
    this.cache = this.fwd.createCache(Math.min(seqLen + 1, teacher.config.seqLen));
    this.probs = new Float64Array(teacher.config.vocabSize);
    this.temperature = options.temperature ?? 1;
    this.bos = options.bos ?? 1;
    if (!(this.temperature > 0)) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `temperature ${this.temperature} must be positive`);
    if (seqLen + 1 > teacher.config.seqLen) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `teacher samples of ${seqLen + 1} tokens exceed the model's seq_len ${teacher.config.seqLen}`);
    }
  }

  fill(step: number, out: Int32Array, first: number, count: number): void {
    const w = this.seqLen + 1;
    const rng = stepRng(this.seed, step, 1);
    const tok = [0];
    for (let b = first; b < first + count; b++) {
      this.cache.reset();
      let token = this.bos;
      out[b * w] = token;
      for (let t = 1; t < w; t++) {
        tok[0] = token;
        const logits = this.fwd.forward(tok, this.cache, { logits: 'last' });
        token = sampleLogits(logits, this.probs, this.temperature, rng);
        out[b * w + t] = token;
      }
    }
  }

}

/**
 * One token drawn from softmax(logits / temperature) with `rng` (one uniform draw against the running sum);
 * `probs` is scratch of the vocabulary's length. Shared by TeacherSamples and the pipeline's cached corpus, so
 * both sample the same way.
 */
export function sampleLogits(logits: Float32Array, probs: Float64Array, temperature: number, rng: Rng): number {
  const invT = 1 / temperature;
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    probs[i] = Math.exp((logits[i]! - max) * invT);
    sum += probs[i]!;
  }
  const r = rng.next() * sum;
  let acc = 0;
  for (let i = 0; i < logits.length; i++) {
    acc += probs[i]!;
    if (r < acc) return i;
  }
  return logits.length - 1;
}

/**
 * Windows drawn from a fixed corpus of teacher samples (e.g. generated once and cached on disk by the
 * pipeline): `windows` holds `count` windows of seqLen + 1 tokens back to back; windows [0, holdout) are
 * never drawn (they are kept for choosing checkpoints); step s draws with replacement from the rest, seeded
 * by (seed, s), so a resumed run sees the same batches.
 */
export class CorpusBatches implements BatchSource {
  readonly count: number;
  constructor(
    readonly windows: Int32Array,
    readonly seqLen: number,
    readonly seed: number,
    readonly holdout = 0,
  ) {
    const w = seqLen + 1;
    if (windows.length % w !== 0) {
      throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `the teacher corpus has ${windows.length} tokens, not a whole number of ${w}-token windows`);
    }
    this.count = windows.length / w;
    if (this.count - holdout < 1) {
      throw new UltraSketchError(ErrorCodes.EMPTY_INPUT, `the teacher corpus has ${this.count} windows, none left to train on after ${holdout} held out`, {
        hint: 'generate more teacher windows',
      });
    }
  }

  fill(step: number, out: Int32Array, first: number, count: number): void {
    const w = this.seqLen + 1;
    const rng = stepRng(this.seed, step, 2);
    const span = this.count - this.holdout;
    for (let b = first; b < first + count; b++) {
      const i = this.holdout + rng.int(span);
      out.set(this.windows.subarray(i * w, i * w + w), b * w);
    }
  }
}
