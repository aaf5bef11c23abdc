#!/usr/bin/env node
/**
 * Fuzz every file reader: many mutated copies of real files, each read the way the toolkit reads it, checking
 * that every read ends in a value or a typed UltraSketchError (anything else is a CRASH), within 5 s (else a
 * HANG), without allocating more than the input's size times the format's expansion plus a named slack (else an
 * ALLOCATION violation), and the same way twice (else NONDETERMINISTIC).
 *
 * Usage: node bench/fuzz.mjs [options]     (build first: pnpm build)
 *   --cases N          cases per reader (default 100000)
 *   --readers a,b      readers to run, in this order (default: all; --list prints them)
 *   --seed S           run seed (default 1). Case i of reader r is planned from (S, r, i) alone, so a run is
 *                      reproducible, and the same seed gives the same results however it is split or resumed
 *   --start I          first case index (default 0), to re-run or split a range
 *   --out DIR          where crash reproducers are written (default: a new directory under the temp dir)
 *   --json FILE        also write the report as JSON
 *   --checkpoint FILE  save progress there after every chunk; a run started with the same file, seed, cases
 *                      and readers resumes where it stopped
 *   --jobs J           readers run at the same time, one worker each (default 1)
 *   --shared DIR       the shared/ directory with the real models (default: ../shared next to the repository)
 *   --hang-ms MS       a case using more CPU time than this is a hang (default 5000; see HANG_WALL_FACTOR)
 *   --check-every K    re-run every K-th case and compare the outcomes (default 16; 0: never)
 *   --replay FILE      re-run one saved reproducer (a .json from --out) and print what it does
 *   --list             print the readers and their seed files, then exit
 *   --self-test        run the harness's own synthetic readers instead (one that hangs on cases 3 mod 7, one
 *                      that crashes on cases 1 mod 5 and over-allocates on cases 2 mod 5), to check the report
 *   --help             print this help
 *
 * How each property is measured, per case, in a worker thread:
 * - crash: the reader threw something that is not an UltraSketchError (TypeError, RangeError, a stack
 *   overflow, an out-of-memory that kills the worker). The first case of each distinct crash is shrunk with
 *   fast-check and saved (plan, input bytes, stack) under --out;
 * - hang: the main thread's watchdog sees the same case use more than --hang-ms of the worker thread's CPU time
 *   (read from /proc, so that being starved of CPU on a loaded machine is not a hang; wall-clock time where
 *   /proc is missing), ends the worker and carries on in a new one; the case is then re-run alone, and counted
 *   as a hang only if it times out again;
 * - allocation: the ArrayBuffer memory the process gained during the read (process.memoryUsage, read before
 *   and after, the result still held; a garbage collection in between can only make it smaller) and the
 *   buffers the returned value keeps (walked) must stay within expansion × input + ALLOCATION_SLACK_BYTES
 *   (bench/fuzz/readers.mjs); the JS heap's growth within HEAP_EXPANSION × input + HEAP_SLACK_BYTES.
 * Progress goes to stderr; the report (a table per reader) to stdout. Exit status 1 when any reader had a
 * crash, hang, allocation violation or nondeterministic case.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { ROOT, dist, fail, log, printHelp, requireBuilt } from './lib.mjs';
import { caseSeed, crashKey, fc, outcome, planFor, retainedBytes, signature } from './fuzz/lib.mjs';
import { ALLOCATION_SLACK_BYTES, compressedBundleSeeds, fuzzReaders, selfTestReaders } from './fuzz/readers.mjs';

/** JS-heap growth allowed per input byte during one read (parsed JSON headers, piece strings, maps) ... */
const HEAP_EXPANSION = 16;
/** ... plus this much (garbage of the read itself, not yet collected). */
const HEAP_SLACK_BYTES = 64 * 1024 * 1024;
/** Cases a worker runs between two reports of its counts (and checkpoints). */
const CHUNK = 250;
/** Distinct crashes shrunk and saved per reader. */
const MAX_REPRODUCERS = 5;
/**
 * A case is a hang when its worker thread has spent --hang-ms of CPU time in it (measured from the thread's own
 * counters in /proc, so a case merely starved of CPU by other jobs on a loaded machine is not a hang), or,
 * whatever its CPU time (a read blocked without spinning, or no /proc), when it has run this many times
 * --hang-ms of wall-clock time.
 */
