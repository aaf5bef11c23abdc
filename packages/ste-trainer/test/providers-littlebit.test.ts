import { readFileSync } from 'node:fs';
import { ErrorCodes, Rng, f16BitsToF32, getCodec } from '@ultrasketch/core';
import { dualSvidFactors, littlebitCodec, pathDense, toPath } from '@ultrasketch/littlebit';
import { describe, expect, it } from 'vitest';
// from source: the pipeline index pulls in the trainer's node entry (not aliased in vitest)
import { loadModel } from '../../pipeline/src/load.js';
import { documentTokenStream } from '../../pipeline/src/text.js';
import { LittleBitProvider, Trainer, getProviderFactory, makeProviders, registerLittleBitProviders, smoothSignGrad } from '../src/index.js';
import { range, worstGradError } from './helpers.js';

registerLittleBitProviders();

const ROWS = 12;
const COLS = 10;

function lowRankish(rng: Rng, rows: number, cols: number): Float32Array {
  // a rank-3 matrix plus noise
  const w = new Float32Array(rows * cols);
  for (let t = 0; t < 3; t++) {
    const a = Array.from({ length: rows }, () => rng.normal());
    const b = Array.from({ length: cols }, () => rng.normal());
    for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) w[i * cols + j] += (0.3 / (t + 1)) * a[i]! * b[j]!;
  }
  for (let i = 0; i < w.length; i++) w[i] += 0.02 * rng.normal();
  return w;
}

function byName<T extends Float32Array | Float64Array>(p: LittleBitProvider<T>, suffix: string) {
  return p.parameters().find((x) => x.name.endsWith(suffix))!;
}

function checkGradients(codecOptions: Record<string, unknown>, saliency?: Float64Array): void {
    const rng = new Rng(4);
    const w = lowRankish(rng, ROWS, COLS);
    const p = new LittleBitProvider<Float64Array>({
      name: 't',
      rows: ROWS,
      cols: COLS,
      weight: w,
      codecOptions,
      context: { seed: 5, ...(saliency ? { saliency } : {}) },
      dtype: 'f64',
    });
    const r = p.rank;
    // shrink the latents toward zero so SmoothSign′ is not ≈ 0 everywhere (|100x| ≲ 3)
    for (const prm of p.parameters()) {
      if (/\/(res_)?[UV]$/.test(prm.name)) for (let i = 0; i < prm.data.length; i++) prm.data[i] = 0.01 * rng.normal();
    }
    const G = Float64Array.from({ length: ROWS * COLS }, () => rng.normal());
    const dot = (W: ArrayLike<number>) => {
      let s = 0;
      for (let i = 0; i < W.length; i++) s += G[i]! * W[i]!;
      return s;
    };
    p.weight();
    p.backward(G);
    // scales: Ŵ is linear in each scale, so central differences are exact up to rounding
    for (const prm of p.parameters()) {
      if (/\/(res_)?[UV]$/.test(prm.name)) continue;
      const res = worstGradError(() => dot(p.weight()), prm.data, Float64Array.from(prm.grad), range(prm.data.length), 1e-5, 1e-10);
      expect(res.worst, prm.name).toBeLessThan(1e-7);
    }
    // latents: the surrogate model where sign(U) (resp. sign(V)) is replaced by tanh(100·); the other factor keeps sign
    const sgn = (x: number) => (x < 0 ? -1 : 1);
    for (const [k, pre] of ['/', '/res_'].entries()) {
      void k;
      const U = byName(p, `${pre}U`);
      const V = byName(p, `${pre}V`);
      const h = byName(p, `${pre}h`).data;
      const g = byName(p, `${pre}g`).data;
      const l = byName(p, `${pre}l`).data;
      const surrogate = (smoothU: boolean) => () => {
        let s = 0;
        for (let i = 0; i < ROWS; i++) {
          for (let j = 0; j < COLS; j++) {
            let acc = 0;
            for (let q = 0; q < r; q++) {
              const u = U.data[i * r + q]!;
              const v = V.data[j * r + q]!;
              acc += (smoothU ? Math.tanh(100 * u) : sgn(u)) * l[q]! * (smoothU ? sgn(v) : Math.tanh(100 * v));
            }
            s += G[i * COLS + j]! * h[i]! * acc * g[j]!;
          }
        }
        return s;
      };
      const ru = worstGradError(surrogate(true), U.data, Float64Array.from(U.grad), range(U.data.length), 1e-7, 1e-9);
      expect(ru.worst, `${pre}U`).toBeLessThan(1e-5);
      const rv = worstGradError(surrogate(false), V.data, Float64Array.from(V.grad), range(V.data.length), 1e-7, 1e-9);
      expect(rv.worst, `${pre}V`).toBeLessThan(1e-5);
    }
    // linear in G (backward uses the factors of the last forward: run one at the unperturbed parameters)
    p.weight();
    for (const x of p.parameters()) x.grad.fill(0);
    p.backward(G);
    const before = p.parameters().map((x) => Float64Array.from(x.grad));
    for (const x of p.parameters()) x.grad.fill(0);
    p.backward(Float64Array.from(G, (v) => 0.25 * v));
    p.backward(Float64Array.from(G, (v) => 0.75 * v));
    p.parameters().forEach((x, i) => {
      for (let j = 0; j < x.grad.length; j++) expect(x.grad[j]).toBeCloseTo(before[i]![j]!, 10);
    });
  }

