import { type CodecContext, ErrorCodes, UltraSketchError, f16BitsToF32, f32ToF16Bits } from '@ultrasketch/core';
import {
  type HashedNetsOptions,
  type HashedNetsParams,
  type SketchOptions,
  type SketchParams,
  SKETCH_OPTION_KEYS,
  allocStates,
  dequantizeStates,
  hashedNetsCodec,
  hashedNetsFamily,
  quantizeRow,
  registerSketchCodecs,
  sketchCodec,
  sketchGroups,
  sketchSoftQuery,
} from '@ultrasketch/sketch-core';
import type { FloatArray } from './matmul.js';
import { type ProviderContext, registerProviderFactory } from './plan.js';
import type { Param, WeightProvider } from './providers.js';

/**
 * Sketch and HashedNets STATE-training providers (docs/ste-trainer.md §2 "How the sketch and LittleBit
 * providers plug in", methods.md §1 second mode, §5 "states trained" rows).
 *
 * The hash seeds, channel groups and state layout are fixed by one initial `encode`; the trainable parameter is
 * the states (one float master copy, in the stored order: groups one after another, each sketch group k-major
 * d × width, each exact group its weights row-major). Every forward recomputes the AbsMax pick from the current
 * states (ŵ = the candidate of largest |·| over the d sketch rows, ties to the lowest k — exactly the codec's
 * query), records the picked state per weight, and backward scatter-adds ∂L/∂Ŵ into the picked states
 * (ŵ = S[pick] exactly, sign included, so ∂ŵ/∂S[pick] = 1 and 0 for the others; linear in gradW).
 */

/**
 * The pick and scatter both state providers share. Every weight i has depthOf[i] candidate states
 * cand[k · n + i] (k < depthOf[i]); the forward takes the candidate of largest |·| (strict, so ties keep the
 * lowest k, as the sketch codec's query) and records it in pick[i]; backward scatter-adds ∂L/∂Ŵ into the
 * recorded states. HashedNets is the depth-1 case (one hash row, ŵ = S[h(r, c)]).
 */
class StatePicks {
  readonly n: number;
  /** Candidate state index of every weight in every row: cand[k · n + i] (−1: no candidate). */
  readonly cand: Int32Array;
  /** Candidates per weight (d for a sketch group, 1 for an exact group or HashedNets). */
  readonly depthOf: Uint8Array;
  /** The state each weight decoded from in the last forward (`single`: the candidates themselves). */
  readonly pick: Int32Array;

  /** `single`: one candidate for every weight (depth 1, HashedNets), so the picks ARE the candidates. */
  constructor(n: number, depth: number, single = false) {
    this.n = n;
    this.cand = new Int32Array(depth * n).fill(-1);
    this.depthOf = new Uint8Array(n);
    if (single) this.depthOf.fill(1);
    this.pick = single ? this.cand : new Int32Array(n);
  }

  /** states[s] = the mean (float64 sums) of the weights having s as a candidate; 0 where none has. */
  bucketMeans(weight: Float32Array, states: FloatArray): void {
    const { n, cand, depthOf } = this;
    const sums = new Float64Array(states.length);
    const counts = new Float64Array(states.length);
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < depthOf[i]!; k++) {
        const s = cand[k * n + i]!;
        sums[s] = sums[s]! + weight[i]!;
        counts[s] = counts[s]! + 1;
      }
    }
    for (let s = 0; s < states.length; s++) states[s] = counts[s]! > 0 ? sums[s]! / counts[s]! : 0;
  }

  /** out[i] = the candidate of largest |·| in S; records the picks. */
  forward(S: FloatArray, out: FloatArray): void {
    const { n, cand, depthOf, pick } = this;
    for (let i = 0; i < n; i++) {
      let best = cand[i]!;
      let a = Math.abs(S[best]!);
      const dd = depthOf[i]!;
      for (let k = 1; k < dd; k++) {
        const s = cand[k * n + i]!;
        // strict: ties keep the lowest k, as the codec's query. Branch-free (an all-ones mask when s wins, and
        // a re-read of |S[best]|): which candidate wins is data-random, and the mispredicted branch of an `if`
        // here was most of the pick's time (docs/ste-trainer.md §8 "Third pass"). A NaN never wins, as before.
        const m = -((Math.abs(S[s]!) > a) as unknown as number);
        best ^= (best ^ s) & m;
        a = Math.abs(S[best]!);
      }
      out[i] = S[best]!;
      pick[i] = best;
    }
  }

  /** grad[pick[i]] += gradW[i], in weight order. */
  scatter(grad: FloatArray, gradW: FloatArray): void {
    const { pick } = this;
    for (let i = 0; i < pick.length; i++) grad[pick[i]!] = grad[pick[i]!]! + gradW[i]!;
  }
}

