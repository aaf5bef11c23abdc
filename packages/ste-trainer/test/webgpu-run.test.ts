import { loadModel } from '@ultrasketch/pipeline';
import { describe, expect, it } from 'vitest';
import { CalibrationBatches, Trainer, makeProviders, registerLittleBitProviders } from '../src/index.js';
import { GpuKdTrainer } from '../src/webgpu/index.js';
import { trainContext } from './webgpu-helpers.js';

/**
 * Issue 15's check 2 (loss) at a test-sized batch: 12 LittleBit steps of stories260K on WebGPU (SwiftShader here)
 * against the CPU Trainer with the same seed and windows — the plan of bench/trainer-webgpu.mjs (2 bpw with the
 * residual path on every linear but K/V, KD loss, norms trained, the default schedule), batch 1 × 16.
 *
 * What this run showed: the two devices agree to ~1e-7 until a latent factor that sits within float rounding of
 * 0 takes the other sign on one device (here after step 3: 1 of 234,560 sign bits); sign(U) is discontinuous,
 * so from then on the trajectories separate (11, 20, 50 bits after steps 4–6; losses ~1e-2 apart by step 10
 * of a 20-step run)
 * while both train normally. So the test holds each step's loss to 1e-5 exactly while the sign bits the step
 * starts from agree, requires that to hold for the first steps, and requires both runs to train. Issue 15's
 * "within 1e-3 at step 20" is met by some runs (the bench's 2 × 32: ≤ 1.5e-7 at every step) and not by others
 * — docs/ste-trainer.md §9 says what that means for the check.
 */
const MODEL = '/work/shared/models/stories260K/stories260K.bin';

/** Packed sign bits of every LittleBit linear that differ between the two trainers' current parameters. */
async function signDiff(gpu: GpuKdTrainer, cpu: Trainer): Promise<{ differ: number; bits: number }> {
  const gp = await gpu.codecParams();
  let bits = 0;
  let differ = 0;
  for (const [name, want] of cpu.codecParams()) {
    if (want.codecId !== 'littlebit') continue; // K, V: frozen
    const a = gp.get(name)!.params as unknown as { paths: Array<{ uSigns: Uint32Array; vSigns: Uint32Array }> };
    const b = want.params as unknown as typeof a;
    a.paths.forEach((path, i) => {
      for (const key of ['uSigns', 'vSigns'] as const) {
        const x = path[key];
        const y = b.paths[i]![key];
        for (let j = 0; j < y.length; j++) {
          let v = (x[j]! ^ y[j]!) >>> 0;
          while (v) {
            differ += v & 1;
            v >>>= 1;
          }
          bits += 8 * y.BYTES_PER_ELEMENT;
        }
      }
    });
  }
  return { differ, bits };
}

describe('LittleBit steps on WebGPU vs the CPU Trainer (issue 15, check 2: loss)', () => {
  it('stories260K, batch 1 × 16: identical sign bits ⇒ losses within 1e-5; both train', async () => {
    registerLittleBitProviders();
    const ctx = await trainContext();
    const { weights: teacher } = loadModel(MODEL);
    const V = teacher.config.vocabSize;
    const calib = Int32Array.from({ length: 800 }, (_, i) => (i % 97 === 0 ? 1 : ((i * 131 + (i >> 3)) % (V - 2)) + 2));
    const recipe = { batch: 1, seqLen: 16, steps: 12, lr: 3e-3, trainNorms: true }; // 12: under half a minute here
    const seed = 21;
    const plan = (_l: number, kind: string) => (kind === 'k' || kind === 'v' ? undefined : { kind: 'littlebit', options: { codecOptions: { bpw: 2, residual: true } } });
    const cpu = new Trainer({ ...recipe, teacher, calibTokens: calib, seed, providers: makeProviders(teacher, plan, { seed }) });
    const gpu = await GpuKdTrainer.create(ctx, { ...recipe, teacher, providers: makeProviders(teacher, plan, { seed }) });
    const batches = new CalibrationBatches(calib, recipe.seqLen, seed);
    const windows = new Int32Array(recipe.batch * (recipe.seqLen + 1));
    let signsAgree = true; // the parameters the next step starts from have the same sign bits
    let agreedSteps = 0;
    let firstFlip = 0;
    const losses: Array<[number, number]> = [];
    for (let s = 0; s < recipe.steps; s++) {
      const want = cpu.step();
      batches.fill(s, windows, 0, recipe.batch);
      const got = await gpu.step(windows);
      losses.push([got.loss, want.loss]);
      const d = Math.abs(got.loss - want.loss) / Math.abs(want.loss);
      if (signsAgree) {
        expect(d, `step ${s + 1} (same sign bits)`).toBeLessThan(1e-5);
        agreedSteps++;
        const diff = await signDiff(gpu, cpu);
        if (diff.differ > 0) {
          signsAgree = false;
          firstFlip = s + 1;
          console.log(`[webgpu] LittleBit run: after step ${s + 1}, ${diff.differ} of ${diff.bits} sign bits differ (a latent within rounding of 0)`);
        }
      }
    }
    const [lastGpu, lastCpu] = losses[losses.length - 1]!;
    console.log(
      `[webgpu] LittleBit run: losses agree ≤ 1e-5 for ${agreedSteps} steps${firstFlip ? ` (first sign difference after step ${firstFlip})` : ''}; ` +
        `loss ${losses[0]![1].toFixed(3)} → ${lastCpu.toFixed(3)} (CPU), ${lastGpu.toFixed(3)} (WebGPU), ${(Math.abs(lastGpu - lastCpu) / lastCpu).toExponential(2)} apart`,
    );
    expect(agreedSteps).toBeGreaterThanOrEqual(3);
    const mean = (i: 0 | 1, from: number, to: number) => losses.slice(from, to).reduce((a, l) => a + l[i], 0) / (to - from);
    for (const i of [0, 1] as const) expect(mean(i, 8, 12)).toBeLessThan(0.5 * mean(i, 0, 3)); // both train
  });
});
