import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelWeights } from '@ultrasketch/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Trainer, makeProviders, registerLittleBitProviders } from '../src/index.js';
import { GpuKdTrainer } from '../src/webgpu/index.js';
import { loadModel } from '@ultrasketch/pipeline';
import { randomModel, tinyConfig } from './helpers.js';
import { trainContext, trainingWindows } from './webgpu-helpers.js';
import { type PageHost, ROOT, hostPage, newest, openPage, requireChromium, testPage } from '../../runtime-webgpu/test/browser-page.js';

/**
 * The WebGPU trainer in a real page (issue 15's third check, on a tiny model): headless Chromium (Debian's, its
 * SwiftShader WebGPU) loads the BUILT `@ultrasketch/ste-trainer/webgpu` and `@ultrasketch/ste-trainer` (dist/,
 * workspace dependencies through an import map, no bundler, no CDN) from a server on 127.0.0.1 and runs 3
 * LittleBit KD steps of a random 2-layer model on navigator.gpu; the losses must match the same run in Node
 * (Dawn) and the CPU Trainer. Fails (does not skip) without Chromium or its adapter, like runtime-webgpu's
 * browser test (whose server and browser, runtime-webgpu/test/browser-page.ts, this uses).
 */
const STORIES = '/work/shared/models/stories260K/stories260K.bin';
const PACKAGES = ['ste-trainer', 'runtime-webgpu', 'core', 'format', 'model', 'baselines', 'littlebit', 'sketch-core'];

/** Build ste-trainer when its dist/webgpu is missing or older than its sources (dependencies must be built). */
function ensureBuilt(): void {
  for (const p of PACKAGES.slice(1)) {
    if (!existsSync(join(ROOT, 'packages', p, 'dist/index.js'))) throw new Error(`packages/${p}/dist is missing: run pnpm build first`);
  }
  const out = join(ROOT, 'packages/ste-trainer/dist/webgpu/index.js');
  if (existsSync(out) && newest(join(ROOT, 'packages/ste-trainer/src')) <= statSync(out).mtimeMs) return;
  // One retry: a build started at the same moment by someone else (turbo, another test) can make tsup's
  // clean-then-write fail once.
  for (let attempt = 1; ; attempt++) {
    try {
      execFileSync('pnpm', ['--filter', '@ultrasketch/ste-trainer', 'run', 'build'], { cwd: ROOT, stdio: 'pipe', encoding: 'utf8' });
      return;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      if (attempt >= 2) throw new Error(`building @ultrasketch/ste-trainer failed:\n${e.stdout ?? ''}\n${e.stderr ?? e.message}`);
      execFileSync('sleep', ['15']);
    }
  }
}

const PAGE = testPage(
  PACKAGES,
  /* js */ `
  import { GpuContext, describeAdapter } from '@ultrasketch/runtime-webgpu';
  import { makeProviders, registerLittleBitProviders } from '@ultrasketch/ste-trainer';
  import { GpuKdTrainer, GpuTrainContext } from '@ultrasketch/ste-trainer/webgpu';
  window.train = async (model, windows, options) => {
    registerLittleBitProviders();
    const teacher = { config: model.config, tensors: new Map(model.tensors.map(([name, shape, data]) => [name, { shape, data: data instanceof Float32Array ? data : Float32Array.from(data) }])) };
    const gpu = await GpuContext.create(navigator.gpu);
    const ctx = await GpuTrainContext.create(gpu);
    const providers = makeProviders(teacher, (_l, kind) => (options.skipKV && (kind === 'k' || kind === 'v') ? undefined : { kind: 'littlebit', options: options.littlebit }), { seed: options.seed });
    const trainer = await GpuKdTrainer.create(ctx, { ...options.trainer, teacher, providers });
    const losses = [];
    for (const w of windows) losses.push((await trainer.step(Int32Array.from(w))).loss);
    ctx.dispose();
    const adapter = describeAdapter(gpu.adapter);
    gpu.destroy();
    return { losses, adapter };
  };
  window.trainStories = async (url, windows, options) => {
    const { readLlama2cCheckpoint } = await import('@ultrasketch/format');
    const { modelFromLlama2c } = await import('@ultrasketch/model');
    const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
    const teacher = modelFromLlama2c(readLlama2cCheckpoint(bytes, url), url);
    return window.train({ config: teacher.config, tensors: [...teacher.tensors].map(([n, t]) => [n, t.shape, t.data]) }, windows, options);
  };
  window.ready = true;
`,
  { '@ultrasketch/ste-trainer/webgpu': '/packages/ste-trainer/dist/webgpu/index.js' },
);

let host: PageHost;

beforeAll(async () => {
  requireChromium();
  ensureBuilt();
  host = await hostPage(PAGE, PACKAGES, { '/model/stories260K.bin': STORIES });
}, 180_000);

afterAll(async () => {
  await host?.close();
});