const HANG_WALL_FACTOR = 12;
/** The shared state between a worker and the watchdog: [case index, cases started, in a case, thread id]. */
const STATE_INTS = 4;

const PACKAGES = ['core', 'format', 'model', 'pipeline'];
let SHARED = resolve(ROOT, '..', 'shared');

async function modules() {
  const [core, format, model, pipeline] = await Promise.all(PACKAGES.map((p) => import(dist(p))));
  return { core, format, model, pipeline };
}

/** The reader table over the built packages, with seeds read from ../shared and bundles made by compress(). */
async function loadReaders(selfTest) {
  if (!isMainThread) SHARED = workerData.shared;
  const mods = await modules();
  let bundles;
  const modelPath = join(SHARED, 'models/stories260K/stories260K.bin');
  const readers = fuzzReaders({
    ...mods,
    sharedFile: (rel) => (existsSync(join(SHARED, rel)) ? new Uint8Array(readFileSync(join(SHARED, rel))) : undefined),
    bundleSeeds: async () => (bundles ??= existsSync(modelPath) ? await compressedBundleSeeds(mods.pipeline, modelPath) : []),
    registerCodecs: mods.pipeline.registerAllCodecs,
  });
  return { mods, readers: selfTest ? [...readers, ...selfTestReaders()] : readers };
}

const isTypedWith = (core) => (err) => err instanceof core.UltraSketchError;

// =============================================================================================== worker

