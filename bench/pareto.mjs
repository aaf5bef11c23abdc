#!/usr/bin/env node
/**
 * Whole-file bits against quality (issue 14, docs/results.md §11.1b): every stories3M bundle found under the
 * given paths that carries a quality section measured on the first N windows of eval.txt, placed at
 * (bitsPerParam, perplexity), with the Pareto front (the lowest perplexity at or below each file size).
 *
 *   node bench/pareto.mjs [options] [PATH ...]     (run `pnpm build` first; it reads bundles with the pipeline)
 *
 * Each bundle is read as `ultrasketch inspect` reads it (loadBundle): bitsPerParam from the real file size
 * (every tensor, the tokenizer and the header counted), perplexity from its stored quality section, the method
 * from its linears' codec and rate, the embedding's storage from the embedding's codec, training tokens from its
 * training section. Bundles of other models (parameter count), other windows or other texts are skipped.
 *
 * The record: bench/results is not committed and a machine's bundles do not outlive it, so every point measured
 * is also kept in docs/pareto-points.jsonl (one JSON object a line, committed). A run reads the bundles it finds,
 * takes the record's points whose bundles are not here (each keeps the `measured` date and, for the points
 * recovered from an earlier plot, the `source` that says so), draws the union and writes the union back. A bundle
 * found here replaces its recorded point (same path). `--no-record` draws only the bundles found.
 *
 * Options:
 *   --windows N   evaluation windows a point must have been measured on (default 64)
 *   --params N    parameter count of the model (default 3148224: stories3M)
 *   --out FILE    the SVG (default docs/pareto.svg); the points also go to stdout as JSON lines
 *   --record FILE the record of points measured before (default docs/pareto-points.jsonl; created when missing)
 *   --no-record   neither read nor write the record: only the bundles found now
 *   --help        this text
 * PATH: bundles or directories searched recursively for *.usk (default: bench/results, models)
 */
import { existsSync, readFileSync, readdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, dist, fail, log, printHelp, requireBuilt } from './lib.mjs';

