import { readSafetensors, writeSafetensors } from '@ultrasketch/format';
import { LINEAR_KINDS, TensorNames } from '@ultrasketch/model';
import { loadModel } from '@ultrasketch/pipeline';
import { describe, expect, it } from 'vitest';
import { CalibrationBatches, Trainer, makeProviders, registerLittleBitProviders } from '../src/index.js';
import { GpuKdTrainer } from '../src/webgpu/index.js';
import { stepInLockstep, trainContext } from './webgpu-helpers.js';

/**
 * Three dense KD steps of stories260K on WebGPU against the CPU `Trainer` with dense providers, the same
 * seed and calibration stream (so the same batches), loss 1·KL + 10·ΣMSE + 0.3·CE (CE makes step 1's
 * gradient non-zero: the student starts as the teacher), norms trained, clipping and the schedule on.
 */
const MODEL = '/work/shared/models/stories260K/stories260K.bin';

describe('WebGPU dense KD trainer (stories260K) = the CPU Trainer', () => {
  it('3 steps, batch 2 × 16: every step loss/KL/CE/MSE/grad norm/lr, and the trained weights', async () => {
    const ctx = await trainContext();
    const { weights: teacher } = loadModel(MODEL);
    const V = teacher.config.vocabSize;
    const calib = Int32Array.from({ length: 600 }, (_, i) => (i % 97 === 0 ? 1 : ((i * 131 + (i >> 2)) % (V - 2)) + 2));
    const common = { batch: 2, seqLen: 16, steps: 3, lr: 1e-3, warmup: 0.34, loss: { kl: 1, mse: 10, ce: 0.3 }, trainNorms: true };
    const seed = 5;
    const cpu = new Trainer({ ...common, teacher, calibTokens: calib, seed, providers: makeProviders(teacher, () => ({ kind: 'dense' })) });
    const gpu = await GpuKdTrainer.create(ctx, { ...common, teacher, providers: makeProviders(teacher, () => ({ kind: 'dense' })) });
    await stepInLockstep(cpu, gpu, calib, common, seed, (s, got, want) => {
      const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
      console.log(
        `[webgpu] trainer step ${s + 1}: loss ${got.loss} vs ${want.loss} (${rel(got.loss, want.loss).toExponential(2)}), KL ${got.kl} vs ${want.kl}, MSE ${got.mse} vs ${want.mse}, grad norm ${rel(got.gradNorm, want.gradNorm).toExponential(2)}`,
      );
      expect(got.step).toBe(want.step);
      expect(got.lr).toBe(want.lr);
      expect(rel(got.loss, want.loss)).toBeLessThan(1e-5);
      expect(rel(got.ce, want.ce)).toBeLessThan(1e-5);
      expect(rel(got.gradNorm, want.gradNorm)).toBeLessThan(1e-4);
      if (s > 0) {
        // step 1: student = teacher, so KL and MSE are rounding noise on both devices
        expect(rel(got.kl, want.kl)).toBeLessThan(1e-3);
        expect(rel(got.mse, want.mse)).toBeLessThan(1e-3);
      }
    });
    // Trained weights: three Adam steps move each entry by ≤ 3·lr; compare in units of lr.
    const gw = await gpu.studentWeights();
    const cw = cpu.studentWeights();
    let worst = 0;
    let off = 0;
    let total = 0;
    const names = [TensorNames.finalNorm, ...Array.from({ length: teacher.config.nLayers }, (_, l) => [TensorNames.attnNorm(l), TensorNames.ffnNorm(l), ...LINEAR_KINDS.map((k) => TensorNames.linear(l, k))]).flat()];
    for (const name of names) {
      const a = gw.tensors.get(name)!.data;
      const b = cw.tensors.get(name)!.data;
      for (let i = 0; i < b.length; i++) {
        const d = Math.abs(a[i]! - b[i]!) / common.lr;
        worst = Math.max(worst, d);
        if (d > 1e-2) off++;
        total++;
      }
    }
    console.log(`[webgpu] trainer after 3 steps: ${off} of ${total} weights differ by > 0.01·lr (worst ${worst.toExponential(2)}·lr)`);
    expect(worst).toBeLessThan(1);
    expect(off / total).toBeLessThan(1e-3);
  });

  it('LittleBit (rank 4, two paths) on every linear: 3 steps = the CPU Trainer, and the packed bundle parameters', async () => {
    registerLittleBitProviders();
    const ctx = await trainContext();
    const { weights: teacher } = loadModel(MODEL);
    const V = teacher.config.vocabSize;
    const calib = Int32Array.from({ length: 600 }, (_, i) => (i % 89 === 0 ? 1 : ((i * 157 + (i >> 3)) % (V - 2)) + 2));
    const common = { batch: 2, seqLen: 16, steps: 3, lr: 3e-3, warmup: 0, loss: { kl: 1, mse: 10, ce: 0 }, trainNorms: true };
    const seed = 9;
    // the same factory and seed twice: identical Dual-SVID initialisations, one for each device
    const providers = () => makeProviders(teacher, () => ({ kind: 'littlebit', options: { rank: 4, residual: true } }), { seed });
    const cpu = new Trainer({ ...common, teacher, calibTokens: calib, seed, providers: providers() });
    const gpu = await GpuKdTrainer.create(ctx, { ...common, teacher, providers: providers() });
    await stepInLockstep(cpu, gpu, calib, common, seed, (s, got, want) => {
      const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
      console.log(`[webgpu] littlebit trainer step ${s + 1}: loss ${got.loss} vs ${want.loss} (${rel(got.loss, want.loss).toExponential(2)}), grad norm ${rel(got.gradNorm, want.gradNorm).toExponential(2)}`);
      expect(rel(got.loss, want.loss)).toBeLessThan(1e-4);
      expect(rel(got.kl, want.kl)).toBeLessThan(1e-4);
      expect(rel(got.mse, want.mse)).toBeLessThan(1e-4);
      expect(rel(got.gradNorm, want.gradNorm)).toBeLessThan(1e-3);
    });
    // the bundle: packed sign bits equal except where a latent sits within rounding of 0; f16 scales within an ulp or two
    const gp = await gpu.codecParams();
    const cp = cpu.codecParams();
    let bits = 0;
    let differ = 0;
    for (const [name, want] of cp) {
      const got = gp.get(name)!;
      expect(got.codecId).toBe('littlebit');
      const a = got.params as { paths: Array<{ uSigns: Uint32Array; vSigns: Uint32Array }> };
      const b = want.params as typeof a;
      a.paths.forEach((path, i) => {
        for (const key of ['uSigns', 'vSigns'] as const) {
          const x = path[key];
          const y = b.paths[i]![key];
          for (let j = 0; j < y.length; j++) {
            let d = x[j]! ^ y[j]!;
            while (d) {
              differ += d & 1;
              d >>>= 1;
            }
            bits += 8 * y.BYTES_PER_ELEMENT;
          }
        }
      });
    }
    console.log(`[webgpu] littlebit trainer after 3 steps: ${differ} of ${bits} packed sign bits differ from the CPU run`);
    expect(differ / bits).toBeLessThan(1e-3);
  });

  it('checkpoints across devices: CPU steps 1–2 → WebGPU step 3 → CPU step 4, each = the CPU-only run; evaluate() = the CPU one', async () => {
    registerLittleBitProviders();
    const ctx = await trainContext();
    const { weights: teacher } = loadModel(MODEL);
    const V = teacher.config.vocabSize;
    const calib = Int32Array.from({ length: 500 }, (_, i) => (i % 83 === 0 ? 1 : ((i * 149 + (i >> 1)) % (V - 2)) + 2));
    const common = { batch: 2, seqLen: 8, steps: 4, lr: 3e-3, warmup: 0, loss: { kl: 1, mse: 10, ce: 0.3 }, trainNorms: true };
    const seed = 11;
    const providers = () => makeProviders(teacher, (_l, kind) => (kind === 'o' ? { kind: 'dense' } : { kind: 'littlebit', options: { rank: 4, residual: true } }), { seed });
    const cpu = new Trainer({ ...common, teacher, calibTokens: calib, seed, providers: providers() });
    cpu.step();
    cpu.step();
    const gpu = await GpuKdTrainer.create(ctx, { ...common, teacher, providers: providers() });
    gpu.loadState(cpu.state(), 'cpu step 2');
    expect(gpu.stepCount).toBe(2);
    const windows = new Int32Array(common.batch * (common.seqLen + 1));
    new CalibrationBatches(calib, common.seqLen, seed).fill(2, windows, 0, common.batch);
    const g3 = await gpu.step(windows);
    const c3 = cpu.step();
    const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
    expect(g3.step).toBe(3);
    expect(g3.lr).toBe(c3.lr);
    expect(rel(g3.loss, c3.loss)).toBeLessThan(1e-5);
    // back to the CPU: the GPU's parameters and moments in a file the CPU Trainer loads
    const meta = readSafetensors(cpu.state(), 'cpu step 3').metadata;
    const back = new Trainer({ ...common, teacher, calibTokens: calib, seed, providers: providers() });
    back.loadState(await gpu.state(meta), 'webgpu step 3');
    expect(back.completedSteps).toBe(3);
    const c4 = cpu.step();
    const b4 = back.step();
    console.log(`[webgpu] checkpoint round trip: step 3 on WebGPU ${rel(g3.loss, c3.loss).toExponential(2)}, step 4 on the CPU from the WebGPU file ${rel(b4.loss, c4.loss).toExponential(2)} (relative to the CPU-only run)`);
    expect(rel(b4.loss, c4.loss)).toBeLessThan(1e-5);
    // evaluation on fixed windows (3: a full batch and a partial one) = the CPU Trainer's, same parameters (step 3)
    const evalWindows = [0, 1, 2].map((i) => calib.subarray(100 + 40 * i, 100 + 40 * i + common.seqLen + 1));
    const ge = await gpu.evaluate(evalWindows);
    const be = new Trainer({ ...common, teacher, calibTokens: calib, seed, providers: providers() });
    be.loadState(await gpu.state(meta), 'webgpu step 3');
    const ce = be.evaluate(evalWindows);
    console.log(`[webgpu] evaluate: KL ${ge.kl} vs ${ce.kl}, CE ${ge.ce} vs ${ce.ce}, top-1 ${ge.top1} vs ${ce.top1}, MSE ${ge.mse} vs ${ce.mse}`);
    expect(ge.positions).toBe(ce.positions);
    expect(rel(ge.kl, ce.kl)).toBeLessThan(1e-5);
    expect(rel(ge.ce, ce.ce)).toBeLessThan(1e-5);
    expect(rel(ge.mse, ce.mse)).toBeLessThan(1e-5);
    expect(ge.top1).toBe(ce.top1);
    // a file without one of the tensors is refused before anything changes
    const file = readSafetensors(cpu.state(), 'cpu');
    const partial = writeSafetensors([...file.tensors].filter(([name]) => !name.startsWith('adam.v/')).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.data })), file.metadata);
    expect(() => gpu.loadState(partial, 'partial')).toThrowError(expect.objectContaining({ code: 'E_MISSING_TENSOR' }));
    expect(gpu.stepCount).toBe(3);
  });

  it('refuses a provider kind that has no WebGPU version yet (typed, naming the CPU device)', async () => {
    const ctx = await trainContext();
    const { weights: teacher } = loadModel(MODEL);
    const { registerAll } = await import('@ultrasketch/baselines');
    registerAll();
    const providers = makeProviders(teacher, (l, kind) => (l === 0 && kind === 'q' ? { kind: 'ste', options: { codec: 'float' } } : undefined));
    await expect(GpuKdTrainer.create(ctx, { teacher, providers, batch: 1, seqLen: 4, steps: 1 })).rejects.toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/--device cpu/) });
  });
});
