import { Rng, getCodec } from '@ultrasketch/core';
import { dequantizeStates, hashedNetsCodec, sketchCodec, sketchGroups } from '@ultrasketch/sketch-core';
import { describe, expect, it } from 'vitest';
import {
  CodecSteProvider,
  HashedNetsStateProvider,
  SketchStateProvider,
  Trainer,
  makeProviders,
  registerSketchProviders,
} from '../src/index.js';
import { range, worstGradError } from './helpers.js';
import { SKETCH_CASES as CASES, type SketchCase, laplace, sketchMatrix, stateGradCheck, stories260KWithCalib } from './sketch-fixtures.js';

registerSketchProviders();

describe('sketch-states provider', () => {
  for (const c of CASES) {
    it(`${c.label}: absmaxmin init forward = codec decode; gradient = finite differences (f64)`, () => {
      const rng = new Rng(7);
      const { w, ctx } = sketchMatrix(c, rng, 1234);
      const params = sketchCodec.encode(w, c.rows, c.cols, sketchCodec.resolveOptions(c.codecOptions), { name: 't', ...ctx });
      const p32 = new SketchStateProvider({ name: 't', rows: c.rows, cols: c.cols, weight: w, codecOptions: c.codecOptions, context: ctx, quantizedForward: false });
      expect(Array.from(p32.weight())).toEqual(Array.from(sketchCodec.decode(params)));
      // f16 rounding toward zero is idempotent, so the quantized forward starts at the codec's decode too
      // (int8 is not: requantizing recomputes the row scale from the dequantized maximum)
      if (c.codecOptions.state !== 'int8') {
        const q = new SketchStateProvider({ name: 't', rows: c.rows, cols: c.cols, weight: w, codecOptions: c.codecOptions, context: ctx });
        expect(Array.from(q.weight())).toEqual(Array.from(sketchCodec.decode(params)));
      }

      const p = new SketchStateProvider<Float64Array>({ name: 't', rows: c.rows, cols: c.cols, weight: w, codecOptions: c.codecOptions, context: ctx, dtype: 'f64', quantizedForward: false });
      const S = p.states();
      // "train" the states a bit so that picks are not just the build's
      for (let i = 0; i < S.length; i++) S[i] = S[i]! + 0.02 * rng.normal();
      const { G, grad, worst } = stateGradCheck(p, rng);
      expect(worst).toBeLessThan(1e-6);
      // every weight is exactly one of its candidates and the gradient of a state = Σ G over weights picking it
      const picks = p.picks();
      p.weight();
      for (let i = 0; i < picks.length; i++) expect(p.weight()[i]).toBe(S[picks[i]!]);
      // linear in gradW
      const g1 = Float64Array.from(G, (x) => 0.3 * x);
      const g2 = Float64Array.from(G, (x) => 0.7 * x);
      const before = Float64Array.from(grad);
      grad.fill(0);
      p.backward(g1);
      p.backward(g2);
      for (let i = 0; i < grad.length; i++) expect(grad[i]).toBeCloseTo(before[i]!, 12);
    });
  }

  it('toCodecParams: the bundle decodes exactly to the provider forward (quantized forward, every format)', () => {
    for (const c of CASES) {
      for (const quantizedForward of [true, false]) {
        const rng = new Rng(3);
        const w = laplace(rng, c.rows * c.cols);
        const p = new SketchStateProvider({ name: 't', rows: c.rows, cols: c.cols, weight: w, codecOptions: c.codecOptions, context: { seed: 9 }, quantizedForward });
        const S = p.states();
        for (let i = 0; i < S.length; i++) S[i] = S[i]! * (1 + 0.5 * rng.normal()) + 0.01 * rng.normal();
        const fwd = p.weight().slice();
        const stored = p.toCodecParams();
        const codec = getCodec('sketch');
        // round trip through the stored tensors (what the bundle holds)
        const back = codec.fromTensors(codec.toTensors(stored), c.rows, c.cols, stored.options, 't');
        const dec = codec.decode(back);
        if (quantizedForward || stored.options.state === 'f32') {
          expect(Array.from(dec)).toEqual(Array.from(fwd));
          continue;
        }
        // float forward: the bundle differs by the state rounding (toward-zero f16: ≤ 2^-10 relative; int8: ≤ one
        // step of the row scale); a pick may flip only between candidates whose magnitudes are within it.
        let maxAbs = 0;
        for (const v of S) maxAbs = Math.max(maxAbs, Math.abs(v));
        const tol = stored.options.state === 'f16' ? (x: number) => Math.abs(x) * 2 ** -10 + 1e-7 : () => maxAbs / 127 + 1e-6;
        for (let i = 0; i < fwd.length; i++) {
          if (Math.abs(dec[i]! - fwd[i]!) > tol(fwd[i]!)) {
            expect(Math.abs(Math.abs(dec[i]!) - Math.abs(fwd[i]!))).toBeLessThanOrEqual(tol(fwd[i]!));
          }
        }
        // setting the masters to the stored values makes the float forward equal the decode exactly
        S.set(dequantizeStates(back));
        expect(Array.from(p.weight())).toEqual(Array.from(dec));
      }
    }
  });

  it('mean init: sketch states are the means of their buckets; exact groups keep their weights', () => {
    const rng = new Rng(5);
    const rows = 6;
    const cols = 10;
    const w = laplace(rng, rows * cols);
    const p = new SketchStateProvider<Float64Array>({
      name: 't', rows, cols, weight: w, codecOptions: { bpw: 3, rows: 2, state: 'f32', hash: 'mixed' }, context: { seed: 2 }, init: 'mean', dtype: 'f64',
    });
    const S = p.states();
    const fam = getFamilies(p)[0]!;
    const width = S.length / 2;
    for (let k = 0; k < 2; k++) {
      const sums = new Float64Array(width);
      const cnt = new Float64Array(width);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
        const s = fam.index(r, c, k);
        sums[s] += w[r * cols + c]!;
        cnt[s]++;
      }
      for (let s = 0; s < width; s++) expect(S[k * width + s]).toBeCloseTo(cnt[s] ? sums[s]! / cnt[s]! : 0, 12);
    }
  });

  it('deterministic: same weights, options and seed → identical states, picks and stored params', () => {
    const rng = new Rng(11);
    const w = laplace(rng, 16 * 24);
    const mk = () => new SketchStateProvider({ name: 't', rows: 16, cols: 24, weight: w, codecOptions: { bpw: 1, hash: 'rowrun' }, context: { seed: 77 } });
    const a = mk();
    const b = mk();
    expect(Array.from(a.weight())).toEqual(Array.from(b.weight()));
    expect(Array.from(a.picks())).toEqual(Array.from(b.picks()));
    expect(sketchCodec.toTensors(a.toCodecParams())).toEqual(sketchCodec.toTensors(b.toCodecParams()));
  });

  it('the literal sketch STE works through the generic ste provider: Ŵ = decode(build(W)), identity backward, rebuild', () => {
    const rng = new Rng(13);
    const w = laplace(rng, 8 * 16);
    const codecOptions = { bpw: 2, rows: 3 };
    const p = new CodecSteProvider({ name: 't', rows: 8, cols: 16, weight: w, codec: 'sketch', options: codecOptions, context: { seed: 4 } });
    const o = sketchCodec.resolveOptions(codecOptions);
    expect(Array.from(p.weight())).toEqual(Array.from(sketchCodec.decode(sketchCodec.encode(w, 8, 16, o, { name: 't', seed: 4 }))));
    const G = Float32Array.from({ length: w.length }, () => rng.normal());
    p.backward(G);
    expect(Array.from(p.parameters()[0]!.grad)).toEqual(Array.from(G));
    // an update of W followed by afterStep rebuilds the sketch from the new W
    const W = p.parameters()[0]!.data;
    for (let i = 0; i < W.length; i++) W[i] = W[i]! - 0.05 * G[i]!;
    p.afterStep(1);
    expect(Array.from(p.weight())).toEqual(Array.from(sketchCodec.decode(sketchCodec.encode(W, 8, 16, o, { name: 't', seed: 4 }))));
    expect(p.codecId).toBe('sketch');
  });
});

