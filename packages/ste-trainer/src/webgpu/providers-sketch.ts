import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { hashedNetsFamily, sketchGroups } from '@ultrasketch/sketch-core';
import { HashedNetsStateProvider, SketchStateProvider } from '../providers-sketch.js';
import type { GpuTensor, GpuTrainContext } from './context.js';
import type { GpuWeightProvider } from './graph.js';
import type { GpuParam } from './optim.js';
import { ROW_WG } from './programs.js';

/** How the forward reads a state (the uniform `mode` of `state_pick`). */
const STATE_READ = { f32: 0, f16TowardZero: 1, f16Nearest: 2, int8: 3 } as const;

/**
 * Sketch and HashedNets STATE training on the GPU (the CPU providers of providers-sketch.ts, their default
 * behaviour: the AbsMax query, f16 or f32 states). The parameter is the states; per step:
 *   forward  (`state_pick`, one invocation per weight): ŵ_i = the candidate of largest |·| among the weight's
 *            hashed states cand[k·n + i] (k < depth_i; strict, so ties keep the lowest k, as the codec's query),
 *            each read as the state format stores it (quantizedForward: sketch f16 or int8 toward zero — int8
 *            under each sketch row's scale f16(max |S_row| / 127), `state_row_scale` first — hashednets f16 to
 *            nearest: the CPU providers' rounding, in core's bit algorithm), and the pick recorded;
 *   backward (`state_scatter`, one invocation per STATE): grad[s] += Σ ∂L/∂ŵ_i over the weights i that have s
 *            as a candidate AND picked it, summed in ascending i — a segmented sum over a fixed list of each
 *            state's candidate weights (built once on the CPU), not float atomics: deterministic, and in the CPU
 *            scatter's order (weights ascending), so the gradient is the CPU's bit for bit.
 * HashedNets is the depth-1 case (the pick is the hash). The CPU provider keeps the one-off parts: the initial
 * encode (seed, groups, layout), the state initialisation and the final packing (`toCodecParams`, after the
 * trained states are read back into it). The candidate table is rebuilt here from the initial encode's public
 * layout (sketchGroups / hashedNetsFamily), as the CPU provider builds its own.
 *
 * Refused (E_UNSUPPORTED naming --device cpu): the `signmean` query, float64 masters.
 */
export class GpuStatePickProvider implements GpuWeightProvider {
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  readonly trainable = true;
  readonly cpu: SketchStateProvider | HashedNetsStateProvider;
  private readonly param: GpuParam;
  private readonly cand: GpuTensor;
  private readonly depth: GpuTensor;
  private readonly maxDepth: number;
  private readonly pickT: GpuTensor;
  private readonly offsets: GpuTensor;
  private readonly members: GpuTensor;
  private readonly out: GpuTensor;
  private readonly mode: number;
  private readonly rowCount: number;
  private readonly rowBegin: GpuTensor;
  private readonly rowOf: GpuTensor;
  private readonly scales: GpuTensor;

