/**
 * The trainer gemm's tile kernels with fused multiply-adds (WebAssembly relaxed SIMD `f32x4.relaxed_madd`):
 * the same product as gemm.ts — Y[t, i] = Σ_j W[i, j] · X[t, j] over row-contiguous W and X, rows
 * rowBegin..rowEnd − 1 — with one instruction per multiply-add instead of f32x4.mul + f32x4.add.
 *
 * Why a separate module: the training step is ~60% gemm, and its inner loop is bound by the floating-point
 * instructions (per 4 columns of an R × T tile: R + T loads against R·T multiplies and R·T adds). On x64 with
 * FMA, V8 compiles relaxed_madd to one vfmadd, halving them. The inference kernels (gemm.ts) stay plain SIMD:
 * they must give the same bits on every engine, while `relaxed_madd` may round once (fused) or twice
 * (unfused) depending on the hardware — on one machine the choice is fixed, so a training run is still
 * bit-reproducible there (the trainer's own determinism promise: same machine, seed and thread count).
 *
 * Availability: relaxed SIMD is on by default from V8 11.4 (Node ≥ 22); Node 20 needs the V8 flag
 * `--experimental-wasm-relaxed-simd`, which `enableRelaxedSimd()` sets at run time (before the module is
 * compiled; process-wide, so worker threads see it). Without it the trainer keeps the plain kernels.
 *
 * Rounding: each lane accumulates its columns j ≡ lane (mod 4) with one rounding per multiply-add, lanes are
 * summed pairwise at the end ((a0 + a1) + (a2 + a3)), then the cols % 4 tail (scalar multiply + add).
 */
import { FunctionBuilder, ModuleBuilder, lanesSum, whileLtU } from './emitter.js';
import type { WasmExports, WasmMemory } from './engine.js';
import { requireWasm, wasmApi } from './engine.js';
import { emitTileTail } from './gemm.js';
import { PRIVATE_MEMORY_IMPORT, TRAINER_MEMORY_IMPORT } from './trainer-memory.js';

const RELAXED_MADD = 0x105; // f32x4.relaxed_madd (relaxed SIMD proposal, Overview.md's binary table)

/**
 * The builder of one tile function. Every tile (the NT tiles of emitFmaTile, the TN and NN outer-product tiles
 * of emitTnTile) takes ten i32 parameters — byte addresses, sizes, strides in floats, the accumulate flag — and
 * opens the same way: strides and sizes converted to bytes, then nested counted loops (`forRange`).
 */
class FmaBuilder extends FunctionBuilder {
  constructor() {
    super(['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32']);
  }
  /** For each [floats, bytes] pair of locals, in order: bytes = floats · 4 (a shift left by 2). */
  floatsToBytes(...pairs: ReadonlyArray<readonly [number, number]>): this {
    for (const [floats, bytes] of pairs) this.get(floats).i32Const(2).i32Shl().set(bytes);
    return this;
  }
  /** while (v <u limit) { body; v += step } as a guarded do-while (the emitter's whileLtU). */
  forRange(v: number, limit: number, step: number, body: () => void): this {
    whileLtU(this, v, limit, step, body);
    return this;
  }
  /** f32x4.relaxed_madd: pops a, b, c (c on top) and pushes a·b + c. */
  relaxedMadd(): this {
    this.code.push(0xfd, (RELAXED_MADD & 0x7f) | 0x80, RELAXED_MADD >> 7);
    return this;
  }
  /** v128.load32_splat (one float to all 4 lanes) with a constant byte offset below 128. */
  load32Splat(offset: number): this {
    this.code.push(0xfd, 0x09, 2, offset);
    return this;
  }
}

/**
 * The "TN" tile for products whose reduction runs down the rows of both operands (∂L/∂Ŵ = dYᵀ X): C[i, j] (+)=
 * Σ_t A[t, i] · B[t, j] with A [k, ·] and B [k, ·] row-major — no transposes. Outer products: per t, R floats
 * of A's row t (splat) times V vectors of B's row t into R × V vector accumulators, stored as vectors (no
 * horizontal sums). (a, b, c, rows, cols, k, lda, ldb, ldc, accumulate): byte addresses of the block's
 * origin, rows a multiple of R, cols of 4V, strides in floats. Each C element sums t in order in one lane.
 */
