import { Rng } from '@ultrasketch/core';
import { LINEAR_KINDS, TensorNames, linearShape } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { type GraphWeights, type LayerProviders, LittleBitProvider, LlamaGraph, type TrainerOptions, makeProviders, registerLittleBitProviders } from '../src/index.js';
import { workerThreads } from '../src/node.js';
import { graphWeights, randomModel, tinyConfig } from './helpers.js';
import { expectRunsClose, runToEnd, syntheticCalib, useBuiltWorker } from './thread-fixtures.js';

/**
 * LittleBit's low-rank form (WeightProvider.factorRank): the CPU graph computes Y = (X·B)·hAᵀ and the factors'
 * gradients directly instead of building Ŵ = hA·Bᵀ and running the chain rule from ∂L/∂Ŵ. Mathematically the
 * same function and gradient; these tests hold it to the Ŵ path (lowRank: false) in float64, and check the
 * data-parallel trainer with it (workers get the packed factors instead of Ŵ).
 */
useBuiltWorker();

registerLittleBitProviders();

// rank 2 with the residual path: P·r = 4, and 4·(rows + cols) < rows·cols for every linear of this shape
const config = tinyConfig({ dim: 32, nHeads: 4, nKvHeads: 2, hiddenDim: 48, vocabSize: 40, seqLen: 16 });
const model = randomModel(config, 9);

function littlebitGraph(lowRank: boolean): { weights: GraphWeights<Float64Array>; providers: LittleBitProvider<Float64Array>[] } {
  const weights = graphWeights<Float64Array>(model, true);
  const providers: LittleBitProvider<Float64Array>[] = [];
  weights.layers = Array.from({ length: config.nLayers }, (_, l) => {
    const lp = {} as LayerProviders<Float64Array>;
    for (const kind of LINEAR_KINDS) {
      const [rows, cols] = linearShape(config, kind);
      const name = TensorNames.linear(l, kind);
      const p = new LittleBitProvider<Float64Array>({
        name,
        rows,
        cols,
        weight: model.tensors.get(name)!.data,
        codecOptions: { rank: 2, residual: true },
        context: { seed: 11 },
        dtype: 'f64',
        lowRank,
      });
      lp[kind] = p;
      providers.push(p);
    }
    return lp;
  });
  return { weights, providers };
}

describe('littlebit low-rank form', () => {
  it('float64: logits and every parameter gradient equal the Ŵ path (to rounding); offered only where it has fewer multiply-adds', () => {
    const fac = littlebitGraph(true);
    const dense = littlebitGraph(false);
    for (const p of fac.providers) expect(p.factorRank, p.name).toBe(4);
    for (const p of dense.providers) expect(p.factorRank).toBe(0);
    // a square 12 × 12 linear at rank 4 with the residual path: 8·24 > 144, so no low-rank form
    const small = new LittleBitProvider({ name: 's', rows: 12, cols: 12, weight: new Float32Array(144).fill(0.1), codecOptions: { rank: 4, residual: true } });
    expect(small.factorRank).toBe(0);
    const rng = new Rng(3);
    // latents near zero so SmoothSign′ is not ≈ 0 and the latent gradients are compared too
    for (let i = 0; i < fac.providers.length; i++) {
      const a = fac.providers[i]!.parameters();
      const b = dense.providers[i]!.parameters();
      a.forEach((prm, k) => {
        if (/\/(res_)?[UV]$/.test(prm.name)) for (let j = 0; j < prm.data.length; j++) prm.data[j] = prm.data[j]! * 0.02 + 0.005 * rng.normal();
        b[k]!.data.set(prm.data);
      });
    }
    const batch = 2;
    const L = 12;
    const tokens = Array.from({ length: batch * L }, () => rng.int(config.vocabSize));
    const gF = new LlamaGraph(fac.weights, { batch, seqLen: L, dtype: 'f64' });
    const gD = new LlamaGraph(dense.weights, { batch, seqLen: L, dtype: 'f64' });
    gF.forward(tokens);
    gD.forward(tokens);
    let maxLogit = 0;
    let maxDiff = 0;
    for (let i = 0; i < batch * L * config.vocabSize; i++) {
      maxLogit = Math.max(maxLogit, Math.abs(gD.logits[i]!));
      maxDiff = Math.max(maxDiff, Math.abs(gF.logits[i]! - gD.logits[i]!));
    }
    expect(maxDiff).toBeLessThan(1e-12 * maxLogit);
    const dLogits = Float64Array.from({ length: batch * L * config.vocabSize }, () => rng.normal());
    const hiddenGrad = (layer: number, dX: Float64Array) => {
      for (let i = 0; i < dX.length; i++) dX[i] = dX[i]! + 0.01 * Math.sin(i + layer);
    };
    gF.backward(dLogits, hiddenGrad);
    gD.backward(dLogits, hiddenGrad);
    for (let i = 0; i < fac.providers.length; i++) {
      const a = fac.providers[i]!.parameters();
      const b = dense.providers[i]!.parameters();
      a.forEach((prm, k) => {
        let scale = 0;
        let diff = 0;
        for (let j = 0; j < prm.grad.length; j++) {
          scale = Math.max(scale, Math.abs(b[k]!.grad[j]!));
          diff = Math.max(diff, Math.abs(prm.grad[j]! - b[k]!.grad[j]!));
        }
        expect(scale, prm.name).toBeGreaterThan(0);
        expect(diff / scale, prm.name).toBeLessThan(1e-10);
      });
    }
    const norms = (w: GraphWeights<Float64Array>) => [...w.attnNorm, ...w.ffnNorm, w.finalNorm].map((n) => n.grad!);
    norms(fac.weights).forEach((g, k) => {
      const ref = norms(dense.weights)[k]!;
      for (let j = 0; j < g.length; j++) expect(Math.abs(g[j]! - ref[j]!)).toBeLessThan(1e-10 * (1 + Math.abs(ref[j]!)));
    });
  });

  it('trainer: 2 threads deterministic (packed factors to the workers), equal to 1 thread and to the Ŵ path up to float rounding', () => {
    const calib = syntheticCalib(600, 41, 40);
    const options = (lowRank: boolean, threads: number): TrainerOptions => ({
      teacher: model,
      providers: makeProviders(model, (_l, kind) =>
        kind === 'k' ? { kind: 'dense' } : { kind: 'littlebit', options: { codecOptions: { rank: 2, residual: true }, lowRank } },
      ),
      calibTokens: calib,
      batch: 4,
      seqLen: 12,
      steps: 5,
      lr: 3e-3,
      trainNorms: true,
      loss: { kl: 1, mse: 10, ce: 0.5 },
      seed: 4,
      ...(threads > 1 ? { parallel: workerThreads(threads, { timeoutMs: 60_000 }) } : {}),
    });
    const run = (lowRank: boolean, threads: number) => runToEnd(options(lowRank, threads));
    const a = run(true, 2);
    const b = run(true, 2);
    expect(a.params).toEqual(b.params);
    expect(a.losses).toEqual(b.losses);
    const one = run(true, 1);
    expectRunsClose(a, one, 1e-4);
    expectRunsClose(one, run(false, 1), 1e-4);
  });
});