const { values: a, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    windows: { type: 'string', default: '64' },
    params: { type: 'string', default: '3148224' },
    out: { type: 'string', default: join(ROOT, 'docs/pareto.svg') },
    record: { type: 'string', default: join(ROOT, 'docs/pareto-points.jsonl') },
    'no-record': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (a.help) printHelp(import.meta.url);
const windows = Number(a.windows);
const params = Number(a.params);
if (!Number.isInteger(windows) || windows < 1) fail(`--windows must be a positive integer, got ${a.windows}`);
if (!Number.isInteger(params) || params < 1) fail(`--params must be a positive integer, got ${a.params}`);
requireBuilt(['pipeline']);
const { loadBundle, readQualitySection, readTrainingSection } = await import(dist('pipeline'));

const roots = (positionals.length > 0 ? positionals : ['bench/results', 'models']).map((p) => resolve(p));
const files = [];
const walk = (p) => {
  const st = statSync(p, { throwIfNoEntry: false });
  if (!st) fail(`${p} does not exist`);
  if (st.isDirectory()) {
    for (const e of readdirSync(p).sort()) if (e !== 'node_modules' && e !== 'checkpoint') walk(join(p, e));
  } else if (p.endsWith('.usk')) files.push(p);
};
for (const r of roots) walk(r);
const today = new Date().toISOString().slice(0, 10);

const points = [];
for (const file of files) {
  let l;
  try {
    l = loadBundle(file, { verifyChecksums: false });
  } catch (err) {
    log(`skip ${relative(ROOT, file)}: ${err.message}`);
    continue;
  }
  const acc = l.accounting;
  const q = readQualitySection(l.quality);
  if (acc.params !== params || !q || q.windows !== windows || !/eval\.txt$/.test(q.textSource)) continue;
  const linear = Object.entries(acc.linearCodecs).sort((x, y) => y[1] - x[1])[0]?.[0] ?? 'float';
  const emb = l.bundle.weights.get('model.embed_tokens.weight').entry;
  const embedding =
    emb.codec === 'float' ? emb.options.dtype : emb.codec === 'rtn' ? `rtn${emb.options.bits}` : emb.codec === 'vq' ? `vq${emb.options.bits}` : emb.codec;
  const t = readTrainingSection(l.training);
  points.push({
    bundle: relative(ROOT, file),
    params,
    windows,
    method: linear,
    bpwLinears: acc.bpwLinears,
    bitsPerParam: acc.bitsPerParam,
    fileBytes: acc.fileBytes,
    formatVersion: l.bundle.formatVersion,
    embedding,
    trainingTokens: t?.tokens ?? 0,
    perplexity: q.perplexity,
    floatPerplexity: q.referencePerplexity,
    command: typeof l.provenance?.command === 'string' ? l.provenance.command : null,
    measured: today,
  });
}
// The same bundle copied elsewhere (models/ holds a copy of a bench result) is one point: the copy found last
// (models/ is walked after bench/results) is kept. Points recovered from an earlier plot have no file size and
// no command, so they never match a bundle found now.
const sameBundle = (p) => (p.fileBytes === null ? null : `${p.fileBytes} ${p.perplexity} ${p.command}`);
const seen = new Set();
for (let i = points.length - 1; i >= 0; i--) {
  const key = sameBundle(points[i]);
  if (seen.has(key)) points.splice(i, 1);
  seen.add(key);
}
const found = points.length;
const { recorded, otherModels } = a['no-record'] ? { recorded: [], otherModels: [] } : readRecord(a.record);
const here = new Set(points.map((p) => p.bundle));
// a recorded point whose bundle is here (same path), or whose copy is here under another path, is the one found
for (const p of recorded) if (!here.has(p.bundle) && !seen.has(sameBundle(p) ?? '')) points.push(p);
if (points.length === 0) fail(`no stories3M bundle with quality on ${windows} eval.txt windows under ${roots.join(', ')}, and no recorded point`);
points.sort((x, y) => x.bitsPerParam - y.bitsPerParam || x.perplexity - y.perplexity);
for (const p of points) process.stdout.write(`${JSON.stringify(p)}\n`);

// The Pareto front: walking up in file size, a point is on it when nothing smaller (or equal) is better.
const front = [];
for (const p of points) if (front.length === 0 || p.perplexity < front[front.length - 1].perplexity) front.push(p);

writeFileSync(a.out, svg(points, front));
if (!a['no-record']) {
  const tmp = `${a.record}.tmp`;
  writeFileSync(tmp, [...otherModels, ...points].map((p) => `${JSON.stringify(p)}\n`).join(''));
  renameSync(tmp, a.record);
}
log(
  `pareto: ${points.length} bundles (${found} found now, ${points.length - found} from the record), ${front.length} on the front; ` +
    `${relative(ROOT, a.out)}${a['no-record'] ? '' : `, ${relative(ROOT, a.record)}`}`,
);
const best = points.filter((p) => p.bitsPerParam <= 1).sort((x, y) => x.perplexity - y.perplexity)[0];
log(best ? `best at <= 1.0 bitsPerParam: ${best.bundle} ${best.bitsPerParam.toFixed(4)} bpp, perplexity ${best.perplexity.toFixed(2)}` : 'no bundle at <= 1.0 bitsPerParam');

/**
 * The points recorded by earlier runs, checked line by line: a record that does not parse, or a point without the
 * figures the plot needs, stops the run (a plot silently missing points would misstate the front).
 */
function readRecord(file) {
  const recorded = [];
  const otherModels = [];
  if (!existsSync(file)) return { recorded, otherModels };
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (line.trim() === '') return;
      let p;
      try {
        p = JSON.parse(line);
      } catch (err) {
        fail(`${relative(ROOT, file)} line ${i + 1} is not JSON (${err.message}); mend it, or pass --no-record`);
      }
      const bad = ['bundle', 'method', 'embedding'].find((k) => typeof p[k] !== 'string') ??
        ['params', 'windows', 'bpwLinears', 'bitsPerParam', 'perplexity', 'trainingTokens'].find((k) => !Number.isFinite(p[k]));
      if (bad) fail(`${relative(ROOT, file)} line ${i + 1}: "${bad}" is missing or not a finite value; mend it, or pass --no-record`);
      // Another model's (or another window count's) points stay in the record, out of this plot.
      (p.params === params && p.windows === windows ? recorded : otherModels).push(p);
    });
  return { recorded, otherModels };
}

