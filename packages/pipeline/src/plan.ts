/**
 * A mixed bit plan (issue 14; ours, in neither paper): one global bit budget spent across the compressed
 * linears by measured sensitivity, instead of the same bits-per-weight for every matrix.
 *
 * Every compressed linear is encoded at each candidate rate; its error at that rate is the activation-weighted
 * squared error Σ_ij (W − Ŵ)²_ij · E[a_j²] — the expected squared error of its output on calibration
 * activations (Frobenius when no statistics are given) — and its cost the bits the codec really stores. Starting
 * from every matrix at its cheapest feasible rate, the plan repeatedly buys the upgrade with the largest error
 * reduction per extra bit (marginal analysis; an upgrade that reduces nothing is never bought) while the total
 * stays within the budget. The budget is the bits of the uniform plan at the target rate, so "mixed vs uniform"
 * compares equal stored bits. Output errors of different matrices are summed as if equally important to the
 * loss: a first-order proxy, which is why the result is checked after training (docs/results.md).
 */
import { ErrorCodes, UltraSketchError, getCodec } from '@ultrasketch/core';
import type { ModelWeights } from '@ultrasketch/model';
import { NodeSession } from '@ultrasketch/runtime-node';
import { logSoftmaxRows } from '@ultrasketch/ste-trainer';
import { registerAllCodecs } from './codecs.js';
import { weightSeed } from './compress/defaults.js';

export interface SensitivityPlanInput {
  weights: ModelWeights;
  codecId: string;
  /** Raw codec options; `bpw` is the uniform target whose total bits are the budget. */
  codecOptions: Record<string, unknown>;
  /** The linears to plan (canonical names). */
  names: readonly string[];
  /** Per linear E[a_j²] over its input channels (calibrate()); Frobenius error without it. */
  saliency?: ReadonlyMap<string, Float64Array>;
  /**
   * How a linear's error at a rate is measured: 'activation' = Σ (W − Ŵ)²·E[a²] (its own output error, cheap);
   * 'kl' = the float model's KL to the same model with only this linear compressed at this rate, on
   * `klWindows` (the error as the whole network propagates it — what training will have to undo).
   */
  objective?: 'activation' | 'kl';
  /** Calibration token windows (each starting with BOS) for the 'kl' objective. */
  klWindows?: readonly Int32Array[];
  /** Candidate rates (default: the target × 0.5, 0.75, 1, 1.5, 2). */
  candidates?: readonly number[];
  /** The run seed (each matrix is encoded with weightSeed(seed, name), as compress does). */
  seed: number;
  onProgress?: (done: number, total: number) => void;
}

export interface PlannedLinear {
  name: string;
  bpw: number;
  bits: number;
  /** Error at the chosen rate and at the uniform rate (null when the uniform rate is infeasible for it). */
  error: number;
  uniformError: number | null;
}

export interface SensitivityPlan {
  /** bpw target per linear. */
  bpw: Record<string, number>;
  budgetBits: number;
  plannedBits: number;
  totalError: number;
  uniformError: number;
  candidates: number[];
  linears: PlannedLinear[];
  /** Linears the target rate cannot reach (left to compress()'s --small-matrix policy, as in the uniform plan). */
  excluded: string[];
  objective: 'activation' | 'kl';
}