if (!isMainThread) {
  const { mods, readers } = await loadReaders(workerData.selfTest);
  const isTyped = isTypedWith(mods.core);
  const job = workerData;
  const reader = readers.find((r) => r.name === job.reader);
  const seeds = job.seeds;
  const arb = reader.arbitrary(seeds);
  const state = new Int32Array(job.state);
  // This thread's id, so that the watchdog can read its CPU time (Linux; elsewhere it uses wall-clock time).
  try {
    Atomics.store(state, 3, Number(readlinkSync('/proc/thread-self').split('/').pop()) || 0);
  } catch {
    // no /proc: wall-clock watchdog
  }

  if (job.mode === 'minimize') {
    // fast-check's first value for this seed is the crashing plan; on failure it shrinks, keeping only plans
    // that crash the same way (another bug found while shrinking is not this one).
    const target = job.key;
    const crashes = (plan) => {
      let input;
      try {
        input = reader.input(seeds, plan);
      } catch {
        return false; // a plan the mutators cannot build is not a smaller reproducer
      }
      const { bytes, opts } = input;
      const o = outcome(() => reader.parse(bytes, opts, job.index), isTyped);
      return o.kind === 'crash' && crashKey(o) === target;
    };
    const result = fc.check(fc.property(arb, (plan) => !crashes(plan)), { seed: caseSeed(job.seed, reader.name, job.index), numRuns: 1 });
    const plan = result.failed ? result.counterexample[0] : planFor(arb, job.seed, reader.name, job.index);
    const { bytes, opts } = reader.input(seeds, plan);
    const o = outcome(() => reader.parse(bytes, opts, job.index), isTyped);
    parentPort.postMessage({ type: 'minimized', plan, bytes, opts, name: o.name, message: o.message, stack: o.stack, shrinks: result.numShrinks });
  } else {
    const skip = new Set(job.skip);
    let stats = emptyStats();
    let from = job.from;
    for (let i = job.from; i < job.to; i++) {
      if (!skip.has(i)) runOne(i, stats);
      if ((i + 1 - job.from) % CHUNK === 0 || i + 1 === job.to) {
        parentPort.postMessage({ type: 'chunk', from, to: i + 1, stats });
        stats = emptyStats();
        from = i + 1;
      }
    }
    parentPort.postMessage({ type: 'done' });
  }

  function runOne(i, stats) {
    Atomics.store(state, 0, i);
    // Building the case (state 2) is timed apart from reading it (state 1): a slow mutator is not a hang.
    Atomics.store(state, 2, 2);
    Atomics.add(state, 1, 1);
    const plan = planFor(arb, job.seed, reader.name, i);
    let input;
    try {
      input = reader.input(seeds, plan);
    } catch (err) {
      // Building the case failed: a bug of the fuzzer's mutators, not of the reader; counted apart.
      Atomics.store(state, 2, 0);
      stats.harnessErrors++;
      if (stats.harnessCases.length < 10) stats.harnessCases.push({ index: i, error: String(err?.stack ?? err).slice(0, 300) });
      return;
    }
    const { bytes, opts } = input;
    Atomics.store(state, 2, 1);
    Atomics.add(state, 1, 1);
    const before = process.memoryUsage();
    const t0 = performance.now();
    const o = outcome(() => reader.parse(bytes, opts, i), isTyped);
    const ms = performance.now() - t0;
    const after = process.memoryUsage();
    Atomics.store(state, 2, 0);
    stats.cases++;
    stats.maxMs = Math.max(stats.maxMs, ms);
    if (ms > 1000) stats.slow++;
    if (o.kind === 'ok') stats.ok++;
    else if (o.kind === 'typed') stats.typed[o.code] = (stats.typed[o.code] ?? 0) + 1;
    else {
      stats.crashes++;
      const key = crashKey(o);
      if (!stats.crashKeys[key]) stats.crashKeys[key] = { count: 0, first: i, name: o.name, message: o.message.slice(0, 300), stack: o.stack.split('\n').slice(0, 8).join('\n') };
      stats.crashKeys[key].count++;
    }
    // Allocation: what the read added to ArrayBuffer memory and to the heap, and what the value keeps.
    const bound = reader.expansion * bytes.byteLength + ALLOCATION_SLACK_BYTES;
    const external = after.arrayBuffers - before.arrayBuffers;
    const heap = after.heapUsed - before.heapUsed;
    const kept = o.kind === 'ok' ? retainedBytes(o.value, bytes) : 0;
    const worst = Math.max(external, kept);
    stats.maxExternalRatio = Math.max(stats.maxExternalRatio, external / Math.max(1, bytes.byteLength));
    stats.maxKeptRatio = Math.max(stats.maxKeptRatio, kept / Math.max(1, bytes.byteLength));
    // The ratios are dominated by tiny inputs (a few KB of tables on a 100-byte file); what the bound is about is
    // the excess over expansion × input, in bytes, to compare with the slack.
    stats.maxExcessBytes = Math.max(stats.maxExcessBytes ?? 0, worst - reader.expansion * bytes.byteLength);
    if (worst > bound || heap > HEAP_EXPANSION * bytes.byteLength + HEAP_SLACK_BYTES) {
      stats.alloc++;
      if (stats.allocCases.length < 10) stats.allocCases.push({ index: i, input: bytes.byteLength, external, kept, heap, outcome: o.kind === 'typed' ? o.code : o.kind });
    }
    if (job.checkEvery > 0 && i % job.checkEvery === 0) {
      const again = reader.input(seeds, plan);
      const o2 = outcome(() => reader.parse(again.bytes, again.opts, i), isTyped);
      if (signature(o2) !== signature(o)) {
        stats.nondeterministic++;
        if (stats.nondetCases.length < 10) stats.nondetCases.push({ index: i, first: signature(o).slice(0, 200), second: signature(o2).slice(0, 200) });
      }
    }
  }
}

function emptyStats() {
  return { cases: 0, ok: 0, typed: {}, crashes: 0, crashKeys: {}, hangs: 0, hangCases: [], alloc: 0, allocCases: [], nondeterministic: 0, nondetCases: [], slow: 0, maxMs: 0, maxExternalRatio: 0, maxKeptRatio: 0, maxExcessBytes: 0, harnessErrors: 0, harnessCases: [] };
}

