import { describe, expect, it } from 'vitest';
import { distillLosses as cpuDistill, mseLoss as cpuMse } from '../src/ops.js';
import { AdamW, globalGradNorm, learningRate } from '../src/optim.js';
import type { Param } from '../src/providers.js';
import { GpuAdamW, distillLosses, mseLoss } from '../src/webgpu/index.js';
import { fd, LANES, plus, randArray, relErr, trainContext } from './webgpu-helpers.js';

/**
 * The KD losses (logit KL vs teacher logits, CE, hidden-state MSE) and AdamW on WebGPU against the CPU
 * trainer's distillLosses / mseLoss / AdamW, and the loss gradients against finite differences of the GPU
 * loss itself. Vocabulary 131 (odd, over two 64-lane passes), MSE over 3001 elements (three 1024-element
 * workgroups, the last partial).
 */
const n = 5;
const V = 131;

describe.each(LANES)('WebGPU KD losses — reductions in %i lane(s)', (lanes) => {
  const z = randArray(n * V, 71, 3);
  const x = randArray(n * V, 72, 3);
  // row 0: the teacher's and the student's arg-max agree (top-1 counts it); elsewhere they are random
  z[7] = 9;
  x[7] = 8;
  const targets = Uint32Array.from({ length: n }, (_, t) => (t * 37 + 5) % V);
  const wKl = 0.7;
  const wCe = 0.3;
  const denom = 8; // a shard of a larger batch divides by the whole batch's rows

  for (const teacher of [true, false]) {
    it(`${teacher ? 'KL + CE' : 'CE only (no teacher)'}: figures and ∂/∂z = the CPU distillLosses; ∂/∂z = finite differences`, async () => {
      const ctx = await trainContext(lanes);
      const Z = ctx.upload(z, 'z');
      const X = ctx.upload(x, 'x');
      const T = ctx.upload(targets, 'targets');
      const DZ = ctx.tensor(n * V, 'dz');
      const a = teacher ? wKl : 0;
      const got = await distillLosses(ctx, Z, teacher ? X : null, T, n, V, a, wCe, DZ, denom).read();
      const dz = await ctx.read(DZ);
      const wdz = new Float32Array(n * V);
      const want = cpuDistill(z, teacher ? x : null, targets, n, V, a, wCe, wdz, denom);
      console.log(`[webgpu, ${lanes} lane(s)] distill (teacher ${teacher}): kl ${got.kl} vs ${want.kl}, ce ${got.ce} vs ${want.ce}, dz ${relErr(dz, wdz).toExponential(2)}`);
      expect(got.ce).toBeCloseTo(want.ce, 5);
      if (teacher) {
        expect(Math.abs(got.kl - want.kl) / want.kl).toBeLessThan(1e-5);
        expect(got.top1).toBe(want.top1);
        expect(got.top1).toBeGreaterThan(0);
      } else {
        expect(got.kl).toBeNaN();
      }
      expect(got.studentFinite && got.teacherFinite).toBe(true);
      expect(relErr(dz, wdz)).toBeLessThan(2e-6);
      // L = (n/denom)(a·KL + c·CE) is what dz differentiates
      const lossAt = async (zv: Float32Array) => {
        ctx.write(Z, zv);
        const r = await distillLosses(ctx, Z, teacher ? X : null, T, n, V, a, wCe, null, denom).read();
        return (n / denom) * ((teacher ? a * r.kl : 0) + wCe * r.ce);
      };
      const dir = randArray(n * V, 73);
      let an = 0;
      for (let i = 0; i < dir.length; i++) an += dz[i]! * dir[i]!;
      const num = await fd((e) => lossAt(plus(z, dir, e)), 1e-2);
      const err = Math.abs(num - an) / Math.abs(an);
      console.log(`[webgpu, ${lanes} lane(s)] distill (teacher ${teacher}) ∂/∂z vs finite differences: ${err.toExponential(2)}`);
      expect(err).toBeLessThan(2e-3);
      for (const t of [Z, X, T, DZ]) ctx.free(t);
    });
  }

  it('reports a non-finite logit (as the CPU check does) instead of a number', async () => {
    const ctx = await trainContext(lanes);
    const bad = z.slice();
    bad[V + 3] = Number.NaN;
    const Z = ctx.upload(bad, 'z');
    const X = ctx.upload(x, 'x');
    const T = ctx.upload(targets, 'targets');
    const r = await distillLosses(ctx, X, Z, T, n, V, wKl, wCe, null).read();
    expect(r.teacherFinite).toBe(false);
    expect(r.studentFinite).toBe(true);
    for (const t of [Z, X, T]) ctx.free(t);
  });

  it('hidden MSE and its gradient (accumulated into dx) = the CPU mseLoss; gradient = finite differences', async () => {
    const ctx = await trainContext(lanes);
    const count = 3001;
    const xs = randArray(count, 81);
    const ts = randArray(count, 82);
    const dx0 = randArray(count, 83, 0.1);
    const weight = 10;
    const big = count * 2; // the shard's denominator
    const Xs = ctx.upload(xs, 'x');
    const Ts = ctx.upload(ts, 'target');
    const DX = ctx.upload(dx0, 'dx');
    const got = await mseLoss(ctx, Xs, Ts, count, weight, DX, big).read();
    const dx = await ctx.read(DX);
    const wdx = dx0.slice();
    const want = cpuMse(xs, ts, count, weight, wdx, big);
    console.log(`[webgpu, ${lanes} lane(s)] mse ${got} vs ${want}, dx ${relErr(dx, wdx).toExponential(2)}`);
    expect(Math.abs(got - want) / want).toBeLessThan(1e-5);
    expect(relErr(dx, wdx)).toBeLessThan(1e-6);
    const lossAt = async (xv: Float32Array) => {
      ctx.write(Xs, xv);
      return (weight * count * (await mseLoss(ctx, Xs, Ts, count, weight, null).read())) / big;
    };
    const dir = randArray(count, 84);
    let an = 0;
    for (let i = 0; i < count; i++) an += (dx[i]! - dx0[i]!) * dir[i]!;
    const err = Math.abs((await fd((e) => lossAt(plus(xs, dir, e)), 1e-2)) - an) / Math.abs(an);
    console.log(`[webgpu, ${lanes} lane(s)] mse gradient vs finite differences: ${err.toExponential(2)}`);
    expect(err).toBeLessThan(2e-3);
    for (const t of [Xs, Ts, DX]) ctx.free(t);
  });
});