describe('hashednets-states provider', () => {
  it('bucket-mean init (= the codec up to f16), scatter-add gradient = finite differences, stored states round-trip', () => {
    const rng = new Rng(21);
    const rows = 10;
    const cols = 18;
    const w = laplace(rng, rows * cols);
    const codecOptions = { bpw: 2 };
    const p = new HashedNetsStateProvider<Float64Array>({ name: 't', rows, cols, weight: w, codecOptions, context: { seed: 5 }, dtype: 'f64', quantizedForward: false });
    const dec0 = hashedNetsCodec.decode(hashedNetsCodec.encode(w, rows, cols, hashedNetsCodec.resolveOptions(codecOptions), { name: 't', seed: 5 }));
    const W0 = p.weight();
    for (let i = 0; i < W0.length; i++) expect(Math.abs(W0[i]! - dec0[i]!)).toBeLessThanOrEqual(Math.abs(W0[i]!) * 2 ** -11 + 1e-7);
    const S = p.states();
    const G = Float64Array.from({ length: rows * cols }, () => rng.normal());
    const loss = () => {
      const W = p.weight();
      let s = 0;
      for (let i = 0; i < W.length; i++) s += G[i]! * W[i]!;
      return s;
    };
    p.backward(G);
    const r = worstGradError(loss, S, Float64Array.from(p.parameters()[0]!.grad), range(S.length), 1e-6, 1e-9);
    expect(r.worst).toBeLessThan(1e-7);
    for (let i = 0; i < S.length; i++) S[i] = S[i]! + 0.01 * rng.normal();
    const stored = p.toCodecParams();
    const dec = hashedNetsCodec.decode(stored);
    const fwd = p.weight();
    for (let i = 0; i < fwd.length; i++) expect(Math.abs(dec[i]! - fwd[i]!)).toBeLessThanOrEqual(Math.abs(fwd[i]!) * 2 ** -11 + 1e-7);
    // f32 states: exact
    const q = new HashedNetsStateProvider({ name: 't', rows, cols, weight: w, codecOptions: { bpw: 4, state: 'f32' }, context: { seed: 5 } });
    q.states()[0] = 0.123;
    expect(Array.from(hashedNetsCodec.decode(q.toCodecParams()))).toEqual(Array.from(q.weight()));
    // f16 states, quantized forward (default): exact
    const f = new HashedNetsStateProvider({ name: 't', rows, cols, weight: w, codecOptions, context: { seed: 5 } });
    for (let i = 0; i < f.states().length; i++) f.states()[i] = f.states()[i]! + 0.01 * rng.normal();
    expect(Array.from(hashedNetsCodec.decode(f.toCodecParams()))).toEqual(Array.from(f.weight()));
  });
});

