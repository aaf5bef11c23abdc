/**
 * The setup shared by the sketch-state provider tests (providers-sketch.test.ts, the hard AbsMax pick, and
 * providers-sketch-soft.test.ts, the annealed soft query): heavy-tailed test matrices, the codec variants both
 * run, the state gradient check under a linear loss, and stories260K with its calibration tokens. Each helper
 * draws from the caller's Rng in the order the tests always did, so the tests see the same numbers.
 */
import { readFileSync } from 'node:fs';
import type { Rng } from '@ultrasketch/core';
// from source: the pipeline index pulls in the trainer's node entry (not aliased in vitest)
import { loadModel } from '../../pipeline/src/load.js';
import { documentTokenStream } from '../../pipeline/src/text.js';
import type { SketchStateProvider } from '../src/index.js';
import { range, worstGradError } from './helpers.js';

/** Laplace-distributed weights (heavy-tailed, like a trained linear's), `scale` 0.1 by default. */
export function laplace(rng: Rng, n: number, scale = 0.1): Float32Array {
  return Float32Array.from({ length: n }, () => {
    const u = rng.next() - 0.5;
    return -scale * Math.sign(u) * Math.log(1 - 2 * Math.abs(u));
  });
}

/** One test matrix's shape and the sketch codec options it is built with. */
export interface SketchCase {
  label: string;
  rows: number;
  cols: number;
  codecOptions: Record<string, unknown>;
}

/** The sketch variants both the hard and the soft query are checked on. */
export const SKETCH_CASES: SketchCase[] = [
  { label: 'rowrun f16 d3', rows: 12, cols: 20, codecOptions: { bpw: 2, rows: 3, state: 'f16', hash: 'rowrun' } },
  { label: 'mixed int8 d2', rows: 9, cols: 14, codecOptions: { bpw: 1.5, rows: 2, state: 'int8', hash: 'mixed' } },
  // saliency allocation with 3 groups at a generous budget: includes an exact group (one candidate per weight,
  // which the soft forward must leave as it is)
  { label: 'groups 3 saliency f32', rows: 8, cols: 12, codecOptions: { bpw: 12, rows: 3, state: 'f32', groups: 3, alloc: 'saliency:2' } },
];

/**
 * A case's matrix: Laplace weights, then a saliency with two dominant columns (both drawn from `rng`, in that
 * order), and the build context with `seed`.
 */
export function sketchMatrix(c: SketchCase, rng: Rng, seed: number): { w: Float32Array; ctx: { seed: number; saliency: Float64Array } } {
  const w = laplace(rng, c.rows * c.cols);
  const saliency = Float64Array.from({ length: c.cols }, (_, j) => (j < 2 ? 100 : 1 + rng.next()));
  return { w, ctx: { seed, saliency } };
}

/**
 * The state gradient check of a float64 provider under the linear loss L = Σ G·Ŵ, G ~ N(0, 1) drawn from `rng`:
 * one forward (it records the picks), the backward into a zeroed gradient, and the worst relative error of that
 * gradient against central finite differences (h = 1e-7, floor 1e-9) over every state. Returns G, the live
 * gradient array and the loss, for checks that go on from there.
 */
export function stateGradCheck(p: SketchStateProvider<Float64Array>, rng: Rng): { G: Float64Array; grad: Float64Array; loss: () => number; worst: number } {
  const S = p.states();
  const G = Float64Array.from({ length: p.rows * p.cols }, () => rng.normal());
  const loss = () => {
    const W = p.weight();
    let s = 0;
    for (let i = 0; i < W.length; i++) s += G[i]! * W[i]!;
    return s;
  };
  loss();
  const grad = p.parameters()[0]!.grad;
  grad.fill(0);
  p.backward(G);
  const r = worstGradError(loss, S, Float64Array.from(grad), range(S.length), 1e-7, 1e-9);
  return { G, grad, loss, worst: r.worst };
}

/** stories260K (llama2.c) from /work/shared and the token stream of the calibration text. */
export function stories260KWithCalib() {
  const { weights, tokenizer } = loadModel('/work/shared/models/stories260K/stories260K.bin');
  const calib = documentTokenStream(tokenizer, readFileSync('/work/shared/data/tinystories/calib.txt', 'utf8'));
  return { weights, tokenizer, calib };
}
