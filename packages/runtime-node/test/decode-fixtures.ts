import { Rng } from '@ultrasketch/core';
import type { Linear } from '@ultrasketch/model';
import { expect } from 'vitest';
import { ThreadPool, WasmArena, arenaModules, compileDecodeProgram } from '../src/index.js';

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
