import {
  type Codec,
  type CodecContext,
  type CodecParams,
  ErrorCodes,
  UltraSketchError,
  getCodec,
} from '@ultrasketch/core';
import { floatCodec } from '@ultrasketch/baselines';
import { type FloatArray, allocFloat32 } from './matmul.js';
import { addRows } from './ops.js';

/**
 * A trainable tensor as the optimizer sees it: values, their gradient (same length), and whether AdamW's
 * decoupled weight decay applies to it.
 */
export interface Param<T extends FloatArray = Float32Array> {
  /** Unique across the trainer (checkpoint tensors are keyed by it). */
  readonly name: string;
  readonly data: T;
  readonly grad: T;
  /** Apply weight decay (default true; norms and scales usually false). */
  readonly decay?: boolean;
  /** This parameter's learning rate ÷ the schedule's (default 1): e.g. a trained embedding's lower rate. */
  readonly lrScale?: number;
}

/**
 * What a linear layer is made of during training. The graph asks for the effective weight Ŵ once per
 * forward pass, computes ∂L/∂Ŵ densely in the backward pass and hands it back; the provider maps it onto
 * whatever it trains (the full-precision weights for STE, sketch states, LittleBit latent factors ...).
 *
 * Lifecycle of one training step:
 *   1. `weight()` — Ŵ [rows, cols] row-major for this step's forward (must stay unchanged until backward);
 *   2. `backward(gradW)` — ∂L/∂Ŵ; ADD the resulting gradients into the `grad` arrays of `parameters()`
 *      (gradW is a scratch buffer the graph reuses: consume it before returning);
 *   3. the optimizer updates `parameters()` and zeroes their gradients;
 *   4. `afterStep(step)` — e.g. re-encode every k steps (`step` counts completed steps, from 1).
 * At the end `toCodecParams()` gives what the bundle stores, for codec `codecId`.
 *
 * For exact resumption, everything a provider needs besides its parameters' values goes in `buffers()`
 * (e.g. a cached Ŵ that is only rebuilt every k steps); checkpoints save and restore them in place.
 */
export interface WeightProvider<T extends FloatArray = Float32Array> {
  /** Canonical tensor name, e.g. model.layers.0.self_attn.q_proj.weight. */
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  /** The codec whose parameters `toCodecParams()` returns (a registered codec id). */
  readonly codecId: string;
  /** False when backward() would do nothing: the graph then skips computing ∂L/∂Ŵ. */
  readonly trainable: boolean;
  weight(): T;
  backward(gradW: T): void;
  parameters(): Param<T>[];
  /** Non-parameter state that must survive a checkpoint (float32 arrays restored in place). */
  buffers?(): Record<string, T>;
  afterStep?(step: number): void;
  /** Called after buffers/parameters were restored from a checkpoint. */
  afterLoad?(): void;
  toCodecParams(): CodecParams;
  /**
   * Optional low-rank form, for providers whose Ŵ is a product Ŵ = Left · Rightᵀ (Left [rows, r], Right
   * [cols, r]; LittleBit). When `factorRank` r > 0 and both methods exist, the CPU graph never builds Ŵ: it
   * computes Y = (X · Right) · Leftᵀ, dX = (dY · Left) · Rightᵀ and hands back ∂L/∂Left = dYᵀ (X · Right),
   * ∂L/∂Right = Xᵀ (dY · Left) — r·(rows + cols) multiply-adds per row instead of rows·cols, and no
   * rows × cols × r products for Ŵ and its chain rule (docs/ste-trainer.md §8 "Fourth pass"). A provider
   * offers it only where r·(rows + cols) < rows·cols. `weight()`/`backward()` stay valid (other graphs,
   * evaluation, tests).
   */
  readonly factorRank?: number;
  /**
   * Optional: where the graph may ADD ∂L/∂Ŵ itself (the array backward() would add gradW into; a dense
   * trainable weight's gradient). The graph then accumulates its product there (the workers' parts after it)
   * and does not call backward(): no ∂L/∂Ŵ scratch and no add pass. Null: use backward().
   */
  gradTarget?(): T | null;
  /** [Left | Right] packed, length r·(rows + cols) (Left row-major first); unchanged until backwardFactors. */
  factors?(): T;
  /** ADD the gradients for packed [∂L/∂Left | ∂L/∂Right] (same layout as factors(); linear in it). */
  backwardFactors?(grad: T): void;
}