/**
 * The `signmean` query's table (sketch-core signmean.ts): ŵ_i = Σ_k coef[k·n + i] · S[cand[k·n + i]] with
 * coef = ξ_k(c)/d (1 for an exact group) — linear in the states, so backward scatter-adds coef · ∂L/∂ŵ_i into
 * every candidate. The sum runs in k order in float64 and divides once, as the codec's query does, so the
 * quantized forward equals the bundle's decode exactly.
 */
class SignMeanPicks extends StatePicks {
  /** ξ_k(c) per candidate (±1; 1 for exact groups). */
  readonly sign: Float32Array;

  constructor(n: number, depth: number) {
    super(n, depth);
    this.sign = new Float32Array(depth * n).fill(1);
  }

  /** Whether every weight has one candidate (one sketch row, the default variant): the loops below need no depth. */
  private depthOne(): boolean {
    if (this.allOne === undefined) this.allOne = this.depthOf.every((d) => d === 1);
    return this.allOne;
  }
  private allOne: boolean | undefined;

  override forward(S: FloatArray, out: FloatArray): void {
    const { n, cand, depthOf, sign } = this;
    if (this.depthOne()) {
      // the same values as the general loop's depth-1 case, without its per-weight depth test
      for (let i = 0; i < n; i++) out[i] = sign[i]! * S[cand[i]!]!;
      return;
    }
    for (let i = 0; i < n; i++) {
      const dd = depthOf[i]!;
      if (dd === 1) {
        out[i] = sign[i]! * S[cand[i]!]!;
        continue;
      }
      let acc = 0;
      for (let k = 0; k < dd; k++) acc += sign[k * n + i]! * S[cand[k * n + i]!]!;
      out[i] = acc / dd;
    }
  }

  override scatter(grad: FloatArray, gradW: FloatArray): void {
    const { n, cand, depthOf, sign } = this;
    if (this.depthOne()) {
      // depth 1: gradW[i] / 1 is gradW[i] exactly, so the same sums as the general loop, in the same order
      for (let i = 0; i < n; i++) {
        const s = cand[i]!;
        grad[s] = grad[s]! + sign[i]! * gradW[i]!;
      }
      return;
    }
    for (let i = 0; i < n; i++) {
      const dd = depthOf[i]!;
      const g = gradW[i]! / dd;
      for (let k = 0; k < dd; k++) {
        const s = cand[k * n + i]!;
        grad[s] = grad[s]! + sign[k * n + i]! * g;
      }
    }
  }
}

/**
 * The annealed soft AbsMax pick (option `softQuery`, docs/sketch.md §10 "Soft query"): with temperature τ > 0 the
 * forward is ŵ_i = Σ_k p_k · c_k over the weight's d candidates c_k = S[cand[k·n + i]], with
 * p = softmax(|c_k| / τ) — the sign-aware relaxation of the AbsMax pick (the candidate of largest |·|, its
 * sign kept), which it becomes as τ → 0. Its gradient reaches every candidate, not only the winner:
 *     ∂ŵ/∂c_j = p_j · (1 + sign(c_j) · (c_j − ŵ) / τ)
 * (the p_j term moves the value, the second term moves the weights of the softmax). With τ = 0 it is exactly
 * the hard pick of StatePicks (same winner, ties and NaN). The factors are kept from the forward for backward.
 */
class SoftPicks extends StatePicks {
  /** Absolute temperature of the next forward; 0: the hard pick. */
  tau = 0;
  /** ∂ŵ_i/∂S[cand[k·n + i]] of the last soft forward (float64). */
  private readonly factor: Float64Array;
  private lastSoft = false;