  constructor(
    readonly ctx: GpuTrainContext,
    cpu: SketchStateProvider | HashedNetsStateProvider,
  ) {
    this.cpu = cpu;
    this.name = cpu.name;
    this.rows = cpu.rows;
    this.cols = cpu.cols;
    const refuse = (what: string): never => {
      throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `the ${cpu.codecId} state provider of ${cpu.name}: ${what} has no WebGPU version yet`, {
        hint: 'train it on the CPU (--device cpu), or on WebGPU with the paper\'s sketch (--query absmaxmin: the AbsMax query with f16 or f32 states)',
      });
    };
    const p = cpu.parameters()[0]!;
    if (!(p.data instanceof Float32Array)) refuse('a float64 master copy');
    const n = cpu.rows * cpu.cols;
    const T = p.data.length;
    let d: number;
    let rowRanges: { begin: Uint32Array; rowOf: Uint32Array } | null = null;
    let cand: Int32Array;
    let depth: Uint32Array;
    if (cpu instanceof SketchStateProvider) {
      const o = cpu.options as { query?: string; state: string; rows: number };
      if ((o.query ?? 'absmaxmin') !== 'absmaxmin') refuse(`the ${o.query} query`);
      if (cpu.softQuery) refuse('the soft query (--soft-query)');
      d = o.rows;
      cand = new Int32Array(d * n).fill(-1);
      depth = new Uint32Array(n);
      // the CPU provider's table, from the initial encode's layout: an exact group's weight is its own state;
      // a sketch group's weight has one candidate per sketch row k, at stateOffset + k · width + h_k(r, c)
      for (const g of sketchGroups(cpu.initial)) {
        const ch = g.channels;
        const C = ch.length;
        if (!g.family) {
          for (let r = 0; r < cpu.rows; r++) {
            for (let c = 0; c < C; c++) {
              cand[r * cpu.cols + ch[c]!] = g.stateOffset + r * C + c;
              depth[r * cpu.cols + ch[c]!] = 1;
            }
          }
          continue;
        }
        const width = g.alloc.width;
        const idx = new Int32Array(C);
        for (let r = 0; r < cpu.rows; r++) {
          for (let k = 0; k < d; k++) {
            g.family.rowIndices(r, k, idx);
            for (let c = 0; c < C; c++) cand[k * n + r * cpu.cols + ch[c]!] = g.stateOffset + k * width + idx[c]!;
          }
          for (let c = 0; c < C; c++) depth[r * cpu.cols + ch[c]!] = d;
        }
      }
      this.mode = !cpu.quantizedForward ? STATE_READ.f32 : o.state === 'int8' ? STATE_READ.int8 : STATE_READ.f16TowardZero;
      if (this.mode === STATE_READ.int8) {
        // the stored sketch rows (each group's alloc.depth rows of states / depth states), as toCodecParams cuts them
        const begins: number[] = [];
        for (const g of sketchGroups(cpu.initial)) {
          const perRow = g.alloc.states / g.alloc.depth;
          for (let k = 0; k < g.alloc.depth; k++) begins.push(g.stateOffset + k * perRow);
        }
        const rowOf = new Uint32Array(p.data.length);
        begins.forEach((b, r) => {
          const end = r + 1 < begins.length ? begins[r + 1]! : p.data.length;
          rowOf.fill(r, b, end);
        });
        rowRanges = { begin: Uint32Array.from([...begins, p.data.length]), rowOf };
      }
    } else {
      d = 1;
      cand = new Int32Array(n);
      depth = new Uint32Array(n).fill(1);
      const fam = hashedNetsFamily(cpu.initial);
      const row = new Int32Array(cpu.cols);
      for (let r = 0; r < cpu.rows; r++) {
        fam.rowIndices(r, 0, row);
        cand.set(row, r * cpu.cols);
      }
      this.mode = cpu.quantizedForward ? STATE_READ.f16Nearest : STATE_READ.f32;
    }
    // Each state's candidate weights, ascending (a counting sort over i ascending): the backward's segments.
    const offsets = new Uint32Array(T + 1);
    for (let i = 0; i < n; i++) for (let k = 0; k < depth[i]!; k++) offsets[cand[k * n + i]! + 1]!++;
    for (let s = 0; s < T; s++) offsets[s + 1]! += offsets[s]!;
    const fill = offsets.slice(0, T);
    const members = new Uint32Array(Math.max(1, offsets[T]!));
    for (let i = 0; i < n; i++) for (let k = 0; k < depth[i]!; k++) members[fill[cand[k * n + i]!]!++] = i;
    this.maxDepth = d;
    this.param = { name: p.name, data: ctx.upload(p.data as Float32Array, p.name), grad: ctx.tensor(T, `${p.name}.grad`), decay: p.decay };
    this.cand = ctx.upload(cand, `${p.name}.cand`);
    this.depth = ctx.upload(depth, `${p.name}.depth`);
    this.offsets = ctx.upload(offsets, `${p.name}.offsets`);
    this.members = ctx.upload(members, `${p.name}.members`);
    this.pickT = ctx.tensor(n, `${p.name}.pick`);
    // int8: each state's row and the rows' scales (recomputed every forward); other formats bind 1-element stand-ins
    this.rowCount = rowRanges ? rowRanges.begin.length - 1 : 0;
    this.rowBegin = ctx.upload(rowRanges ? rowRanges.begin : new Uint32Array(1), `${p.name}.rowBegin`);
    this.rowOf = ctx.upload(rowRanges ? rowRanges.rowOf : new Uint32Array(1), `${p.name}.rowOf`);
    this.scales = ctx.tensor(Math.max(1, this.rowCount), `${p.name}.scales`);
    this.out = ctx.tensor(n, `${p.name}.w`);
  }

  weight(): GpuTensor {
    const n = this.rows * this.cols;
    if (this.mode === STATE_READ.int8) {
      const r = this.ctx.grid1d(this.rowCount, ROW_WG);
      this.ctx.dispatch(this.ctx.programs.stateRowScale, Uint32Array.of(this.rowCount, r.gridX, 0, 0), [this.param.data, this.rowBegin, this.scales], r.grid);
    }
    const { grid, gridX } = this.ctx.grid1d(n, ROW_WG);
    this.ctx.dispatch(
      this.ctx.programs.statePick,
      Uint32Array.of(n, this.maxDepth, this.mode, gridX),
      [this.param.data, this.cand, this.depth, this.out, this.pickT, this.rowOf, this.scales],
      grid,
    );
    return this.out;
  }

  backward(gradW: GpuTensor): void {
    const T = this.param.data.length;
    const { grid, gridX } = this.ctx.grid1d(T, ROW_WG);
    this.ctx.dispatch(this.ctx.programs.stateScatter, Uint32Array.of(T, gridX, 0, 0), [gradW, this.pickT, this.offsets, this.members, this.param.grad], grid);
  }

  parameters(): GpuParam[] {
    return [this.param];
  }

  /** The state each weight decoded from in the last forward (as the CPU provider's `picks()`). */
  async picks(): Promise<Int32Array> {
    return new Int32Array((await this.ctx.readU32(this.pickT)).buffer);
  }
}
