import { describe, expect, it } from 'vitest';
import { rmsNormBackward as cpuRmsBwd, rmsNormForward as cpuRmsFwd, rope as cpuRope, ropeTables, swigluBackward as cpuSwiBwd, swigluForward as cpuSwiFwd } from '../src/ops.js';
import { rmsNormBackward, rmsNormForward, rope, swigluBackward, swigluForward, uploadRopeTables } from '../src/webgpu/index.js';
import { dot64, fd, LANES, plus, randArray, readAll, relErr, trainContext } from './webgpu-helpers.js';

/**
 * Element-wise and row ops on WebGPU against the CPU trainer's (ops.ts) — forward values, backward values —
 * and every backward against central finite differences of the GPU forward itself: for an objective
 * L = Σ c ⊙ y (fixed random c), the directional derivative (L(x + h·d) − L(x − h·d)) / 2h along a random d
 * (with a Richardson step) must equal ⟨∂L/∂x, d⟩ from the GPU backward. In f32 that is a 1e-4-level check (rounding of L / h), which
 * catches any wrong term; the CPU comparison pins the values to float32 rounding.
 * Sizes are odd and cross the 64-lane workgroups (dim 67, 131 elements).
 */


describe.each(LANES)('WebGPU RMSNorm (forward + fused backward) — reductions in %i lane(s)', (lanes) => {
  const n = 7;
  const dim = 67;
  const eps = 1e-5;
  const x = randArray(n * dim, 11, 2);
  const w = randArray(dim, 12, 0.5).map((v) => 1 + v);
  const dy = randArray(n * dim, 13);
  const dx0 = randArray(n * dim, 14, 0.1);
  const dw0 = randArray(dim, 15, 0.1);

  it('forward and backward = the CPU rmsNormForward/rmsNormBackward (dx and dw accumulate)', async () => {
    const ctx = await trainContext(lanes);
    const X = ctx.upload(x, 'x');
    const W = ctx.upload(w, 'w');
    const Y = ctx.tensor(n * dim, 'y');
    const R = ctx.tensor(n, 'r');
    const DY = ctx.upload(dy, 'dy');
    const DX = ctx.upload(dx0, 'dx');
    const DW = ctx.upload(dw0, 'dw');
    rmsNormForward(ctx, X, W, Y, R, n, dim, eps);
    rmsNormBackward(ctx, DY, X, W, R, DX, DW, n, dim);
    const [y, r, dx, dw] = await readAll(ctx, Y, R, DX, DW);
    const wy = new Float32Array(n * dim);
    const wr = new Float32Array(n);
    cpuRmsFwd(x, w, wy, wr, n, dim, eps);
    const wdx = dx0.slice();
    const wdw = dw0.slice();
    cpuRmsBwd(dy, x, w, wr, wdx, wdw, n, dim);
    const errs = { y: relErr(y!, wy), r: relErr(r!, wr), dx: relErr(dx!, wdx), dw: relErr(dw!, wdw) };
    console.log(`[webgpu, ${lanes} lane(s)] rmsnorm vs CPU: ${JSON.stringify(errs)}`);
    expect(errs.y).toBeLessThan(2e-6);
    expect(errs.r).toBeLessThan(2e-6);
    expect(errs.dx).toBeLessThan(5e-6);
    expect(errs.dw).toBeLessThan(5e-6);
    for (const t of [X, W, Y, R, DY, DX, DW]) ctx.free(t);
  });

  it('backward = finite differences of the GPU forward (directional, x and w)', async () => {
    const ctx = await trainContext(lanes);
    const c = dy; // objective weights
    const Y = ctx.tensor(n * dim, 'y');
    const R = ctx.tensor(n, 'r');
    const C = ctx.upload(c, 'c');
    const X = ctx.upload(x, 'x');
    const W = ctx.upload(w, 'w');
    const DX = ctx.tensor(n * dim, 'dx');
    const DW = ctx.tensor(dim, 'dw');
    rmsNormForward(ctx, X, W, Y, R, n, dim, eps);
    rmsNormBackward(ctx, C, X, W, R, DX, DW, n, dim);
    const [gx, gw] = await readAll(ctx, DX, DW);
    const lossAt = async (xv: Float32Array, wv: Float32Array) => {
      ctx.write(X, xv);
      ctx.write(W, wv);
      rmsNormForward(ctx, X, W, Y, R, n, dim, eps);
      return dot64(await ctx.read(Y), c);
    };
    const h = 1e-2;
    const dxDir = randArray(n * dim, 21);
    const dwDir = randArray(dim, 22);
    const numX = await fd((e) => lossAt(plus(x, dxDir, e), w), h);
    const numW = await fd((e) => lossAt(x, plus(w, dwDir, e)), h);
    const anX = dot64(gx!, dxDir);
    const anW = dot64(gw!, dwDir);
    const ex = Math.abs(numX - anX) / Math.abs(anX);
    const ew = Math.abs(numW - anW) / Math.abs(anW);
    console.log(`[webgpu, ${lanes} lane(s)] rmsnorm backward vs finite differences: x ${ex.toExponential(2)}, w ${ew.toExponential(2)}`);
    expect(ex).toBeLessThan(2e-3);
    expect(ew).toBeLessThan(2e-3);
    for (const t of [X, W, Y, R, C, DX, DW]) ctx.free(t);
  });
});

