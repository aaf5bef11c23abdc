import { binaryCodec, floatCodec, rtnCodec } from '@ultrasketch/baselines';
import { Rng } from '@ultrasketch/core';
import { littlebitCodec } from '@ultrasketch/littlebit';
import type { Linear } from '@ultrasketch/model';
import { hashedNetsCodec, sketchCodec } from '@ultrasketch/sketch-core';
import { describe, expect, it } from 'vitest';
import { wasmBinaryKernel } from '../src/kernels/wasm-binary.js';
import { wasmFloatKernel } from '../src/kernels/wasm-float.js';
import { wasmLittlebitKernel } from '../src/kernels/wasm-littlebit.js';
import { wasmRtnKernel } from '../src/kernels/wasm-rtn.js';
import { wasmHashednetsKernel, wasmSketchKernel } from '../src/kernels/wasm-sketch.js';
import { ThreadPool, WasmArena, WasmDenseLinear, arenaModules } from '../src/index.js';

/**
 * Issue 12: a kernel whose x / y are views of its own (shared) arena — the forward's activations and logits in
 * a session — reads x and writes y where they are, instead of copying them through scratch on the calling
 * thread (ArenaVector, wasm/arena.ts). Per kernel (every compressed codec's, the f16 classifier's and the dense
 * float32 one), the same call is made with plain Float32Arrays and with views of the arena, and:
 * - the outputs are the same bits (1 thread, and 2 worker threads splitting the rows — LittleBit's batch: its
 *   blocks of 4 tokens);
 * - the arena-view call asks scratch for fewer bytes (it stages nothing it reads or writes in place);
 * - the views are never copied: their `subarray` (how a staged input is copied) and `set` (how a staged output
 *   is copied back) are instrumented and must not be called for a vector the kernel should use in place.
 * Expected copies are named per case: an input the kernel needs padded is staged by design.
 */
interface Case {
  label: string;
  rows: number;
  cols: number;
  build: (arena: WasmArena) => Linear;
  /** Whether x is read in place for n tokens (y is always written in place). */
  xInPlace: (n: number) => boolean;
}

const rng = new Rng(12);
const laplace = (n: number) =>
  Float32Array.from({ length: n }, () => {
    const u = rng.next() - 0.5;
    return -0.05 * Math.sign(u) * Math.log(1 - 2 * Math.abs(u));
  });

function binaryCase(rows: number, cols: number): Case {
  const p = binaryCodec.encode(rng.normalArray(rows * cols), rows, cols, {}, { name: 't', seed: 1 });
  // n = 1: the tables read x in whole groups of 8 — a row of cols ≢ 0 mod 8 is padded in scratch
  return { label: `binary ${rows}×${cols}`, rows, cols, build: (arena) => wasmBinaryKernel(p, { arena }), xInPlace: (n) => n > 1 || cols % 8 === 0 };
}

function sketchCase(label: string, rows: number, cols: number, raw: Record<string, unknown>, xInPlace: Case['xInPlace']): Case {
  const saliency = Float64Array.from({ length: cols }, (_, j) => (j % 7 === 0 ? 40 : 1 + rng.next()));
  const p = sketchCodec.encode(laplace(rows * cols), rows, cols, sketchCodec.resolveOptions(raw), { name: 't', seed: 3, saliency });
  return { label, rows, cols, build: (arena) => wasmSketchKernel(p, { arena }), xInPlace };
}

function hashednetsCase(rows: number, cols: number): Case {
  const p = hashedNetsCodec.encode(laplace(rows * cols), rows, cols, hashedNetsCodec.resolveOptions({ bpw: 1 }), { name: 't', seed: 3 });
  // one group in column order: its own layout when cols ≡ 0 mod 4 (n = 1), else padded in scratch; tokens
  // n > 1 are interleaved by the gather, which reads x where it is
  return { label: `hashednets ${rows}×${cols}`, rows, cols, build: (arena) => wasmHashednetsKernel(p, { arena }), xInPlace: (n) => n > 1 || cols % 4 === 0 };
}

function rtnCase(rows: number, cols: number, bits = 4): Case {
  const p = rtnCodec.encode(rng.normalArray(rows * cols), rows, cols, rtnCodec.resolveOptions({ bits, groupSize: 64 }), { name: 't', seed: 1 });
  // x is permuted into the plane order by a wasm call that reads it where it is
  return { label: `rtn${bits} ${rows}×${cols}`, rows, cols, build: (arena) => wasmRtnKernel(p, { arena }), xInPlace: () => true };
}

