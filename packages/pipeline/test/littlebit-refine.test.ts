import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, getCodec } from '@ultrasketch/core';
import { readBundle } from '@ultrasketch/format';
import { describe, expect, it } from 'vitest';
import {
  type CompressResult,
  type TrainingSection,
  calibrate,
  codecFlags,
  codecOptionKeys,
  codecUsesSaliency,
  compress,
  loadModel,
  parseCodecSpec,
  resolveCodecOptions,
  sweep,
} from '../src/index.js';
import { requireShared } from '../../../test/require-shared.js';

/**
 * littlebit's opt-in refined initialization (lsRounds, refineSigns, refineRounds, refineObjective) through the
 * pipeline: option keys, the calibration decision, sweep specs and reproduced flags, compress and finetune.
 */
const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL_PATH = shared('models/stories260K/stories260K.bin');
const CALIB = shared('data/tinystories/calib.txt');
const EVAL = shared('data/tinystories/eval.txt');
const HAVE = requireShared('pipeline littlebit-refine tests', [MODEL_PATH, CALIB, EVAL]);

describe('littlebit refine options: keys, calibration decision, specs, flags', () => {
  it('the pipeline knows the four refine keys; only the activation objective uses saliency', () => {
    expect(codecOptionKeys('littlebit')).toEqual(expect.arrayContaining(['lsRounds', 'refineSigns', 'refineRounds', 'refineObjective']));
    const uses = (raw: Record<string, unknown>) => codecUsesSaliency('littlebit', resolveCodecOptions('littlebit', raw));
    expect(uses({ bpw: 1 })).toBe(false);
    expect(uses({ bpw: 1, lsRounds: 8, refineSigns: true })).toBe(false);
    expect(uses({ bpw: 1, lsRounds: 8, refineObjective: 'frobenius' })).toBe(false);
    expect(uses({ bpw: 1, lsRounds: 8, refineSigns: true, refineObjective: 'activation' })).toBe(true);
    expect(uses({ bpw: 1, refineRounds: 2, refineObjective: 'activation' })).toBe(true);
  });

  it('sweep specs take the keys in kebab or camel case; codecFlags reproduces them as compress flags', () => {
    const s = parseCodecSpec('littlebit:residual=false:ls-rounds=8:refine-signs=true:refine-objective=activation');
    expect(s).toEqual({
      label: 'littlebit:residual=false:ls-rounds=8:refine-signs=true:refine-objective=activation',
      codec: 'littlebit',
      options: { residual: false, lsRounds: 8, refineSigns: true, refineObjective: 'activation' },
    });
    expect(parseCodecSpec('littlebit:lsRounds=8:refineSigns=true:refineRounds=2').options).toEqual({ lsRounds: 8, refineSigns: true, refineRounds: 2 });
    expect(codecFlags(s.options)).toEqual(['--no-residual', '--ls-rounds', '8', '--refine-signs', '--refine-objective', 'activation']);
    expect(codecFlags({ bpw: 0.55, lsRounds: 0, refineSigns: false, refineRounds: 3 })).toEqual(['--bpw', '0.55', '--ls-rounds', '0', '--refine-rounds', '3']);
    expect(() => parseCodecSpec('littlebit:refine-sign=true')).toThrow(/has no option "refineSign"/);
  });
});

/** Σ‖W − Ŵ‖² / Σ‖W‖² over the compressed linears of a bundle; with `saliency`, columns weighted by E[a_j²]. */
function weightError(r: CompressResult, teacher: Map<string, { data: Float32Array }>, saliency?: ReadonlyMap<string, Float64Array>): number {
  let num = 0;
  let den = 0;
  for (const [name, w] of readBundle(r.bytes).weights) {
    if (w.entry.codec !== 'littlebit') continue;
    const dec = getCodec('littlebit').decode(w.params);
    const ref = teacher.get(name)!.data;
    const cols = w.entry.cols;
    const s = saliency?.get(name);
    for (let i = 0; i < dec.length; i++) {
      const c = s ? s[i % cols]! : 1;
      num += c * (ref[i]! - dec[i]!) ** 2;
      den += c * ref[i]! ** 2;
    }
  }
  return num / den;
}

