import type { LittleBitParams } from '@ultrasketch/littlebit';
import { LittleBitProvider, type LittleBitProviderOptions } from '../providers-littlebit.js';
import type { GpuTensor, GpuTrainContext } from './context.js';
import type { GpuWeightProvider } from './graph.js';
import { f32Bits, matmul } from './ops.js';
import type { GpuParam } from './optim.js';
import { ROW_WG } from './programs.js';

/**
 * The LittleBit provider (SmoothSign latent factors, providers-littlebit.ts) with its parameters on the GPU.
 * The CPU provider does what happens once — the Dual-SVID initialisation (or the codec's refined encode) and
 * the final packing (`toCodecParams`, after the trained parameters are read back into it) — so both devices
 * start from, and store, exactly the same thing. Per step, on the GPU, per path:
 *   forward:  hA = diag(h) sign(U) diag(ℓ), B = diag(g) sign(V) (sign_scale), Ŵ (+)= hA Bᵀ (matmul);
 *   backward: GB = G B, dB = Gᵀ hA (matmul); dh, dU (littlebit_rows on U, GB, h, ℓ); dℓ (littlebit_cols);
 *             dg, dV (littlebit_rows on V, dB, g). A = sign(U) diag(ℓ) itself is never stored: dh's
 *             Σ_k A_ik (G B)_ik is computed from sign(U) and ℓ in littlebit_rows.
 * The formulas and their order are the CPU provider's (its doc comment derives them).
 */
interface GpuPath {
  U: GpuParam;
  V: GpuParam;
  h: GpuParam;
  g: GpuParam;
  l: GpuParam;
  hA: GpuTensor;
  B: GpuTensor;
  GB: GpuTensor;
  dB: GpuTensor;
}

export class GpuLittleBitProvider implements GpuWeightProvider {
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  readonly trainable = true;
  readonly rank: number;
  /** The CPU provider: initialisation, options and the final packing. */
  readonly cpu: LittleBitProvider;
  private readonly paths: GpuPath[];
  private readonly out: GpuTensor;
  private readonly one: GpuTensor;

  constructor(
    readonly ctx: GpuTrainContext,
    options: LittleBitProviderOptions | LittleBitProvider,
  ) {
    this.cpu = options instanceof LittleBitProvider ? options : new LittleBitProvider(options);
    const cpu = this.cpu;
    this.name = cpu.name;
    this.rows = cpu.rows;
    this.cols = cpu.cols;
    this.rank = cpu.rank;
    const params = cpu.parameters(); // [U, V, h, g, l] per path
    const up = (i: number): GpuParam => {
      const p = params[i]!;
      return { name: p.name, data: ctx.upload(p.data, p.name), grad: ctx.tensor(p.data.length, `${p.name}.grad`), decay: p.decay };
    };
    const r = this.rank;
    this.paths = [];
    for (let at = 0; at < params.length; at += 5) {
      this.paths.push({
        U: up(at),
        V: up(at + 1),
        h: up(at + 2),
        g: up(at + 3),
        l: up(at + 4),
        hA: ctx.tensor(this.rows * r, `${this.name}.hA`),
        B: ctx.tensor(this.cols * r, `${this.name}.B`),
        GB: ctx.tensor(this.rows * r, `${this.name}.GB`),
        dB: ctx.tensor(this.cols * r, `${this.name}.dB`),
      });
    }
    this.out = ctx.tensor(this.rows * this.cols, `${this.name}.W`);
    this.one = ctx.tensor(1, `${this.name}.unused`);
  }

  private signScale(x: GpuTensor, rs: GpuTensor | null, cs: GpuTensor | null, out: GpuTensor, rows: number, cols: number): void {
    const { grid, gridX } = this.ctx.grid1d(rows * cols, ROW_WG);
    const flags = (rs ? 1 : 0) | (cs ? 2 : 0);
    this.ctx.dispatch(this.ctx.programs.signScale, Uint32Array.of(rows, cols, flags, gridX), [x, rs ?? this.one, cs ?? this.one, out], grid);
  }

  weight(): GpuTensor {
    const { rows, cols, rank: r, ctx } = this;
    this.paths.forEach((p, index) => {
      this.signScale(p.U.data, p.h.data, p.l.data, p.hA, rows, r);
      this.signScale(p.V.data, p.g.data, null, p.B, cols, r);
      matmul(ctx, p.hA, p.B, this.out, rows, cols, r, false, true, index > 0);
    });
    return this.out;
  }

  /** ∂L/∂Ŵ → every path's parameter gradients (hA, B are the last forward's: parameters have not changed). */
  backward(G: GpuTensor): void {
    const { rows, cols, rank: r, ctx } = this;
    const K = f32Bits(this.cpu.smoothK);
    for (const p of this.paths) {
      matmul(ctx, G, p.B, p.GB, rows, r, cols, false, false);
      matmul(ctx, G, p.hA, p.dB, cols, r, rows, true, false);
      const ru = ctx.grid1d(rows, 1);
      ctx.dispatch(ctx.programs.littlebitRows, Uint32Array.of(rows, r, 1, ru.gridX, K, 0, 0, 0), [p.U.data, p.GB, p.h.data, p.l.data, p.U.grad, p.h.grad], ru.grid);
      const rc = ctx.grid1d(r, 1);
      ctx.dispatch(ctx.programs.littlebitCols, Uint32Array.of(rows, r, rc.gridX, 0), [p.U.data, p.GB, p.h.data, p.l.grad], rc.grid);
      const rv = ctx.grid1d(cols, 1);
      ctx.dispatch(ctx.programs.littlebitRows, Uint32Array.of(cols, r, 0, rv.gridX, K, 0, 0, 0), [p.V.data, p.dB, p.g.data, this.one, p.V.grad, p.g.grad], rv.grid);
    }
  }

  parameters(): GpuParam[] {
    return this.paths.flatMap((p) => [p.U, p.V, p.h, p.g, p.l]);
  }

  /** Read the trained parameters back into the CPU provider and pack them as the codec stores them. */
  async toCodecParams(): Promise<LittleBitParams> {
    await this.syncToCpu();
    return this.cpu.toCodecParams();
  }

  /** Copy the GPU parameters into the CPU provider's (e.g. for a checkpoint or to compare). */
  async syncToCpu(): Promise<void> {
    const cpuParams = this.cpu.parameters();
    const gpuParams = this.parameters();
    for (let i = 0; i < gpuParams.length; i++) cpuParams[i]!.data.set(await this.ctx.read(gpuParams[i]!.data));
  }
}
