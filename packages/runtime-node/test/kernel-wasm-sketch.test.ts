import { readFileSync } from 'node:fs';
import { type Codec, Rng } from '@ultrasketch/core';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { LINEAR_KINDS, type Linear, TensorNames, linearShape, modelFromLlama2c } from '@ultrasketch/model';
import {
  type HashedNetsParams,
  type SketchParams,
  hashedNetsCodec,
  hashedNetsMinBpw,
  sketchCodec,
  sketchGroups,
  sketchMinBpw,
} from '@ultrasketch/sketch-core';
import { describe, expect, it } from 'vitest';
import { emitSketchModule, wasmHashednetsKernel, wasmSketchKernel } from '../src/kernels/wasm-sketch.js';
import { WasmArena } from '../src/wasm/arena.js';
import { worstKernelError } from './oracle.js';

/**
 * The WebAssembly sketch / hashednets kernels against the oracle (decode() to dense, float64 product):
 * 1e-5 relative to Σ_j |ŵ_ij x_j|, as for every kernel. f16 states (the wasm path), every hash family,
 * channel groups with exact groups, awkward shapes (run tails of 1–3 columns, several runs per row, wrapped
 * runs), n = 1..11 (token blocks of 8 and a remainder), and the real stories3M linears.
 */
type Case = [label: string, codec: Codec<any, any>, raw: Record<string, unknown>, kernel: (p: any) => Linear];
const sketch = (raw: Record<string, unknown>): Case => [`sketch ${JSON.stringify(raw)}`, sketchCodec, raw, (p: SketchParams) => wasmSketchKernel(p)];
const CASES: Case[] = [
  sketch({ bpw: 1, hash: 'rowrun' }),
  sketch({ bpw: 1, hash: 'mixed' }),
  sketch({ bpw: 0.5, hash: 'rowrun', rows: 1 }),
  sketch({ bpw: 0.5, hash: 'mixed', rows: 5 }),
  sketch({ bpw: 3, hash: 'rowrun', rows: 16 }),
  sketch({ bpw: 1.5, hash: 'mixed', groups: 4, alloc: 'saliency:2', split: 'mass' }),
  sketch({ bpw: 1.5, hash: 'rowrun', groups: 3, alloc: 'saliency', alpha: 1 }),
  sketch({ bpw: 6, hash: 'rowrun', groups: 4, alloc: 'saliency:3' }), // some groups exact
  sketch({ bpw: 10, hash: 'mixed', groups: 2, alloc: 'saliency:3' }), // group 0 exact
  sketch({ bpw: 20, hash: 'rowrun' }), // the whole matrix exact
  ['hashednets f16', hashedNetsCodec, { bpw: 1 }, (p: HashedNetsParams) => wasmHashednetsKernel(p)],
  ['hashednets f16 0.3', hashedNetsCodec, { bpw: 0.3 }, (p: HashedNetsParams) => wasmHashednetsKernel(p)],
];
const SHAPES: Array<[number, number]> = [
  [1, 1],
  [1, 53],
  [41, 1],
  [13, 7],
  [33, 130],
  [17, 255],
  [64, 301], // several runs per row at low bpw
];

function feasible(codec: Codec<any, any>, raw: Record<string, unknown>, rows: number, cols: number): any {
  const o = codec.resolveOptions(raw);
  if (codec === sketchCodec) {
    const o2 = { ...o, groups: Math.min(o.groups, cols) };
    return { ...o2, bpw: Math.max(o.bpw, sketchMinBpw(rows, cols, o2)) };
  }
  return { ...o, bpw: Math.max(o.bpw, hashedNetsMinBpw(rows, cols, o)) };
}

function worstRelativeError(codec: Codec<any, any>, kernel: Linear, params: any, x: Float32Array, n: number): number {
  return worstKernelError(codec.decode(params), params.rows, params.cols, kernel, x, n);
}

describe('wasm sketch module', () => {
  it('validates for d = 1..16', () => {
    for (let d = 1; d <= 16; d++) expect(WebAssembly.validate(emitSketchModule(d)), `d = ${d}`).toBe(true);
  });
});

describe.each(CASES)('%s: wasm kernel equals decode-then-dense', (_label, codec, raw, kernel) => {
  it.each(SHAPES)('random %i×%i, n = 1, 2, 3, 8, 11', (rows, cols) => {
    const rng = new Rng(rows * 7919 + cols);
    const w = rng.normalArray(rows * cols);
    const saliency = Float64Array.from({ length: cols }, () => rng.next() * 4);
    const params = codec.encode(w, rows, cols, feasible(codec, raw, rows, cols), { name: 't', seed: 11, saliency });
    const k = kernel(params);
    expect(k.constructor.name).toBe('WasmSketchLinear');
    expect([k.outFeatures, k.inFeatures]).toEqual([rows, cols]);
    for (const n of [1, 2, 3, 8, 11]) {
      expect(worstRelativeError(codec, k, params, rng.normalArray(n * cols), n), `n = ${n}`).toBeLessThanOrEqual(1e-5);
    }
  });
});

