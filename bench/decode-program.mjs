#!/usr/bin/env node
/**
 * A generated token as a compiled decode program (one wasm call, runtime-node wasm/decode-program.ts) against the
 * forward's own calls (`decodeProgram: false`), same model, same process, one thread, alternating rounds with the
 * order swapped every round. A benchmark, not a test: run it after `pnpm build`.
 *
 *   node bench/decode-program.mjs [--rounds 9] [--tokens 256] [--json] MODEL...
 *
 * MODEL: a llama2.c checkpoint or a .usk bundle (default: ../shared stories3M-q80.bin). Per round each session
 * decodes greedily from BOS for --tokens positions, one forward call each; tokens/s is steady state (after the
 * first position), by wall clock and by this process's CPU time. Both sessions must produce the same tokens and
 * the same logits bit for bit (a hash of every logit), or the script fails. Reported: medians, the ratio program
 * ÷ forward per round (median and range), whether the program was used, and the load average.
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, dist, fail, median, printHelp, requireBuilt } from './lib.mjs';

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: { help: { type: 'boolean', default: false }, rounds: { type: 'string', default: '9' }, tokens: { type: 'string', default: '256' }, json: { type: 'boolean', default: false } },
});
if (opts.help) printHelp(import.meta.url);
const ROUNDS = Number(opts.rounds);
const TOKENS = Number(opts.tokens);
if (!(ROUNDS >= 1) || !(TOKENS >= 2)) fail('--rounds must be ≥ 1 and --tokens ≥ 2');
requireBuilt(['pipeline', 'runtime-node']);
const { openModel } = await import(dist('pipeline'));
const { NodeSession, sessionFromBundle } = await import(dist('runtime-node'));

const models = positionals.length > 0 ? positionals : [join(ROOT, '..', 'shared', 'models', 'stories3M', 'stories3M-q80.bin')];

function session(model, decodeProgram) {
  const o = { threads: 1, contextLength: Math.min(TOKENS, model.config.seqLen), decodeProgram };
  return model.kind === 'bundle' ? sessionFromBundle(model.bundle, o) : NodeSession.fromWeights(model.weights, { kernels: 'wasm', ...o });
}

/** Greedy decode from BOS: steady-state tokens/s (wall, CPU) and a hash of every logit. */
function decode(s, bos) {
  s.reset();
  const hash = createHash('sha256');
  let token = bos;
  let t0 = 0;
  let c0;
  const positions = Math.min(TOKENS, s.contextLength);
  for (let pos = 0; pos < positions; pos++) {
    const logits = s.forward([token]);
    hash.update(new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
    let best = 0;
    for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
    if (!Number.isFinite(logits[best])) fail(`non-finite logit at position ${pos}`);
    if (pos === 0) {
      t0 = performance.now();
      c0 = process.cpuUsage();
    }
    token = best;
  }
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  return { wall: (positions - 1) / wall, cpu: (positions - 1) / ((cpu.user + cpu.system) / 1e6), hash: hash.digest('hex') };
}

const report = { rounds: ROUNDS, tokens: TOKENS, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadBefore: os.loadavg(), models: [] };
for (const path of models) {
  const model = openModel(path);
  const bos = model.tokenizer.bosId >= 0 ? model.tokenizer.bosId : 1;
  const sessions = { program: session(model, true), forward: session(model, false) };
  const runs = { program: [], forward: [] };
  let hash;
  for (let r = -1; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? ['program', 'forward'] : ['forward', 'program'];
    for (const k of order) {
      const out = decode(sessions[k], bos);
      hash ??= out.hash;
      if (out.hash !== hash) fail(`${path}: the ${k} session's logits differ from the other's (the program must give the same bits)`);
      if (r >= 0) runs[k].push(out); // round −1 warms both up
    }
  }
  const ratios = (key) => runs.program.map((p, i) => p[key] / runs.forward[i][key]).sort((a, b) => a - b);
  const entry = {
    model: path,
    usesProgram: sessions.program.usesDecodeProgram,
    program: { wall: median(runs.program.map((x) => x.wall)), cpu: median(runs.program.map((x) => x.cpu)) },
    forward: { wall: median(runs.forward.map((x) => x.wall)), cpu: median(runs.forward.map((x) => x.cpu)) },
    ratioWall: { median: median(ratios('wall')), min: ratios('wall')[0], max: ratios('wall').at(-1) },
    ratioCpu: { median: median(ratios('cpu')), min: ratios('cpu')[0], max: ratios('cpu').at(-1) },
  };
  report.models.push(entry);
  if (!opts.json) {
    const f = (x) => x.toFixed(0);
    const r = (x) => `${x.median.toFixed(3)}× (range ${x.min.toFixed(3)}–${x.max.toFixed(3)})`;
    console.log(`${path}: program used: ${entry.usesProgram}`);
    console.log(`  wall tok/s: program ${f(entry.program.wall)}, forward ${f(entry.forward.wall)}; program ÷ forward ${r(entry.ratioWall)}`);
    console.log(`  CPU tok/s:  program ${f(entry.program.cpu)}, forward ${f(entry.forward.cpu)}; program ÷ forward ${r(entry.ratioCpu)}`);
  }
}
report.loadAfter = os.loadavg();
if (opts.json) console.log(JSON.stringify(report, null, 2));
else console.log(`load average before ${report.loadBefore.map((x) => x.toFixed(2)).join(' ')}, after ${report.loadAfter.map((x) => x.toFixed(2)).join(' ')} (${report.cpus} CPUs)`);
