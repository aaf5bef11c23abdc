import type { LittleBitParams } from '@ultrasketch/littlebit';
import {
  BlockedLinear,
  type GatherIO,
  type GpuLinear,
  type KernelBuildContext,
  type LinearIO,
  bytesOf,
  scratchBuffer,
} from '../linear.js';
import type { Dispatch, GpuProgram } from '../program.js';
import { signBlocks, signsCode } from './baselines.js';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';

/**
 * `littlebit`: y = Σ_paths h ⊙ (U_s (ℓ ⊙ (V_sᵀ (g ⊙ x)))), on the packed sign bits — never a dense Ŵ.
 *
 * Per path, two dispatches of the sign-matrix kernel (baselines.ts `signsCode`), reading the stored 32-bit
 * sign words as the bitstream they are (entry i = bit i mod 32 of word ⌊i/32⌋, which is also bit i mod 8 of
 * byte ⌊i/8⌋ on little-endian storage):
 *   stage 1: z_p = ℓ_p ⊙ (V_sᵀ (g_p ⊙ x))     (r rows of `in` signs; column scales g, row scales ℓ)
 *   stage 2: y (+)= h_p ⊙ (U_s z_p)           (out rows of r signs; row scales h; path 2 adds into y)
 * z lives in a small scratch buffer [maxBatch, paths · r] owned by the kernel.
 */
class LittleBitLinear implements GpuLinear {
  readonly codec = 'littlebit';
  readonly outFeatures: number;
  readonly inFeatures: number;
  readonly gatherable = false;
  private readonly stage1: BlockedLinear[];
  private readonly stage2: BlockedLinear[];
  private readonly z: GPUBuffer;
  private readonly width: number;

  constructor(
    private readonly p: LittleBitParams,
    b: KernelBuildContext,
  ) {
    this.outFeatures = p.rows;
    this.inFeatures = p.cols;
    const r = p.rank;
    this.width = p.paths.length * r;
    this.z = scratchBuffer(b.gpu, b.maxBatch * this.width * 4, `${b.name}.z`);
    this.stage1 = p.paths.map((path, i) => {
      const label = `${b.name}.path${i}.v`;
      const blocks = signBlocks({ bits: bytesOf(path.vSigns), rows: r, cols: p.cols, rowScales: path.l, colScales: path.g }, b, label);
      return new BlockedLinear('littlebit', r, p.cols, signsCode(true), blocks, b, null);
    });
    this.stage2 = p.paths.map((path, i) => {
      const label = `${b.name}.path${i}.u`;
      const blocks = signBlocks({ bits: bytesOf(path.uSigns), rows: p.rows, cols: r, rowScales: path.h, colScales: null }, b, label);
      return new BlockedLinear('littlebit', p.rows, r, signsCode(false), blocks, b, null);
    });
  }

  get paramBytes(): number {
    return [...this.stage1, ...this.stage2].reduce((a, l) => a + l.paramBytes, 0);
  }

  programs(): GpuProgram[] {
    return [...this.stage1[0]!.programs(), ...this.stage2[0]!.programs()];
  }

  record(io: LinearIO): Dispatch[] {
    const r = this.p.rank;
    const out: Dispatch[] = [];
    this.stage1.forEach((lin, p) => {
      out.push(
        ...lin.record({
          x: io.x,
          ...(io.xStride === undefined ? {} : { xStride: io.xStride }),
          ...(io.xOff === undefined ? {} : { xOff: io.xOff }),
          y: this.z,
          yStride: this.width,
          yOff: p * r,
          ...(io.logitRows ? { logitRows: true } : {}),
          label: `${io.label}.v${p}`,
        }),
      );
    });
    this.stage2.forEach((lin, p) => {
      out.push(
        ...lin.record({
          x: this.z,
          xStride: this.width,
          xOff: p * r,
          y: io.y,
          ...(io.yStride === undefined ? {} : { yStride: io.yStride }),
          ...(io.yOff === undefined ? {} : { yOff: io.yOff }),
          accumulate: Boolean(io.accumulate) || p > 0,
          ...(io.logitRows ? { logitRows: true } : {}),
          label: `${io.label}.u${p}`,
        }),
      );
    });
    return out;
  }

  recordGather(io: GatherIO): Dispatch[] {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'codec littlebit cannot serve as an embedding table on WebGPU', {
      source: io.label,
      hint: 'store the embedding as float or rtn (compress --embeddings)',
    });
  }

  dispose(): void {
    for (const l of [...this.stage1, ...this.stage2]) l.dispose();
    this.z.destroy();
  }
}

export function littlebitKernel(p: LittleBitParams, b: KernelBuildContext): GpuLinear {
  return new LittleBitLinear(p, b);
}
