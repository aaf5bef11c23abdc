import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng, getCodec, isUltraSketchError } from '@ultrasketch/core';
import { registerAll } from '@ultrasketch/baselines';
import { LINEAR_KINDS, TensorNames, linearShape } from '@ultrasketch/model';
import { documentTokenStream, loadModel } from '@ultrasketch/pipeline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdamW,
  CalibrationBatches,
  CodecSteProvider,
  DenseProvider,
  TeacherSamples,
  Trainer,
  type TrainerOptions,
  learningRate,
  makeProviders,
} from '../src/index.js';
import { loadCheckpoint, saveCheckpoint } from '../src/node.js';
import { randomModel, tinyConfig } from './helpers.js';

registerAll();

const MODELS = '/work/shared/models';
const CALIB = '/work/shared/data/tinystories/calib.txt';

describe('AdamW and the schedule', () => {
  it('one AdamW step equals the formula (bias-corrected, decoupled decay, grad scale)', () => {
    const data = Float32Array.from([0.5, -1, 2]);
    const grad = Float32Array.from([0.1, -0.2, 0.3]);
    const opt = new AdamW([{ name: 'p', data, grad }], { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 });
    const lr = 0.01;
    const scale = 0.5;
    const want = [0.5, -1, 2].map((p, i) => {
      const g = [0.1, -0.2, 0.3][i]! * scale;
      const m = Math.fround(0.1 * g);
      const v = Math.fround(0.001 * g * g);
      return Math.fround(p * (1 - lr * 0.1) - (lr * (m / 0.1)) / (Math.sqrt(v / 0.001) + 1e-8));
    });
    opt.step(1, lr, scale);
    expect(Array.from(data)).toEqual(want);
    expect(Array.from(grad)).toEqual([0, 0, 0]);
  });

  it('params with decay: false are not decayed', () => {
    const data = Float32Array.from([1]);
    const opt = new AdamW([{ name: 'n', data, grad: new Float32Array(1), decay: false }], { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.5 });
    opt.step(1, 0.1, 1);
    expect(data[0]).toBe(1);
  });

  it('linear warm-up, then cosine to minLr at the last step', () => {
    const o = { lr: 1, steps: 100, warmupSteps: 10, minLrRatio: 0.1 };
    expect(learningRate(0, o)).toBeCloseTo(0.1, 12);
    expect(learningRate(9, o)).toBeCloseTo(1, 12);
    expect(learningRate(10, o)).toBeCloseTo(1, 12);
    expect(learningRate(55, o)).toBeCloseTo(0.55, 12);
    expect(learningRate(100, o)).toBeCloseTo(0.1, 12);
    for (let s = 11; s < 100; s++) expect(learningRate(s, o)).toBeLessThan(learningRate(s - 1, o));
  });
});

describe('weight providers', () => {
  const rows = 6;
  const cols = 16;
  const w = new Rng(1).normalArray(rows * cols, 0.5);

  it('codec STE: forward uses decode(encode(W)), backward is the identity onto W, rebuild every k steps', () => {
    for (const [codec, options] of [
      ['binary', {}],
      ['rtn', { bits: 2, groupSize: 8 }],
    ] as const) {
      const c = getCodec(codec);
      const p = new CodecSteProvider({ name: 'x', rows, cols, weight: w, codec, options, rebuildEvery: 2 });
      const opts = c.resolveOptions(options);
      expect(p.weight()).toEqual(c.decode(c.encode(w, rows, cols, opts, { name: 'x', seed: 0 })));
      const g = new Rng(2).normalArray(rows * cols);
      p.backward(g);
      p.backward(g);
      const param = p.parameters()[0]!;
      for (let i = 0; i < g.length; i++) expect(param.grad[i]).toBe(Math.fround(2 * g[i]!));
      // change W: Ŵ stays until a rebuild step
      for (let i = 0; i < param.data.length; i++) param.data[i] = -param.data[i]!;
      const before = p.weight().slice();
      p.afterStep(1);
      expect(p.weight()).toEqual(before);
      p.afterStep(2);
      expect(p.weight()).toEqual(c.decode(c.encode(param.data, rows, cols, opts, { name: 'x', seed: 0 })));
      expect(p.toCodecParams()).toEqual(c.encode(param.data, rows, cols, opts, { name: 'x', seed: 0 }));
      expect(p.codecId).toBe(codec);
      expect(Object.keys(p.buffers())).toEqual(['decoded']);
    }
  });

  it('dense: frozen uses the weight in place and trains nothing; trainable copies and accumulates', () => {
    const frozen = new DenseProvider({ name: 'f', rows, cols, weight: w });
    expect(frozen.weight()).toBe(w);
    expect(frozen.trainable).toBe(false);
    expect(frozen.parameters()).toEqual([]);
    const t = new DenseProvider({ name: 't', rows, cols, weight: w, trainable: true, dtype: 'f32' });
    expect(t.weight()).not.toBe(w);
    expect(t.weight()).toEqual(w);
    t.backward(w);
    expect(t.parameters()[0]!.grad).toEqual(w);
    expect(getCodec('float').decode(t.toCodecParams())).toEqual(w);
  });

  it('makeProviders: kinds by name, deterministic per-tensor seeds, unknown kinds refused', () => {
    const m = randomModel(tinyConfig(), 2);
    const ps = makeProviders(m, (l, kind) => (kind === 'o' ? undefined : l === 0 ? { kind: 'ste', options: { codec: 'binary' } } : { kind: 'dense' }));
    expect(ps.size).toBe(2 * 6);
    expect(ps.get(TensorNames.linear(0, 'q'))!.codecId).toBe('binary');
    expect(ps.get(TensorNames.linear(1, 'q'))!.codecId).toBe('float');
    expect(ps.has(TensorNames.linear(0, 'o'))).toBe(false);
    expect(() => makeProviders(m, () => ({ kind: 'nope' }))).toThrow(/unknown weight provider kind "nope"/);
  });
});

