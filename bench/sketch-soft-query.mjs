#!/usr/bin/env node
/**
 * sketch-soft-query.mjs — what the annealed soft AbsMax query does to training (issue 16, docs/results.md §12.3b).
 *
 * Usage: node bench/sketch-soft-query.mjs [--tau 0,0.3,1,3] [--steps 100] [--bpw 0.5] [--seed 0] [--json OUT]
 *        [--shared DIR (default ../shared next to the repository)]
 * after `pnpm build` (it imports the built packages).
 *
 * For each τ0 (0 = the hard pick) it runs the §12 recipe's training (stories3M, `--codec sketch --query
 * absmaxmin`, KD on calib.txt, batch 4 × 128, AdamW lr 1e-3, clip norm 1, seed) through the pipeline's
 * `compress` — the same code path as the CLI, without writing a bundle or evaluating — and records every step's
 * loss and global gradient norm before clipping. It prints, per τ0 and per tenth of the run, the mean loss,
 * the mean gradient norm and the fraction of steps the clip shrank (norm > 1): with clipping, a gradient norm
 * of g scales that step's update by 1/g. Quality on eval.txt is not involved.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, dist, log, printHelp, requireBuilt } from './lib.mjs';

const { values: args } = parseArgs({
  options: {
    tau: { type: 'string', default: '0,0.3,1,3' },
    steps: { type: 'string', default: '100' },
    bpw: { type: 'string', default: '0.5' },
    seed: { type: 'string', default: '0' },
    json: { type: 'string' },
    shared: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  printHelp(import.meta.url);
}
requireBuilt(['pipeline', 'ste-trainer']);
const pipeline = await import(dist('pipeline'));

const SHARED = args.shared ?? join(ROOT, '..', 'shared');
const steps = Number(args.steps);
const calibText = readFileSync(join(SHARED, 'data/tinystories/calib.txt'), 'utf8');
const taus = args.tau.split(',').map(Number);
const out = [];
for (const tau of taus) {
  const records = [];
  const t0 = performance.now();
  await pipeline.compress({
    model: join(SHARED, 'models/stories3M/stories3M-q80.bin'),
    codec: 'sketch',
    codecOptions: { bpw: Number(args.bpw), query: 'absmaxmin', ...(tau > 0 ? { softQuery: tau } : {}) },
    embeddings: 'f16',
    seed: Number(args.seed),
    smallMatrix: 'error',
    finetune: {
      steps,
      batch: 4,
      seq: 128,
      loss: 'kd',
      data: 'calib',
      calibText,
      onProgress: (p) => records.push({ step: p.step, loss: p.loss, gradNorm: p.gradNorm, lr: p.lr }),
    },
  });
  const tenths = [];
  for (let k = 0; k < 10; k++) {
    const part = records.filter((r) => r.step > (k * steps) / 10 && r.step <= ((k + 1) * steps) / 10);
    if (part.length === 0) continue;
    const mean = (f) => part.reduce((a, r) => a + f(r), 0) / part.length;
    tenths.push({ steps: `${part[0].step}-${part.at(-1).step}`, loss: mean((r) => r.loss), gradNorm: mean((r) => r.gradNorm), clipped: mean((r) => (r.gradNorm > 1 ? 1 : 0)) });
  }
  log(`τ0 ${tau}: ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  out.push({ tau0: tau, tenths, records });
}
const fmt = (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(2));
console.log(`| τ0 | ${out[0].tenths.map((t) => `steps ${t.steps}`).join(' | ')} |`);
console.log(`| --- | ${out[0].tenths.map(() => '---').join(' | ')} |`);
for (const o of out) {
  console.log(`| ${o.tau0 || 'hard'} | ${o.tenths.map((t) => `${fmt(t.loss)} / ${fmt(t.gradNorm)} / ${Math.round(100 * t.clipped)}%`).join(' | ')} |`);
}
if (args.json) writeFileSync(args.json, JSON.stringify({ benchmark: 'sketch-soft-query', args, results: out }, null, 1));