describe('littlebit provider', () => {
  it('SmoothSign′(x) = 100·(1 − tanh²(100x)) is the derivative of tanh(100x)', () => {
    for (const x of [-0.05, -0.01, -0.001, 0, 0.0005, 0.003, 0.02, 0.2]) {
      const h = 1e-7;
      const fd = (Math.tanh(100 * (x + h)) - Math.tanh(100 * (x - h))) / (2 * h);
      expect(Math.abs(smoothSignGrad(x) - fd)).toBeLessThan(1e-5 * Math.max(1, fd));
      expect(smoothSignGrad(x)).toBeCloseTo(100 * (1 - Math.tanh(100 * x) ** 2), 12);
    }
    expect(smoothSignGrad(0)).toBe(100);
  });

  for (const residual of [false, true]) {
    it(`init = the codec's encode (residual ${residual}): same signs, scales within one f16 ulp; forward = decode up to f16`, () => {
      const rng = new Rng(1);
      const w = lowRankish(rng, ROWS, COLS);
      const codecOptions = { rank: 3, residual };
      const p = new LittleBitProvider({ name: 't', rows: ROWS, cols: COLS, weight: w, codecOptions, context: { seed: 42 } });
      const enc = littlebitCodec.encode(w, ROWS, COLS, littlebitCodec.resolveOptions(codecOptions), { name: 't', seed: 42 });
      const mine = p.toCodecParams();
      expect(mine.paths.length).toBe(residual ? 2 : 1);
      mine.paths.forEach((path, i) => {
        const ref = enc.paths[i]!;
        expect(Array.from(path.uSigns)).toEqual(Array.from(ref.uSigns));
        expect(Array.from(path.vSigns)).toEqual(Array.from(ref.vSigns));
        for (const k of ['h', 'g', 'l'] as const) {
          for (let j = 0; j < path[k].length; j++) expect(Math.abs(path[k][j]! - ref[k][j]!)).toBeLessThanOrEqual(1);
        }
      });
      const dec = littlebitCodec.decode(enc);
      const fwd = p.weight();
      let scale = 0;
      for (const v of dec) scale = Math.max(scale, Math.abs(v));
      for (let i = 0; i < fwd.length; i++) expect(Math.abs(fwd[i]! - dec[i]!)).toBeLessThan(4e-3 * scale);
    });
  }

  it('default options: the init is exactly the unrounded Dual-SVID factors and scales (unchanged by the refine options); explicit no-op refine options change nothing', () => {
    const rng = new Rng(11);
    const w = lowRankish(rng, ROWS, COLS);
    const p = new LittleBitProvider<Float64Array>({ name: 't', rows: ROWS, cols: COLS, weight: w, codecOptions: { rank: 3, residual: true }, context: { seed: 42 }, dtype: 'f64' });
    const svd = { oversampling: 10, powerIterations: 2 };
    const f1 = dualSvidFactors({ rows: ROWS, cols: COLS, data: w }, 3, { ...svd, seed: 42 });
    const approx = pathDense(toPath(f1), ROWS, COLS, 3).data;
    const f2 = dualSvidFactors({ rows: ROWS, cols: COLS, data: Float32Array.from(w, (v, i) => v - approx[i]!) }, 3, { ...svd, seed: 43 });
    [f1, f2].forEach((f, k) => {
      const pre = k === 0 ? '/' : '/res_';
      expect(Array.from(byName(p, `${pre}U`).data)).toEqual(Array.from(f.uPrime.data));
      expect(Array.from(byName(p, `${pre}V`).data)).toEqual(Array.from(f.vPrime.data));
      expect(Array.from(byName(p, `${pre}h`).data)).toEqual(Array.from(f.h));
      expect(Array.from(byName(p, `${pre}g`).data)).toEqual(Array.from(f.g));
      expect(Array.from(byName(p, `${pre}l`).data)).toEqual(Array.from(f.l));
    });
    const noop = new LittleBitProvider<Float64Array>({
      name: 't',
      rows: ROWS,
      cols: COLS,
      weight: w,
      codecOptions: { rank: 3, residual: true, lsRounds: 0, refineRounds: 0, refineSigns: false, refineObjective: 'frobenius' },
      context: { seed: 42 },
      dtype: 'f64',
    });
    expect(noop.options).toEqual(p.options);
    p.parameters().forEach((x, i) => expect(Array.from(noop.parameters()[i]!.data)).toEqual(Array.from(x.data)));
  });

  const saliency = Float64Array.from({ length: COLS }, (_, j) => 0.05 + (j % 4) * 0.6);
  const refinedCases: [string, Record<string, unknown>, Float64Array | undefined][] = [
    ['one path, lsRounds 8 + refineSigns', { rank: 3, residual: false, lsRounds: 8, refineSigns: true }, undefined],
    ['one path, lsRounds 8 + refineSigns + activation objective', { rank: 3, residual: false, lsRounds: 8, refineSigns: true, refineObjective: 'activation' }, saliency],
    ['two paths, refineRounds 2 + lsRounds 4 + refineSigns + activation', { rank: 2, residual: true, refineRounds: 2, lsRounds: 4, refineSigns: true, refineObjective: 'activation' }, saliency],
    ['two paths, refineRounds 2 only', { rank: 2, residual: true, refineRounds: 2 }, undefined],
  ];
  for (const [label, codecOptions, sal] of refinedCases) {
    it(`refined init (${label}) = the codec's encode: identical sign bits and f16 scales; initial Ŵ = decode(encode(W)); latent magnitudes = |Dual-SVID factors|`, () => {
      const rng = new Rng(12);
      const w = lowRankish(rng, ROWS, COLS);
      const context = { seed: 42, ...(sal ? { saliency: sal } : {}) };
      for (const dtype of ['f32', 'f64'] as const) {
        const p = new LittleBitProvider({ name: 't', rows: ROWS, cols: COLS, weight: w, codecOptions, context, dtype });
        const enc = littlebitCodec.encode(w, ROWS, COLS, littlebitCodec.resolveOptions(codecOptions), { name: 't', ...context });
        const mine = p.toCodecParams();
        expect(mine.options).toEqual(enc.options);
        expect(littlebitCodec.toTensors(mine)).toEqual(littlebitCodec.toTensors(enc)); // every sign bit and f16 scale
        const dec = littlebitCodec.decode(enc);
        const fwd = p.weight();
        let scale = 0;
        for (const v of dec) scale = Math.max(scale, Math.abs(v));
        for (let i = 0; i < fwd.length; i++) expect(Math.abs(fwd[i]! - dec[i]!)).toBeLessThanOrEqual(1e-6 * scale) // decode is float32;
        // magnitudes: those of the plain Dual-SVID real factors (path 1 on W), where not floored
        const f1 = dualSvidFactors({ rows: ROWS, cols: COLS, data: w }, p.rank, { oversampling: 10, powerIterations: 2, seed: 42 });
        const U = byName(p, '/U').data;
        let maxU = 0;
        for (const v of f1.uPrime.data) maxU = Math.max(maxU, Math.abs(v));
        for (let i = 0; i < U.length; i++) {
          const m = Math.max(Math.abs(f1.uPrime.data[i]!), 1e-6 * maxU);
          expect(Math.abs(Math.abs(U[i]!) - m)).toBeLessThanOrEqual(1e-6 * m);
        }
      }
      // the refinement did something: the plain init stores different tensors
      const plainOptions = { rank: codecOptions.rank, residual: codecOptions.residual };
      const plain = new LittleBitProvider({ name: 't', rows: ROWS, cols: COLS, weight: w, codecOptions: plainOptions, context: { seed: 42 } });
      expect(littlebitCodec.toTensors(plain.toCodecParams())).not.toEqual(littlebitCodec.toTensors(new LittleBitProvider({ name: 't', rows: ROWS, cols: COLS, weight: w, codecOptions, context }).toCodecParams()));
    });
  }

  it('refined init, frobenius: lower initial error than the plain init; sign refits flip some of Dual-SVID\'s signs', () => {
    const rng = new Rng(13);
    const w = lowRankish(rng, 24, 20);
    const err = (p: LittleBitProvider) => {
      const f = p.weight();
      let e = 0;
      for (let i = 0; i < f.length; i++) e += (f[i]! - w[i]!) ** 2;
      return e;
    };
    const plain = new LittleBitProvider({ name: 't', rows: 24, cols: 20, weight: w, codecOptions: { rank: 4, residual: false }, context: { seed: 1 } });
    const refined = new LittleBitProvider({ name: 't', rows: 24, cols: 20, weight: w, codecOptions: { rank: 4, residual: false, lsRounds: 8, refineSigns: true }, context: { seed: 1 } });
    expect(err(refined)).toBeLessThan(err(plain));
    const a = plain.toCodecParams().paths[0]!;
    const b = refined.toCodecParams().paths[0]!;
    expect(Array.from(a.uSigns).concat(Array.from(a.vSigns))).not.toEqual(Array.from(b.uSigns).concat(Array.from(b.vSigns)));
  });

  it("refineObjective 'activation' without saliency is refused (BAD_ARGUMENT); the provider factory passes ctx.saliency and refine options given at top level", () => {
    const rng = new Rng(14);
    const w = lowRankish(rng, ROWS, COLS);
    const codecOptions = { rank: 3, residual: false, lsRounds: 4, refineSigns: true, refineObjective: 'activation' };
    expect(() => new LittleBitProvider({ name: 't', rows: ROWS, cols: COLS, weight: w, codecOptions, context: { seed: 1 } })).toThrow(
      expect.objectContaining({ code: ErrorCodes.BAD_ARGUMENT }),
    );
    const direct = new LittleBitProvider({ name: 't', rows: ROWS, cols: COLS, weight: w, codecOptions, context: { seed: 1, saliency } });
    const ctx = { name: 't', layer: 0, kind: 'q' as const, rows: ROWS, cols: COLS, weight: w, seed: 1, saliency };
    const viaCodecOptions = getProviderFactory('littlebit')(ctx, { codecOptions }) as LittleBitProvider;
    const viaTopLevel = getProviderFactory('littlebit')(ctx, { ...codecOptions }) as LittleBitProvider;
    for (const q of [viaCodecOptions, viaTopLevel]) {
      expect(q.options).toEqual(direct.options);
      expect(littlebitCodec.toTensors(q.toCodecParams())).toEqual(littlebitCodec.toTensors(direct.toCodecParams()));
    }
  });

  it('toCodecParams after training-like updates: decode = forward with the f16-rounded scales (exactly up to summation order)', () => {
    const rng = new Rng(2);
    const w = lowRankish(rng, ROWS, COLS);
    const p = new LittleBitProvider({ name: 't', rows: ROWS, cols: COLS, weight: w, codecOptions: { rank: 4, residual: true }, context: { seed: 3 } });
    for (const prm of p.parameters()) for (let i = 0; i < prm.data.length; i++) prm.data[i] = prm.data[i]! + 0.05 * rng.normal();
    const fwd = p.weight().slice();
    const stored = p.toCodecParams();
    const codec = getCodec('littlebit');
    const back = codec.fromTensors(codec.toTensors(stored), ROWS, COLS, stored.options, 't');
    const dec = codec.decode(back);
    let scale = 0;
    for (const v of fwd) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < fwd.length; i++) expect(Math.abs(fwd[i]! - dec[i]!)).toBeLessThan(4e-3 * scale);
    // masters set to the stored f16 values → the forward reproduces the decode to float32 summation rounding
    stored.paths.forEach((path, k) => {
      const pre = k === 0 ? '/' : '/res_';
      for (const s of ['h', 'g', 'l'] as const) {
        const prm = byName(p, `${pre}${s}`);
        for (let i = 0; i < prm.data.length; i++) prm.data[i] = f16BitsToF32(path[s][i]!);
      }
    });
    const fwd2 = p.weight();
    for (let i = 0; i < fwd2.length; i++) expect(Math.abs(fwd2[i]! - dec[i]!)).toBeLessThanOrEqual(1e-6 * scale);
  });

  it('backward (f64): scale gradients = finite differences; latent gradients = finite differences of the tanh(100·) surrogate', () => {
    checkGradients({ rank: 3, residual: true });
  });

  it('backward (f64) with a refined init (backfitting, least-squares scales, sign refits, activation objective): gradients = finite differences', () => {
    const saliency = Float64Array.from({ length: COLS }, (_, j) => 0.2 + j / COLS);
    checkGradients({ rank: 3, residual: true, refineRounds: 1, lsRounds: 3, refineSigns: true, refineObjective: 'activation' }, saliency);
  });

  it('deterministic: same weights, options and seed → identical parameters and stored tensors', () => {
    const rng = new Rng(6);
    const w = lowRankish(rng, ROWS, COLS);
    const mk = () => new LittleBitProvider({ name: 't', rows: ROWS, cols: COLS, weight: w, codecOptions: { rank: 2 }, context: { seed: 8 } });
    const a = mk();
    const b = mk();
    expect(Array.from(a.weight())).toEqual(Array.from(b.weight()));
    expect(littlebitCodec.toTensors(a.toCodecParams())).toEqual(littlebitCodec.toTensors(b.toCodecParams()));
  });
});