function f16Case(rows: number, cols: number): Case {
  const p = floatCodec.encode(rng.normalArray(rows * cols), rows, cols, floatCodec.resolveOptions({ dtype: 'f16' }), { name: 't', seed: 1 });
  return { label: `float f16 ${rows}×${cols}`, rows, cols, build: (arena) => wasmFloatKernel(p, { arena }), xInPlace: () => cols % 8 === 0 };
}

function littlebitCase(rows: number, cols: number, rank: number): Case {
  const p = littlebitCodec.encode(rng.normalArray(rows * cols), rows, cols, littlebitCodec.resolveOptions({ rank, residual: true }), { name: 't', seed: 1 });
  // n = 1: the V tables read whole groups of 8 inputs (zeros past cols): x of cols ≢ 0 mod 8 is padded in scratch;
  // n > 1 (blocks of 4 tokens, one thread or a pool): interleaved by a wasm call that reads x where it is.
  // Two paths (residual): the second accumulates into the first's y, which is in place too
  return {
    label: `littlebit ${rows}×${cols} rank ${rank}, residual`,
    rows,
    cols,
    build: (arena) => wasmLittlebitKernel(p, { arena }),
    xInPlace: (n) => n > 1 || cols % 8 === 0,
  };
}

function denseCase(rows: number, cols: number): Case {
  const w = rng.normalArray(rows * cols);
  return { label: `dense f32 ${rows}×${cols}`, rows, cols, build: (arena) => new WasmDenseLinear(arena, w, rows, cols), xInPlace: () => true };
}

const CASES: Case[] = [
  binaryCase(72, 96),
  binaryCase(37, 61), // rows and cols not byte-aligned
  sketchCase('sketch AbsMaxMin rowrun (identity layout)', 64, 96, { bpw: 1 }, () => true),
  sketchCase('sketch AbsMaxMin rowrun, 4 saliency groups', 45, 130, { bpw: 1, groups: 4, alloc: 'saliency' }, () => true),
  sketchCase('sketch mixed hash', 40, 72, { bpw: 2, hash: 'mixed' }, () => true),
  sketchCase('sketch signmean int8, 3 groups (the CLI default)', 53, 120, { bpw: 0.5, rows: 1, state: 'int8', groups: 3, alloc: 'saliency', query: 'signmean' }, () => true),
  sketchCase('sketch signmean d = 3', 30, 77, { bpw: 1, rows: 3, state: 'int8', query: 'signmean' }, () => true),
  hashednetsCase(48, 64),
  hashednetsCase(20, 30),
  rtnCase(40, 128),
  rtnCase(33, 100), // the last group ends inside a chunk (padding lanes)
  rtnCase(20, 72, 2),
  rtnCase(24, 80, 8),
  f16Case(24, 64),
  littlebitCase(72, 96, 16), // U stage on byte tables, V on nibble tables (rank < 64)
  littlebitCase(80, 128, 64), // both stages on byte tables
  littlebitCase(37, 61, 5), // rows, cols and rank not byte-aligned
  denseCase(40, 72),
];

/** Count calls of `v`'s copy methods (own properties shadowing the prototype's). */
function instrument(v: Float32Array): { copies: number } {
  const count = { copies: 0 };
  for (const name of ['subarray', 'set'] as const) {
    const own = Float32Array.prototype[name] as (...a: unknown[]) => unknown;
    Object.defineProperty(v, name, {
      value: (...a: unknown[]) => {
        count.copies++;
        return own.apply(v, a);
      },
    });
  }
  return count;
}

