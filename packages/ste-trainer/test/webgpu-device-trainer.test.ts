import { ErrorCodes } from '@ultrasketch/core';
import { loadModel } from '@ultrasketch/pipeline';
import { describe, expect, it } from 'vitest';
import { type TrainProgress, Trainer, makeProviders, registerLittleBitProviders } from '../src/index.js';
import { GpuTrainer } from '../src/webgpu/index.js';
import { trainContext } from './webgpu-helpers.js';

/**
 * `GpuTrainer` (src/webgpu/device-trainer.ts): the CPU Trainer's options and surface with the steps on WebGPU.
 * Here what the pipeline tests do not reach: data 'teacher' sampled inside every step (on the CPU, by the host
 * trainer) gives the same windows and losses as the CPU Trainer; progress reports; the recipe is the CPU
 * trainer's, so a checkpoint of one is refused by the other when the recipe differs (naming what differs) and
 * accepted when it matches; the refusals of CPU-only options.
 */
const MODEL = '/work/shared/models/stories260K/stories260K.bin';

describe('GpuTrainer = the CPU Trainer with its steps on WebGPU (stories260K)', () => {
  it("data 'teacher' (sampled per step on the CPU): losses = the CPU Trainer's; progress; checkpoints and recipes across devices", async () => {
    registerLittleBitProviders();
    const ctx = await trainContext();
    const { weights: teacher } = loadModel(MODEL);
    const seed = 9;
    const plan = (_l: number, kind: string) => (kind === 'k' || kind === 'v' ? undefined : { kind: 'littlebit', options: { codecOptions: { bpw: 2, residual: true } } });
    const options = { teacher, data: 'teacher' as const, batch: 1, seqLen: 12, steps: 3, lr: 2e-3, trainNorms: true, seed };
    const progress: TrainProgress[] = [];
    const gpu = await GpuTrainer.create(ctx, { ...options, providers: makeProviders(teacher, plan, { seed }), onProgress: (p) => progress.push(p) });
    const cpu = new Trainer({ ...options, providers: makeProviders(teacher, plan, { seed }) });
    for (let s = 0; s < 2; s++) {
      const want = cpu.step();
      const got = await gpu.step();
      expect(got.step).toBe(want.step);
      expect(Math.abs(got.loss - want.loss) / want.loss, `step ${s + 1}`).toBeLessThan(1e-5);
    }
    expect(progress.map((p) => [p.step, p.steps, p.tokensSeen])).toEqual([
      [1, 3, 12],
      [2, 3, 24],
    ]);
    expect(progress.every((p) => p.tokensPerSec > 0 && Number.isFinite(p.etaMs))).toBe(true);
    expect(gpu.recipe()).toEqual(cpu.recipe());

    // the GPU's checkpoint continues on the CPU: step 3 there = step 3 of the CPU-only run
    const file = await gpu.state();
    const resumed = new Trainer({ ...options, providers: makeProviders(teacher, plan, { seed }) });
    resumed.loadState(file, 'gpu.ckpt');
    expect(resumed.completedSteps).toBe(2);
    expect(resumed.lastStep!.loss).toBe(gpu.lastStep!.loss);
    const a = resumed.step();
    const b = cpu.step();
    expect(Math.abs(a.loss - b.loss) / b.loss).toBeLessThan(1e-5);

    // another recipe (lr) is refused, naming what differs; the GPU trainer is unchanged
    const other = await GpuTrainer.create(ctx, { ...options, lr: 1e-3, providers: makeProviders(teacher, plan, { seed }) });
    expect(() => other.loadState(file, 'gpu.ckpt')).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_ARGUMENT, message: expect.stringContaining('differs in: lr') }));
    expect(other.completedSteps).toBe(0);
    // a CPU checkpoint of the same recipe continues on the GPU
    const again = await GpuTrainer.create(ctx, { ...options, providers: makeProviders(teacher, plan, { seed }) });
    again.loadState(cpu.state(), 'cpu.ckpt');
    expect(again.completedSteps).toBe(3);
    expect(again.totalTokens).toBe(36);
    await expect(again.step()).rejects.toMatchObject({ code: ErrorCodes.BAD_ARGUMENT }); // all 3 steps are done
  }, 90_000);

  it('CPU-only options are refused: worker threads (naming --threads), a teacher cache', async () => {
    const ctx = await trainContext();
    const { weights: teacher } = loadModel(MODEL);
    const calibTokens = Int32Array.from({ length: 200 }, (_, i) => (i % 50) + 1);
    const base = { teacher, calibTokens, batch: 2, seqLen: 8, steps: 1 };
    const parallel = { threads: 2, create: () => { throw new Error('not reached'); } };
    await expect(GpuTrainer.create(ctx, { ...base, parallel: parallel as never })).rejects.toMatchObject({ code: ErrorCodes.BAD_ARGUMENT, source: '--threads' });
    await expect(GpuTrainer.create(ctx, { ...base, teacherCache: {} as never })).rejects.toMatchObject({ code: ErrorCodes.BAD_ARGUMENT });
  });
});
