import type { VqParams } from '@ultrasketch/baselines';
import { ErrorCodes, UltraSketchError, f16BitsToF32 } from '@ultrasketch/core';
import type { DecodeCall, EmbeddingTable, Linear } from '@ultrasketch/model';
import type { WasmArena } from '../wasm/arena.js';
import { paramsOf, recordCalls } from '../wasm/decode-program.js';
import { ModuleBuilder } from '../wasm/emitter.js';
import { type RowBody, type RowCall, directCall } from '../threads.js';
import { vqKernel } from './vq.js';
import { compressedWasmAvailable, kernelExports, memoryImport, storeBytes, withArena, checkTokenId, lookupRow } from './wasm-common.js';
import { type BlockedLayout, BlockedWasmLinear } from './wasm-blocked.js';
import { KFn, forRange } from './wasm-emit.js';

/**
 * The `vq` kernel (the embedding/classifier form of docs/results.md §11.1b) in WebAssembly SIMD, the same math as
 * the JS `vqKernel`: y_r = Σ_s ⟨codebook[code(r, s)], x_s⟩ (x_s: the s-th sub-vector of `dim` inputs). Per input
 * vector a TABLE of every codebook entry's dot product with every sub-vector is built first (2^bits × cols/dim
 * small dots, f32x4 over 4 entries at a time), then each output row is a sum of cols/dim table lookups, one per
 * stored code. The codes are read AS STORED (packed LSB-first, `bits` each; never expanded): 8 codes are 8·bits
 * bits, whole bytes, so within a group of 8 every code's byte offset and shift are constants of the emitted code
 * (one function per index width) and only the group's start is computed. The codebook (f16, tiny) is held once as
 * f32, transposed ([dim][entries]: the table's f32x4 loads), entries padded to at least 4 (1-bit codes).
 *
 * Sums are float32 (the JS kernel's are float64): per row four accumulators (code j of each group of 8 into j % 4),
 * combined as (a0 + a1) + (a2 + a3), then the last cols/dim % 8 codes in order. Batches (n > 1) run in blocks of up
 * to 4 vectors whose tables are interleaved (entry e of sub-vector s: the 4 vectors' values in one 16-byte slot),
 * so a row's lookups are f32x4 loads and adds for the whole block — lane t is summed exactly as the one-token path
 * sums it: a vector's outputs do not depend on the batch it came in. Rows are split across a ThreadPool through
 * splitRows (each row computed by one thread with the same calls): bit-identical for any thread count.
 */

const MAX_T = 4;
/** Accumulators per row (codes j ≡ a mod 4 of each group of 8): independent add chains. */
const ACC = 4;
/**
 * Single-thread cost per (row, sub-vector) lookup of a block: ~0.4–0.6 ns on the loaded development VM (the 4096×192
 * product of the whole-file bundle: ~75–100 µs for one vector, ~110 µs per block of 4).
 */
const VQ_NS_PER_LOOKUP = 0.5;

/** Codebook entries held per sub-vector: 2^bits, at least 4 (a whole f32x4 of the table). */
const paddedEntries = (bits: number): number => Math.max(4, 1 << bits);

/**
 * vq_table{1,4}(cbT, groups, dim, S, x, dst): for each sub-vector s < S of x (dim floats each) and each codebook
 * entry e < 4·groups: Σ_t cbT[t][e] · x[s·dim + t] in float32 (t ascending, from +0), f32x4 over 4 entries. cbT is
 * [dim][4·groups] f32. `vq_table1` writes entry (s, e) at dst + 4·(s·4·groups + e) (one vector); `vq_table4` at
 * dst + 16·(s·4·groups + e) (lane t of a block's slot: the caller passes dst + 4t for vector t).
 */
function emitTable(interleaved: boolean): KFn {
  const f = new KFn(Array(6).fill('i32'));
  const [cbT, groups, dim, S, x, dst] = [0, 1, 2, 3, 4, 5];
  const s = f.local('i32');
  const g = f.local('i32');
  const t = f.local('i32');
  const pc = f.local('i32');
  const pw = f.local('i32');
  const px = f.local('i32');
  const xs = f.local('i32');
  const dp = f.local('i32');
  const rowB = f.local('i32');
  const acc = f.local('v128');
  f.get(groups).i32Const(4).i32Shl().set(rowB); // bytes of one cbT row (4·groups floats)
  f.get(x).set(xs);
  f.get(dst).set(dp);
  forRange(f, s, S, () => {
    f.get(cbT).set(pc);
    forRange(f, g, groups, () => {
      f.v128Zero().set(acc);
      f.get(pc).set(pw);
      f.get(xs).set(px);
      forRange(f, t, dim, () => {
        f.get(acc).get(pw).v128LoadA(0, 16).get(px).v128Load32Splat().f32x4Mul().f32x4Add().set(acc);
        f.get(pw).get(rowB).i32Add().set(pw);
        f.get(px).i32Const(4).i32Add().set(px);
      });
      if (!interleaved) {
        f.get(dp).get(acc).v128StoreA(0, 16);
        f.get(dp).i32Const(16).i32Add().set(dp);
      } else {
        for (let l = 0; l < 4; l++) f.get(dp).get(acc).f32x4ExtractLane(l).f32Store(16 * l);
        f.get(dp).i32Const(64).i32Add().set(dp);
      }
      f.get(pc).i32Const(16).i32Add().set(pc);
    });
    f.get(xs).get(dim).i32Const(2).i32Shl().i32Add().set(xs);
  });
  return f;
}

