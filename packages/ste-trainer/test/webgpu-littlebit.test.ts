import { describe, expect, it } from 'vitest';
import { LittleBitProvider } from '../src/index.js';
import { GpuLittleBitProvider } from '../src/webgpu/index.js';
import { dot64, fd, LANES, plus, randArray, relErr, trainContext } from './webgpu-helpers.js';

/**
 * The LittleBit provider on WebGPU (SmoothSign latents U, V and scales h, g, ℓ; one and two paths) against the
 * CPU LittleBitProvider from the same initialisation: Ŵ, every parameter's gradient for a random ∂L/∂Ŵ, and
 * the packed codec parameters after the GPU parameters are read back. The scales' gradients are true
 * gradients (Ŵ is linear in each of h, g, ℓ), so they are also checked against finite differences of the GPU Ŵ;
 * U's and V's are the SmoothSign surrogate, checked against the CPU provider only. 37 × 53, rank 5.
 */
describe.each(LANES)('WebGPU LittleBit provider — reductions in %i lane(s)', (lanes) => {
  for (const residual of [false, true]) {
    it(`${residual ? 'two paths' : 'one path'}: Ŵ, gradients and packed parameters = the CPU provider; scale gradients = finite differences`, async () => {
      const ctx = await trainContext(lanes);
      const rows = 37;
      const cols = 53;
      const weight = randArray(rows * cols, 200, 0.1);
      // a few latent entries near 0, where SmoothSign′ is large (the rest get ≈ 0 gradient)
      const opts = { name: 'w', rows, cols, weight, codecOptions: { rank: 5, residual } };
      const cpu = new LittleBitProvider(opts);
      const gpu = new GpuLittleBitProvider(ctx, new LittleBitProvider(opts));
      const G = randArray(rows * cols, 201);
      const Gt = ctx.upload(G, 'G');
      const w = await ctx.read(gpu.weight());
      const wantW = cpu.weight().slice();
      gpu.backward(Gt);
      cpu.backward(G);
      const errW = relErr(w, wantW);
      const errs: Record<string, number> = {};
      const cps = cpu.parameters();
      const gps = gpu.parameters();
      expect(gps.map((p) => p.name)).toEqual(cps.map((p) => p.name));
      for (let i = 0; i < cps.length; i++) errs[cps[i]!.name] = relErr(await ctx.read(gps[i]!.grad), cps[i]!.grad);
      console.log(`[webgpu, ${lanes} lane(s)] littlebit ${residual ? '2 paths' : '1 path'}: Ŵ ${errW.toExponential(2)}; gradients ${JSON.stringify(Object.fromEntries(Object.entries(errs).map(([k, v]) => [k, Number(v.toExponential(2))])))}`);
      expect(errW).toBeLessThan(1e-6);
      for (const [name, e] of Object.entries(errs)) expect(e, name).toBeLessThan(1e-5);
      // U's gradient is not all zero (the test would pass vacuously otherwise)
      expect(Math.max(...(await ctx.read(gps[0]!.grad)).map(Math.abs))).toBeGreaterThan(0);

      // finite differences of L = Σ G ⊙ Ŵ along random directions of h, g, ℓ (path 0)
      for (const which of [2, 3, 4]) {
        const p = gps[which]!;
        const x0 = await ctx.read(p.data);
        const dir = randArray(x0.length, 300 + which);
        const lossAt = async (e: number) => {
          ctx.write(p.data, plus(x0, dir, e));
          return dot64(await ctx.read(gpu.weight()), G);
        };
        const num = await fd(lossAt, 1e-2 * Math.max(...x0.map(Math.abs)));
        ctx.write(p.data, x0);
        const an = dot64(await ctx.read(p.grad), dir);
        const err = Math.abs(num - an) / Math.abs(an);
        console.log(`[webgpu, ${lanes} lane(s)] littlebit ${p.name} gradient vs finite differences: ${err.toExponential(2)}`);
        expect(err).toBeLessThan(1e-3);
      }

      // the bundle's parameters: packed signs and f16 scales identical to the CPU provider's
      const packed = await gpu.toCodecParams();
      const want = cpu.toCodecParams();
      expect(packed.rank).toBe(want.rank);
      expect(packed.paths.length).toBe(residual ? 2 : 1);
      packed.paths.forEach((path, i) => {
        expect(path.uSigns).toEqual(want.paths[i]!.uSigns);
        expect(path.vSigns).toEqual(want.paths[i]!.vSigns);
        expect(path.h).toEqual(want.paths[i]!.h);
      });
      ctx.free(Gt);
    });
  }
});
