import { readFileSync } from 'node:fs';
import { type Codec, Rng } from '@ultrasketch/core';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { type LittleBitParams, littlebitCodec } from '@ultrasketch/littlebit';
import { LINEAR_KINDS, type Linear, type ModelWeights, TensorNames, linearShape, modelFromLlama2c } from '@ultrasketch/model';
import { type SketchParams, hashedNetsMinBpw, sketchCodec, sketchGroups, sketchMinBpw } from '@ultrasketch/sketch-core';
import { expect } from 'vitest';
import { worstKernelError } from './oracle.js';
import { AWKWARD_SHAPES } from './shapes.js';

/**
 * The cases and loops the JS and the WebAssembly kernel tests of one codec share (sketch-kernels.test.ts and
 * kernel-wasm-sketch.test.ts; littlebit-kernel.test.ts and kernel-wasm-littlebit.test.ts; the real layers and
 * the oracle measure for kernel-wasm-baselines.test.ts): shape tables, the random-matrix and real-layer loops,
 * each measured with the oracle (oracle.ts). Each test file passes its own kernel.
 */

let model3M: ModelWeights | undefined;

/** stories3M (the q80 checkpoint in ../shared), read once per test file. */
export function stories3M(): ModelWeights {
  model3M ??= modelFromLlama2c(readLlama2cCheckpoint(readFileSync(new URL('../../../../shared/models/stories3M/stories3M-q80.bin', import.meta.url))));
  return model3M;
}

/** The linears of stories3M's `layers` (each layer's LINEAR_KINDS in order): the real-layer cases of the kernel tests. */
export function stories3MLinears(layers: number[]): Array<{ name: string; rows: number; cols: number; weight: Float32Array }> {
  const model = stories3M();
  return layers.flatMap((l) =>
    LINEAR_KINDS.map((kind) => {
      const [rows, cols] = linearShape(model.config, kind);
      const name = TensorNames.linear(l, kind);
      return { name, rows, cols, weight: model.tensors.get(name)!.data };
    }),
  );
}

// ------------------------------------------------------------------------------------ sketch, hashednets

export type SketchCase = [label: string, codec: Codec<any, any>, raw: Record<string, unknown>, kernel: (p: any) => Linear];

/** A sketch case builder for one kernel: raw options → [label, sketchCodec, raw, kernel]. */
export function sketchCaseOf(kernel: (p: SketchParams) => Linear): (raw: Record<string, unknown>) => SketchCase {
  return (raw) => [`sketch ${JSON.stringify(raw)}`, sketchCodec, raw, kernel];
}

export const SKETCH_SHAPES: Array<[number, number]> = [
  [1, 1],
  [1, 53],
  [41, 1],
  [13, 7],
  [33, 130],
];

/** The options for this shape: the case's bpw, raised to the smallest feasible target where needed. */
export function feasible(codec: Codec<any, any>, raw: Record<string, unknown>, rows: number, cols: number): any {
  const o = codec.resolveOptions(raw);
  if (codec === sketchCodec) {
    const groups = Math.min(o.groups, cols);
    const o2 = { ...o, groups };
    return { ...o2, bpw: Math.max(o.bpw, sketchMinBpw(rows, cols, o2)) };
  }
  return { ...o, bpw: Math.max(o.bpw, hashedNetsMinBpw(rows, cols, o)) };
}

/** The oracle measure of `kernel` for a codec's params (dense = codec.decode(params)). */
export function worstCodecError(codec: Codec<any, any>, kernel: Linear, params: any, x: Float32Array, n: number): number {
  return worstKernelError(codec.decode(params), params.rows, params.cols, kernel, x, n);
}

/**
 * A random rows × cols matrix (seeded by the shape) with random saliency, encoded with the case's feasible
 * options: `check` sees the kernel first, then its shape must match and every n must be within 1e-5.
 */
export function checkRandomSketchShape(
  [, codec, raw, kernel]: SketchCase,
  rows: number,
  cols: number,
  ns: number[],
  check?: (k: Linear) => void,
): void {
  const rng = new Rng(rows * 7919 + cols);
  const w = rng.normalArray(rows * cols);
  const saliency = Float64Array.from({ length: cols }, () => rng.next() * 4);
  const params = codec.encode(w, rows, cols, feasible(codec, raw, rows, cols), { name: 't', seed: 11, saliency });
  const k = kernel(params);
  check?.(k);
  expect([k.outFeatures, k.inFeatures]).toEqual([rows, cols]);
  for (const n of ns) {
    expect(worstCodecError(codec, k, params, rng.normalArray(n * cols), n), `n = ${n}`).toBeLessThanOrEqual(1e-5);
  }
}

