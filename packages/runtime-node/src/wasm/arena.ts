/**
 * One WebAssembly.Memory per model with a bump allocator, and the kernel instance bound to it.
 *
 * Weights are copied in once at load and never move. Activations go through one *scratch* region shared by
 * every linear of the arena (apply() is synchronous, so only one product uses it at a time): a linear copies
 * X in, runs the kernel, copies Y out. The copies are O(n·(in+out)) against the product's O(n·in·out).
 *
 * Growth: `memory.grow` replaces `memory.buffer` (the old ArrayBuffer is detached; for a shared memory the
 * old SharedArrayBuffer keeps its old length), so every typed-array view over the heap must be re-created.
 * The arena owns the only views (`f32`) and bumps `epoch` whenever they, or the scratch region, change;
 * holders of derived views compare epochs.
 */
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type WasmInstance, type WasmMemory, type WasmModule, requireWasm, wasmApi } from './engine.js';
import { COPY_BYTES, DEFAULT_TILE_PLAN, GemmKernels, type TilePlan, ZERO_BYTES, emitGemmModule, gemmModuleBuilder } from './gemm.js';
import type { ValTypeName } from './emitter.js';
import { registerSignatures } from './decode-program.js';
import type { ThreadPool } from '../threads.js';

export const WASM_PAGE_BYTES = 65536;
/** wasm32 addresses: at most 65536 pages = 4 GiB per memory. */
export const WASM32_MAX_PAGES = 65536;

export interface WasmArenaOptions {
  /** Bytes reserved at creation (rounded up to pages). Default 1 MiB; the arena grows on demand. */
  initialBytes?: number;
  /** Hard cap on the memory's size; default 4 GiB (the wasm32 limit). */
  maximumBytes?: number;
  /** Back the memory by a SharedArrayBuffer (for worker threads). */
  shared?: boolean;
  /** Register tiling of the kernels; default DEFAULT_TILE_PLAN. */
  plan?: TilePlan;
}

const ALIGN = 16;
const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

const moduleCache = new Map<string, { module: WasmModule; sigs: ReadonlyMap<string, readonly ValTypeName[]> }>();
/** The compiled kernel module for a plan and memory kind (compiled once per process), with its exports' parameters. */
function gemmModuleAndSignatures(plan: TilePlan, shared: boolean, maxPages: number): { module: WasmModule; sigs: ReadonlyMap<string, readonly ValTypeName[]> } {
  const key = `${JSON.stringify(plan)}|${shared ? `shared:${maxPages}` : 'private'}`;
  let m = moduleCache.get(key);
  if (!m) {
    const builder = gemmModuleBuilder(plan, shared ? { shared: true, maxPages } : {});
    m = { module: new (requireWasm().Module)(builder.emit()), sigs: builder.signatures() };
    moduleCache.set(key, m);
  }
  return m;
}
/** The compiled kernel module for a plan and memory kind (compiled once per process). */
export function gemmModule(plan: TilePlan, shared: boolean, maxPages: number): WasmModule {
  return gemmModuleAndSignatures(plan, shared, maxPages).module;
}

let simdSupport: boolean | undefined;
/** Whether this engine accepts our SIMD kernel module (WebAssembly.validate of the real bytes). */
export function wasmSimdSupported(): boolean {
  if (simdSupport === undefined) {
    try {
      simdSupport = wasmApi !== undefined && wasmApi.validate(emitGemmModule(DEFAULT_TILE_PLAN));
    } catch {
      simdSupport = false;
    }
  }
  return simdSupport === true;
}

