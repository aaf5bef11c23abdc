import { ErrorCodes, Rng } from '@ultrasketch/core';
import { TensorNames, linearShape } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import {
  type LittleBitParams,
  type WorkPath,
  dualSvidFactors,
  littlebitCodec,
  littlebitFormulaBits,
  littlebitStoredBits,
  lsStep,
  refinePaths,
  signStep,
  toPath,
  weightedError,
  workDense,
  workFromFactors,
} from '../src/index.js';
import { codeOf, denseFromStored, stories3MCalibrated } from './helpers.js';

// Opt-in refinements of the initialization (src/refine.ts): least-squares scales (lsRounds), backfitting of the
// two paths (refineRounds), optionally activation-weighted (refineObjective 'activation'). Same stored form.

const ctx = (name = 'test', seed = 0, saliency?: Float64Array) => ({ name, seed, ...(saliency ? { saliency } : {}) });
const opts = (raw: Record<string, unknown>) => littlebitCodec.resolveOptions(raw);

/** Σ (W − Ŵ)² w_j with Ŵ built entry by entry from the stored signs and f16 scales (the oracle). */
function storedError(w: ArrayLike<number>, p: LittleBitParams, colWeight?: Float64Array): number {
  const d = denseFromStored(p);
  let e = 0;
  for (let i = 0; i < d.length; i++) e += (w[i]! - d[i]!) ** 2 * (colWeight ? colWeight[i % p.cols]! : 1);
  return e;
}

/** A matrix with a decaying spectrum plus noise (LLM weights are closer to this than to pure noise). */
function lowRankish(rows: number, cols: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const w = rng.normalArray(rows * cols);
  const k = Math.min(rows, cols, 6);
  for (let t = 0; t < k; t++) {
    const a = rng.normalArray(rows);
    const b = rng.normalArray(cols);
    const s = 3 / (t + 1);
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) w[i * cols + j] = w[i * cols + j]! + s * a[i]! * b[j]!;
  }
  return w;
}

const salOf = (cols: number, seed: number) => Float64Array.from(new Rng(seed).normalArray(cols), (x) => 0.05 + x * x);