  constructor(n: number, depth: number) {
    super(n, depth);
    this.factor = new Float64Array(depth * n);
  }

  override forward(S: FloatArray, out: FloatArray): void {
    this.lastSoft = this.tau > 0;
    if (!this.lastSoft) {
      super.forward(S, out);
      return;
    }
    const { n, cand, depthOf, pick, factor } = this;
    const invTau = 1 / this.tau;
    for (let i = 0; i < n; i++) {
      const dd = depthOf[i]!;
      if (dd === 1) {
        // an exact group's weight (or one candidate): ŵ = S[cand], ∂ŵ/∂S = 1
        const s = cand[i]!;
        out[i] = S[s]!;
        pick[i] = s;
        factor[i] = 1;
        continue;
      }
      // softmax over |c_k| / τ, shifted by the largest |c| (exp ≤ 1, no overflow); float64 throughout
      let m = -Infinity;
      for (let k = 0; k < dd; k++) m = Math.max(m, Math.abs(S[cand[k * n + i]!]!));
      let z = 0;
      let w = 0;
      for (let k = 0; k < dd; k++) {
        const c = S[cand[k * n + i]!]!;
        const e = Math.exp((Math.abs(c) - m) * invTau);
        factor[k * n + i] = e;
        z += e;
        w += e * c;
      }
      w /= z;
      if (!Number.isFinite(w)) {
        throw new UltraSketchError(ErrorCodes.NOT_FINITE, `sketch soft query: weight ${i} decodes to ${w} (a state is not finite)`);
      }
      for (let k = 0; k < dd; k++) {
        const c = S[cand[k * n + i]!]!;
        const pk = factor[k * n + i]! / z;
        factor[k * n + i] = pk * (1 + Math.sign(c) * (c - w) * invTau);
      }
      out[i] = w;
      pick[i] = -1; // no single state: the picks are the hard query's only
    }
  }

  override scatter(grad: FloatArray, gradW: FloatArray): void {
    if (!this.lastSoft) {
      super.scatter(grad, gradW);
      return;
    }
    const { n, cand, depthOf, factor } = this;
    for (let i = 0; i < n; i++) {
      const g = gradW[i]!;
      for (let k = 0; k < depthOf[i]!; k++) {
        const s = cand[k * n + i]!;
        grad[s] = grad[s]! + factor[k * n + i]! * g;
      }
    }
  }
}

/**
 * Options of the soft query: the initial temperature τ0 relative to the RMS of the matrix's weights, and
 * the steps over which it anneals geometrically to τ0/100; from then on (and for the stored bundle) the pick is
 * the hard one.
 */
export interface SketchSoftQueryOptions {
  tau0: number;
  annealSteps: number;
}

/** The soft query's temperature after `step` steps: τ0 · 100^(−step / annealSteps), 0 (hard) from annealSteps on. */
export function softQueryTemperature(o: SketchSoftQueryOptions, step: number): number {
  if (step >= o.annealSteps) return 0;
  return o.tau0 * Math.pow(0.01, step / o.annealSteps);
}

/** f16BitsToF32 of every 16-bit code (built once, on first use). */
let f16Table: Float32Array | null = null;
function f16Values(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let b = 0; b < 65536; b++) f16Table[b] = f16BitsToF32(b);
  }
  return f16Table;
}

/** A float array of the master precision. */
function floats<T extends FloatArray>(dtype: 'f32' | 'f64' | undefined, n: number): T {
  return (dtype === 'f64' ? new Float64Array(n) : new Float32Array(n)) as T;
}

/**
 * What both state providers share: the parameter is the states, the forward picks from them through a
 * StatePicks table, backward scatters into their gradient. Subclasses say which states the forward reads.
 */
abstract class StatePickProvider<T extends FloatArray> {
  readonly trainable = true;
  protected abstract readonly param: Param<T>;
  protected abstract readonly out: T;
  protected abstract readonly table: StatePicks;

  /** The states the forward picks from: the float masters, or (quantizedForward) their stored rounding. */
  protected abstract forwardStates(): FloatArray;

