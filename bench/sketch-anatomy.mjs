#!/usr/bin/env node
/**
 * sketch-anatomy.mjs — what the sketch's decode does to each weight (issue 16, docs/sketch.md §10).
 *
 * Usage: node bench/sketch-anatomy.mjs [--model PATH] [--bpw 0.5] [--bundle LABEL=PATH ...] [--markdown]
 *        [--json OUT] [--svg OUT]
 * after `pnpm build` (it imports the built packages).
 *
 * For every compressed linear of the model (q, k, v, gate, up, down of every layer; o stays float as the
 * sketch and HashedNets leave it), it encodes the teacher weight W with each codec variant below (after
 * compression only, seed 0) and, for every --bundle given, takes that bundle's trained Ŵ of the same linear;
 * then it measures, per matrix and pooled over all of them:
 * - cos(Ŵ, W) and the relative Frobenius error ‖Ŵ − W‖/‖W‖ (rel.err > 1: worse than the zero matrix);
 * - the best-scaled error √(1 − cos²) (what any rescaling of Ŵ could reach);
 * - sign agreement where both are non-zero; mean |ŵ| / mean |w|; the fraction decoded exactly (ŵ = w);
 * - for AbsMaxMin only: which weights WIN the states — the mean magnitude percentile (within the matrix) of the
 *   weight stored in a state (0 = the smallest weight of the matrix) — and which states the query then uses:
 *   the fraction of states that are some weight's pick (the others receive no gradient in state training);
 * - for every hashed variant: the occupancy of its states (mean load, load variance, empty fraction).
 * Quality on eval.txt is not involved: this looks at weights only.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ROOT, dist, log, printHelp, requireBuilt } from './lib.mjs';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: `${ROOT}/../shared/models/stories3M/stories3M-q80.bin` },
    bpw: { type: 'string', default: '0.5' },
    bundle: { type: 'string', multiple: true, default: [] },
    markdown: { type: 'boolean', default: false },
    json: { type: 'string' },
    svg: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  printHelp(import.meta.url);
}
requireBuilt(['core', 'model', 'sketch-core', 'pipeline']);
const sketchCore = await import(dist('sketch-core'));
const model = await import(dist('model'));
const pipeline = await import(dist('pipeline'));
pipeline.registerAllCodecs();

const bpw = Number(args.bpw);
const { weights } = pipeline.loadCheckpointWeights(args.model);
const cfg = weights.config;
const KINDS = ['q', 'k', 'v', 'gate', 'up', 'down'];

/** The post-training variants: [label, codec, options]. */
const VARIANTS = [
  ['sketch absmaxmin d3 f16 (paper)', sketchCore.sketchCodec, { bpw }],
  ['sketch absmaxmin d1 f16', sketchCore.sketchCodec, { bpw, rows: 1 }],
  ['hashednets f16', sketchCore.hashedNetsCodec, { bpw }],
  ['sketch signmean d1 f16', sketchCore.sketchCodec, { bpw, rows: 1, query: 'signmean' }],
  ['sketch signmean d1 int8', sketchCore.sketchCodec, { bpw, rows: 1, query: 'signmean', state: 'int8' }],
  ['sketch signmean d3 int8', sketchCore.sketchCodec, { bpw, rows: 3, query: 'signmean', state: 'int8' }],
];
const bundles = args.bundle.map((s) => {
  const at = s.indexOf('=');
  if (at < 1) throw new Error(`--bundle LABEL=PATH, got ${s}`);
  return [s.slice(0, at), pipeline.loadBundle(s.slice(at + 1)).bundle];
});

