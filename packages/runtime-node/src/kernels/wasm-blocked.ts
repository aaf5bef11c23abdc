import type { DecodeCall, Linear } from '@ultrasketch/model';
import { ArenaVector, ArenaVectorPair, type WasmArena } from '../wasm/arena.js';
import { recordCalls } from '../wasm/decode-program.js';
import { type RowBody, type RowCall, directCall, splitRows } from '../threads.js';
import { HeapViews, checkApplyShape } from './wasm-common.js';

/** The byte addresses every blocked kernel's scratch layout has (besides its own regions): a staged y block and x. */
export interface BlockedLayout {
  yAt: number;
  stageAt: number;
}

/**
 * The frame of the kernels whose product over n vectors runs in blocks of up to `maxT` vectors, each block some
 * serial calls (tables, permuted inputs) then one row-parallel call (wasm-rtn.ts, wasm-vq.ts). Their `apply` and
 * `decodeCalls` are the same: x and y used where they are when they are views of the arena, else staged through
 * scratch; `run` makes the calls — the row-parallel ones through splitRows in apply, through the recorder over
 * all rows in decodeCalls — so a decode plan records exactly the calls apply(x, y, 1) makes.
 */
export abstract class BlockedWasmLinear<L extends BlockedLayout> implements Linear {
  protected readonly views: HeapViews;
  /** x and y of the last call, in place or staged (decided once per pair of arrays). */
  protected readonly vectors: ArenaVectorPair;

  constructor(
    readonly arena: WasmArena,
    readonly outFeatures: number,
    readonly inFeatures: number,
    /** The codec's name, for the errors. */
    private readonly kernel: string,
    private readonly maxT: number,
  ) {
    this.views = new HeapViews(arena);
    this.vectors = new ArenaVectorPair(arena);
  }

  /**
   * The scratch regions of a call on blocks of up to TT vectors, with `yBytes` / `stageBytes` for a staged y / x
   * (0 in place): asked of the arena here, so apply(x, y, 1) and decodeCalls ask for the same bytes.
   */
  protected abstract scratchLayout(TT: number, yBytes: number, stageBytes: number): L;

  /**
   * The wasm calls of a product over n vectors at byte address xIn, in blocks of up to maxT: `call` makes the
   * serial ones, `rowsOf(work, body)` the row-parallel one of each block; `yTarget(t0)` is where block t0's outputs
   * go, `written(t0, T)` runs after each block (a staged y is copied out).
   */
  protected abstract run(
    call: RowCall,
    n: number,
    xIn: number,
    s: L,
    yTarget: (t0: number) => number,
    rowsOf: (work: number, body: RowBody) => void,
    written: (t0: number, T: number) => void,
  ): void;

  apply(x: Float32Array, y: Float32Array, n: number): void {
    const rows = this.outFeatures;
    const cols = this.inFeatures;
    checkApplyShape(this.kernel, x, y, n, rows, cols);
    // x and y that are views of the arena (the forward's activations and logits) are read / written where they are
    const { x: xv, y: yv } = this.vectors.of(x, y);
    const TT = Math.min(n, this.maxT);
    const s = this.scratchLayout(TT, yv.stageBytes(TT * rows), xv.stageBytes(n * cols));
    const f32 = this.views.refresh().f32;
    const xIn = xv.read(f32, 0, n * cols, s.stageAt);
    this.run(
      directCall,
      n,
      xIn,
      s,
      (t0) => yv.target(t0 * rows, s.yAt),
      (work, body) => splitRows(this.arena, rows, work, 1, body),
      (t0, T) => yv.written(f32, t0 * rows, T * rows, s.yAt),
    );
  }

  /**
   * `apply(x, y, 1)`'s wasm calls on one thread (the same functions, arguments and order), for a decode plan;
   * undefined where that call would do more than its wasm calls: x or y staged through scratch (not views of the
   * arena, or y overlapping x). A thread pool on the arena does not matter: the plan runs on one thread, and a
   * split gives the same bits. The scratch addresses are those apply(x, y, 1) uses (the region only grows).
   */
  decodeCalls(x: Float32Array, y: Float32Array): DecodeCall[] | undefined {
    const rows = this.outFeatures;
    if (x.length < this.inFeatures || y.length < rows) return undefined;
    if (!ArenaVector.bothInPlace(this.arena, x, y)) return undefined;
    const s = this.scratchLayout(1, 0, 0);
    return recordCalls((call) => this.run(call, 1, x.byteOffset, s, () => y.byteOffset, (_, body) => body(call, 0, rows), () => {}));
  }
}
