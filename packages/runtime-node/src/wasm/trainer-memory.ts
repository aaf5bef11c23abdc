/**
 * One WebAssembly memory per thread for the STE trainer's kernels, in which the trainer's graphs keep their
 * float32 activations ("resident" arrays), so the gemm, exponential and element-wise kernels read and write
 * them in place instead of copying every operand in and every result out (those copies were ~10% of a
 * training step, issue 13).
 *
 * Why a shared (SharedArrayBuffer-backed) memory although no other thread uses it: growing a non-shared
 * memory detaches its ArrayBuffer, which would empty every Float32Array the graphs hold; a shared memory
 * grows in place and old views stay valid (they keep their old buffer object, over the same bytes). So a
 * resident array is recognised by its buffer being one of the buffers `memory.buffer` has returned, and its
 * byte address in the memory is its byteOffset.
 *
 * Allocation: first fit over a free list, 16-byte aligned. A block returns to the free list when its view is
 * garbage-collected (FinalizationRegistry): a Trainer's graphs are freed with the Trainer. So keep the view
 * returned by allocF32 alive as long as any subarray of it is used. When the memory's maximum is reached,
 * allocF32 returns an ordinary Float32Array: residency is only a speed-up, every kernel also copies.
 * Scratch regions (operands of non-resident arrays, transposes) are named slots that only grow.
 */
import type { MemoryImport } from './emitter.js';
import { type WasmMemory, requireWasm, wasmApi } from './engine.js';

const PAGE = 65536;
const ALIGN = 16;
/** What every trainer module declares for its imported memory (an import's maximum may be below it). */
export const TRAINER_MODULE_MAX_PAGES = 65536;

/** The memory import of every trainer module built for a TrainerMemory (shared; the exp, ops, gemm and transpose modules). */
export const TRAINER_MEMORY_IMPORT: MemoryImport = { module: 'env', name: 'memory', minPages: 1, maxPages: TRAINER_MODULE_MAX_PAGES, shared: true };

/** The memory import of a module without a TrainerMemory (a private memory; the FMA gemm's and transpose's tests). */
export const PRIVATE_MEMORY_IMPORT: MemoryImport = { module: 'env', name: 'memory', minPages: 1 };

/**
 * The kernels of a trainer module that comes with and without fused multiply-add Horner steps (`bytesOf(fma)`;
 * exp and ops): built with the fused one when asked for and this engine compiles it (relaxed SIMD), else with the
 * plain one when it compiles, else null — the trainer then keeps its JS loops.
 */
export function createFmaOrPlain<K>(fma: boolean | undefined, bytesOf: (fma: boolean) => Uint8Array, make: (fma: boolean) => K): K | null {
  try {
    if (!wasmApi) return null;
    if (fma === true && wasmApi.validate(bytesOf(true))) return make(true);
    if (!wasmApi.validate(bytesOf(false))) return null;
    return make(false);
  } catch {
    return null;
  }
}

export interface TrainerMemoryOptions {
  /** Initial size (default 4 MiB). */
  initialBytes?: number;
  /** Maximum size (default 1 GiB): beyond it allocF32 returns ordinary arrays. */
  maximumBytes?: number;
}

export class TrainerMemory {
  readonly memory: WasmMemory;
  readonly maxBytes: number;
  /** Float32 view of the whole memory; re-made after every grow (read it after allocating). */
  f32: Float32Array;
  /** Every buffer object memory.buffer has returned (one per size): an array over one of them is resident. */
  private readonly buffers = new Set<ArrayBufferLike>();
  /** Free blocks [at, bytes], sorted by address, coalesced. */
  private readonly free: [number, number][] = [];
  /** End of the highest block ever handed out. */
  private top = ALIGN; // address 0 is never handed out
  private readonly slots: [number, number][] = [];
  private readonly registry: FinalizationRegistry<number> | null;
  private readonly sizes = new Map<number, number>();
  /** Bytes in live blocks (diagnostics). */
  liveBytes = 0;

