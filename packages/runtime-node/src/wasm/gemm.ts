/**
 * Dense float32 matrix–vector and small matrix–matrix kernels in WebAssembly SIMD (f32x4), emitted at
 * start-up by `emitter.ts` — no toolchain, no binary blobs in the repository.
 *
 * What they compute (all operands row-major float32 in the wasm memory, addresses in bytes):
 *
 *     Y[t, i] = Σ_j W[i, j] · X[t, j]      for t in 0..n-1, i in rowBegin..rowEnd-1
 *
 * with W [rows, cols] (row stride cols), X [n, cols] (row stride cols) and Y [n, ldy] (row stride ldy, which
 * is `rows` for a whole product; a row range [rowBegin, rowEnd) lets several threads share one product).
 *
 * How: the work is cut into register tiles of R weight rows × T input rows. For one tile the kernel walks
 * the columns four at a time, keeping R·T f32x4 accumulators; every 16-byte load of W is used T times and
 * every load of X is used R times. T > 1 is what makes prefill fast (one pass over W serves T tokens); for a
 * single token (T = 1) several weight rows (R = 4) give independent add chains so the loop is not bound by
 * f32x4.add latency. The column loop can be unrolled U times (U loads per row per iteration, using the
 * memarg's constant offset) to cut loop overhead where the tile is small. Columns that do not fill a whole f32x4 (cols % 4) are
 * handled by a scalar tail with scalar accumulators; lanes are summed at the end of the row:
 * y = ((a0 + a1) + (a2 + a3)) + tail.
 *
 * Rounding: float32 products summed in float32, in 4 lanes then pairwise — within a few ulps·√cols of the
 * exact sum, like llama2.c's sequential float32 sum (which the golden logits come from).
 */
import { FunctionBuilder, ModuleBuilder, lanesSum, whileLtU } from './emitter.js';
import type { WasmExports } from './engine.js';

/** A tile kernel: (w, x, y, rowBegin, rowEnd, cols, ldy), (rowEnd - rowBegin) a multiple of its R. */
export type TileKernel = (w: number, x: number, y: number, rowBegin: number, rowEnd: number, cols: number, ldy: number) => void;

/** One register tile shape: R weight rows × (its T) input rows, column loop unrolled U times. */
export interface TileShape {
  r: number;
  u: number;
}

/** Register tiling: tiles[T - 1] is the tile used for blocks of T input rows, T = 1..tiles.length. */
export interface TilePlan {
  tiles: readonly TileShape[];
}

/**
 * Chosen by measurement on the shapes of stories3M (bench/wasm-gemm-tiles.mjs in this package):
 * one token: 2 weight rows, unrolled 4 times; prefill: blocks of 4 tokens × 2 weight rows, not unrolled.
 * Keeps R·T accumulators + R weights + 1 input ≤ 16 live v128 values (V8 uses 16 xmm registers on x64).
 * One token (issue 12): a whole stories3M token's products (12.6 MB of f32, larger than L2) stream from L3 and
 * are bound by its bandwidth; 2 rows per tile (two read streams) measured 428–434 µs per token's products
 * against 470 µs for 4 rows × 2 (the minimum over 150 alternating rounds, loaded VM), and the same 16 GMAC/s
 * when the weights sit in L2. R and U do not change any row's sum (each row's lanes accumulate its columns in
 * order), so the logits are the same bits.
 */
export const DEFAULT_TILE_PLAN: TilePlan = {
  tiles: [
    { r: 2, u: 4 },
    { r: 4, u: 1 },
    { r: 3, u: 1 },
    { r: 2, u: 1 },
  ],
};

export const tileName = (r: number, t: number, u: number): string => `gemm_r${r}_t${t}_u${u}`;

/**
 * A tile's scalar tail (this module's tiles and trainer-gemm-fma.ts's): for the byte offsets j..colsBytes of the
 * rows, one float at a time, tail[r·T + t] += W row r's float · X row t's float (wp[r], xp[t]: the rows' byte
 * addresses; ws, xs: scratch f32 locals) — a multiply then an add, rounded twice, the same in every engine.
 */
