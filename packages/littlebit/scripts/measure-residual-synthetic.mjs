#!/usr/bin/env node
/**
 * SYNTHETIC supplement to measure-residual.mjs: at what matrix size does the residual path start to win at
 * equal bits? Square n×n matrices W = Q₁ diag(σ) Q₂ᵀ (Q from the QR of Gaussian matrices) with a power-law
 * spectrum σ_i = (i + 1)^−α; relative Frobenius error only (no activations here). Build core and littlebit,
 * then:
 *
 *   node packages/littlebit/scripts/measure-residual-synthetic.mjs [--n 128,256,512,768] [--alpha 0.5,1]
 *        [--bpw 0.55] [--ls-rounds 8] [--backfit-rounds 3] [--no-split]
 *
 * Methods as in measure-residual.mjs: 1:dual, 1:ls, 1:ls+s (one path); 2:dual, 2:bf+ls, 2:bf+ls+s (two paths,
 * equal ranks);
 * 2:split+ls (two paths, best uneven split of the whole budget, not storable by today's codec).
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const dist = (p) => join(ROOT, 'packages', p, 'dist', 'index.js');
const { Rng, qr, matmulNT } = await import(dist('core'));
const { littlebitCodec, dualSvidFactors, toPath, refinePaths, pathDense } = await import(dist('littlebit'));

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '128,256,512,768' },
    alpha: { type: 'string', default: '0.5,1' },
    bpw: { type: 'string', default: '0.55' },
    'ls-rounds': { type: 'string', default: '8' },
    'backfit-rounds': { type: 'string', default: '3' },
    'no-split': { type: 'boolean', default: false },
  },
});
const LS = Number(values['ls-rounds']);
const BF = Number(values['backfit-rounds']);

function synthetic(n, alpha, seed) {
  const rng = new Rng(seed);
  const q = () => qr({ rows: n, cols: n, data: rng.normalArray(n * n) }).q;
  const q1 = q();
  const q2 = q();
  const left = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) left[i * n + k] = q1.data[i * n + k] * (k + 1) ** -alpha;
  return Float32Array.from(matmulNT({ rows: n, cols: n, data: left }, q2).data);
}

const rel = (w, d) => {
  let e = 0;
  let m = 0;
  for (let i = 0; i < w.length; i++) {
    e += (w[i] - d[i]) ** 2;
    m += w[i] ** 2;
  }
  return Math.sqrt(e / m);
};

console.log('SYNTHETIC matrices (power-law spectrum), relative Frobenius error at equal bits\n');
console.log("| n | α | bpw | 1:dual (r) | 1:ls | 1:ls+s | 2:dual (r each) | 2:bf+ls | 2:bf+ls+s | 2:split+ls (ra+rb) | 2nd path's scales, bpw |");
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
const t0 = performance.now();
for (const n of values.n.split(',').map(Number)) {
  for (const alpha of values.alpha.split(',').map(Number)) {
    const w = synthetic(n, alpha, n);
    for (const bpw of values.bpw.split(',').map(Number)) {
      const enc = (raw) => {
        try {
          const p = littlebitCodec.encode(w, n, n, littlebitCodec.resolveOptions({ bpw, ...raw }), { name: 'synthetic', seed: 0 });
          if (littlebitCodec.bits(p).total > bpw * n * n) throw new Error('over budget');
          return { e: rel(w, littlebitCodec.decode(p)), r: p.rank };
        } catch (err) {
          if (err.code === 'E_INFEASIBLE_BUDGET') return null;
          throw err;
        }
      };
      const f = (x) => (x ? x.e.toFixed(4) : '—');
      const d1 = enc({ residual: false });
      const l1 = enc({ residual: false, lsRounds: LS });
      const s1 = enc({ residual: false, lsRounds: LS, refineSigns: true });
      const d2 = enc({});
      const b2 = enc({ refineRounds: BF, lsRounds: LS });
      const bs2 = enc({ refineRounds: BF, lsRounds: LS, refineSigns: true });
      // uneven split of the whole budget
      const R = Math.floor((bpw * n * n - 32 * 2 * n) / (2 * n + 16) + 1e-9);
      let split = null;
      const half = Math.floor(R / 2);
      const cands = new Set([half]);
      for (let rb = 1; rb < half; rb *= 2) cands.add(rb);
      for (const rb of values['no-split'] ? [] : cands) {
        const ra = R - rb;
        if (rb < 1 || ra > n) continue;
        const W = { rows: n, cols: n, data: w };
        const p1 = toPath(dualSvidFactors(W, ra, { seed: 0 }));
        const a1 = pathDense(p1, n, n, ra).data;
        const p2 = toPath(dualSvidFactors({ rows: n, cols: n, data: Float32Array.from(w, (x, i) => x - a1[i]) }, rb, { seed: 1 }));
        const r = refinePaths(W, [p1, p2], [ra, rb], { lsRounds: LS });
        let m = 0;
        for (const x of w) m += x * x;
        const e = Math.sqrt(r.after / m);
        if (!split || e < split.e) split = { e, ra, rb };
      }
      console.log(
        `| ${n} | ${alpha} | ${bpw} | ${f(d1)} (${d1?.r ?? '—'}) | ${f(l1)} | ${f(s1)} | ${f(d2)} (${d2?.r ?? '—'}) | ${f(b2)} | ${f(bs2)} | ` +
          `${split ? `${split.e.toFixed(4)} (${split.ra}+${split.rb})` : '—'} | ${((16 * 2 * n) / (n * n)).toFixed(3)} |`,
      );
      console.error(`n ${n} α ${alpha} ${bpw} bpw (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
  }
}
