import { ErrorCodes, Rng, UltraSketchError } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_TILE_PLAN,
  FunctionBuilder,
  GemmKernels,
  ModuleBuilder,
  type TilePlan,
  WASM_PAGE_BYTES,
  WasmArena,
  WasmDenseLinear,
  emitGemmModule,
  emitTile,
  wasmSimdSupported,
  writeSleb,
  writeUleb,
} from '../src/index.js';

const leb = (f: (out: number[], n: number) => void, n: number) => {
  const out: number[] = [];
  f(out, n);
  return out;
};

describe('wasm emitter', () => {
  it('writes LEB128 as the spec examples', () => {
    expect(leb(writeUleb, 0)).toEqual([0]);
    expect(leb(writeUleb, 127)).toEqual([0x7f]);
    expect(leb(writeUleb, 128)).toEqual([0x80, 0x01]);
    expect(leb(writeUleb, 624485)).toEqual([0xe5, 0x8e, 0x26]);
    expect(leb(writeUleb, 0xffffffff)).toEqual([0xff, 0xff, 0xff, 0xff, 0x0f]);
    expect(leb(writeSleb, 0)).toEqual([0]);
    expect(leb(writeSleb, -1)).toEqual([0x7f]);
    expect(leb(writeSleb, 63)).toEqual([0x3f]);
    expect(leb(writeSleb, 64)).toEqual([0xc0, 0x00]);
    expect(leb(writeSleb, -64)).toEqual([0x40]);
    expect(leb(writeSleb, -65)).toEqual([0xbf, 0x7f]);
    expect(leb(writeSleb, -123456)).toEqual([0xc0, 0xbb, 0x78]);
    expect(leb(writeSleb, -0x80000000)).toEqual([0x80, 0x80, 0x80, 0x80, 0x78]);
    expect(() => leb(writeUleb, -1)).toThrow(RangeError);
    expect(() => emitTile(2, 2, 3)).toThrow(RangeError);
  });

  it('emits a valid module whose SIMD opcodes compute what they say', () => {
    // f(a, b) = sum of lanes of (splat(a) * v128.load[b] + v128.const 0), stored to [b+16] with v128.store
    const f = new FunctionBuilder(['f32', 'i32']);
    const v = f.local('v128');
    f.get(0).f32x4Splat().get(1).v128Load().f32x4Mul().v128Zero().f32x4Add().set(v);
    f.get(1).get(v).v128Store(16);
    f.get(1);
    f.get(v).f32x4ExtractLane(0).get(v).f32x4ExtractLane(1).f32Add();
    f.get(v).f32x4ExtractLane(2).get(v).f32x4ExtractLane(3).f32Add().f32Add();
    f.f32Store(32);
    const bytes = new ModuleBuilder({ module: 'env', name: 'memory', minPages: 1 }).addFunction('f', f).emit();
    expect(WebAssembly.validate(bytes)).toBe(true);
    // the name section (profiles show `f`, not `wasm-function[0]`): one custom section "name" holding the
    // function-names subsection (id 1) with function 0 named "f"
    const names = WebAssembly.Module.customSections(new WebAssembly.Module(bytes), 'name');
    expect(names).toHaveLength(1);
    expect([...new Uint8Array(names[0]!)]).toEqual([1, 4, 1, 0, 1, 'f'.charCodeAt(0)]);
    const memory = new WebAssembly.Memory({ initial: 1 });
    const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
    const heap = new Float32Array(memory.buffer);
    heap.set([1, 2, 3, 4], 4);
    (inst.exports.f as (a: number, b: number) => void)(0.5, 16);
    expect(Array.from(heap.subarray(8, 12))).toEqual([0.5, 1, 1.5, 2]);
    expect(heap[12]).toBe(5);
  });

  it('the kernel module validates (SIMD available in this engine)', () => {
    expect(wasmSimdSupported()).toBe(true);
    expect(WebAssembly.validate(emitGemmModule())).toBe(true);
    expect(WebAssembly.validate(emitGemmModule(DEFAULT_TILE_PLAN, { shared: true, maxPages: 16 }))).toBe(true);
  });
});

/** max over outputs of |y - exact| / Σ_j |W_ij X_tj|: the error relative to the product's magnitude. */
function checkProduct(w: Float32Array, x: Float32Array, y: Float32Array, n: number, rows: number, cols: number): number {
  let worst = 0;
  for (let t = 0; t < n; t++) {
    for (let i = 0; i < rows; i++) {
      let s = 0;
      let mag = 0;
      for (let j = 0; j < cols; j++) {
        const p = w[i * cols + j]! * x[t * cols + j]!;
        s += p;
        mag += Math.abs(p);
      }
      worst = Math.max(worst, Math.abs(y[t * rows + i]! - s) / Math.max(mag, 1e-30));
    }
  }
  return worst;
}

