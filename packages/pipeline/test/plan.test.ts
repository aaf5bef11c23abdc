import { fileURLToPath } from 'node:url';
import { ErrorCodes } from '@ultrasketch/core';
import { readBundle } from '@ultrasketch/format';
import { TensorNames } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { calibrate, compress, loadBundleFromBytes, loadModel, sensitivityPlan } from '../src/index.js';
import { readFileSync } from 'node:fs';
import { requireShared } from '../../../test/require-shared.js';

/** The mixed bit plan (plan.ts): one budget spent across linears by measured sensitivity. */
const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL_PATH = shared('models/stories260K/stories260K.bin');
const CALIB = shared('data/tinystories/calib.txt');
const HAVE = requireShared('sensitivity plan tests', [MODEL_PATH, CALIB]);

describe.runIf(HAVE)('sensitivity plan (stories260K, hashednets)', () => {
  const model = HAVE ? loadModel(MODEL_PATH) : (undefined as never);
  const names: string[] = [];
  if (HAVE) for (let l = 0; l < model.weights.config.nLayers; l++) for (const k of ['q', 'k', 'v', 'gate', 'up', 'down'] as const) names.push(TensorNames.linear(l, k));
  const stats = HAVE ? calibrate({ model, text: readFileSync(CALIB, 'utf8'), maxTokens: 512 }).stats.meanSquare : (undefined as never);

  it('stays within the uniform plan\'s bits, never has more activation-weighted error than it, and compress() stores each linear\'s own rate', async () => {
    const plan = sensitivityPlan({ weights: model.weights, codecId: 'hashednets', codecOptions: { bpw: 1 }, names, saliency: stats, seed: 0 });
    expect(plan.plannedBits).toBeLessThanOrEqual(plan.budgetBits);
    expect(plan.totalError).toBeLessThanOrEqual(plan.uniformError);
    expect(plan.candidates).toEqual([0.5, 0.75, 1, 1.5, 2]);
    expect(Object.keys(plan.bpw).sort()).toEqual([...names].sort());
    // Not uniform: some linears were given more than the target, some less.
    const rates = new Set(Object.values(plan.bpw));
    expect(rates.size).toBeGreaterThan(1);
    // The error of each linear at its rate is the measured one; the sum is the total.
    expect(plan.linears.reduce((a, l) => a + l.error, 0)).toBeCloseTo(plan.totalError, 6);

    const uniform = await compress({ model, codec: 'hashednets', codecOptions: { bpw: 1 }, seed: 0 });
    const mixed = await compress({ model, codec: 'hashednets', codecOptions: { bpw: 1 }, bpwPlan: plan.bpw, seed: 0 });
    const b = loadBundleFromBytes(mixed.bytes, 'mixed.usk');
    for (const name of names) expect((b.bundle.weights.get(name)!.entry.options as { bpw: number }).bpw).toBe(plan.bpw[name]);
    // Equal stored bits (the plan spends at most the uniform plan's), both recomputed from the files.
    expect(mixed.report.accounting.linearBits).toBe(plan.plannedBits);
    expect(uniform.report.accounting.linearBits).toBe(plan.budgetBits);
    expect(readBundle(mixed.bytes).weights.size).toBe(readBundle(uniform.bytes).weights.size);
  });

  it("the 'kl' objective measures each linear's damage through the whole network: positive, larger at lower rates", () => {
    // One window of tokens of stories260K's vocabulary (512), starting with BOS.
    const windows = [Int32Array.from([1, 403, 261, 407, 285, 330, 266, 397, 300, 287, 368, 273, 314, 260, 289, 458])];
    const two = names.slice(0, 2);
    const plan = sensitivityPlan({ weights: model.weights, codecId: 'hashednets', codecOptions: { bpw: 1 }, names: two, seed: 0, objective: 'kl', klWindows: windows });
    expect(plan.objective).toBe('kl');
    expect(plan.plannedBits).toBeLessThanOrEqual(plan.budgetBits);
    for (const l of plan.linears) {
      expect(l.error).toBeGreaterThan(0);
      expect(Number.isFinite(l.error)).toBe(true);
    }
    // More bits, less damage, for the same linears (LittleBit, whose error falls steeply with rank; HashedNets
    // at these sizes barely improves before training, so its KL ordering is noise).
    const mlp = [TensorNames.linear(0, 'gate'), TensorNames.linear(0, 'down')];
    const at = (bpw: number) =>
      sensitivityPlan({ weights: model.weights, codecId: 'littlebit', codecOptions: { bpw }, names: mlp, seed: 0, objective: 'kl', klWindows: windows, candidates: [bpw] }).totalError;
    expect(at(4)).toBeLessThan(at(1));
  });

  it('needs a bpw target', () => {
    expect(() => sensitivityPlan({ weights: model.weights, codecId: 'binary', codecOptions: {}, names, seed: 0 })).toThrow(
      expect.objectContaining({ code: ErrorCodes.BAD_ARGUMENT, message: expect.stringMatching(/needs a --bpw target/) }),
    );
  });
});
