import { registerAll } from '@ultrasketch/baselines';
import { loadModel } from '@ultrasketch/pipeline';
import { describe, expect, it } from 'vitest';
import { CalibrationBatches, CodecSteProvider, Trainer, makeProviders } from '../src/index.js';
import { GpuCodecSteProvider, GpuKdTrainer } from '../src/webgpu/index.js';
import { LANES, randArray, trainContext } from './webgpu-helpers.js';

/**
 * STE on WebGPU (binary and rtn). Binary (the CPU CodecSteProvider with the `binary` codec): the GPU rebuild Ŵ = ±f16(mean |W_row|)
 * against the CPU codec's decode(encode(W)) — including rows whose scale rounds in f16's subnormal range and a
 * zero row (sign(0) = +1, scale 0) — and training: 3 stories260K steps with rebuildEvery 2 (so Ŵ is a checkpoint
 * buffer that is not a function of W) against the CPU Trainer, and a CPU checkpoint resumed on WebGPU. rtn: the GPU
 * rebuild against the codec for 2, 3, 4 and 8 bits, group lengths 16 (a partial last group) and 0 (per row).
 */
const MODEL = '/work/shared/models/stories260K/stories260K.bin';

describe.each(LANES)('WebGPU binary STE provider — reductions in %i lane(s)', (lanes) => {
  it('rebuild = the CPU codec (f16 scales, subnormal scales, a zero row)', async () => {
    registerAll();
    const ctx = await trainContext(lanes);
    const rows = 37;
    const cols = 53;
    const w0 = randArray(rows * cols, 400, 0.05);
    for (let j = 0; j < cols; j++) {
      w0[3 * cols + j] = 0; // zero row
      w0[5 * cols + j] *= 1e-4; // scale ≈ 1.2e-6: an f16 subnormal
      w0[6 * cols + j] *= 1e5; // scale ≈ 1250: a large normal
    }
    const cpu = new CodecSteProvider({ name: 'w', rows, cols, weight: w0, codec: 'binary' });
    const gpu = new GpuCodecSteProvider(ctx, new CodecSteProvider({ name: 'w', rows, cols, weight: w0, codec: 'binary' }));
    const first = await ctx.read(gpu.weight());
    expect(first).toEqual(cpu.weight()); // the initial build is the CPU's
    expect(Math.abs(first[5 * cols]!)).toBeGreaterThan(0);
    expect(Math.abs(first[5 * cols]!)).toBeLessThan(6.1e-5); // an f16 subnormal scale
    // a new W, rebuilt on both
    // flipped signs and a relative change: each row keeps its magnitude (row 3 zero, row 5 subnormal, row 6 large)
    const w1 = w0.map((v, i) => (i % 7 === 0 ? -v : v) * (1 + 0.01 * Math.sin(i)));
    cpu.parameters()[0]!.data.set(w1);
    ctx.write(gpu.parameters()[0]!.data, w1);
    cpu.afterStep(1);
    gpu.afterStep(1);
    const got = await ctx.read(gpu.weight());
    const want = cpu.weight();
    let rowsDiffer = 0;
    for (let r = 0; r < rows; r++) {
      let same = true;
      for (let j = 0; j < cols; j++) if (got[r * cols + j] !== want[r * cols + j]) same = false;
      if (!same) rowsDiffer++;
    }
    // f32 sums here, float64 there: a scale may land on the other side of an f16 rounding tie (none did here)
    console.log(`[webgpu, ${lanes} lane(s)] binary rebuild: ${rowsDiffer} of ${rows} rows differ from the CPU codec`);
    expect(rowsDiffer).toBe(0);
    expect(got[3 * cols]).toBe(0);
    expect(Math.abs(got[5 * cols]!)).toBeGreaterThan(0);
    expect(Math.abs(got[5 * cols]!)).toBeLessThan(6.1e-5); // rebuilt on the GPU: an f16 subnormal scale
    expect(Math.abs(got[6 * cols]!)).toBeGreaterThan(100);
  });
});

