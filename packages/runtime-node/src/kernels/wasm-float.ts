import type { FloatParams } from '@ultrasketch/baselines';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { DecodeCall, EmbeddingTable, Linear } from '@ultrasketch/model';
import type { WasmArena } from '../wasm/arena.js';
import { paramsOf, recordCalls } from '../wasm/decode-program.js';
import { ModuleBuilder, lanesSum } from '../wasm/emitter.js';
import { WasmDenseLinear } from '../wasm/linear.js';
import { floatKernel } from './float.js';
import { ArenaVector, ArenaVectorPair, HeapViews, compressedWasmAvailable, kernelExports, memoryImport, storeBytes, withArena, checkApplyShape, checkTokenId, lookupRow } from './wasm-common.js';
import { KFn, forRange, whileLtU } from './wasm-emit.js';
import { type RowCall, splitRows } from '../threads.js';

/** Single-thread cost of the f16 kernel per multiply-add (a little slower than dense f32, docs/kernels.md). */
const F16_NS_PER_MAC = 0.08;

/**
 * The `float` codec in WebAssembly SIMD. f32 storage runs the dense f32x4 kernel (`WasmDenseLinear`) over one
 * copy in the arena. f16 storage — the default for a bundle's embedding/tied classifier — is read AS STORED:
 * y = W x with every 8 weights loaded as 16 bytes and converted to two f32x4 in registers, never decoded to
 * an f32 matrix (wasm has no f16 lanes in Node 20, so the conversion is integer bit manipulation):
 *
 *     e = (sign-extended h << 13) & 0x8fffe000     sign to bit 31, exponent+mantissa to bits 27..13
 *     w = (e as f32) · 2^112                      rebias the exponent by 127 − 15 = 112
 *
 * The multiply by a power of two is exact for every finite f16: normals land on the right exponent, f16
 * subnormals (exponent 0) are f32 subnormals before the multiply and come out normalised — the same value
 * as `f16BitsToF32`'s mant·2⁻²⁴ — and ±0 stay ±0. Only Inf/NaN (exponent 31) would come out finite-looking
 * (exponent 31 + 112 → 143 → ×2^112 = Inf for NaN too), so a matrix holding any exponent-31 value gets the
 * variant with a fix-up (exponent bits set to all ones before the multiply: Inf stays Inf, NaN stays NaN);
 * real weights never do, and the finite variant saves four ops per 4 weights.
 *
 * Rows are padded to whole 8-weight chunks only when cols % 8 ≠ 0 (zero weights meet zero inputs); otherwise
 * the arena holds exactly the stored bytes. Up to 4 input vectors share every converted chunk (prefill).
 */

const MAX_T = 4;
/** Tokens copied into scratch per round (bounds scratch for long prefills with n × vocab outputs). */
const TOKENS_PER_ROUND = 64;

/**
 * f16mv_t{T}_r{R}{_fix}(w, groups, chunks, x, xStrideB, y, yStrideB): for T input vectors at x + t·xStrideB
 * (chunks·8 floats each, zero-padded), y[t·yStrideB + 4r] = Σ_j w_rj x_tj for the groups·R rows of w
 * (rows × chunks × 16 bytes). R rows at a time share each input load and give the CPU R·T independent
 * accumulation chains (one row alone is bound by the latency of its adds); every row's sum is formed in the
 * same order whatever R, so the result does not depend on the tiling.
 */
