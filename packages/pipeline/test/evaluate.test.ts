import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { NodeSession } from '@ultrasketch/runtime-node';
import { describe, expect, it } from 'vitest';
import { documentTokenStream, evaluate, loadModel, splitDocuments } from '../src/index.js';

const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const evalText = readFileSync(shared('data/tinystories/eval.txt'), 'utf8');

const MODELS = [
  { name: 'stories260K', file: 'models/stories260K/stories260K.bin', streamTokens: 144_501, mean16: 1.435212 },
  { name: 'stories3M', file: 'models/stories3M/stories3M-q80.bin', streamTokens: 73_242, mean16: 1.72409 },
];

async function expectCode(p: Promise<unknown> | (() => unknown), code: string) {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    expect(err).toBeInstanceOf(UltraSketchError);
    expect((err as UltraSketchError).code).toBe(code);
    return err as UltraSketchError;
  }
  throw new Error(`expected an error with code ${code}`);
}

describe.each(MODELS)('evaluate() on $name reproduces llama2.c', ({ name, file, streamTokens, mean16 }) => {
  const model = loadModel(shared(file));
  const referenceNll = readFileSync(shared(`reference/${name}/window_nll.txt`), 'utf8').trim().split('\n').map(Number);

  it('tokenizes eval.txt into the reference stream length', () => {
    expect(documentTokenStream(model.tokenizer, evalText).length).toBe(streamTokens);
  });

  it('first 16 windows: every window NLL within 1e-4, and the 16-window mean', async () => {
    const session = NodeSession.fromWeights(model.weights);
    const r = await evaluate({ session, tokenizer: model.tokenizer, text: evalText, windows: 16 });
    expect(r.windows).toBe(16);
    expect(r.predictedTokens).toBe(16 * 511);
    expect(r.streamTokens).toBe(streamTokens);
    for (let w = 0; w < 16; w++) expect(Math.abs(r.windowNll[w]! - referenceNll[w]!)).toBeLessThanOrEqual(1e-4);
    expect(Math.abs(r.meanNll - mean16)).toBeLessThanOrEqual(1e-4);
    expect(r.perplexity).toBeCloseTo(Math.exp(r.meanNll), 12);
  });
});

describe('evaluate() with a reference model', () => {
  const model = loadModel(shared('models/stories260K/stories260K.bin'));

  it('a model against itself: KL 0, top-1 agreement 1, same NLL', async () => {
    const r = await evaluate({
      session: NodeSession.fromWeights(model.weights),
      reference: NodeSession.fromWeights(model.weights),
      tokenizer: model.tokenizer,
      text: evalText,
      windows: 2,
    });
    expect(r.kl).toBeLessThan(1e-9);
    expect(r.top1).toBe(1);
    expect(r.reference!.meanNll).toBeCloseTo(r.meanNll, 10);
  });

  it('a perturbed model has positive KL and lower agreement', async () => {
    const tensors = new Map(model.weights.tensors);
    for (const [name, t] of tensors) {
      if (!name.includes('mlp')) continue;
      const data = Float32Array.from(t.data, (v, i) => v * (1 + 0.5 * Math.sin(i)));
      tensors.set(name, { shape: t.shape, data });
    }
    const r = await evaluate({
      session: NodeSession.fromWeights({ config: model.weights.config, tensors }),
      reference: NodeSession.fromWeights(model.weights),
      tokenizer: model.tokenizer,
      text: evalText,
      windows: 1,
    });
    expect(r.kl).toBeGreaterThan(1e-3);
    expect(r.top1).toBeLessThan(1);
  });
});

describe('evaluate() and loadModel() reject bad input with typed errors', () => {
  const model = loadModel(shared('models/stories260K/stories260K.bin'));
  const run = (text: string, extra: object = {}) =>
    evaluate({ session: NodeSession.fromWeights(model.weights), tokenizer: model.tokenizer, text, ...extra });

  it('empty or whitespace-only text', async () => {
    await expectCode(run(''), ErrorCodes.EMPTY_INPUT);
    const err = await expectCode(run('\n\n  \n\n', { textSource: 'empty.txt' }), ErrorCodes.EMPTY_INPUT);
    expect(err.message).toContain('empty.txt');
  });

  it('text shorter than one window', async () => {
    await expectCode(run('Once upon a time.'), ErrorCodes.EMPTY_INPUT);
  });

  it('window outside 2..seq_len, windows not positive', async () => {
    await expectCode(run(evalText, { window: 513 }), ErrorCodes.BAD_ARGUMENT);
    await expectCode(run(evalText, { window: 1 }), ErrorCodes.BAD_ARGUMENT);
    await expectCode(run(evalText, { windows: 0 }), ErrorCodes.BAD_ARGUMENT);
  });

  it('missing checkpoint, and a tokenizer from another model', async () => {
    const missing = await expectCode(() => loadModel('/nonexistent/model.bin'), ErrorCodes.FILE_NOT_FOUND);
    expect(missing.message).toContain('/nonexistent/model.bin');
    const mismatch = await expectCode(
      () => loadModel(shared('models/stories3M/stories3M-q80.bin'), { tokenizerPath: shared('models/stories260K/tok512.bin') }),
      ErrorCodes.TOKENIZER_MISMATCH,
    );
    expect(mismatch.message).toContain('tok512.bin');
  });
});

describe('splitDocuments', () => {
  it('splits on blank lines, trims spaces and newlines, drops empty pieces', () => {
    expect(splitDocuments('  a b \n\n\n\nc\nd\n\n \n\n')).toEqual(['a b', 'c\nd']);
  });
});