function stats(w, what) {
  let dot = 0, ww = 0, hh = 0, sa = 0, sn = 0, aw = 0, ah = 0, exact = 0, zero = 0;
  for (let i = 0; i < w.length; i++) {
    const a = w[i], b = what[i];
    dot += a * b; ww += a * a; hh += b * b; aw += Math.abs(a); ah += Math.abs(b);
    if (a !== 0 && b !== 0) { sn++; if ((a > 0) === (b > 0)) sa++; }
    if (a === b) exact++;
    if (b === 0) zero++;
  }
  const cos = dot / Math.sqrt(ww * hh || 1);
  let err = 0;
  for (let i = 0; i < w.length; i++) err += (w[i] - what[i]) ** 2;
  return { cos, relErr: Math.sqrt(err / ww), scaledErr: Math.sqrt(Math.max(0, 1 - cos * cos)), signAgree: sn ? sa / sn : NaN, magRatio: ah / aw, exact: exact / w.length, zero: zero / w.length };
}

/** AbsMaxMin: mean magnitude percentile of the weights that won the states, fraction of empty states. */
function winners(w, p) {
  const sorted = Float32Array.from(w, Math.abs).sort();
  const pct = (v) => {
    let lo = 0, hi = sorted.length;
    while (lo < hi) { const m = (lo + hi) >> 1; if (sorted[m] < v) lo = m + 1; else hi = m; }
    return lo / sorted.length;
  };
  const vals = sketchCore.dequantizeStates(p);
  let sum = 0, n = 0, empty = 0;
  for (const g of sketchCore.sketchGroups(p)) {
    if (!g.family) continue;
    const occ = sketchCore.occupancy(g.family);
    empty += occ.emptyFraction * g.alloc.states;
    for (let i = g.stateOffset; i < g.stateOffset + g.alloc.states; i++) { sum += pct(Math.abs(vals[i])); n++; }
  }
  return { winnerPercentile: n ? sum / n : NaN, emptyStates: n ? empty / n : NaN };
}

/** AbsMaxMin: fraction of the states that are the query's pick for at least one weight (the rest get no gradient). */
function wonStates(p) {
  const vals = sketchCore.dequantizeStates(p);
  let won = 0, n = 0;
  for (const g of sketchCore.sketchGroups(p)) {
    if (!g.family) continue;
    const { depth, width } = g.family;
    const C = g.channels.length;
    const used = new Uint8Array(depth * width);
    const idx = Array.from({ length: depth }, () => new Int32Array(C));
    for (let r = 0; r < p.rows; r++) {
      for (let k = 0; k < depth; k++) g.family.rowIndices(r, k, idx[k]);
      for (let c = 0; c < C; c++) {
        let best = 0, a = Math.abs(vals[g.stateOffset + idx[0][c]]);
        for (let k = 1; k < depth; k++) {
          const v = Math.abs(vals[g.stateOffset + k * width + idx[k][c]]);
          if (v > a) { a = v; best = k; }
        }
        used[best * width + idx[best][c]] = 1;
      }
    }
    for (const u of used) won += u;
    n += used.length;
  }
  return n ? won / n : NaN;
}

function occupancyOf(codec, p) {
  if (codec.id === 'hashednets') return sketchCore.occupancy(sketchCore.hashedNetsFamily(p));
  const g = sketchCore.sketchGroups(p).find((x) => x.family);
  return g ? sketchCore.occupancy(g.family) : null;
}

