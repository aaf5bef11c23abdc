/**
 * Shared plumbing of the WebAssembly kernels of the compressed codecs (wasm-sketch.ts, wasm-littlebit.ts,
 * wasm-binary.ts, wasm-rtn.ts):
 *
 * - one process-wide `WasmArena` for compressed weights (created on first use), so that every compressed
 *   linear of a model shares one memory and, above all, ONE scratch region for its per-call working data
 *   (expanded sketch states, subset-sum tables, and inputs/outputs that are not views of the arena: ArenaVector
 *   in wasm/arena.ts): scratch is sized by the largest layer, not summed over layers. A caller may pass its own arena
 *   instead (e.g. the session's, which also holds the forward's activations);
 * - kernel modules compiled once per process and instantiated once per arena;
 * - typed-array views over the arena's heap that are re-created only when the memory grows.
 *
 * The stored parameters (packed bits, f16 states, scales) are copied into the arena once, at construction —
 * the same bytes the bundle holds. Memory for weights therefore tracks the bundle size; per-call scratch is
 * reused, never allocated per call once it has reached the largest layer's size.
 */
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { WasmArena } from '../wasm/arena.js';
import type { WasmExports, WasmModule } from '../wasm/engine.js';
import { requireWasm } from '../wasm/engine.js';
import { wasmSimdSupported } from '../wasm/arena.js';
import type { ModuleBuilder, ValTypeName } from '../wasm/emitter.js';
import { registerSignatures } from '../wasm/decode-program.js';

/**
 * The pool of arenas of the compressed kernels. Kernels built without an explicit arena copy their parameters
 * into the CURRENT pool arena and share its scratch. An arena's bump allocator never frees, so the pool
 * tracks, per arena, the bytes of kernels still alive (a FinalizationRegistry learns when a kernel is
 * garbage-collected): once the dead bytes exceed both the live bytes and ROLLOVER_DEAD_BYTES, new kernels go
 * to a fresh arena, and the old one is released with its last kernel. A process that builds and drops
 * compressed models repeatedly (a sweep) therefore holds at most about twice what is alive.
 */
interface PoolRecord {
  arena: WasmArena;
  /** Bytes allocated by tracked kernels, and by those still alive. */
  allocated: number;
  live: number;
}
const ROLLOVER_DEAD_BYTES = 64 << 20;
let current: PoolRecord | undefined;
const finalizer =
  typeof FinalizationRegistry === 'function'
    ? new FinalizationRegistry<{ record: PoolRecord; bytes: number }>(({ record, bytes }) => {
        record.live -= bytes;
      })
    : undefined;

/** The current pool arena of the compressed kernels (created on first use, renewed as described above). */
export function compressedArena(): WasmArena {
  const dead = current ? current.allocated - current.live : 0;
  if (!current || (dead > ROLLOVER_DEAD_BYTES && dead > current.live)) {
    current = { arena: new WasmArena({ initialBytes: 4 << 20 }), allocated: 0, live: 0 };
  }
  return current.arena;
}

/**
 * Build a kernel whose constructor copies its parameters into `arena` (the pool's when undefined), and
 * account its bytes to the pool so the arena can be retired once its kernels are gone.
 */
export function withArena<K extends object>(explicit: WasmArena | undefined, build: (arena: WasmArena) => K): K {
  const arena = explicit ?? compressedArena();
  const before = arena.bytesUsed;
  const kernel = build(arena);
  const record = current && current.arena === arena && explicit === undefined ? current : undefined;
  if (record && finalizer) {
    const bytes = arena.bytesUsed - before;
    record.allocated += bytes;
    record.live += bytes;
    finalizer.register(kernel, { record, bytes });
  }
  return kernel;
}

/** Whether the WebAssembly SIMD kernels can run here (otherwise the factories fall back to JS). */
export function compressedWasmAvailable(): boolean {
  return wasmSimdSupported();
}

const modules = new Map<string, { module: WasmModule; sigs: ReadonlyMap<string, readonly ValTypeName[]> }>();
const instances = new WeakMap<WasmArena, Map<string, { module: WasmModule; exports: WasmExports }>>();

/**
 * The exports of kernel module `key` (built by `build` the first time the key is seen in this process),
 * instantiated over `arena`'s memory. `build` must return a module importing `env.memory` of the arena's
 * kind (shared or private, as the arena is: a session with threads builds its kernels into a shared arena).
 */
export function kernelExports(arena: WasmArena, key: string, build: (shared: boolean, maxPages: number) => ModuleBuilder): WasmExports {
  let perArena = instances.get(arena);
  if (!perArena) instances.set(arena, (perArena = new Map()));
  const hit = perArena.get(key);
  if (hit) return hit.exports;
  const maxPages = arena.maximumBytes / 65536;
  const mkey = `${key}|${arena.shared ? `shared:${maxPages}` : `private:${maxPages}`}`;
  let m = modules.get(mkey);
  const wasm = requireWasm();
  if (!m) {
    const builder = build(arena.shared, maxPages);
    m = { module: new wasm.Module(builder.emit()), sigs: builder.signatures() };
    modules.set(mkey, m);
  }
  const exports = new wasm.Instance(m.module, { env: { memory: arena.memory } }).exports;
  registerSignatures(exports, m.sigs); // a decode plan describes calls of these functions (wasm/decode-program.ts)
  perArena.set(key, { module: m.module, exports });
  return exports;
}