/**
 * vq_rows{1,4}_b{k}{_u}(codes, startBit, nRows, S, table, y[, T, yStrideB]): nRows rows of S codes each, the first
 * at bit `startBit` of `codes`; row r's sum of table lookups to y + 4r (one vector, `rows1`), or lanes t < T of
 * the block's sums to y + t·yStrideB + 4r (`rows4`, T ≥ 2). `_u`: rows need not start on a byte (S·k % 8 ≠ 0), the
 * group's shift is added to every code's; without it every group of 8 starts on a byte and shifts are constants.
 * Codes are read with 32-bit loads (up to 3 bytes past the last code: storeBytes pads 16).
 */
function emitRows(k: number, vec: boolean, aligned: boolean): KFn {
  const f = new KFn(Array(vec ? 8 : 6).fill('i32'));
  const [codes, start, nRows, S, table, y, T, yStrideB] = [0, 1, 2, 3, 4, 5, 6, 7];
  const eLog = vec ? 4 : 2; // bytes per table entry: 16 (a block's 4 lanes) or 4
  const sB = paddedEntries(k) << eLog; // table bytes per sub-vector
  const mask = (1 << k) - 1;
  const r = f.local('i32');
  const g = f.local('i32');
  const i = f.local('i32');
  const groups = f.local('i32');
  const tail = f.local('i32');
  const cur = f.local('i32');
  const p = f.local('i32');
  const sh = f.local('i32');
  const tp = f.local('i32');
  const yp = f.local('i32');
  const ty = vec ? 'v128' : 'f32';
  const acc = Array.from({ length: ACC }, () => f.local(ty));
  const load = (offset: number) => (vec ? f.v128LoadA(offset, 16) : f.f32Load(offset));
  const add = () => (vec ? f.f32x4Add() : f.f32Add());
  f.get(S).i32Const(3).i32ShrU().set(groups);
  f.get(S).i32Const(7).i32And().set(tail);
  f.get(start).set(cur);
  f.get(y).set(yp);
  forRange(f, r, nRows, () => {
    f.get(table).set(tp);
    for (const a of acc) (vec ? f.v128Zero() : f.f32Const(0)).set(a);
    forRange(f, g, groups, () => {
      f.get(codes).get(cur).i32Const(3).i32ShrU().i32Add().set(p);
      if (!aligned) f.get(cur).i32Const(7).i32And().set(sh);
      for (let j = 0; j < 8; j++) {
        const bit = j * k;
        const a = acc[j % ACC]!;
        // a += table[tp + j·sB + (code << eLog)], code = (load32(p + bit/8) >> (bit % 8 [+ sh])) & mask
        f.get(a).get(tp).get(p).i32Load(bit >> 3);
        if (!aligned) {
          f.get(sh);
          if (bit & 7) f.i32Const(bit & 7).i32Add();
          f.i32ShrU();
        } else if (bit & 7) f.i32Const(bit & 7).i32ShrU();
        f.i32Const(mask).i32And().i32Const(eLog).i32Shl().i32Add();
        load(j * sB);
        add().set(a);
      }
      f.get(tp).i32Const(8 * sB).i32Add().set(tp);
      f.get(cur).i32Const(8 * k).i32Add().set(cur);
    });
    // (a0 + a1) + (a2 + a3), then the row's last S % 8 codes in order
    const [a0, a1, a2, a3] = acc as [number, number, number, number];
    f.get(a0).get(a1);
    add();
    f.get(a2).get(a3);
    add();
    add().set(a0);
    forRange(f, i, tail, () => {
      f.get(a0).get(tp).get(codes).get(cur).i32Const(3).i32ShrU().i32Add().i32Load();
      f.get(cur).i32Const(7).i32And().i32ShrU().i32Const(mask).i32And().i32Const(eLog).i32Shl().i32Add();
      load(0);
      add().set(a0);
      f.get(tp).i32Const(sB).i32Add().set(tp);
      f.get(cur).i32Const(k).i32Add().set(cur);
    });
    if (!vec) f.get(yp).get(a0).f32Store();
    else {
      for (let t = 0; t < MAX_T; t++) {
        if (t >= 2) f.get(T).i32Const(t).i32GtS().if_();
        f.get(yp);
        if (t > 0) f.get(yStrideB).i32Const(t).i32Mul().i32Add();
        f.get(a0).f32x4ExtractLane(t).f32Store();
        if (t >= 2) f.end();
      }
    }
    f.get(yp).i32Const(4).i32Add().set(yp);
  });
  return f;
}