export class WasmArena {
  readonly memory: WasmMemory;
  readonly kernels: GemmKernels;
  readonly instance: WasmInstance;
  /** The compiled kernel module (a worker thread can instantiate it over the same shared memory). */
  readonly module: WasmModule;
  readonly shared: boolean;
  readonly maximumBytes: number;
  /** Float32 view of the whole heap; re-created after every grow (read it after allocating). */
  f32: Float32Array;
  /** copy_bytes(dst, src, bytes) over this memory (a wasm export: a decode program calls it directly). */
  readonly copyBytes: (dst: number, src: number, bytes: number) => void;
  /** zero_bytes(dst, bytes) over this memory (a kernel's padding in scratch, as a call a decode plan can make). */
  readonly zeroBytes: (dst: number, bytes: number) => void;
  /** Incremented when `f32` or the scratch region changes. */
  epoch = 0;
  /**
   * The worker threads that split this arena's products by rows (set by a ThreadPool over a shared arena,
   * cleared when it stops); undefined: every product runs on the calling thread.
   */
  threads: ThreadPool | undefined;
  /** First free byte. Address 0..15 is left unused so that 0 is never a valid allocation. */
  private top = ALIGN;
  private scratchAt = 0;
  private scratchBytes = 0;

  constructor(options: WasmArenaOptions = {}) {
    const plan = options.plan ?? DEFAULT_TILE_PLAN;
    this.shared = options.shared ?? false;
    const maxPages = Math.min(WASM32_MAX_PAGES, Math.ceil((options.maximumBytes ?? WASM32_MAX_PAGES * WASM_PAGE_BYTES) / WASM_PAGE_BYTES));
    this.maximumBytes = maxPages * WASM_PAGE_BYTES;
    const initial = Math.min(maxPages, Math.max(1, Math.ceil((options.initialBytes ?? 1 << 20) / WASM_PAGE_BYTES)));
    const wasm = requireWasm();
    this.memory = new wasm.Memory(
      this.shared ? { initial, maximum: maxPages, shared: true } : { initial, maximum: maxPages },
    );
    const { module, sigs } = gemmModuleAndSignatures(plan, this.shared, maxPages);
    this.module = module;
    this.instance = new wasm.Instance(this.module, { env: { memory: this.memory } });
    registerSignatures(this.instance.exports, sigs); // a decode plan describes calls of these (wasm/decode-program.ts)
    this.kernels = new GemmKernels(this.instance.exports, plan);
    this.copyBytes = this.instance.exports[COPY_BYTES] as (dst: number, src: number, bytes: number) => void;
    this.zeroBytes = this.instance.exports[ZERO_BYTES] as (dst: number, bytes: number) => void;
    this.f32 = new Float32Array(this.memory.buffer);
    this.buffers.add(this.memory.buffer);
  }

  /** Bytes allocated so far (weights and scratch). */
  get bytesUsed(): number {
    return this.top;
  }

  /** Bytes of the current scratch region (the rest of `bytesUsed` is what the arena's users stored: weights). */
  get scratchBytesUsed(): number {
    return this.scratchBytes;
  }

  /** Current size of the memory in bytes. */
  get bytesReserved(): number {
    return this.memory.buffer.byteLength;
  }

  /** Whether `bytes` more (plus alignment) fit under the arena's maximum. */
  fits(bytes: number): boolean {
    return alignUp(this.top, ALIGN) + bytes <= this.maximumBytes;
  }