const rows = [];
const pooled = new Map();
const add = (label, s) => {
  const acc = pooled.get(label) ?? { n: 0 };
  acc.n++;
  for (const [k, v] of Object.entries(s)) if (typeof v === 'number' && !Number.isNaN(v)) acc[k] = (acc[k] ?? 0) + v;
  pooled.set(label, acc);
};
for (let layer = 0; layer < cfg.nLayers; layer++) {
  for (const kind of KINDS) {
    const name = model.TensorNames.linear(layer, kind);
    const W = weights.tensors.get(name).data;
    const [R, C] = model.linearShape(cfg, kind);
    for (const [label, codec, raw] of VARIANTS) {
      const o = codec.resolveOptions(raw);
      const p = codec.encode(W, R, C, o, { name, seed: 0 });
      const s = { ...stats(W, codec.decode(p)) };
      const occ = occupancyOf(codec, p);
      if (occ) Object.assign(s, { meanLoad: occ.meanLoad, loadVar: occ.loadVariance, emptyFrac: occ.emptyFraction });
      if (codec.id === 'sketch' && !o.query) Object.assign(s, winners(W, p), { wonStates: wonStates(p) });
      rows.push({ layer, kind, label, stage: 'after compression', ...s });
      add(`${label} | after compression`, s);
    }
    for (const [label, b] of bundles) {
      const bw = b.weights.get(name);
      if (!bw) continue;
      const codec = (await import(dist('core'))).getCodec(bw.entry.codec);
      const s = stats(W, codec.decode(bw.params));
      if (bw.entry.codec === 'sketch' && !bw.params.options.query) s.wonStates = wonStates(bw.params);
      rows.push({ layer, kind, label, stage: 'after training', ...s });
      add(`${label} | after training`, s);
    }
  }
  log(`layer ${layer} done`);
}

const keys = ['cos', 'relErr', 'scaledErr', 'signAgree', 'magRatio', 'exact', 'zero', 'winnerPercentile', 'wonStates', 'emptyFrac', 'loadVar'];
const fmt = (v) => (v === undefined ? '—' : Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(1) : v.toFixed(4));
const lines = [
  `stories3M linears (${rows.length ? new Set(rows.map((r) => `${r.layer}.${r.kind}`)).size : 0} matrices), target ${bpw} bpw, pooled means:`,
  '',
  `| variant | stage | ${keys.join(' | ')} |`,
  `| --- | --- | ${keys.map(() => '---').join(' | ')} |`,
];
for (const [label, acc] of pooled) {
  const [v, stage] = label.split(' | ');
  lines.push(`| ${v} | ${stage} | ${keys.map((k) => (acc[k] === undefined ? '—' : fmt(acc[k] / acc.n))).join(' | ')} |`);
}
const md = lines.join('\n');
if (args.markdown) console.log(md);
if (args.json) writeFileSync(args.json, JSON.stringify({ bpw, rows, pooled: Object.fromEntries(pooled) }, null, 1));

if (args.svg) {
  // cos(Ŵ, W) per matrix, one row of dots per variant/stage: the picture of "how much of W the decode keeps".
  const labels = [...pooled.keys()];
  const W0 = 760, H = 40 + 26 * labels.length, x0 = 330, x1 = W0 - 20;
  const all = rows.map((r) => r.cos);
  const lo = Math.min(0, ...all), hi = Math.max(0.5, ...all);
  const X = (v) => x0 + ((v - lo) / (hi - lo)) * (x1 - x0);
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W0}" height="${H + 14}" font-family="sans-serif" font-size="11">`;
  svg += `<text x="${x0}" y="14">cos(Ŵ, W) per matrix (stories3M, ${bpw} bpw; ${lo.toFixed(2)} … ${hi.toFixed(2)})</text>`;
  for (let t = Math.ceil(lo * 10) / 10; t <= hi + 1e-9; t += 0.1) {
    svg += `<line x1="${X(t)}" y1="22" x2="${X(t)}" y2="${H - 10}" stroke="#ddd"/><text x="${X(t) - 8}" y="${H + 10}" fill="#666">${t.toFixed(1)}</text>`;
  }
  labels.forEach((label, i) => {
    const y = 36 + 26 * i;
    const [v, stage] = label.split(' | ');
    svg += `<text x="4" y="${y + 4}">${v} (${stage === 'after training' ? 'trained' : 'post-training'})</text>`;
    for (const r of rows) if (`${r.label} | ${r.stage}` === label) svg += `<circle cx="${X(r.cos).toFixed(1)}" cy="${y}" r="2.5" fill="${stage === 'after training' ? '#c0392b' : '#2e86c1'}" fill-opacity="0.6"/>`;
  });
  svg += '</svg>\n';
  writeFileSync(args.svg, svg);
}