function mergeStats(a, b) {
  a.cases += b.cases;
  a.ok += b.ok;
  for (const [k, v] of Object.entries(b.typed)) a.typed[k] = (a.typed[k] ?? 0) + v;
  a.crashes += b.crashes;
  for (const [k, v] of Object.entries(b.crashKeys)) {
    if (!a.crashKeys[k]) a.crashKeys[k] = { ...v };
    else {
      a.crashKeys[k].count += v.count;
      if (v.first < a.crashKeys[k].first) Object.assign(a.crashKeys[k], { first: v.first, message: v.message, stack: v.stack });
    }
  }
  a.hangs += b.hangs;
  a.hangCases.push(...b.hangCases);
  a.alloc += b.alloc;
  a.allocCases.push(...b.allocCases.slice(0, Math.max(0, 10 - a.allocCases.length)));
  a.nondeterministic += b.nondeterministic;
  a.nondetCases.push(...b.nondetCases.slice(0, Math.max(0, 10 - a.nondetCases.length)));
  a.slow += b.slow;
  a.harnessErrors = (a.harnessErrors ?? 0) + (b.harnessErrors ?? 0);
  a.harnessCases = [...(a.harnessCases ?? []), ...(b.harnessCases ?? [])].slice(0, 10);
  a.maxMs = Math.max(a.maxMs, b.maxMs);
  a.maxExternalRatio = Math.max(a.maxExternalRatio, b.maxExternalRatio);
  a.maxKeptRatio = Math.max(a.maxKeptRatio, b.maxKeptRatio);
  a.maxExcessBytes = Math.max(a.maxExcessBytes ?? 0, b.maxExcessBytes ?? 0);
  return a;
}

// ================================================================================================= main

if (isMainThread) await main();