export function emitTileTail(
  f: FunctionBuilder,
  l: { j: number; colsBytes: number; wp: readonly number[]; xp: readonly number[]; ws: readonly number[]; xs: number; tail: readonly number[] },
): void {
  const R = l.wp.length;
  const T = l.xp.length;
  whileLtU(f, l.j, l.colsBytes, 4, () => {
    for (let r = 0; r < R; r++) f.get(l.wp[r]!).get(l.j).i32Add().f32Load().set(l.ws[r]!);
    for (let t = 0; t < T; t++) {
      f.get(l.xp[t]!).get(l.j).i32Add().f32Load().set(l.xs);
      for (let r = 0; r < R; r++) {
        const s = l.tail[r * T + t]!;
        f.get(s).get(l.ws[r]!).get(l.xs).f32Mul().f32Add().set(s);
      }
    }
  });
}

/** Emit the R × T tile kernel (see the file comment). */
export function emitTile(R: number, T: number, U: number): FunctionBuilder {
  const ok = (v: number) => Number.isInteger(v) && v >= 1 && v <= 16;
  if (!ok(R) || !ok(T) || ![1, 2, 4, 8].includes(U)) {
    throw new RangeError(`emitTile: R=${R}, T=${T} must be 1..16 and U one of 1, 2, 4, 8`);
  }
  const f = new FunctionBuilder(['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [w, x, y, rowBegin, rowEnd, cols, ldy] = [0, 1, 2, 3, 4, 5, 6];
  const i = f.local('i32'); // current weight row
  const j = f.local('i32'); // byte offset within a row
  const colsBytes = f.local('i32');
  const vecBytes = f.local('i32'); // colsBytes rounded down to whole f32x4 (16 bytes)
  const unrolledBytes = f.local('i32'); // colsBytes rounded down to whole unrolled steps (16·U bytes)
  const wp = Array.from({ length: R }, () => f.local('i32')); // W row r of the tile
  const xp = Array.from({ length: T }, () => f.local('i32')); // X row t
  const yp = Array.from({ length: T }, () => f.local('i32')); // &Y[t, i]
  const acc = Array.from({ length: R * T }, () => f.local('v128')); // acc[r*T + t]
  const wv = Array.from({ length: R }, () => f.local('v128'));
  const xv = f.local('v128');
  const tail = Array.from({ length: R * T }, () => f.local('f32'));
  const ws = Array.from({ length: R }, () => f.local('f32'));
  const xs = f.local('f32');

  // colsBytes = cols*4; vecBytes = colsBytes & ~15; unrolledBytes = colsBytes & ~(16U - 1) (U a power of 2)
  f.get(cols).i32Const(2).i32Shl().set(colsBytes);
  f.get(colsBytes).i32Const(~15).i32And().set(vecBytes);
  f.get(colsBytes).i32Const(~(16 * U - 1)).i32And().set(unrolledBytes);
  // xp[t] = x + t*colsBytes; yp[t] = y + (t*ldy + rowBegin)*4; wp[0] = w + rowBegin*colsBytes
  for (let t = 0; t < T; t++) {
    f.get(x).get(colsBytes).i32Const(t).i32Mul().i32Add().set(xp[t]!);
    f.get(y).get(ldy).i32Const(t).i32Mul().get(rowBegin).i32Add().i32Const(2).i32Shl().i32Add().set(yp[t]!);
  }
  f.get(w).get(rowBegin).get(colsBytes).i32Mul().i32Add().set(wp[0]!);
  f.get(rowBegin).set(i);

  /** acc[r][t] += W[r, j..j+3] * X[t, j..j+3] for `steps` consecutive f32x4 (constant offsets 16·s). */
  const vectorStep = (steps: number) => {
    for (let s = 0; s < steps; s++) {
      const off = 16 * s;
      for (let r = 0; r < R; r++) f.get(wp[r]!).get(j).i32Add().v128Load(off).set(wv[r]!);
      for (let t = 0; t < T; t++) {
        f.get(xp[t]!).get(j).i32Add().v128Load(off).set(xv);
        for (let r = 0; r < R; r++) {
          const a = acc[r * T + t]!;
          f.get(a).get(wv[r]!).get(xv).f32x4Mul().f32x4Add().set(a);
        }
      }
    }
  };

  whileLtU(f, i, rowEnd, R, () => {
    for (let r = 1; r < R; r++) f.get(wp[r - 1]!).get(colsBytes).i32Add().set(wp[r]!);
    for (const a of acc) f.v128Zero().set(a);
    for (const s of tail) f.f32Const(0).set(s);
    f.i32Const(0).set(j);
    // main column loop, U f32x4 steps per iteration
    whileLtU(f, j, unrolledBytes, 16 * U, () => vectorStep(U));
    // leftover whole f32x4 steps (fewer than U)
    if (U > 1) whileLtU(f, j, vecBytes, 16, () => vectorStep(1));
    // scalar tail: cols % 4 columns
    emitTileTail(f, { j, colsBytes, wp, xp, ws, xs, tail });
    // Y[t, i + r] = ((lane0 + lane1) + (lane2 + lane3)) + tail
    for (let t = 0; t < T; t++) {
      for (let r = 0; r < R; r++) {
        const a = acc[r * T + t]!;
        f.get(yp[t]!);
        lanesSum(f, a);
        f.get(tail[r * T + t]!).f32Add();
        f.f32Store(4 * r);
      }
      f.get(yp[t]!).i32Const(4 * R).i32Add().set(yp[t]!);
    }
    f.get(wp[R - 1]!).get(colsBytes).i32Add().set(wp[0]!);
  });
  return f;
}

/** The kernel module: for every T, the tile of the plan and the 1×T tile for leftover weight rows. */
export function emitGemmModule(plan: TilePlan = DEFAULT_TILE_PLAN, memory: { shared?: boolean; maxPages?: number } = {}): Uint8Array {
  return gemmModuleBuilder(plan, memory).emit();
}

/** The kernel module's builder (emitGemmModule; its `signatures()` name every export's parameters). */
export function gemmModuleBuilder(plan: TilePlan = DEFAULT_TILE_PLAN, memory: { shared?: boolean; maxPages?: number } = {}): ModuleBuilder {
  const m = new ModuleBuilder({
    module: 'env',
    name: 'memory',
    minPages: 1,
    ...(memory.maxPages === undefined ? {} : { maxPages: memory.maxPages }),
    ...(memory.shared ? { shared: true } : {}),
  });
  // function indices (no imported functions: 0-based in the order added) of each T's R×T and 1×T tiles
  const main: number[] = [];
  const single: number[] = [];
  let index = 0;
  plan.tiles.forEach(({ r, u }, i) => {
    const t = i + 1;
    m.addFunction(tileName(r, t, u), emitTile(r, t, u));
    main[t] = single[t] = index++;
    if (r !== 1) {
      m.addFunction(tileName(1, t, u), emitTile(1, t, u));
      single[t] = index++;
    }
  });
  m.addFunction(GEMM_ROWS, emitGemmRows(plan, main, single));
  m.addFunction(COPY_BYTES, emitCopyBytes());
  m.addFunction(ZERO_BYTES, emitZeroBytes());
  return m;
}

/** The zero fill's export name. */
export const ZERO_BYTES = 'zero_bytes';

/** zero_bytes(dst, bytes): memory.fill with 0 — a kernel's padding in scratch, as a call a decode plan can make. */
export function emitZeroBytes(): FunctionBuilder {
  const f = new FunctionBuilder(['i32', 'i32']);
  f.get(0).i32Const(0).get(1).memoryFill();
  return f;
}

/** The byte copy's export name. */
export const COPY_BYTES = 'copy_bytes';

/** copy_bytes(dst, src, bytes): memory.copy — a token's embedding row out of a tied classifier (a decode plan's lookup). */
export function emitCopyBytes(): FunctionBuilder {
  const f = new FunctionBuilder(['i32', 'i32', 'i32']);
  f.get(0).get(1).get(2).memoryCopy();
  return f;
}

/** The driver's export name. */
export const GEMM_ROWS = 'gemm_rows';
/** Bytes of weights one row block of a batch covers (GemmKernels.blockRows): well inside a 2 MiB L2. */
const BLOCK_BYTES = 256 * 1024;

/**
 * gemm_rows(w, x, y, n, cols, ldy, rowBegin, rowEnd): `GemmKernels.gemm` as one wasm function — blocks of maxT
 * input rows, then one block of the n % maxT left, each block the R×T tile over whole tiles of rows and the 1×T
 * tile for the rest — calling the same tiles with the same arguments in the same order (same bits). Why: a
 * thread pool records one call per chunk instead of one per block of 4 tokens (a 512-token prefill's product
 * was 1,024 recorded calls, ~20–40 µs of serial recording before the workers could start, and as many JS→wasm
 * calls to replay), and a one-thread prefill makes one call per product.
 */
function emitGemmRows(plan: TilePlan, main: number[], single: number[]): FunctionBuilder {
  const f = new FunctionBuilder(['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  const [w, x, y, n, cols, ldy, rowBegin, rowEnd] = [0, 1, 2, 3, 4, 5, 6, 7];
  const t0 = f.local('i32');
  const xt = f.local('i32');
  const yt = f.local('i32');
  const rem = f.local('i32');
  const mainEnd = f.local('i32');
  const maxT = plan.tiles.length;
  const call = (fn: number) => {
    f.code.push(0x10); // call
    f.code.push(fn); // < 128 functions: a one-byte LEB128
  };
  // the calls of one block of T input rows at (xt, yt)
  const block = (T: number) => {
    const R = plan.tiles[T - 1]!.r;
    // mainEnd = rowBegin + ⌊(rowEnd − rowBegin) / R⌋ · R
    f.get(rowEnd).get(rowBegin).i32Sub().i32Const(R);
    f.code.push(0x6e); // i32.div_u
    f.i32Const(R).i32Mul().get(rowBegin).i32Add().set(mainEnd);
    f.block().get(mainEnd).get(rowBegin).i32LeU().brIf(0);
    f.get(w).get(xt).get(yt).get(rowBegin).get(mainEnd).get(cols).get(ldy);
    call(main[T]!);
    f.end();
    f.block().get(rowEnd).get(mainEnd).i32LeU().brIf(0);
    f.get(w).get(xt).get(yt).get(mainEnd).get(rowEnd).get(cols).get(ldy);
    call(single[T]!);
    f.end();
  };
  f.block(); // depth from inside the loop: 1
  f.loop(); // 0
  f.get(n).get(t0).i32Sub().tee(rem).i32Eqz().brIf(1);
  f.get(t0).get(cols).i32Mul().i32Const(2).i32Shl().get(x).i32Add().set(xt);
  f.get(t0).get(ldy).i32Mul().i32Const(2).i32Shl().get(y).i32Add().set(yt);
  // a whole block of maxT rows, then around again
  f.block();
  f.get(rem).i32Const(maxT).i32LtU().brIf(0);
  block(maxT);
  f.get(t0).i32Const(maxT).i32Add().set(t0);
  f.br(1);
  f.end();
  // the last rem (1 .. maxT − 1) input rows; the loop then ends
  for (let T = 1; T < maxT; T++) {
    f.block();
    f.get(rem).i32Const(T);
    f.code.push(0x47); // i32.ne
    f.brIf(0);
    block(T);
    f.end();
  }
  f.end();
  f.end();
  return f;
}

/** Tile kernels of one instance, indexed for the driver. */
export class GemmKernels {
  /** main[T], single[T]: the R×T and 1×T kernels. */
  private readonly main: TileKernel[] = [];
  private readonly single: TileKernel[] = [];
  private readonly rowsPerTile: number[] = [];
  readonly maxT: number;

  constructor(exports: WasmExports, plan: TilePlan = DEFAULT_TILE_PLAN) {
    this.maxT = plan.tiles.length;
    plan.tiles.forEach(({ r, u }, index) => {
      const t = index + 1;
      this.rowsPerTile[t] = r;
      this.main[t] = exports[tileName(r, t, u)] as TileKernel;
      this.single[t] = exports[tileName(1, t, u)] as TileKernel;
    });
    let a = 1;
    for (const { r } of plan.tiles) {
      let g = a;
      let b = r;
      while (b) [g, b] = [b, g % b];
      a = (a / g) * r;
    }
    this.rowAlign = a;
    this.rows = exports[GEMM_ROWS] as GemmRows;
  }

  /** The wasm driver (`gemm_rows`): the whole of `gemm` in one call. */
  readonly rows: GemmRows;

  /**
   * Rows per block of a batch (n > maxT): a batch walks its token blocks over a range of weight rows, so the
   * range should stay in L2 while it does — at most BLOCK_BYTES of weights, a multiple of rowAlign. A 512-token
   * stories3M prefill's classifier (4096 × 192, 3 MB) went from 24.2 to 20.0 ms on one thread with blocks of
   * 256–1,024 rows (`/tmp` script, CPU time, min of 7; the smaller products were unchanged). Any split of the
   * rows gives the same bits (each row's sum is the same whatever the tile's other rows).
   */
  blockRows(cols: number): number {
    const rows = Math.floor(BLOCK_BYTES / (4 * cols) / this.rowAlign) * this.rowAlign;
    return Math.max(this.rowAlign, rows);
  }

  /**
   * Y[t, i] = W[i, :] · X[t, :] for t < n and rowBegin ≤ i < rowEnd (byte addresses; Y row stride ldy
   * floats). Blocks of maxT input rows first, then one smaller block for the n % maxT leftover rows.
   */
  gemm(w: number, x: number, y: number, n: number, cols: number, ldy: number, rowBegin: number, rowEnd: number): void {
    // the same calls as gemmCalls, issued directly (no recorder, no argument arrays: the per-token path); a
    // batch of several blocks goes through the wasm driver (the same tile calls, one JS→wasm call)
    const maxT = this.maxT;
    if (n > maxT) {
      for (let r0 = rowBegin, step = this.blockRows(cols); r0 < rowEnd; r0 += step) this.rows(w, x, y, n, cols, ldy, r0, Math.min(rowEnd, r0 + step));
      return;
    }
    for (let t0 = 0; t0 < n; t0 += maxT) {
      const T = n - t0 < maxT ? n - t0 : maxT;
      const R = this.rowsPerTile[T]!;
      const mainEnd = rowBegin + (((rowEnd - rowBegin) / R) | 0) * R;
      const xt = x + t0 * cols * 4;
      const yt = y + t0 * ldy * 4;
      if (mainEnd > rowBegin) this.main[T]!(w, xt, yt, rowBegin, mainEnd, cols, ldy);
      if (rowEnd > mainEnd) this.single[T]!(w, xt, yt, mainEnd, rowEnd, cols, ldy);
    }
  }

  /**
   * Rows are split across threads at multiples of this (the lcm of the plan's row tiles), so each thread's
   * range is tiled exactly as the same rows are with one thread (bit-identical sums).
   */
  readonly rowAlign: number;

  /** `gemm` with every tile call issued through `call` (run here, or recorded for a worker thread). */
  gemmCalls(
    call: (fn: TileKernel, ...args: number[]) => void,
    w: number,
    x: number,
    y: number,
    n: number,
    cols: number,
    ldy: number,
    rowBegin: number,
    rowEnd: number,
  ): void {
    const maxT = this.maxT;
    if (n > maxT) {
      // one recorded call per block of rows of the chunk (see emitGemmRows, blockRows) — at most ~16 per chunk, so a
      // large product (a 128k-row classifier) stays within the pool's recorded calls per job
      const a = this.rowAlign;
      const step = Math.max(this.blockRows(cols), Math.ceil((rowEnd - rowBegin) / 16 / a) * a);
      for (let r0 = rowBegin; r0 < rowEnd; r0 += step) {
        call(this.rows as unknown as TileKernel, w, x, y, n, cols, ldy, r0, Math.min(rowEnd, r0 + step));
      }
      return;
    }
    for (let t0 = 0; t0 < n; t0 += maxT) {
      const T = n - t0 < maxT ? n - t0 : maxT;
      const R = this.rowsPerTile[T]!;
      const mainEnd = rowBegin + (((rowEnd - rowBegin) / R) | 0) * R;
      const xt = x + t0 * cols * 4;
      const yt = y + t0 * ldy * 4;
      if (mainEnd > rowBegin) call(this.main[T]!, w, xt, yt, rowBegin, mainEnd, cols, ldy);
      if (rowEnd > mainEnd) call(this.single[T]!, w, xt, yt, mainEnd, rowEnd, cols, ldy);
    }
  }
}

/** gemm_rows(w, x, y, n, cols, ldy, rowBegin, rowEnd) (emitGemmRows). */
export type GemmRows = (w: number, x: number, y: number, n: number, cols: number, ldy: number, rowBegin: number, rowEnd: number) => void;
