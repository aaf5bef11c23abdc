import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HAVE_SHARED, MODELS, cli, ensureBuilt, parseOneObject, parseSafetensorsSpec } from './helpers.js';

/** `compress --recipe NAME` and cached teacher samples, through the built command (stories260K, tiny budgets). */
let tmp = '';
beforeAll(() => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'ultrasketch-recipe-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const M = MODELS.stories260K;

interface Report {
  training: {
    recipe: Record<string, unknown> & { teacherSamples?: { windows: number; holdout: number; model: string } };
    holdout?: { windows: number; positions: number; kl: number; ce: number; top1: number };
    cost: { steps: number; tokens: number };
  };
}

describe.skipIf(!HAVE_SHARED)('compress --recipe', () => {
  it('fills in the recipe where no flag was given, records its name, trains on cached teacher samples and measures the hold-out', () => {
    const samples = join(tmp, 'samples');
    const run = (out: string, extra: string[] = []) =>
      cli(['compress', M, '--codec', 'binary', '--recipe', 'quick', '--finetune-steps', '2', '--seq', '16', '--teacher-samples', samples, '--teacher-holdout', '4', ...extra, '-o', join(tmp, out), '--json']);
    const r = run('a.usk');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/recipe quick for binary: 2 steps × 4 × 16 = 128 training tokens, lr 0\.001, loss kd, data both/);
    const a = parseOneObject(r.stdout) as Report;
    // The recipe's batch, lr, loss and data; the explicit --finetune-steps and --seq win over its budget and length.
    expect(a.training.recipe).toMatchObject({ name: 'quick', steps: 2, batch: 4, seq: 16, lr: 0.001, loss: 'kd', data: 'both' });
    // 4 held out + 2 steps × 2 teacher windows of 17 tokens.
    expect(a.training.recipe.teacherSamples).toMatchObject({ windows: 8, holdout: 4, window: 17, seed: 0 });
    expect(a.training.holdout).toMatchObject({ windows: 4, positions: 64 });
    for (const k of ['kl', 'ce', 'top1'] as const) expect(Number.isFinite(a.training.holdout![k])).toBe(true);
    expect(readdirSync(samples).filter((f) => f.endsWith('.tok'))).toHaveLength(1);
    const shown = cli(['inspect', join(tmp, 'a.usk')]);
    expect(shown.stdout).toMatch(/training +2 steps × 4 × 16 = 128 tokens; recipe quick, loss kd, data both, lr 0\.001/);
    expect(shown.stdout).toMatch(/held out +KL .* on 4 teacher window\(s\) never trained on/);

    // Same command again: the cached samples are reused (nothing generated), the training is identical.
    const again = run('b.usk');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/teacher samples: /);
    const b = parseOneObject(again.stdout) as Report;
    expect(b.training.holdout).toEqual(a.training.holdout);

    // An explicit flag wins over the recipe.
    const lr = run('c.usk', ['--lr', '0.0005']);
    expect(lr.code, lr.stderr).toBe(0);
    expect((parseOneObject(lr.stdout) as Report).training.recipe).toMatchObject({ name: 'quick', lr: 0.0005 });
  });

  it('the recipe budget sets the steps; a codec with nothing to train and an unknown recipe are refused', () => {
    const float = cli(['compress', M, '--codec', 'float', '--recipe', 'quick', '-o', join(tmp, 'f.usk')]);
    expect(float.code).toBe(1);
    expect(float.stderr).toMatch(/recipe quick: codec float has nothing to finetune/);
    const unknown = cli(['compress', M, '--codec', 'binary', '--recipe', 'forever', '-o', join(tmp, 'u.usk')]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/forever/);
    expect(unknown.stderr).toMatch(/quick, standard, long/);
  });

  it('--teacher-samples needs teacher data', () => {
    const r = cli(['compress', M, '--codec', 'binary', '--finetune-steps', '1', '--teacher-samples', join(tmp, 's'), '-o', join(tmp, 't.usk')]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--teacher-samples.*need --data teacher or both/);
  });

  it('--stop-after-steps: a long run in segments, each a bundle; the last segment equals the run straight through', () => {
    const ckpt = join(tmp, 'segments');
    const base = ['compress', M, '--codec', 'binary', '--finetune-steps', '4', '--batch', '2', '--seq', '16', '--checkpoint-dir', ckpt];
    const first = cli([...base, '--stop-after-steps', '2', '-o', join(tmp, 'seg2.usk'), '--json']);
    expect(first.code, first.stderr).toBe(0);
    expect((parseOneObject(first.stdout) as Report).training.cost).toMatchObject({ steps: 2, tokens: 64 });
    const second = cli([...base, '--resume', '--stop-after-steps', '4', '-o', join(tmp, 'seg4.usk'), '--json']);
    expect(second.code, second.stderr).toBe(0);
    expect((parseOneObject(second.stdout) as Report).training.cost).toMatchObject({ steps: 4, tokens: 128 });
    const straight = cli(['compress', M, '--codec', 'binary', '--finetune-steps', '4', '--batch', '2', '--seq', '16', '-o', join(tmp, 'straight.usk')]);
    expect(straight.code, straight.stderr).toBe(0);
    const data = (p: string) => {
      const bytes = readFileSync(p);
      return bytes.subarray(8 + parseSafetensorsSpec(bytes).headerBytes);
    };
    expect(data(join(tmp, 'seg4.usk')).equals(data(join(tmp, 'straight.usk')))).toBe(true);
    expect(data(join(tmp, 'seg2.usk')).equals(data(join(tmp, 'straight.usk')))).toBe(false);
    const bad = cli([...base, '--stop-after-steps', '5', '-o', join(tmp, 'seg5.usk')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/--stop-after-steps: 5 must be an integer in 1\.\.4/);
  });

  it('standard and long give LittleBit the KL bit plan unless --plan is given; a streamed model keeps the uniform plan', () => {
    const base = ['--codec', 'littlebit', '--bpw', '1.0', '--recipe', 'standard', '--finetune-steps', '1', '--seq', '16', '--data', 'calib', '--eval-windows', '0'];
    const kl = cli(['compress', M, ...base, '-o', join(tmp, 'lb-kl.usk'), '--json']);
    expect(kl.code, kl.stderr).toBe(0);
    expect(kl.stderr).toMatch(/recipe standard for littlebit: .*, plan kl,/);
    expect(kl.stderr).toMatch(/plan: kl, [\d,]+ of [\d,]+ bits \(the uniform plan's\); rates /);
    const uniform = cli(['compress', M, ...base, '--plan', 'uniform', '-o', join(tmp, 'lb-uniform.usk'), '--json']);
    expect(uniform.code, uniform.stderr).toBe(0);
    expect(uniform.stderr).not.toMatch(/plan: kl/);
    // The plan's rates change the factors' ranks, so the stored sign tensors' shapes differ from the uniform plan's.
    const signShapes = (file: string) =>
      JSON.stringify([...parseSafetensorsSpec(readFileSync(join(tmp, file))).tensors].filter(([n]) => n.endsWith('.u_signs')).map(([n, t]) => [n, t.shape]));
    expect(signShapes('lb-kl.usk')).not.toBe(signShapes('lb-uniform.usk'));
    const streamed = cli(['compress', join(M, '..', 'hf'), ...base, '-o', join(tmp, 'lb-hf.usk')]);
    expect(streamed.code, streamed.stderr).toBe(0);
    expect(streamed.stderr).toMatch(/plan uniform \(the recipe's kl plan needs the model in memory\)/);
  });

  it('standard and long train LittleBit\'s embedding when it is stored in float; --no-train-embedding keeps it frozen', () => {
    const base = ['--codec', 'littlebit', '--bpw', '1.0', '--recipe', 'standard', '--plan', 'uniform', '--finetune-steps', '1', '--seq', '16', '--data', 'calib', '--eval-windows', '0'];
    const trained = cli(['compress', M, ...base, '-o', join(tmp, 'lb-emb.usk'), '--json']);
    expect(trained.code, trained.stderr).toBe(0);
    expect(trained.stderr).toMatch(/recipe standard for littlebit: .*, embedding trained,/);
    expect((parseOneObject(trained.stdout) as Report).training.recipe).toMatchObject({ trainEmbedding: true, embeddingLrScale: 1 });
    const frozen = cli(['compress', M, ...base, '--no-train-embedding', '-o', join(tmp, 'lb-frozen.usk'), '--json']);
    expect(frozen.code, frozen.stderr).toBe(0);
    expect(frozen.stderr).not.toMatch(/embedding trained/);
    expect((parseOneObject(frozen.stdout) as Report).training.recipe.trainEmbedding).toBeUndefined();
    // Stored in the same dtype and size (that the values differ: packages/pipeline/test/finetune.test.ts).
    const embeddingBytes = (file: string) => {
      const bytes = readFileSync(join(tmp, file));
      const t = [...parseSafetensorsSpec(bytes).tensors].find(([n]) => n.startsWith('model.embed_tokens.weight'))!;
      return t[1];
    };
    expect(JSON.stringify(embeddingBytes('lb-emb.usk'))).toBe(JSON.stringify(embeddingBytes('lb-frozen.usk')));
    const coded = cli(['compress', M, ...base, '--embeddings', 'rtn4', '-o', join(tmp, 'lb-rtn4.usk'), '--json']);
    expect(coded.code, coded.stderr).toBe(0);
    expect(coded.stderr).toMatch(/embedding frozen \(the recipe trains it only when stored in float, not rtn4\)/);
    const both = cli(['compress', M, ...base, '--train-embedding', '--no-train-embedding', '-o', join(tmp, 'lb-both.usk')]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/give --train-embedding or --no-train-embedding, not both/);
    const explicit = cli(['compress', M, ...base, '--embeddings', 'rtn4', '--train-embedding', '-o', join(tmp, 'lb-rtn4-trained.usk')]);
    expect(explicit.code).toBe(1);
    expect(explicit.stderr).toMatch(/--train-embedding trains float values, and --embeddings rtn4 stores rtn codes/);
  });

  it('--plan sensitivity: the same total bits spread by measured sensitivity, each linear with its own rate; a streamed model is refused', () => {
    const uniform = cli(['compress', M, '--codec', 'hashednets', '--bpw', '1', '-o', join(tmp, 'uniform.usk'), '--json']);
    expect(uniform.code, uniform.stderr).toBe(0);
    const mixed = cli(['compress', M, '--codec', 'hashednets', '--bpw', '1', '--plan', 'sensitivity', '-o', join(tmp, 'mixed.usk'), '--json']);
    expect(mixed.code, mixed.stderr).toBe(0);
    expect(mixed.stderr).toMatch(/plan: sensitivity, [\d,]+ of [\d,]+ bits \(the uniform plan's\); rates /);
    const u = parseOneObject(uniform.stdout) as { bpwLinears: number };
    const m = parseOneObject(mixed.stdout) as { bpwLinears: number; layers: Array<{ options: { bpw: number } }> };
    expect(m.bpwLinears).toBeLessThanOrEqual(u.bpwLinears);
    const hf = join(M, '..', 'hf');
    const streamed = cli(['compress', hf, '--codec', 'hashednets', '--bpw', '1', '--plan', 'sensitivity', '-o', join(tmp, 'hf.usk')]);
    expect(streamed.code).not.toBe(0);
    expect(streamed.stderr).toMatch(/--plan sensitivity .* needs the model in memory/);
  });
});
