#!/usr/bin/env node
/**
 * Held-out KL of bundles against their float model on the SAME cached teacher windows (issue 14, docs/results.md
 * §11.3c): the first --holdout windows of a teacher-samples file, which no run with `--teacher-holdout` ≥ that
 * number trained on. A bundle's own training section holds its held-out KL on windows of its own --seq, so two
 * runs trained at different lengths cannot be compared by it; this puts them on one set of windows, and splits the
 * KL at a position to show where along the window a difference lies.
 *
 *   node bench/heldout-kl.mjs [options] BUNDLE...     (run `pnpm build` first)
 *
 * Each window (BOS + seq tokens sampled from the float model) runs through the float model and through each bundle
 * (runtime-node, the bundle's fused kernels); per position, KL(P_float ‖ P_bundle) in nats from float64 log-softmax
 * of both logit rows; printed as one JSON line per bundle: the mean over all positions and on each side of --split.
 *
 * Options:
 *   --model PATH            the float model the bundles were made from (default ../shared/models/stories3M/stories3M-q80.bin)
 *   --teacher-samples DIR   the cache of teacher windows (default bench/results/fidelity/teacher-samples)
 *   --seq L                 window length the samples were generated for, without the BOS (default 256); the
 *                           file is teacher-<model>-w<L+1>-s<seed>-t1.tok, and is generated if missing
 *   --seed N                the samples' seed (default 0, the recipes')
 *   --holdout N             how many leading windows to use (default 32, the recipes' held-out count)
 *   --split P               report positions < P and ≥ P separately too (default 128, the recipes' --seq)
 *   --help                  this text
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, dist, fail, log, printHelp, requireBuilt } from './lib.mjs';

const { values: a, positionals: bundles } = parseArgs({
  allowPositionals: true,
  options: {
    model: { type: 'string', default: resolve(ROOT, '../shared/models/stories3M/stories3M-q80.bin') },
    'teacher-samples': { type: 'string', default: resolve(ROOT, 'bench/results/fidelity/teacher-samples') },
    seq: { type: 'string', default: '256' },
    seed: { type: 'string', default: '0' },
    holdout: { type: 'string', default: '32' },
    split: { type: 'string', default: '128' },
    help: { type: 'boolean', default: false },
  },
});
if (a.help) printHelp(import.meta.url);
const posInt = (s, flag, min = 1) => {
  const v = Number(s);
  if (!Number.isInteger(v) || v < min) fail(`${flag} ${s} must be an integer ≥ ${min}`, 2);
  return v;
};
const seq = posInt(a.seq, '--seq');
const seed = posInt(a.seed, '--seed', 0);
const holdout = posInt(a.holdout, '--holdout');
const split = posInt(a.split, '--split');
if (bundles.length === 0) fail('no bundles given (node bench/heldout-kl.mjs --help)', 2);
for (const p of [a.model, ...bundles]) if (!existsSync(p)) fail(`${p} not found`);
requireBuilt(['pipeline']);
const { openModel, createSession, loadModel, teacherCorpus } = await import(dist('pipeline'));

// The same windows the training runs held out: teacherCorpus reads them from the cache (or generates them the
// same way a run would), window i being a pure function of (model, seed, temperature, i).
const floatWeights = loadModel(a.model).weights;
const corpus = teacherCorpus(floatWeights, { dir: a['teacher-samples'], windows: holdout, seqLen: seq, seed });
log(`heldout-kl: ${holdout} windows of ${seq + 1} tokens from ${corpus.path} (${corpus.reused} read, ${corpus.generated} generated)`);
const W = seq + 1;
const V = floatWeights.config.vocabSize;
const windows = Array.from({ length: holdout }, (_, i) => corpus.tokens.subarray(i * W, i * W + seq));

function allLogits(session, tokens) {
  session.reset();
  return Float64Array.from(session.forward(Array.from(tokens), { logits: 'all' }));
}
function logSumExp(x, o) {
  let m = -Infinity;
  for (let j = 0; j < V; j++) m = Math.max(m, x[o + j]);
  let s = 0;
  for (let j = 0; j < V; j++) s += Math.exp(x[o + j] - m);
  return m + Math.log(s);
}
/** Logit rows → log-probability rows, in place. */
function toLogProbs(x) {
  for (let o = 0; o < x.length; o += V) {
    const lse = logSumExp(x, o);
    for (let j = 0; j < V; j++) x[o + j] -= lse;
  }
  return x;
}
// the float model's log-probabilities once, for every bundle
const floatSession = createSession(openModel(a.model), { contextLength: seq });
const teacher = windows.map((w) => toLogProbs(allLogits(floatSession, w)));
for (const path of bundles) {
  const session = createSession(openModel(path), { contextLength: seq });
  const sums = { all: 0, before: 0, after: 0 };
  const counts = { all: 0, before: 0, after: 0 };
  windows.forEach((w, i) => {
    const s = toLogProbs(allLogits(session, w));
    const t = teacher[i];
    for (let p = 0; p < seq; p++) {
      const o = p * V;
      let kl = 0;
      for (let j = 0; j < V; j++) kl += Math.exp(t[o + j]) * (t[o + j] - s[o + j]);
      if (!Number.isFinite(kl)) fail(`${path}: KL at window ${i} position ${p} is ${kl}`);
      const side = p < split ? 'before' : 'after';
      sums.all += kl;
      sums[side] += kl;
      counts.all++;
      counts[side]++;
    }
  });
  const mean = (k) => (counts[k] > 0 ? sums[k] / counts[k] : null);
  console.log(JSON.stringify({ bundle: path, windows: holdout, window: W, positions: counts.all, kl: mean('all'), [`klBefore${split}`]: mean('before'), [`klFrom${split}`]: mean('after') }));
}
