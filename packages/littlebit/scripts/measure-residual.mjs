#!/usr/bin/env node
/**
 * Does the residual path lower error at EQUAL stored bits on stories3M, and does a better initialization of
 * the paths change the answer? A measurement, not a test (docs/littlebit.md, "The residual path at equal bits, and a refined initialization").
 * Build first (core, format, model, saliency, littlebit), then:
 *
 *   node packages/littlebit/scripts/measure-residual.mjs [--bpw 1.0,0.75,0.55,0.3] [--layers 0,1,2,3,4,5]
 *        [--ls-rounds 8] [--backfit-rounds 3] [--calib-tokens 4096] [--json FILE]
 *
 * Errors per linear kind over the layers (√(Σ‖(W − Ŵ)‖² / Σ‖W‖²)): relF (Frobenius) and relA (columns weighted
 * by E[a_j²] from calib.txt, as measure-init.mjs). Every method at a target b stores at most b·in·out bits
 * (checked: bits() of the encoded params; the split methods use the same formula):
 *
 * one path, rank r1 = rankForBpw(b, residual = false):
 * - 1:dual        Dual-SVID (the codec's default init without residual);
 * - 1:ls          + lsRounds of closed-form least-squares scales (Frobenius objective);
 * - 1:lsA         + lsRounds, activation-weighted objective (needs calibration statistics);
 * - 1:ls+s        + lsRounds with refineSigns (alternating sign flips and least-squares scales);
 * - 1:ls+sA       the same, activation-weighted objective;
 * two paths, rank r2 = rankForBpw(b, residual = true) each (the codec's layout):
 * - 2:dual        Dual-SVID then Dual-SVID of the residual (the codec's default);
 * - 2:bf          + refineRounds of backfitting;
 * - 2:ls          + lsRounds;
 * - 2:bf+ls       both;
 * - 2:bf+lsA      both, activation-weighted objective;
 * - 2:ls+s        lsRounds with refineSigns;
 * - 2:bf+ls+s     refineRounds, then lsRounds with refineSigns;
 * - 2:bf+ls+sA    the same, activation-weighted objective;
 * two paths, UNEVEN ranks (ra, rb) with ra + rb = R = ⌊(b·in·out − 32(in+out)) / (in+out+16)⌋ (the whole budget;
 * R can be 2·r2 + 1) — not storable by today's codec (one rank for both paths), measured to see if it is worth it:
 * - 2:split+ls    the best split over rb ∈ {1, 2, 4, …, ⌊R/2⌋} by relF, with lsRounds (Frobenius);
 * - 2:split+lsA   the same split, lsRounds with the activation-weighted objective;
 * - 2:split+ls+s, 2:split+ls+sA   the same split, with refineSigns (Frobenius / activation-weighted).
 * The "best" rows compare the best one-path column with the best two-path column per measure.
 */
import { writeFileSync } from 'node:fs';
import { addErrors, addIfAllFeasible, dist, errorCells, f4, loadStories3MCalibrated, parseMeasureArgs, relErr } from './lib.mjs';

const { TensorNames, LINEAR_KINDS, linearShape } = await import(dist('model'));
const { littlebitCodec, rankForBpw, dualSvidFactors, toPath, pathDense, refinePaths, littlebitFormulaBits } = await import(dist('littlebit'));

const { values, bpws, layers } = parseMeasureArgs('1.0,0.75,0.55,0.3', {
  'ls-rounds': { type: 'string', default: '8' },
  'backfit-rounds': { type: 'string', default: '3' },
});
const LS = Number(values['ls-rounds']);
const BF = Number(values['backfit-rounds']);
const { model, stats } = await loadStories3MCalibrated(Number(values['calib-tokens']));
console.error(`calibration: ${stats.tokens} tokens of calib.txt, window ${stats.window}; lsRounds ${LS}, refineRounds ${BF}`);

const ONE = ['1:dual', '1:ls', '1:lsA', '1:ls+s', '1:ls+sA'];
const TWO = ['2:dual', '2:bf', '2:ls', '2:bf+ls', '2:bf+lsA', '2:ls+s', '2:bf+ls+s', '2:bf+ls+sA', '2:split+ls', '2:split+lsA', '2:split+ls+s', '2:split+ls+sA'];
const methods = [...ONE, ...TWO];
const acc = {};
const t0 = performance.now();

