import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes } from '@ultrasketch/core';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel, recipeSettings, teacherCorpus } from '../src/index.js';
import { requireShared } from '../../../test/require-shared.js';

/** Teacher samples generated once and cached (teacher-corpus.ts), and the named recipes (recipes.ts). */
const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL_PATH = shared('models/stories260K/stories260K.bin');
const HAVE = requireShared('teacher corpus tests', [MODEL_PATH]);

describe.runIf(HAVE)('teacher samples cached on disk (stories260K)', () => {
  const weights = HAVE ? loadModel(MODEL_PATH).weights : (undefined as never);
  const dir = mkdtempSync(join(tmpdir(), 'usk-corpus-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const opts = (d: string, windows: number) => ({ dir: d, windows, seqLen: 12, seed: 7 });

  it('window i is a pure function of (model, seed, i): a longer corpus extends a shorter one, from the cache or from scratch', () => {
    const a = teacherCorpus(weights, opts(join(dir, 'a'), 3));
    expect(a).toMatchObject({ windows: 3, reused: 0, generated: 3 });
    expect(a.tokens).toHaveLength(3 * 13);
    for (let i = 0; i < 3; i++) expect(a.tokens[i * 13]).toBe(1); // BOS first
    expect(a.tokens.every((t) => t >= 0 && t < weights.config.vocabSize)).toBe(true);
    // The windows differ from each other (their generators differ).
    expect(a.tokens.subarray(0, 13)).not.toEqual(a.tokens.subarray(13, 26));

    const b = teacherCorpus(weights, opts(join(dir, 'a'), 5));
    expect(b).toMatchObject({ windows: 5, reused: 3, generated: 2 });
    expect(b.tokens.subarray(0, 39)).toEqual(a.tokens);
    const fresh = teacherCorpus(weights, opts(join(dir, 'b'), 5));
    expect(fresh.tokens).toEqual(b.tokens);
    // Fewer than cached: the file's first windows, exactly as many as asked (what a run trains on follows from its
    // command, not from how far another run extended the cache); the file keeps all five.
    const fewer = teacherCorpus(weights, opts(join(dir, 'a'), 2));
    expect(fewer).toMatchObject({ windows: 2, reused: 2, generated: 0 });
    expect(fewer.tokens).toEqual(b.tokens.subarray(0, 2 * 13));
    expect(teacherCorpus(weights, opts(join(dir, 'a'), 5))).toMatchObject({ windows: 5, reused: 5, generated: 0 });
    // Another seed is another file and other windows.
    const other = teacherCorpus(weights, { ...opts(join(dir, 'a'), 3), seed: 8 });
    expect(other.tokens).not.toEqual(a.tokens);
    expect(readdirSync(join(dir, 'a')).filter((f) => f.endsWith('.tok')).sort()).toEqual([
      `teacher-${a.key.model}-w13-s7-t1.tok`,
      `teacher-${a.key.model}-w13-s8-t1.tok`,
    ]);
  });

  it('a damaged or truncated file is regenerated, never trained on', () => {
    const d = join(dir, 'c');
    const a = teacherCorpus(weights, opts(d, 4));
    const bytes = readFileSync(a.path);
    const bad = new Uint8Array(bytes); // a copy with its own ArrayBuffer (a Buffer may be a view into a pool)
    new DataView(bad.buffer).setInt32(32 + 4 * 5, 1 << 30, true); // a token id out of range
    writeFileSync(a.path, bad);
    expect(teacherCorpus(weights, opts(d, 4))).toMatchObject({ reused: 0, generated: 4 });
    writeFileSync(a.path, bytes.subarray(0, bytes.length - 3));
    const again = teacherCorpus(weights, opts(d, 4));
    expect(again).toMatchObject({ reused: 0, generated: 4 });
    expect(again.tokens).toEqual(a.tokens);
  });

  it('refuses windows longer than the model context', () => {
    expect(() => teacherCorpus(weights, { dir, windows: 1, seqLen: weights.config.seqLen, seed: 0 })).toThrow(
      expect.objectContaining({ code: ErrorCodes.BAD_ARGUMENT, message: expect.stringMatching(/exceed the model's seq_len/) }),
    );
  });
});

describe('recipes', () => {
  it('per method: LittleBit gets the refined one-path init and lr 3e-3; the budget sets the steps; seq is clamped to the model', () => {
    const lb = recipeSettings('quick', 'littlebit', 512);
    expect(lb).toMatchObject({ lr: 3e-3, batch: 4, seq: 128, loss: 'kd', data: 'both', smallMatrix: 'keep', steps: 200 });
    expect(lb.codecOptions).toEqual({ residual: false, lsRounds: 8, refineSigns: true, refineObjective: 'activation' });
    expect(recipeSettings('long', 'sketch', 512)).toMatchObject({ lr: 1e-3, steps: 20_000, codecOptions: {} });
    // a recipe's own per-method change (results §11.3): binary STE trains at 1e-4 on the long schedule only
    expect(recipeSettings('long', 'binary', 512)).toMatchObject({ lr: 1e-4, smallMatrix: 'keep', steps: 20_000 });
    expect(recipeSettings('quick', 'binary', 512)).toMatchObject({ lr: 1e-3, smallMatrix: 'keep' });
    // results §11.3b: LittleBit's 3e-3 was chosen at 200 steps; the standard and long schedules train at 1e-3,
    // keeping the init
    for (const name of ['standard', 'long']) {
      expect(recipeSettings(name, 'littlebit', 512)).toMatchObject({ lr: 1e-3, smallMatrix: 'keep', codecOptions: lb.codecOptions, plan: 'kl' });
    }
    // results §11.1c: the KL bit plan where its cost is small against the budget; not quick, not other methods
    expect(lb.plan).toBeUndefined();
    expect(recipeSettings('long', 'sketch', 512).plan).toBeUndefined();
    expect(recipeSettings('standard', 'hashednets', 64)).toMatchObject({ seq: 64, steps: 4000 });
    // results §11.3d/§11.3f: the embedding trains with LittleBit, the sketch and HashedNets on the standard and long schedules,
    // not on the quick one, and not with binary STE (no gain measured)
    for (const name of ['standard', 'long']) {
      expect(recipeSettings(name, 'littlebit', 512).trainEmbedding).toBe(true);
      expect(recipeSettings(name, 'sketch', 512).trainEmbedding).toBe(true);
      expect(recipeSettings(name, 'hashednets', 512).trainEmbedding).toBe(true);
      expect(recipeSettings(name, 'binary', 512).trainEmbedding).toBeUndefined();
    }
    expect(recipeSettings('quick', 'sketch', 512).trainEmbedding).toBeUndefined();
  });

  it('an unknown recipe or a codec without training is BAD_ARGUMENT naming the choices', () => {
    expect(() => recipeSettings('forever', 'littlebit', 512)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_ARGUMENT, message: expect.stringMatching(/forever/) }));
    expect(() => recipeSettings('quick', 'float', 512)).toThrow(/codec float has nothing to finetune/);
  });
});