const SHAPES: Array<[number, number]> = [
  [1, 1],
  [1, 37],
  [1, 1000],
  [37, 1],
  [13, 7],
  [5, 9],
  [7, 3],
  [3, 4],
  [33, 130],
  [64, 192],
  [2, 4097],
];

describe('WasmDenseLinear equals a float64 product within 1e-5 relative', () => {
  it.each(SHAPES)('%i×%i for n = 1..9', (rows, cols) => {
    const arena = new WasmArena();
    const rng = new Rng(rows * 7919 + cols);
    const w = rng.normalArray(rows * cols);
    const lin = new WasmDenseLinear(arena, w, rows, cols);
    for (let n = 1; n <= 9; n++) {
      const x = rng.normalArray(n * cols);
      const y = new Float32Array(n * rows).fill(NaN);
      lin.apply(x, y, n);
      expect(checkProduct(w, x, y, n, rows, cols)).toBeLessThanOrEqual(1e-5);
    }
  });

  it('accepts x and y longer than n rows and leaves the rest of y alone', () => {
    const arena = new WasmArena();
    const rng = new Rng(3);
    const w = rng.normalArray(11 * 6);
    const lin = new WasmDenseLinear(arena, w, 11, 6);
    const x = rng.normalArray(5 * 6);
    const y = new Float32Array(5 * 11).fill(7);
    for (const n of [3, 1, 3, 2]) {
      lin.apply(x, y, n);
      expect(checkProduct(w, x, y, n, 11, 6)).toBeLessThanOrEqual(1e-5);
      expect(y[4 * 11]).toBe(7);
    }
  });

  it('rejects a shape mismatch with a typed error', () => {
    const arena = new WasmArena();
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return e instanceof UltraSketchError ? e.code : String(e);
      }
      return undefined;
    };
    expect(code(() => new WasmDenseLinear(arena, new Float32Array(5), 2, 3))).toBe(ErrorCodes.SHAPE_MISMATCH);
    const lin = new WasmDenseLinear(arena, new Float32Array(6), 2, 3);
    expect(code(() => lin.apply(new Float32Array(5), new Float32Array(4), 2))).toBe(ErrorCodes.SHAPE_MISMATCH);
  });
});

describe('every tiling the generator can emit is correct', () => {
  const plan = (...tiles: Array<[number, number]>): TilePlan => ({ tiles: tiles.map(([r, u]) => ({ r, u })) });
  const plans: TilePlan[] = [
    plan([1, 1]),
    plan([3, 4], [2, 2]),
    plan([4, 1], [4, 2], [3, 1], [2, 1]),
    plan([8, 2], [4, 4], [3, 1], [2, 1], [2, 1], [2, 1]),
  ];
  it.each(plans.map((p) => [JSON.stringify(p), p] as const))('%s', (_, plan) => {
    const memory = new WebAssembly.Memory({ initial: 16 });
    const inst = new WebAssembly.Instance(new WebAssembly.Module(emitGemmModule(plan)), { env: { memory } });
    const k = new GemmKernels(inst.exports, plan);
    const heap = new Float32Array(memory.buffer);
    const rng = new Rng(11);
    for (const [rows, cols] of [[1, 1], [13, 7], [9, 33], [17, 64]] as const) {
      for (let n = 1; n <= 9; n++) {
        const w = rng.normalArray(rows * cols);
        const x = rng.normalArray(n * cols);
        const wAt = 64;
        const xAt = wAt + w.byteLength + 4; // deliberately not 16-byte aligned
        const yAt = xAt + x.byteLength + 8;
        heap.set(w, wAt / 4);
        heap.set(x, xAt / 4);
        k.gemm(wAt, xAt, yAt, n, cols, rows, 0, rows);
        const y = heap.slice(yAt / 4, yAt / 4 + n * rows);
        expect(checkProduct(w, x, y, n, rows, cols)).toBeLessThanOrEqual(1e-5);
      }
    }
  });

  it('a row range computes exactly those rows (the split used by worker threads)', () => {
    const memory = new WebAssembly.Memory({ initial: 4 });
    const inst = new WebAssembly.Instance(new WebAssembly.Module(emitGemmModule()), { env: { memory } });
    const k = new GemmKernels(inst.exports);
    const heap = new Float32Array(memory.buffer);
    const rng = new Rng(5);
    const rows = 23;
    const cols = 10;
    const n = 6;
    const w = rng.normalArray(rows * cols);
    const x = rng.normalArray(n * cols);
    heap.set(w, 16);
    heap.set(x, 16 + w.length);
    const yAt = (16 + w.length + x.length) * 4;
    const full = new Float32Array(n * rows);
    for (const [b, e] of [[0, 9], [9, 23]] as const) k.gemm(64, 64 + w.byteLength, yAt, n, cols, rows, b, e);
    full.set(heap.subarray(yAt / 4, yAt / 4 + n * rows));
    expect(checkProduct(w, x, full, n, rows, cols)).toBeLessThanOrEqual(1e-5);
    heap.fill(123, yAt / 4, yAt / 4 + n * rows);
    k.gemm(64, 64 + w.byteLength, yAt, n, cols, rows, 5, 11);
    for (let t = 0; t < n; t++) {
      for (let i = 0; i < rows; i++) {
        const v = heap[yAt / 4 + t * rows + i]!;
        if (i < 5 || i >= 11) expect(v).toBe(123);
        else expect(v).toBe(full[t * rows + i]);
      }
    }
  });
});

