import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes } from '@ultrasketch/core';
import { readBundle } from '@ultrasketch/format';
import { afterAll, describe, expect, it } from 'vitest';
import { type TrainingSection, compress, finetuneFlags, finetuneProviderKind, loadModel, sweep, validateFinetune } from '../src/index.js';
import { requireShared } from '../../../test/require-shared.js';

/** Finetuning inside compress() on stories260K (small budgets). */
const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL_PATH = shared('models/stories260K/stories260K.bin');
const HAVE = requireShared('pipeline finetune tests', [MODEL_PATH, shared('data/tinystories/calib.txt'), shared('data/tinystories/eval.txt')]);

describe.runIf(HAVE)('compress() with finetuning (stories260K)', () => {
  const model = HAVE ? loadModel(MODEL_PATH) : (undefined as never);
  const calibText = HAVE ? readFileSync(shared('data/tinystories/calib.txt'), 'utf8') : '';
  const evalText = HAVE ? readFileSync(shared('data/tinystories/eval.txt'), 'utf8') : '';
  const dir = mkdtempSync(join(tmpdir(), 'usk-finetune-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const measureQuality = { text: evalText, textSource: 'eval.txt', windows: 4, window: 128 };

  it('binary: a finetuned bundle has lower KL on eval windows than the post-training one, and a training section', async () => {
    const post = await compress({ model, codec: 'binary', measureQuality });
    const tuned = await compress({
      model,
      codec: 'binary',
      measureQuality,
      finetune: { steps: 30, batch: 4, seq: 64, lr: 3e-3, calibText, calibSource: 'calib.txt' },
    });
    const klPost = (post.report.quality as { kl: number }).kl;
    const klTuned = (tuned.report.quality as { kl: number }).kl;
    console.log(`binary stories260K eval KL: post-training ${klPost.toFixed(4)} → finetuned ${klTuned.toFixed(4)} (${tuned.report.seconds.finetune.toFixed(1)} s)`);
    expect(klTuned).toBeLessThan(0.8 * klPost);
    const t = readBundle(tuned.bytes).sections.training as TrainingSection;
    expect(t.method).toBe('ste-trainer');
    expect(t.recipe).toMatchObject({ steps: 30, batch: 4, seq: 64, lr: 3e-3, loss: 'kd', data: 'calib', threads: 1, gemm: 'wasm-simd' });
    expect(t.recipe.calibration?.textSource).toBe('calib.txt');
    expect(t.cost.tokens).toBe(30 * 4 * 64);
    // the wall time is reported, never stored (it would make the bundle differ from run to run)
    expect(t.cost).not.toHaveProperty('wallSeconds');
    expect(tuned.report.training!.cost.wallSeconds).toBeGreaterThan(0);
    expect(t.providers.q).toBe('ste');
    expect(t.trainedLinears).toBe(7 * model.weights.config.nLayers);
    const { wallSeconds: _reported, ...storedCost } = tuned.report.training!.cost;
    expect({ ...tuned.report.training, cost: storedCost }).toEqual(t);
    expect(tuned.report.bpwLinears).toBe(post.report.bpwLinears);
    expect(readBundle(post.bytes).sections.training).toBeUndefined();
  }, 120_000);

  it('a resumed run after a kill gives the same bundle as an uninterrupted run', async () => {
    const ft = { steps: 6, batch: 2, seq: 32, lr: 1e-3, calibText, calibSource: 'calib.txt' };
    const straight = await compress({ model, codec: 'rtn', codecOptions: { bits: 2 }, finetune: ft });
    const ckdir = join(dir, 'ck');
    await expect(
      compress({
        model,
        codec: 'rtn',
        codecOptions: { bits: 2 },
        finetune: {
          ...ft,
          checkpointDir: ckdir,
          checkpointEvery: 1,
          onStep: (r) => {
            if (r.step === 4) throw new Error('killed');
          },
        },
      }),
    ).rejects.toThrow('killed');
    expect(existsSync(join(ckdir, 'finetune.ckpt'))).toBe(true);
    const resumed = await compress({ model, codec: 'rtn', codecOptions: { bits: 2 }, finetune: { ...ft, checkpointDir: ckdir, checkpointEvery: 1, resume: true } });
    // The whole file byte-identical: tensors and sections (the wall time is in the report only).
    expect(Buffer.from(resumed.bytes).equals(Buffer.from(straight.bytes))).toBe(true);
    expect(resumed.report.training!.cost.wallSeconds).toBeGreaterThan(0);
  }, 120_000);

  it('refuses to finetune on the evaluation text', async () => {
    await expect(
      compress({ model, codec: 'binary', measureQuality, finetune: { steps: 1, batch: 1, seq: 8, calibText: evalText, calibSource: 'eval.txt' } }),
    ).rejects.toMatchObject({ code: ErrorCodes.BAD_ARGUMENT });
  });

  it('sweep applies the finetuning recipe to every point', async () => {
    const trainingEvents: string[] = [];
    const r = await sweep({
      model,
      codecs: ['binary', 'rtn:2'],
      bpw: [1],
      evalText,
      evalTextSource: 'eval.txt',
      evalWindows: 1,
      window: 32,
      finetune: { steps: 2, batch: 1, seq: 16, calibText, calibSource: 'calib.txt' },
      onProgress: (e) => {
        if (e.phase === 'finetune') trainingEvents.push(`${e.index}:${e.training!.step}/${e.training!.steps}`);
      },
    });
    // Every point reports its training steps (the CLI draws a bar from them).
    expect(trainingEvents).toEqual(['1:1/2', '1:2/2', '2:1/2', '2:2/2']);
    const points = r.rows.filter((row) => row.codec === 'binary' || row.codec === 'rtn');
    expect(points.length).toBe(2);
    for (const row of points) {
      expect(row.training).toEqual({ tokens: 32, wallSeconds: expect.any(Number) });
      expect(row.command).toContain('--finetune-steps 2 --batch 1 --seq 16 --calib calib.txt');
    }
  }, 120_000);

  it('sketch and littlebit train through their state providers and the bundle runs', async () => {
    for (const [codec, codecOptions] of [
      ['sketch', { bpw: 1 }],
      ['hashednets', { bpw: 1 }],
      ['littlebit', { bpw: 1 }],
    ] as const) {
      const r = await compress({
        model,
        codec,
        codecOptions,
        smallMatrix: 'keep',
        measureQuality: { ...measureQuality, windows: 1, window: 32 },
        finetune: { steps: 2, batch: 1, seq: 16, calibText, calibSource: 'calib.txt' },
      });
      const kind = finetuneProviderKind(codec);
      expect(r.report.training!.providers.q ?? r.report.training!.providers.gate).toBe(kind);
      expect(Number.isFinite((r.report.quality as { kl: number }).kl), codec).toBe(true);
    }
    expect(finetuneProviderKind('sketch')).toBe('sketch-states');
    expect(finetuneProviderKind('littlebit')).toBe('littlebit');
  }, 120_000);

  it('--train-mode ste trains a sketch through the straight-through provider instead of its states', async () => {
    const base = {
      model,
      codec: 'sketch',
      codecOptions: { bpw: 1 },
      measureQuality: { ...measureQuality, windows: 1, window: 32 },
    } as const;
    const ft = { steps: 2, batch: 1, seq: 16, calibText, calibSource: 'calib.txt' };
    const viaSte = await compress({ ...base, finetune: { ...ft, mode: 'ste' } });
    const viaStates = await compress({ ...base, finetune: { ...ft, mode: 'states' } });
    expect(viaSte.report.training!.providers.q).toBe('ste');
    expect(viaStates.report.training!.providers.q).toBe('sketch-states');
    // Different training, different stored states: the two bundles measure differently (both finite).
    const kl = (r: typeof viaSte) => (r.report.quality as { kl: number }).kl;
    expect(Number.isFinite(kl(viaSte))).toBe(true);
    expect(kl(viaSte)).not.toBe(kl(viaStates));
    expect(finetuneFlags({ ...ft, mode: 'ste' })).toContain('--train-mode');
    expect(finetuneFlags({ ...ft, mode: 'auto' })).not.toContain('--train-mode');
  }, 120_000);

  it('trainDense trains the float-stored linears too without changing a single stored bit count', async () => {
    // hashednets leaves O out: with trainDense the O projections train as dense weights, stored in f16 as before.
    const base = { model, codec: 'hashednets', codecOptions: { bpw: 1 }, measureQuality: { ...measureQuality, windows: 1, window: 32 } } as const;
    const ft = { steps: 3, batch: 2, seq: 16, lr: 3e-3, calibText, calibSource: 'calib.txt' };
    const frozen = await compress({ ...base, finetune: ft });
    const trained = await compress({ ...base, finetune: { ...ft, trainDense: true } });
    const o = 'model.layers.0.self_attn.o_proj.weight';
    const tensorOf = (bytes: Uint8Array) => readBundle(bytes).weights.get(o)!;
    const f = tensorOf(frozen.bytes);
    const t = tensorOf(trained.bytes);
    expect(t.entry.codec).toBe('float');
    expect(t.entry.options).toEqual(f.entry.options);
    const data = (w: typeof f) => (w.params as { data: Uint16Array }).data;
    expect(data(t)).toBeInstanceOf(Uint16Array); // still f16
    expect(data(t).length).toBe(data(f).length);
    expect(Buffer.from(data(t).buffer).equals(Buffer.from(data(f).buffer))).toBe(false); // trained
    // The same tensors at the same sizes: only the training section's JSON differs in length (and the
    // header's padding to a multiple of 8 bytes).
    const trainingBytes = (r: typeof frozen) => JSON.stringify(readBundle(r.bytes).sections.training).length;
    const rest = (r: typeof frozen) => r.report.fileBytes - trainingBytes(r);
    expect(Math.abs(rest(trained) - rest(frozen))).toBeLessThan(8 + 16);
    expect(trained.report.linearBits).toBe(frozen.report.linearBits);
    expect(trained.report.bpwLinears).toBe(frozen.report.bpwLinears);
    expect(trained.report.training!.providers.o).toBe('dense');
    expect(trained.report.training!.recipe.trainDense).toBe(true);
    expect(frozen.report.training!.recipe.trainDense).toBeUndefined();
    expect(finetuneFlags({ ...ft, trainDense: true, smoothK: 20 })).toEqual(expect.arrayContaining(['--train-dense', '--smooth-k', '20']));
    expect(() => validateFinetune({ ...ft, smoothK: -1 })).toThrow(/--smooth-k/);
  }, 120_000);

  it('mseWeight sets the hidden-state MSE term of the kd loss: recorded, reproducible as a flag, checked', async () => {
    const base = { model, codec: 'rtn', codecOptions: { bits: 2 }, measureQuality: { ...measureQuality, windows: 1, window: 32 } } as const;
    const ft = { steps: 3, batch: 2, seq: 16, lr: 3e-3, calibText, calibSource: 'calib.txt' };
    const standard = await compress({ ...base, finetune: ft });
    const klOnly = await compress({ ...base, finetune: { ...ft, mseWeight: 0 } });
    expect(standard.report.training!.recipe.lossWeights).toEqual({ kl: 1, mse: 10, ce: 0 });
    expect((readBundle(klOnly.bytes).sections.training as TrainingSection).recipe.lossWeights).toEqual({ kl: 1, mse: 0, ce: 0 });
    // The MSE term's gradient is gone, so the trained weights differ.
    const w = 'model.layers.0.mlp.down_proj.weight';
    const bytesOf = (r: typeof standard) => Buffer.from(JSON.stringify(readBundle(r.bytes).weights.get(w)!.params, (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as Uint8Array) : v)));
    expect(bytesOf(klOnly).equals(bytesOf(standard))).toBe(false);
    expect(finetuneFlags({ ...ft, mseWeight: 0 })).toEqual(expect.arrayContaining(['--mse-weight', '0']));
    expect(() => validateFinetune({ ...ft, mseWeight: -1 })).toThrow(/--mse-weight/);
    expect(() => validateFinetune({ ...ft, mseWeight: Number.NaN })).toThrow(/--mse-weight/);
    expect(() => validateFinetune({ ...ft, loss: 'ce', mseWeight: 1 })).toThrow(/no hidden-state MSE/);
  }, 120_000);

  it('trainEmbedding trains the embedding (tied: the classifier too) and stores it as before, in f16, at the same bit counts', async () => {
    const base = { model, codec: 'rtn', codecOptions: { bits: 2 }, measureQuality: { ...measureQuality, windows: 1, window: 32 } } as const;
    const ft = { steps: 3, batch: 2, seq: 16, lr: 3e-3, calibText, calibSource: 'calib.txt' };
    const frozen = await compress({ ...base, finetune: ft });
    const trained = await compress({ ...base, finetune: { ...ft, trainEmbedding: true, embeddingLrScale: 0.5 } });
    const e = 'model.embed_tokens.weight';
    const tensorOf = (bytes: Uint8Array) => readBundle(bytes).weights.get(e)!;
    const f = tensorOf(frozen.bytes);
    const t = tensorOf(trained.bytes);
    expect(t.entry).toEqual(f.entry);
    const data = (w: typeof f) => (w.params as { data: Uint16Array }).data;
    expect(data(t)).toBeInstanceOf(Uint16Array); // still f16
    expect(Buffer.from(data(t).buffer).equals(Buffer.from(data(f).buffer))).toBe(false); // trained
    expect(data(t).length).toBe(data(f).length);
    const accountingOf = (r: typeof frozen) => (readBundle(r.bytes).sections.accounting as { weights: Record<string, unknown> }).weights[e];
    expect(accountingOf(frozen)).toMatchObject({ bits: expect.any(Number) });
    expect(accountingOf(trained)).toEqual(accountingOf(frozen));
    expect(trained.report.bpwLinears).toBe(frozen.report.bpwLinears);
    expect(trained.report.training!.recipe).toMatchObject({ trainEmbedding: true, embeddingLrScale: 0.5 });
    expect(frozen.report.training!.recipe.trainEmbedding).toBeUndefined();
    expect(finetuneFlags({ ...ft, trainEmbedding: true, embeddingLrScale: 0.5 })).toEqual(expect.arrayContaining(['--train-embedding', '--embedding-lr-scale', '0.5']));
    // Refused: a scale without the flag, a non-positive scale, the WebGPU trainer, and a non-float storage.
    expect(() => validateFinetune({ ...ft, embeddingLrScale: 0.5 })).toThrow(/--embedding-lr-scale.*no effect|no effect without --train-embedding/);
    expect(() => validateFinetune({ ...ft, trainEmbedding: true, embeddingLrScale: 0 })).toThrow(/positive/);
    expect(() => validateFinetune({ ...ft, trainEmbedding: true, device: 'webgpu' })).toThrow(/WebGPU trainer does not train the embedding/);
    await expect(compress({ ...base, embeddings: 'rtn4', finetune: { ...ft, trainEmbedding: true } })).rejects.toMatchObject({
      code: ErrorCodes.BAD_ARGUMENT,
      source: '--train-embedding',
      hint: expect.stringContaining('--embeddings f16'),
    });
  }, 120_000);

  it('--train-mode states refuses a codec without a state-training provider, before encoding anything', async () => {
    expect(() => finetuneProviderKind('binary', 'states')).toThrow(expect.objectContaining({ code: 'E_BAD_ARGUMENT' }));
    let encoded = 0;
    await expect(
      compress({ model, codec: 'binary', onProgress: () => encoded++, finetune: { steps: 1, calibText, calibSource: 'calib.txt', mode: 'states' } }),
    ).rejects.toMatchObject({ code: 'E_BAD_ARGUMENT' });
    expect(encoded).toBe(0);
    expect(finetuneProviderKind('binary', 'ste')).toBe('ste');
    expect(finetuneProviderKind('littlebit', 'ste')).toBe('ste');
    expect(() => validateFinetune({ steps: 1, calibText: 'x', mode: 'bogus' as never })).toThrow(/--train-mode/);
  });

  it('uses the state-training providers when registered, else ste', () => {
    expect(finetuneProviderKind('binary')).toBe('ste');
    expect(finetuneProviderKind('rtn')).toBe('ste');
    expect(['ste', 'littlebit']).toContain(finetuneProviderKind('littlebit'));
  });
});
