import { readFileSync } from 'node:fs';
import { ErrorCodes, Rng, UltraSketchError } from '@ultrasketch/core';
import { type Llama2cCheckpoint, readLlama2cCheckpoint } from '@ultrasketch/format';
import { describe, expect, it } from 'vitest';
import {
  DenseLinear,
  LINEAR_KINDS,
  LlamaForward,
  TensorNames,
  generateTokens,
  modelFromLlama2c,
  parameterCount,
  parseLinearName,
} from '../src/index.js';

const shared = (p: string) => new URL(`../../../../shared/${p}`, import.meta.url);
const ckpt260K = readLlama2cCheckpoint(readFileSync(shared('models/stories260K/stories260K.bin')), 'stories260K.bin');
const model260K = modelFromLlama2c(ckpt260K);

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof UltraSketchError ? err.code : `not typed: ${String(err)}`;
  }
  return undefined;
}

describe('DenseLinear', () => {
  it.each([
    [1, 1, 1],
    [1, 37, 1],
    [5, 1, 3],
    [13, 7, 9],
    [64, 172, 6],
  ])('matches a naive product for %i×%i with n=%i', (out, inF, n) => {
    const rng = new Rng(out * 1000 + inF);
    const w = rng.normalArray(out * inF);
    const x = rng.normalArray(n * inF);
    const y = new Float32Array(n * out);
    new DenseLinear(w, out, inF).apply(x, y, n);
    for (let t = 0; t < n; t++) {
      for (let i = 0; i < out; i++) {
        let s = 0;
        for (let j = 0; j < inF; j++) s += w[i * inF + j]! * x[t * inF + j]!;
        expect(y[t * out + i]!).toBeCloseTo(s, 4);
      }
    }
  });
});

describe('model weights', () => {
  it('maps llama2.c names to canonical Hugging Face names', () => {
    expect(model260K.tensors.get(TensorNames.linear(2, 'gate'))!.data).toBe(ckpt260K.weights.w1[2]);
    expect(model260K.tensors.get(TensorNames.linear(2, 'down'))!.data).toBe(ckpt260K.weights.w2[2]);
    expect(model260K.tensors.get(TensorNames.linear(2, 'up'))!.data).toBe(ckpt260K.weights.w3[2]);
    expect(parseLinearName('model.layers.4.mlp.down_proj.weight')).toEqual({ layer: 4, kind: 'down' });
    expect(parseLinearName('model.norm.weight')).toBeUndefined();
    expect(model260K.config).toMatchObject({ dim: 64, hiddenDim: 172, nLayers: 5, nKvHeads: 4, tiedClassifier: true });
  });

  it('counts parameters as the model cards do', () => {
    const ckpt3M = readLlama2cCheckpoint(readFileSync(shared('models/stories3M/stories3M-q80.bin')), 'stories3M');
    expect(parameterCount(modelFromLlama2c(ckpt3M).config)).toBe(3_148_224);
  });

  it('refuses NaN or infinite weights, naming the tensor', () => {
    const wq = ckpt260K.weights.wq.map((a) => a.slice());
    wq[3]![17] = Number.NaN;
    const bad: Llama2cCheckpoint = { ...ckpt260K, weights: { ...ckpt260K.weights, wq } };
    let message = '';
    try {
      modelFromLlama2c(bad, 'bad.bin');
    } catch (err) {
      expect((err as UltraSketchError).code).toBe(ErrorCodes.NOT_FINITE);
      message = (err as Error).message;
    }
    expect(message).toContain('model.layers.3.self_attn.q_proj.weight');
    expect(message).toContain('bad.bin');
  });
});

describe('LlamaForward', () => {
  it('calls the hooks for every linear input, in order, and after every layer', () => {
    const fwd = LlamaForward.fromWeights(model260K);
    const seen: string[] = [];
    const layers: number[] = [];
    fwd.forward([1, 403, 407], fwd.createCache(), {
      logits: 'all',
      hooks: {
        onLinearInput: (name, x, n, inFeatures) => {
          seen.push(name);
          expect(n).toBe(3);
          expect(x.length).toBeGreaterThanOrEqual(n * inFeatures);
        },
        onLayerOutput: (l) => layers.push(l),
      },
    });
    const expected: string[] = [];
    for (let l = 0; l < 5; l++) for (const k of LINEAR_KINDS) expected.push(TensorNames.linear(l, k));
    expected.push(TensorNames.classifier);
    expect(seen).toEqual(expected);
    expect(layers).toEqual([0, 1, 2, 3, 4]);
  });

  it('rejects token ids out of range and positions beyond the cache', () => {
    const fwd = LlamaForward.fromWeights(model260K);
    expect(codeOf(() => fwd.forward([512], fwd.createCache()))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(codeOf(() => fwd.forward([-1], fwd.createCache()))).toBe(ErrorCodes.BAD_ARGUMENT);
    const small = fwd.createCache(4);
    fwd.forward([1, 2, 3], small);
    expect(codeOf(() => fwd.forward([4, 5], small))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(codeOf(() => fwd.createCache(513))).toBe(ErrorCodes.BAD_ARGUMENT);
  });

  it('continuing a context equals running it in one go', () => {
    const fwd = LlamaForward.fromWeights(model260K);
    const tokens = [1, 403, 407, 261, 378, 432, 383];
    const whole = fwd.forward(tokens, fwd.createCache(), { logits: 'last' }).slice();
    const cache = fwd.createCache();
    fwd.forward(tokens.slice(0, 4), cache, { logits: 'none' });
    const split = fwd.forward(tokens.slice(4), cache);
    for (let i = 0; i < whole.length; i++) expect(split[i]!).toBeCloseTo(whole[i]!, 4);
  });
});

describe('generateTokens', () => {
  it('feeds the prompt first, then the picker, and stops at the stop token', async () => {
    const fed: number[] = [];
    const picks = [7, 8, 1, 9];
    let k = 0;
    const picker = { sample: () => picks[k++]! };
    for await (const s of generateTokens((t) => new Float32Array([t]), [1, 5, 6], { steps: 20, picker })) fed.push(s.token);
    // prompt 1 5 6, then picks 7 8, then the picker returns BOS (1): stop.
    expect(fed).toEqual([1, 5, 6, 7, 8]);
  });

  it('validates its arguments', async () => {
    const picker = { sample: () => 0 };
    await expect(generateTokens(() => new Float32Array(1), [], { steps: 1, picker }).next()).rejects.toMatchObject({
      code: ErrorCodes.BAD_ARGUMENT,
    });
    await expect(generateTokens(() => new Float32Array(1), [1], { steps: 0, picker }).next()).rejects.toMatchObject({
      code: ErrorCodes.BAD_ARGUMENT,
    });
  });
});
