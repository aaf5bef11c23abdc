#!/usr/bin/env node
/**
 * Our float forward (runtime-node, wasm kernels, 1 thread unless --threads) against llama2.c's run.c, in the
 * same script, alternating. A benchmark, not a test: run it after `pnpm build`.
 *
 *   node bench/llama2c-peer.mjs --run-c /path/outside/the/repo/run.c [--rounds 7] [--steps 256] [--threads 1] [--json]
 *   node bench/llama2c-peer.mjs --run /path/to/a/built/run ...
 *
 * run.c is never part of this repository: bring karpathy/llama2.c's public source yourself
 * (../shared/docs/toolchain.md, "Peers"); with --run-c the script compiles it into a temporary folder with
 * `gcc -Ofast -march=native -o run run.c -lm` (and `-O3` for reference) and deletes the folder at the end. Without
 * either flag (or $LLAMA2C_RUN_C / $LLAMA2C_RUN) it says the peer is unavailable and exits 2.
 *
 * Protocol (both sides): stories3M (../shared, the int8 export dequantized to a legacy float32 checkpoint in the
 * temporary folder: llama2.c's float forward reads that), greedy decoding from BOS for --steps positions, stopping
 * at BOS as run.c does; tokens/s = (positions − 1) ÷ the time after the first position (run.c's own "achieved
 * tok/s", whose timer starts after the first iteration). One round = one run of each program (run.c as a child
 * process; ours in this process, warm after the first round), the order swapped every round; the ratio of each
 * round is ours ÷ run.c, reported as the median and the range. The machine's load average is printed.
 *
 * On a loaded machine the wall-clock figures carry the other jobs' time slices; each round therefore also
 * measures CPU time per token (a second run of each program): ours with process.cpuUsage over the positions
 * after the first; run.c as its process's user + system time (bash's `times`) for --steps positions minus that
 * of a 2-position run (loading the checkpoint and tokenizer), over the same number of positions as ours (both
 * decode greedily from BOS, so they produce the same tokens). Reported as "CPU tokens/s" and their ratio.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, dist, fail, median, printHelp, requireBuilt } from './lib.mjs';

const { values: opts } = parseArgs({
  options: {
    help: { type: 'boolean', default: false },
    'run-c': { type: 'string' },
    run: { type: 'string' },
    rounds: { type: 'string', default: '7' },
    steps: { type: 'string', default: '256' },
    threads: { type: 'string', default: '1' },
    json: { type: 'boolean', default: false },
  },
});
if (opts.help) printHelp(import.meta.url);
const runC = opts['run-c'] ?? process.env.LLAMA2C_RUN_C;
const runBin = opts.run ?? process.env.LLAMA2C_RUN;
const rounds = Number(opts.rounds);
const steps = Number(opts.steps);
const threads = Number(opts.threads);
if (!runC && !runBin) {
  console.log('llama2.c peer: UNAVAILABLE — give --run-c PATH/run.c (karpathy/llama2.c, outside this repository) or --run PATH');
  process.exit(2);
}
requireBuilt(['format', 'model', 'runtime-node']);
const { readLlama2cCheckpoint, writeLlama2cLegacy } = await import(dist('format'));
const { modelFromLlama2c } = await import(dist('model'));
const { NodeSession } = await import(dist('runtime-node'));

const MODEL = join(ROOT, '..', 'shared', 'models', 'stories3M', 'stories3M-q80.bin');
const TOKENIZER = join(ROOT, '..', 'shared', 'models', 'stories3M', 'tok4096.bin');
if (!existsSync(MODEL)) fail(`${MODEL} is missing (../shared)`);

const tmp = mkdtempSync(join(os.tmpdir(), 'llama2c-peer-'));
try {
  const binaries = {};
  if (runC) {
    for (const [name, flags] of [
      ['Ofast', ['-Ofast', '-march=native']],
      ['O3', ['-O3']],
    ]) {
      const out = join(tmp, `run-${name}`);
      execFileSync('gcc', [...flags, '-o', out, runC, '-lm'], { stdio: 'inherit' });
      binaries[name] = out;
    }
  } else binaries.given = runBin;

  const ckpt = readLlama2cCheckpoint(new Uint8Array(readFileSync(MODEL)), MODEL);
  const f32Path = join(tmp, 'stories3M-f32.bin');
  writeFileSync(f32Path, writeLlama2cLegacy(ckpt.config, ckpt.weights));
  const weights = modelFromLlama2c(ckpt);
  const session = NodeSession.fromWeights(weights, { kernels: 'wasm', threads });

  /**
   * One run of a run.c binary: its own "achieved tok/s" (printed on stderr). Its stdout (one flushed write per
   * token) goes to /dev/null, as in the CPU-time runs: piped to this process, each write woke our event loop on
   * the other core and run.c's own figure fell from ~2,020 to ~1,880 tok/s (idle, 2026-12-05), which had made
   * the wall ratio look 7% better for us than the CPU-time ratio.
   */
  const peerTps = (bin) => {
    const r = spawnSync(bin, [f32Path, '-z', TOKENIZER, '-t', '0', '-n', String(steps)], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.status !== 0) fail(`run.c (${bin}) exited with ${r.status}: ${r.stderr.slice(0, 300)}`);
    const m = /achieved tok\/s: ([0-9.]+)/.exec(r.stderr);
    if (!m) fail(`run.c printed no "achieved tok/s": ${r.stderr.slice(0, 300)}`);
    return Number(m[1]);
  };
  /** CPU seconds (user + system) of one run of a run.c binary for `n` positions, from bash's `times`. */
  const peerCpu = (bin, n) => {
    const r = spawnSync('bash', ['-c', '"$0" "$@" >/dev/null 2>&1; times', bin, f32Path, '-z', TOKENIZER, '-t', '0', '-n', String(n)], { encoding: 'utf8' });
    const m = /^(\d+)m([0-9.]+)s (\d+)m([0-9.]+)s$/m.exec(r.stdout.trim().split('\n')[1] ?? '');
    if (r.status !== 0 || !m) fail(`could not time run.c (${bin}) with bash's times: ${r.stdout} ${r.stderr}`);
    return Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4]);
  };
  let oursPositions = steps;
  let oursCpuTps = 0;
  const ours = () => {
    session.reset();
    let token = 1;
    let t0 = 0;
    let c0 = process.cpuUsage();
    let pos = 0;
    for (; pos < steps; pos++) {
      const logits = session.forward([token]);
      // argmax as run.c's sample_argmax does it (the best value kept in a local)
      let best = 0;
      let bestValue = logits[0];
      for (let i = 1; i < logits.length; i++) {
        const v = logits[i];
        if (v > bestValue) {
          bestValue = v;
          best = i;
        }
      }
      if (!Number.isFinite(logits[best])) fail(`our forward produced a non-finite logit at position ${pos}`);
      if (pos === 0) {
        t0 = performance.now();
        c0 = process.cpuUsage();
      }
      token = best;
      if (token === 1) {
        pos++;
        break;
      }
    }
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(c0);
    oursPositions = pos;
    oursCpuTps = (pos - 1) / ((cpu.user + cpu.system) / 1e6);
    return (pos - 1) / wall;
  };

  const loadBefore = os.loadavg();
  const rows = [];
  ours(); // warm-up (JIT, first kernel calls)
  for (let r = 0; r < rounds; r++) {
    const row = {};
    const order = r % 2 === 0 ? ['ours', ...Object.keys(binaries)] : [...Object.keys(binaries), 'ours'];
    for (const who of order) {
      if (who === 'ours') {
        row.ours = ours();
        row.oursCpu = oursCpuTps;
      } else {
        row[who] = peerTps(binaries[who]);
        // CPU time of oursPositions positions, less a 2-position run's (load time and 2 positions)
        row[`${who}Cpu`] = (oursPositions - 2) / (peerCpu(binaries[who], steps) - peerCpu(binaries[who], 2));
      }
    }
    rows.push(row);
  }
  const names = Object.keys(binaries);
  const summary = { ours: median(rows.map((r) => r.ours)), oursCpu: median(rows.map((r) => r.oursCpu)) };
  const ratios = {};
  const cpuRatios = {};
  for (const n of names) {
    summary[n] = median(rows.map((r) => r[n]));
    summary[`${n}Cpu`] = median(rows.map((r) => r[`${n}Cpu`]));
    const rs = rows.map((r) => r.ours / r[n]);
    ratios[n] = { median: median(rs), min: Math.min(...rs), max: Math.max(...rs) };
    const cs = rows.map((r) => r.oursCpu / r[`${n}Cpu`]);
    cpuRatios[n] = { median: median(cs), min: Math.min(...cs), max: Math.max(...cs) };
  }
  const report = {
    benchmark: 'llama2c-peer',
    model: 'stories3M (int8 export dequantized to float32)',
    steps,
    threads,
    rounds,
    cpu: os.cpus()[0]?.model,
    cpus: os.cpus().length,
    node: process.version,
    loadBefore,
    loadAfter: os.loadavg(),
    tokensPerSecond: summary,
    ratioOursOverPeer: ratios,
    positions: oursPositions,
    ratioOursOverPeerCpuTime: cpuRatios,
    samples: rows,
  };
  if (opts.json) console.log(JSON.stringify(report, null, 2));
  else {
    console.log(`stories3M greedy ${steps} positions, tokens/s (median of ${rounds} rounds): ours (${threads} thread${threads > 1 ? 's' : ''}) ${summary.ours.toFixed(0)}`);
    for (const n of names) {
      console.log(`  run.c ${n}: ${summary[n].toFixed(0)} tok/s; ours ÷ run.c ${ratios[n].median.toFixed(3)}× (range ${ratios[n].min.toFixed(3)}–${ratios[n].max.toFixed(3)})`);
    }
    console.log(`CPU time (${oursPositions} positions): ours ${summary.oursCpu.toFixed(0)} tokens per CPU-second`);
    for (const n of names) {
      console.log(`  run.c ${n}: ${summary[`${n}Cpu`].toFixed(0)}; ours ÷ run.c ${cpuRatios[n].median.toFixed(3)}× (range ${cpuRatios[n].min.toFixed(3)}–${cpuRatios[n].max.toFixed(3)})`);
    }
    console.log(`load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${report.loadAfter.map((l) => l.toFixed(2)).join(' ')} (${report.cpus} CPUs)`);
  }
  session.dispose();
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

