import { Rng } from '@ultrasketch/core';
import { type DecodeCall, type Linear, runDecodePlan } from '@ultrasketch/model';
import { expect } from 'vitest';
import { type NodeSession, ThreadPool, type WasmArena, arenaModules, compileDecodeProgram } from '../src/index.js';

/**
 * Shared checks of the kernels' decode calls (decode-calls-*.test.ts): how a test holds x and y as the forward
 * does, and the two properties every kernel's `decodeCalls` must have beyond giving apply's bits.
 */
const rng = new Rng(1214);

/** The bytes of a float array, for bit-for-bit comparison. */
export const hexBits = (a: Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

/** x [cols] and y [rows] as the forward holds them: views of the arena, lent outside scratch (read/written in place). */
export function arenaViews(arena: WasmArena, rows: number, cols: number): { x: Float32Array; y: Float32Array } {
  const y = new Float32Array(arena.memory.buffer, arena.lend(4 * rows + 16), rows);
  const x = new Float32Array(arena.memory.buffer, arena.lend(4 * cols + 16), cols);
  return { x, y };
}

/** NaN over the whole scratch region: a program must not rely on anything JS left there (padding included). */
export function dirtyScratch(arena: WasmArena): void {
  const at = arena.scratch(0);
  arena.f32.fill(Number.NaN, at / 4, (at + arena.scratchSize) / 4);
}

/** decodeCalls is undefined for plain arrays, y overlapping x, and arrays too short (apply would stage or throw). */
export function checkUndefined(arena: WasmArena, k: Linear): void {
  const rows = k.outFeatures;
  const cols = k.inFeatures;
  const { x, y } = arenaViews(arena, rows, cols);
  x.set(rng.normalArray(cols));
  expect(k.decodeCalls!(x.slice(), y), 'x plain').toBeUndefined();
  expect(k.decodeCalls!(x, new Float32Array(rows)), 'y plain').toBeUndefined();
  expect(k.decodeCalls!(x.subarray(0, cols - 1), y), 'x short').toBeUndefined();
  expect(k.decodeCalls!(x, y.subarray(0, rows - 1)), 'y short').toBeUndefined();
  const buf = new Float32Array(arena.memory.buffer, arena.lend(4 * (rows + cols) + 16), rows + cols);
  expect(k.decodeCalls!(buf.subarray(0, cols), buf.subarray(cols - 1, cols - 1 + rows)), 'y overlapping x').toBeUndefined();
}

/**
 * With a thread pool on the arena: the same calls as without (apply's one-thread calls: a decode program runs on
 * one thread), and the program gives the bits of the split apply.
 */
export function checkPool(arena: WasmArena, k: Linear): void {
  const { x, y } = arenaViews(arena, k.outFeatures, k.inFeatures);
  x.set(rng.normalArray(k.inFeatures));
  const alone = k.decodeCalls!(x, y)!;
  expect(alone, 'decodeCalls without a pool').toBeDefined();
  const pool = new ThreadPool([{ arena, modules: arenaModules(arena) }], { threads: 2, minWorkNs: 0, adaptive: false });
  try {
    const pooled = k.decodeCalls!(x, y)!;
    expect(pooled.map((c) => [c.fn, c.args])).toEqual(alone.map((c) => [c.fn, c.args]));
    y.fill(Number.NaN);
    k.apply(x, y, 1); // rows split over the two threads
    const want = hexBits(y);
    y.fill(Number.NaN);
    compileDecodeProgram(pooled)(0, 0);
    expect(hexBits(y)).toBe(want);
  } finally {
    pool.dispose();
  }
}

/**
 * A kernel's one-token `calls` (for x in `xv`, y in `yv`, both arena views; `want` = apply's y for `x`), compiled
 * and run from JS: the same bits from a scratch region full of NaN, at any (pos, token) — a product's arguments
 * are constants —, for a new x, and after the scratch region has moved (its old addresses are retired, never
 * reused, so the program's recorded ones stay valid). Leaves x in xv.
 */
export function checkProgram(arena: WasmArena, k: Linear, calls: DecodeCall[], x: Float32Array, xv: Float32Array, yv: Float32Array, want: Float32Array): void {
  for (const call of calls) {
    expect(call.args.every((a) => typeof a === 'number')).toBe(true);
    expect(call.args.length).toBe(call.params.length);
  }
  const program = compileDecodeProgram(calls);
  for (const run of [() => program(0, 0), () => runDecodePlan(calls, 0, 0), () => program(7, 3)]) {
    dirtyScratch(arena);
    yv.fill(Number.NaN);
    run();
    expect(hexBits(yv)).toBe(hexBits(want));
  }
  const x2 = rng.normalArray(k.inFeatures);
  const want2 = new Float32Array(k.outFeatures);
  k.apply(x2, want2, 1);
  xv.set(x2);
  dirtyScratch(arena);
  program(1, 0);
  expect(hexBits(yv)).toBe(hexBits(want2));
  arena.scratch(arena.scratchSize + (1 << 20));
  xv.set(x);
  yv.fill(Number.NaN);
  program(2, 0);
  expect(hexBits(yv)).toBe(hexBits(want));
}

/**
 * `prompt` prefilled in both sessions, then `steps` greedy steps: every step's logits finite and the same bits in
 * both; the first session ran its steps as a decode program, the second (decodeProgram: false) did not.
 */
export function expectProgramMatchesForward(program: NodeSession, plain: NodeSession, prompt: number[], steps: number): void {
  const argmax = (a: Float32Array) => a.reduce((best, v, i) => (v > a[best]! ? i : best), 0);
  let token = argmax(program.forward(prompt));
  expect(token).toBe(argmax(plain.forward(prompt)));
  for (let step = 0; step < steps; step++) {
    const a = program.forward([token]);
    const b = plain.forward([token]);
    expect(a.every(Number.isFinite), `step ${step}: finite`).toBe(true);
    expect(hexBits(a), `step ${step}`).toBe(hexBits(b));
    token = argmax(a);
  }
  expect(program.usesDecodeProgram).toBe(true);
  expect(program.stepStats.program).toBe(steps);
  expect(plain.usesDecodeProgram).toBe(false);
}

/**
 * A random x in an arena view; apply(x, y, 1) on plain arrays (`want`, staged by JS) and in place (the same bits);
 * no decode calls for either plain array; returns the vectors and the in-place `decodeCalls` (maybe undefined).
 */
export function applyBothWays(arena: WasmArena, k: Linear): { x: Float32Array; xv: Float32Array; yv: Float32Array; want: Float32Array; calls: DecodeCall[] | undefined } {
  const { x: xv, y: yv } = arenaViews(arena, k.outFeatures, k.inFeatures);
  const x = rng.normalArray(k.inFeatures);
  xv.set(x);
  const want = new Float32Array(k.outFeatures);
  k.apply(x, want, 1);
  k.apply(xv, yv, 1);
  expect(hexBits(yv)).toBe(hexBits(want));
  expect(k.decodeCalls!(x, yv)).toBeUndefined();
  expect(k.decodeCalls!(xv, new Float32Array(k.outFeatures))).toBeUndefined();
  return { x, xv, yv, want, calls: k.decodeCalls!(xv, yv) };
}