/**
 * Every kernel module instantiated over `arena` (the dense gemm module first) with its exports: what a worker
 * thread instantiates over the same shared memory to run the same functions (threads.ts).
 */
export function arenaModules(arena: WasmArena): { module: WasmModule; exports: WasmExports }[] {
  return [{ module: arena.module, exports: arena.instance.exports }, ...(instances.get(arena)?.values() ?? [])];
}

/** Memory import description matching an arena (for ModuleBuilder). */
export function memoryImport(shared: boolean, maxPages: number) {
  return shared
    ? { module: 'env', name: 'memory', minPages: 1, maxPages, shared: true }
    : { module: 'env', name: 'memory', minPages: 1, maxPages };
}

/** Copy bytes into the arena once (16-byte aligned), with `pad` zero bytes after them; returns the address. */
export function storeBytes(arena: WasmArena, data: ArrayBufferView, pad = 16): number {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const at = arena.alloc(bytes.length + pad);
  const heap = new Uint8Array(arena.memory.buffer);
  heap.set(bytes, at);
  heap.fill(0, at + bytes.length, at + bytes.length + pad);
  return at;
}

const onesOf = new WeakMap<WasmArena, { at: number; count: number }>();
/**
 * Address of at least `count` float32 ones in `arena`, shared by every kernel of the arena (the sign-table
 * kernels multiply by it where a stage has no diagonal scaling): one vector per arena, not one per linear — on a
 * model of 64-wide matrices a vector per linear was ~10% of the weights held.
 */
export function onesVector(arena: WasmArena, count: number): number {
  const have = onesOf.get(arena);
  if (have && have.count >= count) return have.at;
  const n = Math.max(count, have ? 2 * have.count : 256);
  const at = storeBytes(arena, new Float32Array(n).fill(1));
  onesOf.set(arena, { at, count: n });
  return at;
}

/** Views over an arena's heap, re-created when the arena's epoch changes (memory growth, new scratch). */
export class HeapViews {
  private epoch = -1;
  f32: Float32Array = new Float32Array(0);
  i32: Int32Array = new Int32Array(0);
  u8: Uint8Array = new Uint8Array(0);

  constructor(private readonly arena: WasmArena) {}

  /** Call after arena.alloc/scratch and before touching the views. */
  refresh(): this {
    if (this.epoch !== this.arena.epoch || this.f32.buffer !== this.arena.memory.buffer) {
      const buf = this.arena.memory.buffer;
      this.f32 = new Float32Array(buf);
      this.i32 = new Int32Array(buf);
      this.u8 = new Uint8Array(buf);
      this.epoch = this.arena.epoch;
    }
    return this;
  }
}

export const align16 = (n: number): number => Math.ceil(n / 16) * 16;

/** What every kernel's `apply` checks first: n ≥ 1 vectors, x holding n·cols values and y n·rows. */
export function checkApplyShape(kernel: string, x: Float32Array, y: Float32Array, n: number, rows: number, cols: number): void {
  if (!(n >= 1) || x.length < n * cols || y.length < n * rows) {
    throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `${kernel} kernel: n=${n}, x has ${x.length} values, y has ${y.length} (${rows}×${cols})`);
  }
}

/** An embedding table's token id: an integer in 0..rows − 1. */
export function checkTokenId(token: number, rows: number): void {
  if (!Number.isInteger(token) || token < 0 || token >= rows) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `token id ${token} is outside 0..${rows - 1}`);
  }
}

/**
 * An embedding lookup through a wasm row decode, `decode(dst)` writing the row's cols floats at byte address dst:
 * into out[offset ..] where it is when that is a view of the arena (the forward's activations: the call a decode
 * plan's lookupCall describes), else through `scratchBytes` of scratch (what the decode writes, ≥ 4·cols) and a copy.
 */
export function lookupRow(arena: WasmArena, views: HeapViews, out: Float32Array, offset: number, cols: number, scratchBytes: number, decode: (dst: number) => void): void {
  const row = out.subarray(offset, offset + cols);
  if (row.length === cols && arena.holds(row)) {
    decode(row.byteOffset);
    return;
  }
  const at = arena.scratch(scratchBytes);
  const f32 = views.refresh().f32;
  decode(at);
  out.set(f32.subarray(at / 4, at / 4 + cols), offset);
}

/** ArenaVector (in place or staged x / y) lives with the arena: wasm/linear.ts's dense kernel uses it too. */
export { ArenaVector, ArenaVectorPair } from '../wasm/arena.js';