describe('end to end: stories260K, littlebit (2.0 bpw with residual), 20 KD steps on calib', () => {
  it('the KD loss and the calib KL drop; the bundle decodes to the trained forward up to f16 scales', () => {
    const { weights, tokenizer } = loadModel('/work/shared/models/stories260K/stories260K.bin');
    const calib = documentTokenStream(tokenizer, readFileSync('/work/shared/data/tinystories/calib.txt', 'utf8'));
    const wins = [0, 1].map((i) => calib.subarray(20000 + i * 65, 20000 + (i + 1) * 65));
    // 2.0 bpw: the 32×64 K/V projections need ≥ 1.5 bpw for the residual path's f16 scales alone (r = 0)
    const providers = makeProviders(weights, () => ({ kind: 'littlebit', options: { bpw: 2, residual: true } }), { seed: 1 });
    const t = new Trainer({ teacher: weights, providers, calibTokens: calib, batch: 2, seqLen: 32, steps: 20, lr: 3e-3, seed: 1 });
    const before = t.evaluate(wins);
    const losses: number[] = [];
    while (t.completedSteps < 20) losses.push(t.step().loss);
    const after = t.evaluate(wins);
    for (const [name, { params }] of t.codecParams()) {
      const dec = getCodec('littlebit').decode(params);
      const fwd = t.providers.find((p) => p.name === name)!.weight();
      let scale = 0;
      let worst = 0;
      for (let i = 0; i < dec.length; i++) {
        scale = Math.max(scale, Math.abs(fwd[i]!));
        worst = Math.max(worst, Math.abs(dec[i]! - fwd[i]!));
      }
      expect(worst).toBeLessThan(4e-3 * scale);
    }
    t.dispose();
    const head = (losses[0]! + losses[1]! + losses[2]!) / 3;
    const tail = (losses[17]! + losses[18]! + losses[19]!) / 3;
    console.log(`littlebit 2.0 bpw residual: loss ${head.toFixed(3)} → ${tail.toFixed(3)}; calib KL ${before.kl.toFixed(3)} → ${after.kl.toFixed(3)}, top-1 ${before.top1.toFixed(3)} → ${after.top1.toFixed(3)}`);
    expect(tail).toBeLessThan(head);
    expect(after.kl).toBeLessThan(before.kl);
  });
});