describe('end to end: stories260K, 20 KD steps on calib, sketch-states (both inits) and hashednets-states', () => {
  it('the KD loss and the calib KL drop for each provider', () => {
    const { weights, calib } = stories260KWithCalib();
    const wins = [0, 1].map((i) => calib.subarray(20000 + i * 65, 20000 + (i + 1) * 65));
    const run = (kind: string, options: Record<string, unknown>) => {
      const providers = makeProviders(weights, (_l, k) => (k === 'o' ? undefined : { kind, options }), { seed: 1 });
      const t = new Trainer({ teacher: weights, providers, calibTokens: calib, batch: 2, seqLen: 32, steps: 20, lr: 3e-3, seed: 1 });
      const before = t.evaluate(wins);
      const losses: number[] = [];
      while (t.completedSteps < 20) losses.push(t.step().loss);
      const after = t.evaluate(wins);
      // the bundle's codec params decode exactly to the trained forward
      for (const [name, { codecId, params }] of t.codecParams()) {
        if (codecId === 'float') continue;
        const dec = getCodec(codecId).decode(params);
        const fwd = t.providers.find((p) => p.name === name)!.weight();
        expect(Array.from(dec)).toEqual(Array.from(fwd));
      }
      t.dispose();
      const head = (losses[0]! + losses[1]! + losses[2]!) / 3;
      const tail = (losses[17]! + losses[18]! + losses[19]!) / 3;
      return { head, tail, before: before.kl, after: after.kl, top1: after.top1 };
    };
    const results = {
      'sketch-states absmaxmin 1.0 bpw': run('sketch-states', { bpw: 1, rows: 3, state: 'f16' }),
      'sketch-states mean 1.0 bpw': run('sketch-states', { bpw: 1, rows: 3, state: 'f16', init: 'mean' }),
      'hashednets-states 1.0 bpw': run('hashednets-states', { bpw: 1 }),
    };
    for (const [k, r] of Object.entries(results)) {
      console.log(
        `${k}: loss ${r.head.toFixed(3)} → ${r.tail.toFixed(3)}; calib KL ${r.before.toFixed(3)} → ${r.after.toFixed(3)}, top-1 ${r.top1.toFixed(3)}`,
      );
      expect(r.tail).toBeLessThan(r.head);
      expect(r.after).toBeLessThan(r.before);
    }
  });
});