/** bitsPerParam (log) against perplexity (log); colour = method of the linears, shape = embedding storage. */
function svg(pts, front) {
  const W = 780;
  const H = 480;
  const m = { l: 64, r: 210, t: 34, b: 50 };
  const fl = pts.find((p) => p.floatPerplexity)?.floatPerplexity ?? null;
  const xs = pts.map((p) => Math.log2(p.bitsPerParam));
  const ys = [...pts.map((p) => Math.log10(p.perplexity)), ...(fl ? [Math.log10(fl)] : [])];
  const [x0, x1] = [Math.floor(Math.min(...xs, 0) * 2) / 2, Math.ceil(Math.max(...xs) * 2 + 1e-9) / 2];
  const [y0, y1] = [Math.floor(Math.min(...ys) * 4) / 4, Math.ceil(Math.max(...ys) * 4 + 1e-9) / 4];
  const px = (v) => m.l + ((Math.log2(v) - x0) / Math.max(1e-9, x1 - x0)) * (W - m.l - m.r);
  const py = (v) => H - m.b - ((Math.log10(v) - y0) / Math.max(1e-9, y1 - y0)) * (H - m.t - m.b);
  const methods = [...new Set(pts.map((p) => p.method))].sort();
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
  const color = (mth) => colors[methods.indexOf(mth) % colors.length];
  const embeddings = [...new Set(pts.map((p) => p.embedding))].sort();
  // One shape per embedding storage, as a path so every marker closes alike.
  const marker = (e, x, y, c, extra = '', title = '') => {
    const shapes = [
      `M${x - 4.5},${y} a4.5,4.5 0 1,0 9,0 a4.5,4.5 0 1,0 -9,0`, // circle
      `M${x - 4},${y - 4} h8 v8 h-8 Z`, // square
      `M${x},${y - 5.5} L${x + 5},${y + 4} L${x - 5},${y + 4} Z`, // triangle
      `M${x},${y - 5.5} L${x + 5},${y} L${x},${y + 5.5} L${x - 5},${y} Z`, // diamond
      `M${x},${y + 5.5} L${x + 5},${y - 4} L${x - 5},${y - 4} Z`, // triangle down
      `M${x - 5},${y - 1.5} h10 v3 h-10 Z M${x - 1.5},${y - 5} h3 v10 h-3 Z`, // cross
    ];
    const d = shapes[embeddings.indexOf(e) % shapes.length];
    return `<path d="${d}" fill="${c}" ${extra}>${title ? `<title>${title}</title>` : ''}</path>`;
  };
  const f = (v, d = 1) => v.toFixed(d);
  const o = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`, `<rect width="${W}" height="${H}" fill="white"/>`];
  o.push(`<text x="${m.l}" y="20" font-size="14">stories3M: perplexity (eval.txt, first ${windows} windows) vs bits per parameter of the whole file</text>`);
  for (let v = x0; v <= x1 + 1e-9; v += 0.5) {
    const x = px(2 ** v);
    o.push(`<line x1="${f(x)}" y1="${m.t}" x2="${f(x)}" y2="${H - m.b}" stroke="#e4e4e4"/><text x="${f(x)}" y="${H - m.b + 16}" text-anchor="middle">${(2 ** v).toFixed(2)}</text>`);
  }
  for (let v = y0; v <= y1 + 1e-9; v += 0.25) {
    const y = py(10 ** v);
    o.push(`<line x1="${m.l}" y1="${f(y)}" x2="${W - m.r}" y2="${f(y)}" stroke="#eee"/><text x="${m.l - 6}" y="${f(y + 4)}" text-anchor="end">${(10 ** v).toFixed(1)}</text>`);
  }
  o.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 12}" text-anchor="middle">bitsPerParam (8 × file bytes ÷ 3,148,224 parameters; log scale)</text>`);
  o.push(`<line x1="${f(px(1))}" y1="${m.t}" x2="${f(px(1))}" y2="${H - m.b}" stroke="#444" stroke-width="1.5"/><text x="${f(px(1) + 4)}" y="${m.t + 12}">1 bit</text>`);
  if (fl) o.push(`<line x1="${m.l}" y1="${f(py(fl))}" x2="${W - m.r}" y2="${f(py(fl))}" stroke="black" stroke-dasharray="5,4"/><text x="${m.l + 6}" y="${f(py(fl) - 5)}">float ${fl.toFixed(2)}</text>`);
  // The front as a staircase: each front point's perplexity holds until the next, smaller one.
  const stairs = [];
  front.forEach((p, i) => {
    stairs.push(`${f(px(p.bitsPerParam))},${f(py(p.perplexity))}`);
    const next = front[i + 1];
    stairs.push(`${f(px(next ? next.bitsPerParam : 2 ** x1))},${f(py(p.perplexity))}`);
  });
  o.push(`<polyline fill="none" stroke="#999" stroke-width="1.5" stroke-dasharray="2,3" points="${stairs.join(' ')}"/>`);
  for (const p of pts) {
    const x = px(p.bitsPerParam);
    const y = py(p.perplexity);
    const tokens = p.trainingTokens > 0 ? `${p.trainingTokens.toLocaleString('en-US')} training tokens` : 'no training';
    const title = `${p.bundle}: ${p.method} ${p.bpwLinears.toFixed(3)} bpw, embedding ${p.embedding}, ${tokens}: ${p.bitsPerParam.toFixed(3)} bpp, perplexity ${p.perplexity.toFixed(2)}`;
    o.push(marker(p.embedding, +f(x), +f(y), color(p.method), `stroke="${front.includes(p) ? 'black' : 'none'}" stroke-width="1.2"`, title));
  }
  let ly = m.t + 8;
  o.push(`<text x="${W - m.r + 12}" y="${ly}" font-weight="bold">linears (colour)</text>`);
  for (const mth of methods) {
    ly += 17;
    o.push(`<circle cx="${W - m.r + 18}" cy="${ly - 4}" r="4.5" fill="${color(mth)}"/><text x="${W - m.r + 28}" y="${ly}">${mth}</text>`);
  }
  ly += 26;
  o.push(`<text x="${W - m.r + 12}" y="${ly}" font-weight="bold">embedding (shape)</text>`);
  for (const e of embeddings) {
    ly += 17;
    o.push(`${marker(e, W - m.r + 18, ly - 4, '#555')}<text x="${W - m.r + 28}" y="${ly}">${e}</text>`);
  }
  ly += 26;
  o.push(`<text x="${W - m.r + 12}" y="${ly}">outlined: on the Pareto front</text>`);
  const best = pts.filter((p) => p.bitsPerParam <= 1).sort((x, y) => x.perplexity - y.perplexity)[0];
  if (best) {
    ly += 17;
    o.push(`<text x="${W - m.r + 12}" y="${ly}">best ≤ 1 bit: ${best.bitsPerParam.toFixed(3)} bpp,</text><text x="${W - m.r + 12}" y="${ly + 15}">perplexity ${best.perplexity.toFixed(1)} (${best.method}, ${best.embedding})</text>`);
  }
  o.push('</svg>');
  return `${o.join('\n')}\n`;
}
