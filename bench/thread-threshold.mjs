#!/usr/bin/env node
/**
 * Where does splitting one product across threads start to pay? (runtime-node's ThreadPool, threads.ts.) A
 * benchmark, not a test: run after `pnpm build`, and read it with the machine's load in mind (printed).
 *
 *   node bench/thread-threshold.mjs [--threads 2] [--rounds 7] [--json]
 *
 * For dense f32 products (WasmDenseLinear) of growing size, n = 1 (decode) and n = 8: the time per call with
 * the calling thread alone and with a pool of --threads that splits EVERY product (minWorkNs 0), measured
 * round-robin in the same process (one sample of each per round; a sample lasts ≥ 30 ms); the median of the
 * rounds. The products' estimated single-thread time (what kernels pass to the pool: MACs × 0.07 ns) is
 * printed next to the measured speed-up; DEFAULT_MIN_WORK_NS should sit where the speed-up crosses 1.
 */
import os from 'node:os';
import { dist, printHelp, requireBuilt } from './lib.mjs';

const args = process.argv.slice(2);
if (args.includes('--help')) printHelp(import.meta.url);
requireBuilt(['runtime-node']);
const { ThreadPool, WasmArena, WasmDenseLinear, arenaModules } = await import(dist('runtime-node'));

const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? dflt : args[i + 1];
};
const THREADS = Number(opt('threads', 2));
const ROUNDS = Number(opt('rounds', 7));
const JSON_OUT = args.includes('--json');
const SHAPES = [
  [64, 192],
  [192, 192],
  [512, 192],
  [192, 512],
  [1024, 512],
  [4096, 192],
  [2048, 2048],
  [8192, 2048],
];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const results = [];
const loadBefore = os.loadavg();
for (const n of [1, 8]) {
  for (const [out, inF] of SHAPES) {
    const arena = new WasmArena({ shared: true, initialBytes: out * inF * 4 + (4 << 20) });
    const w = new Float32Array(out * inF);
    for (let i = 0; i < w.length; i++) w[i] = Math.sin(i * 0.37) * 0.05;
    const lin = new WasmDenseLinear(arena, w, out, inF);
    const x = new Float32Array(n * inF).map((_, i) => Math.cos(i));
    const y = new Float32Array(n * out);
    const estNs = n * out * inF * 0.07;
    const reps = Math.max(20, Math.round(30e6 / Math.max(estNs, 500)));
    const sample = () => {
      const t = performance.now();
      for (let i = 0; i < reps; i++) lin.apply(x, y, n);
      return ((performance.now() - t) * 1000) / reps; // µs per call
    };
    const pool = new ThreadPool([{ arena, modules: arenaModules(arena) }], { threads: THREADS, minWorkNs: 0, adaptive: false });
    const single = [];
    const split = [];
    const round = (record) => {
      arena.threads = undefined; // the calling thread alone
      const a = sample();
      arena.threads = pool;
      const b = sample();
      if (record) {
        single.push(a);
        split.push(b);
      }
    };
    round(false);
    for (let r = 0; r < ROUNDS; r++) round(true);
    pool.dispose();
    const row = { n, shape: `${out}x${inF}`, estimatedNs: Math.round(estNs), oneThreadUs: median(single), splitUs: median(split), speedup: median(single) / median(split) };
    results.push(row);
    if (!JSON_OUT) {
      console.log(`n=${n} ${row.shape.padEnd(10)} est ${(estNs / 1000).toFixed(1).padStart(7)} µs  1 thread ${row.oneThreadUs.toFixed(2).padStart(8)} µs  ${THREADS} threads ${row.splitUs.toFixed(2).padStart(8)} µs  speed-up ${row.speedup.toFixed(2)}×`);
    }
  }
}
const report = { threads: THREADS, rounds: ROUNDS, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, loadBefore, loadAfter: os.loadavg(), results };
if (JSON_OUT) console.log(JSON.stringify(report, null, 2));
else console.log(`load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${report.loadAfter.map((l) => l.toFixed(2)).join(' ')} (${report.cpus} CPUs)`);