/** The scratch sizes `arena.scratch` is asked for during `run`. */
function scratchAsked(arena: WasmArena, run: () => void): number {
  const own = arena.scratch.bind(arena);
  let most = 0;
  arena.scratch = (bytes: number, minBytes?: number) => {
    most = Math.max(most, bytes);
    return own(bytes, minBytes);
  };
  try {
    run();
  } finally {
    delete (arena as { scratch?: unknown }).scratch;
  }
  return most;
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('kernels read x and write y in place when they are views of the arena', () => {
  it.each(CASES.map((c) => [c.label, c] as const))('%s: same bits, less scratch, no copy of the views', (_, c) => {
    const arena = new WasmArena({ shared: true });
    const k = c.build(arena);
    expect(k.constructor.name).toMatch(/^Wasm/);
    for (const n of [1, 5]) {
      const x = rng.normalArray(n * c.cols);
      const plain = new Float32Array(n * c.rows);
      const askedPlain = scratchAsked(arena, () => k.apply(x, plain, n));
      // x and y as the forward holds them: lent from the arena, outside scratch
      const yAt = arena.lend(4 * n * c.rows + 16);
      const xAt = arena.lend(4 * n * c.cols + 16);
      const yv = new Float32Array(arena.memory.buffer, yAt, n * c.rows);
      const xv = new Float32Array(arena.memory.buffer, xAt, n * c.cols);
      xv.set(x);
      expect(arena.holds(xv) && arena.holds(yv)).toBe(true);
      const xCopies = instrument(xv);
      const yCopies = instrument(yv);
      const askedViews = scratchAsked(arena, () => k.apply(xv, yv, n));
      expect(bits(yv).equals(bits(plain)), `n = ${n}: the same bits`).toBe(true);
      expect(yCopies.copies, `n = ${n}: y copied back from scratch`).toBe(0);
      if (c.xInPlace(n)) expect(xCopies.copies, `n = ${n}: x copied into scratch`).toBe(0);
      expect(askedViews, `n = ${n}: scratch asked for`).toBeLessThan(askedPlain);
      // two worker threads splitting the rows write the same y in the arena
      const pool = new ThreadPool([{ arena, modules: arenaModules(arena) }], { threads: 2, minWorkNs: 0, adaptive: false });
      try {
        yv.fill(Number.NaN);
        k.apply(xv, yv, n);
        expect(bits(yv).equals(bits(plain)), `n = ${n}, 2 threads: the same bits`).toBe(true);
      } finally {
        pool.dispose();
      }
      expect(yCopies.copies + (c.xInPlace(n) ? xCopies.copies : 0), `n = ${n}, 2 threads: views copied`).toBe(0);
    }
  });

  /** The case whose label contains `label`, its kernel in a fresh shared arena, one input and its output from plain arrays. */
  const oneTokenCase = (label: string) => {
    const c = CASES.find((k) => k.label.includes(label))!;
    const arena = new WasmArena({ shared: true });
    const k = c.build(arena);
    const x = rng.normalArray(c.cols);
    const want = new Float32Array(c.rows);
    k.apply(x, want, 1);
    return { c, arena, k, x, want };
  };

  // ArenaVectorPair keeps a kernel's decision while its x and y arrays and the arena's epoch stay the same
  it.each(['littlebit 72×96', 'rtn4 40×128', 'dense'])('%s: a call with other arrays, or after the scratch moved, decides anew', (label) => {
    const { c, arena, k, x, want } = oneTokenCase(label);
    const xv = new Float32Array(arena.memory.buffer, arena.lend(4 * c.cols + 16), c.cols);
    const yv = new Float32Array(arena.memory.buffer, arena.lend(4 * c.rows + 16), c.rows);
    xv.set(x);
    const plainY = new Float32Array(c.rows);
    const calls: Array<[Float32Array, Float32Array]> = [
      [xv, yv],
      [x, yv], // y still a view, x now a plain array: staged
      [xv, plainY], // y plain: staged, and copied out
      [xv, yv],
    ];
    for (const [i, [cx, cy]] of calls.entries()) {
      if (i === 3) arena.scratch(arena.scratchSize + (1 << 20)); // a new scratch region: the epoch changes
      cy.fill(Number.NaN);
      k.apply(cx, cy, 1);
      expect(bits(cy).equals(bits(want)), `call ${i}`).toBe(true);
    }
    const copies = instrument(yv);
    k.apply(xv, yv, 1);
    expect(copies.copies).toBe(0);
  });

  // the sketch kernel zeroes y before it reads x (identity layout: x read where it is); LittleBit's second path
  // reads x again after the first wrote y; the dense gemm writes y's rows while it still reads x
  it.each(['identity', 'littlebit 72×96', 'dense'])('an output overlapping the input is staged, not written in place (%s)', (label) => {
    const { c, arena, k, x, want } = oneTokenCase(label);
    // one arena buffer: x at its start, y starting inside x
    const at = arena.lend(4 * (c.cols + c.rows) + 16);
    const buf = new Float32Array(arena.memory.buffer, at, c.cols + c.rows);
    buf.set(x);
    const y = buf.subarray(c.cols - 8, c.cols - 8 + c.rows);
    k.apply(buf.subarray(0, c.cols), y, 1);
    expect(bits(y).equals(bits(want))).toBe(true);
  });
});