describe('data', () => {
  it('calibration windows: seeded by (seed, step), inside the stream, reproducible', () => {
    const stream = Int32Array.from({ length: 1000 }, (_, i) => i);
    const a = new CalibrationBatches(stream, 9, 7);
    const out1 = new Int32Array(3 * 10);
    const out2 = new Int32Array(3 * 10);
    a.fill(5, out1, 0, 3);
    new CalibrationBatches(stream, 9, 7).fill(5, out2, 0, 3);
    expect(out1).toEqual(out2);
    for (let b = 0; b < 3; b++) for (let t = 1; t < 10; t++) expect(out1[b * 10 + t]).toBe(out1[b * 10]! + t);
    a.fill(6, out2, 0, 3);
    expect(out2).not.toEqual(out1);
    expect(() => new CalibrationBatches(stream.subarray(0, 5), 9, 0)).toThrow(/fewer than one window/);
  });

  it('teacher samples start with BOS, stay in the vocabulary and are reproducible', () => {
    const m = randomModel(tinyConfig(), 3);
    const s = new TeacherSamples(m, 8, 1);
    const a = new Int32Array(2 * 9);
    const b = new Int32Array(2 * 9);
    s.fill(0, a, 0, 2);
    new TeacherSamples(m, 8, 1).fill(0, b, 0, 2);
    expect(a).toEqual(b);
    expect(a[0]).toBe(1);
    expect(a[9]).toBe(1);
    for (const t of a) expect(t >= 0 && t < 11).toBe(true);
  });
});