function emitF16Mv(T: number, R: number, fix: boolean): KFn {
  const f = new KFn(Array(7).fill('i32'));
  const [w, groups, chunks, x, xStrideB, y, yStrideB] = [0, 1, 2, 3, 4, 5, 6];
  const g = f.local('i32');
  const c = f.local('i32');
  const wb = f.local('i32');
  const rowBytes = f.local('i32');
  const yp = f.local('i32');
  const wp = Array.from({ length: R }, () => f.local('i32'));
  const px = Array.from({ length: T }, () => f.local('i32'));
  // one token: two accumulators per row (low and high 4 weights of a chunk); several tokens: one per row and
  // token (both halves add into it), so that 2 rows × 4 tokens still fit the 16 vector registers
  const H = T === 1 ? 2 : 1;
  const acc = Array.from({ length: H * T * R }, () => f.local('v128')); // acc[(k·T + t)·H + half % H]
  const v = f.local('v128');
  const e = f.local('v128');
  const fv = f.local('v128');
  // constants in locals, set once per call rather than at every use in the loop
  const kMask = f.local('v128');
  const kScale = f.local('v128');
  const kExp = f.local('v128');
  const kFix = f.local('v128');
  f.v128ConstI32(0x8fffe000 | 0).set(kMask);
  f.v128ConstF32(2 ** 112).set(kScale);
  if (fix) {
    f.v128ConstI32(0x0f800000).set(kExp);
    f.v128ConstI32(0x70000000).set(kFix);
  }
  f.get(chunks).i32Const(4).i32Shl().set(rowBytes);
  f.get(w).set(wb);
  f.get(y).set(yp);
  forRange(f, g, groups, () => {
    for (const a of acc) f.v128Zero().set(a);
    for (let k = 0; k < R; k++) {
      f.get(wb);
      if (k > 0) f.get(rowBytes).i32Const(k).i32Mul().i32Add();
      f.set(wp[k]!);
    }
    for (let t = 0; t < T; t++) {
      f.get(x);
      if (t > 0) f.get(xStrideB).i32Const(t).i32Mul().i32Add();
      f.set(px[t]!);
    }
    forRange(f, c, chunks, () => {
      for (let k = 0; k < R; k++) {
        f.get(wp[k]!).v128LoadA(0, 2).set(v);
        for (let half = 0; half < 2; half++) {
          f.get(v);
          if (half === 0) f.i32x4ExtendLowI16x8S();
          else f.i32x4ExtendHighI16x8S();
          f.i32Const(13).i32x4Shl().get(kMask).v128And().set(e);
          if (fix) {
            // exponent 31 (Inf/NaN): raise bits 30..28 too, so the f32 exponent is 255 before the multiply
            f.get(e).get(e).get(kExp).v128And().get(kExp).i32x4Eq();
            f.get(kFix).v128And().v128Or().set(e);
          }
          f.get(e).get(kScale).f32x4Mul().set(fv);
          for (let t = 0; t < T; t++) {
            const a = acc[(k * T + t) * H + (half % H)]!;
            f.get(a).get(fv).get(px[t]!).v128LoadA(16 * half, 16).f32x4Mul().f32x4Add().set(a);
          }
        }
        f.get(wp[k]!).i32Const(16).i32Add().set(wp[k]!);
      }
      for (const p of px) f.get(p).i32Const(32).i32Add().set(p);
    });
    for (let k = 0; k < R; k++) {
      for (let t = 0; t < T; t++) {
        const s = acc[(k * T + t) * H]!;
        f.get(yp);
        if (t > 0) f.get(yStrideB).i32Const(t).i32Mul().i32Add();
        if (H === 2) f.get(s).get(acc[(k * T + t) * H + 1]!).f32x4Add().set(s);
        lanesSum(f, s);
        f.f32Store(4 * k);
      }
    }
    f.get(yp).i32Const(4 * R).i32Add().set(yp);
    f.get(wb).get(rowBytes).i32Const(R).i32Mul().i32Add().set(wb);
  });
  return f;
}

/** Rows per tile for a block of T input vectors (at most 8 accumulators, so they stay in registers). */
export const rowsPerTile = (T: number): number => (T === 1 ? 4 : Math.max(1, Math.floor(8 / T)));

/**
 * f16tof32(src, dst, count): the same conversion over an array, 8 at a time; exactly `count` floats are written
 * (a last block of fewer than 8 is converted whole and stored lane by lane, as integers: the same bits), so it
 * can write an embedding row straight into the forward's activations. It reads whole 16-byte blocks: up to 7
 * halves past `count` (the row padding of the weights, or storeBytes' padding). Exported: the sign-table kernels
 * (wasm-littlebit.ts, wasm-binary.ts) keep their f16 scales as stored and widen them per call with it.
 * `finite`: for arrays without Inf/NaN (exponent 31), skipping their fix-up — the same bits for every finite half.
 */
