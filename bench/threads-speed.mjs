#!/usr/bin/env node
/**
 * One thread against N threads, same model, same process, alternating (runtime-node's ThreadPool with its
 * default adaptive policy). A benchmark, not a test: run it after `pnpm build`.
 *
 *   node bench/threads-speed.mjs [--threads 2] [--rounds 7] [--tokens 128] [--window 512] [--split-all] [--json] MODEL...
 *
 * MODEL: a llama2.c checkpoint or a .usk bundle (default: ../shared stories3M-q80.bin). For each model two
 * sessions (threads 1 and --threads) run, round-robin with the order swapped every round: generate (greedy
 * from BOS, --tokens positions, one forward call each; steady-state tokens/s after the first position) and
 * prefill (a --window-token window of eval text in one call, logits of every position, as `eval` runs).
 * Reported: medians and the ratio N threads ÷ 1 thread (> 1: faster), the process CPU time of one prefill with
 * 1 and N threads (all threads; equal: the split adds no work, so on an idle machine the wall ratio is set by
 * the serial part), the products each session split or kept on one thread, which way the
 * multi-thread session's generated tokens went (decode program or pooled forward), and the load average.
 *
 * --split-all: a third session with --threads whose pool splits every product above the size threshold instead
 * of timing the two ways (runtime-node's `threadAdaptive: false`), in the same rounds: how much the adaptive
 * policy gives up (or saves) against always splitting, measured in one process — on the shared VM either side's
 * speed drifts by tens of % between minutes, so two separate runs cannot rank a few-% difference. Its logits must
 * equal one thread's bit for bit, as the others'.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, dist, fail, median, printHelp, requireBuilt } from './lib.mjs';

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    help: { type: 'boolean', default: false },
    threads: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '7' },
    tokens: { type: 'string', default: '128' },
    window: { type: 'string', default: '512' },
    'split-all': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
if (opts.help) printHelp(import.meta.url);
const THREADS = Number(opts.threads);
const ROUNDS = Number(opts.rounds);
const TOKENS = Number(opts.tokens);
const WINDOW = Number(opts.window);
requireBuilt(['pipeline', 'runtime-node']);
const { openModel, createSession } = await import(dist('pipeline'));

const models = positionals.length > 0 ? positionals : [join(ROOT, '..', 'shared', 'models', 'stories3M', 'stories3M-q80.bin')];
const evalText = readFileSync(join(ROOT, '..', 'shared', 'data', 'tinystories', 'eval.txt'), 'utf8');

function generate(session, bos) {
  session.reset();
  let token = bos;
  let t0 = 0;
  for (let pos = 0; pos < TOKENS; pos++) {
    const logits = session.forward([token]);
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    if (!Number.isFinite(logits[best])) fail(`non-finite logit at position ${pos}`);
    if (pos === 0) t0 = performance.now();
    token = best;
  }
  return (TOKENS - 1) / ((performance.now() - t0) / 1000);
}

// the warm-up round's prefill logits per session: every multi-thread session must give one thread's bit for bit
const prefillLogits = new Map();
let lastPrefillLogits;

// the process's CPU time of the last prefill (ms; all threads): with N threads ≈ 1 thread's, the split adds no work
let lastPrefillCpuMs = 0;
function prefill(session, window) {
  session.reset();
  const c = process.cpuUsage();
  const t = performance.now();
  const logits = session.forward(window, { logits: 'all' });
  const dt = performance.now() - t;
  lastPrefillLogits = logits.slice();
  const u = process.cpuUsage(c);
  lastPrefillCpuMs = (u.user + u.system) / 1000;
  return window.length / (dt / 1000);
}

const report = { threads: THREADS, rounds: ROUNDS, tokens: TOKENS, window: WINDOW, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadBefore: os.loadavg(), models: [] };
for (const path of models) {
  const model = openModel(path);
  const window = model.tokenizer.encode(evalText.slice(0, 20_000), { bos: true, eos: false }).slice(0, WINDOW);
  if (window.length < WINDOW) fail(`the eval text gave only ${window.length} tokens`);
  const context = Math.max(TOKENS, WINDOW);
  const one = createSession(model, { contextLength: context, threads: 1 });
  const many = createSession(model, { contextLength: context, threads: THREADS });
  const splitAll = opts['split-all'] ? createSession(model, { contextLength: context, threads: THREADS, threadAdaptive: false }) : undefined;
  const bos = model.tokenizer.bosId >= 0 ? model.tokenizer.bosId : window[0];
  const s = { one: { generate: [], prefill: [], prefillCpuMs: [] }, many: { generate: [], prefill: [], prefillCpuMs: [] } };
  if (splitAll) s.splitAll = { generate: [], prefill: [], prefillCpuMs: [] };
  for (let r = -1; r < ROUNDS; r++) {
    const sessions = [['one', one], ['many', many], ...(splitAll ? [['splitAll', splitAll]] : [])];
    const order = r % 2 === 0 ? sessions : sessions.reverse();
    for (const [key, session] of order) {
      const g = generate(session, bos);
      const p = prefill(session, window);
      if (r === -1) prefillLogits.set(key, lastPrefillLogits);
      if (r >= 0) {
        s[key].generate.push(g);
        s[key].prefill.push(p);
        s[key].prefillCpuMs.push(lastPrefillCpuMs);
      }
    }
  }
  const row = {
    model: path,
    oneThread: { generate: median(s.one.generate), prefill: median(s.one.prefill), prefillCpuMs: median(s.one.prefillCpuMs) },
    nThreads: { generate: median(s.many.generate), prefill: median(s.many.prefill), prefillCpuMs: median(s.many.prefillCpuMs) },
    ratio: {
      generate: median(s.many.generate.map((v, i) => v / s.one.generate[i])),
      prefill: median(s.many.prefill.map((v, i) => v / s.one.prefill[i])),
    },
    products: many.threadStats,
    // which way the 2-thread session's generated tokens went (the decode program on this thread, or the pooled
    // forward): a generate ratio below 1 with few pooled tokens is the machine, not the policy
    steps: many.stepStats,
    ...(splitAll
      ? {
          splitAll: {
            generate: median(s.splitAll.generate),
            prefill: median(s.splitAll.prefill),
            prefillCpuMs: median(s.splitAll.prefillCpuMs),
            ratio: { generate: median(s.splitAll.generate.map((v, i) => v / s.one.generate[i])), prefill: median(s.splitAll.prefill.map((v, i) => v / s.one.prefill[i])) },
            products: splitAll.threadStats,
          },
        }
      : {}),
    samples: s,
  };
  for (const [key, logits] of prefillLogits) {
    const ref = prefillLogits.get('one');
    if (logits.length !== ref.length || logits.some((v, i) => !Object.is(v, ref[i]))) fail(`${path}: the ${key} session's prefill logits differ from one thread's`);
  }
  prefillLogits.clear();
  splitAll?.dispose();
  many.dispose();
  one.dispose();
  report.models.push(row);
  if (!opts.json) {
    console.log(
      `${path}: generate ${row.oneThread.generate.toFixed(0)} → ${row.nThreads.generate.toFixed(0)} tok/s (×${row.ratio.generate.toFixed(3)}), ` +
        `prefill ${WINDOW} ${row.oneThread.prefill.toFixed(0)} → ${row.nThreads.prefill.toFixed(0)} tok/s (×${row.ratio.prefill.toFixed(3)}); ` +
        `prefill CPU ${row.oneThread.prefillCpuMs.toFixed(1)} → ${row.nThreads.prefillCpuMs.toFixed(1)} ms; products split ${row.products.split}, on one thread ${row.products.single}; ` +
        `generated tokens on ${THREADS} threads: ${row.steps.program} as the decode program, ${row.steps.pooled} through the pooled forward`,
    );
    if (row.splitAll) {
      const o = row.splitAll;
      console.log(
        `  splitting every product (--split-all): generate ${o.generate.toFixed(0)} tok/s (×${o.ratio.generate.toFixed(3)} of 1 thread), prefill ${WINDOW} ${o.prefill.toFixed(0)} tok/s ` +
          `(×${o.ratio.prefill.toFixed(3)}); prefill CPU ${o.prefillCpuMs.toFixed(1)} ms; products split ${o.products.split}, on one thread ${o.products.single}`,
      );
    }
  }
}
report.loadAfter = os.loadavg();
if (opts.json) console.log(JSON.stringify(report, null, 2));
else console.log(`${THREADS} threads vs 1, medians of ${ROUNDS} rounds; load average before ${report.loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${report.loadAfter.map((l) => l.toFixed(2)).join(' ')} (${report.cpus} CPUs)`);
