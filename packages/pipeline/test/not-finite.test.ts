import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes } from '@ultrasketch/core';
import { readLlama2cCheckpoint, readSafetensors, writeLlama2cLegacy } from '@ultrasketch/format';
import { NodeSession, sessionFromBundle } from '@ultrasketch/runtime-node';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type LoadedModel,
  NotFiniteError,
  type ScoringSession,
  compress,
  evaluate,
  loadBundleFromBytes,
  loadModel,
  loadModelFromBytes,
} from '../src/index.js';

/**
 * NaN / Infinity never become a figure: a model whose (finite) weights overflow in the forward pass, or a
 * bundle with an infinite scale, is a NOT_FINITE error naming the model, window, position and layer — from
 * evaluate(), as a --reference, and from compress() with quality measurement (which then writes nothing).
 */
const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL_PATH = shared('models/stories260K/stories260K.bin');
const evalText = readFileSync(shared('data/tinystories/eval.txt'), 'utf8');
const good = loadModel(MODEL_PATH);
const dir = mkdtempSync(join(tmpdir(), 'usk-not-finite-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Key = 'rmsFfn' | 'rmsAtt' | 'rmsFinal' | 'w1';

/**
 * stories260K with one tensor multiplied by `factor`, written by the format package's llama2.c writer and read
 * back as a checkpoint: every weight is finite, the forward pass is not.
 */
function scaled(key: Key, layer: number, factor: number): LoadedModel {
  const ckpt = readLlama2cCheckpoint(readFileSync(MODEL_PATH), MODEL_PATH);
  const w = ckpt.weights;
  const arr = key === 'rmsFinal' ? w.rmsFinal : w[key][layer]!;
  for (let i = 0; i < arr.length; i++) arr[i] = arr[i]! * factor;
  return loadModelFromBytes(writeLlama2cLegacy(ckpt.config, w), MODEL_PATH);
}

async function rejection(p: Promise<unknown>): Promise<NotFiniteError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected a rejection').toBeInstanceOf(NotFiniteError);
  expect((err as NotFiniteError).code).toBe(ErrorCodes.NOT_FINITE);
  return err as NotFiniteError;
}

describe('evaluate() refuses non-finite results', () => {
  it('a checkpoint whose FFN norm of layer 3 overflows: NOT_FINITE at window 0, position 0, layer 3 — not perplexity NaN', async () => {
    const broken = scaled('rmsFfn', 3, 1e30);
    const err = await rejection(
      evaluate({ session: NodeSession.fromWeights(broken.weights), tokenizer: broken.tokenizer, text: evalText, windows: 2, window: 32, modelSource: 'broken.bin' }),
    );
    expect(err.where).toMatchObject({ model: 'evaluated', source: 'broken.bin', window: 0, position: 0, streamIndex: 0, layer: 3 });
    // gate and up are finite (1e30-ish); their SwiGLU product is the first Infinity.
    expect(err.where.stage).toMatch(/^layer 3: the SwiGLU product .* entering mlp\.down_proj$/);
    expect(err.source).toBe('broken.bin');
    expect(err.message).toMatch(/the evaluated model gives a non-finite result at window 0, position 0 .*layer 3/);
    expect(err.message).not.toMatch(/perplexity NaN/);
  });

  it('the same checkpoint as --reference: names the reference (it used to give KL 0)', async () => {
    const broken = scaled('rmsFfn', 1, 1e30);
    const err = await rejection(
      evaluate({
        session: NodeSession.fromWeights(good.weights),
        reference: NodeSession.fromWeights(broken.weights),
        tokenizer: good.tokenizer,
        text: evalText,
        windows: 1,
        window: 32,
        modelSource: 'good.bin',
        referenceSource: 'broken.bin',
      }),
    );
    expect(err.where).toMatchObject({ model: 'reference', source: 'broken.bin', window: 0, position: 0, layer: 1 });
    expect(err.message).toMatch(/^broken\.bin: the reference model gives a non-finite result/);
  });

  it('the broken model evaluated against a good reference names the evaluated model', async () => {
    const broken = scaled('rmsFfn', 0, 1e30);
    const err = await rejection(
      evaluate({
        session: NodeSession.fromWeights(broken.weights),
        reference: NodeSession.fromWeights(good.weights),
        tokenizer: good.tokenizer,
        text: evalText,
        windows: 1,
        window: 32,
      }),
    );
    expect(err.where).toMatchObject({ model: 'evaluated', layer: 0 });
    expect(err.source).toBeUndefined();
  });

  it('names the window and position where the first non-finite logit appears (a fault injected at window 1, position 5)', async () => {
    const W = 32;
    const real = NodeSession.fromWeights(good.weights);
    let windowIndex = -1;
    // The real model, with one logit of one row made NaN after the fact: the layers are all finite, so the
    // search ends at the classifier output.
    const faulty: ScoringSession = {
      config: real.config,
      reset: () => real.reset(),
      forward(tokens, options) {
        const logits = real.forward(tokens, options);
        if (options.hooks === undefined) windowIndex++;
        if (windowIndex === 1) logits[5 * real.config.vocabSize + 7] = Number.NaN;
        return logits;
      },
    };
    const err = await rejection(evaluate({ session: faulty, tokenizer: good.tokenizer, text: evalText, windows: 3, window: W }));
    expect(err.where).toMatchObject({ model: 'evaluated', window: 1, position: 5, streamIndex: W + 5, what: 'logit 7 is NaN', layer: null });
    expect(err.where.stage).toMatch(/classifier/);
  });

  it('a session that reports no per-layer values still gets the typed error, with the layer unknown', async () => {
    const broken = NodeSession.fromWeights(scaled('rmsFfn', 2, 1e30).weights);
    const noHooks: ScoringSession = { config: broken.config, reset: () => broken.reset(), forward: (t) => broken.forward(t, { logits: 'all' }) };
    const err = await rejection(evaluate({ session: noHooks, tokenizer: good.tokenizer, text: evalText, windows: 1, window: 16 }));
    expect(err.where.layer).toBeNull();
    expect(err.where.stage).toMatch(/^unknown/);
    expect(err.hint).toMatch(/--runtime node/);
  });

  it('finite logits so far apart that exp(mean NLL) overflows: NOT_FINITE, not perplexity Infinity', async () => {
    const broken = scaled('rmsFinal', -1, 1e30);
    await expect(
      evaluate({ session: NodeSession.fromWeights(broken.weights), tokenizer: broken.tokenizer, text: evalText, windows: 1, window: 32 }),
    ).rejects.toMatchObject({ code: ErrorCodes.NOT_FINITE, problem: expect.stringMatching(/perplexity of the evaluated model overflows/) });
  });

  it('a bundle with an infinite rtn scale in layer 2 down_proj: NOT_FINITE naming layer 2', async () => {
    const { bytes } = await compress({ model: good, codec: 'rtn', codecOptions: { bits: 4 } });
    const file = readSafetensors(bytes);
    const scales = [...file.tensors].find(([name]) => name.startsWith('model.layers.2.mlp.down_proj.weight') && name.includes('scales'));
    expect(scales, [...file.tensors.keys()].filter((n) => n.includes('layers.2.mlp.down')).join(', ')).toBeDefined();
    const data = scales![1].data;
    data[0] = 0x00;
    data[1] = 0x7c; // f16 +Infinity (little-endian)
    // Checksums off: the bundle stands for one written with this scale (a crafted file, or a codec bug), which
    // the tensor checksums cannot catch.
    const bundle = loadBundleFromBytes(bytes, 'inf-scale.usk', { verifyChecksums: false });
    const err = await rejection(
      evaluate({ session: sessionFromBundle(bundle.bundle), tokenizer: bundle.tokenizer, text: evalText, windows: 1, window: 32, modelSource: 'inf-scale.usk' }),
    );
    expect(err.where).toMatchObject({ model: 'evaluated', source: 'inf-scale.usk', layer: 2 });
    expect(err.where.stage).toMatch(/^layer 2: the output of mlp\.down_proj/);
  });
});

describe('compress() with quality measurement', () => {
  it('refuses to store a NaN quality section: NOT_FINITE naming the float model, and no bundle is written', async () => {
    const broken = scaled('rmsFfn', 3, 1e30);
    const out = join(dir, 'nan-quality.usk');
    const err = await rejection(
      compress({ model: broken, codec: 'rtn', codecOptions: { bits: 8 }, output: out, measureQuality: { text: evalText, textSource: 'eval.txt', windows: 1, window: 32 } }),
    );
    // The float model is the reference and overflows first (norms are stored as they are, so the bundle does too).
    expect(err.where).toMatchObject({ model: 'reference', source: MODEL_PATH, window: 0, position: 0, layer: 3 });
    expect(existsSync(out)).toBe(false);
  });
});
