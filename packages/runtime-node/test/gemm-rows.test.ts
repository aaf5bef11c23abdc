/**
 * The dense driver `gemm_rows` (wasm/gemm.ts, issue 12 fifth slice) must make exactly the tile calls the JS
 * loop made before it: every output bit the same, for every batch size (whole blocks of maxT input rows and
 * every remainder), row range (whole tiles and leftover rows) and tile plan.
 */
import { Rng } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import { DEFAULT_TILE_PLAN, type TileKernel, type TilePlan, WasmArena } from '../src/index.js';
import { tileName } from '../src/wasm/gemm.js';

/** The tile calls of one product, issued from JS one block at a time (the driver's contract). */
function jsLoop(arena: WasmArena, plan: TilePlan, w: number, x: number, y: number, n: number, cols: number, ldy: number, r0: number, r1: number): void {
  const ex = arena.instance.exports as Record<string, TileKernel>;
  const maxT = plan.tiles.length;
  for (let t0 = 0; t0 < n; t0 += maxT) {
    const T = Math.min(maxT, n - t0);
    const { r, u } = plan.tiles[T - 1]!;
    const mainEnd = r0 + Math.floor((r1 - r0) / r) * r;
    const xt = x + t0 * cols * 4;
    const yt = y + t0 * ldy * 4;
    if (mainEnd > r0) ex[tileName(r, T, u)]!(w, xt, yt, r0, mainEnd, cols, ldy);
    if (r1 > mainEnd) ex[tileName(1, T, u)]!(w, xt, yt, mainEnd, r1, cols, ldy);
  }
}

const PLANS: [string, TilePlan][] = [
  ['default', DEFAULT_TILE_PLAN],
  ['3 tiles, a 1-row tile', { tiles: [{ r: 3, u: 2 }, { r: 1, u: 1 }, { r: 2, u: 1 }] }],
];

describe('gemm_rows: one wasm call per row range, the same bits as the per-block calls', () => {
  it.each(PLANS)('plan %s', (_, plan) => {
    const rng = new Rng(12);
    const arena = new WasmArena({ plan });
    const rows = 29;
    const cols = 37; // not a multiple of 4: the scalar tails run too
    const w = arena.storeF32(Float32Array.from({ length: rows * cols }, () => rng.normal()));
    const maxN = 23;
    const x = arena.storeF32(Float32Array.from({ length: maxN * cols }, () => rng.normal()));
    const yA = arena.storeF32(new Float32Array(maxN * rows));
    const yB = arena.storeF32(new Float32Array(maxN * rows));
    const heap = () => new Uint32Array(arena.memory.buffer);
    let checked = 0;
    for (const n of [1, 2, 3, 4, 5, 7, 8, 9, 13, 23]) {
      for (const [r0, r1] of [[0, rows], [0, 12], [5, 29], [7, 8], [3, 3]] as const) {
        heap().fill(0xffffffff, yA / 4, yA / 4 + maxN * rows);
        heap().fill(0xffffffff, yB / 4, yB / 4 + maxN * rows);
        jsLoop(arena, plan, w, x, yA, n, cols, rows, r0, r1);
        arena.kernels.rows(w, x, yB, n, cols, rows, r0, r1);
        const h = heap();
        const a = h.subarray(yA / 4, yA / 4 + maxN * rows);
        const b = h.subarray(yB / 4, yB / 4 + maxN * rows);
        expect(Buffer.from(b.slice().buffer).equals(Buffer.from(a.slice().buffer))).toBe(true);
        // and it wrote the rows it was asked for (not left them at the fill pattern)
        if (r1 > r0) expect(h[yB / 4 + (n - 1) * rows + r1 - 1]).not.toBe(0xffffffff);
        checked++;
      }
    }
    expect(checked).toBe(50);
  });

  it('a batch walks L2-sized blocks of rows (blockRows): the same bits as one pass over all rows', () => {
    const rng = new Rng(5);
    const arena = new WasmArena();
    const rows = 120;
    const cols = 1100; // 4,400 bytes per row: blocks of 48 rows, so three blocks
    const n = 9;
    expect(arena.kernels.blockRows(cols)).toBe(48);
    const w = arena.storeF32(Float32Array.from({ length: rows * cols }, () => rng.normal()));
    const x = arena.storeF32(Float32Array.from({ length: n * cols }, () => rng.normal()));
    const yA = arena.storeF32(new Float32Array(n * rows));
    const yB = arena.storeF32(new Float32Array(n * rows));
    jsLoop(arena, DEFAULT_TILE_PLAN, w, x, yA, n, cols, rows, 0, rows);
    arena.kernels.gemm(w, x, yB, n, cols, rows, 0, rows);
    const h = new Uint32Array(arena.memory.buffer);
    expect(Buffer.from(h.slice(yB / 4, yB / 4 + n * rows).buffer).equals(Buffer.from(h.slice(yA / 4, yA / 4 + n * rows).buffer))).toBe(true);
  });

  it('gemm() and gemmCalls() go through the driver for batches, and agree with it', () => {
    const rng = new Rng(3);
    const arena = new WasmArena();
    const rows = 24;
    const cols = 16;
    const n = 11;
    const w = arena.storeF32(Float32Array.from({ length: rows * cols }, () => rng.normal()));
    const x = arena.storeF32(Float32Array.from({ length: n * cols }, () => rng.normal()));
    const y1 = arena.storeF32(new Float32Array(n * rows));
    const y2 = arena.storeF32(new Float32Array(n * rows));
    arena.kernels.gemm(w, x, y1, n, cols, rows, 0, rows);
    const calls: number[][] = [];
    arena.kernels.gemmCalls((fn, ...args) => {
      calls.push(args);
      fn(...(args as [number, number, number, number, number, number, number]));
    }, w, x, y2, n, cols, rows, 0, rows);
    expect(calls.length).toBe(1); // one recorded call for the whole range
    const f = arena.f32;
    expect(Array.from(f.subarray(y2 / 4, y2 / 4 + n * rows))).toEqual(Array.from(f.subarray(y1 / 4, y1 / 4 + n * rows)));
  });
});