describe('Trainer', () => {
  const model = randomModel(tinyConfig({ dim: 16, nHeads: 4, nKvHeads: 2, hiddenDim: 24, vocabSize: 32, seqLen: 32 }), 5);
  const calib = Int32Array.from({ length: 500 }, (_, i) => (i % 37 === 0 ? 1 : (i * 7 + (i >> 3)) % 32));
  const options = (over: Partial<TrainerOptions> = {}): TrainerOptions => ({
    teacher: model,
    providers: makeProviders(model, (l, kind) =>
      kind === 'o'
        ? { kind: 'dense' }
        : l === 0
          ? { kind: 'ste', options: { codec: 'binary', rebuildEvery: 3 } }
          : { kind: 'ste', options: { codec: 'rtn', codecOptions: { bits: 2, groupSize: 8 }, rebuildEvery: 3 } },
    ),
    calibTokens: calib,
    data: 'both',
    batch: 3,
    seqLen: 8,
    steps: 8,
    lr: 3e-3,
    trainNorms: true,
    weightDecay: 0.01,
    loss: { kl: 1, mse: 10, ce: 0.5 },
    seed: 42,
    ...over,
  });
  const snapshot = (t: Trainer) => t.params.map((p) => p.data.slice());

  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ste-trainer-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is deterministic: same seed and data give bit-identical parameters', () => {
    const a = new Trainer(options());
    const b = new Trainer(options());
    a.run();
    b.run();
    expect(snapshot(a)).toEqual(snapshot(b));
    const c = new Trainer(options({ seed: 43 }));
    c.run();
    expect(snapshot(c)).not.toEqual(snapshot(a));
  });

  it('N steps straight = N/2, checkpoint (atomic file), new Trainer, load, N/2 more — bit for bit', () => {
    const straight = new Trainer(options());
    const rs = [];
    while (straight.completedSteps < 8) rs.push(straight.step());

    const first = new Trainer(options());
    first.run(4);
    const path = join(dir, 'ckpt.safetensors');
    saveCheckpoint(first, path);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);

    const resumed = new Trainer(options());
    loadCheckpoint(resumed, path);
    expect(resumed.completedSteps).toBe(4);
    const rr = [];
    while (resumed.completedSteps < 8) rr.push(resumed.step());
    expect(snapshot(resumed)).toEqual(snapshot(straight));
    expect(rr.map((r) => r.loss)).toEqual(rs.slice(4).map((r) => r.loss));
    // the final bundle content is the same too
    const pa = straight.codecParams();
    const pb = resumed.codecParams();
    for (const [name, v] of pa) expect(pb.get(name)).toEqual(v);
    expect(resumed.totalTokens).toBe(straight.totalTokens);
  });

  it('refuses a checkpoint of another recipe, naming what differs', () => {
    const t = new Trainer(options());
    t.run(2);
    const bytes = t.state();
    const other = new Trainer(options({ lr: 1e-3 }));
    try {
      other.loadState(bytes, 'x.safetensors');
      expect.unreachable();
    } catch (e) {
      expect(isUltraSketchError(e)).toBe(true);
      expect(String(e)).toMatch(/differs in: lr/);
    }
  });

  it('reports loss parts and progress; refuses bad options', () => {
    const seen: number[] = [];
    const t = new Trainer(options({ onProgress: (p) => seen.push(p.step), steps: 3 }));
    const r = t.step();
    expect(r.step).toBe(1);
    expect(r.tokens).toBe(24);
    expect(r.loss).toBeCloseTo(r.kl + 10 * r.mse + 0.5 * r.ce, 6);
    t.run();
    expect(seen).toEqual([1, 2, 3]);
    expect(() => t.step()).toThrow(/all 3 steps are done/);
    expect(() => new Trainer(options({ data: 'calib', calibTokens: undefined }))).toThrow(/needs calibTokens/);
    expect(() => new Trainer(options({ loss: { kl: 0, mse: 0, ce: 0 } }))).toThrow(/nothing to train/);
    expect(() => new Trainer(options({ providers: [], trainNorms: false }))).toThrow(/nothing to train/);
  });

  it('CE-only training needs no teacher pass (KL and MSE are NaN)', () => {
    const t = new Trainer(options({ loss: { kl: 0, mse: 0, ce: 1 }, data: 'calib' }));
    const r = t.step();
    expect(Number.isNaN(r.kl)).toBe(true);
    expect(r.loss).toBe(r.ce);
  });

  it('studentWeights: Ŵ of each provider and the trained norms', () => {
    const t = new Trainer(options());
    t.run(2);
    const sw = t.studentWeights();
    for (const p of t.providers) expect(sw.tensors.get(p.name)!.data).toEqual(p.weight());
    expect(sw.tensors.get(TensorNames.attnNorm(0))!.data).not.toEqual(model.tensors.get(TensorNames.attnNorm(0))!.data);
    const [r, c] = linearShape(model.config, 'gate');
    expect(sw.tensors.get(TensorNames.linear(1, 'gate'))!.shape).toEqual([r, c]);
    expect(LINEAR_KINDS.length * 2).toBe(t.providers.length);
  });
});

describe('end to end: stories260K, binary STE, 20 steps of KD on calib', () => {
  it('training loss decreases and the KL to the teacher on calibration windows drops', () => {
    const { weights, tokenizer } = loadModel(`${MODELS}/stories260K/stories260K.bin`);
    const calib = documentTokenStream(tokenizer, readFileSync(CALIB, 'utf8'));
    const providers = makeProviders(weights, (_l, kind) => (kind === 'o' ? undefined : { kind: 'ste', options: { codec: 'binary' } }));
    const t = new Trainer({ teacher: weights, providers, calibTokens: calib, batch: 2, seqLen: 64, steps: 20, lr: 1e-3, seed: 1 });
    // held-out calibration windows (fixed, not the training order)
    const wins = [0, 1, 2, 3].map((i) => calib.subarray(20000 + i * 65, 20000 + (i + 1) * 65));
    const before = t.evaluate(wins);
    const losses: number[] = [];
    while (t.completedSteps < 20) losses.push(t.step().loss);
    const after = t.evaluate(wins);
    const head = (losses[0]! + losses[1]! + losses[2]!) / 3;
    const tail = (losses[17]! + losses[18]! + losses[19]!) / 3;
    console.log(
      `binary STE 20 steps: loss ${head.toFixed(2)} → ${tail.toFixed(2)}; calib KL ${before.kl.toFixed(3)} → ${after.kl.toFixed(3)}, top-1 ${before.top1.toFixed(3)} → ${after.top1.toFixed(3)}`,
    );
    expect(tail).toBeLessThan(0.9 * head);
    expect(after.kl).toBeLessThan(0.85 * before.kl);
  });
});
