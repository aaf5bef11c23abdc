import { readFileSync } from 'node:fs';
import { type Codec, Rng, UltraSketchError } from '@ultrasketch/core';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { type LinearKind, TensorNames, linearShape, modelFromLlama2c, type ModelWeights } from '@ultrasketch/model';

export const STORIES3M = new URL('../../../../shared/models/stories3M/stories3M-q80.bin', import.meta.url);

let model: ModelWeights | undefined;
export function stories3M(): ModelWeights {
  model ??= modelFromLlama2c(readLlama2cCheckpoint(readFileSync(STORIES3M)));
  return model;
}

/** A linear of stories3M: [weights, rows, cols]. */
export function realMatrix(layer: number, kind: LinearKind): [Float32Array, number, number] {
  const m = stories3M();
  const [rows, cols] = linearShape(m.config, kind);
  return [m.tensors.get(TensorNames.linear(layer, kind))!.data, rows, cols];
}

/** Laplace-distributed weights rounded to a grid of `levels` steps per unit: many exact ties and zeros. */
export function laplaceGrid(n: number, seed: number, scale = 0.05, levels = 200): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = rng.next() - 0.5;
    const v = -scale * Math.sign(u) * Math.log(1 - 2 * Math.abs(u));
    out[i] = Math.round(v * levels) / levels;
  }
  return out;
}

export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof UltraSketchError ? err.code : `untyped: ${String(err)}`;
  }
  return undefined;
}

export function errorOf(fn: () => unknown): UltraSketchError {
  try {
    fn();
  } catch (err) {
    if (err instanceof UltraSketchError) return err;
    throw err;
  }
  throw new Error('expected an UltraSketchError');
}

/** Deep copy of a codec's tensors (so a round trip cannot share buffers). */
export function copyTensors(codec: Codec<any, any>, p: unknown) {
  return Object.fromEntries(Object.entries(codec.toTensors(p)).map(([k, t]) => [k, { ...t, shape: [...t.shape], data: t.data.slice() }]));
}

/** Relative Frobenius error ‖Ŵ − W‖ / ‖W‖ and mean |ŵ| / mean |w|. */
export function errorStats(w: Float32Array, d: Float32Array): { relFro: number; magRatio: number } {
  let e = 0;
  let n = 0;
  let a = 0;
  let b = 0;
  for (let i = 0; i < w.length; i++) {
    e += (d[i]! - w[i]!) ** 2;
    n += w[i]! ** 2;
    a += Math.abs(d[i]!);
    b += Math.abs(w[i]!);
  }
  return { relFro: Math.sqrt(e / n), magRatio: a / b };
}