describe.runIf(HAVE)('littlebit refined init in compress, finetune and sweep (stories260K)', () => {
  const model = HAVE ? loadModel(MODEL_PATH) : (undefined as never);
  const calibText = HAVE ? readFileSync(CALIB, 'utf8') : '';
  const evalText = HAVE ? readFileSync(EVAL, 'utf8') : '';
  const measureQuality = { text: evalText, textSource: 'eval.txt', windows: 4, window: 128 };
  const cal = HAVE ? calibrate({ model, text: calibText, textSource: CALIB, maxTokens: 1024 }) : (undefined as never);
  const teacher = HAVE ? (model.weights.tensors as Map<string, { data: Float32Array }>) : new Map();
  // 1.0 bpw with one path: every stories260K linear (also the 32×64 K/V) is feasible.
  const base = { bpw: 1, residual: false };

  it('--no-residual: lsRounds 8 + refineSigns lowers the weight error and the eval KL; so does the activation objective (calibrated) on the E[a²]-weighted error', async () => {
    const plain = await compress({ model, codec: 'littlebit', codecOptions: base, measureQuality });
    const refined = await compress({ model, codec: 'littlebit', codecOptions: { ...base, lsRounds: 8, refineSigns: true }, measureQuality });
    const actOptions = { ...base, lsRounds: 8, refineSigns: true, refineObjective: 'activation' };
    const act = await compress({ model, codec: 'littlebit', codecOptions: actOptions, saliency: cal.stats.meanSquare, calibration: cal.info, measureQuality });
    const kl = (r: CompressResult) => (r.report.quality as { kl: number }).kl;
    const eF = [plain, refined, act].map((r) => weightError(r, teacher));
    const eA = [plain, refined, act].map((r) => weightError(r, teacher, cal.stats.meanSquare));
    console.log(
      `stories260K littlebit 1.0 bpw one path — relF² plain ${eF[0]!.toFixed(4)}, ls+s ${eF[1]!.toFixed(4)}, ls+sA ${eF[2]!.toFixed(4)}; ` +
        `relA² ${eA[0]!.toFixed(4)}, ${eA[1]!.toFixed(4)}, ${eA[2]!.toFixed(4)}; eval KL ${kl(plain).toFixed(4)}, ${kl(refined).toFixed(4)}, ${kl(act).toFixed(4)}`,
    );
    expect(eF[1]).toBeLessThan(eF[0]!);
    expect(eA[2]).toBeLessThan(eA[0]!);
    expect(kl(refined)).toBeLessThan(kl(plain));
    expect(kl(act)).toBeLessThan(kl(plain));
    expect(plain.report.saliencyUsed).toBe(false);
    expect(refined.report.saliencyUsed).toBe(false);
    expect(act.report.saliencyUsed).toBe(true);
    expect(act.report.codec.options).toMatchObject({ lsRounds: 8, refineSigns: true, refineObjective: 'activation' });
    // same stored form and bits as the plain init
    expect(refined.report.bpwLinears).toBe(plain.report.bpwLinears);
    expect(act.report.bpwLinears).toBe(plain.report.bpwLinears); // (the file differs by its metadata: options, calibration)
    // the activation objective without calibration statistics is refused
    await expect(compress({ model, codec: 'littlebit', codecOptions: actOptions })).rejects.toMatchObject({ code: ErrorCodes.BAD_ARGUMENT });
  }, 120_000);

  it('finetune 2 steps from the refined init (activation objective): the trainer starts from exactly the stored refined paths', async () => {
    const codecOptions = { ...base, lsRounds: 4, refineSigns: true, refineObjective: 'activation' };
    const r = await compress({
      model,
      codec: 'littlebit',
      codecOptions,
      saliency: cal.stats.meanSquare,
      calibration: cal.info,
      measureQuality,
      finetune: { steps: 2, batch: 2, seq: 32, lr: 1e-3, calibText, calibSource: 'calib.txt' },
    });
    const t = readBundle(r.bytes).sections.training as TrainingSection;
    expect(t.providers.q).toBe('littlebit');
    expect(t.recipe.steps).toBe(2);
    expect(r.report.saliencyUsed).toBe(true);
    expect(Number.isFinite((r.report.quality as { kl: number }).kl)).toBe(true);
    // every linear keeps the refined options in its entry (they decode like any littlebit tensor)
    for (const [, w] of readBundle(r.bytes).weights) {
      if (w.entry.codec === 'littlebit') expect(w.entry.options).toMatchObject({ lsRounds: 4, refineSigns: true, refineObjective: 'activation' });
    }
    // The start point: one step at a negligible learning rate stores exactly the post-training refined tensors
    // (same sign bits, same f16 scales), so the provider initialised from the codec's refined encode.
    const post = await compress({ model, codec: 'littlebit', codecOptions, saliency: cal.stats.meanSquare, calibration: cal.info });
    const still = await compress({
      model,
      codec: 'littlebit',
      codecOptions,
      saliency: cal.stats.meanSquare,
      calibration: cal.info,
      finetune: { steps: 1, batch: 1, seq: 16, lr: 1e-12, calibText, calibSource: 'calib.txt' },
    });
    const a = readBundle(post.bytes).weights;
    const b = readBundle(still.bytes).weights;
    let compared = 0;
    for (const [name, w] of a) {
      if (w.entry.codec !== 'littlebit') continue;
      const codec = getCodec('littlebit');
      expect(codec.toTensors(b.get(name)!.params), name).toEqual(codec.toTensors(w.params));
      compared++;
    }
    expect(compared).toBe(7 * model.weights.config.nLayers);
  }, 120_000);

  it('sweep: a spec with the activation objective calibrates (on calib text) and its row command reproduces the flags and --calib', async () => {
    const result = await sweep({
      model,
      codecs: ['littlebit:residual=false:ls-rounds=2:refine-signs=true:refine-objective=activation'],
      bpw: [1.0],
      evalText,
      evalTextSource: EVAL,
      evalWindows: 1,
      window: 128,
      calibration: { text: calibText, textSource: CALIB, maxTokens: 256 },
      command: 'test sweep',
    });
    const row = result.rows[1]!;
    expect(row.status).toBe('ok');
    expect(row.command).toContain('--no-residual --ls-rounds 2 --refine-signs --refine-objective activation');
    expect(row.command).toContain(`--calib ${CALIB} --calib-tokens 256`);
    expect(row.command).toContain('--bpw 1');
  }, 120_000);
});
