import { Rng } from '@ultrasketch/core';
import { type HashedNetsParams, hashedNetsCodec, sketchCodec } from '@ultrasketch/sketch-core';
import { describe, expect, it } from 'vitest';
import { emitSketchModule, wasmHashednetsKernel, wasmSketchKernel } from '../src/kernels/wasm-sketch.js';
import { WasmArena } from '../src/wasm/arena.js';
import { SKETCH_SHAPES, type SketchCase, checkRandomSketchShape, checkRealSketchLinears, sketchCaseOf, worstCodecError } from './kernel-cases.js';

/**
 * The WebAssembly sketch / hashednets kernels against the oracle (decode() to dense, float64 product):
 * 1e-5 relative to Σ_j |ŵ_ij x_j|, as for every kernel. f16 states (the wasm path), every hash family,
 * channel groups with exact groups, awkward shapes (run tails of 1–3 columns, several runs per row, wrapped
 * runs), n = 1..11 (token blocks of 8 and a remainder), and the real stories3M linears (cases and loops in
 * kernel-cases.ts, shared with sketch-kernels.test.ts).
 */
const sketch = sketchCaseOf((p) => wasmSketchKernel(p));
const CASES: SketchCase[] = [
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
  // query signmean (issue 16): raw float32 runs, any state format
  sketch({ bpw: 0.5, rows: 1, query: 'signmean' }),
  sketch({ bpw: 1, rows: 3, state: 'int8', query: 'signmean' }),
  sketch({ bpw: 1.5, rows: 2, state: 'f32', groups: 3, alloc: 'saliency', query: 'signmean' }),
  sketch({ bpw: 6, rows: 1, groups: 4, alloc: 'saliency:3', query: 'signmean' }), // some groups exact
  ['hashednets f16', hashedNetsCodec, { bpw: 1 }, (p: HashedNetsParams) => wasmHashednetsKernel(p)],
  ['hashednets f16 0.3', hashedNetsCodec, { bpw: 0.3 }, (p: HashedNetsParams) => wasmHashednetsKernel(p)],
];
const SHAPES: Array<[number, number]> = [
  ...SKETCH_SHAPES,
  [17, 255],
  [64, 301], // several runs per row at low bpw
];

describe('wasm sketch module', () => {
  it('validates for d = 1..16', () => {
    for (let d = 1; d <= 16; d++) expect(WebAssembly.validate(emitSketchModule(d)), `d = ${d}`).toBe(true);
  });
});

describe.each(CASES)('%s: wasm kernel equals decode-then-dense', (...c) => {
  it.each(SHAPES)('random %i×%i, n = 1, 2, 3, 8, 11', (rows, cols) => {
    checkRandomSketchShape(c, rows, cols, [1, 2, 3, 8, 11], (k) => expect(k.constructor.name).toBe('WasmSketchLinear'));
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
      expect(worstCodecError(sketchCodec, wasmSketchKernel(p), p, rng.normalArray(2 * cols), 2)).toBeLessThanOrEqual(1e-5);
    }
  });

  it('f16 subnormal and zero states decode exactly', () => {
    const rng = new Rng(5);
    const [rows, cols] = [24, 64];
    const w = Float32Array.from({ length: rows * cols }, () => (rng.next() - 0.5) * 1e-4); // mostly f16-subnormal
    const p = sketchCodec.encode(w, rows, cols, sketchCodec.resolveOptions({ bpw: 4 }), { name: 't', seed: 3 });
    expect(worstCodecError(sketchCodec, wasmSketchKernel(p), p, rng.normalArray(cols), 1)).toBeLessThanOrEqual(1e-5);
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
  it.each(CASES)('%s: every linear of layers 0 and 5, n = 1 and 4', (...c) => {
    checkRealSketchLinears(c);
  });
});
