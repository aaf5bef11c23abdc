import { Rng } from '@ultrasketch/core';
import { LINEAR_KINDS, type ModelConfig, type ModelWeights, TensorNames, expectedTensors, linearShape } from '@ultrasketch/model';
import { DenseProvider, type FloatArray, type GraphWeights, type LayerProviders } from '../src/index.js';

/** The small random config of the gradient checks. */
export function tinyConfig(over: Partial<ModelConfig> = {}): ModelConfig {
  return {
    architecture: 'llama',
    dim: 8,
    hiddenDim: 12,
    nLayers: 2,
    nHeads: 2,
    nKvHeads: 1,
    vocabSize: 11,
    seqLen: 16,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeLayout: 'pairs',
    tiedClassifier: true,
    ...over,
  };
}

/** Random model weights (float32) with norms near 1 and linears of std 0.3. */
export function randomModel(c: ModelConfig, seed = 1): ModelWeights {
  const rng = new Rng(seed);
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, shape] of expectedTensors(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = name.endsWith('norm.weight') || name.endsWith('layernorm.weight')
      ? Float32Array.from({ length: n }, () => 1 + 0.2 * rng.normal())
      : rng.normalArray(n, name === TensorNames.embedding || name === TensorNames.classifier ? 1 : 0.3);
    tensors.set(name, { shape, data });
  }
  return { config: c, tensors };
}

/** Graph weights in f64 or f32 with every linear and norm trainable (dense). */
export function graphWeights<T extends FloatArray>(m: ModelWeights, f64: boolean, trainNorms = true): GraphWeights<T> {
  const c = m.config;
  const conv = (a: Float32Array): T => (f64 ? Float64Array.from(a) : a.slice()) as T;
  const zeros = (n: number): T => (f64 ? new Float64Array(n) : new Float32Array(n)) as T;
  const get = (name: string) => m.tensors.get(name)!.data;
  const norm = (name: string) => ({ data: conv(get(name)), grad: trainNorms ? zeros(c.dim) : null });
  const embedding = conv(get(TensorNames.embedding));
  return {
    config: c,
    embedding,
    classifier: c.tiedClassifier ? embedding : conv(get(TensorNames.classifier)),
    attnNorm: Array.from({ length: c.nLayers }, (_, l) => norm(TensorNames.attnNorm(l))),
    ffnNorm: Array.from({ length: c.nLayers }, (_, l) => norm(TensorNames.ffnNorm(l))),
    finalNorm: norm(TensorNames.finalNorm),
    layers: Array.from({ length: c.nLayers }, (_, l) => {
      const lp = {} as LayerProviders<T>;
      for (const kind of LINEAR_KINDS) {
        const [rows, cols] = linearShape(c, kind);
        const name = TensorNames.linear(l, kind);
        lp[kind] = new DenseProvider<T>({ name, rows, cols, weight: conv(get(name)), trainable: true });
      }
      return lp;
    }),
  };
}

/**
 * Central finite differences of f at every index in `indices` of x, compared with `analytic`.
 * Returns the worst relative error |a − n| / max(|a|, |n|, floor, 1e-4 · max|a|).
 */
export function worstGradError(
  f: () => number,
  x: FloatArray,
  analytic: ArrayLike<number>,
  indices: Iterable<number>,
  h: number,
  floor: number,
): { worst: number; at: number; a: number; n: number } {
  const idx = [...indices];
  // Entries far below the gradient's scale are compared on that scale (their relative error is rounding).
  let scale = 0;
  for (const i of idx) scale = Math.max(scale, Math.abs(analytic[i]!));
  floor = Math.max(floor, 1e-4 * scale);
  let worst = 0;
  let at = -1;
  let wa = 0;
  let wn = 0;
  for (const i of idx) {
    const orig = x[i]!;
    x[i] = orig + h;
    const fp = f();
    x[i] = orig - h;
    const fm = f();
    x[i] = orig;
    const num = (fp - fm) / (2 * h);
    const a = analytic[i]!;
    const err = Math.abs(a - num) / Math.max(Math.abs(a), Math.abs(num), floor);
    if (err > worst) {
      worst = err;
      at = i;
      wa = a;
      wn = num;
    }
  }
  return { worst, at, a: wa, n: wn };
}

export function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

export function randomF64(rng: Rng, n: number, std = 1): Float64Array {
  return Float64Array.from({ length: n }, () => rng.normal() * std);
}
