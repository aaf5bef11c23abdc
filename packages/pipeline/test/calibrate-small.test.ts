/**
 * Calibration (saliency into the sketch codec, the evaluation-text guard) and the small-matrix policy of
 * compress() (littlebit budgets a matrix cannot meet: refuse, or keep it dense and say so).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { readBundle } from '@ultrasketch/format';
import { LlamaForward } from '@ultrasketch/model';
import { collectSaliency } from '@ultrasketch/saliency';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertNotEvaluationText,
  calibrate,
  codecUsesSaliency,
  compress,
  createSession,
  documentTokenStream,
  inspectBundle,
  loadBundle,
  loadModel,
  matrixFeasibility,
  openModel,
  openReference,
  resolveCodecOptions,
} from '../src/index.js';
import { requireShared } from '../../../test/require-shared.js';

const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL_PATH = shared('models/stories260K/stories260K.bin');
const CALIB = shared('data/tinystories/calib.txt');
const EVAL = shared('data/tinystories/eval.txt');
const HAVE_SHARED = requireShared('pipeline calibrate-small tests', [MODEL_PATH, CALIB, EVAL]);

async function expectCode(p: Promise<unknown> | (() => unknown), code: string, text?: RegExp): Promise<UltraSketchError> {
  let caught: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(UltraSketchError);
  const e = caught as UltraSketchError;
  expect(e.code).toBe(code);
  if (text) expect(e.message).toMatch(text);
  return e;
}

describe('the evaluation-text guard', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'usk-guard-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses a file named eval.txt, the same file, and a copy with the same bytes; accepts other text', async () => {
    const evalBytes = new TextEncoder().encode('Once upon a time.\n\nThe end.\n');
    const evalPath = join(dir, 'held-out.txt');
    writeFileSync(evalPath, evalBytes);
    const named = join(dir, 'eval.txt');
    writeFileSync(named, 'different text');
    const copy = join(dir, 'copy.txt');
    writeFileSync(copy, evalBytes);
    const calib = join(dir, 'calib.txt');
    writeFileSync(calib, 'Calibration only.');
    const evals = [{ path: evalPath, bytes: evalBytes }];
    await expectCode(() => assertNotEvaluationText({ path: named, bytes: readFileSync(named) }, evals), ErrorCodes.BAD_ARGUMENT, /eval\.txt/);
    await expectCode(() => assertNotEvaluationText({ path: evalPath, bytes: evalBytes }, evals), ErrorCodes.BAD_ARGUMENT, /same file/);
    await expectCode(() => assertNotEvaluationText({ path: copy, bytes: evalBytes }, evals), ErrorCodes.BAD_ARGUMENT, /same content/);
    expect(() => assertNotEvaluationText({ path: calib, bytes: readFileSync(calib) }, evals)).not.toThrow();
  });

  it('codecUsesSaliency: sketch with channel groups only', () => {
    expect(codecUsesSaliency('sketch', resolveCodecOptions('sketch', { bpw: 1, groups: 4 }))).toBe(true);
    expect(codecUsesSaliency('sketch', resolveCodecOptions('sketch', { bpw: 1 }))).toBe(false);
    expect(codecUsesSaliency('littlebit', resolveCodecOptions('littlebit', { bpw: 1 }))).toBe(false);
    expect(codecUsesSaliency('rtn', resolveCodecOptions('rtn', { bits: 2 }))).toBe(false);
  });
});

describe.runIf(HAVE_SHARED)('calibrate() and compress() with saliency on stories260K', () => {
  const model = HAVE_SHARED ? loadModel(MODEL_PATH) : (undefined as never);
  const calibText = HAVE_SHARED ? readFileSync(CALIB, 'utf8') : '';
  const evalText = HAVE_SHARED ? readFileSync(EVAL, 'utf8') : '';

  it('equals collectSaliency over the first N tokens of the document stream', () => {
    const c = calibrate({ model, text: calibText, textSource: CALIB, maxTokens: 700, forward: 'reference' });
    expect(c.info.forward).toBe('reference-f32');
    expect(c.info.tokens).toBe(700);
    expect(c.info.textSource).toBe(CALIB);
    expect(c.stats.meanSquare.size).toBe(35);
    const stream = documentTokenStream(model.tokenizer, calibText);
    const direct = collectSaliency({ forward: LlamaForward.fromWeights(model.weights), tokens: stream, maxTokens: 700 });
    for (const [name, v] of direct.meanSquare) expect(c.stats.meanSquare.get(name)).toEqual(v);
    // the default (wasm kernels) agrees to float32 rounding
    const fast = calibrate({ model, text: calibText, maxTokens: 700 });
    expect(fast.info.forward).toBe('wasm-f32');
    for (const [name, v] of direct.meanSquare) {
      const w = fast.stats.meanSquare.get(name)!;
      for (let j = 0; j < v.length; j++) expect(Math.abs(w[j]! - v[j]!)).toBeLessThanOrEqual(1e-5 * v[j]! + 1e-12);
    }
  });

  it('the sketch with channel groups uses it (a different bundle, provenance records the calibration); rtn ignores it', async () => {
    const c = calibrate({ model, text: calibText, textSource: CALIB, maxTokens: 512 });
    const opts = { bpw: 1, groups: 4, alloc: 'saliency' };
    const withSal = await compress({ model, codec: 'sketch', codecOptions: opts, saliency: c.stats.meanSquare, calibration: c.info });
    const without = await compress({ model, codec: 'sketch', codecOptions: opts });
    expect(withSal.report.saliencyUsed).toBe(true);
    expect(without.report.saliencyUsed).toBe(false);
    expect(Buffer.compare(Buffer.from(withSal.bytes), Buffer.from(without.bytes))).not.toBe(0);
    const prov = readBundle(withSal.bytes, 'x').sections.provenance as { calibration?: { tokens: number; textSource: string } };
    expect(prov.calibration).toMatchObject({ tokens: 512, textSource: CALIB });
    const again = await compress({ model, codec: 'sketch', codecOptions: opts, saliency: c.stats.meanSquare, calibration: c.info });
    expect(Buffer.compare(Buffer.from(withSal.bytes), Buffer.from(again.bytes))).toBe(0);

    const rtn = await compress({ model, codec: 'rtn', codecOptions: { bits: 4 }, saliency: c.stats.meanSquare, calibration: c.info });
    expect(rtn.report.saliencyUsed).toBe(false);
    expect((readBundle(rtn.bytes, 'x').sections.provenance as Record<string, unknown>).calibration).toBeUndefined();
  });

  it('an int8 sketch bundle read back from disk (a Node Buffer underneath) accounts exactly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'usk-int8-'));
    try {
      const out = join(dir, 'int8.usk');
      const { report } = await compress({ model, codec: 'sketch', codecOptions: { bpw: 1, groups: 4, state: 'int8' }, output: out });
      const loaded = loadBundle(out);
      expect(loaded.accounting.bpwLinears).toBe(report.bpwLinears);
      expect(loaded.fileBytes).toBe(report.fileBytes);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses statistics measured on the evaluation text it is asked to measure quality on', async () => {
    const c = calibrate({ model, text: evalText, textSource: EVAL, maxTokens: 256 });
    await expectCode(
      compress({
        model,
        codec: 'sketch',
        codecOptions: { bpw: 1, groups: 2 },
        saliency: c.stats.meanSquare,
        calibration: c.info,
        measureQuality: { text: evalText, windows: 1 },
      }),
      ErrorCodes.BAD_ARGUMENT,
      /refusing to calibrate on the evaluation text/,
    );
  });
});

describe.runIf(HAVE_SHARED)('small matrices: littlebit on stories260K (64×64, 32×64, 172×64, 64×172)', () => {
  const model = HAVE_SHARED ? loadModel(MODEL_PATH) : (undefined as never);
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'usk-small-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('matrixFeasibility follows the codec: littlebit rank 1 at 32×64 with residual needs 1.6094 bpw', () => {
    const o = resolveCodecOptions('littlebit', { bpw: 1.2 });
    expect(matrixFeasibility('littlebit', o, 32, 64)).toEqual({ feasible: false, minBpw: (2 * (32 + 64 + 16) + 32 * 96) / (32 * 64) });
    expect(matrixFeasibility('littlebit', o, 172, 64)!.feasible).toBe(true);
    expect(matrixFeasibility('rtn', resolveCodecOptions('rtn', {}), 3, 3)).toBeNull();
    expect(matrixFeasibility('sketch', resolveCodecOptions('sketch', { bpw: 0.5 }), 13, 7)).toEqual({ feasible: false, minBpw: 0.8792 });
  });

  it("'error' (the default) refuses before encoding, with the codec's message and the smallest target all linears meet", async () => {
    const e = await expectCode(compress({ model, codec: 'littlebit', codecOptions: { bpw: 1.2 } }), ErrorCodes.INFEASIBLE_BUDGET);
    expect(e.message).toContain('cannot reach 1.2 bpw on this 32×64 matrix');
    expect(e.message).toContain('10 of 35 compressed linears');
    expect(e.message).toContain('the smallest target every compressed linear meets is 1.6094 bpw');
    expect(e.message).toContain('--small-matrix keep');
    // Every matrix infeasible: 'keep' cannot help.
    await expectCode(compress({ model, codec: 'littlebit', codecOptions: { bpw: 0.5 }, smallMatrix: 'keep' }), ErrorCodes.INFEASIBLE_BUDGET, /cannot help/);
    // The sketch's own refusal too.
    await expectCode(compress({ model, codec: 'sketch', codecOptions: { bpw: 0.001 } }), ErrorCodes.INFEASIBLE_BUDGET, /smallest feasible target is/);
  });

  it("'keep' stores them in float f16, lists them (report, accounting, inspect), and never hides their bits", async () => {
    const out = join(dir, 'lb.usk');
    const { report } = await compress({ model, codec: 'littlebit', codecOptions: { bpw: 1.2 }, smallMatrix: 'keep', output: out });
    const kv = [0, 1, 2, 3, 4].flatMap((l) => [`model.layers.${l}.self_attn.k_proj.weight`, `model.layers.${l}.self_attn.v_proj.weight`]);
    expect(report.keptDense.map((k) => k.name).sort()).toEqual(kv.sort());
    for (const k of report.keptDense) {
      expect(k).toMatchObject({ rows: 32, cols: 64 });
      expect(k.minBpw).toBeCloseTo(1.609375, 12);
      expect(k.reason).toContain('cannot reach 1.2 bpw');
    }
    expect(report.accounting.compressedLinears).toHaveLength(25);
    expect(report.bpwLinears).toBeLessThanOrEqual(1.2);
    // All selected linears, kept ones included: 10 × 2048 weights at 16 bits on top of the compressed bits.
    const keptBits = 10 * 2048 * 16;
    expect(report.bpwSelectedLinears).toBeCloseTo((report.linearBits + keptBits) / (report.linearWeights + 10 * 2048), 12);
    expect(report.bpwSelectedLinears).toBeGreaterThan(1.2);

    const loaded = loadBundle(out);
    expect(loaded.accounting.keptDense.sort()).toEqual(kv.sort());
    expect(loaded.accounting.bpwSelectedLinears).toBeCloseTo(report.bpwSelectedLinears, 12);
    expect(loaded.bundle.weights.get(kv[0]!)!.entry.codec).toBe('float');
    const ins = inspectBundle(out);
    expect(ins.totals.keptDense.sort()).toEqual(kv.sort());
    expect(ins.tensors.filter((r) => r.keptDense).map((r) => r.name).sort()).toEqual(kv.sort());
    expect(ins.totals.bpwLinears).toBeCloseTo(report.bpwLinears, 12);

    // It runs (fused littlebit kernels + float for the kept ones), and a reference can be a checkpoint or a bundle.
    const opened = openModel(out);
    const s = createSession(opened);
    const logits = s.forward([1, 400, 300], { logits: 'all' });
    expect(logits.every((v) => Number.isFinite(v))).toBe(true);
    s.dispose();
    expect(openReference(MODEL_PATH).kind).toBe('checkpoint');
    expect(openReference(out).kind).toBe('bundle');
  });
});
