import { Rng } from '@ultrasketch/core';
import { sketchCodec } from '@ultrasketch/sketch-core';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SKETCH_TILING, RAW_SKETCH_TILING, type SketchTiling, WasmSketchLinear, emitRawSketchModule, emitSketchModule, wasmSketchKernel } from '../src/kernels/wasm-sketch.js';
import { signMeanRunGroups } from '../src/kernels/sketch-signmean.js';
import { ThreadPool, WasmArena, arenaModules } from '../src/index.js';
import { worstCodecError } from './kernel-cases.js';

/**
 * The signmean kernel's token blocks (issue 16, done-when 3: its multi-token path): tokens run in blocks of
 * RAW_SKETCH_TILING.tokens (4) sharing every state load, the inputs permuted and sign-scaled by the wasm
 * `gather`. Each (row, token) sum runs in the same order whatever the block size, row block or unrolling, so
 * the output of a token must not depend — in any bit — on n, on where it sits in a block, or on the tiling.
 */
const OPTIONS: Record<string, unknown>[] = [
  { bpw: 0.5, rows: 1, state: 'int8', groups: 3, alloc: 'saliency', query: 'signmean' }, // the default variant's layout
  { bpw: 1, rows: 3, state: 'int8', query: 'signmean' }, // d = 3: three raw run groups per channel group
  { bpw: 6, rows: 1, groups: 4, alloc: 'saliency:3', query: 'signmean' }, // some groups exact
  { bpw: 1, rows: 3, state: 'f16' }, // the AbsMaxMin kernel shares the gather and the token loop
];
const TILINGS: Array<[string, SketchTiling]> = [
  ['raw (4 tokens × 2 rows)', RAW_SKETCH_TILING],
  ['8 tokens × 4 rows', { rows: (T) => (T <= 4 ? 2 : 4), unroll: () => 2 }],
  ['default', DEFAULT_SKETCH_TILING],
  ['1 token', { rows: () => 1, unroll: () => 1, tokens: 1 }],
];

function laplace(rng: Rng, n: number): Float32Array {
  return Float32Array.from({ length: n }, () => {
    const u = rng.next() - 0.5;
    return -0.05 * Math.sign(u) * Math.log(1 - 2 * Math.abs(u));
  });
}

describe('signmean wasm kernel: token blocks', () => {
  it('the raw module validates with every tiling', () => {
    for (const [name, t] of TILINGS) expect(WebAssembly.validate(emitRawSketchModule(t)), name).toBe(true);
    expect(WebAssembly.validate(emitSketchModule(3, RAW_SKETCH_TILING))).toBe(true);
  });

  it.each(OPTIONS)('%o: each token the same bits for n = 1..11 and every tiling; within 1e-5 of the oracle', (raw) => {
    const rng = new Rng(21);
    const [rows, cols] = [37, 301]; // odd rows (row blocks + a single), run tails of 1-3 columns, padding
    const w = laplace(rng, rows * cols);
    const saliency = Float64Array.from({ length: cols }, (_, j) => (j % 7 === 0 ? 50 : 1 + rng.next()));
    const p = sketchCodec.encode(w, rows, cols, sketchCodec.resolveOptions(raw), { name: 't', seed: 5, saliency });
    const N = 11;
    const x = rng.normalArray(N * cols);
    // reference: every token alone, raw tiling
    const k0 = wasmSketchKernel(p, { tiling: RAW_SKETCH_TILING });
    expect(k0.constructor.name).toBe('WasmSketchLinear');
    const ref = new Float32Array(N * rows);
    for (let t = 0; t < N; t++) k0.apply(x.subarray(t * cols, (t + 1) * cols), ref.subarray(t * rows, (t + 1) * rows), 1);
    for (const [name, tiling] of TILINGS) {
      const k = wasmSketchKernel(p, { tiling });
      for (const n of [1, 2, 3, 4, 5, 8, 9, 11]) {
        const y = new Float32Array(n * rows);
        k.apply(x.subarray(0, n * cols), y, n);
        expect([...y], `${name}, n = ${n}`).toEqual([...ref.subarray(0, n * rows)]);
      }
    }
    expect(worstCodecError(sketchCodec, k0, p, x, N)).toBeLessThanOrEqual(1e-5);
  });

  it('a non-finite input stays in its own token (the gather reads x[0] for padding columns and zeroes them)', () => {
    const rng = new Rng(3);
    const [rows, cols] = [9, 30]; // 3 groups of 10 columns: padding in every piece
    const w = laplace(rng, rows * cols);
    const p = sketchCodec.encode(w, rows, cols, sketchCodec.resolveOptions({ bpw: 2, rows: 1, state: 'int8', groups: 3, query: 'signmean' }), {
      name: 't',
      seed: 1,
      saliency: Float64Array.from({ length: cols }, (_, j) => 1 + j),
    });
    const k = wasmSketchKernel(p);
    const x = rng.normalArray(4 * cols);
    const clean = new Float32Array(4 * rows);
    k.apply(x, clean, 4);
    x[2 * cols] = Number.POSITIVE_INFINITY; // token 2, column 0
    const y = new Float32Array(4 * rows);
    k.apply(x, y, 4);
    for (const t of [0, 1, 3]) expect([...y.subarray(t * rows, (t + 1) * rows)], `token ${t}`).toEqual([...clean.subarray(t * rows, (t + 1) * rows)]);
    for (let r = 0; r < rows; r++) expect(Number.isFinite(y[2 * rows + r]!)).toBe(false);
  });
});