for (const bpw of bpws) {
  acc[bpw] = {};
  for (const kind of LINEAR_KINDS) {
    const [rows, cols] = linearShape(model.config, kind);
    const budget = bpw * rows * cols;
    const cell = (acc[bpw][kind] = errorCells(methods));
    for (const l of layers) {
      const name = TensorNames.linear(l, kind);
      const w = model.tensors.get(name).data;
      const s2 = stats.meanSquare.get(name);
      const add = (m, dense, rank) => {
        const c = cell[m];
        c.rank = rank;
        const e = addErrors({ e2: 0, n2: 0, a2: 0, an2: 0 }, w, dense, s2, rows, cols);
        for (const k of ['e2', 'n2', 'a2', 'an2']) c[k] += e[k];
      };
      const lb = (m, raw) => {
        try {
          const p = littlebitCodec.encode(w, rows, cols, littlebitCodec.resolveOptions({ bpw, ...raw }), { name, seed: 0, saliency: s2 });
          const bits = littlebitCodec.bits(p).total;
          if (bits > budget) throw new Error(`${m} ${name}: ${bits} bits > budget ${budget}`);
          add(m, littlebitCodec.decode(p), p.rank);
        } catch (err) {
          if (err.code !== 'E_INFEASIBLE_BUDGET') throw err;
          cell[m].skipped = true;
        }
      };
      lb('1:dual', { residual: false });
      lb('1:ls', { residual: false, lsRounds: LS });
      lb('1:lsA', { residual: false, lsRounds: LS, refineObjective: 'activation' });
      lb('1:ls+s', { residual: false, lsRounds: LS, refineSigns: true });
      lb('1:ls+sA', { residual: false, lsRounds: LS, refineSigns: true, refineObjective: 'activation' });
      lb('2:dual', { residual: true });
      lb('2:bf', { residual: true, refineRounds: BF });
      lb('2:ls', { residual: true, lsRounds: LS });
      lb('2:bf+ls', { residual: true, refineRounds: BF, lsRounds: LS });
      lb('2:bf+lsA', { residual: true, refineRounds: BF, lsRounds: LS, refineObjective: 'activation' });
      lb('2:ls+s', { residual: true, lsRounds: LS, refineSigns: true });
      lb('2:bf+ls+s', { residual: true, refineRounds: BF, lsRounds: LS, refineSigns: true });
      lb('2:bf+ls+sA', { residual: true, refineRounds: BF, lsRounds: LS, refineSigns: true, refineObjective: 'activation' });

      // Uneven split of the whole two-path budget.
      const R = Math.min(2 * Math.min(rows, cols), Math.floor((budget - 32 * (rows + cols)) / (rows + cols + 16) + 1e-9));
      if (R < 2) {
        for (const m of TWO.filter((m) => m.startsWith('2:split'))) cell[m].skipped = true;
        continue;
      }
      const W = { rows, cols, data: w };
      const twoPaths = (ra, rb) => {
        const p1 = toPath(dualSvidFactors(W, ra, { seed: 0 }));
        const d1 = pathDense(p1, rows, cols, ra).data;
        const res = new Float32Array(rows * cols);
        for (let i = 0; i < res.length; i++) res[i] = w[i] - d1[i];
        return [p1, toPath(dualSvidFactors({ rows, cols, data: res }, rb, { seed: 1 }))];
      };
      const denseOf = (ps, ranks) => {
        const out = new Float64Array(rows * cols);
        ps.forEach((p, i) => {
          const d = pathDense(p, rows, cols, ranks[i]).data;
          for (let k = 0; k < out.length; k++) out[k] += d[k];
        });
        return out;
      };
      let best = null;
      const half = Math.floor(R / 2);
      const candidates = new Set([half]);
      for (let rb = 1; rb < half; rb *= 2) candidates.add(rb);
      for (const rb of [...candidates].sort((a, b) => a - b)) {
        const ra = R - rb;
        if (ra > Math.min(rows, cols)) continue;
        const bits = littlebitFormulaBits(rows, cols, ra, false) + littlebitFormulaBits(rows, cols, rb, false);
        if (bits > budget) throw new Error(`split ${ra}+${rb} exceeds the budget`);
        const init = twoPaths(ra, rb);
        const ref = refinePaths(W, init, [ra, rb], { lsRounds: LS });
        if (!best || ref.after < best.err) best = { err: ref.after, ra, rb, init };
      }
      if (!best) {
        for (const m of TWO.filter((m) => m.startsWith('2:split'))) cell[m].skipped = true;
        continue;
      }
      const ranks = [best.ra, best.rb];
      add('2:split+ls', denseOf(refinePaths(W, best.init, ranks, { lsRounds: LS }).paths, ranks), `${best.ra}+${best.rb}`);
      add('2:split+lsA', denseOf(refinePaths(W, best.init, ranks, { lsRounds: LS, colWeight: s2 }).paths, ranks), `${best.ra}+${best.rb}`);
      add('2:split+ls+s', denseOf(refinePaths(W, best.init, ranks, { lsRounds: LS, refineSigns: true }).paths, ranks), `${best.ra}+${best.rb}`);
      add('2:split+ls+sA', denseOf(refinePaths(W, best.init, ranks, { lsRounds: LS, refineSigns: true, colWeight: s2 }).paths, ranks), `${best.ra}+${best.rb}`);
    }
    console.error(`bpw ${bpw} ${kind} done (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  }
}

const out = { calibration: { tokens: stats.tokens, window: stats.window }, layers, lsRounds: LS, refineRounds: BF, results: {} };
for (const bpw of bpws) {
  console.log(`\n### ${bpw} bpw — relF / relA (ranks)\n`);
  console.log(`| kind | ${methods.join(' | ')} | best 1-path F / A | best 2-path F / A |`);
  console.log(`| --- | ${methods.map(() => '---').join(' | ')} | --- | --- |`);
  const total = errorCells(methods);
  const common = [];
  const bestOf = (cells, ms, key) => {
    const v = ms.map((m) => relErr(cells[m], key)).filter((x) => x !== null);
    return v.length ? Math.min(...v) : null;
  };
  for (const kind of LINEAR_KINDS) {
    const cell = acc[bpw][kind];
    const b1 = [bestOf(cell, ONE, 'F'), bestOf(cell, ONE, 'A')];
    const b2 = [bestOf(cell, TWO, 'F'), bestOf(cell, TWO, 'A')];
    const mark = (a, b) => (a === null || b === null ? '' : b < a ? ' ✓' : ' ✗');
    console.log(
      `| ${kind} | ${methods.map((m) => (cell[m].skipped ? '—' : `${f4(relErr(cell[m], 'F'))} / ${f4(relErr(cell[m], 'A'))} (${cell[m].rank})`)).join(' | ')} | ` +
        `${f4(b1[0])} / ${f4(b1[1])} | ${f4(b2[0])}${mark(b1[0], b2[0])} / ${f4(b2[1])}${mark(b1[1], b2[1])} |`,
    );
    if (addIfAllFeasible(total, cell, methods)) common.push(kind);
    out.results[`${bpw}:${kind}`] = Object.fromEntries(methods.map((m) => [m, { relF: relErr(cell[m], 'F'), relA: relErr(cell[m], 'A'), rank: cell[m].rank }]));
  }
  const tb1 = [bestOf(total, ONE, 'F'), bestOf(total, ONE, 'A')];
  const tb2 = [bestOf(total, TWO, 'F'), bestOf(total, TWO, 'A')];
  console.log(
    `| total (${common.join(', ') || 'none'}) | ${methods.map((m) => `${f4(relErr(total[m], 'F'))} / ${f4(relErr(total[m], 'A'))}`).join(' | ')} | ` +
      `${f4(tb1[0])} / ${f4(tb1[1])} | ${f4(tb2[0])} / ${f4(tb2[1])} |`,
  );
}
console.error(`total ${((performance.now() - t0) / 1000).toFixed(0)} s`);
if (values.json) writeFileSync(values.json, JSON.stringify(out, null, 2));