  /** Reserve `bytes` (16-byte aligned) and return the address; grows the memory if needed. */
  alloc(bytes: number): number {
    if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`WasmArena.alloc: bad size ${bytes}`);
    const at = alignUp(this.top, ALIGN);
    this.ensure(at + bytes);
    this.top = at + bytes;
    return at;
  }

  /**
   * Views of this memory that other kernels handed out for activations (`WasmAttention` built over this arena:
   * the forward's activations and KV cache). A product whose input/output is one of them reads/writes it in
   * place instead of copying it through the scratch region.
   */
  readonly views = new WeakSet<Float32Array>();
  /** Bytes `lend` gave out (activations and KV caches, not weights). */
  lentBytes = 0;
  /** Bytes of scratch regions left behind when a later allocation sat above them (not weights). */
  retiredScratchBytes = 0;

  /** Every buffer object this memory has had (a grow gives a new one; views made before keep theirs). */
  private readonly buffers = new WeakSet<ArrayBufferLike>();

  /**
   * Whether `v` views this arena's memory outside the scratch region (e.g. the forward's activations or logits,
   * or a subarray of them): a product may then read or write it in place. Only a shared memory's views survive
   * growth, so only a shared arena says yes.
   */
  holds(v: Float32Array): boolean {
    if (!this.shared || !this.buffers.has(v.buffer)) return false;
    const a = v.byteOffset;
    return a + v.byteLength <= this.scratchAt || a >= this.scratchAt + this.scratchBytes;
  }

  /** `alloc` for another kernel's activations or caches (counted apart from the weights; zeroed: never used). */
  lend(bytes: number): number {
    const at = this.alloc(bytes);
    this.lentBytes += bytes;
    return at;
  }

  /** Bytes held for what the arena's users stored (weights, with alignment): all but scratch and lent bytes. */
  get weightBytes(): number {
    return this.top - this.scratchBytes - this.lentBytes - this.retiredScratchBytes;
  }

  /** Copy `data` into the arena once; returns its address. */
  storeF32(data: Float32Array): number {
    const at = this.alloc(data.byteLength);
    this.f32.set(data, at / 4); // addresses are multiples of 16 (and may exceed 2^31: no >>)
    return at;
  }

  /** Size in bytes of the current scratch region. */
  get scratchSize(): number {
    return this.scratchBytes;
  }

  /**
   * Address of a scratch region, shared by all users of the arena, of at least `bytes` — or, when the
   * arena's maximum does not allow that, the largest region it can give that is at least `minBytes`
   * (check `scratchSize`; callers then work in chunks). Contents are not preserved across calls. Grows
   * geometrically (in place when it is the last allocation), so a steady workload stops allocating after
   * the first call of each size.
   */
  scratch(bytes: number, minBytes = bytes): number {
    if (bytes <= this.scratchBytes) return this.scratchAt;
    const atTop = this.scratchBytes > 0 && this.scratchAt + this.scratchBytes === this.top;
    const start = atTop ? this.scratchAt : alignUp(this.top, ALIGN);
    const room = this.maximumBytes - start;
    let want = Math.min(Math.max(bytes, Math.ceil(this.scratchBytes * 1.5), 64 * 1024), room);
    if (want < bytes) want = room; // as much as there is
    if (want < minBytes || want <= this.scratchBytes) {
      if (this.scratchBytes >= minBytes) return this.scratchAt;
      this.ensure(start + Math.max(bytes, minBytes)); // throws LIMIT_EXCEEDED
    }
    this.ensure(start + want);
    if (!atTop) this.retiredScratchBytes += this.scratchBytes;
    this.scratchAt = start;
    this.scratchBytes = want;
    this.top = start + want;
    this.epoch++;
    return this.scratchAt;
  }

  /** Make the memory at least `end` bytes long. */
  private ensure(end: number): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    if (end > this.maximumBytes) {
      throw new UltraSketchError(
        ErrorCodes.LIMIT_EXCEEDED,
        `wasm arena needs ${end} bytes, more than its maximum of ${this.maximumBytes}`,
        { hint: 'a wasm32 memory holds at most 4 GiB; split the model across several arenas' },
      );
    }
    // Grow by at least 1/4 of the current size so a model loaded tensor by tensor grows O(log) times.
    const needPages = Math.ceil((end - have) / WASM_PAGE_BYTES);
    const maxPages = this.maximumBytes / WASM_PAGE_BYTES;
    const havePages = have / WASM_PAGE_BYTES;
    const pages = Math.min(maxPages - havePages, Math.max(needPages, Math.ceil(havePages / 4)));
    try {
      this.memory.grow(pages);
    } catch (cause) {
      throw new UltraSketchError(ErrorCodes.LIMIT_EXCEEDED, `wasm arena could not grow to ${end} bytes`, {
        cause,
        hint: 'the engine refused more memory; free memory or use smaller batches',
      });
    }
    this.f32 = new Float32Array(this.memory.buffer);
    this.buffers.add(this.memory.buffer);
    this.epoch++;
  }
}

/**
 * One kernel call's input x or output y, read or written in place when it can be (issue 12). A view of the
 * kernel's own (shared) arena outside the scratch region — the forward's activations and logits, which a session
 * keeps in its arena (`WasmArena.holds`) — is passed to the wasm functions at its own address; any other array,
 * or one whose layout the kernel cannot use as it is (`usable` false: it needs padding), is staged through scratch.
 * The choice is made before the call asks for scratch, so it asks only for what it stages (`stageBytes`). Either
 * way the kernel reads and writes the same values in the same order: where they sit changes no bit.
 */