  /** The trained states (float master copy, stored order). */
  states(): T {
    return this.param.data;
  }

  weight(): T {
    this.table.forward(this.forwardStates(), this.out);
    return this.out;
  }

  backward(gradW: T): void {
    this.table.scatter(this.param.grad, gradW);
  }

  parameters(): Param<T>[] {
    return [this.param];
  }
}

export type SketchStateInit = 'absmaxmin' | 'mean';

/** What the sketch and hashednets state providers are both built from. */
export interface StateProviderOptions {
  name: string;
  rows: number;
  cols: number;
  /** The teacher's weight [rows, cols] (read only). */
  weight: Float32Array;
  /** The codec context of the initial encode (seed; saliency where the codec uses it). */
  context?: Partial<CodecContext>;
  /** Weight decay on the states (default false). */
  decay?: boolean;
  /** Master precision (default f32; f64 for gradient checks). */
  dtype?: 'f32' | 'f64';
}

export interface SketchStateProviderOptions<T extends FloatArray = Float32Array> extends StateProviderOptions {
  /** Raw sketch codec options (bpw required; rows, state, hash, groups, alloc, alpha, split). */
  codecOptions: Record<string, unknown>;
  /**
   * State initialisation: 'absmaxmin' (default) — the codec's build, dequantized (so the initial forward equals
   * the post-training bundle's decode exactly); 'mean' — every sketch state = the mean of the weights hashed to
   * it in its sketch row (HashedNets-style bucket statistics; empty → 0). Exact groups keep their weights.
   */
  init?: SketchStateInit;
  /**
   * Quantized forward (default true): the pick and ŵ use the states as the state format stores them
   * (toCodecParams()'s rounding, every step), with a straight-through gradient into the float masters — so the
   * bundle decodes to EXACTLY the trained forward. Without it the forward uses the float masters and the
   * bundle differs by the format's rounding, which can flip a pick between two candidates of nearly equal
   * magnitude (state training drives candidates toward such ties; measured on stories260K). No effect for f32.
   */
  quantizedForward?: boolean;
  /**
   * Annealed soft AbsMax pick while training (query absmaxmin, d ≥ 2; SoftPicks): τ0 relative to the RMS of the
   * matrix's weights, annealed to the hard pick over `annealSteps` steps. The stored bundle is always the hard
   * sketch (toCodecParams is unchanged), which the forward equals once the annealing is over.
   */
  softQuery?: SketchSoftQueryOptions;
}

/** Sketch state training: parameter = the states, forward = AbsMax pick recomputed every step. */
export class SketchStateProvider<T extends FloatArray = Float32Array> extends StatePickProvider<T> implements WeightProvider<T> {
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  readonly codecId = 'sketch';
  readonly init: SketchStateInit;
  readonly quantizedForward: boolean;
  /** The initial encode: seed, groups, layout (its states are those of the init build, not the trained ones). */
  readonly initial: SketchParams;
  readonly options: SketchOptions;
  protected readonly param: Param<T>;
  protected readonly out: T;
  /** Candidates cand[k · n + r · cols + c] (k < d; exact groups: 1) and the picks of the last forward. */
  protected readonly table: StatePicks;

