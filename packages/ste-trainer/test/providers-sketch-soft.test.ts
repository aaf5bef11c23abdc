import { readFileSync } from 'node:fs';
import { Rng } from '@ultrasketch/core';
import { sketchCodec } from '@ultrasketch/sketch-core';
import { describe, expect, it } from 'vitest';
import { SketchStateProvider, Trainer, getProviderFactory, makeProviders, registerSketchProviders } from '../src/index.js';
import { softQueryTemperature } from '../src/providers-sketch.js';
import { SKETCH_CASES as CASES, laplace, sketchMatrix, stateGradCheck, stories260KWithCalib } from './sketch-fixtures.js';

registerSketchProviders();

describe('sketch-states provider, annealed soft AbsMax query (softQuery)', () => {
  for (const c of CASES) {
    it(`${c.label}: soft forward = Σ softmax(|c|/τ)·c; gradient = finite differences (f64) at τ0 and mid-anneal`, () => {
      const rng = new Rng(5);
      const { w, ctx } = sketchMatrix(c, rng, 99);
      const softQuery = { tau0: 1, annealSteps: 10 };
      const p = new SketchStateProvider<Float64Array>({ name: 't', rows: c.rows, cols: c.cols, weight: w, codecOptions: c.codecOptions, context: ctx, dtype: 'f64', quantizedForward: false, softQuery });
      const hard = new SketchStateProvider<Float64Array>({ name: 't', rows: c.rows, cols: c.cols, weight: w, codecOptions: c.codecOptions, context: ctx, dtype: 'f64', quantizedForward: false });
      const S = p.states();
      for (let i = 0; i < S.length; i++) S[i] = S[i]! + 0.02 * rng.normal();
      hard.states().set(S);
      // the temperature is relative to the RMS of the matrix's weights
      const rms = Math.sqrt(w.reduce((a, v) => a + v * v, 0) / w.length);
      expect(p.softQuery!.rms).toBeCloseTo(rms, 12);
      expect(p.temperature()).toBeCloseTo(rms, 12);

      for (const step of [0, 5]) {
        p.afterStep(step);
        const tau = p.temperature();
        expect(tau).toBeCloseTo(softQueryTemperature(softQuery, step) * p.softQuery!.rms, 15);
        // the forward differs from the hard pick (it mixes candidates) and is their softmax-weighted mean
        const W = Float64Array.from(p.weight());
        const Wh = hard.weight();
        let differs = 0;
        for (let i = 0; i < W.length; i++) if (Math.abs(W[i]! - Wh[i]!) > 1e-12) differs++;
        expect(differs).toBeGreaterThan(0);
        const { G, grad, worst } = stateGradCheck(p, rng);
        expect(worst).toBeLessThan(1e-6);
        // every candidate of a sketch weight gets gradient, not only the winner: more states than the hard pick
        hard.weight();
        const gh = hard.parameters()[0]!.grad;
        gh.fill(0);
        hard.backward(G);
        const nz = (a: Float64Array) => a.reduce((n, v) => n + (v !== 0 ? 1 : 0), 0);
        expect(nz(Float64Array.from(grad))).toBeGreaterThanOrEqual(nz(Float64Array.from(gh)));
      }
    });
  }

  it('annealing: τ falls geometrically to τ0/100, then the forward IS the hard pick and the bundle decodes to it exactly', () => {
    const c = CASES[0]!;
    const rng = new Rng(8);
    const w = laplace(rng, c.rows * c.cols);
    const softQuery = { tau0: 2, annealSteps: 4 };
    const p = new SketchStateProvider({ name: 't', rows: c.rows, cols: c.cols, weight: w, codecOptions: c.codecOptions, context: { seed: 3 }, softQuery });
    const hard = new SketchStateProvider({ name: 't', rows: c.rows, cols: c.cols, weight: w, codecOptions: c.codecOptions, context: { seed: 3 } });
    const taus = [0, 1, 2, 3, 4, 5].map((s) => softQueryTemperature(softQuery, s));
    expect(taus[0]).toBe(2);
    for (let s = 1; s < 4; s++) expect(taus[s]!).toBeLessThan(taus[s - 1]!);
    expect(taus[3]).toBeCloseTo(2 * 0.01 ** 0.75, 12);
    expect(taus[4]).toBe(0);
    expect(taus[5]).toBe(0);
    // states as after some training
    const S = p.states();
    for (let i = 0; i < S.length; i++) S[i] = S[i]! * (1 + 0.3 * rng.normal());
    hard.states().set(S);
    p.afterStep(4);
    expect(p.temperature()).toBe(0);
    const fwd = p.weight().slice();
    expect(Array.from(fwd)).toEqual(Array.from(hard.weight()));
    const stored = p.toCodecParams();
    expect(Object.keys(stored.options)).not.toContain('softQuery');
    const back = sketchCodec.fromTensors(sketchCodec.toTensors(stored), c.rows, c.cols, stored.options, 't');
    expect(Array.from(sketchCodec.decode(back))).toEqual(Array.from(fwd));
    // as τ falls the forward approaches the hard pick
    const h = hard.weight().slice();
    const gap = (step: number) => {
      p.afterStep(step);
      const W = p.weight();
      let s2 = 0;
      for (let i = 0; i < W.length; i++) s2 += (W[i]! - h[i]!) ** 2;
      return s2;
    };
    const gaps = [0, 1, 2, 3].map(gap);
    for (let s = 1; s < 4; s++) expect(gaps[s]!).toBeLessThan(gaps[s - 1]!);
    expect(gaps[0]!).toBeGreaterThan(0);
  });

  it('the step survives a checkpoint: buffers() holds it, afterLoad() restores the temperature', () => {
    const c = CASES[0]!;
    const w = laplace(new Rng(2), c.rows * c.cols);
    const mk = () => new SketchStateProvider({ name: 't', rows: c.rows, cols: c.cols, weight: w, codecOptions: c.codecOptions, context: { seed: 1 }, softQuery: { tau0: 1, annealSteps: 8 } });
    const a = mk();
    a.afterStep(6);
    const b = mk();
    expect(b.temperature()).not.toBe(a.temperature());
    b.buffers().softQueryStep!.set(a.buffers().softQueryStep!);
    b.afterLoad();
    expect(b.temperature()).toBe(a.temperature());
    // without softQuery: no buffers, temperature 0 (the existing checkpoints stay loadable)
    const plain = new SketchStateProvider({ name: 't', rows: c.rows, cols: c.cols, weight: w, codecOptions: c.codecOptions, context: { seed: 1 } });
    expect(plain.buffers()).toEqual({});
    expect(plain.temperature()).toBe(0);
  });

  it('the factory: codec option softQuery + the run steps → annealed over 80% of them; refusals name the flag', () => {
    const make = getProviderFactory('sketch-states');
    const w = laplace(new Rng(4), 12 * 20);
    const ctx = { name: 'm', layer: 0, kind: 'q' as const, rows: 12, cols: 20, weight: w, seed: 5 };
    const p = make(ctx, { codecOptions: { bpw: 2, rows: 3, softQuery: 0.5 }, steps: 10 }) as SketchStateProvider;
    expect(p.softQuery).toMatchObject({ tau0: 0.5, annealSteps: 8 });
    expect(Object.keys(p.options)).not.toContain('softQuery');
    const refused = (o: Record<string, unknown>, msg: RegExp) => {
      try {
        make(ctx, o);
      } catch (e) {
        expect((e as { code: string }).code).toBe('E_BAD_ARGUMENT');
        expect((e as { source?: string }).source).toBe('--soft-query');
        expect(String(e)).toMatch(msg);
        return;
      }
      throw new Error('not refused');
    };
    refused({ codecOptions: { bpw: 2, rows: 3, softQuery: 1 } }, /step count/);
    refused({ codecOptions: { bpw: 2, rows: 3, softQuery: 1, query: 'signmean' }, steps: 10 }, /no pick to soften/);
    refused({ codecOptions: { bpw: 2, rows: 1, softQuery: 1 }, steps: 10 }, /nothing to choose/);
    refused({ codecOptions: { bpw: 2, rows: 3, softQuery: 0 }, steps: 10 }, /\(0, 100\]/);
    refused({ codecOptions: { bpw: 2, rows: 3, softQuery: Number.NaN }, steps: 10 }, /\(0, 100\]/);
    // the codec accepts and validates the key, never returns it (a bundle stores the hard sketch's options)
    expect(sketchCodec.resolveOptions({ bpw: 1, softQuery: 1 })).toEqual(sketchCodec.resolveOptions({ bpw: 1 }));
    expect(() => sketchCodec.resolveOptions({ bpw: 1, rows: 1, softQuery: 1 })).toThrow(/nothing to choose/);
  });
});