describe('WasmArena', () => {
  it('grows the memory, re-creates its views, and keeps earlier weights usable', () => {
    const arena = new WasmArena({ initialBytes: WASM_PAGE_BYTES });
    expect(arena.bytesReserved).toBe(WASM_PAGE_BYTES);
    const rng = new Rng(9);
    const w1 = rng.normalArray(20 * 30);
    const first = new WasmDenseLinear(arena, w1, 20, 30);
    const x = rng.normalArray(4 * 30);
    const y = new Float32Array(4 * 20);
    first.apply(x, y, 4);
    expect(checkProduct(w1, x, y, 4, 20, 30)).toBeLessThanOrEqual(1e-5);
    const epoch = arena.epoch;
    const oldView = arena.f32;
    // 2 MB of weights forces several grows
    const big = rng.normalArray(700 * 700);
    const second = new WasmDenseLinear(arena, big, 700, 700);
    expect(arena.bytesReserved).toBeGreaterThan(2 * 700 * 700);
    expect(arena.epoch).toBeGreaterThan(epoch);
    expect(arena.f32 === oldView).toBe(false);
    expect(oldView.length).toBe(0); // the pre-grow ArrayBuffer is detached
    expect(arena.f32.length * 4).toBe(arena.bytesReserved);
    // the first linear still computes from its (unmoved) weights, through fresh views
    y.fill(0);
    first.apply(x, y, 4);
    expect(checkProduct(w1, x, y, 4, 20, 30)).toBeLessThanOrEqual(1e-5);
    const x2 = rng.normalArray(3 * 700);
    const y2 = new Float32Array(3 * 700);
    second.apply(x2, y2, 3);
    expect(checkProduct(big, x2, y2, 3, 700, 700)).toBeLessThanOrEqual(1e-5);
    // a large batch grows the scratch (and maybe the memory) in the middle of use
    const x3 = rng.normalArray(300 * 30);
    const y3 = new Float32Array(300 * 20);
    first.apply(x3, y3, 300);
    expect(checkProduct(w1, x3, y3, 300, 20, 30)).toBeLessThanOrEqual(1e-5);
    first.apply(x, y, 4);
    expect(checkProduct(w1, x, y, 4, 20, 30)).toBeLessThanOrEqual(1e-5);
  });

  it('refuses to grow past its maximum with a typed error', () => {
    const arena = new WasmArena({ initialBytes: WASM_PAGE_BYTES, maximumBytes: 2 * WASM_PAGE_BYTES });
    arena.alloc(100_000);
    expect(() => arena.alloc(100_000)).toThrow(expect.objectContaining({ code: ErrorCodes.LIMIT_EXCEEDED }));
  });

  it('runs a batch larger than the room left in a full arena in chunks', () => {
    const arena = new WasmArena({ initialBytes: WASM_PAGE_BYTES, maximumBytes: 2 * WASM_PAGE_BYTES });
    const rng = new Rng(4);
    const w = rng.normalArray(100 * 100); // 40 KB of the 128 KB
    const lin = new WasmDenseLinear(arena, w, 100, 100);
    const x = rng.normalArray(200 * 100);
    const y = new Float32Array(200 * 100);
    lin.apply(x, y, 200); // needs 160 KB of scratch: done ~100 rows at a time
    expect(arena.scratchSize).toBeLessThan(200 * 200 * 4);
    expect(checkProduct(w, x, y, 200, 100, 100)).toBeLessThanOrEqual(1e-5);
    lin.apply(x, y, 3); // and small batches still take the direct path
    expect(checkProduct(w, x, y, 3, 100, 100)).toBeLessThanOrEqual(1e-5);
  });

  it('works over a shared (SharedArrayBuffer) memory', () => {
    const arena = new WasmArena({ shared: true, maximumBytes: 64 * WASM_PAGE_BYTES, initialBytes: WASM_PAGE_BYTES });
    expect(arena.memory.buffer).toBeInstanceOf(SharedArrayBuffer);
    const rng = new Rng(2);
    const w = rng.normalArray(50 * 600);
    const lin = new WasmDenseLinear(arena, w, 50, 600);
    const x = rng.normalArray(5 * 600);
    const y = new Float32Array(5 * 50);
    lin.apply(x, y, 5);
    expect(checkProduct(w, x, y, 5, 50, 600)).toBeLessThanOrEqual(1e-5);
  });
});