/** The low-rank r a graph may use for this provider (0: use Ŵ). */
export function factorRankOf<T extends FloatArray>(p: WeightProvider<T>): number {
  const r = p.factorRank ?? 0;
  return r > 0 && typeof p.factors === 'function' && typeof p.backwardFactors === 'function' && r * (p.rows + p.cols) <= p.rows * p.cols ? r : 0;
}

// --------------------------------------------------------------------------------------------------- dense

export interface DenseProviderOptions<T extends FloatArray> {
  name: string;
  rows: number;
  cols: number;
  /** Initial weights [rows, cols]. Frozen providers use them in place; trainable ones copy them. */
  weight: T;
  trainable?: boolean;
  /** Storage of the final weights (codec `float`), default f16. */
  dtype?: 'f16' | 'f32';
  decay?: boolean;
}

/** A plain dense weight, frozen or trainable; stores as codec `float`. */
export class DenseProvider<T extends FloatArray = Float32Array> implements WeightProvider<T> {
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  readonly codecId = 'float';
  readonly trainable: boolean;
  readonly dtype: 'f16' | 'f32';
  private readonly param: Param<T> | undefined;
  private readonly data: T;

  constructor(o: DenseProviderOptions<T>) {
    checkShape(o.name, o.weight, o.rows, o.cols);
    this.name = o.name;
    this.rows = o.rows;
    this.cols = o.cols;
    this.trainable = o.trainable ?? false;
    this.dtype = o.dtype ?? 'f16';
    if (this.trainable) {
      // float32 copies from the trainer's allocator (Node: the wasm kernels' memory, used in place by the
      // gemm and AdamW instead of copied in and out every step)
      const w = o.weight;
      this.data = (w instanceof Float32Array ? allocFloat32(w.length) : w.slice()) as T;
      if (w instanceof Float32Array) this.data.set(w);
      const grad = (w instanceof Float32Array ? allocFloat32(w.length) : zerosLike(w)) as T;
      this.param = { name: o.name, data: this.data, grad, decay: o.decay ?? true };
    } else {
      this.data = o.weight;
    }
  }

  weight(): T {
    return this.data;
  }

  backward(gradW: T): void {
    if (!this.param) return;
    const g = this.param.grad;
    addRows(g, gradW, g, g.length); // the wasm add when installed (the same float32 sums)
  }

  /** The gradient itself: the graph adds ∂L/∂Ŵ into it (WeightProvider.gradTarget). */
  gradTarget(): T | null {
    return this.param ? this.param.grad : null;
  }

  parameters(): Param<T>[] {
    return this.param ? [this.param] : [];
  }

  toCodecParams(): CodecParams {
    const w = this.data instanceof Float32Array ? this.data : Float32Array.from(this.data);
    return floatCodec.encode(w, this.rows, this.cols, { dtype: this.dtype }, { name: this.name, seed: 0 });
  }
}

// --------------------------------------------------------------------------------------------- codec STE

export interface CodecSteProviderOptions {
  name: string;
  rows: number;
  cols: number;
  /** Initial full-precision weights [rows, cols] (copied). */
  weight: Float32Array;
  /** A registered codec id or the codec itself. */
  codec: string | Codec<any, any>;
  /** Codec options: raw (resolved through the codec) or already resolved. */
  options?: Record<string, unknown>;
  /** Seed and saliency for encode (name defaults to `name`). */
  context?: Partial<CodecContext>;
  /** Re-encode every k completed steps (default 1: every step). */
  rebuildEvery?: number;
  /** Weight decay on the latent full-precision weights (default true). */
  decay?: boolean;
}

