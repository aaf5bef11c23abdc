import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes } from '@ultrasketch/core';
import { readBundle } from '@ultrasketch/format';
import { afterAll, describe, expect, it } from 'vitest';
import { type TrainingSection, compress, loadModel } from '../src/index.js';
import { requireShared } from '../../../test/require-shared.js';

/**
 * `compress --finetune-steps N --device webgpu` through the pipeline (issue 15): the same recipe, data,
 * checkpoints and bundle writer as the CPU trainer, every step on WebGPU (Dawn; SwiftShader here, found by
 * runtime-webgpu's nodeGpu() when no GPU driver answers). Like the trainer's webgpu-* suites these FAIL without an
 * adapter (apt-get install -y chromium libvulkan1).
 */
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;

const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL_PATH = shared('models/stories260K/stories260K.bin');
const HAVE = requireShared('pipeline WebGPU finetune tests', [MODEL_PATH, shared('data/tinystories/calib.txt'), shared('data/tinystories/eval.txt')]);

interface Quality {
  perplexity: number;
  kl: number;
}

describe.runIf(HAVE)('compress() with finetuning on WebGPU (stories260K)', () => {
  const model = HAVE ? loadModel(MODEL_PATH) : (undefined as never);
  const calibText = HAVE ? readFileSync(shared('data/tinystories/calib.txt'), 'utf8') : '';
  const evalText = HAVE ? readFileSync(shared('data/tinystories/eval.txt'), 'utf8') : '';
  const dir = mkdtempSync(join(tmpdir(), 'usk-finetune-webgpu-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  // eval.txt is only measured, never trained on
  const measureQuality = { text: evalText, textSource: 'eval.txt', windows: 8, window: 128 };

  /**
   * Issue 15's check 2 through the pipeline: a 20-step LittleBit run (2 bpw with the residual path, KD, norms
   * trained) on both devices with the same seed and data, both bundles written by the same writer and evaluated
   * on eval.txt windows. Asserted: perplexity within 1%; the first step's loss within 1e-5 (both start from the
   * same parameters). Not asserted: "final loss within 1e-3" — a latent factor within rounding of 0 can take the
   * other sign on one device and the runs then separate (docs/ste-trainer.md §9); the test prints what it saw.
   */
  it('LittleBit 20 steps: the WebGPU bundle evaluates within 1% perplexity of the CPU one', async () => {
    const run = async (device: 'cpu' | 'webgpu') => {
      const losses: number[] = [];
      const r = await compress({
        model,
        codec: 'littlebit',
        codecOptions: { bpw: 2, residual: true },
        measureQuality,
        finetune: { steps: 20, batch: 1, seq: 16, lr: 3e-3, trainNorms: true, calibText, calibSource: 'calib.txt', device, onStep: (s) => losses.push(s.loss) },
      });
      return { r, losses, training: readBundle(r.bytes).sections.training as TrainingSection, quality: r.report.quality as unknown as Quality };
    };
    const cpu = await run('cpu');
    const gpu = await run('webgpu');
    expect(gpu.losses).toHaveLength(20);
    expect(gpu.losses.every(Number.isFinite)).toBe(true);
    const rel = gpu.losses.map((l, i) => Math.abs(l - cpu.losses[i]!) / cpu.losses[i]!);
    const firstOver = rel.findIndex((d) => d > 1e-3);
    const ppl = Math.abs(gpu.quality.perplexity - cpu.quality.perplexity) / cpu.quality.perplexity;
    console.log(
      `[webgpu] LittleBit 20 × 1 × 16: loss ${cpu.losses[0]!.toFixed(3)} → CPU ${cpu.losses[19]!.toFixed(4)} / WebGPU ${gpu.losses[19]!.toFixed(4)}; ` +
        `relative loss difference max ${Math.max(...rel).toExponential(2)}, step 20 ${rel[19]!.toExponential(2)}, first > 1e-3 at ${firstOver < 0 ? 'none' : `step ${firstOver + 1}`}; ` +
        `eval perplexity CPU ${cpu.quality.perplexity.toFixed(3)} WebGPU ${gpu.quality.perplexity.toFixed(3)} (${(100 * ppl).toFixed(3)}%)`,
    );
    expect(rel[0]).toBeLessThan(1e-5);
    expect(ppl).toBeLessThan(0.01);
    // both trained: the last step well below the first
    expect(gpu.losses[19]!).toBeLessThan(0.75 * gpu.losses[0]!);
    // the same writer, the same recipe but for the device
    expect(gpu.training.recipe.device).toBe('webgpu');
    expect(cpu.training.recipe.device).toBe('cpu');
    expect(gpu.training.recipe.gemm).toBe('wgsl');
    expect(gpu.training.cost.adapter).toMatch(/\S/);
    const { device: _a, gemm: _b, ...gpuRecipe } = gpu.training.recipe;
    const { device: _c, gemm: _d, ...cpuRecipe } = cpu.training.recipe;
    expect(gpuRecipe).toEqual(cpuRecipe);
    expect(gpu.training.providers).toEqual(cpu.training.providers);
    expect(gpu.training.cost.tokens).toBe(cpu.training.cost.tokens);
    expect(gpu.r.report.bpwLinears).toBe(cpu.r.report.bpwLinears);
    // the same tensors (sizes): only the training section's text differs
    expect(gpu.r.bytes.length - readBundle(gpu.r.bytes).file.dataOffset).toBe(cpu.r.bytes.length - readBundle(cpu.r.bytes).file.dataOffset);
  }, 240_000);

  /**
   * Checkpoints across devices through runWithCheckpoints: a CPU run stopped after step 2 resumes on WebGPU, and
   * a WebGPU run stopped after step 2 resumes on the CPU; each ends at the straight CPU run's final loss
   * (binary STE: no latent sits at a sign boundary the way LittleBit's do within 4 steps) and with its bundle
   * tensors the same size.
   */
  it('a checkpoint resumes on the other device (CPU → WebGPU and WebGPU → CPU)', async () => {
    const ft = { steps: 4, batch: 1, seq: 16, lr: 1e-3, calibText, calibSource: 'calib.txt' };
    const straight = await compress({ model, codec: 'binary', finetune: ft });
    const straightFinal = (straight.report.training as TrainingSection).final!.loss;
    for (const [first, second] of [
      ['cpu', 'webgpu'],
      ['webgpu', 'cpu'],
    ] as const) {
      const ck = join(dir, `ck-${first}`);
      const stopped = await compress({ model, codec: 'binary', finetune: { ...ft, device: first, checkpointDir: ck, checkpointEvery: 1, stopAfterSteps: 2 } });
      expect((stopped.report.training as TrainingSection).cost.steps).toBe(2);
      expect(existsSync(join(ck, 'finetune.ckpt'))).toBe(true);
      const steps: number[] = [];
      const resumed = await compress({
        model,
        codec: 'binary',
        finetune: { ...ft, device: second, checkpointDir: ck, checkpointEvery: 1, resume: true, requireCheckpoint: true, onStep: (r) => steps.push(r.step) },
      });
      const t = resumed.report.training as TrainingSection;
      expect(steps, `${first} → ${second}`).toEqual([3, 4]);
      expect(t.recipe.device).toBe(second);
      expect(t.cost.steps).toBe(4);
      expect(t.cost.tokens).toBe(4 * 16);
      expect(Math.abs(t.final!.loss - straightFinal) / straightFinal, `${first} → ${second}`).toBeLessThan(1e-4);
      expect(resumed.bytes.length - readBundle(resumed.bytes).file.dataOffset).toBe(straight.bytes.length - readBundle(straight.bytes).file.dataOffset);
    }
  }, 240_000);

  /**
   * The other data sources and a state provider through the same path: hashednets state training (the GPU
   * pick/scatter) on --data both with cached teacher samples; the held-out teacher windows are evaluated on the
   * GPU (GpuKdTrainer.evaluate). Each figure matches the CPU run's.
   */
  it('hashednets states, --data both with cached teacher samples: losses and the held-out KL = the CPU run', async () => {
    const run = async (device: 'cpu' | 'webgpu') => {
      const losses: number[] = [];
      const r = await compress({
        model,
        codec: 'hashednets',
        codecOptions: { bpw: 1 },
        finetune: {
          steps: 3,
          batch: 2,
          seq: 16,
          lr: 2e-3,
          data: 'both',
          calibText,
          calibSource: 'calib.txt',
          teacherSamples: { dir: join(dir, 'samples'), windows: 6, holdout: 2 },
          device,
          onStep: (s) => losses.push(s.loss),
        },
      });
      return { losses, t: r.report.training as TrainingSection };
    };
    const cpu = await run('cpu');
    const gpu = await run('webgpu');
    expect(gpu.t.providers.q).toBe('hashednets-states');
    expect(gpu.t.recipe.teacherSamples).toEqual(cpu.t.recipe.teacherSamples);
    gpu.losses.forEach((l, i) => expect(Math.abs(l - cpu.losses[i]!) / cpu.losses[i]!, `step ${i + 1}`).toBeLessThan(1e-5));
    expect(gpu.t.holdout!.positions).toBe(cpu.t.holdout!.positions);
    expect(Math.abs(gpu.t.holdout!.kl - cpu.t.holdout!.kl) / cpu.t.holdout!.kl).toBeLessThan(1e-4);
    expect(Math.abs(gpu.t.holdout!.ce - cpu.t.holdout!.ce) / cpu.t.holdout!.ce).toBeLessThan(1e-5);
  }, 120_000);

  it('refusals are typed: a provider without a WebGPU version names --device cpu; --threads > 1 names --threads', async () => {
    const sketch = compress({ model, codec: 'hashednets', codecOptions: { bpw: 1 }, finetune: { steps: 1, batch: 1, seq: 8, calibText, device: 'webgpu', mode: 'ste' } });
    await expect(sketch).rejects.toMatchObject({ code: ErrorCodes.UNSUPPORTED, hint: expect.stringContaining('--device cpu') });
    const threads = compress({ model, codec: 'binary', finetune: { steps: 1, batch: 2, seq: 8, calibText, device: 'webgpu', threads: 2 } });
    await expect(threads).rejects.toMatchObject({ code: ErrorCodes.BAD_ARGUMENT, source: '--threads' });
    const device = compress({ model, codec: 'binary', finetune: { steps: 1, batch: 2, seq: 8, calibText, device: 'tpu' as never } });
    await expect(device).rejects.toMatchObject({ code: ErrorCodes.BAD_ARGUMENT, source: '--device' });
  }, 120_000);
});