function parseArgs(argv) {
  const args = { cases: 100000, readers: null, seed: 1, start: 0, out: null, json: null, checkpoint: null, jobs: 1, hangMs: 5000, checkEvery: 16, replay: null, list: false, selfTest: false };
  const num = (flag, v, min = 0) => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min) fail(`${flag} needs an integer ≥ ${min}, got ${JSON.stringify(v)}`, 2);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) fail(`${a} needs a value`, 2);
      return argv[++i];
    };
    switch (a) {
      case '--help':
      case '-h':
        printHelp(import.meta.url);
        break;
      case '--cases': args.cases = num(a, value(), 1); break;
      case '--readers': args.readers = value().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--seed': args.seed = num(a, value()); break;
      case '--start': args.start = num(a, value()); break;
      case '--out': args.out = resolve(value()); break;
      case '--json': args.json = resolve(value()); break;
      case '--checkpoint': args.checkpoint = resolve(value()); break;
      case '--jobs': args.jobs = num(a, value(), 1); break;
      case '--shared': SHARED = resolve(value()); break;
      case '--hang-ms': args.hangMs = num(a, value(), 1); break;
      case '--check-every': args.checkEvery = num(a, value()); break;
      case '--replay': args.replay = resolve(value()); break;
      case '--list': args.list = true; break;
      case '--self-test': args.selfTest = true; break;
      default: fail(`unknown option ${a} (see --help)`, 2);
    }
  }
  if (args.seed > 2 ** 31 - 1) fail('--seed must be below 2^31', 2);
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  requireBuilt(PACKAGES);
  const { mods, readers } = await loadReaders(args.selfTest);
  if (args.replay) return replay(args.replay, readers, mods);
  const unknown = (args.readers ?? []).filter((n) => !readers.some((r) => r.name === n));
  if (unknown.length) fail(`unknown reader(s) ${unknown.join(', ')}; readers: ${readers.map((r) => r.name).join(', ')}`, 2);
  // In the order given (so the longest can be started first with --jobs), else in the table's order.
  const chosen = args.readers ? args.readers.map((n) => readers.find((r) => r.name === n)) : readers.filter((r) => args.selfTest === r.name.startsWith('selftest-'));
  const seedsOf = new Map();
  for (const r of chosen) {
    const seeds = await r.seeds();
    if (seeds.length === 0) fail(`reader ${r.name} has no seed files (is ../shared/models present?)`);
    seedsOf.set(r.name, seeds);
  }
  if (args.list) {
    for (const r of chosen) process.stdout.write(`${r.name}: ${r.describe}\n${seedsOf.get(r.name).map((s) => `  seed: ${s.label} (${s.bytes.byteLength} bytes)\n`).join('')}`);
    return;
  }
  const out = args.out ?? mkdtempSync(join(tmpdir(), 'ultrasketch-fuzz-'));
  mkdirSync(out, { recursive: true });

  const end = args.start + args.cases;
  let checkpoint = { seed: args.seed, start: args.start, end, readers: chosen.map((r) => r.name), progress: {} };
  if (args.checkpoint && existsSync(args.checkpoint)) {
    const saved = JSON.parse(readFileSync(args.checkpoint, 'utf8'));
    if (saved.seed !== args.seed || saved.start !== args.start || saved.end !== end || saved.readers.join() !== checkpoint.readers.join()) {
      fail(`checkpoint ${args.checkpoint} is for another run (seed ${saved.seed}, cases ${saved.start}..${saved.end}, readers ${saved.readers}); remove it or change the options`, 2);
    }
    checkpoint = saved;
    log(`resuming from ${args.checkpoint}`);
  }
  const saveCheckpoint = () => {
    if (!args.checkpoint) return;
    writeFileSync(`${args.checkpoint}.tmp`, JSON.stringify(checkpoint));
    renameSync(`${args.checkpoint}.tmp`, args.checkpoint);
  };

  log(`fuzzing ${chosen.map((r) => r.name).join(', ')}: cases ${args.start}..${end - 1}, seed ${args.seed}, reproducers in ${out}`);
  const started = Date.now();
  const queue = [...chosen];
  const results = {};
  await Promise.all(
    Array.from({ length: Math.min(args.jobs, chosen.length) }, async () => {
      while (queue.length) {
        const r = queue.shift();
        const saved = checkpoint.progress[r.name] ?? { next: args.start, stats: emptyStats(), ms: 0 };
        checkpoint.progress[r.name] = saved;
        results[r.name] = await fuzzReader(r, seedsOf.get(r.name), args, saved, end, saveCheckpoint);
        results[r.name].reproducers = await writeReproducers(r, seedsOf.get(r.name), args, results[r.name].stats, out);
      }
    }),
  );
  const report = {
    command: `node bench/fuzz.mjs ${process.argv.slice(2).join(' ')}`,
    seed: args.seed,
    cases: { start: args.start, end },
    limits: { hangMs: args.hangMs, allocationSlackBytes: ALLOCATION_SLACK_BYTES, heapExpansion: HEAP_EXPANSION, heapSlackBytes: HEAP_SLACK_BYTES },
    minutes: (Date.now() - started) / 60000,
    out,
    readers: Object.fromEntries(
      chosen.map((r) => [r.name, { describe: r.describe, expansion: r.expansion, seeds: seedsOf.get(r.name).map((s) => `${s.label} (${s.bytes.byteLength} bytes)`), ...results[r.name] }]),
    ),
  };
  if (args.json) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(formatReport(report));
  const bad = Object.values(report.readers).some((r) => r.stats.crashes || r.stats.hangs || r.stats.alloc || r.stats.nondeterministic || r.stats.harnessErrors);
  process.exitCode = bad ? 1 : 0;
}

/**
 * Run one reader's cases in a worker; the watchdog ends a worker whose case runs past --hang-ms, and the run
 * goes on in a new worker from the last reported chunk, without that case. Suspected hangs are re-run alone.
 */