/** Plan per-linear rates for `codecId` within the bits of the uniform plan at codecOptions.bpw. */
export function sensitivityPlan(input: SensitivityPlanInput): SensitivityPlan {
  const target = input.codecOptions.bpw;
  if (typeof target !== 'number' || !(target > 0)) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `a sensitivity plan needs a --bpw target (codec ${input.codecId})`, {
      source: '--plan',
      hint: 'give --bpw with --plan sensitivity, or use --plan uniform',
    });
  }
  registerAllCodecs();
  const codec = getCodec(input.codecId, undefined, '--codec');
  const candidates = [...new Set((input.candidates ?? [0.5, 0.75, 1, 1.5, 2].map((f) => +(f * target).toFixed(4))).concat([target]))].sort((a, b) => a - b);
  interface Option {
    bpw: number;
    bits: number;
    error: number;
  }
  const measured: Array<{ name: string; options: Option[]; uniform: Option | null }> = [];
  const objective = input.objective ?? 'activation';
  const kl = objective === 'kl' ? klMeter(input.weights, input.klWindows ?? []) : null;
  let done = 0;
  for (const name of input.names) {
    const t = input.weights.tensors.get(name);
    if (!t || t.shape.length !== 2) throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `no 2-D weight ${name} to plan`);
    const [rows, cols] = t.shape as [number, number];
    const sal = input.saliency?.get(name);
    const options: Option[] = [];
    for (const bpw of candidates) {
      let params;
      try {
        const o = codec.resolveOptions({ ...input.codecOptions, bpw });
        params = codec.encode(t.data, rows, cols, o, { name, seed: weightSeed(input.seed, name), ...(sal ? { saliency: sal } : {}) });
      } catch (err) {
        // This rate is infeasible for this matrix (e.g. LittleBit's scales alone exceed it): not a candidate.
        if (err instanceof UltraSketchError && (err.code === ErrorCodes.INFEASIBLE_BUDGET || err.code === ErrorCodes.BAD_ARGUMENT)) continue;
        throw err;
      }
      const w = codec.decode(params);
      let e = 0;
      if (kl) e = kl(name, w);
      else {
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < cols; c++) {
            const d = t.data[r * cols + c]! - w[r * cols + c]!;
            e += d * d * (sal ? sal[c]! : 1);
          }
        }
      }
      options.push({ bpw, bits: codec.bits(params).total, error: e });
    }
    measured.push({ name, options, uniform: options.find((o) => o.bpw === target) ?? null });
    input.onProgress?.(++done, input.names.length);
  }
  // A matrix the target itself cannot reach is left out of the plan: compress() keeps it dense (or refuses)
  // exactly as under the uniform plan, so both plans compress the same matrices.
  const excluded = measured.filter((x) => x.uniform === null).map((x) => x.name);
  const table = measured.filter((x) => x.uniform !== null);
  if (table.length === 0) {
    throw new UltraSketchError(ErrorCodes.INFEASIBLE_BUDGET, `no linear can be compressed at ${target} bpw by codec ${codec.id}`, { source: '--plan', hint: 'raise --bpw' });
  }
  const budgetBits = table.reduce((a, x) => a + x.uniform!.bits, 0);
  // Greedy marginal allocation from the cheapest feasible rate of each matrix.
  const at = table.map(() => 0);
  let bits = table.reduce((a, x) => a + x.options[0]!.bits, 0);
  if (bits > budgetBits) throw new UltraSketchError(ErrorCodes.INFEASIBLE_BUDGET, 'even the cheapest candidate rates exceed the uniform plan\'s bits');
  for (;;) {
    let best = -1;
    let bestGain = 0;
    let bestTo = 0;
    table.forEach((x, i) => {
      const cur = x.options[at[i]!]!;
      // Any higher rate (not only the next): the next one can be a worse buy than the one after it.
      for (let j = at[i]! + 1; j < x.options.length; j++) {
        const o = x.options[j]!;
        const extra = o.bits - cur.bits;
        if (extra <= 0 || bits + extra > budgetBits) continue;
        const gain = (cur.error - o.error) / extra;
        if (gain > bestGain) {
          bestGain = gain;
          best = i;
          bestTo = j;
        }
      }
    });
    if (best < 0) break;
    bits += table[best]!.options[bestTo]!.bits - table[best]!.options[at[best]!]!.bits;
    at[best] = bestTo;
  }
  const linears: PlannedLinear[] = table.map((x, i) => {
    const o = x.options[at[i]!]!;
    return { name: x.name, bpw: o.bpw, bits: o.bits, error: o.error, uniformError: x.uniform?.error ?? null };
  });
  return {
    bpw: Object.fromEntries(linears.map((l) => [l.name, l.bpw])),
    objective,
    excluded,
    budgetBits,
    plannedBits: bits,
    totalError: linears.reduce((a, l) => a + l.error, 0),
    uniformError: table.reduce((a, x) => a + x.uniform!.error, 0),
    candidates,
    linears,
  };
}

/**
 * KL(float ‖ float with one linear replaced) in nats per position over `windows`, through runtime-node's
 * kernels (one session per replacement; the float model's log-probabilities computed once).
 */
function klMeter(weights: ModelWeights, windows: readonly Int32Array[]): (name: string, replacement: Float32Array) => number {
  if (windows.length === 0) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, "the 'kl' plan objective needs calibration windows", { source: '--plan' });
  const V = weights.config.vocabSize;
  const logProbs = (w: ModelWeights): Float32Array[] => {
    const session = NodeSession.fromWeights(w, { contextLength: Math.max(...windows.map((x) => x.length)), threads: 1 });
    try {
      return windows.map((win) => {
        session.reset();
        const logits = session.forward(win, { logits: 'all' }).slice();
        logSoftmaxRows(logits, win.length, V);
        return logits;
      });
    } finally {
      session.dispose();
    }
  };
  const ref = logProbs(weights);
  const positions = windows.reduce((a, w) => a + w.length, 0);
  return (name, replacement) => {
    const t = weights.tensors.get(name)!;
    const tensors = new Map(weights.tensors);
    tensors.set(name, { ...t, data: replacement });
    const got = logProbs({ ...weights, tensors });
    let kl = 0;
    ref.forEach((lp, i) => {
      const lq = got[i]!;
      for (let j = 0; j < lp.length; j++) kl += Math.exp(lp[j]!) * (lp[j]! - lq[j]!);
    });
    const value = kl / positions;
    if (!Number.isFinite(value)) throw new UltraSketchError(ErrorCodes.NOT_FINITE, `the KL with ${name} compressed is ${value}`, { hint: 'check the float model with `ultrasketch eval`' });
    return value;
  };
}