/**
 * vq_row(codes, first, S, k, dim, cbT, cbRowB, dst): one matrix row decoded — codes first .. first + S − 1 (k bits
 * each) — to dst (S·dim floats, exactly: an embedding row written into the forward's activations). Each value is
 * copied as bits from the f32 codebook (exact f16 → f32 values, the codec's decodeRows).
 */
function emitRowDecode(): KFn {
  const f = new KFn(Array(8).fill('i32'));
  const [codes, first, S, k, dim, cbT, cbRowB, dst] = [0, 1, 2, 3, 4, 5, 6, 7];
  const s = f.local('i32');
  const t = f.local('i32');
  const cur = f.local('i32');
  const mask = f.local('i32');
  const pw = f.local('i32');
  const out = f.local('i32');
  f.i32Const(1).get(k).i32Shl().i32Const(1).i32Sub().set(mask);
  f.get(first).get(k).i32Mul().set(cur);
  f.get(dst).set(out);
  forRange(f, s, S, () => {
    f.get(codes).get(cur).i32Const(3).i32ShrU().i32Add().i32Load();
    f.get(cur).i32Const(7).i32And().i32ShrU().get(mask).i32And().i32Const(2).i32Shl().get(cbT).i32Add().set(pw);
    forRange(f, t, dim, () => {
      f.get(out).get(pw).i32Load().i32Store();
      f.get(out).i32Const(4).i32Add().set(out);
      f.get(pw).get(cbRowB).i32Add().set(pw);
    });
    f.get(cur).get(k).i32Add().set(cur);
  });
  return f;
}

function buildModule(shared: boolean, maxPages: number): ModuleBuilder {
  const m = new ModuleBuilder(memoryImport(shared, maxPages));
  m.addFunction('vq_table1', emitTable(false));
  m.addFunction('vq_table4', emitTable(true));
  for (let k = 1; k <= 8; k++) {
    for (const aligned of [true, false]) {
      const u = aligned ? '' : '_u';
      m.addFunction(`vq_rows1_b${k}${u}`, emitRows(k, false, aligned));
      m.addFunction(`vq_rows4_b${k}${u}`, emitRows(k, true, aligned));
    }
  }
  m.addFunction('vq_row', emitRowDecode());
  return m;
}

/** The module's bytes (for the tests' WebAssembly.validate). */
export function emitVqModule(): Uint8Array {
  return buildModule(false, 65536).emit();
}

type Fn = (...a: number[]) => number | void;

/** Byte addresses of one call's scratch regions: the table(s), then a staged y block and staged x. */
interface Layout extends BlockedLayout {
  tableAt: number;
}

/**
 * The vq kernel, and — its rows decoded in wasm — the embedding table of a tied vq classifier (`lookup`,
 * `lookupCall`: one copy of the codes for both uses).
 */
class WasmVqLinear extends BlockedWasmLinear<Layout> implements EmbeddingTable {
  private readonly bits: number;
  private readonly dim: number;
  /** Sub-vectors (codes) per row, and codebook entries held per sub-vector (≥ 4). */
  private readonly perRow: number;
  private readonly entries: number;
  private readonly codesAt: number;
  private readonly cbAt: number;
  private readonly aligned: boolean;
  private readonly fn: Record<string, Fn>;

