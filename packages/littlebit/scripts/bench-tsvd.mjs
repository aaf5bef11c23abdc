#!/usr/bin/env node
/**
 * Time of the truncated SVD (randomized range finder + power iterations + exact small SVD) at the sizes
 * LittleBit needs. A benchmark, not a test: run it on a quiet machine after building core.
 *
 *   pnpm --filter @ultrasketch/core build && node packages/littlebit/scripts/bench-tsvd.mjs \
 *     [--rows 2048] [--cols 8192] [--rank 256] [--q 2] [--p 10] [--runs 1]
 *
 * The matrix is Gaussian (seeded); the time does not depend on the spectrum. Prints one line per run and a
 * JSON summary (wall and CPU seconds — the CPU time is the fairer figure on a shared machine; the load
 * average; machine; node version).
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { Rng, truncatedSvd } from '@ultrasketch/core';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '2048' },
    cols: { type: 'string', default: '8192' },
    rank: { type: 'string', default: '256' },
    q: { type: 'string', default: '2' },
    p: { type: 'string', default: '10' },
    runs: { type: 'string', default: '1' },
  },
});
const rows = Number(values.rows);
const cols = Number(values.cols);
const rank = Number(values.rank);
const q = Number(values.q);
const p = Number(values.p);
const runs = Number(values.runs);

const data = new Rng(1).normalArray(rows * cols, 0.02);
const a = { rows, cols, data };
const times = [];
const cpuTimes = [];
for (let run = 0; run < runs; run++) {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const r = truncatedSvd(a, { rank, oversampling: p, powerIterations: q, seed: run });
  const s = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  const cpu = (c.user + c.system) / 1e6;
  times.push(s);
  cpuTimes.push(cpu);
  console.log(`run ${run + 1}: ${s.toFixed(2)} s wall, ${cpu.toFixed(2)} s CPU (σ1 = ${r.s[0].toFixed(4)}, σ${rank} = ${r.s[rank - 1].toFixed(4)})`);
}
const flops = (2 * q + 2) * 2 * rows * cols * (rank + p);
console.log(
  JSON.stringify({
    shape: [rows, cols],
    rank,
    oversampling: p,
    powerIterations: q,
    seconds: times,
    cpuSeconds: cpuTimes,
    loadavg: os.loadavg(),
    productGflop: +(flops / 1e9).toFixed(1),
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    node: process.version,
  }),
);
