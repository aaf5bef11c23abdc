import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { CodecSteProvider } from '../providers.js';
import type { GpuTensor, GpuTrainContext } from './context.js';
import type { GpuWeightProvider } from './graph.js';
import { addInto } from './ops.js';
import type { GpuParam } from './optim.js';

/**
 * The CPU CodecSteProvider (providers.ts: full-precision W trained through Ŵ = decode(encode(W)), rebuilt every
 * `rebuildEvery` steps, identity backward) for the `binary` codec, with W, its gradient and Ŵ on the GPU: the
 * rebuild is one `binary_build` dispatch (Ŵ = ±f16(mean |W_row|)), the backward adds ∂L/∂Ŵ straight into W's
 * gradient (`gradAccumulator`). Ŵ is a checkpoint buffer (`decoded`, as on the CPU: between rebuilds it is not
 * a function of W). The CPU provider keeps the one-off parts: the initial W and Ŵ, and the final encode.
 */
export class GpuBinarySteProvider implements GpuWeightProvider {
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
    if (cpu.codecId !== 'binary') {
      throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `the ${cpu.codecId} STE provider of ${cpu.name} has no WebGPU version yet (only binary)`, {
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
    const { grid, gridX } = this.ctx.grid1d(this.rows, 1);
    this.ctx.dispatch(this.ctx.programs.binaryBuild, Uint32Array.of(this.rows, this.cols, gridX, 0), [this.param.data, this.decoded], grid);
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