function emitTnTile(R: number, V: number, nn = false): FunctionBuilder {
  const f = new FmaBuilder();
  const [a, b, c, rows, cols, k, lda, ldb, ldc, accumulate] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const i = f.local('i32');
  const j = f.local('i32');
  const t = f.local('i32');
  const ap = f.local('i32');
  const bp = f.local('i32');
  const cp = f.local('i32');
  const ldaB = f.local('i32');
  const ldbB = f.local('i32');
  const ldcB = f.local('i32');
  const colsB = f.local('i32');
  const acc = Array.from({ length: R * V }, () => f.local('v128'));
  const bv = Array.from({ length: V }, () => f.local('v128'));
  const av = f.local('v128');
  // nn: A [m, k] row-major (C = A B): output row r's scalars walk A's row r, one pointer per row
  const apr = Array.from({ length: nn ? R : 0 }, () => f.local('i32'));
  f.floatsToBytes([lda, ldaB], [ldb, ldbB], [ldc, ldcB], [cols, colsB]);
  // columns outer: one column strip of B (k rows × 4V floats) serves every row block (the caller keeps k
  // small enough for it and A's strip to stay in L1)
  f.i32Const(0).set(j);
  f.forRange(j, colsB, 16 * V, () => {
    f.i32Const(0).set(i);
    f.forRange(i, rows, R, () => {
      for (const x of acc) f.v128Zero().set(x);
      if (nn) for (let r = 0; r < R; r++) f.get(a).get(i).i32Const(r).i32Add().get(ldaB).i32Mul().i32Add().set(apr[r]!); // A[i + r, 0]
      else f.get(a).get(i).i32Const(2).i32Shl().i32Add().set(ap); // A[0, i]
      f.get(b).get(j).i32Add().set(bp); // B[0, j]
      f.i32Const(0).set(t);
      f.forRange(t, k, 1, () => {
        for (let v = 0; v < V; v++) f.get(bp).v128Load(16 * v).set(bv[v]!);
        for (let r = 0; r < R; r++) {
          if (nn) f.get(apr[r]!).load32Splat(0).set(av);
          else f.get(ap).load32Splat(4 * r).set(av);
          for (let v = 0; v < V; v++) {
            const x = acc[r * V + v]!;
            f.get(av).get(bv[v]!).get(x).relaxedMadd().set(x);
          }
        }
        if (nn) for (let r = 0; r < R; r++) f.get(apr[r]!).i32Const(4).i32Add().set(apr[r]!);
        else f.get(ap).get(ldaB).i32Add().set(ap);
        f.get(bp).get(ldbB).i32Add().set(bp);
      });
      // C rows i..i + R − 1 at columns j..: + C when accumulating, then stored
      for (let r = 0; r < R; r++) {
        f.get(c).get(i).i32Const(r).i32Add().get(ldcB).i32Mul().i32Add().get(j).i32Add().set(cp);
        f.block().get(accumulate).i32Eqz().brIf(0);
        for (let v = 0; v < V; v++) {
          const x = acc[r * V + v]!;
          f.get(cp).v128Load(16 * v).get(x).f32x4Add().set(x);
        }
        f.end();
        for (let v = 0; v < V; v++) f.get(cp).get(acc[r * V + v]!).v128Store(16 * v);
      }
    });
  });
  return f;
}

/** The TN tiles a module carries: R × V = 3 × 3 for the body, 3 × 1, 1 × 3 and 1 × 1 for the edges. */
const TN_TILES: ReadonlyArray<readonly [number, number]> = [
  [3, 3],
  [3, 1],
  [1, 3],
  [1, 1],
];
const tnName = (r: number, v: number) => `tn_r${r}_v${v}`;
/** Reduction rows per TN block (see FmaGemmKernels.gemmTN). */
const TN_KB = 128;

/** R weight rows × T input rows per tile; tiles[T − 1] gives R for blocks of T input rows. */
export interface FmaTilePlan {
  rows: readonly number[];
}

