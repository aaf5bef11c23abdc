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
import { writeFileSync } from 'node:fs';
import { addErrors, addIfAllFeasible, dist, errorCells, f4, loadStories3MCalibrated, parseMeasureArgs, relErr } from './lib.mjs';

const { TensorNames, LINEAR_KINDS, linearShape } = await import(dist('model'));
const { littlebitCodec, naiveSignSvd, rankForBpw } = await import(dist('littlebit'));

const { values, bpws, layers } = parseMeasureArgs('1.0,0.55,0.3,0.1');
const { model, stats } = await loadStories3MCalibrated(Number(values['calib-tokens']));
console.error(`calibration: ${stats.tokens} tokens of calib.txt, window ${stats.window}`);

const methods = ['dual', 'dual+res', 'naive@r1', 'naive@bits', 'dual exact'];
// acc[bpw][kind][method] = {e2, n2, a2, an2, ranks:Set}
const acc = {};
const t0 = performance.now();
for (const bpw of bpws) {
  acc[bpw] = {};
  for (const kind of LINEAR_KINDS) {
    const [rows, cols] = linearShape(model.config, kind);
    const cell = (acc[bpw][kind] = errorCells(methods));
    for (const l of layers) {
      const name = TensorNames.linear(l, kind);
      const w = model.tensors.get(name).data;
      const s2 = stats.meanSquare.get(name);
      const add = (m, dense, rank) => {
        cell[m].rank = rank;
        addErrors(cell[m], w, dense, s2, rows, cols);
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

const fmt = (c, key) => f4(relErr(c, key));
const out = { calibration: { tokens: stats.tokens, window: stats.window, text: 'calib.txt' }, layers, results: {} };
for (const bpw of bpws) {
  console.log(`\n### ${bpw} bpw (target; ranks from the formulas)\n`);
  console.log(`| kind [out×in] | ${methods.map((m) => `${m} relF / relA (r)`).join(' | ')} |`);
  console.log(`| --- | ${methods.map(() => '---').join(' | ')} |`);
  // The total row sums only the kinds where EVERY method is feasible, so its columns compare like with like.
  const total = errorCells(methods);
  const common = [];
  for (const kind of LINEAR_KINDS) {
    const [rows, cols] = linearShape(model.config, kind);
    const cell = acc[bpw][kind];
    console.log(
      `| ${kind} [${rows}×${cols}] | ${methods.map((m) => (cell[m].skipped ? '— (infeasible)' : `${fmt(cell[m], 'F')} / ${fmt(cell[m], 'A')} (${cell[m].rank})`)).join(' | ')} |`,
    );
    if (addIfAllFeasible(total, cell, methods)) common.push(kind);
    out.results[`${bpw}:${kind}`] = Object.fromEntries(methods.map((m) => [m, { relF: +fmt(cell[m], 'F') || null, relA: +fmt(cell[m], 'A') || null, rank: cell[m].rank }]));
  }
  console.log(`| total over ${common.join(', ') || 'none'} | ${methods.map((m) => `${fmt(total[m], 'F')} / ${fmt(total[m], 'A')}`).join(' | ')} |`);
}
if (values.json) writeFileSync(values.json, JSON.stringify(out, null, 2));