export function emitF16ToF32(finite = false): KFn {
  const f = new KFn(['i32', 'i32', 'i32']);
  const [src, dst, count] = [0, 1, 2];
  const i = f.local('i32');
  const full = f.local('i32');
  const rem = f.local('i32');
  const v = f.local('v128');
  const e = f.local('v128');
  const out = [f.local('v128'), f.local('v128')];
  /** The 8 halves at src + 2i → out[0] (low 4) and out[1] (high 4). */
  const convert8 = () => {
    f.get(src).get(i).i32Const(1).i32Shl().i32Add().v128LoadA(0, 2).set(v);
    for (let half = 0; half < 2; half++) {
      f.get(v);
      if (half === 0) f.i32x4ExtendLowI16x8S();
      else f.i32x4ExtendHighI16x8S();
      f.i32Const(13).i32x4Shl().v128ConstI32(0x8fffe000 | 0).v128And();
      if (!finite) {
        // exponent 31 (Inf/NaN) → all ones after the scaling (a finite-only variant skips this: no other bits change)
        f.set(e);
        f.get(e).get(e).v128ConstI32(0x0f800000).v128And().v128ConstI32(0x0f800000).i32x4Eq();
        f.v128ConstI32(0x70000000).v128And().v128Or();
      }
      f.v128ConstF32(2 ** 112).f32x4Mul().set(out[half]!);
    }
  };
  f.get(count).i32Const(-8).i32And().set(full);
  whileLtU(f, i, full, 8, () => {
    convert8();
    for (let half = 0; half < 2; half++) f.get(dst).get(i).i32Const(2).i32Shl().i32Add().get(out[half]!).v128StoreA(16 * half);
  });
  // the last count % 8 (i = full here): lane by lane
  f.get(count).get(full).i32Sub().tee(rem).if_();
  convert8();
  for (let l = 0; l < 7; l++) {
    f.get(rem).i32Const(l).i32GtS().if_();
    f.get(dst).get(i).i32Const(2).i32Shl().i32Add().get(out[l >> 2]!).i32x4ExtractLane(l & 3).i32Store(4 * l);
    f.end();
  }
  f.end();
  return f;
}

function buildModule(shared: boolean, maxPages: number): ModuleBuilder {
  const m = new ModuleBuilder(memoryImport(shared, maxPages));
  for (let T = 1; T <= MAX_T; T++) {
    for (const R of new Set([rowsPerTile(T), 1])) {
      m.addFunction(`f16mv_t${T}_r${R}`, emitF16Mv(T, R, false));
      m.addFunction(`f16mv_t${T}_r${R}_fix`, emitF16Mv(T, R, true));
    }
  }
  m.addFunction('f16tof32', emitF16ToF32());
  return m;
}

/** The module's bytes (for the tests' WebAssembly.validate). */
export function emitFloatModule(): Uint8Array {
  return buildModule(false, 65536).emit();
}

type Fn = (...a: number[]) => number | void;

/** Whether any f16 value has exponent 31 (Inf or NaN). */
function hasNonFinite(data: Uint16Array): boolean {
  for (let i = 0; i < data.length; i++) if ((data[i]! & 0x7c00) === 0x7c00) return true;
  return false;
}

/**
 * The f16 kernel is also the embedding table of a tied model: `lookup` converts one stored row in wasm (the
 * same exact conversion, f16tof32), so the token embedding needs neither a JS decode loop nor a second copy.
 * For a decode plan, `decodeCalls` records the tile calls of `apply(x, y, 1)` and `lookupCall` the row's
 * f16tof32 call with the token's row address (issue 12).
 */
class WasmF16Linear implements Linear, EmbeddingTable {
  readonly outFeatures: number;
  readonly inFeatures: number;
  /** 8-weight chunks per row (cols rounded up to 8). */
  private readonly chunks: number;
  private readonly weightAt: number;
  private readonly suffix: '' | '_fix';
  private readonly fn: Record<string, Fn>;
  private readonly views: HeapViews;
  /** x and y of the last call (x in place when rows need no padding, y when whole 16-byte groups). */
  private readonly vectors: ArenaVectorPair;