async function fuzzReader(r, seeds, args, saved, end, saveCheckpoint) {
  // Cases skipped on the first pass (suspected hangs, worker deaths, cases too slow to build), kept in the
  // checkpoint so that a resumed run still re-runs or reports them.
  saved.suspects ??= [];
  const suspects = saved.suspects;
  const t0 = Date.now() - saved.ms;
  let lastLog = 0;
  while (saved.next < end) {
    const res = await runWorker(r, seeds, args, { from: saved.next, to: end, skip: suspects.filter((s) => s >= saved.next) }, (chunk) => {
      mergeStats(saved.stats, chunk.stats);
      saved.next = chunk.to;
      saved.ms = Date.now() - t0;
      saveCheckpoint();
      if (Date.now() - lastLog > 5000 || saved.next === end) {
        lastLog = Date.now();
        const s = saved.stats;
        const rate = (saved.next - args.start) / Math.max(1e-3, saved.ms / 1000);
        log(`${r.name}: ${saved.next - args.start}/${end - args.start} (${rate.toFixed(0)}/s, eta ${((end - saved.next) / Math.max(rate, 1e-9) / 60).toFixed(1)} min) ok ${s.ok} crashes ${s.crashes} hangs ${s.hangs + suspects.length} alloc ${s.alloc} nondet ${s.nondeterministic}`);
      }
    });
    if (res.kind === 'hang') {
      log(`${r.name}: case ${res.index} ran past ${args.hangMs} ms; ending the worker, re-running it alone later`);
      suspects.push(res.index);
    } else if (res.kind === 'slow-build') {
      log(`${r.name}: building case ${res.index} took past ${HANG_WALL_FACTOR} × ${args.hangMs} ms; skipped (a fuzzer error)`);
      const s = emptyStats();
      s.harnessErrors = 1;
      s.harnessCases.push({ index: res.index, error: 'the mutators took too long to build this case' });
      mergeStats(saved.stats, s);
      suspects.push(res.index);
      saved.deaths = [...(saved.deaths ?? []), res.index]; // not re-run
    } else if (res.kind === 'died') {
      // The worker itself died (out of memory, a fatal error): that case is a crash.
      log(`${r.name}: the worker died on case ${res.index}: ${res.message}`);
      const key = `worker died: ${res.message.slice(0, 80)}`;
      const s = emptyStats();
      s.cases = 1;
      s.crashes = 1;
      s.crashKeys[key] = { count: 1, first: res.index, name: 'WorkerDeath', message: res.message, stack: '' };
      mergeStats(saved.stats, s);
      suspects.push(res.index); // so the restart skips it; counted above, not re-run
      saved.deaths = [...(saved.deaths ?? []), res.index];
    }
  }
  // Re-run each suspect alone; a second timeout is a hang, otherwise its counts are merged as usual.
  for (const index of suspects.filter((i) => !(saved.deaths ?? []).includes(i))) {
    if ((saved.confirmed ?? []).includes(index)) continue;
    const res = await runWorker(r, seeds, { ...args, checkEvery: 0 }, { from: index, to: index + 1, skip: [] }, (chunk) => mergeStats(saved.stats, chunk.stats));
    if (res.kind === 'hang') {
      const s = emptyStats();
      s.cases = 1;
      s.hangs = 1;
      s.hangCases.push({ index, plan: planFor(r.arbitrary(seeds), args.seed, r.name, index) });
      mergeStats(saved.stats, s);
    }
    saved.confirmed = [...(saved.confirmed ?? []), index];
    saveCheckpoint();
  }
  return { stats: saved.stats, minutes: (Date.now() - t0) / 60000 };
}