describe('end to end: stories260K, 12 KD steps with the soft query', () => {
  it('the KD loss drops, τ reaches the hard pick, and the trained forward equals the stored sketch', () => {
    const { weights, calib } = stories260KWithCalib();
    const steps = 12;
    // the codec option softQuery and the run's step count through the factory (what the pipeline passes)
    const softProviders = makeProviders(weights, (_l, k) => (k === 'o' ? undefined : { kind: 'sketch-states', options: { codecOptions: { bpw: 4, rows: 3, softQuery: 1 }, steps } }), { seed: 1 });
    const t = new Trainer({ teacher: weights, providers: softProviders, calibTokens: calib, batch: 2, seqLen: 32, steps, lr: 3e-3, seed: 1 });
    const losses: number[] = [];
    while (t.completedSteps < steps) losses.push(t.step().loss);
    for (const l of losses) expect(Number.isFinite(l)).toBe(true);
    expect(losses.slice(-3).reduce((a, b) => a + b) / 3).toBeLessThan(losses.slice(0, 3).reduce((a, b) => a + b) / 3);
    const sketchProviders = t.providers.filter((p): p is SketchStateProvider => p instanceof SketchStateProvider);
    expect(sketchProviders.length).toBeGreaterThan(0);
    for (const p of sketchProviders) {
      expect(p.temperature()).toBe(0);
      const fwd = p.weight().slice();
      const stored = p.toCodecParams();
      expect(Array.from(sketchCodec.decode(stored))).toEqual(Array.from(fwd));
    }
  });
});

