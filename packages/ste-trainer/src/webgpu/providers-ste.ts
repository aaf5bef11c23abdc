import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { CodecSteProvider } from '../providers.js';
import type { GpuTensor, GpuTrainContext } from './context.js';
import type { GpuWeightProvider } from './graph.js';
import { addInto } from './ops.js';
import type { GpuParam } from './optim.js';

/** Codecs whose STE rebuild runs on the GPU. */
export const GPU_STE_CODECS = ['binary', 'rtn'] as const;

/**
 * The CPU CodecSteProvider (providers.ts: full-precision W trained through Ŵ = decode(encode(W)), rebuilt every
 * `rebuildEvery` steps, identity backward) for the `binary` and `rtn` codecs, with W, its gradient and Ŵ on the
 * GPU: the rebuild is one dispatch (`binary_build`: Ŵ = ±f16(mean |W_row|); `rtn_build`: the min–max grid per
 * group), the backward adds ∂L/∂Ŵ straight into W's gradient (`gradAccumulator`). Ŵ is a checkpoint buffer
 * (`decoded`, as on the CPU: between rebuilds it is not a function of W). The CPU provider keeps the one-off
 * parts: the initial W and Ŵ, and the final encode (the bundle's parameters).
 */
export class GpuCodecSteProvider implements GpuWeightProvider {
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  readonly trainable = true;
  readonly rebuildEvery: number;
  private readonly param: GpuParam;
  private readonly decoded: GpuTensor;

  constructor(
    readonly ctx: GpuTrainContext,
    readonly cpu: CodecSteProvider,
  ) {
    if (!(GPU_STE_CODECS as readonly string[]).includes(cpu.codecId)) {
      throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `the ${cpu.codecId} STE provider of ${cpu.name} has no WebGPU version yet (${GPU_STE_CODECS.join(', ')} have)`, {
        hint: 'train this codec on the CPU (--device cpu)',
      });
    }
    this.name = cpu.name;
    this.rows = cpu.rows;
    this.cols = cpu.cols;
    this.rebuildEvery = cpu.rebuildEvery;
    const p = cpu.parameters()[0]!;
    this.param = { name: p.name, data: ctx.upload(p.data, p.name), grad: ctx.tensor(p.data.length, `${p.name}.grad`), decay: p.decay };
    this.decoded = ctx.upload(cpu.weight(), `${p.name}.decoded`); // the CPU provider's initial build
  }

  /** Ŵ = decode(encode(W)) of the current W into the cached Ŵ. */
  rebuild(): void {
    const { rows, cols, ctx } = this;
    if (this.cpu.codecId === 'binary') {
      const { grid, gridX } = ctx.grid1d(rows, 1);
      ctx.dispatch(ctx.programs.binaryBuild, Uint32Array.of(rows, cols, gridX, 0), [this.param.data, this.decoded], grid);
      return;
    }
    const o = this.cpu.options as { bits: number; groupSize: number };
    const G = o.groupSize === 0 ? cols : Math.min(o.groupSize, cols);
    const gpr = Math.ceil(cols / G);
    const { grid, gridX } = ctx.grid1d(rows * gpr, 1);
    ctx.dispatch(ctx.programs.rtnBuild, Uint32Array.of(rows, cols, G, gpr, (1 << o.bits) - 1, gridX, 0, 0), [this.param.data, this.decoded], grid);
  }

  weight(): GpuTensor {
    return this.decoded;
  }

  /** The identity backward, ∂L/∂W += ∂L/∂Ŵ (the graph adds it through gradAccumulator; this is for other callers). */
  backward(gradW: GpuTensor): void {
    addInto(this.ctx, gradW, this.param.grad, this.rows * this.cols);
  }

  gradAccumulator(): GpuTensor {
    return this.param.grad;
  }

  parameters(): GpuParam[] {
    return [this.param];
  }

  buffers(): Record<string, GpuTensor> {
    return { decoded: this.decoded };
  }

  afterStep(step: number): void {
    if (step % this.rebuildEvery === 0) this.rebuild();
  }
}