  constructor(o: SketchStateProviderOptions<T>) {
    super();
    this.name = o.name;
    this.rows = o.rows;
    this.cols = o.cols;
    this.init = o.init ?? 'absmaxmin';
    if (this.init !== 'absmaxmin' && this.init !== 'mean') {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `sketch-states: init "${String(this.init)}" (allowed: absmaxmin, mean)`, { source: o.name });
    }
    this.options = sketchCodec.resolveOptions(o.codecOptions);
    const soft = o.softQuery;
    if (soft) {
      // the codec's own check (absmaxmin, d ≥ 2, τ0 range), then the schedule's
      sketchSoftQuery({ ...o.codecOptions, softQuery: soft.tau0 });
      if (!Number.isInteger(soft.annealSteps) || soft.annealSteps < 1) {
        throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `sketch-states: softQuery.annealSteps ${soft.annealSteps} must be a positive integer`, { source: o.name });
      }
    }
    this.quantizedForward = (o.quantizedForward ?? true) && this.options.state !== 'f32';
    const ctx: CodecContext = { name: o.name, seed: 0, ...o.context };
    this.initial = sketchCodec.encode(o.weight, o.rows, o.cols, this.options, ctx);
    const T = this.initial.states.length;
    const n = o.rows * o.cols;
    const d = this.options.rows;
    const signMean = this.options.query === 'signmean';
    const table = signMean ? new SignMeanPicks(n, d) : soft ? new SoftPicks(n, d) : new StatePicks(n, d);
    const { cand, depthOf } = table;
    const groups = sketchGroups(this.initial);
    for (const g of groups) {
      const ch = g.channels;
      const C = ch.length;
      if (!g.family) {
        for (let r = 0; r < o.rows; r++) {
          for (let c = 0; c < C; c++) {
            const at = r * o.cols + ch[c]!;
            cand[at] = g.stateOffset + r * C + c;
            depthOf[at] = 1;
          }
        }
        continue;
      }
      const width = g.alloc.width;
      const idx = new Int32Array(C);
      for (let r = 0; r < o.rows; r++) {
        for (let k = 0; k < d; k++) {
          g.family.rowIndices(r, k, idx);
          for (let c = 0; c < C; c++) cand[k * n + r * o.cols + ch[c]!] = g.stateOffset + k * width + idx[c]!;
          if (g.signs && table instanceof SignMeanPicks) {
            const xi = g.signs[k]!;
            for (let c = 0; c < C; c++) table.sign[k * n + r * o.cols + ch[c]!] = xi[c]!;
          }
        }
        for (let c = 0; c < C; c++) depthOf[r * o.cols + ch[c]!] = d;
      }
    }
    const states = floats<T>(o.dtype, T);
    // absmaxmin: the codec's build, dequantized (for query signmean that build IS the signed bucket means);
    // mean: bucket means per sketch row, exact groups their weights
    if (this.init === 'absmaxmin' || signMean) states.set(dequantizeStates(this.initial));
    else table.bucketMeans(o.weight, states);
    this.table = table;
    this.param = { name: o.name, data: states, grad: floats<T>(o.dtype, T), decay: o.decay ?? false };
    this.out = floats<T>(o.dtype, n);
    if (soft) {
      // τ's scale: the RMS of the matrix's weights (what trained states approach; the AbsMaxMin build's own
      // states are the buckets' smallest weights, ~1/30 of it, and grow during training)
      let sq = 0;
      for (let i = 0; i < n; i++) sq += o.weight[i]! * o.weight[i]!;
      this.softQuery = { ...soft, rms: Math.sqrt(sq / Math.max(1, n)), step: floats<T>(o.dtype, 1) };
      this.updateTemperature();
    }
  }

  /** The soft query's schedule, its scale (RMS of the weights), and the steps done (a buffer: it survives a checkpoint). */
  readonly softQuery: (SketchSoftQueryOptions & { rms: number; step: T }) | null = null;

  /** The absolute temperature of the next forward (0: the hard pick; always 0 without softQuery). */
  temperature(): number {
    return this.table instanceof SoftPicks ? this.table.tau : 0;
  }

  private updateTemperature(): void {
    const sq = this.softQuery;
    if (sq && this.table instanceof SoftPicks) this.table.tau = softQueryTemperature(sq, sq.step[0]!) * sq.rms;
  }

  afterStep(step: number): void {
    if (!this.softQuery) return;
    this.softQuery.step[0] = step;
    this.updateTemperature();
  }

  buffers(): Record<string, T> {
    return this.softQuery ? { softQueryStep: this.softQuery.step } : {};
  }

  afterLoad(): void {
    this.updateTemperature();
  }

  /** The state index each weight decoded from in the last forward (−1 where a soft forward mixed several). */
  picks(): Int32Array {
    return this.table.pick;
  }

  protected forwardStates(): FloatArray {
    if (!this.quantizedForward) return this.param.data;
    const q = this.toCodecParams();
    const state = this.options.state;
    if (state === 'f32') return dequantizeStates(q);
    // The same values as dequantizeStates(q), without its per-call layout: sketch-core caches a layout (hash
    // families included) per params OBJECT, and toCodecParams returns a new one every step, so that call
    // rebuilt every group's hash family every step; q's layout is the initial encode's, cached.
    const out = new Float32Array(q.states.length);
    if (state === 'f16') {
      // a table of every f16 code's value (the per-element conversion was ~0.1 ms per linear per step)
      const table = f16Values();
      const codes = q.states as Uint16Array;
      for (let i = 0; i < codes.length; i++) out[i] = table[codes[i]!]!;
      return out;
    }
    const codes = q.states as Int8Array;
    for (const g of sketchGroups(this.initial)) {
      const perRow = g.alloc.states / g.alloc.depth;
      for (let k = 0; k < g.alloc.depth; k++) {
        const scale = f16BitsToF32(q.scales![g.scaleOffset + k]!);
        const begin = g.stateOffset + k * perRow;
        for (let i = begin; i < begin + perRow; i++) out[i] = Math.fround(codes[i]! * scale);
      }
    }
    return out;
  }

  /**
   * The trained states in the codec's state format (every format rounds toward zero, per sketch row, exactly as
   * the codec's encode quantizes its build), with the initial encode's seed, group map and layout. With
   * `quantizedForward` (default) its decode equals weight() exactly.
   */
  toCodecParams(): SketchParams {
    const p = this.initial;
    const states = allocStates(this.options.state, p.states.length);
    const scales = this.options.state === 'int8' ? new Uint16Array(p.scales!.length) : null;
    const S = new Float32Array(this.param.data); // (the typed-array constructor, not `from`'s iterator: same values)
    for (const g of sketchGroups(p)) {
      const perRow = g.alloc.states / g.alloc.depth;
      for (let k = 0; k < g.alloc.depth; k++) {
        const begin = g.stateOffset + k * perRow;
        const s = quantizeRow(this.options.state, S.subarray(begin, begin + perRow), states, begin);
        if (scales) scales[g.scaleOffset + k] = s;
      }
    }
    return { ...p, states, scales };
  }
}

