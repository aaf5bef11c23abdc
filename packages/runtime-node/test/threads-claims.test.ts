import type { ModelConfig } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { ThreadPool, WasmArena, WasmAttention } from '../src/index.js';

/**
 * Every chunk of every job runs exactly once, with jobs back to back and their chunk counts changing from one
 * to the next (issue 12, fifth slice: a worker still in the previous job's claim loop once compared the old
 * job's next chunk with the new job's count and replayed a chunk twice — harmless for a product that
 * overwrites its rows, wrong for one that accumulates). The body here accumulates (the glue's x += y with
 * y = 1), so any chunk run twice or skipped shows in the sums.
 */
describe('ThreadPool claims', () => {
  it('2000 accumulating jobs of 2–12 chunks each: every element added exactly once per job', () => {
    const config = { dim: 8, hiddenDim: 8, nHeads: 2, nKvHeads: 2, headDim: 4 } as ModelConfig;
    const att = new WasmAttention(config);
    const count = 12 * 20_000; // the glue's add: ~0.4 ns per value, 8 µs per chunk → up to 12 chunks
    const x = att.scratch(count);
    const y = att.scratch(count).fill(1);
    const pool = new ThreadPool([{ arena: att, modules: att.modules }], { threads: 3, minWorkNs: 0, adaptive: false });
    try {
      let jobs = 0;
      for (let i = 0; i < 2000; i++) {
        // 20,000 · k values: k chunks (2..12), the count rising and falling between consecutive jobs
        const k = 2 + ((i * 7) % 11);
        att.add(x, y, 20_000 * k);
        jobs++;
      }
      expect(pool.splitCount).toBe(jobs);
      // element e was added by the jobs whose range covered it
      const expected = (e: number) => {
        let n = 0;
        for (let i = 0; i < 2000; i++) if (e < 20_000 * (2 + ((i * 7) % 11))) n++;
        return n;
      };
      for (const e of [0, 19_999, 40_000, 99_999, 150_000, count - 1]) expect(x[e]).toBe(expected(e));
      let bad = 0;
      for (let e = 0; e < count; e += 997) if (x[e] !== expected(e)) bad++;
      expect(bad).toBe(0);
    } finally {
      pool.dispose();
    }
  });

  it('during a batch (workers spin between jobs) every chunk still runs once; a bad batch spin is a typed error', () => {
    const config = { dim: 8, hiddenDim: 8, nHeads: 2, nKvHeads: 2, headDim: 4 } as ModelConfig;
    const att = new WasmAttention(config);
    const x = att.scratch(8 * 20_000);
    const y = att.scratch(8 * 20_000).fill(1);
    const pool = new ThreadPool([{ arena: att, modules: att.modules }], { threads: 2, minWorkNs: 0, adaptive: false, batchSpinUs: 500 });
    try {
      pool.batch(true);
      for (let i = 0; i < 500; i++) att.add(x, y, 20_000 * (2 + (i % 7)));
      pool.batch(false);
      for (let i = 0; i < 100; i++) att.add(x, y, 8 * 20_000);
      expect(x[0]).toBe(600);
      // the last element: in every job of 8 chunks' length (i % 7 === 6) and in the 100 after the batch
      let full = 0;
      for (let i = 0; i < 500; i++) if (i % 7 === 6) full++;
      expect(x[8 * 20_000 - 1]).toBe(100 + full);
    } finally {
      pool.dispose();
    }
    expect(() => new ThreadPool([{ arena: att, modules: att.modules }], { threads: 2, batchSpinUs: -1 })).toThrow(
      expect.objectContaining({ code: 'E_BAD_ARGUMENT', hint: expect.stringContaining('use 0') }),
    );
  });

  it('the adaptive policy backs off its rechecks while the split stays slower', () => {
    const config = { dim: 8, hiddenDim: 8, nHeads: 2, nKvHeads: 2, headDim: 4 } as ModelConfig;
    const att = new WasmAttention(config);
    const x = att.scratch(64);
    const y = att.scratch(64).fill(1);
    const add = (att.modules[0]!.exports as Record<string, (...a: number[]) => void>).add!;
    const pool = new ThreadPool([{ arena: att, modules: att.modules }], { threads: 2 });
    try {
      let direct: unknown;
      pool.rows(4, 0, 1, (call) => (direct = call)); // under the threshold: run here, with the direct caller
      for (let i = 0; i < 2000; i++) {
        pool.rows(64, 1e6, 4, (call, r0, r1) => {
          // a split (recording the calls) is made 0.3 ms slower, so one thread always wins
          if (call !== direct) for (const end = performance.now() + 0.3; performance.now() < end; );
          call(add, x.byteOffset + 4 * r0, y.byteOffset + 4 * r0, 4 * (r1 - r0));
        });
      }
      // 3 exploring splits, then rechecks at 32, 96, 224, 480, 992, 2016 calls (a fixed 1 in 32: ~65)
      expect(pool.splitCount).toBeGreaterThanOrEqual(4);
      expect(pool.splitCount).toBeLessThanOrEqual(12);
      expect(x[0]).toBe(2000);
      expect(x[63]).toBe(2000);
    } finally {
      pool.dispose();
    }
  });

  it('an arena-backed attention kernel lends its memory from the arena (not counted as weights)', () => {
    const arena = new WasmArena({ shared: true });
    const w = arena.storeF32(new Float32Array(64).fill(1));
    expect(w).toBeGreaterThan(0);
    const before = arena.weightBytes;
    const config = { dim: 8, hiddenDim: 8, nHeads: 2, nKvHeads: 2, headDim: 4, seqLen: 16 } as ModelConfig;
    const att = new WasmAttention(config, arena);
    expect(att.memory).toBe(arena.memory);
    const a = att.scratch(1000);
    expect(arena.views.has(a)).toBe(true);
    expect(arena.weightBytes).toBe(before);
    expect(arena.lentBytes).toBeGreaterThanOrEqual(4000);
    // products read/write in place any view of the memory outside the scratch region, subarrays included
    expect(arena.holds(a)).toBe(true);
    expect(arena.holds(a.subarray(10, 20))).toBe(true);
    const at = arena.scratch(256);
    expect(arena.holds(new Float32Array(arena.memory.buffer, at, 8))).toBe(false);
    expect(arena.holds(new Float32Array(1000))).toBe(false);
    const plain = new WasmArena();
    expect(plain.holds(new Float32Array(plain.memory.buffer, 64, 4))).toBe(false); // not shared: views may detach
    expect(() => new WasmAttention(config, plain)).toThrow(/shared/);
  });
});
