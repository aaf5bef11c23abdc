import { describe, expect, it } from 'vitest';
import { type AttentionShape, attentionBackward as cpuBwd, attentionForward as cpuFwd } from '../src/ops.js';
import { attentionBackward, attentionForward } from '../src/webgpu/index.js';
import { dot64, fd, LANES, plus, randArray, readAll, relErr, trainContext } from './webgpu-helpers.js';

/**
 * Causal softmax attention with grouped KV heads on WebGPU (QKᵀ and PV as batched strided matmuls, the causal
 * soft-max rows, and the backward's four products with the KV-head sums) against the CPU attentionForward /
 * attentionBackward, and the GPU backward against finite differences of the GPU forward (L = Σ c ⊙ O along
 * random directions of q, k and v). Shapes: G = 2 and G = 1 query heads per KV head, two sequences, and
 * one L = 70 sequence (soft-max rows longer than the 64-lane workgroup, products over two 64-blocks).
 */
const shapes: AttentionShape[] = [
  { batch: 2, seqLen: 7, nHeads: 4, nKvHeads: 2, headSize: 6 },
  { batch: 2, seqLen: 5, nHeads: 3, nKvHeads: 3, headSize: 4 },
  { batch: 1, seqLen: 70, nHeads: 2, nKvHeads: 1, headSize: 8 },
];

describe.each(LANES)('WebGPU causal GQA attention (forward + backward) — reductions in %i lane(s)', (lanes) => {
  for (const s of shapes) {
    const { batch, seqLen: L, nHeads, nKvHeads, headSize: hs } = s;
    const n = batch * L;
    const dim = nHeads * hs;
    const kv = nKvHeads * hs;
    const tag = `B ${batch} L ${L} heads ${nHeads}/${nKvHeads} hs ${hs}`;
    it(`${tag}: = the CPU attention forward/backward, and backward = finite differences`, async () => {
      const ctx = await trainContext(lanes);
      const q = randArray(n * dim, 51 + L, 1.5);
      const k = randArray(n * kv, 52 + L, 1.5);
      const v = randArray(n * kv, 53 + L);
      const c = randArray(n * dim, 54 + L);
      const Q = ctx.upload(q, 'q');
      const K = ctx.upload(k, 'k');
      const V = ctx.upload(v, 'v');
      const P = ctx.tensor(batch * nHeads * L * L, 'probs');
      const O = ctx.tensor(n * dim, 'o');
      const DO = ctx.upload(c, 'dO');
      const DQ = ctx.tensor(n * dim, 'dq');
      const DK = ctx.tensor(n * kv, 'dk');
      const DV = ctx.tensor(n * kv, 'dv');
      attentionForward(ctx, Q, K, V, P, O, s);
      attentionBackward(ctx, DO, Q, K, V, P, DQ, DK, DV, s);
      const [o, p, dq, dk, dv] = await readAll(ctx, O, P, DQ, DK, DV);
      const wp = new Float32Array(batch * nHeads * L * L);
      const wo = new Float32Array(n * dim);
      cpuFwd(q, k, v, wp, wo, s);
      const wdq = new Float32Array(n * dim);
      const wdk = new Float32Array(n * kv);
      const wdv = new Float32Array(n * kv);
      cpuBwd(c, q, k, v, wp, wdq, wdk, wdv, s);
      const errs = { o: relErr(o!, wo), probs: relErr(p!, wp), dq: relErr(dq!, wdq), dk: relErr(dk!, wdk), dv: relErr(dv!, wdv) };
      console.log(`[webgpu, ${lanes} lane(s)] attention ${tag} vs CPU: ${JSON.stringify(errs)}`);
      for (const e of Object.values(errs)) expect(e).toBeLessThan(5e-6);
      // the causal mask: no probability above the diagonal
      let above = 0;
      for (let r = 0; r < batch * nHeads * L; r++) for (let j = (r % L) + 1; j < L; j++) above = Math.max(above, Math.abs(p![r * L + j]!));
      expect(above).toBe(0);

      const lossAt = async (qv: Float32Array, kvv: Float32Array, vv: Float32Array) => {
        ctx.write(Q, qv);
        ctx.write(K, kvv);
        ctx.write(V, vv);
        attentionForward(ctx, Q, K, V, P, O, s);
        return dot64(await ctx.read(O), c);
      };
      const h = 1e-2;
      const dirQ = randArray(n * dim, 61);
      const dirK = randArray(n * kv, 62);
      const dirV = randArray(n * kv, 63);
      const fdErr = async (num: number, an: number) => Math.abs(num - an) / Math.abs(an);
      const eq = await fdErr(await fd((e) => lossAt(plus(q, dirQ, e), k, v), h), dot64(dq!, dirQ));
      const ek = await fdErr(await fd((e) => lossAt(q, plus(k, dirK, e), v), h), dot64(dk!, dirK));
      const ev = await fdErr(await fd((e) => lossAt(q, k, plus(v, dirV, e)), h), dot64(dv!, dirV));
      console.log(`[webgpu, ${lanes} lane(s)] attention ${tag} backward vs finite differences: q ${eq.toExponential(2)}, k ${ek.toExponential(2)}, v ${ev.toExponential(2)}`);
      expect(eq).toBeLessThan(2e-3);
      expect(ek).toBeLessThan(2e-3);
      expect(ev).toBeLessThan(2e-3);
      for (const t of [Q, K, V, P, O, DO, DQ, DK, DV]) ctx.free(t);
    });
  }
});