/**
 * Issue 12 (weights held track the bundle): int8 states stay int8 in the arena and are widened per call into
 * scratch (wasm `widen8`), the run offsets are Uint16 and the gather table 2 bytes a column. Every output bit
 * must be that of the float32 rings held at load (the previous layout, still built by signMeanRunGroups(p)),
 * with one thread and with the rows split across two worker threads.
 */
describe('signmean wasm kernel: int8 states kept as stored', () => {
  const CASES: Record<string, unknown>[] = [
    { bpw: 0.5, rows: 1, state: 'int8', groups: 8, alloc: 'saliency', query: 'signmean' }, // the CLI's default sketch
    { bpw: 1, rows: 3, state: 'int8', query: 'signmean' }, // d = 3: factors ±1/3
    { bpw: 6, rows: 1, state: 'int8', groups: 4, alloc: 'saliency:3', query: 'signmean' }, // some groups exact
  ];

  it.each(CASES)('%o: the bits of float32 rings, 1 and 2 threads; the arena holds ~ the stored bytes', (raw) => {
    const rng = new Rng(8);
    const [rows, cols] = [203, 1031]; // odd: row blocks and singles, run tails, padding
    const w = laplace(rng, rows * cols);
    const saliency = Float64Array.from({ length: cols }, (_, j) => (j % 5 === 0 ? 30 : 1 + rng.next()));
    const p = sketchCodec.encode(w, rows, cols, sketchCodec.resolveOptions(raw), { name: 't', seed: 9, saliency });
    const rings = signMeanRunGroups(p)!;
    const kept = signMeanRunGroups(p, true)!;
    expect(rings.every((g) => g.ring && !g.q8)).toBe(true);
    expect(kept.every((g) => g.q8 && !g.ring)).toBe(true);
    const ref = WasmSketchLinear.raw(new WasmArena(), rows, cols, rings);
    const arena = new WasmArena({ shared: true });
    const before = arena.weightBytes;
    const k = WasmSketchLinear.raw(arena, rows, cols, kept);
    const held = arena.weightBytes - before;
    // the int8 states, Uint16 offsets (rows · segments per group), 2 bytes per gather column, and alignment
    const stored = p.states.byteLength;
    const offsets = kept.reduce((n, g) => n + 2 * g.offsets.length, 0);
    const gather = kept.reduce((n, g) => n + 2 * (g.channels.length + 3 * g.segs), 0); // pieces padded to 4 columns
    expect(held).toBeGreaterThanOrEqual(stored + offsets);
    expect(held).toBeLessThan(stored + offsets + gather + 64 * (2 * kept.length + 1));
    for (const n of [1, 4, 9]) {
      const x = rng.normalArray(n * cols);
      const a = new Float32Array(n * rows);
      const b = new Float32Array(n * rows);
      ref.apply(x, a, n);
      k.apply(x, b, n);
      expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer)), `n = ${n}`).toBe(true);
      const pool = new ThreadPool([{ arena, modules: arenaModules(arena) }], { threads: 2, minWorkNs: 0, adaptive: false });
      try {
        const c = new Float32Array(n * rows);
        k.apply(x, c, n);
        expect(pool.splitCount).toBe(1);
        expect(Buffer.from(c.buffer).equals(Buffer.from(a.buffer)), `n = ${n}, 2 threads`).toBe(true);
      } finally {
        pool.dispose();
      }
    }
  });
});
