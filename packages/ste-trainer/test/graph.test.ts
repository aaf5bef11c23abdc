import { Rng } from '@ultrasketch/core';
import { LINEAR_KINDS, LlamaForward, type ModelWeights, TensorNames } from '@ultrasketch/model';
import { loadModel } from '@ultrasketch/pipeline';
import { describe, expect, it } from 'vitest';
import { type FloatArray, type GraphWeights, LlamaGraph, logSoftmaxRows, logitLosses, mseLoss } from '../src/index.js';
import { graphWeights, randomF64, randomModel, range, tinyConfig, worstGradError } from './helpers.js';

const MODELS = '/work/shared/models';

/** Logits of the reference forward for each sequence (fresh cache, all positions). */
function referenceLogits(m: ModelWeights, seqs: number[][]): Float32Array[] {
  const fwd = LlamaForward.fromWeights(m);
  return seqs.map((s) => fwd.forward(s, fwd.createCache(s.length), { logits: 'all' }).slice());
}

function expectForwardEqual(m: ModelWeights, seqs: number[][], tol: number): number {
  const L = seqs[0]!.length;
  const g = new LlamaGraph(graphWeights<Float32Array>(m, false, false), { batch: seqs.length, seqLen: L });
  g.forward(seqs.flat());
  const ref = referenceLogits(m, seqs);
  const V = m.config.vocabSize;
  let worst = 0;
  seqs.forEach((_, b) => {
    for (let i = 0; i < L * V; i++) worst = Math.max(worst, Math.abs(g.logits[b * L * V + i]! - ref[b]![i]!));
  });
  expect(worst).toBeLessThan(tol);
  return worst;
}

describe('forward equals the reference LlamaForward', () => {
  for (const layout of ['pairs', 'halves'] as const) {
    for (const tied of [true, false]) {
      it(`random tiny model, RoPE ${layout}, ${tied ? 'tied' : 'untied'} classifier, GQA`, () => {
        const m = randomModel(tinyConfig({ ropeLayout: layout, tiedClassifier: tied, nHeads: 4, nKvHeads: 2, dim: 16 }), 3);
        const rng = new Rng(1);
        const seqs = [0, 1, 2].map(() => Array.from({ length: 9 }, () => rng.int(11)));
        expectForwardEqual(m, seqs, 1e-5);
      });
    }
  }

  it('stories260K (4 sequences × 64 calibration-like tokens)', () => {
    const { weights } = loadModel(`${MODELS}/stories260K/stories260K.bin`);
    const rng = new Rng(2);
    const seqs = [0, 1, 2, 3].map(() => [1, ...Array.from({ length: 63 }, () => rng.int(512))]);
    const worst = expectForwardEqual(weights, seqs, 1e-5);
    console.log(`stories260K: max |logit difference| ${worst.toExponential(2)}`);
  });

  it('stories3M (2 sequences × 48 tokens)', () => {
    const { weights } = loadModel(`${MODELS}/stories3M/stories3M-q80.bin`);
    const rng = new Rng(3);
    const seqs = [0, 1].map(() => [1, ...Array.from({ length: 47 }, () => rng.int(4096))]);
    const worst = expectForwardEqual(weights, seqs, 1e-5);
    console.log(`stories3M: max |logit difference| ${worst.toExponential(2)}`);
  });

  it('a batch of fewer sequences than the graph holds gives the same rows', () => {
    const m = randomModel(tinyConfig(), 4);
    const rng = new Rng(5);
    const seqs = [0, 1, 2].map(() => Array.from({ length: 6 }, () => rng.int(11)));
    const g = new LlamaGraph(graphWeights<Float32Array>(m, false, false), { batch: 3, seqLen: 6 });
    g.forward(seqs.flat());
    const all = g.logits.slice(0, 2 * 6 * 11);
    g.forward(seqs.slice(0, 2).flat(), 2);
    expect(g.rows).toBe(12);
    expect(g.logits.slice(0, 2 * 6 * 11)).toEqual(all);
  });
});

/**
 * The whole graph's gradient — every linear, every norm — against finite differences of the full training
 * loss (0.7·KL + 10·Σ MSE + 0.3·CE against a fixed random "teacher"), in float64.
 */
interface LossSetup<T extends FloatArray> {
  g: LlamaGraph<T>;
  w: GraphWeights<T>;
  loss: () => number;
  backward: () => void;
}