  constructor(arena: WasmArena, p: VqParams) {
    super(arena, p.rows, p.cols, 'vq', MAX_T);
    const { rows, cols } = p;
    const { dim, bits } = p.options;
    if (!(bits >= 1 && bits <= 8) || cols % dim !== 0 || p.codebook.length !== (1 << bits) * dim) {
      throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `vq kernel: ${rows}×${cols} with dim ${dim}, ${bits} bits and a codebook of ${p.codebook.length} values`);
    }
    this.bits = bits;
    this.dim = dim;
    this.perRow = cols / dim;
    this.entries = paddedEntries(bits);
    this.aligned = (this.perRow * bits) % 8 === 0;
    // the codes as stored; the codebook once as f32, transposed: cbT[t][e] (entries past 2^bits: 0)
    this.codesAt = storeBytes(arena, p.codes);
    const cbT = new Float32Array(dim * this.entries);
    for (let e = 0; e < 1 << bits; e++) for (let t = 0; t < dim; t++) cbT[t * this.entries + e] = f16BitsToF32(p.codebook[e * dim + t]!);
    this.cbAt = storeBytes(arena, cbT);
    this.fn = kernelExports(arena, 'vq', buildModule) as Record<string, Fn>;
  }

  lookup(token: number, out: Float32Array, offset: number): void {
    const cols = this.inFeatures;
    checkTokenId(token, this.outFeatures);
    lookupRow(this.arena, this.views, out, offset, cols, cols * 4, (dst) => this.rowDecode(directCall, token * this.perRow, dst));
  }

  /**
   * `lookup(token, out, 0)` as one call for a decode plan: vq_row of row `token` (its first code index
   * token·perRow, token-dependent) straight into `out`, which must be a view of this arena; undefined otherwise.
   */
  lookupCall(out: Float32Array): DecodeCall | undefined {
    if (out.length < this.inFeatures || !this.arena.holds(out)) return undefined;
    const call = recordCalls((c) => this.rowDecode(c, 0, out.byteOffset))[0]!;
    const fn = call.fn;
    // the first code index is the only argument that depends on the token
    return { fn, params: paramsOf(fn), args: call.args.map((a, i) => (i === 1 ? { base: 0, perToken: this.perRow } : a)) };
  }

  /** The row decode's call (first code index `first`, to `dst`): the body of lookup and lookupCall. */
  private rowDecode(call: RowCall, first: number, dst: number): void {
    call(this.fn.vq_row!, this.codesAt, first, this.perRow, this.bits, this.dim, this.cbAt, this.entries * 4, dst);
  }

  /** Scratch for blocks of up to TT vectors (their tables), plus `yBytes` / `stageBytes` for a staged y / x. */
  protected scratchLayout(TT: number, yBytes: number, stageBytes: number): Layout {
    const tableBytes = this.perRow * this.entries * (TT > 1 ? 16 : 4);
    const tableAt = this.arena.scratch(tableBytes + yBytes + stageBytes);
    return { tableAt, yAt: tableAt + tableBytes, stageAt: tableAt + tableBytes + yBytes };
  }

  /** The serial calls: each block's tables (vq_table1, or vq_table4 per vector); the row-parallel sums read them. */
  protected run(
    call: RowCall,
    n: number,
    xIn: number,
    s: Layout,
    yTarget: (t0: number) => number,
    rowsOf: (work: number, body: RowBody) => void,
    written: (t0: number, T: number) => void,
  ): void {
    const { outFeatures: rows, inFeatures: cols, perRow: S, bits: k, fn } = this;
    const groups = this.entries / 4;
    const u = this.aligned ? '' : '_u';
    for (let t0 = 0; t0 < n; t0 += MAX_T) {
      const T = Math.min(MAX_T, n - t0);
      if (T === 1) call(fn.vq_table1!, this.cbAt, groups, this.dim, S, xIn + 4 * t0 * cols, s.tableAt);
      else for (let t = 0; t < T; t++) call(fn.vq_table4!, this.cbAt, groups, this.dim, S, xIn + 4 * (t0 + t) * cols, s.tableAt + 4 * t);
      const yRound = yTarget(t0);
      // rows are independent (row r: its codes from bit r·S·k, y + 4r): split across threads
      const rowsFn = fn[`vq_rows${T === 1 ? 1 : 4}_b${k}${u}`]!;
      rowsOf(rows * S * VQ_NS_PER_LOOKUP, (c, r0, r1) => {
        if (T === 1) c(rowsFn, this.codesAt, r0 * S * k, r1 - r0, S, s.tableAt, yRound + 4 * r0);
        else c(rowsFn, this.codesAt, r0 * S * k, r1 - r0, S, s.tableAt, yRound + 4 * r0, T, rows * 4);
      });
      written(t0, T);
    }
  }
}

/** Whether a kernel built by `wasmVqKernel` can also serve as the embedding table (its rows decoded in wasm). */
export function asVqEmbeddingTable(kernel: Linear): EmbeddingTable | undefined {
  return kernel instanceof WasmVqLinear ? kernel : undefined;
}

/** The `vq` kernel in WebAssembly SIMD; no wasm SIMD: the JS `vqKernel`. */
export function wasmVqKernel(p: VqParams, options: { arena?: WasmArena } = {}): Linear {
  if (!compressedWasmAvailable()) return vqKernel(p);
  return withArena(options.arena, (arena) => new WasmVqLinear(arena, p));
}