/** Every linear of stories3M layers 0 and 5, n = 1 and 4; cases of bpw ≥ 6 must include exact groups. */
export function checkRealSketchLinears([, codec, raw, kernel]: SketchCase): void {
  const rng = new Rng(3);
  let exactGroups = 0;
  for (const { name, rows, cols, weight } of stories3MLinears([0, 5])) {
    const saliency = Float64Array.from({ length: cols }, () => rng.next() ** 4);
    const params = codec.encode(weight, rows, cols, feasible(codec, raw, rows, cols), { name, seed: 1, saliency });
    if (codec === sketchCodec) exactGroups += sketchGroups(params).filter((g) => !g.family).length;
    const k = kernel(params);
    for (const n of [1, 4]) {
      expect(worstCodecError(codec, k, params, rng.normalArray(n * cols), n), name).toBeLessThanOrEqual(1e-5);
    }
  }
  if (codec === sketchCodec && Number(raw.bpw) >= 6) expect(exactGroups).toBeGreaterThan(0);
}

// ------------------------------------------------------------------------------------------- littlebit

export const LITTLEBIT_SHAPES: Array<[number, number]> = [
  ...AWKWARD_SHAPES,
  [300, 40], // > 224 rows: the U_s stage uses byte tables
  [40, 260], // byte-aligned V_sᵀ rows (260 % 8 != 0 → repacked); r up to 40
];

export const encodeLittleBit = (w: Float32Array, rows: number, cols: number, raw: Record<string, unknown>, seed = 1) =>
  littlebitCodec.encode(w, rows, cols, littlebitCodec.resolveOptions(raw), { name: 't', seed });

/** Ranks 1..min(rows, cols, most), plus the full rank. */
export function ranksUpTo(rows: number, cols: number, most: number): number[] {
  const full = Math.min(rows, cols);
  return [...new Set([...Array.from({ length: Math.min(full, most) }, (_, i) => i + 1), full])];
}

/** Zero input gives zero output; a zero matrix gives zero output. */
export function checkLittleBitZeros(kernel: (p: LittleBitParams) => Linear): void {
  const rng = new Rng(2);
  const p = encodeLittleBit(rng.normalArray(9 * 11), 9, 11, { rank: 3 });
  const y = new Float32Array(9).fill(7);
  kernel(p).apply(new Float32Array(11), y, 1);
  expect([...y]).toEqual(new Array(9).fill(0));
  const z = encodeLittleBit(new Float32Array(6 * 5), 6, 5, { rank: 2 });
  kernel(z).apply(rng.normalArray(5), y, 1);
  expect([...y.subarray(0, 6)]).toEqual(new Array(6).fill(0));
}

/**
 * Every linear of stories3M layers 0, 2, 4 at 0.55 bpw (1 path), 1.0 bpw (2 paths), 1.2 bpw multiple8
 * (2 paths), n = 1 and 4, measured by `worst(params, x, n)`.
 */
export function checkRealLittleBitLinears(worst: (params: LittleBitParams, x: Float32Array, n: number) => number): void {
  const model = stories3M();
  const rng = new Rng(3);
  const settings: Array<Record<string, unknown>> = [
    { bpw: 0.55, residual: false },
    { bpw: 1.0, residual: true },
    { bpw: 1.2, residual: true, rankRounding: 'multiple8' },
  ];
  for (let l = 0; l < model.config.nLayers; l += 2) {
    for (const kind of LINEAR_KINDS) {
      const [rows, cols] = linearShape(model.config, kind);
      const name = TensorNames.linear(l, kind);
      for (const raw of settings) {
        const params = encodeLittleBit(model.tensors.get(name)!.data, rows, cols, raw);
        for (const n of [1, 4]) {
          expect(worst(params, rng.normalArray(n * cols), n), `${name} ${JSON.stringify(raw)}`).toBeLessThanOrEqual(1e-5);
        }
      }
    }
  }
}