  constructor(options: TrainerMemoryOptions = {}) {
    const wasm = requireWasm();
    const maxPages = Math.min(TRAINER_MODULE_MAX_PAGES, Math.ceil((options.maximumBytes ?? 1 << 30) / PAGE));
    this.maxBytes = maxPages * PAGE;
    const initial = Math.max(1, Math.min(maxPages, Math.ceil((options.initialBytes ?? 4 << 20) / PAGE)));
    this.memory = new wasm.Memory({ initial, maximum: maxPages, shared: true });
    this.f32 = new Float32Array(this.memory.buffer);
    this.buffers.add(this.memory.buffer);
    const FR = (globalThis as { FinalizationRegistry?: typeof FinalizationRegistry }).FinalizationRegistry;
    this.registry = FR ? new FR<number>((at) => this.release(at)) : null;
  }

  /** Whether `a` lives in this memory (its byte address is then a.byteOffset). */
  isResident(a: ArrayBufferView): boolean {
    return this.buffers.has(a.buffer);
  }

  /**
   * A zero-filled Float32Array of `length` in this memory (16-byte aligned), or an ordinary one when the
   * memory is full or there is no FinalizationRegistry to give blocks back.
   */
  allocF32(length: number): Float32Array {
    const bytes = Math.max(ALIGN, (4 * length + ALIGN - 1) & ~(ALIGN - 1));
    if (this.registry === null || length === 0) return new Float32Array(length);
    const fresh = this.top; // memory from here up has never been handed out: still zero, as grown
    const at = this.take(bytes);
    if (at < 0) return new Float32Array(length);
    const view = new Float32Array(this.memory.buffer, at, length);
    if (at < fresh) view.fill(0); // a reused block (touching fresh pages twice would double their cost)
    this.sizes.set(at, bytes);
    this.liveBytes += bytes;
    this.registry.register(view, at);
    return view;
  }

  /** Address of scratch slot `slot` holding at least `bytes` (contents not kept across calls). */
  scratch(slot: number, bytes: number): number {
    const s = this.slots[slot];
    if (s !== undefined && s[1] >= bytes) return s[0];
    const want = Math.max(bytes, s === undefined ? 0 : Math.ceil(s[1] * 1.5), 64 * 1024);
    const size = (want + ALIGN - 1) & ~(ALIGN - 1);
    if (s !== undefined) this.giveBack(s[0], s[1]);
    const at = this.take(size);
    if (at < 0) {
      throw new RangeError(`trainer wasm memory: no room for ${size} bytes of scratch (maximum ${this.maxBytes})`);
    }
    this.slots[slot] = [at, size];
    return at;
  }

  /** First-fit block of `bytes` (a multiple of 16), growing the memory; −1 when over the maximum. */
  private take(bytes: number): number {
    const free = this.free;
    for (let i = 0; i < free.length; i++) {
      const f = free[i]!;
      if (f[1] >= bytes) {
        const at = f[0];
        if (f[1] === bytes) free.splice(i, 1);
        else {
          f[0] += bytes;
          f[1] -= bytes;
        }
        return at;
      }
    }
    const at = this.top;
    if (at + bytes > this.maxBytes) return -1;
    this.ensure(at + bytes);
    this.top = at + bytes;
    return at;
  }

  private release(at: number): void {
    const bytes = this.sizes.get(at);
    if (bytes === undefined) return;
    this.sizes.delete(at);
    this.liveBytes -= bytes;
    this.giveBack(at, bytes);
  }

  private giveBack(at: number, bytes: number): void {
    const free = this.free;
    let i = 0;
    while (i < free.length && free[i]![0] < at) i++;
    free.splice(i, 0, [at, bytes]);
    // coalesce with the next and the previous block
    if (i + 1 < free.length && free[i]![0] + free[i]![1] === free[i + 1]![0]) {
      free[i]![1] += free[i + 1]![1];
      free.splice(i + 1, 1);
    }
    if (i > 0 && free[i - 1]![0] + free[i - 1]![1] === free[i]![0]) {
      free[i - 1]![1] += free[i]![1];
      free.splice(i, 1);
    }
  }

  /** Make the memory at least `end` bytes (grows by ≥ 1/4 of its size: O(log) grows). */
  private ensure(end: number): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    const need = Math.ceil((end - have) / PAGE);
    const pages = Math.min(this.maxBytes / PAGE - have / PAGE, Math.max(need, Math.ceil(have / PAGE / 4)));
    this.memory.grow(pages);
    this.buffers.add(this.memory.buffer);
    this.f32 = new Float32Array(this.memory.buffer);
  }
}
