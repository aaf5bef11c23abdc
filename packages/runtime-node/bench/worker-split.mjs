// Experiment (not a test, not shipped): does splitting the rows of one product across 2 threads pay on this
// machine? One thread vs main thread + 1 worker sharing a SharedArrayBuffer-backed WebAssembly.Memory,
// synchronised with Atomics (the worker spins SPIN_MS for the next job, then sleeps in Atomics.wait; the main
// thread spins for the worker's half). Part 1: kernel level on the stories3M shapes. Part 2: stories3M
// sessions (prefill 512 with logits 'all', generation 256) with every product of ≥ MIN_MACS split.
//
//   cd packages/runtime-node && npx tsup && node bench/worker-split.mjs
import { Worker } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { LlamaForward, argmax, modelFromLlama2c } from '@ultrasketch/model';
import { DEFAULT_TILE_PLAN, NodeSession, WasmArena, WasmDenseLinear, wasmForwardParts } from '@ultrasketch/runtime-node';

const SPIN_MS = Number(process.env.SPIN_MS ?? 2); // how long the worker spins for the next job before sleeping
const SHAPES = [
  [192, 192],
  [64, 192],
  [512, 192],
  [192, 512],
  [4096, 192],
];

const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { module, memory, ctrlBuf, tiles, spinMs } = workerData;
const inst = new WebAssembly.Instance(module, { env: { memory } });
const ctrl = new Int32Array(ctrlBuf);
// ctrl: [0] job sequence, [1] done sequence, [2..9] w, x, y, n, cols, ldy, rowBegin, rowEnd
const main = [], single = [], rows = [];
tiles.forEach(({ r, u }, i) => { const t = i + 1; rows[t] = r;
  main[t] = inst.exports['gemm_r' + r + '_t' + t + '_u' + u]; single[t] = inst.exports['gemm_r1_t' + t + '_u' + u]; });