/**
 * Measured on the trainer's stories3M shapes (512×512×192, 512×192×512, 512×4096×192, 192×512×512, 384×128×32;
 * G multiply-adds per CPU-second, 2 rounds): plain SIMD 17–21, this plan (blocks of 4 input rows × 2 weight
 * rows) 23–26 — about 2 FMAs per cycle, the port limit of 128-bit FMA here; T = 5 (R 2) or R = 3 at T = 4
 * measured 17–20 (more accumulators than the 15 xmm registers V8 allocates on x64 spill).
 * Since issue 13's fourth pass the main block is 3 input rows × 3 weight rows (9 accumulators, 6 loads per
 * 9 fused multiply-adds instead of 6 per 8): 4–8% more multiply-adds per CPU-second on the shapes above and
 * the attention and low-rank shapes (384×128×32, 384×32×128, 512×192×18, 512×512×42), with the same bits
 * (each output's lanes sum the same terms in the same order whatever the tile).
 */
export const DEFAULT_FMA_PLAN: FmaTilePlan = { rows: [4, 4, 3] };

/**
 * The R × T tile: (w, x, y, rowBegin, rowEnd, cols, ldy, ldx, ldw, accumulate), byte addresses, (rowEnd −
 * rowBegin) a multiple of R; X rows ldx floats apart and W rows ldw apart (cols each, the product's
 * reduction: attention's causal products use parts of longer rows); accumulate ≠ 0: Y = Y + the sums.
 */
function emitFmaTile(R: number, T: number): FunctionBuilder {
  const f = new FmaBuilder();
  const [w, x, y, rowBegin, rowEnd, cols, ldy, ldx, ldw, accumulate] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const sum = f.local('f32');
  const ldxBytes = f.local('i32');
  const ldwBytes = f.local('i32');
  const i = f.local('i32');
  const j = f.local('i32');
  const colsBytes = f.local('i32');
  const vecBytes = f.local('i32');
  const w0 = f.local('i32');
  const wp = Array.from({ length: R }, () => f.local('i32'));
  const xp = Array.from({ length: T }, () => f.local('i32'));
  const yp = Array.from({ length: T }, () => f.local('i32'));
  const acc = Array.from({ length: R * T }, () => f.local('v128'));
  const wv = Array.from({ length: R }, () => f.local('v128'));
  const xv = f.local('v128');
  const tail = Array.from({ length: R * T }, () => f.local('f32'));
  const ws = Array.from({ length: R }, () => f.local('f32'));
  const xs = f.local('f32');

  f.floatsToBytes([cols, colsBytes]);
  f.get(colsBytes).i32Const(~15).i32And().set(vecBytes);
  f.floatsToBytes([ldx, ldxBytes], [ldw, ldwBytes]);
  for (let t = 0; t < T; t++) {
    f.get(x).get(ldxBytes).i32Const(t).i32Mul().i32Add().set(xp[t]!);
    f.get(y).get(ldy).i32Const(t).i32Mul().get(rowBegin).i32Add().i32Const(2).i32Shl().i32Add().set(yp[t]!);
  }
  f.get(w).get(rowBegin).get(ldwBytes).i32Mul().i32Add().set(w0);
  f.get(rowBegin).set(i);
  f.forRange(i, rowEnd, R, () => {
    for (let r = 0; r < R; r++) {
      if (r === 0) f.get(w0).set(wp[0]!);
      else f.get(wp[r - 1]!).get(ldwBytes).i32Add().set(wp[r]!);
    }
    for (const a of acc) f.v128Zero().set(a);
    for (const s of tail) f.f32Const(0).set(s);
    f.i32Const(0).set(j);
    f.forRange(j, vecBytes, 16, () => {
      for (let r = 0; r < R; r++) f.get(wp[r]!).get(j).i32Add().v128Load().set(wv[r]!);
      for (let t = 0; t < T; t++) {
        f.get(xp[t]!).get(j).i32Add().v128Load().set(xv);
        for (let r = 0; r < R; r++) {
          const a = acc[r * T + t]!;
          f.get(wv[r]!).get(xv).get(a).relaxedMadd().set(a);
        }
      }
    });
    emitTileTail(f, { j, colsBytes, wp, xp, ws, xs, tail }); // the cols % 4 tail, as the plain tiles
    for (let t = 0; t < T; t++) {
      for (let r = 0; r < R; r++) {
        const a = acc[r * T + t]!;
        lanesSum(f, a);
        f.get(tail[r * T + t]!).f32Add().set(sum);
        f.block().get(accumulate).i32Eqz().brIf(0);
        f.get(yp[t]!).f32Load(4 * r).get(sum).f32Add().set(sum);
        f.end();
        f.get(yp[t]!).get(sum).f32Store(4 * r);
      }
      f.get(yp[t]!).i32Const(4 * R).i32Add().set(yp[t]!);
    }
    f.get(w0).get(ldwBytes).i32Const(R).i32Mul().i32Add().set(w0);
  });
  return f;
}

