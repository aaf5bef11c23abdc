#!/usr/bin/env node
/**
 * LittleBit initialization quality on the real linears of stories3M (no training): Dual-SVID against the
 * naive sign-of-SVD initialization, and the residual path against a single path at equal bits.
 * A measurement, not a test. Build first:
 *
 *   pnpm build   # or: for p in core format model saliency littlebit; do (cd packages/$p && npx tsup); done
 *   node packages/littlebit/scripts/measure-init.mjs [--bpw 1.0,0.55,0.3,0.1] [--layers 0,1,2,3,4,5]
 *                                                   [--calib-tokens 4096] [--json FILE]
 *
 * Errors, aggregated per linear kind over the layers (Σ‖W − Ŵ‖² / Σ‖W‖², then the square root):
 * - relF: relative Frobenius error;
 * - relA: activation-weighted relative error ‖(W − Ŵ)·diag(s)‖_F / ‖W·diag(s)‖_F with s_j = sqrt(E[a_j²]) the
 *   RMS of input channel j measured by the float model on the first --calib-tokens tokens of calib.txt
 *   (real calibration statistics, @ultrasketch/saliency) — the expected output error when input channels
 *   are uncorrelated.
 * Methods at a target bpw b (ranks from the exact formulas, floored):
 * - dual:        Dual-SVID, one path, rank r1 = rankForBpw(b, residual = false);
 * - dual+res:    Dual-SVID with the residual path, rank r2 = rankForBpw(b, residual = true) per path;
 * - naive@r1:    α·sign(U√Σ)·sign(V√Σ)ᵀ at rank r1 (same sign bits as dual, one scalar instead of vectors);
 * - naive@bits:  the same at the rank the whole budget buys with one 16-bit scalar: ⌊(b·in·out − 16)/(in+out)⌋;
 * - dual exact:  dual with an exact SVD instead of the randomized one (is q = 2 enough?).
 * A cell is "—" when the budget cannot pay for rank 1 of that method on that shape.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const dist = (p) => join(ROOT, 'packages', p, 'dist', 'index.js');
const { readLlama2cCheckpoint, readLlama2cTokenizer } = await import(dist('format'));
const { modelFromLlama2c, LlamaForward, Tokenizer, TensorNames, LINEAR_KINDS, linearShape } = await import(dist('model'));
const { collectSaliency } = await import(dist('saliency'));
const { littlebitCodec, naiveSignSvd, rankForBpw } = await import(dist('littlebit'));

const { values } = parseArgs({
  options: {
    bpw: { type: 'string', default: '1.0,0.55,0.3,0.1' },
    layers: { type: 'string', default: '0,1,2,3,4,5' },
    'calib-tokens': { type: 'string', default: '4096' },
    json: { type: 'string' },
  },
});
const bpws = values.bpw.split(',').map(Number);
const layers = values.layers.split(',').map(Number);
const SHARED = join(ROOT, '../shared');
const ckpt = readLlama2cCheckpoint(readFileSync(join(SHARED, 'models/stories3M/stories3M-q80.bin')));
const model = modelFromLlama2c(ckpt);
const tok = Tokenizer.fromLlama2c(readLlama2cTokenizer(readFileSync(join(SHARED, 'models/stories3M/tok4096.bin')), model.config.vocabSize));
const docs = readFileSync(join(SHARED, 'data/tinystories/calib.txt'), 'utf8')
  .split('\n\n')
  .map((d) => d.replace(/^[ \n]+|[ \n]+$/g, ''))
  .filter((d) => d.length > 0);
const tokens = [];
for (const d of docs) {
  tokens.push(...tok.encode(d, { bos: true, eos: false }));
  if (tokens.length >= Number(values['calib-tokens'])) break;
}
const stats = collectSaliency({ forward: LlamaForward.fromWeights(model), tokens, maxTokens: Number(values['calib-tokens']) });
console.error(`calibration: ${stats.tokens} tokens of calib.txt, window ${stats.window}`);

const methods = ['dual', 'dual+res', 'naive@r1', 'naive@bits', 'dual exact'];
// acc[bpw][kind][method] = {e2, n2, a2, an2, ranks:Set}
const acc = {};
const t0 = performance.now();
for (const bpw of bpws) {
  acc[bpw] = {};
  for (const kind of LINEAR_KINDS) {
    const [rows, cols] = linearShape(model.config, kind);
    const cell = (acc[bpw][kind] = Object.fromEntries(methods.map((m) => [m, { e2: 0, n2: 0, a2: 0, an2: 0, rank: null, skipped: false }])));
    for (const l of layers) {
      const name = TensorNames.linear(l, kind);
      const w = model.tensors.get(name).data;
      const s2 = stats.meanSquare.get(name);
      const add = (m, dense, rank) => {
        const c = cell[m];
        c.rank = rank;
        for (let i = 0; i < rows; i++) {
          for (let j = 0; j < cols; j++) {
            const x = w[i * cols + j];
            const d = x - dense[i * cols + j];
            c.e2 += d * d;
            c.n2 += x * x;
            c.a2 += d * d * s2[j];
            c.an2 += x * x * s2[j];
          }
        }
      };
      const lb = (raw) => {
        try {
          const p = littlebitCodec.encode(w, rows, cols, littlebitCodec.resolveOptions(raw), { name, seed: 0 });
          return { dense: littlebitCodec.decode(p), rank: p.rank };
        } catch (err) {
          if (err.code === 'E_INFEASIBLE_BUDGET') return null;
          throw err;
        }
      };
      const r1 = lb({ bpw, residual: false });
      if (r1) add('dual', r1.dense, r1.rank);
      else cell.dual.skipped = true;
      const r2 = lb({ bpw, residual: true });
      if (r2) add('dual+res', r2.dense, r2.rank);
      else cell['dual+res'].skipped = true;
      const ex = lb({ bpw, residual: false, oversampling: 1024 });
      if (ex) add('dual exact', ex.dense, ex.rank);
      else cell['dual exact'].skipped = true;
      if (r1) add('naive@r1', naiveSignSvd({ rows, cols, data: w }, r1.rank).data, r1.rank);
      else cell['naive@r1'].skipped = true;
      const rn = Math.min(Math.min(rows, cols), Math.floor((bpw * rows * cols - 16) / (rows + cols)));
      if (rn >= 1) add('naive@bits', naiveSignSvd({ rows, cols, data: w }, rn).data, rn);
      else cell['naive@bits'].skipped = true;
    }
  }
  console.error(`bpw ${bpw} done (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
}

const fmt = (c, key) => (c.skipped || c.n2 === 0 ? '—' : Math.sqrt(key === 'F' ? c.e2 / c.n2 : c.a2 / c.an2).toFixed(4));
const out = { calibration: { tokens: stats.tokens, window: stats.window, text: 'calib.txt' }, layers, results: {} };
for (const bpw of bpws) {
  console.log(`\n### ${bpw} bpw (target; ranks from the formulas)\n`);
  console.log(`| kind [out×in] | ${methods.map((m) => `${m} relF / relA (r)`).join(' | ')} |`);
  console.log(`| --- | ${methods.map(() => '---').join(' | ')} |`);
  // The total row sums only the kinds where EVERY method is feasible, so its columns compare like with like.
  const total = Object.fromEntries(methods.map((m) => [m, { e2: 0, n2: 0, a2: 0, an2: 0, skipped: false }]));
  const common = [];
  for (const kind of LINEAR_KINDS) {
    const [rows, cols] = linearShape(model.config, kind);
    const cell = acc[bpw][kind];
    console.log(
      `| ${kind} [${rows}×${cols}] | ${methods.map((m) => (cell[m].skipped ? '— (infeasible)' : `${fmt(cell[m], 'F')} / ${fmt(cell[m], 'A')} (${cell[m].rank})`)).join(' | ')} |`,
    );
    if (methods.every((m) => !cell[m].skipped)) {
      common.push(kind);
      for (const m of methods) for (const k of ['e2', 'n2', 'a2', 'an2']) total[m][k] += cell[m][k];
    }
    out.results[`${bpw}:${kind}`] = Object.fromEntries(methods.map((m) => [m, { relF: +fmt(cell[m], 'F') || null, relA: +fmt(cell[m], 'A') || null, rank: cell[m].rank }]));
  }
  console.log(`| total over ${common.join(', ') || 'none'} | ${methods.map((m) => `${fmt(total[m], 'F')} / ${fmt(total[m], 'A')}`).join(' | ')} |`);
}
if (values.json) writeFileSync(values.json, JSON.stringify(out, null, 2));