describe('through the pipeline (what `compress --soft-query` runs)', () => {
  it('the run steps reach the provider, the recipe records softQuery, the bundle options do not; other providers refuse it', async () => {
    const { compress } = await import('../../pipeline/src/compress.js');
    const calibText = readFileSync('/work/shared/data/tinystories/calib.txt', 'utf8');
    const base = { model: '/work/shared/models/stories260K/stories260K.bin', codec: 'sketch', embeddings: 'f16' as const, seed: 0, smallMatrix: 'keep' as const };
    const finetune = { steps: 3, batch: 1, seq: 16, loss: 'kd' as const, data: 'calib' as const, calibText };
    const r = await compress({ ...base, codecOptions: { bpw: 4, query: 'absmaxmin', softQuery: 1 }, finetune });
    expect(r.report.training?.recipe.softQuery).toBe(1);
    expect(Object.keys(r.report.codec.options as object)).not.toContain('softQuery');
    const plain = await compress({ ...base, codecOptions: { bpw: 4, query: 'absmaxmin' }, finetune });
    expect(Object.keys(plain.report.training!.recipe)).not.toContain('softQuery');
    // the soft run trained differently (its last step's loss is not the hard run's), at the same stored bits
    expect(r.report.bpwLinears).toBe(plain.report.bpwLinears);
    expect(r.report.training!.final!.loss).not.toBe(plain.report.training!.final!.loss);
    // the generic straight-through provider would ignore it: refused, naming the flag
    await expect(compress({ ...base, codecOptions: { bpw: 4, query: 'absmaxmin', softQuery: 1 }, finetune: { ...finetune, mode: 'ste' as const } })).rejects.toMatchObject({
      code: 'E_BAD_ARGUMENT',
      source: '--soft-query',
    });
  }, 120_000);
});