const maxT = tiles.length;
function gemm(w, x, y, n, cols, ldy, rb, re) {
  for (let t0 = 0; t0 < n; t0 += maxT) {
    const T = n - t0 < maxT ? n - t0 : maxT, R = rows[T];
    const me = rb + (((re - rb) / R) | 0) * R, xt = x + t0 * cols * 4, yt = y + t0 * ldy * 4;
    if (me > rb) main[T](w, xt, yt, rb, me, cols, ldy);
    if (re > me) single[T](w, xt, yt, me, re, cols, ldy);
  }
}
let seen = 0;
parentPort.postMessage('ready');
for (;;) {
  let spinUntil = performance.now() + spinMs;
  while (Atomics.load(ctrl, 0) === seen) {
    if (performance.now() > spinUntil) { Atomics.wait(ctrl, 0, seen); spinUntil = performance.now() + spinMs; }
  }
  seen = Atomics.load(ctrl, 0);
  if (seen < 0) break;
  gemm(ctrl[2] >>> 0, ctrl[3] >>> 0, ctrl[4] >>> 0, ctrl[5], ctrl[6], ctrl[7], ctrl[8], ctrl[9]);
  Atomics.store(ctrl, 1, seen);
}
`;

function rand(n, seed) {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

const arena = new WasmArena({ shared: true, maximumBytes: 256 << 20, initialBytes: 32 << 20 });
const ctrlBuf = new SharedArrayBuffer(64);
const ctrl = new Int32Array(ctrlBuf);
const worker = new Worker(workerSource, {
  eval: true,
  workerData: { module: arena.module, memory: arena.memory, ctrlBuf, tiles: DEFAULT_TILE_PLAN.tiles, spinMs: SPIN_MS },
});
await new Promise((r) => worker.once('message', r));

let seq = 0;
/** Rows [0, split) on the worker, [split, rows) here; wait for the worker by spinning. */
function splitApply(lin, xAt, yAt, n) {
  const rows = lin.outFeatures;
  const cols = lin.inFeatures;
  const split = Math.round(rows / 2 / 4) * 4;
  ctrl.set([lin.weightAt, xAt, yAt, n, cols, rows, 0, split], 2);
  Atomics.store(ctrl, 0, ++seq);
  Atomics.notify(ctrl, 0);
  arena.kernels.gemm(lin.weightAt, xAt, yAt, n, cols, rows, split, rows);
  while (Atomics.load(ctrl, 1) !== seq);
}

function best(fn, macs) {
  const reps = Math.max(3, Math.ceil(1e7 / macs));
  let bestT = Infinity;
  for (let round = 0; round < 7; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) fn();
    bestT = Math.min(bestT, Number(process.hrtime.bigint() - t0) / 1e9 / reps);
  }
  return bestT;
}

console.log(`spin ${SPIN_MS} ms; GMAC/s best of 7 rounds; one thread vs two (rows split in half)`);
for (const n of [1, 4, 64]) {
  for (const [rows, cols] of SHAPES) {
    const lin = new WasmDenseLinear(arena, rand(rows * cols, rows), rows, cols);
    const xAt = arena.alloc(n * cols * 4);
    const yAt = arena.alloc(n * rows * 4);
    arena.f32.set(rand(n * cols, 9), xAt >> 2);
    const macs = n * rows * cols;
    const one = best(() => arena.kernels.gemm(lin.weightAt, xAt, yAt, n, cols, rows, 0, rows), macs);
    const ref = arena.f32.slice(yAt >> 2, (yAt >> 2) + n * rows);
    arena.f32.fill(0, yAt >> 2, (yAt >> 2) + n * rows);
    const two = best(() => splitApply(lin, xAt, yAt, n), macs);
    const got = arena.f32.subarray(yAt >> 2, (yAt >> 2) + n * rows);
    if (got.some((v, i) => v !== ref[i])) throw new Error('split result differs');
    console.log(
      `n=${n} ${rows}x${cols}: one ${(macs / one / 1e9).toFixed(2)}  two ${(macs / two / 1e9).toFixed(2)}  ` +
        `(${(one * 1e6).toFixed(1)} µs → ${(two * 1e6).toFixed(1)} µs)`,
    );
  }
}
Atomics.store(ctrl, 0, -1); // stop the part-1 worker
Atomics.notify(ctrl, 0);
await worker.terminate();
Atomics.store(ctrl, 0, 0);
Atomics.store(ctrl, 1, 0);
seq = 0;

// ---- Part 2: the same split inside a whole stories3M session
const MIN_MACS = Number(process.env.MIN_MACS ?? 30000);
const file = new URL('../../../../shared/models/stories3M/stories3M-q80.bin', import.meta.url);
const model = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(file), String(file)));
const parts = wasmForwardParts(model, { arena: { shared: true, maximumBytes: 1 << 30 } });
const sArena = parts.arenas[0];
const sWorker = new Worker(workerSource, {
  eval: true,
  workerData: { module: sArena.module, memory: sArena.memory, ctrlBuf, tiles: DEFAULT_TILE_PLAN.tiles, spinMs: SPIN_MS },
});
await new Promise((r) => sWorker.once('message', r));
/** A WasmDenseLinear whose big products are split across the two threads. */
class SplitLinear {
  constructor(lin) {
    this.lin = lin;
    this.outFeatures = lin.outFeatures;
    this.inFeatures = lin.inFeatures;
  }
  apply(x, y, n) {
    const { lin } = this;
    if (n * lin.outFeatures * lin.inFeatures < MIN_MACS) return lin.apply(x, y, n);
    const xLen = n * lin.inFeatures;
    const xBytes = (xLen * 4 + 15) & ~15;
    const xAt = sArena.scratch(xBytes + n * lin.outFeatures * 4);
    const yAt = xAt + xBytes;
    const heap = sArena.f32;
    heap.set(x.subarray(0, xLen), xAt >> 2);
    const rows = lin.outFeatures;
    const split = Math.round(rows / 2 / 4) * 4;
    ctrl.set([lin.weightAt, xAt, yAt, n, lin.inFeatures, rows, 0, split], 2);
    Atomics.store(ctrl, 0, ++seq);
    Atomics.notify(ctrl, 0);
    sArena.kernels.gemm(lin.weightAt, xAt, yAt, n, lin.inFeatures, rows, split, rows);
    while (Atomics.load(ctrl, 1) !== seq);
    y.set(heap.subarray(yAt >> 2, (yAt >> 2) + n * rows));
  }
}
const splitParts = {
  ...parts,
  layers: parts.layers.map((l) => Object.fromEntries(Object.entries(l).map(([k, lin]) => [k, new SplitLinear(lin)]))),
  classifier: new SplitLinear(parts.classifier),
};
const sessions = {
  one: new NodeSession(new LlamaForward(parts)),
  two: new NodeSession(new LlamaForward(splitParts)),
};
const tokens = Array.from({ length: 512 }, (_, i) => (i === 0 ? 1 : (i * 7919) % model.config.vocabSize));
const check = [sessions.one.forward(tokens.slice(0, 64), { logits: 'all' }).slice(), sessions.two.forward(tokens.slice(0, 64), { logits: 'all' })];
if (check[0].some((v, i) => v !== check[1][i])) throw new Error('split session differs');
const prefill = (s) => {
  s.reset();
  const t0 = performance.now();
  s.forward(tokens, { logits: 'all' });
  return 512 / ((performance.now() - t0) / 1000);
};
const generate = (s) => {
  s.reset();
  let tok = 1;
  const t0 = performance.now();
  for (let p = 0; p < 256; p++) tok = argmax(s.forward([tok]));
  return 256 / ((performance.now() - t0) / 1000);
};
const res = { one: { p: [], g: [] }, two: { p: [], g: [] } };
for (let r = 0; r < 6; r++) {
  for (const k of ['one', 'two']) {
    res[k].p.push(prefill(sessions[k]));
    res[k].g.push(generate(sessions[k]));
  }
}
const med = (a) => [...a].sort((x, y) => x - y)[a.length >> 1].toFixed(0);
const rng = (a) => `${Math.min(...a).toFixed(0)}..${Math.max(...a).toFixed(0)}`;
console.log(`stories3M wasm session, products ≥ ${MIN_MACS} MACs split (6 reps, median and range of tok/s):`);
for (const k of ['one', 'two']) {
  console.log(`${k} thread(s): prefill ${med(res[k].p)} (${rng(res[k].p)})  generation ${med(res[k].g)} (${rng(res[k].g)})`);
}
Atomics.store(ctrl, 0, -1);
Atomics.notify(ctrl, 0);
await sWorker.terminate();