// -------------------------------------------------------------------------------------------- hashednets

export interface HashedNetsStateProviderOptions extends StateProviderOptions {
  /** Raw hashednets codec options (bpw required; state f16|f32). */
  codecOptions: Record<string, unknown>;
  /** Forward through the f16-rounded states (straight-through), so the bundle decodes exactly to it (default true). */
  quantizedForward?: boolean;
}

/**
 * HashedNets state training (Chen et al. 2015): one hash row (`mixed`, the codec's family), states initialised
 * to the bucket means (computed in float64 here, not the f16-rounded stored ones), Ŵ = S[h(r, c)], gradient
 * scatter-added. `toCodecParams()` stores the trained states as the codec does (f16 rounded to nearest, or f32).
 */
export class HashedNetsStateProvider<T extends FloatArray = Float32Array> extends StatePickProvider<T> implements WeightProvider<T> {
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  readonly codecId = 'hashednets';
  readonly initial: HashedNetsParams;
  readonly options: HashedNetsOptions;
  readonly quantizedForward: boolean;
  protected readonly param: Param<T>;
  protected readonly out: T;
  /** One candidate per weight, the hash row: ŵ = S[h(r, c)]. */
  protected readonly table: StatePicks;

  constructor(o: HashedNetsStateProviderOptions) {
    super();
    this.name = o.name;
    this.rows = o.rows;
    this.cols = o.cols;
    this.options = hashedNetsCodec.resolveOptions(o.codecOptions);
    this.quantizedForward = (o.quantizedForward ?? true) && this.options.state === 'f16';
    this.initial = hashedNetsCodec.encode(o.weight, o.rows, o.cols, this.options, { name: o.name, seed: 0, ...o.context });
    const width = this.initial.states.length;
    const n = o.rows * o.cols;
    const fam = hashedNetsFamily(this.initial);
    this.table = new StatePicks(n, 1, true);
    const row = new Int32Array(o.cols);
    for (let r = 0; r < o.rows; r++) {
      fam.rowIndices(r, 0, row);
      this.table.cand.set(row, r * o.cols);
    }
    const states = floats<T>(o.dtype, width);
    this.table.bucketMeans(o.weight, states);
    this.param = { name: o.name, data: states, grad: floats<T>(o.dtype, width), decay: o.decay ?? false };
    this.out = floats<T>(o.dtype, n);
  }

