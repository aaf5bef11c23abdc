/**
 * `WasmDenseLinear`: the model's `Linear` interface over a dense float32 weight held in a `WasmArena`, computed
 * by the f32x4 kernels of `gemm.ts`. `wasmForwardParts` builds a whole model's `ForwardParts` from it, so the
 * reference forward pass (`LlamaForward`) runs unchanged on the fast kernels.
 */
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type DecodeCall, type EmbeddingTable, type ForwardParts, type Linear, type ModelWeights, denseForwardParts } from '@ultrasketch/model';
import { splitRows } from '../threads.js';
import { ArenaVector, ArenaVectorPair, WasmArena, type WasmArenaOptions } from './arena.js';
import { WasmAttention } from './attention.js';
import { paramsOf, recordCalls } from './decode-program.js';

/** Single-thread cost of the dense f32x4 kernel per multiply-add (~12–19 GMAC/s here, results §2). */
export const DENSE_NS_PER_MAC = 0.07;

export class WasmDenseLinear implements Linear, EmbeddingTable {
  /** Address of W [out, in] in the arena. */
  readonly weightAt: number;
  /** x and y of the last call, in place or staged (ArenaVectorPair: decided once per pair of arrays). */
  private readonly vectors: ArenaVectorPair;

  /** Copies `weight` ([out, in] row-major) into `arena`. */
  constructor(
    readonly arena: WasmArena,
    weight: Float32Array,
    readonly outFeatures: number,
    readonly inFeatures: number,
  ) {
    if (!Number.isInteger(outFeatures) || !Number.isInteger(inFeatures) || outFeatures < 1 || inFeatures < 1) {
      throw new UltraSketchError(ErrorCodes.BAD_DIMENSION, `WasmDenseLinear: bad shape ${outFeatures}×${inFeatures}`);
    }
    if (weight.length !== outFeatures * inFeatures) {
      throw new UltraSketchError(
        ErrorCodes.SHAPE_MISMATCH,
        `WasmDenseLinear: weight has ${weight.length} values, expected ${outFeatures}×${inFeatures}`,
      );
    }
    this.weightAt = arena.storeF32(weight);
    this.vectors = new ArenaVectorPair(arena);
  }

  /**
   * Row `token` of W into out[offset ..] (a tied classifier is also the embedding table: one copy of the
   * matrix, in the arena).
   */
  lookup(token: number, out: Float32Array, offset: number): void {
    if (!Number.isInteger(token) || token < 0 || token >= this.outFeatures) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `token id ${token} is outside 0..${this.outFeatures - 1}`);
    }
    const at = this.weightAt / 4 + token * this.inFeatures;
    out.set(this.arena.f32.subarray(at, at + this.inFeatures), offset);
  }

  /** Y[t, :] = W · X[t, :] for t < n; X is [n, in], Y is [n, out] (both may be longer than needed). */
  apply(x: Float32Array, y: Float32Array, n: number): void {
    const inF = this.inFeatures;
    const outF = this.outFeatures;
    const xLen = n * inF;
    const yLen = n * outF;
    if (!(n >= 1) || x.length < xLen || y.length < yLen) {
      throw new UltraSketchError(
        ErrorCodes.SHAPE_MISMATCH,
        `WasmDenseLinear.apply: n=${n}, x has ${x.length} values (need ${xLen}), y has ${y.length} (need ${yLen})`,
      );
    }
    const arena = this.arena;
    // x and y that are views of this arena's memory (the forward's activations and logits, see WasmAttention's
    // arena) are read and written in place (ArenaVector); only the others are copied through scratch — a serial
    // cost a thread pool cannot split
    const { x: xv, y: yv } = this.vectors.of(x, y);
    const xBytes = xv.stageBytes(xLen);
    const need = xBytes + yv.stageBytes(yLen);
    let at = 0;
    if (need > 0) {
      const rowBytes = (inF + outF) * 4;
      at = arena.scratch(need, Math.min(need, rowBytes + 16)); // may grow the memory: read arena.f32 after
      if (arena.scratchSize < need) {
        this.applyInChunks(x, y, n, at, Math.floor((arena.scratchSize - 16) / rowBytes));
        return;
      }
    }
    const xAt = xv.read(arena.f32, 0, xLen, at);
    const yAt = yv.target(0, at + xBytes);
    const k = arena.kernels;
    const w = this.weightAt;
    if (arena.threads === undefined) k.gemm(w, xAt, yAt, n, inF, outF, 0, outF); // one thread: no closure per call
    else splitRows(arena, outF, n * inF * outF * DENSE_NS_PER_MAC, k.rowAlign, (call, r0, r1) => k.gemmCalls(call, w, xAt, yAt, n, inF, outF, r0, r1));
    yv.written(arena.f32, 0, yLen, at + xBytes);
  }

  /**
   * The calls of `apply(x, y, 1)` on one thread, for a decode plan: the same tile calls `gemm` makes for one
   * token, when x and y are read and written in place; undefined otherwise.
   */
  decodeCalls(x: Float32Array, y: Float32Array): DecodeCall[] | undefined {
    const arena = this.arena;
    const inF = this.inFeatures;
    const outF = this.outFeatures;
    if (x.length < inF || y.length < outF) return undefined;
    if (!ArenaVector.bothInPlace(arena, x, y)) return undefined;
    return recordCalls((call) => arena.kernels.gemmCalls(call, this.weightAt, x.byteOffset, y.byteOffset, 1, inF, outF, 0, outF));
  }

  /** `lookup(token, out, 0)` as one call (copy_bytes of row `token`), for a decode plan; out must be in this arena. */
  lookupCall(out: Float32Array): DecodeCall | undefined {
    if (out.length < this.inFeatures || !this.arena.holds(out)) return undefined;
    const rowBytes = this.inFeatures * 4;
    const copy = this.arena.copyBytes;
    return { fn: copy, params: paramsOf(copy), args: [out.byteOffset, { base: this.weightAt, perToken: rowBytes }, rowBytes] };
  }

  /** When the arena cannot hold the whole batch (a nearly full 4 GiB memory): `rows` rows at a time. */
  private applyInChunks(x: Float32Array, y: Float32Array, n: number, at: number, rows: number): void {
    const inF = this.inFeatures;
    const outF = this.outFeatures;
    const yAt = at + Math.ceil((rows * inF) / 4) * 16;
    const heap = this.arena.f32;
    for (let t0 = 0; t0 < n; t0 += rows) {
      const m = Math.min(rows, n - t0);
      heap.set(x.subarray(t0 * inF, (t0 + m) * inF), at / 4);
      this.arena.kernels.gemm(this.weightAt, at, yAt, m, inF, outF, 0, outF);
      y.set(heap.subarray(yAt / 4, (yAt / 4) + m * outF), t0 * outF);
    }
  }
}

