import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type ScoringSession, evaluate, klDivergence, loadModel, logSumExp } from '../src/index.js';

/**
 * Known answers for KL (issue 18): the expected values are computed here from the definition
 * KL(P ‖ Q) = Σ_i P_i ln(P_i / Q_i) on small hand-made distributions, not by the code under test, and the
 * distributions are chosen so that KL(P ‖ Q) ≠ KL(Q ‖ P): swapping the arguments (in klDivergence or where
 * evaluate() calls it) fails. Direction (docs/evaluation.md): P = the reference (float) model, Q = the
 * evaluated (compressed) model.
 */
const kl = (p: number[], q: number[]) => p.reduce((s, pi, i) => s + (pi > 0 ? pi * Math.log(pi / q[i]!) : 0), 0);

describe('klDivergence: hand-computed distributions', () => {
  // p = (0.9, 0.05, 0.05), q uniform: KL(p‖q) = ln 3 + 0.9 ln 0.9 + 0.1 ln 0.05 ≈ 0.70422,
  // KL(q‖p) = −ln 3 − (ln 0.9 + 2 ln 0.05)/3 ≈ 0.93366.
  const p = [0.9, 0.05, 0.05];
  const q = [1 / 3, 1 / 3, 1 / 3];

  it('the definition gives the values worked out by hand (guards the test itself)', () => {
    expect(kl(p, q)).toBeCloseTo(0.704215, 5);
    expect(kl(q, p)).toBeCloseTo(0.933663, 5);
  });

  it('KL(P ‖ Q) from unnormalised logits equals Σ P ln(P/Q), not the reverse', () => {
    // Logits shifted by arbitrary constants: the log-sum-exp must remove them.
    const pLogits = Float32Array.from(p, (x) => Math.log(x) + 3);
    const qLogits = Float32Array.from(q, (x) => Math.log(x) - 1.5);
    const got = klDivergence(pLogits, logSumExp(pLogits), qLogits, logSumExp(qLogits));
    expect(got).toBeCloseTo(kl(p, q), 6);
    expect(Math.abs(got - kl(q, p))).toBeGreaterThan(0.2);
  });

  it('a second pair in both directions: (0.7, 0.2, 0.1) against (0.4, 0.4, 0.2)', () => {
    const a = [0.7, 0.2, 0.1];
    const b = [0.4, 0.4, 0.2];
    const la = Float32Array.from(a, Math.log);
    const lb = Float32Array.from(b, Math.log);
    expect(klDivergence(la, logSumExp(la), lb, logSumExp(lb))).toBeCloseTo(kl(a, b), 6); // ≈ 0.18379
    expect(klDivergence(lb, logSumExp(lb), la, logSumExp(la))).toBeCloseTo(kl(b, a), 6); // ≈ 0.19204
  });
});

describe('evaluate(): KL is KL(P_reference ‖ P_model)', () => {
  const shared = (path: string) => fileURLToPath(new URL(`../../../../shared/${path}`, import.meta.url));
  const model = loadModel(shared('models/stories260K/stories260K.bin'));
  const text = readFileSync(shared('data/tinystories/eval.txt'), 'utf8');
  const V = model.weights.config.vocabSize;

  /** A session whose every row of logits is `row` (the real tokenizer and text choose the windows). */
  const constant = (row: Float32Array): ScoringSession => ({
    config: model.weights.config,
    reset() {},
    forward(tokens) {
      const out = new Float32Array(tokens.length * V);
      for (let t = 0; t < tokens.length; t++) out.set(row, t * V);
      return out;
    },
  });

  it('reference peaked on token 0, model uniform: the mean KL is Σ P ln(P·V), and the reverse is different', async () => {
    const a = 4;
    const peaked = new Float32Array(V);
    peaked[0] = a;
    const uniform = new Float32Array(V);
    // P_0 = e^a / (e^a + V − 1), P_i = 1 / (e^a + V − 1) otherwise; Q_i = 1/V.
    const z = Math.exp(a) + V - 1;
    const P = Array.from({ length: V }, (_, i) => (i === 0 ? Math.exp(a) : 1) / z);
    const Q = new Array<number>(V).fill(1 / V);
    const expected = kl(P, Q);
    const reverse = kl(Q, P);
    expect(Math.abs(expected - reverse)).toBeGreaterThan(0.01);

    const r = await evaluate({ session: constant(uniform), reference: constant(peaked), tokenizer: model.tokenizer, text, windows: 2, window: 16 });
    expect(r.kl).toBeCloseTo(expected, 6);
    expect(Math.abs(r.kl! - reverse)).toBeGreaterThan(0.01);
    expect(r.meanNll).toBeCloseTo(Math.log(V), 6); // a uniform model: ln V per token
    expect(r.perplexity).toBeCloseTo(V, 3);
    // Both argmaxes are token 0 (ties go to the first index) at every position.
    expect(r.top1).toBe(1);
  });
});