const tileName = (r: number, t: number) => `fma_r${r}_t${t}`;

/** `shared`: the module imports a shared memory (trainer-memory.ts) instead of a private one. */
function emitFmaModule(plan: FmaTilePlan, shared = false): Uint8Array {
  const m = new ModuleBuilder(shared ? TRAINER_MEMORY_IMPORT : PRIVATE_MEMORY_IMPORT);
  plan.rows.forEach((r, index) => {
    const t = index + 1;
    m.addFunction(tileName(r, t), emitFmaTile(r, t));
    if (r !== 1) m.addFunction(tileName(1, t), emitFmaTile(1, t));
  });
  for (const [r, v] of TN_TILES) {
    m.addFunction(tnName(r, v), emitTnTile(r, v));
    m.addFunction(`n${tnName(r, v)}`, emitTnTile(r, v, true));
  }
  return m.emit();
}

let relaxedState: boolean | undefined;

/**
 * Whether this engine compiles relaxed SIMD, turning on V8's `--experimental-wasm-relaxed-simd` first when
 * `setFlags` is given (Node 20: `v8.setFlagsFromString`). Decided once per process.
 */
export function enableRelaxedSimd(setFlags?: (flags: string) => void): boolean {
  if (relaxedState !== undefined) return relaxedState;
  const bytes = emitFmaModule({ rows: [1] });
  try {
    relaxedState = wasmApi !== undefined && wasmApi.validate(bytes);
    if (!relaxedState && setFlags) {
      setFlags('--experimental-wasm-relaxed-simd');
      relaxedState = wasmApi!.validate(bytes);
    }
  } catch {
    relaxedState = false;
  }
  return relaxedState;
}

type TileFn = (w: number, x: number, y: number, rowBegin: number, rowEnd: number, cols: number, ldy: number, ldx: number, ldw: number, accumulate: number) => void;
type TnFn = (a: number, b: number, c: number, rows: number, cols: number, k: number, lda: number, ldb: number, ldc: number, accumulate: number) => void;

/** The FMA tiles instantiated over one memory, with the same driver contract as gemm.ts's GemmKernels.gemm. */
export class FmaGemmKernels {
  private readonly main: TileFn[] = [];
  private readonly single: TileFn[] = [];
  private readonly rowsPerTile: number[] = [];
  private readonly tn = new Map<string, TnFn>();
  private readonly nnTiles = new Map<string, TnFn>();
  readonly maxT: number;

  /** `shared`: `memory` is a shared one (a TrainerMemory's). */
  constructor(memory: WasmMemory, plan: FmaTilePlan = DEFAULT_FMA_PLAN, shared = false) {
    const wasm = requireWasm();
    const exports: WasmExports = new wasm.Instance(new wasm.Module(emitFmaModule(plan, shared)), { env: { memory } }).exports;
    this.maxT = plan.rows.length;
    plan.rows.forEach((r, index) => {
      const t = index + 1;
      this.rowsPerTile[t] = r;
      this.main[t] = exports[tileName(r, t)] as TileFn;
      this.single[t] = exports[tileName(1, t)] as TileFn;
    });
    for (const [r, v] of TN_TILES) {
      this.tn.set(tnName(r, v), exports[tnName(r, v)] as TnFn);
      this.nnTiles.set(tnName(r, v), exports[`n${tnName(r, v)}`] as TnFn);
    }
  }

