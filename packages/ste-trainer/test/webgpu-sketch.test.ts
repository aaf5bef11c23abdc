import { ErrorCodes, f16BitsToF32 } from '@ultrasketch/core';
import { loadModel } from '@ultrasketch/pipeline';
import { describe, expect, it } from 'vitest';
import { HashedNetsStateProvider, SketchStateProvider, Trainer, makeProviders, registerSketchProviders } from '../src/index.js';
import { GpuKdTrainer, GpuStatePickProvider, GpuTrainContext } from '../src/webgpu/index.js';
import { randArray, stepInLockstep, trainContext } from './webgpu-helpers.js';

/**
 * Sketch and HashedNets state training on WebGPU (src/webgpu/providers-sketch.ts) against the CPU providers
 * (src/providers-sketch.ts, their default behaviour): the forward (AbsMax pick over hashed candidates, f16
 * toward zero for sketch states, to nearest for hashednets) and the backward (the scatter-add into the picked
 * states, here a segmented sum per state in ascending weight order) must be the CPU's BIT FOR BIT on the same
 * states and ∂L/∂Ŵ; then a few stories260K steps through GpuKdTrainer vs the CPU Trainer.
 */
const MODEL = '/work/shared/models/stories260K/stories260K.bin';

function differing(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < b.length; i++) if (!Object.is(a[i], b[i])) d++;
  return d;
}