export class ArenaVector {
  readonly inPlace: boolean;

  constructor(
    arena: WasmArena,
    readonly v: Float32Array,
    usable = true,
  ) {
    this.inPlace = usable && arena.holds(v);
  }

  /**
   * An output `y` of a call that reads `x`: in place only when y does not overlap x (kernels write y — some zero
   * it first — before they have read all of x; a staged y keeps such a call correct).
   */
  static output(arena: WasmArena, y: Float32Array, x: Float32Array, usable = true): ArenaVector {
    const apart = y.buffer !== x.buffer || y.byteOffset + y.byteLength <= x.byteOffset || x.byteOffset + x.byteLength <= y.byteOffset;
    return new ArenaVector(arena, y, usable && apart);
  }

  /** Whether a call reading x and writing y can use both where they are (the condition of a kernel's decode calls). */
  static bothInPlace(arena: WasmArena, x: Float32Array, y: Float32Array): boolean {
    return new ArenaVector(arena, x).inPlace && ArenaVector.output(arena, y, x).inPlace;
  }

  /** Scratch bytes to stage `count` floats of it (whole 16-byte groups; 0 in place). */
  stageBytes(count: number): number {
    return this.inPlace ? 0 : Math.ceil(count / 4) * 16;
  }

  /**
   * Input: the byte address of v[from, from + count) for the kernel — v's own in place; else `at`, after copying
   * them there (into `heap`, the arena's current f32 view) followed by `pad` zeros.
   */
  read(heap: Float32Array, from: number, count: number, at: number, pad = 0): number {
    if (this.inPlace) return this.v.byteOffset + 4 * from;
    heap.set(this.v.subarray(from, from + count), at / 4);
    if (pad > 0) heap.fill(0, at / 4 + count, at / 4 + count + pad);
    return at;
  }

  /** Output: the byte address where the kernel writes v[from, …) — v's own in place, else `at` (then `written`). */
  target(from: number, at: number): number {
    return this.inPlace ? this.v.byteOffset + 4 * from : at;
  }

  /** Output, after the kernel wrote it at `target(from, at)`: copy v[from, from + count) back from `at` if staged. */
  written(heap: Float32Array, from: number, count: number, at: number): void {
    if (!this.inPlace) this.v.set(heap.subarray(at / 4, at / 4 + count), from);
  }
}

/**
 * The ArenaVectors of a kernel's x and y, kept while it is called with the same two arrays and the arena's epoch
 * (its buffers and scratch region) is unchanged: a forward passes each product the same arrays every token, and
 * deciding anew (two `holds` checks, the overlap test's typed-array getters on shared-memory views, two objects:
 * ~0.2 µs a call on a loaded 2-core VM) costs about what copying a small vector does — on stories3M's one-token
 * LittleBit products it cancelled the copies saved (results §2.1). It holds the last two arrays until the next call.
 */
export class ArenaVectorPair {
  x: ArenaVector | undefined;
  y: ArenaVector | undefined;
  private epoch = -1;

  /** `xUsable`, `yUsable`: whether the kernel can read x / write y as they are (see ArenaVector); fixed per pair. */
  constructor(
    private readonly arena: WasmArena,
    private readonly xUsable = true,
    private readonly yUsable = true,
  ) {}

  /** The vectors for a call on x → y (y via ArenaVector.output): the last call's when nothing changed. */
  of(x: Float32Array, y: Float32Array): { x: ArenaVector; y: ArenaVector } {
    if (this.x?.v !== x || this.y?.v !== y || this.arena.epoch !== this.epoch) {
      this.x = new ArenaVector(this.arena, x, this.xUsable);
      this.y = ArenaVector.output(this.arena, y, x, this.yUsable);
      this.epoch = this.arena.epoch;
    }
    return this as { x: ArenaVector; y: ArenaVector };
  }
}