export interface WasmForwardParts extends ForwardParts {
  /** The arenas holding the weights (usually one; a model beyond 4 GiB of f32 needs several). */
  arenas: WasmArena[];
}

export interface WasmPartsOptions {
  /** Options for each arena created (shared memory, tiling, a maximum size). */
  arena?: WasmArenaOptions;
  /** false: keep the reference JS attention (default: WebAssembly SIMD attention when headDim % 4 == 0). */
  attention?: boolean;
}

/**
 * Like `denseForwardParts` (model package), but every linear — the classifier included, tied or not — is a
 * `WasmDenseLinear`. Weights are copied into wasm memory once; norms and the embedding table stay in JS
 * (the forward reads them directly). A tied classifier's copy in the arena is also the embedding table.
 */
export function wasmForwardParts(weights: ModelWeights, options: WasmPartsOptions = {}): WasmForwardParts {
  // denseForwardParts validates the weights; sizing the arena first only reads their lengths.
  const c = weights.config;
  const arenas: WasmArena[] = [];
  // Reserve the whole model up front (one grow), capped at the arena's maximum.
  let total = 0;
  for (const t of weights.tensors.values()) if (t.shape.length === 2) total += t.data.byteLength + 16;
  if (c.tiedClassifier) total += c.vocabSize * c.dim * 4 + 16;
  const newArena = () => {
    const a = new WasmArena({ initialBytes: Math.min(total + (4 << 20), 1 << 30), ...options.arena });
    arenas.push(a);
    return a;
  };
  let arena = newArena();
  const linear = (data: Float32Array, out: number, inF: number): WasmDenseLinear => {
    // Leave room for the activations of a batch of up to 64 rows; bigger batches run in chunks if need be.
    const headroom = 64 * (out + inF) * 4 + 64;
    if (!arena.fits(data.byteLength + 16 + headroom) && arena.bytesUsed > 16) arena = newArena();
    return new WasmDenseLinear(arena, data, out, inF);
  };
  const parts = denseForwardParts(weights, linear);
  // Tied: the classifier's copy in the arena serves the token lookups too, so the session references no JS copy
  // of the matrix (weights held once).
  if (c.tiedClassifier && parts.classifier instanceof WasmDenseLinear) parts.embedding = parts.classifier;
  // attention over a KV cache in wasm memory (SIMD), when the head width allows
  // (over the arena when it is the only one and shared: the forward's activations then live in the memory the
  // products read, so no product copies its input or output)
  if (options.attention !== false && WasmAttention.supports(c)) {
    parts.attention = new WasmAttention(c, arenas.length === 1 && arena.shared ? arena : undefined);
  }
  return { ...parts, arenas };
}
