import type { BinaryParams } from '@ultrasketch/baselines';
import type { Linear } from '@ultrasketch/model';
import { type RowCall, directCall } from '../threads.js';
import type { ArenaVector, WasmArena } from '../wasm/arena.js';
import { binaryKernel } from './binary.js';
import { byteAlignedRowsOfBytes } from './littlebit.js';
import { compressedWasmAvailable, onesVector, storeBytes, withArena } from './wasm-common.js';
import {
  BLOCKS_DESC,
  DEFAULT_LITTLEBIT_TILING,
  type LittleBitTiling,
  SignTableLinear,
  type WasmLittleBitOptions,
  binaryBlocksName,
  blockStageNs,
  runBlocks,
  signTableFunctions,
  splitDot,
  tableBits,
  widenFunction,
} from './wasm-littlebit.js';

/**
 * The `binary` kernel in WebAssembly: y_r = s_r · Σ_j ±x_j is one ±1 product — the same subset-sum table
 * machinery as the LittleBit kernel (wasm-littlebit.ts), with the row scales s fused into the row sums:
 * tables over x (byte or nibble groups, built with f32x4 arithmetic), one lookup per 8 (4) signs, float64
 * sums for one input vector; four-vector f32x4 tables when n > 1. Rows whose length is not a multiple of 8
 * are re-packed to whole bytes once, at construction. The f16 row scales stay f16 in the arena (the bundle's
 * bytes; issue 12, done-when 4) and are widened into scratch by one wasm call per product (f16tof32: the same
 * float32 numbers the kernel used to store).
 */
class WasmBinaryLinear extends SignTableLinear {
  private readonly bytesAt: number;
  /** The f16 scales (rows, zero-padded to whole 8-half blocks: `scaleCount`), then the sign rows: one allocation. */
  private readonly scalesAt: number;
  private readonly scaleCount: number;
  private readonly widen: (...a: number[]) => void;
  private readonly onesAt: number;
  private readonly fn: Record<string, (...a: number[]) => void>;
  private readonly bits1: 4 | 8;
  private readonly bits4: 4 | 8;

  constructor(arena: WasmArena, p: BinaryParams, tiling: LittleBitTiling) {
    super(arena, p.rows, p.cols, 'binary');
    // the scales first, in whole 8-half blocks (f16tof32 reads nothing past them), then the sign rows (read
    // byte by byte: nothing past a row, so no padding after them)
    this.scaleCount = Math.ceil(p.rows / 8) * 8;
    const signs = byteAlignedRowsOfBytes(p.signs, p.rows, p.cols).subarray(0, p.rows * (this.padIn / 8));
    const all = new Uint8Array(2 * this.scaleCount + signs.length);
    all.set(new Uint8Array(p.scales.buffer, p.scales.byteOffset, 2 * p.rows), 0);
    all.set(signs, 2 * this.scaleCount);
    this.scalesAt = storeBytes(arena, all, 0);
    this.bytesAt = this.scalesAt + 2 * this.scaleCount;
    this.onesAt = onesVector(arena, this.padIn);
    this.fn = signTableFunctions(arena);
    this.widen = widenFunction(this.fn, p.scales);
    this.bits1 = tableBits(tiling, p.rows, p.cols, 1);
    this.bits4 = tableBits(tiling, p.rows, p.cols, 4);
  }

  protected applyBatch(x: Float32Array, y: Float32Array, n: number): void {
    const out = this.outFeatures;
    const inF = this.inFeatures;
    // blocks of 4 tokens, one thread or several (the same calls either way; runBlocks)
    const B = this.bits4;
    const pad = this.padIn;
    const { scalesAt, scaleCount, widen } = this;
    const { x: xv, y: yv } = this.vectorsN.of(x, y);
    runBlocks(
      {
        arena: this.arena,
        views: this.views,
        inF,
        padIn: pad,
        out,
        w4Bytes: 0,
        tableBytes: (pad / B) * (1 << B) * 16, // four-vector tables: f32x4 entries
        ownBytes: 4 * scaleCount,
        run: this.fn[binaryBlocksName(B)]!,
        blockNs: blockStageNs(out, pad, B),
        fill: (i32, sAt) => {
          widen(scalesAt, sAt, scaleCount); // widened once per call
          i32[BLOCKS_DESC.ones] = this.onesAt;
          i32[BLOCKS_DESC.signs] = this.bytesAt;
          i32[BLOCKS_DESC.scales] = sAt;
        },
      },
      xv,
      yv,
      n,
    );
  }

  /**
   * One vector: x (staged into scratch with its padding unless read in place) → y; returns the scratch address y
   * was written to when staged (for `written`). x and y that are views of the arena (the forward's activations)
   * are read / written where they are; x only when its row needs no padding (the tables read whole groups of 8
   * inputs), y always (one float per row). Every wasm call goes through `record` when given (a decode plan: one
   * thread), else runs here, the dot stage split over the arena's pool (splitDot).
   */
  protected oneVector(xv: ArenaVector, yv: ArenaVector, record?: RowCall): number {
    const pad = this.padIn;
    const out = this.outFeatures;
    const B = this.bits1;
    const xBytes = xv.stageBytes(pad);
    const yBytes = yv.stageBytes(out);
    const sBytes = 4 * this.scaleCount;
    const at = this.arena.scratch(sBytes + xBytes + yBytes + (pad / B) * (1 << B) * 4);
    const sAt = at; // the widened scales
    const xAt = xv.read(this.views.refresh().f32, 0, this.inFeatures, at + sBytes, pad - this.inFeatures);
    const yAt = yv.target(0, at + sBytes + xBytes);
    const tAt = at + sBytes + xBytes + yBytes;
    const call = record ?? directCall;
    call(this.widen, this.scalesAt, sAt, this.scaleCount);
    call(B === 8 ? this.fn.build1_8! : this.fn.build1_4!, xAt, this.onesAt, pad / B, tAt);
    splitDot(this.arena, B === 8 ? this.fn.dot1_8! : this.fn.dot1_4!, this.bytesAt, out, pad / 8, tAt, sAt, yAt, 0, B, record);
    return at + sBytes + xBytes;
  }
}

/** The binary kernel is the sign-table machinery of LittleBit's with one ±1 product: the same options. */
export type WasmBinaryOptions = WasmLittleBitOptions;

/** The `binary` kernel in WebAssembly SIMD; the JS `binaryKernel` where wasm SIMD is unavailable. */
export function wasmBinaryKernel(p: BinaryParams, options: WasmBinaryOptions = {}): Linear {
  if (!compressedWasmAvailable()) return binaryKernel(p);
  return withArena(options.arena, (arena) => new WasmBinaryLinear(arena, p, options.tiling ?? DEFAULT_LITTLEBIT_TILING));
}
