import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type AdamState, type AdamWOptions, type ScheduleOptions, learningRate } from '../optim.js';
import type { GpuTensor, GpuTrainContext } from './context.js';
import { f32Bits, partialCount, sumSquares } from './ops.js';
import { ROW_WG } from './programs.js';

/** A trainable parameter on the GPU (the CPU `Param` with GPU tensors). */
export interface GpuParam {
  name: string;
  data: GpuTensor;
  grad: GpuTensor;
  /** Weight decay applies (default true; norms and scales set false). */
  decay?: boolean;
}

/**
 * The CPU AdamW (optim.ts) with parameters, gradients and both moments on the GPU: PyTorch's order (decoupled
 * decay for params with decay ≠ false, then the bias-corrected step), the gradient scaled by `gradScale`
 * (global-norm clipping) and zeroed after the update. The bias corrections are computed here in float64 and
 * the element arithmetic is f32 (the CPU's is float64 over float32 storage). Nothing comes back except the
 * gradient norm's partial sums (`gradNorm`), one small read per step.
 */
export class GpuAdamW {
  readonly states: Array<{ m: GpuTensor; v: GpuTensor }>;
  private readonly partial: GpuTensor;
  private readonly offsets: number[];

  constructor(
    readonly ctx: GpuTrainContext,
    readonly params: GpuParam[],
    readonly options: AdamWOptions,
  ) {
    const names = new Set<string>();
    for (const p of params) {
      if (names.has(p.name)) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `two trainable parameters are named ${p.name}`);
      names.add(p.name);
      if (p.grad.length < p.data.length) throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `parameter ${p.name}: gradient has ${p.grad.length} elements, data ${p.data.length}`);
    }
    this.states = params.map((p) => ({ m: ctx.tensor(p.data.length, `adam.m/${p.name}`), v: ctx.tensor(p.data.length, `adam.v/${p.name}`) }));
    this.offsets = [];
    let off = 0;
    for (const p of params) {
      this.offsets.push(off);
      off += partialCount(p.data.length);
    }
    this.partial = ctx.tensor(Math.max(1, off), 'adam.gradnorm.partial');
  }

  /** √(Σ g²) over every parameter's gradient: partial sums on the GPU, summed here in float64. */
  async gradNorm(): Promise<number> {
    return GpuAdamW.normOf(await this.ctx.read(this.encodeGradNorm()));
  }

  /**
   * Encode the gradient norm's partial sums and return the tensor they land in (every element is used), for a
   * caller that reads them together with other figures in one read; `normOf(values)` finishes the norm.
   */
  encodeGradNorm(): GpuTensor {
    this.params.forEach((p, i) => sumSquares(this.ctx, p.grad, p.data.length, this.partial, this.offsets[i]!));
    return this.partial;
  }

  /** √ of the float64 sum of partial sums of squares. */
  static normOf(parts: ArrayLike<number>): number {
    let ss = 0;
    for (let i = 0; i < parts.length; i++) ss += parts[i]!;
    return Math.sqrt(ss);
  }

  /** Apply update number `t` (1-based, for bias correction); encoded, not waited for. */
  step(t: number, lr: number, gradScale: number): void {
    const { beta1, beta2, eps, weightDecay } = this.options;
    const bc1 = 1 - Math.pow(beta1, t);
    const bc2 = 1 - Math.pow(beta2, t);
    this.params.forEach((p, k) => {
      const { m, v } = this.states[k]!;
      const count = p.data.length;
      const decay = p.decay !== false && weightDecay !== 0 ? 1 - lr * weightDecay : 1;
      const { grid, gridX } = this.ctx.grid1d(count, ROW_WG);
      const words = Uint32Array.of(count, gridX, 0, 0, ...[lr, gradScale, beta1, beta2, eps, decay, bc1, bc2, 1 - beta1, 1 - beta2].map(f32Bits), 0, 0);
      this.ctx.dispatch(this.ctx.programs.adamw, words, [p.data, p.grad, m, v], grid);
    });
  }

  /**
   * One optimizer step with the CPU trainer's semantics (trainer.ts): the global gradient norm (E_NOT_FINITE
   * when it is not finite, before anything changes), clipping to `clipNorm` (0 disables), the learning rate of
   * step `step` (0-based) from the warm-up + cosine schedule, then update number step + 1.
   */
  async clipAndStep(step: number, schedule: ScheduleOptions, clipNorm: number): Promise<{ gradNorm: number; lr: number }> {
    return this.applyClipped(await this.gradNorm(), step, schedule, clipNorm);
  }

  /** The rest of `clipAndStep` for a gradient norm the caller already has (read with other figures). */
  applyClipped(gradNorm: number, step: number, schedule: ScheduleOptions, clipNorm: number): { gradNorm: number; lr: number } {
    if (!Number.isFinite(gradNorm)) {
      throw new UltraSketchError(ErrorCodes.NOT_FINITE, `the gradient norm is ${gradNorm} at step ${step}`, {
        source: 'webgpu trainer',
        hint: 'lower the learning rate, or enable gradient clipping',
      });
    }
    const scale = clipNorm > 0 && gradNorm > clipNorm ? clipNorm / gradNorm : 1;
    const lr = learningRate(step, schedule);
    this.step(step + 1, lr, scale);
    return { gradNorm, lr };
  }

  /** The moments, read back (for checkpoints: the same AdamState the CPU optimizer keeps). */
  async readState(): Promise<AdamState[]> {
    const out: AdamState[] = [];
    for (const s of this.states) out.push({ m: await this.ctx.read(s.m), v: await this.ctx.read(s.v) });
    return out;
  }

  /** Restore moments (from a checkpoint, e.g. one written by the CPU trainer). */
  loadState(states: readonly AdamState[]): void {
    if (states.length !== this.states.length) {
      throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `optimizer state for ${states.length} parameters, expected ${this.states.length}`);
    }
    states.forEach((s, i) => {
      this.ctx.write(this.states[i]!.m, s.m);
      this.ctx.write(this.states[i]!.v, s.v);
    });
  }
}