  protected forwardStates(): FloatArray {
    const S = this.param.data;
    return this.quantizedForward ? Float32Array.from(S, (v) => f16BitsToF32(f32ToF16Bits(v))) : S;
  }

  toCodecParams(): HashedNetsParams {
    const S = this.param.data;
    const states = this.options.state === 'f16' ? Uint16Array.from(S, (v) => f32ToF16Bits(v)) : Float32Array.from(S);
    if (states instanceof Uint16Array) {
      for (let i = 0; i < states.length; i++) {
        if ((states[i]! & 0x7c00) === 0x7c00) {
          throw new UltraSketchError(ErrorCodes.NOT_FINITE, `hashednets state ${i} = ${S[i]} does not fit in f16`, { source: this.name });
        }
      }
    }
    return { ...this.initial, states };
  }
}

// -------------------------------------------------------------------------------------------- factories

/** Codec options from a provider choice: options.codecOptions, plus any sketch option keys given at top level. */
function codecOptionsOf(o: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...((o.codecOptions as Record<string, unknown> | undefined) ?? {}) };
  for (const k of keys) if (o[k] !== undefined && out[k] === undefined) out[k] = o[k];
  return out;
}

function contextOf(ctx: ProviderContext): Partial<CodecContext> {
  return { seed: ctx.seed, ...(ctx.saliency ? { saliency: ctx.saliency } : {}) };
}

/**
 * Register the sketch codecs and the provider kinds
 *   'sketch-states'     — SketchStateProvider (options: codecOptions {bpw, rows, state, hash, groups, …} or the
 *                         same keys at top level; init 'absmaxmin' | 'mean'; decay; steps, the run's step
 *                         count, needed by codec option softQuery);
 *   'hashednets-states' — HashedNetsStateProvider (options: codecOptions {bpw, state} or top level; decay).
 * The literal sketch STE needs no provider of its own: `{kind: 'ste', options: {codec: 'sketch', codecOptions}}`.
 * Explicit and idempotent.
 */
export function registerSketchProviders(): void {
  registerSketchCodecs();
  registerProviderFactory('sketch-states', (ctx, o) => {
    const init = o.init as SketchStateInit | undefined;
    const codecOptions = codecOptionsOf(o, SKETCH_OPTION_KEYS);
    // codec option softQuery = τ0 (training only): annealed over the first 80% of the run's steps (option
    // `steps`, the schedule's length), so the last 20% train the states under the hard pick the bundle stores
    const tau0 = sketchSoftQuery(codecOptions);
    const { softQuery: _training, ...stored } = codecOptions;
    let softQuery: SketchSoftQueryOptions | undefined;
    if (tau0 !== undefined) {
      const steps = o.steps;
      if (typeof steps !== 'number' || !Number.isInteger(steps) || steps < 1) {
        throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `sketch-states ${ctx.name}: softQuery needs the run's step count (provider option steps, got ${String(steps)})`, {
          source: '--soft-query',
          hint: 'the soft query anneals over the training run: give it with --finetune-steps',
        });
      }
      softQuery = { tau0, annealSteps: Math.max(1, Math.round(0.8 * steps)) };
    }
    return new SketchStateProvider({
      name: ctx.name,
      rows: ctx.rows,
      cols: ctx.cols,
      weight: ctx.weight,
      codecOptions: stored,
      context: contextOf(ctx),
      ...(init !== undefined ? { init } : {}),
      ...(typeof o.decay === 'boolean' ? { decay: o.decay } : {}),
      ...(softQuery ? { softQuery } : {}),
    });
  });
  registerProviderFactory(
    'hashednets-states',
    (ctx, o) =>
      new HashedNetsStateProvider({
        name: ctx.name,
        rows: ctx.rows,
        cols: ctx.cols,
        weight: ctx.weight,
        codecOptions: codecOptionsOf(o, ['bpw', 'state']),
        context: contextOf(ctx),
        ...(typeof o.decay === 'boolean' ? { decay: o.decay } : {}),
      }),
  );
}