/**
 * Straight-through training for ANY registered codec (methods.md §1: "Keep the full-precision weights as
 * the trainable parameters; the forward pass uses decode(build(W)); the backward pass treats build+decode
 * as the identity"). The forward uses Ŵ = decode(encode(W)), rebuilt from the current W every
 * `rebuildEvery` steps (Ŵ is cached in between and saved in checkpoints); ∂L/∂W := ∂L/∂Ŵ.
 * `toCodecParams()` encodes the final W (a last build), which is what the bundle stores.
 * Used for rtn, binary (and hashednets / sketch STE once their codecs are registered).
 */
export class CodecSteProvider implements WeightProvider<Float32Array> {
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  readonly codecId: string;
  readonly trainable = true;
  readonly rebuildEvery: number;
  readonly codec: Codec<any, any>;
  readonly options: unknown;
  private readonly ctx: CodecContext;
  private readonly param: Param<Float32Array>;
  private readonly decoded: Float32Array;
  /** Encoded parameters of the last build. */
  private lastBuild: CodecParams;

  constructor(o: CodecSteProviderOptions) {
    checkShape(o.name, o.weight, o.rows, o.cols);
    this.name = o.name;
    this.rows = o.rows;
    this.cols = o.cols;
    this.codec = typeof o.codec === 'string' ? getCodec(o.codec) : o.codec;
    this.codecId = this.codec.id;
    this.options = this.codec.resolveOptions(o.options ?? {});
    this.ctx = { name: o.name, seed: 0, ...o.context };
    const every = o.rebuildEvery ?? 1;
    if (!Number.isInteger(every) || every < 1) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `rebuildEvery ${every} must be a positive integer`, { source: o.name });
    }
    this.rebuildEvery = every;
    const data = o.weight.slice();
    this.param = { name: o.name, data, grad: new Float32Array(data.length), decay: o.decay ?? true };
    this.decoded = new Float32Array(data.length);
    this.lastBuild = this.rebuild();
  }

  /** Encode the current W and decode it into the cached Ŵ. */
  private rebuild(): CodecParams {
    const params = this.codec.encode(this.param.data, this.rows, this.cols, this.options, this.ctx);
    this.codec.decodeRows(params, 0, this.rows, this.decoded);
    this.lastBuild = params;
    return params;
  }

  weight(): Float32Array {
    return this.decoded;
  }

  backward(gradW: Float32Array): void {
    const g = this.param.grad;
    addRows(g, gradW, g, g.length); // the wasm add when installed (the same float32 sums)
  }

  parameters(): Param<Float32Array>[] {
    return [this.param];
  }

  buffers(): Record<string, Float32Array> {
    // Ŵ of the last build: with rebuildEvery > 1 it is not a function of the current W.
    return { decoded: this.decoded };
  }

  afterStep(step: number): void {
    if (step % this.rebuildEvery === 0) this.rebuild();
  }

  afterLoad(): void {
    // The restored Ŵ is authoritative; lastBuild is only a cache for inspection.
  }

  /** The parameters of the last build (what the forward currently uses). */
  lastBuildParams(): CodecParams {
    return this.lastBuild;
  }

  /** A final build from the current full-precision W. */
  toCodecParams(): CodecParams {
    return this.codec.encode(this.param.data, this.rows, this.cols, this.options, this.ctx);
  }
}

// ---------------------------------------------------------------------------------------------- helpers

function checkShape(name: string, w: FloatArray, rows: number, cols: number): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows <= 0 || cols <= 0 || w.length !== rows * cols) {
    throw new UltraSketchError(
      ErrorCodes.SHAPE_MISMATCH,
      `weight provider ${name}: ${w.length} values for a ${rows}×${cols} matrix`,
      { source: name },
    );
  }
}

export function zerosLike<T extends FloatArray>(a: T): T {
  return (a instanceof Float64Array ? new Float64Array(a.length) : new Float32Array(a.length)) as T;
}