function lossSetup<T extends FloatArray>(m: ModelWeights, f64: boolean, B: number, L: number, seed: number, trainEmbedding = false): LossSetup<T> {
  const c = m.config;
  const w = graphWeights<T>(m, f64, true);
  if (trainEmbedding) {
    const zeros = (): T => (f64 ? new Float64Array(c.vocabSize * c.dim) : new Float32Array(c.vocabSize * c.dim)) as T;
    w.embeddingGrad = zeros();
    w.classifierGrad = c.tiedClassifier ? w.embeddingGrad : zeros();
  }
  const g = new LlamaGraph<T>(w, { batch: B, seqLen: L, dtype: f64 ? 'f64' : 'f32' });
  const rng = new Rng(seed);
  const n = B * L;
  const tokens = Int32Array.from({ length: n }, () => rng.int(c.vocabSize));
  const targets = Int32Array.from({ length: n }, () => rng.int(c.vocabSize));
  const mk = (len: number, std: number) => {
    const a = randomF64(rng, len, std);
    return (f64 ? a : Float32Array.from(a)) as T;
  };
  const teacherLP = mk(n * c.vocabSize, 2);
  logSoftmaxRows(teacherLP, n, c.vocabSize);
  const hidden = Array.from({ length: c.nLayers }, () => mk(n * c.dim, 1));
  const wKl = 0.7;
  const wCe = 0.3;
  const wMse = 10;
  const dLogits = mk(n * c.vocabSize, 0);
  const loss = () => {
    g.forward(tokens);
    const r = logitLosses(g.logits, teacherLP, targets, n, c.vocabSize, 0, 0, null);
    let mse = 0;
    for (let l = 0; l < c.nLayers; l++) mse += mseLoss(g.hidden(l), hidden[l]!, n * c.dim, 0, null);
    return wKl * r.kl + wCe * r.ce + wMse * mse;
  };
  const backward = () => {
    g.forward(tokens);
    logitLosses(g.logits, teacherLP, targets, n, c.vocabSize, wKl, wCe, dLogits);
    g.backward(dLogits, (l, dX) => {
      mseLoss(g.hidden(l), hidden[l]!, n * c.dim, wMse, dX);
    });
  };
  return { g, w, loss, backward };
}

describe('graph gradient (float64) against finite differences', () => {
  for (const layout of ['pairs', 'halves'] as const) {
    for (const tied of [true, false]) {
      it(`dim 8, 2 heads, 1 KV head, hidden 12, vocab 11, B 2 × L 5, RoPE ${layout}, ${tied ? 'tied' : 'untied'}`, () => {
        const m = randomModel(tinyConfig({ ropeLayout: layout, tiedClassifier: tied }), 11);
        const s = lossSetup<Float64Array>(m, true, 2, 5, 12);
        s.backward();
        const rng = new Rng(13);
        const H = 1e-5;
        for (let l = 0; l < 2; l++) {
          for (const kind of LINEAR_KINDS) {
            const p = s.w.layers[l]![kind].parameters()[0]!;
            // every entry of the small matrices; a random subset of the larger ones
            const idx = p.data.length <= 96 ? range(p.data.length) : Array.from({ length: 40 }, () => rng.int(p.data.length));
            const r = worstGradError(s.loss, p.data, p.grad, idx, H, 1e-9);
            expect(r.worst, `${p.name} at ${r.at}: analytic ${r.a}, numeric ${r.n}`).toBeLessThan(1e-5);
          }
          for (const [what, nw] of [
            ['attnNorm', s.w.attnNorm[l]!],
            ['ffnNorm', s.w.ffnNorm[l]!],
          ] as const) {
            const r = worstGradError(s.loss, nw.data, nw.grad!, range(8), H, 1e-9);
            expect(r.worst, `${what}[${l}] at ${r.at}: analytic ${r.a}, numeric ${r.n}`).toBeLessThan(1e-5);
          }
        }
        const r = worstGradError(s.loss, s.w.finalNorm.data, s.w.finalNorm.grad!, range(8), H, 1e-9);
        expect(r.worst, `finalNorm at ${r.at}`).toBeLessThan(1e-5);
      });
    }
  }

  it('float32 training gradients agree with float64 ones (relative to their norm)', () => {
    const m = randomModel(tinyConfig({ dim: 16, nHeads: 4, nKvHeads: 2, hiddenDim: 24 }), 21);
    const s64 = lossSetup<Float64Array>(m, true, 2, 7, 22);
    const s32 = lossSetup<Float32Array>(m, false, 2, 7, 22);
    s64.backward();
    s32.backward();
    for (let l = 0; l < 2; l++) {
      for (const kind of LINEAR_KINDS) {
        const a = s64.w.layers[l]![kind].parameters()[0]!.grad;
        const b = s32.w.layers[l]![kind].parameters()[0]!.grad;
        let num = 0;
        let den = 0;
        for (let i = 0; i < a.length; i++) {
          num += (a[i]! - b[i]!) ** 2;
          den += a[i]! ** 2;
        }
        expect(Math.sqrt(num / den), `${kind}[${l}]`).toBeLessThan(1e-4);
      }
    }
  });

  it('with frozen norms (layer-0 input gradient skipped) every trainable linear still gets its gradient', () => {
    const m = randomModel(tinyConfig(), 31);
    const w = graphWeights<Float32Array>(m, false, false);
    const g = new LlamaGraph(w, { batch: 1, seqLen: 4 });
    g.forward([1, 2, 3, 4]);
    const d = new Float32Array(4 * 11).fill(0.01);
    g.backward(d);
    for (const lp of w.layers) for (const kind of LINEAR_KINDS) expect(lp[kind].parameters()[0]!.grad.some((v) => v !== 0)).toBe(true);
  });
});

