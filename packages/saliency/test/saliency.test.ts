import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCodes } from '@ultrasketch/core';
import { LlamaForward, TensorNames } from '@ultrasketch/model';
import { documentTokenStream, loadModel } from '@ultrasketch/pipeline';
import { describe, expect, it } from 'vitest';
import { collectSaliency } from '../src/index.js';

const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const calib = readFileSync(shared('data/tinystories/calib.txt'), 'utf8');

describe.each([
  ['stories260K', 'models/stories260K/stories260K.bin'],
  ['stories3M', 'models/stories3M/stories3M-q80.bin'],
])('saliency on %s from calib.txt', (_name, file) => {
  const model = loadModel(shared(file));
  const c = model.weights.config;
  const tokens = documentTokenStream(model.tokenizer, calib);
  const N = 300;
  const stats = collectSaliency({ forward: LlamaForward.fromWeights(model.weights), tokens, maxTokens: N, window: 128 });

  it('covers every linear with one value per input channel', () => {
    expect(stats.tokens).toBe(N);
    expect(stats.meanSquare.size).toBe(7 * c.nLayers);
    expect(stats.meanSquare.get(TensorNames.linear(0, 'down'))!.length).toBe(c.hiddenDim);
    expect(stats.meanSquare.get(TensorNames.linear(2, 'q'))!.length).toBe(c.dim);
  });

  it('layer 0 attention inputs equal a direct computation: E[(rmsnorm(embedding[token]) · w)²]', () => {
    const emb = model.weights.tensors.get(TensorNames.embedding)!.data;
    const norm = model.weights.tensors.get(TensorNames.attnNorm(0))!.data;
    const direct = new Float64Array(c.dim);
    for (let t = 0; t < N; t++) {
      const row = emb.subarray(tokens[t]! * c.dim, (tokens[t]! + 1) * c.dim);
      let ss = 0;
      for (let j = 0; j < c.dim; j++) ss += row[j]! * row[j]!;
      const inv = 1 / Math.sqrt(ss / c.dim + c.normEps);
      for (let j = 0; j < c.dim; j++) direct[j]! += (norm[j]! * inv * row[j]!) ** 2 / N;
    }
    for (const kind of ['q', 'k', 'v'] as const) {
      const got = stats.meanSquare.get(TensorNames.linear(0, kind))!;
      for (let j = 0; j < c.dim; j++) expect(got[j]!).toBeCloseTo(direct[j]!, 5);
    }
  });

  it('every layer equals an independent token-by-token run over the same windows', () => {
    const fwd = LlamaForward.fromWeights(model.weights);
    const direct = new Map<string, Float64Array>();
    for (let start = 0; start < N; start += 128) {
      const cache = fwd.createCache(128);
      for (let i = start; i < Math.min(start + 128, N); i++) {
        fwd.forward([tokens[i]!], cache, {
          logits: 'none',
          hooks: {
            onLinearInput(name, x, _n, inF) {
              const acc = direct.get(name) ?? new Float64Array(inF);
              for (let j = 0; j < inF; j++) acc[j]! += x[j]! * x[j]!;
              direct.set(name, acc);
            },
          },
        });
      }
    }
    for (const [name, got] of stats.meanSquare) {
      const want = direct.get(name)!;
      for (let j = 0; j < got.length; j++) expect(Math.abs(got[j]! - want[j]! / N)).toBeLessThanOrEqual(1e-4 * (want[j]! / N) + 1e-9);
    }
  });
});

describe('collectSaliency', () => {
  const model = loadModel(shared('models/stories260K/stories260K.bin'));
  const tokens = documentTokenStream(model.tokenizer, calib);

  it('is deterministic and bounded by maxTokens', () => {
    const run = () => collectSaliency({ forward: LlamaForward.fromWeights(model.weights), tokens, maxTokens: 200, window: 64 });
    const a = run();
    const b = run();
    expect(a.tokens).toBe(200);
    for (const [name, v] of a.meanSquare) expect([...v]).toEqual([...b.meanSquare.get(name)!]);
  });

  it('refuses empty input and bad windows', () => {
    const forward = LlamaForward.fromWeights(model.weights);
    expect(() => collectSaliency({ forward, tokens: [] })).toThrow(expect.objectContaining({ code: ErrorCodes.EMPTY_INPUT }));
    expect(() => collectSaliency({ forward, tokens, window: 513 })).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_ARGUMENT }));
  });
});