/** One worker over a range of cases; resolves when it finishes, hangs (watchdog) or dies. */
function runWorker(r, seeds, args, range, onChunk) {
  return new Promise((resolvePromise) => {
    const state = new SharedArrayBuffer(4 * STATE_INTS);
    const view = new Int32Array(state);
    const worker = new Worker(new URL(import.meta.url), {
      workerData: { mode: 'run', reader: r.name, seeds, seed: args.seed, checkEvery: args.checkEvery, state, shared: SHARED, selfTest: args.selfTest, ...range },
      resourceLimits: { maxOldGenerationSizeMb: 4096 },
    });
    let settled = false;
    const settle = (v) => {
      if (settled) return;
      settled = true;
      clearInterval(watchdog);
      resolvePromise(v);
    };
    let seen = -1;
    let since = Date.now();
    let cpuSince = 0;
    const watchdog = setInterval(() => {
      const started = Atomics.load(view, 1);
      const tid = Atomics.load(view, 3);
      const cpu = tid ? threadCpuMs(tid) : undefined;
      if (started !== seen) {
        seen = started;
        since = Date.now();
        cpuSince = cpu ?? 0;
        return;
      }
      const phase = Atomics.load(view, 2);
      if (phase === 0) return;
      const wall = Date.now() - since;
      const spent = cpu === undefined ? wall : cpu - cpuSince;
      // While the case is being built (phase 2) only a runaway mutator is stopped, at 12 × the limit.
      const limit = phase === 1 ? args.hangMs : HANG_WALL_FACTOR * args.hangMs;
      if (spent > limit || wall > HANG_WALL_FACTOR * args.hangMs) {
        const index = Atomics.load(view, 0);
        void worker.terminate();
        settle({ kind: phase === 1 ? 'hang' : 'slow-build', index });
      }
    }, 100);
    worker.on('message', (m) => {
      if (m.type === 'chunk') onChunk(m);
      else if (m.type === 'done') {
        void worker.terminate();
        settle({ kind: 'done' });
      }
    });
    // A worker that dies outside a case (it could not load the packages, say) would die again on restart.
    const died = (message) => {
      if (settled) return; // the exit that follows our own terminate()
      if (Atomics.load(view, 2) !== 1) fail(`the ${r.name} worker failed outside any case: ${message}`);
      settle({ kind: 'died', index: Atomics.load(view, 0), message });
    };
    worker.on('error', (err) => died(`${err?.code ?? ''} ${err?.stack ?? err}`.trim()));
    worker.on('exit', (code) => died(`worker exited with code ${code}`));
  });
}

/** CPU time (user + system, ms) thread `tid` of this process has used, from /proc; undefined where unreadable. */
function threadCpuMs(tid) {
  try {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces, so split after its closing parenthesis): utime and
    // stime are fields 14 and 15 of the line, in clock ticks of 1/100 s on Linux.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return undefined;
  }
}

/** Shrink the first case of each distinct crash (in a worker, under the watchdog) and save it. */
async function writeReproducers(r, seeds, args, stats, out) {
  const files = [];
  const keys = Object.entries(stats.crashKeys)
    .filter(([, v]) => v.name !== 'WorkerDeath')
    .sort((a, b) => a[1].first - b[1].first)
    .slice(0, MAX_REPRODUCERS);
  for (const [key, info] of keys) {
    log(`${r.name}: shrinking case ${info.first} (${key})`);
    const m = await new Promise((resolvePromise) => {
      const worker = new Worker(new URL(import.meta.url), {
        workerData: { mode: 'minimize', reader: r.name, seeds, seed: args.seed, index: info.first, key, state: new SharedArrayBuffer(4 * STATE_INTS), shared: SHARED, selfTest: args.selfTest },
      });
      const timer = setTimeout(() => {
        void worker.terminate();
        resolvePromise(null);
      }, 10 * 60 * 1000);
      worker.on('message', (msg) => {
        clearTimeout(timer);
        void worker.terminate();
        resolvePromise(msg);
      });
      worker.on('error', () => resolvePromise(null));
    });
    const base = join(out, `${r.name}-seed${args.seed}-case${info.first}`);
    const record = {
      reader: r.name,
      seed: args.seed,
      index: info.first,
      key,
      replay: `node bench/fuzz.mjs --replay ${base}.json`,
      rerun: `node bench/fuzz.mjs --readers ${r.name} --seed ${args.seed} --start ${info.first} --cases 1`,
      originalPlan: planFor(r.arbitrary(seeds), args.seed, r.name, info.first),
      plan: m?.plan ?? null,
      opts: m?.opts ?? null,
      shrinks: m?.shrinks ?? 0,
      error: m ? { name: m.name, message: m.message, stack: m.stack } : info,
    };
    writeFileSync(`${base}.json`, `${JSON.stringify(record, null, 2)}\n`);
    if (m) writeFileSync(`${base}.bin`, m.bytes);
    info.reproducer = `${base}.json`;
    files.push(`${base}.json`);
  }
  return files;
}