// --------------------------------------------------------------------------------------------- helpers

function getFamilies(p: SketchStateProvider<Float64Array>) {
  return sketchGroups(p.initial).map((g) => g.family!);
}

// ------------------------------------------------------------------------------ query signmean (issue 16)

describe('sketch-states provider, query signmean', () => {
  const SM: SketchCase[] = [
    { label: 'rowrun f16 d1', rows: 12, cols: 20, codecOptions: { bpw: 1, rows: 1, state: 'f16', query: 'signmean' } },
    { label: 'rowrun int8 d3', rows: 9, cols: 14, codecOptions: { bpw: 2, rows: 3, state: 'int8', query: 'signmean' } },
    { label: 'mixed f32 d2, 3 groups with an exact one', rows: 8, cols: 12, codecOptions: { bpw: 12, rows: 2, state: 'f32', hash: 'mixed', groups: 3, alloc: 'saliency:2', query: 'signmean' } },
    // the product's default variant (int8 d1, saliency groups): the quantized forward dequantizes per group row
    { label: 'rowrun int8 d1, 4 saliency groups', rows: 16, cols: 32, codecOptions: { bpw: 2, rows: 1, state: 'int8', groups: 4, alloc: 'saliency', query: 'signmean' } },
  ];
  for (const c of SM) {
    it(`${c.label}: init forward = codec decode; gradient = finite differences (f64); the bundle decodes to the forward`, () => {
      const rng = new Rng(11);
      const { w, ctx } = sketchMatrix(c, rng, 77);
      const params = sketchCodec.encode(w, c.rows, c.cols, sketchCodec.resolveOptions(c.codecOptions), { name: 't', ...ctx });
      const p32 = new SketchStateProvider({ name: 't', rows: c.rows, cols: c.cols, weight: w, codecOptions: c.codecOptions, context: ctx, quantizedForward: false });
      expect(Array.from(p32.weight())).toEqual(Array.from(sketchCodec.decode(params)));

      const p = new SketchStateProvider<Float64Array>({ name: 't', rows: c.rows, cols: c.cols, weight: w, codecOptions: c.codecOptions, context: ctx, dtype: 'f64', quantizedForward: false });
      const S = p.states();
      for (let i = 0; i < S.length; i++) S[i] = S[i]! + 0.02 * rng.normal();
      expect(stateGradCheck(p, rng).worst).toBeLessThan(1e-6);

      // quantized forward (the default): after perturbing the masters the stored params decode to it exactly
      const q = new SketchStateProvider({ name: 't', rows: c.rows, cols: c.cols, weight: w, codecOptions: c.codecOptions, context: ctx });
      const Q = q.states();
      for (let i = 0; i < Q.length; i++) Q[i] = Q[i]! * (1 + 0.5 * rng.normal()) + 0.01 * rng.normal();
      const fwd = q.weight().slice();
      const stored = q.toCodecParams();
      expect(stored.options.query).toBe('signmean');
      const back = sketchCodec.fromTensors(sketchCodec.toTensors(stored), c.rows, c.cols, stored.options, 't');
      expect(Array.from(sketchCodec.decode(back))).toEqual(Array.from(fwd));
    });
  }
});