describe('a trained embedding and classifier', () => {
  for (const tied of [true, false]) {
    it(`their gradients match finite differences (float64, ${tied ? 'tied: one array, both uses summed' : 'untied'})`, () => {
      const m = randomModel(tinyConfig({ tiedClassifier: tied }), 41);
      const s = lossSetup<Float64Array>(m, true, 2, 5, 42, true);
      s.backward();
      const c = m.config;
      // every entry: rows of tokens in the batch get lookup gradients, every row a classifier gradient
      const rE = worstGradError(s.loss, s.w.embedding, s.w.embeddingGrad!, range(c.vocabSize * c.dim), 1e-5, 1e-9);
      expect(rE.worst, `embedding at ${rE.at}: analytic ${rE.a}, numeric ${rE.n}`).toBeLessThan(1e-5);
      if (!tied) {
        const rC = worstGradError(s.loss, s.w.classifier, s.w.classifierGrad!, range(c.vocabSize * c.dim), 1e-5, 1e-9);
        expect(rC.worst, `classifier at ${rC.at}: analytic ${rC.a}, numeric ${rC.n}`).toBeLessThan(1e-5);
      }
      // the lookup's part is there: a tied model's gradient differs from the classifier's alone
      expect(s.w.embeddingGrad!.some((v) => v !== 0)).toBe(true);
    });
  }

  it('a float32 graph reads the updated classifier at the next forward (a trained classifier is read in place, not copied)', () => {
    const m = randomModel(tinyConfig(), 43);
    const c = m.config;
    const w = graphWeights<Float32Array>(m, false, false);
    w.embeddingGrad = new Float32Array(c.vocabSize * c.dim);
    w.classifierGrad = w.embeddingGrad;
    const g = new LlamaGraph(w, { batch: 1, seqLen: 4 });
    const fresh = () => {
      const f = new LlamaGraph(graphWeights<Float32Array>({ ...m, tensors: new Map(m.tensors).set(TensorNames.embedding, { shape: [c.vocabSize, c.dim], data: w.embedding.slice() }) }, false, false), { batch: 1, seqLen: 4 });
      f.forward([1, 2, 3, 4]);
      return f.logits.slice();
    };
    g.forward([1, 2, 3, 4]);
    for (let i = 0; i < w.embedding.length; i++) w.embedding[i]! += 0.01 * Math.sin(i);
    g.forward([1, 2, 3, 4]);
    expect(Array.from(g.logits)).toEqual(Array.from(fresh()));
  });

  it('refuses a tied model whose embedding and classifier gradients are different arrays', () => {
    const m = randomModel(tinyConfig({ tiedClassifier: true }), 44);
    const c = m.config;
    const w = graphWeights<Float32Array>(m, false, false);
    w.embeddingGrad = new Float32Array(c.vocabSize * c.dim);
    w.classifierGrad = new Float32Array(c.vocabSize * c.dim);
    expect(() => new LlamaGraph(w, { batch: 1, seqLen: 4 })).toThrow(/tied classifier trains with its embedding/);
  });
});