describe('WebGPU sketch / hashednets state providers', () => {
  const rows = 37;
  const cols = 53;
  const w = randArray(rows * cols, 900, 0.05);
  const cases: Array<[string, () => SketchStateProvider | HashedNetsStateProvider]> = [
    ['sketch 2 bpw (3 rows, f16 states)', () => new SketchStateProvider({ name: 'w', rows, cols, weight: w, codecOptions: { bpw: 2 }, context: { seed: 5 } })],
    ['sketch 1 bpw, 2 channel groups', () => new SketchStateProvider({ name: 'w', rows, cols, weight: w, codecOptions: { bpw: 1, groups: 2 }, context: { seed: 6 } })],
    ['sketch 2 bpw, f32 states (no rounding)', () => new SketchStateProvider({ name: 'w', rows, cols, weight: w, codecOptions: { bpw: 2, state: 'f32' }, context: { seed: 7 } })],
    ['sketch 2 bpw, int8 states (a scale per sketch row)', () => new SketchStateProvider({ name: 'w', rows, cols, weight: w, codecOptions: { bpw: 2, state: 'int8' }, context: { seed: 10 } })],
    ['sketch 1 bpw, int8 states, 2 channel groups', () => new SketchStateProvider({ name: 'w', rows, cols, weight: w, codecOptions: { bpw: 1, state: 'int8', groups: 2 }, context: { seed: 11 } })],
    ['hashednets 1 bpw (f16 states)', () => new HashedNetsStateProvider({ name: 'w', rows, cols, weight: w, codecOptions: { bpw: 1 }, context: { seed: 8 } })],
  ];

  it.each(cases)('%s: Ŵ, picks and the state gradient = the CPU provider, bit for bit', async (_label, make) => {
    registerSketchProviders();
    const ctx = await trainContext();
    const cpu = make();
    const gpu = new GpuStatePickProvider(ctx, make());
    // move the states off their initial values (both sides the same), so picks change and f16 rounds
    const states = cpu.parameters()[0]!.data;
    const moved = states.map((v, i) => v * (1 + 0.3 * Math.sin(i * 1.7)) + 1e-3 * Math.cos(i));
    states.set(moved);
    ctx.write(gpu.parameters()[0]!.data, moved);
    const want = cpu.weight();
    const got = await ctx.read(gpu.weight());
    expect(differing(got, want)).toBe(0);
    if (cpu instanceof SketchStateProvider) expect(differing(await gpu.picks(), cpu.picks())).toBe(0);
    // two backward passes accumulate (as two graph calls would)
    const g1 = randArray(rows * cols, 901, 1);
    const g2 = randArray(rows * cols, 902, 0.5);
    for (const g of [g1, g2]) {
      cpu.backward(g);
      gpu.backward(ctx.upload(g, 'gradW'));
    }
    const gradWant = cpu.parameters()[0]!.grad;
    const gradGot = await ctx.read(gpu.parameters()[0]!.grad);
    expect(differing(gradGot, gradWant)).toBe(0);
    expect(gradWant.some((v) => v !== 0)).toBe(true);
  });

  it('what has no WebGPU version is refused, naming --device cpu: the signmean query, the soft query', async () => {
    registerSketchProviders();
    const ctx = await trainContext();
    const cpus = [
      new SketchStateProvider({ name: 'w', rows, cols, weight: w, codecOptions: { bpw: 2, query: 'signmean' } }),
      new SketchStateProvider({ name: 'w', rows, cols, weight: w, codecOptions: { bpw: 2 }, softQuery: { tau0: 1, annealSteps: 8 } }),
    ];
    for (const cpu of cpus) {
      expect(() => new GpuStatePickProvider(ctx, cpu), cpu.options.query ?? 'soft').toThrow(expect.objectContaining({ code: ErrorCodes.UNSUPPORTED, hint: expect.stringContaining('--device cpu') }));
    }
  });

  it('stories260K, 3 steps of sketch-states (every linear) and of hashednets-states vs the CPU Trainer', async () => {
    registerSketchProviders();
    const ctx: GpuTrainContext = await trainContext();
    const { weights: teacher } = loadModel(MODEL);
    const V = teacher.config.vocabSize;
    const calib = Int32Array.from({ length: 600 }, (_, i) => (i % 89 === 0 ? 1 : ((i * 137 + (i >> 2)) % (V - 2)) + 2));
    const recipe = { batch: 1, seqLen: 16, steps: 3, lr: 3e-3 };
    for (const kind of ['sketch-states', 'hashednets-states']) {
      const seed = 33;
      const plan = () => ({ kind, options: { codecOptions: { bpw: 1 } } });
      const cpu = new Trainer({ ...recipe, teacher, calibTokens: calib, seed, providers: makeProviders(teacher, plan, { seed }) });
      const gpu = await GpuKdTrainer.create(ctx, { ...recipe, teacher, providers: makeProviders(teacher, plan, { seed }) });
      const rel: number[] = [];
      await stepInLockstep(cpu, gpu, calib, recipe, seed, (_s, got, want) => {
        rel.push(Math.abs(got.loss - want.loss) / want.loss);
        expect(Math.abs(got.gradNorm - want.gradNorm) / want.gradNorm).toBeLessThan(1e-4);
      });
      // The float states, in units of the peak learning rate: as for dense weights (webgpu-graph), AdamW's
      // m̂/√v̂ turns rounding-level gradient differences of near-zero gradients into visible updates, rarely.
      const gt = await gpu.checkpointTensors();
      let far = 0;
      let worst = 0;
      let count = 0;
      for (const p of cpu.params) {
        const a = gt.get(`param/${p.name}`)!;
        for (let i = 0; i < a.length; i++) {
          const d = Math.abs(a[i]! - p.data[i]!) / recipe.lr;
          worst = Math.max(worst, d);
          if (d > 0.01) far++;
          count++;
        }
      }
      // The stored f16 states: float states ~1e-7 apart straddle a code boundary now and then, so the codes
      // may differ (many codes apart near 0, where f16 steps are tiny); their values differ by more than the
      // float states plus one f16 step (≤ 0.01·lr for |state| < 0.1) only where the floats are far apart.
      let codes = 0;
      let differ = 0;
      let more = 0;
      const gp = await gpu.codecParams();
      for (const [name, p] of cpu.codecParams()) {
        if (p.codecId === 'float') continue;
        const a = (gp.get(name)!.params as { states: Uint16Array }).states;
        const b = (p.params as { states: Uint16Array }).states;
        codes += b.length;
        for (let i = 0; i < b.length; i++) {
          if (a[i] === b[i]) continue;
          differ++;
          if (Math.abs(f16BitsToF32(a[i]!) - f16BitsToF32(b[i]!)) > 0.02 * recipe.lr) more++;
        }
      }
      console.log(
        `[webgpu] ${kind} 3 × 1 × 16: loss relative difference per step ${rel.map((d) => d.toExponential(1)).join(', ')}; ` +
          `${far} of ${count} float states > 0.01·lr apart (worst ${worst.toFixed(3)}·lr); stored f16 states: ${differ} of ${codes} differ, ${more} by > 0.02·lr`,
      );
      for (const d of rel) expect(d).toBeLessThan(1e-5);
      expect(count).toBeGreaterThan(0);
      expect(far / count).toBeLessThan(1e-3);
      expect(worst).toBeLessThan(1);
      expect(more).toBeLessThanOrEqual(far);
    }
  }, 120_000);
});