  constructor(
    readonly arena: WasmArena,
    p: FloatParams & { data: Uint16Array },
  ) {
    const { rows, cols, data } = p;
    if (data.length !== rows * cols) {
      throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `float kernel: ${data.length} values for ${rows}×${cols}`);
    }
    this.outFeatures = rows;
    this.inFeatures = cols;
    this.chunks = Math.ceil(cols / 8);
    this.views = new HeapViews(arena);
    this.vectors = new ArenaVectorPair(arena, this.chunks * 8 === cols, rows % 4 === 0);
    const pad = this.chunks * 8;
    let bytes: Uint16Array = data;
    if (pad !== cols) {
      // one padded copy in the arena instead of the stored layout (the only copy the kernel holds)
      bytes = new Uint16Array(rows * pad);
      for (let r = 0; r < rows; r++) bytes.set(data.subarray(r * cols, (r + 1) * cols), r * pad);
    }
    this.weightAt = storeBytes(arena, bytes);
    this.suffix = hasNonFinite(data) ? '_fix' : '';
    this.fn = kernelExports(arena, 'float-f16', buildModule) as Record<string, Fn>;
  }

  lookup(token: number, out: Float32Array, offset: number): void {
    const cols = this.inFeatures;
    checkTokenId(token, this.outFeatures);
    const src = this.weightAt + token * this.rowBytes;
    // f16tof32 converts whole 8-value chunks: scratch for the padded row
    lookupRow(this.arena, this.views, out, offset, cols, this.chunks * 32, (dst) => this.fn.f16tof32!(src, dst, cols));
  }

  /**
   * `lookup(token, out, 0)` as one call for a decode plan: f16tof32 of row `token` (its address token-dependent)
   * straight into `out`, which must be a view of this arena; undefined otherwise.
   */
  lookupCall(out: Float32Array): DecodeCall | undefined {
    const cols = this.inFeatures;
    if (out.length < cols || !this.arena.holds(out)) return undefined;
    const fn = this.fn.f16tof32!;
    return { fn, params: paramsOf(fn), args: [{ base: this.weightAt, perToken: this.rowBytes }, out.byteOffset, cols] };
  }

  /** Bytes of one stored (padded) row: 16 per 8-weight chunk. */
  private get rowBytes(): number {
    return this.chunks * 16;
  }

  apply(x: Float32Array, y: Float32Array, n: number): void {
    const rows = this.outFeatures;
    const cols = this.inFeatures;
    checkApplyShape('float', x, y, n, rows, cols);
    const pad = this.chunks * 8;
    const G = Math.min(n, TOKENS_PER_ROUND);
    // inputs/outputs that are views of the arena (the forward's activations and logits when the attention kernel
    // lives in it) are read/written where they are: no copy (rows whole 16-byte groups, inputs unpadded)
    const { x: xv, y: yv } = this.vectors.of(x, y);
    const xBytes = xv.stageBytes(G * pad);
    const yBytes = yv.stageBytes(G * rows);
    const at = this.arena.scratch(xBytes + yBytes);
    const f32 = this.views.refresh().f32;
    const x4 = at / 4;
    const y4 = (at + xBytes) / 4;
    for (let g0 = 0; g0 < n; g0 += G) {
      const m = Math.min(G, n - g0);
      let xRound = x4 * 4;
      if (pad === cols) xRound = xv.read(f32, g0 * cols, m * cols, x4 * 4);
      else for (let t = 0; t < m; t++) xv.read(f32, (g0 + t) * cols, cols, (x4 + t * pad) * 4, pad - cols);
      const yRound = yv.target(g0 * rows, y4 * 4);
      // Rows split across threads at multiples of 4 (every tile height divides 4): each row is computed by one
      // thread with the same tile as with one thread.
      splitRows(this.arena, rows, m * rows * cols * F16_NS_PER_MAC, 4, (call, r0, r1) => this.tiles(call, m, xRound, yRound, r0, r1));
      yv.written(f32, g0 * rows, m * rows, y4 * 4);
    }
  }

  /**
   * `apply(x, y, 1)`'s wasm calls on one thread (the same tile calls, arguments and order), for a decode plan;
   * undefined where that call would do more than its wasm calls: x or y staged through scratch (not views of the
   * arena, x needing padding: cols % 8 ≠ 0, y not whole 16-byte groups: rows % 4 ≠ 0, or y overlapping x). A
   * thread pool on the arena does not matter: the plan runs on one thread, and a split gives the same bits.
   */
  decodeCalls(x: Float32Array, y: Float32Array): DecodeCall[] | undefined {
    const { arena, inFeatures: cols, outFeatures: rows } = this;
    if (x.length < cols || y.length < rows) return undefined;
    if (!new ArenaVector(arena, x, this.chunks * 8 === cols).inPlace || !ArenaVector.output(arena, y, x, rows % 4 === 0).inPlace) return undefined;
    return recordCalls((call) => this.tiles(call, 1, x.byteOffset, y.byteOffset, 0, rows));
  }

  /**
   * Rows [r0, r1) for `m` vectors (byte addresses: x rows of chunks·8 floats, y rows of `rows` floats apart): the
   * body apply splits over threads (splitRows) and decodeCalls records. Blocks of up to MAX_T vectors; in each,
   * whole tiles of R rows, then the last rows % R one at a time.
   */
  private tiles(call: RowCall, m: number, xRound: number, yRound: number, r0: number, r1: number): void {
    const rows = this.outFeatures;
    const pad = this.chunks * 8;
    for (let t0 = 0; t0 < m; t0 += MAX_T) {
      const T = Math.min(MAX_T, m - t0);
      const xAt = xRound + t0 * pad * 4;
      const yBlock = yRound + t0 * rows * 4;
      const R = rowsPerTile(T);
      const tiled = r0 + (r1 - r0) - ((r1 - r0) % R);
      if (tiled > r0) call(this.fn[`f16mv_t${T}_r${R}${this.suffix}`]!, this.weightAt + r0 * this.rowBytes, (tiled - r0) / R, this.chunks, xAt, pad * 4, yBlock + r0 * 4, rows * 4);
      if (tiled < r1) call(this.fn[`f16mv_t${T}_r1${this.suffix}`]!, this.weightAt + tiled * this.rowBytes, r1 - tiled, this.chunks, xAt, pad * 4, yBlock + tiled * 4, rows * 4);
    }
  }
}