  /**
   * C [m, n] (+)= Aᵀ B for A [k, m] and B [k, n] row-major (byte addresses; row strides lda, ldb, ldc floats;
   * n a multiple of 4): the TN tiles, no transposes. False when n is not a multiple of 4 (not taken).
   */
  gemmTN(a: number, b: number, c: number, m: number, n: number, k: number, lda: number, ldb: number, ldc: number, accumulate: boolean): boolean {
    if (n % 4 !== 0) return false;
    // the reduction in blocks of TN_KB rows (a column strip of B and a row strip of A stay in L1), each block
    // after the first adding onto C
    for (let t0 = 0; t0 < k; t0 += TN_KB) {
      const kb = t0 + TN_KB < k ? TN_KB : k - t0;
      this.tnBlock(a + 4 * t0 * lda, b + 4 * t0 * ldb, c, m, n, kb, lda, ldb, ldc, accumulate || t0 > 0);
    }
    return true;
  }

  /**
   * C [m, n] (+)= A B for A [m, k] and B [k, n] row-major (byte addresses; strides in floats; n a multiple of 4):
   * the same outer-product tiles with A's rows walked along k. False when n is not a multiple of 4.
   */
  gemmNN(a: number, b: number, c: number, m: number, n: number, k: number, lda: number, ldb: number, ldc: number, accumulate: boolean): boolean {
    if (n % 4 !== 0) return false;
    for (let t0 = 0; t0 < k; t0 += TN_KB) {
      const kb = t0 + TN_KB < k ? TN_KB : k - t0;
      this.tnBlock(a + 4 * t0, b + 4 * t0 * ldb, c, m, n, kb, lda, ldb, ldc, accumulate || t0 > 0, true);
    }
    return true;
  }

  private tnBlock(a: number, b: number, c: number, m: number, n: number, k: number, lda: number, ldb: number, ldc: number, accumulate: boolean, nn = false): void {
    const acc = accumulate ? 1 : 0;
    const m3 = m - (m % 3);
    const n12 = n - (n % 12);
    const tiles = nn ? this.nnTiles : this.tn;
    const t33 = tiles.get(tnName(3, 3))!;
    const t31 = tiles.get(tnName(3, 1))!;
    const t13 = tiles.get(tnName(1, 3))!;
    const t11 = tiles.get(tnName(1, 1))!;
    if (m3 > 0 && n12 > 0) t33(a, b, c, m3, n12, k, lda, ldb, ldc, acc);
    if (m3 > 0 && n > n12) t31(a, b + 4 * n12, c + 4 * n12, m3, n - n12, k, lda, ldb, ldc, acc);
    if (m > m3) {
      const ar = a + 4 * (nn ? m3 * lda : m3);
      const cr = c + 4 * m3 * ldc;
      if (n12 > 0) t13(ar, b, cr, m - m3, n12, k, lda, ldb, ldc, acc);
      if (n > n12) t11(ar, b + 4 * n12, cr + 4 * n12, m - m3, n - n12, k, lda, ldb, ldc, acc);
    }
  }

  /**
   * Y[t, i] = W[i, :cols] · X[t, :cols] for t < n, rowBegin ≤ i < rowEnd (byte addresses; row strides in
   * floats: Y ldy, X ldx, W ldw — X and W default to contiguous rows of cols); accumulate: Y = Y + the sums.
   */
  gemm(w: number, x: number, y: number, n: number, cols: number, ldy: number, rowBegin: number, rowEnd: number, ldx = cols, ldw = cols, accumulate = false): void {
    const acc = accumulate ? 1 : 0;
    const maxT = this.maxT;
    for (let t0 = 0; t0 < n; t0 += maxT) {
      const T = n - t0 < maxT ? n - t0 : maxT;
      const R = this.rowsPerTile[T]!;
      const mainEnd = rowBegin + (((rowEnd - rowBegin) / R) | 0) * R;
      const xt = x + t0 * ldx * 4;
      const yt = y + t0 * ldy * 4;
      if (mainEnd > rowBegin) this.main[T]!(w, xt, yt, rowBegin, mainEnd, cols, ldy, ldx, ldw, acc);
      if (rowEnd > mainEnd) this.single[T]!(w, xt, yt, mainEnd, rowEnd, cols, ldy, ldx, ldw, acc);
    }
  }
}