describe('wasm sketch kernel: edge cases', () => {
  it('ties of equal magnitude and opposite sign across sketch rows go to the lowest k (int-grid weights)', () => {
    const rng = new Rng(4);
    const [rows, cols] = [40, 96];
    // weights on a coarse grid: many exact ties in |w|
    const w = Float32Array.from({ length: rows * cols }, () => (rng.int(9) - 4) * 0.25);
    for (const hash of ['rowrun', 'mixed']) {
      const p = sketchCodec.encode(w, rows, cols, sketchCodec.resolveOptions({ bpw: 2, hash }), { name: 't', seed: 3 });
      expect(worstRelativeError(sketchCodec, wasmSketchKernel(p), p, rng.normalArray(2 * cols), 2)).toBeLessThanOrEqual(1e-5);
    }
  });

  it('f16 subnormal and zero states decode exactly', () => {
    const rng = new Rng(5);
    const [rows, cols] = [24, 64];
    const w = Float32Array.from({ length: rows * cols }, () => (rng.next() - 0.5) * 1e-4); // mostly f16-subnormal
    const p = sketchCodec.encode(w, rows, cols, sketchCodec.resolveOptions({ bpw: 4 }), { name: 't', seed: 3 });
    expect(worstRelativeError(sketchCodec, wasmSketchKernel(p), p, rng.normalArray(cols), 1)).toBeLessThanOrEqual(1e-5);
  });

  it('int8 and f32 states fall back to the JS kernel; a private arena works; repeated calls agree', () => {
    const rng = new Rng(6);
    const w = rng.normalArray(20 * 30);
    const p8 = sketchCodec.encode(w, 20, 30, sketchCodec.resolveOptions({ bpw: 1, state: 'int8' }), { name: 't', seed: 1 });
    expect(wasmSketchKernel(p8).constructor.name).toBe('SketchLinear');
    const p = sketchCodec.encode(w, 20, 30, sketchCodec.resolveOptions({ bpw: 1 }), { name: 't', seed: 1 });
    const arena = new WasmArena({ initialBytes: 1 << 16 });
    const k = wasmSketchKernel(p, { arena });
    const x = rng.normalArray(30 * 5);
    const y1 = new Float32Array(20 * 5);
    const y2 = new Float32Array(20 * 5);
    k.apply(x, y1, 5);
    // another kernel in the same arena grows the scratch in between
    const big = sketchCodec.encode(rng.normalArray(300 * 400), 300, 400, sketchCodec.resolveOptions({ bpw: 1 }), { name: 't', seed: 1 });
    wasmSketchKernel(big, { arena }).apply(rng.normalArray(400 * 9), new Float32Array(300 * 9), 9);
    k.apply(x, y2, 5);
    expect([...y2]).toEqual([...y1]);
  });
});

describe('real matrices (stories3M)', () => {
  const ckpt = readLlama2cCheckpoint(readFileSync(new URL('../../../../shared/models/stories3M/stories3M-q80.bin', import.meta.url)));
  const model = modelFromLlama2c(ckpt);

  it.each(CASES)('%s: every linear of layers 0 and 5, n = 1 and 4', (_label, codec, raw, kernel) => {
    const rng = new Rng(3);
    let exactGroups = 0;
    for (const l of [0, 5]) {
      for (const kind of LINEAR_KINDS) {
        const [rows, cols] = linearShape(model.config, kind);
        const name = TensorNames.linear(l, kind);
        const saliency = Float64Array.from({ length: cols }, () => rng.next() ** 4);
        const params = codec.encode(model.tensors.get(name)!.data, rows, cols, feasible(codec, raw, rows, cols), { name, seed: 1, saliency });
        if (codec === sketchCodec) exactGroups += sketchGroups(params).filter((g) => !g.family).length;
        const k = kernel(params);
        for (const n of [1, 4]) {
          expect(worstRelativeError(codec, k, params, rng.normalArray(n * cols), n), name).toBeLessThanOrEqual(1e-5);
        }
      }
    }
    if (codec === sketchCodec && Number(raw.bpw) >= 6) expect(exactGroups).toBeGreaterThan(0);
  });
});