describe.each(LANES)('WebGPU AdamW — reductions in %i lane(s)', (lanes) => {
  it('three clipped steps with the warm-up + cosine schedule = the CPU AdamW (parameters, moments, grad norm)', async () => {
    const ctx = await trainContext(lanes);
    const sizes = [1500, 67];
    const options = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
    const cpuParams: Param[] = sizes.map((len, i) => ({ name: `p${i}`, data: randArray(len, 90 + i), grad: new Float32Array(len), decay: i === 0 }));
    const gpuParams = cpuParams.map((p) => ({ name: p.name, data: ctx.upload(p.data, p.name), grad: ctx.tensor(p.data.length, `${p.name}.grad`), decay: p.decay }));
    const cpu = new AdamW(cpuParams, options);
    const gpu = new GpuAdamW(ctx, gpuParams, options);
    const schedule = { lr: 1e-2, steps: 10, warmupSteps: 2, minLrRatio: 0.1 };
    const clip = 1;
    for (let step = 0; step < 3; step++) {
      cpuParams.forEach((p, i) => {
        const g = randArray(p.data.length, 100 + 10 * step + i, step === 1 ? 0.001 : 0.5); // step 1 is below the clip
        p.grad.set(g);
        ctx.write(gpuParams[i]!.grad, g);
      });
      const norm = globalGradNorm(cpuParams);
      const r = await gpu.clipAndStep(step, schedule, clip);
      expect(Math.abs(r.gradNorm - norm) / norm).toBeLessThan(1e-6);
      expect(r.lr).toBe(learningRate(step, schedule));
      cpu.step(step + 1, learningRate(step, schedule), clip > 0 && norm > clip ? clip / norm : 1);
    }
    const states = await gpu.readState();
    let worst = 0;
    for (let i = 0; i < sizes.length; i++) {
      const data = await ctx.read(gpuParams[i]!.data);
      const grad = await ctx.read(gpuParams[i]!.grad);
      worst = Math.max(worst, relErr(data, cpuParams[i]!.data));
      expect(relErr(data, cpuParams[i]!.data)).toBeLessThan(1e-6);
      expect(relErr(states[i]!.m, cpu.states[i]!.m)).toBeLessThan(1e-5);
      expect(relErr(states[i]!.v, cpu.states[i]!.v)).toBeLessThan(1e-5);
      expect(Math.max(...grad.map(Math.abs))).toBe(0); // zeroed after the update
    }
    console.log(`[webgpu, ${lanes} lane(s)] AdamW after 3 steps: parameters within ${worst.toExponential(2)} (relative) of the CPU optimizer`);
  });

  it('a non-finite gradient norm stops the step with E_NOT_FINITE before any parameter changes', async () => {
    const ctx = await trainContext(lanes);
    const p0 = randArray(10, 7);
    const data = ctx.upload(p0, 'p');
    const grad = ctx.upload(Float32Array.from({ length: 10 }, (_, i) => (i === 3 ? Number.POSITIVE_INFINITY : 0.1)), 'g');
    const opt = new GpuAdamW(ctx, [{ name: 'p', data, grad }], { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });
    await expect(opt.clipAndStep(0, { lr: 1e-3, steps: 5, warmupSteps: 0, minLrRatio: 0 }, 1)).rejects.toMatchObject({ code: 'E_NOT_FINITE' });
    expect(await ctx.read(data)).toEqual(p0);
  });
});