describe('refinement options', () => {
  it('are absent from the resolved options unless asked for (the default encoding and bundle metadata are unchanged)', () => {
    const base = { bpw: 0.55, rank: null, residual: true, rankRounding: 'floor', oversampling: 10, powerIterations: 2 };
    expect(opts({})).toEqual(base);
    expect(opts({ refineRounds: 0, lsRounds: '0', refineSigns: false, refineObjective: 'frobenius' })).toEqual(base);
    const o = opts({ refineRounds: '2', lsRounds: 5, refineSigns: 'true', refineObjective: 'activation' });
    expect(o).toEqual({ ...base, refineRounds: 2, lsRounds: 5, refineSigns: true, refineObjective: 'activation' });
    expect(opts(JSON.parse(JSON.stringify(o)))).toEqual(o);
    // explicit zeros encode bit for bit like the default
    const w = lowRankish(20, 30, 1);
    const a = littlebitCodec.toTensors(littlebitCodec.encode(w, 20, 30, opts({ rank: 4 }), ctx()));
    const b = littlebitCodec.toTensors(littlebitCodec.encode(w, 20, 30, opts({ rank: 4, refineRounds: 0, lsRounds: 0 }), ctx()));
    for (const k of Object.keys(a)) expect([...b[k]!.data]).toEqual([...a[k]!.data]);
  });

  it.each<[string, Record<string, unknown>]>([
    ['refineRounds -1', { refineRounds: -1 }],
    ['refineRounds 1.5', { refineRounds: 1.5 }],
    ['refineRounds 65', { refineRounds: 65 }],
    ['refineRounds abc', { refineRounds: 'abc' }],
    ['lsRounds -1', { lsRounds: -1 }],
    ['lsRounds true', { lsRounds: true }],
    ['refineRounds without the residual path', { refineRounds: 2, residual: false }],
    ['refineObjective l1', { lsRounds: 2, refineObjective: 'l1' }],
    ['refineSigns maybe', { lsRounds: 2, refineSigns: 'maybe' }],
    ['refineSigns without lsRounds', { refineSigns: true }],
    ['refineObjective activation with nothing to refine', { refineObjective: 'activation' }],
  ])('rejects %s with BAD_ARGUMENT', (_label, raw) => {
    expect(codeOf(() => opts(raw))).toBe(ErrorCodes.BAD_ARGUMENT);
  });

  it("refineObjective 'activation' without calibration statistics (or of the wrong length) is BAD_ARGUMENT at encode", () => {
    const w = lowRankish(12, 10, 2);
    const o = opts({ rank: 2, lsRounds: 2, refineObjective: 'activation' });
    expect(codeOf(() => littlebitCodec.encode(w, 12, 10, o, ctx()))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(codeOf(() => littlebitCodec.encode(w, 12, 10, o, ctx('t', 0, salOf(9, 1))))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(codeOf(() => littlebitCodec.encode(w, 12, 10, o, ctx('t', 0, salOf(10, 1))))).toBeUndefined();
  });
});

describe('refined encodings: same stored form, exact bits, never worse', () => {
  const VARIANTS: Array<Record<string, unknown>> = [
    { lsRounds: 4, residual: false },
    { lsRounds: 4 },
    { refineRounds: 3 },
    { refineRounds: 2, lsRounds: 4 },
    { refineRounds: 2, lsRounds: 4, refineObjective: 'activation' },
    { lsRounds: 3, residual: false, refineObjective: 'activation' },
    { lsRounds: 3, residual: false, refineSigns: true },
    { refineRounds: 1, lsRounds: 3, refineSigns: true, refineObjective: 'activation' },
  ];
  const SHAPES: Array<[number, number, Record<string, unknown>]> = [
    [13, 7, { rank: 3 }],
    [33, 130, { rank: 9 }],
    [64, 192, { bpw: 1.0 }],
    [192, 192, { bpw: 0.55 }],
  ];

  for (const [rows, cols, size] of SHAPES) {
    it.each(VARIANTS)(`${rows}×${cols} ${JSON.stringify(size)} %j`, (variant) => {
      const w = lowRankish(rows, cols, rows * 7 + cols);
      const sal = salOf(cols, rows + cols);
      const plainO = opts({ ...size, residual: variant.residual ?? true });
      const o = opts({ ...size, ...variant });
      const plain = littlebitCodec.encode(w, rows, cols, plainO, ctx('t', 3, sal));
      const p = littlebitCodec.encode(w, rows, cols, o, ctx('t', 3, sal));
      // same rank, same tensors (names, dtypes, shapes), same bits; bits() = stored bytes × 8
      expect(p.rank).toBe(plain.rank);
      const t = littlebitCodec.toTensors(p);
      const t0 = littlebitCodec.toTensors(plain);
      expect(Object.keys(t).sort()).toEqual(Object.keys(t0).sort());
      for (const k of Object.keys(t)) expect([t[k]!.dtype, t[k]!.shape]).toEqual([t0[k]!.dtype, t0[k]!.shape]);
      const bytes = Object.values(t).reduce((n, x) => n + x.data.byteLength, 0);
      expect(littlebitCodec.bits(p).total).toBe(bytes * 8);
      expect(littlebitCodec.bits(p).total).toBe(littlebitStoredBits(rows, cols, p.rank, o.residual));
      expect(littlebitCodec.bits(p).total).toBe(littlebitCodec.bits(plain).total);
      if (typeof size.bpw === 'number') {
        // the budget is never exceeded (these shapes have no word padding: stored = formula bits)
        expect(littlebitFormulaBits(rows, cols, p.rank, o.residual)).toBeLessThanOrEqual(size.bpw * rows * cols);
        expect(littlebitCodec.bits(p).total).toBeLessThanOrEqual(size.bpw * rows * cols);
      }
      // decode() = the product of the stored factors
      const d = littlebitCodec.decode(p);
      const ref = denseFromStored(p);
      let scale = 0;
      for (const x of ref) scale = Math.max(scale, Math.abs(x));
      for (let i = 0; i < d.length; i++) expect(Math.abs(d[i]! - ref[i]!)).toBeLessThanOrEqual(1e-6 * scale);
      // round trip through the stored tensors (the options are what a bundle's metadata keeps)
      const copy = Object.fromEntries(Object.entries(t).map(([k, x]) => [k, { ...x, data: x.data.slice() }]));
      const back = littlebitCodec.fromTensors(copy, rows, cols, opts(JSON.parse(JSON.stringify(o))), 'bundle.usk');
      expect([...littlebitCodec.decode(back)]).toEqual([...d]);
      // the objective it minimizes (of the stored, f16-rounded factors) never increases
      const cw = o.refineObjective === 'activation' ? sal : undefined;
      expect(storedError(w, p, cw)).toBeLessThanOrEqual(storedError(w, plain, cw));
      // deterministic
      const again = littlebitCodec.toTensors(littlebitCodec.encode(w, rows, cols, o, ctx('t', 3, sal)));
      for (const k of Object.keys(t)) expect([...again[k]!.data]).toEqual([...t[k]!.data]);
    });
  }

  it('on a matrix with a decaying spectrum the refinements strictly help (both objectives)', () => {
    const [rows, cols] = [64, 96];
    const w = lowRankish(rows, cols, 11);
    const sal = salOf(cols, 12);
    const e = (raw: Record<string, unknown>, cw?: Float64Array) => storedError(w, littlebitCodec.encode(w, rows, cols, opts({ rank: 6, ...raw }), ctx('t', 0, sal)), cw);
    expect(e({ lsRounds: 4, residual: false })).toBeLessThan(0.99 * e({ residual: false }));
    expect(e({ lsRounds: 4 })).toBeLessThan(0.99 * e({}));
    expect(e({ refineRounds: 2, lsRounds: 4 })).toBeLessThan(0.99 * e({}));
    expect(e({ lsRounds: 4, refineObjective: 'activation' }, sal)).toBeLessThan(0.99 * e({ lsRounds: 4 }, sal));
    expect(e({ lsRounds: 4, refineSigns: true, residual: false })).toBeLessThan(0.99 * e({ lsRounds: 4, residual: false }));
  });
});

describe('least-squares scale steps (float64, before f16 rounding)', () => {
  it.each([
    [17, 11, 3, false],
    [40, 25, 7, true],
    [5, 60, 5, true],
  ])('%i×%i rank %i (weighted %s): every block update is non-increasing and ends at a stationary g', (rows, cols, rank, weighted) => {
    const w = lowRankish(rows, cols, rows + rank);
    const t = Float64Array.from(w);
    const cw = weighted ? salOf(cols, rank) : undefined;
    const wp: WorkPath = workFromFactors(dualSvidFactors({ rows, cols, data: w }, rank));
    let prev = weightedError(t, [workDense(wp, rows, cols).data], cols, cw);
    for (let round = 0; round < 6; round++) {
      lsStep(wp, t, rows, cols, cw);
      const e = weightedError(t, [workDense(wp, rows, cols).data], cols, cw);
      expect(e).toBeLessThanOrEqual(prev * (1 + 1e-12));
      prev = e;
    }
    // g was the last block: ∂/∂g_j Σ (T − Ŵ)² w_j = −2 w_j Σ_i (T − Ŵ)_ij N_ij = 0 with N = diag(h) U_s diag(ℓ) V_sᵀ
    const d = workDense(wp, rows, cols).data;
    for (let j = 0; j < cols; j++) {
      let grad = 0;
      let mag = 0;
      for (let i = 0; i < rows; i++) {
        const nij = d[i * cols + j]! / wp.g[j]!;
        grad += (t[i * cols + j]! - d[i * cols + j]!) * nij;
        mag += Math.abs(t[i * cols + j]! * nij);
      }
      expect(Math.abs(grad)).toBeLessThanOrEqual(1e-9 * mag);
    }
  });

  it.each([
    [17, 11, 3, false],
    [40, 25, 7, true],
    [60, 5, 5, false],
  ])('%i×%i rank %i (weighted %s): sign flips with the scales fixed never increase the objective, and stop', (rows, cols, rank, weighted) => {
    const w = lowRankish(rows, cols, rows * rank);
    const t = Float64Array.from(w);
    const cw = weighted ? salOf(cols, rank + 1) : undefined;
    const wp: WorkPath = workFromFactors(dualSvidFactors({ rows, cols, data: w }, rank));
    let prev = weightedError(t, [workDense(wp, rows, cols).data], cols, cw);
    let flips = Infinity;
    for (let round = 0; round < 12 && flips > 0; round++) {
      flips = signStep(wp, t, rows, cols, cw, 64);
      const e = weightedError(t, [workDense(wp, rows, cols).data], cols, cw);
      expect(e).toBeLessThanOrEqual(prev * (1 + 1e-12));
      prev = e;
    }
    for (const x of [...wp.u, ...wp.v]) expect(Math.abs(x)).toBe(1);
    // with scales fixed and enough sweeps, the signs reach a local minimum: a further pass flips nothing
    expect(signStep(wp, t, rows, cols, cw, 64)).toBe(0);
  });

  it('refinePaths takes paths of different ranks (an uneven split) and never returns a worse stored result', () => {
    const [rows, cols] = [48, 40];
    const w = lowRankish(rows, cols, 5);
    const p1 = toPath(dualSvidFactors({ rows, cols, data: w }, 9));
    const d1 = workDense(workFromFactors(dualSvidFactors({ rows, cols, data: w }, 9)), rows, cols).data;
    const res = Float64Array.from(w, (x, i) => x - d1[i]!);
    const p2 = toPath(dualSvidFactors({ rows, cols, data: res }, 2, { seed: 1 }));
    for (const settings of [{ lsRounds: 3 }, { backfitRounds: 2 }, { lsRounds: 2, refineSigns: true }, { backfitRounds: 2, lsRounds: 3, colWeight: salOf(cols, 2) }]) {
      const r = refinePaths({ rows, cols, data: w }, [p1, p2], [9, 2], settings);
      expect(r.after).toBeLessThanOrEqual(r.before);
      expect(r.paths[0]!.l.length).toBe(9);
      expect(r.paths[1]!.l.length).toBe(2);
    }
  });
});

describe('on stories3M at 0.55 bpw (real weights, real calibration statistics; docs/littlebit.md)', () => {
  const { model, stats } = stories3MCalibrated(1024);

  const measure = (kind: 'q' | 'gate', raw: Record<string, unknown>) => {
    const [rows, cols] = linearShape(model.config, kind);
    const name = TensorNames.linear(0, kind);
    const w = model.tensors.get(name)!.data;
    const s2 = stats.meanSquare.get(name)!;
    const p = littlebitCodec.encode(w, rows, cols, opts({ bpw: 0.55, ...raw }), ctx(name, 0, s2));
    expect(littlebitCodec.bits(p).total).toBeLessThanOrEqual(0.55 * rows * cols);
    let n2 = 0;
    let an2 = 0;
    for (let i = 0; i < w.length; i++) {
      n2 += w[i]! ** 2;
      an2 += w[i]! ** 2 * s2[i % cols]!;
    }
    return { F: Math.sqrt(storedError(w, p) / n2), A: Math.sqrt(storedError(w, p, s2) / an2) };
  };

  it('q and gate: one path refined by alternating signs and least-squares scales beats the two paths refined the same way, on BOTH measures (equal bits)', () => {
    for (const kind of ['q', 'gate'] as const) {
      const one = measure(kind, { residual: false, lsRounds: 8, refineSigns: true });
      const two = measure(kind, { refineRounds: 3, lsRounds: 8, refineSigns: true });
      const twoPlain = measure(kind, {});
      expect(one.F, kind).toBeLessThan(two.F);
      expect(one.A, kind).toBeLessThan(two.A);
      expect(one.F, kind).toBeLessThan(twoPlain.F);
      expect(one.A, kind).toBeLessThan(twoPlain.A);
    }
  });

  it('the sign refits are what matters: > 5% lower relF than Dual-SVID on one path; the activation objective lowers relA further', () => {
    for (const kind of ['q', 'gate'] as const) {
      const dual = measure(kind, { residual: false });
      const scales = measure(kind, { residual: false, lsRounds: 8 });
      const signs = measure(kind, { residual: false, lsRounds: 8, refineSigns: true });
      const signsA = measure(kind, { residual: false, lsRounds: 8, refineSigns: true, refineObjective: 'activation' });
      expect(scales.F, kind).toBeLessThanOrEqual(dual.F);
      expect(signs.F, kind).toBeLessThan(0.95 * dual.F);
      expect(signs.A, kind).toBeLessThan(0.95 * dual.A);
      expect(signsA.A, kind).toBeLessThan(signs.A);
    }
  });

  it('gate (512×192): even with scale refinements the residual path does NOT win relF at equal bits (its scales cost ~16 of 59 ranks)', () => {
    const two = measure('gate', { refineRounds: 3, lsRounds: 8 });
    const one = measure('gate', { residual: false, lsRounds: 8 });
    expect(two.F).toBeGreaterThan(one.F);
  });
});
