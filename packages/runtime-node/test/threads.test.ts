import { ErrorCodes } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import { ThreadPool, WasmArena, WasmDenseLinear, arenaModules } from '../src/index.js';

/**
 * The thread pool's own contract (the bit-identical sessions are in packages/pipeline/test/threads.test.ts):
 * shared memory required, results after dispose, a product whose calls throw, and that a failed product leaves
 * no job in flight for the next one.
 */
function linear(shared: boolean, out = 1024, inF = 96) {
  const arena = new WasmArena({ shared, initialBytes: 2 << 20 });
  const w = new Float32Array(out * inF);
  for (let i = 0; i < w.length; i++) w[i] = Math.sin(i * 0.37);
  return { arena, lin: new WasmDenseLinear(arena, w, out, inF), out, inF };
}

describe('ThreadPool', () => {
  it('needs a shared arena (typed error naming the fix)', () => {
    const { arena } = linear(false);
    expect(() => new ThreadPool([{ arena, modules: arenaModules(arena) }], { threads: 2 })).toThrow(
      expect.objectContaining({ code: ErrorCodes.UNSUPPORTED, hint: expect.stringContaining('shared: true') }),
    );
  });

  it('splits products (same bits as one thread), and after dispose computes them here, same bits', () => {
    const { arena, lin, out, inF } = linear(true);
    const x = Float32Array.from({ length: 3 * inF }, (_, i) => Math.cos(i));
    const ref = new Float32Array(3 * out);
    lin.apply(x, ref, 3);
    const pool = new ThreadPool([{ arena, modules: arenaModules(arena) }], { threads: 2, minWorkNs: 0, adaptive: false });
    expect(arena.threads).toBe(pool);
    const y = new Float32Array(3 * out);
    lin.apply(x, y, 3);
    expect(pool.splitCount).toBe(1);
    expect(y).toEqual(ref);
    pool.dispose();
    expect(pool.active).toBe(false);
    expect(arena.threads).toBeUndefined();
    y.fill(0);
    lin.apply(x, y, 3);
    expect(y).toEqual(ref);
  });

  it('during a batch a large product is always split; outside one, and below the size, the adaptive policy times both ways', () => {
    const { arena, out, inF } = linear(true);
    const pool = new ThreadPool([{ arena, modules: arenaModules(arena) }], { threads: 2 });
    const k = arena.kernels;
    // weights, x and y in the scratch region (zeros: only where the calls run is checked here)
    const w = arena.scratch(4 * (out * inF + inF + out));
    const at = w + 4 * out * inF;
    const product = (workNs: number) => pool.rows(out, workNs, k.rowAlign, (call, r0, r1) => k.gemmCalls(call, w, at, at + 4 * inF, 1, inF, out, r0, r1));
    const counts = () => ({ split: pool.splitCount, single: pool.singleCount });
    try {
      // outside a batch: the exploration alternates one thread and the split, whatever the size
      for (let i = 0; i < 6; i++) product(1e6);
      expect(counts()).toEqual({ split: 3, single: 3 });
      pool.batch(true);
      // a batch: 1 ms of estimated work (≥ 160 µs) split every time, without timing
      for (let i = 0; i < 10; i++) product(1e6);
      expect(counts()).toEqual({ split: 13, single: 3 });
      // a smaller product (another shape) is still explored both ways
      for (let i = 0; i < 6; i++) product(100_000);
      expect(counts()).toEqual({ split: 16, single: 6 });
      pool.batch(false);
    } finally {
      pool.dispose();
    }
  });

  it('a product whose calls fail throws, and the next product is computed right (no job left in flight)', () => {
    const { arena, lin, out, inF } = linear(true);
    const pool = new ThreadPool([{ arena, modules: arenaModules(arena) }], { threads: 2, minWorkNs: 0, adaptive: false });
    const k = arena.kernels;
    // a weight address past the end of the memory: every chunk traps (out of bounds), here or in the worker
    const bad = arena.bytesReserved + (1 << 20);
    const at = arena.scratch(4 * (inF + out));
    expect(() => pool.rows(out, 1e9, k.rowAlign, (call, r0, r1) => k.gemmCalls(call, bad, at, at + 4 * inF, 1, inF, out, r0, r1))).toThrow();
    const x = Float32Array.from({ length: inF }, (_, i) => Math.cos(i));
    const y = new Float32Array(out);
    lin.apply(x, y, 1);
    const single = new WasmDenseLinear(new WasmArena(), (() => {
      const w = new Float32Array(out * inF);
      for (let i = 0; i < w.length; i++) w[i] = Math.sin(i * 0.37);
      return w;
    })(), out, inF);
    const ref = new Float32Array(out);
    single.apply(x, ref, 1);
    expect(y).toEqual(ref);
    pool.dispose();
  });
});