describe('WebGPU RoPE (both layouts, forward and inverse)', () => {
  const seqLen = 5;
  const n = 2 * seqLen; // two sequences: positions restart at 0
  const hs = 6;
  const width = 3 * hs;
  for (const pairs of [true, false]) {
    it(`${pairs ? 'pairs' : 'halves'}: forward = the CPU rope; backward (inverse rotation) is its exact adjoint`, async () => {
      const ctx = await trainContext();
      const tables = uploadRopeTables(ctx, seqLen, hs, 10000);
      const [cos, sin] = ropeTables(seqLen, hs, 10000);
      const x = randArray(n * width, 31);
      const y = randArray(n * width, 32);
      const X = ctx.upload(x, 'x');
      rope(ctx, X, tables, n, width, seqLen, hs, pairs, false);
      const rx = await ctx.read(X);
      const want = x.slice();
      cpuRope(want, n, width, seqLen, hs, cos, sin, pairs, false);
      const err = relErr(rx, want);
      // backward: ⟨R x, y⟩ = ⟨x, Rᵀ y⟩ (a linear op's gradient is its adjoint; finite differences are exact here)
      const Yt = ctx.upload(y, 'y');
      rope(ctx, Yt, tables, n, width, seqLen, hs, pairs, true);
      const rty = await ctx.read(Yt);
      const wantT = y.slice();
      cpuRope(wantT, n, width, seqLen, hs, cos, sin, pairs, true);
      const adj = Math.abs(dot64(rx, y) - dot64(x, rty)) / Math.abs(dot64(rx, y));
      // and the inverse undoes the forward
      rope(ctx, X, tables, n, width, seqLen, hs, pairs, true);
      const back = await ctx.read(X);
      console.log(`[webgpu] rope ${pairs ? 'pairs' : 'halves'}: forward ${err.toExponential(2)}, inverse ${relErr(rty, wantT).toExponential(2)}, adjoint ${adj.toExponential(2)}, round trip ${relErr(back, x).toExponential(2)}`);
      expect(err).toBeLessThan(1e-6);
      expect(relErr(rty, wantT)).toBeLessThan(1e-6);
      expect(adj).toBeLessThan(1e-5);
      expect(relErr(back, x)).toBeLessThan(1e-6);
      // the layouts differ: a pairs rotation is not a halves rotation
      expect(relErr(rx, x)).toBeGreaterThan(1e-3);
      for (const t of [X, Yt, tables.cos, tables.sin]) ctx.free(t);
    });
  }
});

describe('WebGPU SwiGLU (forward + backward)', () => {
  const count = 131;
  const g = randArray(count, 41, 4);
  const u = randArray(count, 42, 2);
  const dh = randArray(count, 43);

  it('forward (h, σ) and backward (dg, du) = the CPU swigluForward/swigluBackward', async () => {
    const ctx = await trainContext();
    const G = ctx.upload(g, 'g');
    const Uu = ctx.upload(u, 'u');
    const H = ctx.tensor(count, 'h');
    const S = ctx.tensor(count, 'sig');
    const DH = ctx.upload(dh, 'dh');
    const DG = ctx.tensor(count, 'dg');
    const DU = ctx.tensor(count, 'du');
    swigluForward(ctx, G, Uu, H, S, count);
    swigluBackward(ctx, DH, G, Uu, S, DG, DU, count);
    const [h, s, dg, du] = await readAll(ctx, H, S, DG, DU);
    const wh = new Float32Array(count);
    const ws = new Float32Array(count);
    cpuSwiFwd(g, u, wh, count, ws);
    const wdg = new Float32Array(count);
    const wdu = new Float32Array(count);
    cpuSwiBwd(dh, g, u, wdg, wdu, count, ws);
    const errs = { h: relErr(h!, wh), sig: relErr(s!, ws), dg: relErr(dg!, wdg), du: relErr(du!, wdu) };
    console.log(`[webgpu] swiglu vs CPU: ${JSON.stringify(errs)}`);
    for (const e of Object.values(errs)) expect(e).toBeLessThan(2e-6);

    // finite differences of the GPU forward along random directions of g and u
    const lossAt = async (gv: Float32Array, uv: Float32Array) => {
      ctx.write(G, gv);
      ctx.write(Uu, uv);
      swigluForward(ctx, G, Uu, H, S, count);
      return dot64(await ctx.read(H), dh);
    };
    const h0 = 1e-2;
    const dgDir = randArray(count, 44);
    const duDir = randArray(count, 45);
    const numG = await fd((e) => lossAt(plus(g, dgDir, e), u), h0);
    const numU = await fd((e) => lossAt(g, plus(u, duDir, e)), h0);
    const eg = Math.abs(numG - dot64(dg!, dgDir)) / Math.abs(dot64(dg!, dgDir));
    const eu = Math.abs(numU - dot64(du!, duDir)) / Math.abs(dot64(du!, duDir));
    console.log(`[webgpu] swiglu backward vs finite differences: g ${eg.toExponential(2)}, u ${eu.toExponential(2)}`);
    expect(eg).toBeLessThan(2e-3);
    expect(eu).toBeLessThan(2e-3);
    for (const t of [G, Uu, H, S, DH, DG, DU]) ctx.free(t);
  });
});