describe.each(LANES)('WebGPU rtn STE rebuild — reductions in %i lane(s)', (lanes) => {
  it('= the CPU codec for 2/3/4/8 bits, groups of 16 and per row (ties on a rounding boundary counted)', async () => {
    registerAll();
    const ctx = await trainContext(lanes);
    const rows = 23;
    const cols = 53;
    const w0 = randArray(rows * cols, 500, 0.05);
    for (let j = 0; j < cols; j++) w0[2 * cols + j] = 0.01; // a constant row: scale 0, every code 0
    let differ = 0;
    let total = 0;
    for (const bits of [2, 3, 4, 8]) {
      for (const groupSize of [16, 0]) {
        const opts = { name: 'w', rows, cols, weight: w0, codec: 'rtn', options: { bits, groupSize } };
        const cpu = new CodecSteProvider(opts);
        const gpu = new GpuCodecSteProvider(ctx, new CodecSteProvider(opts));
        const w1 = w0.map((v, i) => v * (1 + 0.05 * Math.cos(i)));
        cpu.parameters()[0]!.data.set(w1);
        ctx.write(gpu.parameters()[0]!.data, w1);
        cpu.afterStep(1);
        gpu.afterStep(1);
        const got = await ctx.read(gpu.weight());
        const want = cpu.weight();
        let d = 0;
        for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) d++;
        differ += d;
        total += want.length;
        expect(d, `bits ${bits} groupSize ${groupSize}`).toBeLessThanOrEqual(2);
        expect(got[2 * cols]).toBe(want[2 * cols]);
      }
    }
    console.log(`[webgpu, ${lanes} lane(s)] rtn rebuild: ${differ} of ${total} weights differ from the CPU codec (a quotient on a rounding tie)`);
  });
});

describe('WebGPU binary STE training (stories260K)', () => {
  it('3 steps with rebuildEvery 2 = the CPU Trainer; a CPU checkpoint (with its Ŵ buffers) resumes on WebGPU', async () => {
    registerAll();
    const ctx = await trainContext();
    const { weights: teacher } = loadModel(MODEL);
    const V = teacher.config.vocabSize;
    const calib = Int32Array.from({ length: 500 }, (_, i) => (i % 71 === 0 ? 1 : ((i * 173 + (i >> 2)) % (V - 2)) + 2));
    const common = { batch: 2, seqLen: 12, steps: 3, lr: 1e-3, warmup: 0, loss: { kl: 1, mse: 10, ce: 0.3 }, trainNorms: false };
    const seed = 13;
    const providers = () => makeProviders(teacher, (_l, kind) => (kind === 'o' ? { kind: 'dense' } : { kind: 'ste', options: { codec: 'binary', rebuildEvery: 2 } }), { seed });
    const cpu = new Trainer({ ...common, teacher, calibTokens: calib, seed, providers: providers() });
    const gpu = await GpuKdTrainer.create(ctx, { ...common, teacher, providers: providers() });
    const batches = new CalibrationBatches(calib, common.seqLen, seed);
    const windows = (s: number) => {
      const w = new Int32Array(common.batch * (common.seqLen + 1));
      batches.fill(s, w, 0, common.batch);
      return w;
    };
    const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
    let resumeFile: Uint8Array | null = null;
    for (let s = 0; s < common.steps; s++) {
      const want = cpu.step();
      if (s === 0) resumeFile = cpu.state();
      const got = await gpu.step(windows(s));
      console.log(`[webgpu] binary STE step ${s + 1}: loss ${got.loss} vs ${want.loss} (${rel(got.loss, want.loss).toExponential(2)})`);
      expect(rel(got.loss, want.loss)).toBeLessThan(1e-4);
      expect(rel(got.gradNorm, want.gradNorm)).toBeLessThan(1e-3);
    }
    // resume from the CPU's step-1 checkpoint on a fresh GPU trainer: step 2 = the CPU's step 2
    const again = await GpuKdTrainer.create(ctx, { ...common, teacher, providers: providers() });
    again.loadState(resumeFile!, 'cpu step 1');
    const cpu2 = new Trainer({ ...common, teacher, calibTokens: calib, seed, providers: providers() });
    cpu2.loadState(resumeFile!, 'cpu step 1');
    const a2 = await again.step(windows(1));
    const c2 = cpu2.step();
    console.log(`[webgpu] binary STE resumed step 2: ${rel(a2.loss, c2.loss).toExponential(2)}`);
    expect(rel(a2.loss, c2.loss)).toBeLessThan(1e-4);
    // the checkpoint written on the GPU carries the Ŵ buffers the CPU trainer needs
    const tensors = await again.checkpointTensors();
    expect([...tensors.keys()].filter((k) => k.startsWith('buffer/') && k.endsWith('/decoded')).length).toBe(6 * teacher.config.nLayers);
  });
});