describe('the WebGPU trainer in headless Chromium', () => {
  it('3 LittleBit KD steps of a tiny model: the page’s losses = Node (Dawn) = the CPU Trainer', async () => {
    registerLittleBitProviders();
    const teacher: ModelWeights = randomModel(tinyConfig({ dim: 16, hiddenDim: 24, nHeads: 4, nKvHeads: 2, vocabSize: 37, seqLen: 16 }), 3);
    const V = teacher.config.vocabSize;
    const calib = Int32Array.from({ length: 300 }, (_, i) => (i * 7 + (i >> 2)) % V);
    const seed = 4;
    const trainer = { batch: 2, seqLen: 8, steps: 3, lr: 3e-3, warmup: 0, loss: { kl: 1, mse: 10, ce: 0.3 }, trainNorms: true };
    const littlebit = { rank: 2, residual: true };
    const windows = trainingWindows(calib, trainer, seed);
    const providers = () => makeProviders(teacher, () => ({ kind: 'littlebit', options: littlebit }), { seed });

    const cpu = new Trainer({ ...trainer, teacher, calibTokens: calib, seed, providers: providers() });
    const cpuLosses = windows.map(() => cpu.step().loss);
    const node = await GpuKdTrainer.create(await trainContext(), { ...trainer, teacher, providers: providers() });
    const nodeLosses: number[] = [];
    for (const w of windows) nodeLosses.push((await node.step(w)).loss);

    const { page, logs } = await openPage(host, 'the trainer', 60_000);
    const model = { config: teacher.config, tensors: [...teacher.tensors].map(([name, t]) => [name, t.shape, Array.from(t.data)]) };
    const result = (await page
      .evaluate(
        ([m, ws, o]) => (window as unknown as { train(a: unknown, b: number[][], c: unknown): Promise<unknown> }).train(m, ws, o),
        [model, windows.map((w) => Array.from(w)), { trainer, littlebit, seed }] as const,
      )
      .catch((err: Error) => {
        throw new Error(`${err.message} | page: ${logs.join(' | ')}`);
      })) as { losses: number[]; adapter: string };
    console.log(`[browser] ${await host.browser.version()}: ${result.adapter}`);
    console.log(`[browser] losses: page ${result.losses.join(', ')}; node ${nodeLosses.join(', ')}; cpu ${cpuLosses.join(', ')}`);
    expect(result.losses.length).toBe(trainer.steps);
    for (let s = 0; s < trainer.steps; s++) {
      expect(Math.abs(result.losses[s]! - nodeLosses[s]!) / nodeLosses[s]!).toBeLessThan(1e-5);
      expect(Math.abs(nodeLosses[s]! - cpuLosses[s]!) / cpuLosses[s]!).toBeLessThan(1e-4);
    }
    await page.close();
  }, 180_000);

  it('stories260K, LittleBit 2 bpw on every linear but K/V, 3 KD steps: the page (model fetched from the server) = Node', async () => {
    registerLittleBitProviders();
    const { weights: teacher } = loadModel(STORIES);
    const V = teacher.config.vocabSize;
    const calib = Int32Array.from({ length: 400 }, (_, i) => (i % 61 === 0 ? 1 : ((i * 211 + (i >> 2)) % (V - 2)) + 2));
    const seed = 6;
    const trainer = { batch: 2, seqLen: 16, steps: 3, lr: 3e-3, warmup: 0, loss: { kl: 1, mse: 10, ce: 0 }, trainNorms: true };
    const littlebit = { bpw: 2, residual: true };
    const windows = trainingWindows(calib, trainer, seed);
    const plan = (_l: number, kind: string) => (kind === 'k' || kind === 'v' ? undefined : { kind: 'littlebit', options: littlebit });
    const node = await GpuKdTrainer.create(await trainContext(), { ...trainer, teacher, providers: makeProviders(teacher, plan, { seed }) });
    const nodeLosses: number[] = [];
    for (const w of windows) nodeLosses.push((await node.step(w)).loss);
    const { page, logs } = await openPage(host, 'the trainer', 60_000);
    const result = (await page
      .evaluate(
        ([ws, o]) => (window as unknown as { trainStories(u: string, b: number[][], c: unknown): Promise<unknown> }).trainStories('/model/stories260K.bin', ws, o),
        [windows.map((w) => Array.from(w)), { trainer, littlebit, seed, skipKV: true }] as const,
      )
      .catch((err: Error) => {
        throw new Error(`${err.message} | page: ${logs.join(' | ')}`);
      })) as { losses: number[] };
    console.log(`[browser] stories260K losses: page ${result.losses.join(', ')}; node ${nodeLosses.join(', ')}`);
    for (let s = 0; s < trainer.steps; s++) expect(Math.abs(result.losses[s]! - nodeLosses[s]!) / nodeLosses[s]!).toBeLessThan(1e-5);
    await page.close();
  }, 240_000);
});