/**
 * Convert f16 bits to float32 with the kernels' in-register conversion (for the tests: it must agree with
 * `f16BitsToF32` on all 65536 patterns). Uses a private arena.
 */
export function wasmF16ToF32(arena: WasmArena, bits: Uint16Array): Float32Array {
  const fn = kernelExports(arena, 'float-f16', buildModule) as Record<string, Fn>;
  const src = storeBytes(arena, bits, 32);
  const dst = arena.scratch(Math.ceil(bits.length / 4) * 16);
  fn.f16tof32!(src, dst, bits.length);
  return new Float32Array(arena.memory.buffer, dst, bits.length).slice();
}

/** Whether a kernel built by `wasmFloatKernel` can also serve as the embedding table (f16 storage in wasm). */
export function asEmbeddingTable(kernel: Linear): EmbeddingTable | undefined {
  return kernel instanceof WasmF16Linear ? kernel : undefined;
}

export interface WasmFloatOptions {
  arena?: WasmArena;
}

/**
 * The `float` kernel in WebAssembly SIMD: f16 storage through the fused f16 kernel above, f32 storage through
 * the dense f32x4 kernel (one copy in the arena). No wasm SIMD: the JS `floatKernel`.
 */
export function wasmFloatKernel(p: FloatParams, options: WasmFloatOptions = {}): Linear {
  if (!compressedWasmAvailable()) return floatKernel(p);
  if (p.data instanceof Float32Array) {
    const data = p.data;
    return withArena(options.arena, (arena) => new WasmDenseLinear(arena, data, p.rows, p.cols));
  }
  return withArena(options.arena, (arena) => new WasmF16Linear(arena, p as FloatParams & { data: Uint16Array }));
}