/** Re-run a saved reproducer: the shrunk plan applied to the same seed file, through the same reader. */
async function replay(file, readers, mods) {
  const rec = JSON.parse(readFileSync(file, 'utf8'));
  const r = readers.find((x) => x.name === rec.reader);
  if (!r) fail(`reproducer names an unknown reader ${rec.reader}`);
  const seeds = await r.seeds();
  const { bytes, opts } = r.input(seeds, rec.plan ?? rec.originalPlan);
  const o = outcome(() => r.parse(bytes, opts, rec.index), isTypedWith(mods.core));
  process.stdout.write(`${r.name}, ${bytes.byteLength} bytes, options ${JSON.stringify(opts)}\n`);
  if (o.kind === 'crash') process.stdout.write(`CRASH ${o.stack}\n`);
  else process.stdout.write(o.kind === 'typed' ? `typed error ${o.code}: ${o.message}\n` : 'read it without error\n');
  process.exitCode = o.kind === 'crash' ? 1 : 0;
}

function formatReport(report) {
  const lines = [`fuzz: seed ${report.seed}, cases ${report.cases.start}..${report.cases.end - 1} per reader, ${report.minutes.toFixed(1)} min\n`];
  lines.push('| reader | cases | read ok | typed errors | crashes | hangs | alloc. violations | nondeterministic | slowest case ms | max kept/input | max ArrayBuffer growth/input | max bytes over expansion × input | fuzzer errors |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [name, r] of Object.entries(report.readers)) {
    const s = r.stats;
    const typed = Object.values(s.typed).reduce((a, b) => a + b, 0);
    lines.push(`| ${name} | ${s.cases} | ${s.ok} | ${typed} | ${s.crashes} | ${s.hangs} | ${s.alloc} | ${s.nondeterministic} | ${s.maxMs.toFixed(0)} | ${s.maxKeptRatio.toFixed(2)} | ${s.maxExternalRatio.toFixed(2)} | ${Math.max(0, s.maxExcessBytes ?? 0)} | ${s.harnessErrors ?? 0} |`);
  }
  lines.push('');
  for (const [name, r] of Object.entries(report.readers)) {
    const s = r.stats;
    const codes = Object.entries(s.typed).sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(', ');
    lines.push(`${name} (expansion ${r.expansion}×, ${r.minutes.toFixed(1)} min): typed errors by code: ${codes || 'none'}`);
    for (const [key, c] of Object.entries(s.crashKeys)) lines.push(`  CRASH ×${c.count} (first: case ${c.first}) ${key}${c.reproducer ? `\n    reproducer: ${c.reproducer}` : ''}`);
    for (const h of s.hangCases) lines.push(`  HANG case ${h.index}`);
    for (const a of s.allocCases) lines.push(`  ALLOCATION case ${a.index}: input ${a.input} B, ArrayBuffers +${a.external} B, kept ${a.kept} B, heap +${a.heap} B (${a.outcome})`);
    for (const d of s.nondetCases) lines.push(`  NONDETERMINISTIC case ${d.index}: ${d.first} vs ${d.second}`);
    for (const h of s.harnessCases ?? []) lines.push(`  FUZZER ERROR (building case ${h.index}, not counted as a read): ${h.error}`);
  }
  return `${lines.join('\n')}\n`;
}
