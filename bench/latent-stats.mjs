#!/usr/bin/env node
/**
 * Where LittleBit's latent sign factors sit at the end of a training run, and whether the optimizer still moves
 * them (issue 14, docs/results.md §11.3e). Reads a trainer checkpoint (`--checkpoint-dir DIR` of compress writes
 * DIR/finetune.ckpt: the float latents U, V of every LittleBit linear and AdamW's moments) and prints, per band of
 * |latent|, the share of latents in it, the median √v (AdamW's running RMS of the gradient) and the median of
 * √v / (√v + eps), the fraction of a full-size AdamW step such a latent gets. SmoothSign′(x) = k(1 − tanh²(kx))
 * falls off as e^(−2k|x|), so a latent far from zero gets a gradient far below eps and stops moving: its sign is
 * frozen, whatever the loss wants.
 *
 *   node bench/latent-stats.mjs CHECKPOINT [--json]     (run `pnpm build` first)
 *
 * Options:
 *   --json    one JSON object instead of the table
 *   --help    this text
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { dist, fail, printHelp, requireBuilt } from './lib.mjs';

const { values: a, positionals } = parseArgs({
  allowPositionals: true,
  options: { json: { type: 'boolean', default: false }, help: { type: 'boolean', default: false } },
});
if (a.help) printHelp(import.meta.url);
if (positionals.length !== 1) fail('give one checkpoint file (node bench/latent-stats.mjs --help)', 2);
requireBuilt(['format']);
const { readSafetensors } = await import(dist('format'));

const path = positionals[0];
let file;
try {
  file = readSafetensors(new Uint8Array(readFileSync(path)), path);
} catch (err) {
  fail(`${path} is not a trainer checkpoint: ${err.message}`);
}
const meta = file.metadata;
if (meta.format === undefined || meta.recipe === undefined) fail(`${path} is not a trainer checkpoint (no format/recipe metadata)`);
const recipe = JSON.parse(meta.recipe);
const eps = recipe.eps;
const f32 = (t) => new Float32Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength));

// Every LittleBit latent factor (param/<linear>/U and /V) with its AdamW second moment.
const xs = [];
const vs = [];
for (const [name, t] of file.tensors) {
  if (!name.startsWith('param/') || !/\/(U|V)$/.test(name)) continue;
  const v = file.tensors.get(name.replace(/^param\//, 'adam.v/'));
  if (!v) fail(`${path}: ${name} has no AdamW moment`);
  xs.push(f32(t));
  vs.push(f32(v));
}
if (xs.length === 0) fail(`${path}: no LittleBit latent factors (param/…/U, /V) in this checkpoint`);
const n = xs.reduce((s, x) => s + x.length, 0);
const absX = new Float32Array(n);
const rms = new Float32Array(n);
let o = 0;
xs.forEach((x, i) => {
  for (let j = 0; j < x.length; j++) {
    absX[o + j] = Math.abs(x[j]);
    rms[o + j] = Math.sqrt(vs[i][j]);
  }
  o += x.length;
});

const median = (arr) => {
  if (arr.length === 0) return NaN;
  const s = Float64Array.from(arr).sort();
  return s[Math.floor(s.length / 2)];
};
const edges = [0, 0.01, 0.02, 0.04, 0.06, 0.1, Infinity];
const bands = [];
for (let b = 0; b + 1 < edges.length; b++) {
  const lo = edges[b];
  const hi = edges[b + 1];
  const inBand = [];
  for (let i = 0; i < n; i++) if (absX[i] >= lo && absX[i] < hi) inBand.push(i);
  const r = inBand.map((i) => rms[i]);
  bands.push({
    band: `${lo}–${hi === Infinity ? '∞' : hi}`,
    share: inBand.length / n,
    medianSqrtV: median(r),
    medianStepFraction: median(r.map((x) => x / (x + eps))),
  });
}
const out = { checkpoint: path, step: Number(meta.step), steps: recipe.steps, eps, latents: n, factors: xs.length, medianAbs: median(absX), bands };
if (a.json) {
  process.stdout.write(`${JSON.stringify(out)}\n`);
} else {
  process.stdout.write(`${path}: step ${out.step} of ${out.steps}, ${n.toLocaleString('en-US')} latents in ${xs.length} factors, median |x| ${out.medianAbs.toFixed(4)}, AdamW eps ${eps}\n`);
  process.stdout.write('| |latent| | share | median √v | median step fraction √v/(√v+eps) |\n| --- | --- | --- | --- | --- |\n');
  for (const b of bands) process.stdout.write(`| ${b.band} | ${(b.share * 100).toFixed(1)} % | ${b.medianSqrtV.toExponential(2)} | ${b.medianStepFraction.toFixed(3)} |\n`);
}
