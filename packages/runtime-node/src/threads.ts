/**
 * Inference on several cores: the output rows of one product are split across worker threads that run THE
 * SAME wasm kernels over THE SAME shared `WebAssembly.Memory` (weights, inputs and outputs are never copied).
 *
 * How a product is split. A kernel describes its row-parallel part as a *body* `(call, r0, r1)` that issues
 * the wasm calls computing output rows [r0, r1) — `call(fn, ...args)` with the kernel's own exported
 * functions. On the main thread `call` runs the function; for a worker it is *recorded* (function id and
 * arguments, into a SharedArrayBuffer) and the worker replays it on its own instance of the same module. The
 * main thread does the last part itself, then waits for the workers. Row boundaries are multiples of the
 * kernel's row tile (`align`), so every row is computed by exactly one thread with exactly the calls — the same
 * tile, the same summation order — it gets with one thread: results are bit-identical for any thread count.
 *
 * When not to split. Handing a part to a worker costs a few microseconds (a store the worker sees, its reply),
 * and more when the worker has gone to sleep; a product must be worth it. Kernels pass an estimate of the
 * product's single-thread time in ns (`work`), and products under `minWorkNs` (default DEFAULT_MIN_WORK_NS,
 * measured with bench/thread-threshold.mjs) run on the calling thread alone.
 *
 * Waiting. A worker spins for `spinMs` after its last job (default 0: on a shared machine a spinning worker
 * steals the core the caller needs), then sleeps in Atomics.wait slices of at most 50 ms that re-read its job word, so a missed
 * wake-up costs at most one slice and a stop request is seen. The main thread spins briefly for its workers,
 * then waits in the same slices; a worker that finishes no call for `stallMs` is a stall — a typed error naming
 * its counters, and the pool is stopped (the session then runs on one thread). Workers are unref'd: an
 * undisposed session never keeps the process alive.
 */
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
// A type-only import: the class is loaded when a pool starts (nodeWorker() below), so this module — part of
// runtime-node's main entry — can be bundled for a browser page, where no pool is ever started.
import type { Worker } from 'node:worker_threads';
import type { WasmArena } from './wasm/arena.js';
import type { WasmMemory, WasmModule } from './wasm/engine.js';

/** Issue one wasm call: run it (main thread) or record it for a worker. */
export type RowCall = (fn: (...args: number[]) => unknown, ...args: number[]) => void;
/** The wasm calls that compute output rows [r0, r1) of one product. */
export type RowBody = (call: RowCall, r0: number, r1: number) => void;

/**
 * Products estimated below this many ns of single-thread time run on one thread. Measured on the 2-vCPU
 * development VM with bench/thread-threshold.mjs (docs/kernels.md "Threads").
 */
export const DEFAULT_MIN_WORK_NS = 40_000;
/** Longest single Atomics.wait on either side (ms): every wait is a loop of these that re-reads its word. */
export const WAIT_SLICE_MS = 50;

// control words (Int32) of the pool, shared by all its workers
const JOB = 0; // sequence number of the current job (main writes); −1 = stop
const CLAIM = 1; // job << 16 | chunks << 8 | next chunk to claim: claims are tagged with their job AND its chunk count
const DONE = 2; // chunks of the current job finished
const STATUS = 3; // 0 ok, 1 a chunk threw (message in the error bytes)
const PROGRESS = 4; // chunks finished by workers, ever (the stall detector reads it)
const NCHUNKS = 5; // chunks in the current job
const READY = 6; // workers that have instantiated their modules
const SPIN = 7; // while > 0 (µs): a batch (prefill) is running — after a job, workers spin this long for the next
const CHUNK_AT = 16; // CHUNK_AT + c: first call of chunk c (and CHUNK_AT + nchunks: the end)
const CTRL_WORDS = CHUNK_AT + 258;
const CHUNK_BITS = 8;
const MAX_CHUNKS = (1 << CHUNK_BITS) - 1;
/**
 * The job number's bits in CLAIM (above the chunk count and the next chunk). The count is in the same word as
 * the tag because a worker still in the previous job's claim loop must compare the next chunk with ITS job's
 * count: with the count in a separate word (as before the fifth slice of issue 12), a worker could read the old
 * job's claim word and the new job's larger count, claim a chunk index the old job did not have, and replay the
 * new job's recorded chunk before it was published — twice in all, which corrupts the accumulating kernels
 * (sketch/hashednets, LittleBit's second stage) and miscounts DONE. Seen once as a bit mismatch of hashednets
 * in pipeline/test/threads.test.ts under heavy load, after the glue's small jobs made back-to-back jobs common.
 */
const COUNT_SHIFT = CHUNK_BITS;
const SEQ_SHIFT = 2 * CHUNK_BITS;
const SEQ_MASK = (1 << (31 - SEQ_SHIFT)) - 1;
/** Calls per job and f64 slots per call ([fn id, nargs, args…]). */
const MAX_CALLS = 4096;
const CALL_SLOTS = 16;
const ERROR_BYTES = 1024;
/**
 * How long (µs) a worker spins after a job during a batch (ThreadPool.batch). A prefill's products and glue follow
 * each other within microseconds, so the spin ends at the next job; it only costs a core for this long after
 * the batch's last job — and the caller clears it when the batch ends. (Spinning through the whole prefill, 20 ms,
 * was measured too: no faster once large products are split without timing, BATCH_SURE_SPLIT_NS; ~2% slower for
 * the float model, a spinning worker taking from the caller's serial work.)
 */
export const BATCH_SPIN_US = 200;
/**
 * During a batch, products estimated at this many ns or more (4 × DEFAULT_MIN_WORK_NS, 20 chunks' worth) are split
 * without timing the two ways. Every stories3M prefill product of that size measured 1.3–2.7× faster split with the
 * worker awake (LittleBit 0.55, float), but the adaptive policy timed some splits right after a run of small
 * products, when the worker had gone to sleep and the split paid its wake-up; with few calls per shape in a prefill
 * those samples kept about half of a LittleBit prefill's large products on one thread (results §2.1). Smaller
 * products stay adaptive (a 512-row glue call of ~100 µs measured slower split).
 */
const BATCH_SURE_SPLIT_NS = 160_000;
/** Target single-thread time of one chunk (ns): small enough to rebalance, large enough to amortize a claim. */
const CHUNK_NS = 8_000;

export interface ThreadPoolOptions {
  /** Threads in all, the caller's included (≥ 2 to start workers). */
  threads: number;
  /** Products estimated below this many ns run on the calling thread alone (default DEFAULT_MIN_WORK_NS). */
  minWorkNs?: number;
  /**
   * How long a worker spins for its next job before sleeping (ms). Default 0: a spinning worker takes a core
   * from whatever else runs — on the loaded 2-vCPU development VM a 0.3 ms spin made hashednets generation 25%
   * slower with 2 threads than with 1, no spin made it equal (bench/threads-speed.mjs) — and the adaptive policy
   * already counts the wake-up in a split's time. A dedicated machine may prefer ~0.3.
   */
  spinMs?: number;
  /**
   * µs a worker spins after a job while the caller runs a batch (`batch(true)`: a prefill). Default: the
   * environment's ULTRASKETCH_BATCH_SPIN_US, else BATCH_SPIN_US; 0 = sleep at once (the behaviour before it).
   */
  batchSpinUs?: number;
  /** A job whose chunks make no progress for this long is a stall: typed error (ms, default 30 000). */
  stallMs?: number;
  /**
   * true (default): per product shape, time both ways and keep the faster (see `rows`); false: split every
   * product of at least minWorkNs (tests, threshold measurements).
   */
  adaptive?: boolean;
}

/** Windows (of `window` calls) before the policy trusts its timings; then one window in RECHECK (up to MAX_RECHECK) tries the other way. */
const EXPLORE_CALLS = 6;
const RECHECK = 32;
/**
 * A recheck that confirms the faster way doubles the interval to the next one, up to this (a change resets it
 * to RECHECK): on a machine whose second core other jobs hold, a split product can wait a whole time slice for
 * a descheduled worker, and one such recheck in 32 tokens made 2-thread LittleBit generation 3–6% slower than 1
 * thread (bench/threads-speed.mjs, load ~4.7, issue 12 fifth slice).
 */
const MAX_RECHECK = 1024;
const EWMA = 0.25;

/**
 * Two ways of doing the same work (same results), timed, the faster kept, in windows of `window` calls: the first
 * EXPLORE_CALLS windows alternate (one, other, one, …; the first window of each way is a warm-up, not timed: a
 * whole window, because a decode program compiled on first use runs V8's baseline code until its optimized code
 * is ready — timing from its second call made a 2-thread session take the pooled forward for most tokens, 0.87×
 * one thread, 2026-12-05), then the faster is used and one window in `interval` tries the other again (RECHECK,
 * doubling to MAX_RECHECK while the answer holds). The pool uses one per product shape (one thread or split,
 * windows of one call); a session one for its generated tokens (decode program on one thread, or the forward with
 * the pool).
 *
 * "Faster" is decided on PAIRS of adjacent windows of the two ways: the smoothed log of their time ratio (an
 * exploration gives three pairs; a recheck window pairs with the window before it and the one after it). The
 * shared VM's speed drifts by tens of % from one second to the next, the same for both ways; comparing each way's
 * own smoothed time instead compared samples taken minutes apart, so one recheck in a slow spell could keep a session
 * on its slower way (two 2-thread runs of bench/threads-speed.mjs generated at 0.86–0.87× one thread, their counters
 * showing the pooled forward at work, seventh session).
 */
export class FasterOf {
  /** Smoothed ln(second's time ÷ first's) over adjacent windows of the two ways (NaN until a pair was timed). */
  logRatio = Number.NaN;
  /** Windows decided so far; the next window that rechecks the slower way, and the interval between rechecks. */
  private windows = 0;
  private interval = RECHECK;
  private next = RECHECK;
  /** The current window: its way, whether it is a recheck, calls made and ms spent in them. */
  private useSecond = false;
  private recheck = false;
  private callsInWindow = 0;
  private msInWindow = 0;
  /** The last timed window: its way (null before the first) and its ms per call; whether it was a recheck. */
  private lastSecond: boolean | null = null;
  private lastDt = 0;
  private lastWasRecheck = false;

  /**
   * `margin`: the second way is taken only when it is faster by more than this fraction (0: whichever is faster).
   * `window`: calls per decision, timed together (1: every call). A session uses 5% and windows of 8 tokens for its
   * pooled forward against the program: on a small model the two ways of a token are within a few % of each other,
   * one token's time is noisy (a worker's wake-up, a cache refilled after a prefill), and a single noisy sample
   * had kept a 2-thread session on its slower way for hundreds of tokens (0.88–0.94× one thread, 2026-12-05).
   */
  constructor(
    private readonly margin = 0,
    private readonly window = 1,
    /** The clock (ms); tests give their own. */
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Run `first` or `second` (see the class comment) and return its result. */
  run<T>(first: () => T, second: () => T): T {
    if (this.callsInWindow === 0) {
      const k = this.windows;
      const secondFaster = this.secondFaster();
      this.recheck = k >= EXPLORE_CALLS && k >= this.next;
      this.useSecond = k < EXPLORE_CALLS ? k % 2 === 1 : this.recheck ? !secondFaster : secondFaster;
    }
    const t = this.now();
    const result = this.useSecond ? second() : first();
    this.msInWindow += this.now() - t;
    if (++this.callsInWindow < this.window) return result;
    const k = this.windows++;
    const dt = this.msInWindow / this.window;
    this.callsInWindow = 0;
    this.msInWindow = 0;
    // each way's first window is its warm-up (code compiled on first use, a worker woken from sleep): not counted
    if (k < 2) return result;
    // a pair: this window and the one before it, of the other way
    let pairRatio = Number.NaN;
    if (this.lastSecond !== null && this.lastSecond !== this.useSecond) {
      pairRatio = this.useSecond ? Math.log(dt / this.lastDt) : Math.log(this.lastDt / dt);
      if (Number.isFinite(pairRatio)) this.logRatio = Number.isNaN(this.logRatio) ? pairRatio : this.logRatio + EWMA * (pairRatio - this.logRatio);
    }
    // A recheck's interval is settled by its second pair (the recheck and the window after it), when both of its
    // pairs are in. It backs off (doubles) only when the answer holds and this pair agrees with it: a pair that
    // finds the other way faster keeps the rechecks 32 windows apart until the smoothed ratio has crossed.
    if (this.recheck) this.next = k + this.interval; // provisional: the next window is not a recheck
    else if (this.lastWasRecheck) {
      const secondFasterNow = this.secondFaster();
      const pairSaysSecond = pairRatio < Math.log(1 - this.margin);
      this.interval = pairSaysSecond === secondFasterNow ? Math.min(MAX_RECHECK, 2 * this.interval) : RECHECK;
      this.next = k - 1 + this.interval;
    }
    this.lastSecond = this.useSecond;
    this.lastDt = dt;
    this.lastWasRecheck = this.recheck;
    return result;
  }

  private secondFaster(): boolean {
    return this.logRatio < Math.log(1 - this.margin);
  }
}

/*
 * One job = a product cut into chunks of rows (tile-aligned), each chunk a recorded list of wasm calls. The
 * caller and the workers CLAIM chunks one at a time (compare-and-swap on CLAIM, tagged with the job's number
 * so a late worker can never take a chunk of another job) until none is left; the caller then waits for the
 * chunks others are still running. Which thread runs a chunk varies; what a chunk computes does not. A worker
 * that is descheduled (a loaded machine) simply claims fewer chunks: the caller does the rest itself.
 */
const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { ctrlBuf, argsBuf, errBuf, memories, modules, spinMs, sliceMs } = workerData;
const ctrl = new Int32Array(ctrlBuf);
const args = new Float64Array(argsBuf);
const err = new Uint8Array(errBuf);
const fns = [];
for (const m of modules) {
  const inst = new WebAssembly.Instance(m.module, { env: { memory: memories[m.arena] } });
  for (const name of m.names) fns.push(inst.exports[name]);
}
Atomics.add(ctrl, ${READY}, 1);
let seen = 0;
const a = [];
for (;;) {
  let job = Atomics.load(ctrl, ${JOB});
  if (job === seen) {
    // spin spinMs, or — while the caller runs a batch (SPIN > 0) — that many µs: a prefill's jobs come back to
    // back, and a sleeping worker's wake-up is a fixed cost per split product
    const t0 = performance.now();
    for (;;) {
      if ((job = Atomics.load(ctrl, ${JOB})) !== seen) break;
      const now = performance.now();
      if (now >= t0 + spinMs && now >= t0 + Atomics.load(ctrl, ${SPIN}) / 1000) break;
    }
    // asleep: short slices that re-read the word (a missed notify costs one slice, never a hang)
    while ((job = Atomics.load(ctrl, ${JOB})) === seen) Atomics.wait(ctrl, ${JOB}, seen, sliceMs);
  }
  if (job < 0) break;
  seen = job;
  const seq = job & ${SEQ_MASK};
  for (;;) {
    const w = Atomics.load(ctrl, ${CLAIM});
    if (w >>> ${SEQ_SHIFT} !== seq) break; // another job already
    const c = w & ${MAX_CHUNKS};
    if (c >= ((w >>> ${COUNT_SHIFT}) & ${MAX_CHUNKS})) break; // this job's count, from the same word
    if (Atomics.compareExchange(ctrl, ${CLAIM}, w, w + 1) !== w) continue;
    try {
      for (let k = ctrl[${CHUNK_AT} + c], end = ctrl[${CHUNK_AT} + c + 1]; k < end; k++) {
        const o = k * ${CALL_SLOTS};
        const n = args[o + 1];
        a.length = n;
        for (let i = 0; i < n; i++) a[i] = args[o + 2 + i];
        fns[args[o]](...a);
      }
    } catch (e) {
      const msg = new TextEncoder().encode(String((e && e.stack) || e)).subarray(0, ${ERROR_BYTES - 1});
      err.fill(0); err.set(msg);
      Atomics.store(ctrl, ${STATUS}, 1);
    }
    Atomics.add(ctrl, ${PROGRESS}, 1);
    Atomics.add(ctrl, ${DONE}, 1);
    Atomics.notify(ctrl, ${DONE});
  }
}
`;

/**
 * A memory whose products a pool may split: a `WasmArena`, or another kernel's memory (the attention kernel's).
 * The pool sets `threads` to itself while it runs and clears it on dispose.
 */
export interface PoolMemory {
  readonly memory: WasmMemory;
  readonly shared: boolean;
  threads: ThreadPool | undefined;
}

/** Exported functions of the kernel modules instantiated over a memory (see wasm-common `kernelExports`). */
export interface ArenaModules {
  arena: PoolMemory;
  modules: { module: WasmModule; exports: Record<string, unknown> }[];
}

type AnyFn = (...args: number[]) => unknown;

export class ThreadPool {
  readonly threads: number;
  readonly minWorkNs: number;
  private readonly stallMs: number;
  private readonly workers: Worker[] = [];
  private readonly ctrl = new Int32Array(new SharedArrayBuffer(CTRL_WORDS * 4));
  private readonly args = new Float64Array(new SharedArrayBuffer(MAX_CALLS * CALL_SLOTS * 8));
  private readonly err = new Uint8Array(new SharedArrayBuffer(ERROR_BYTES));
  /** Function ids (the workers number the same exports the same way) and the caller's functions by id. */
  private readonly ids = new Map<unknown, number>();
  private readonly fns: AnyFn[] = [];
  private seq = 0;
  private stopped = false;
  /** Products split across threads / run on one thread (for reports and tests). */
  splitCount = 0;
  singleCount = 0;
  /** Chunks of split products run by the calling thread / by the workers. */
  chunksHere = 0;
  chunksTotal = 0;
  private readonly arenas: PoolMemory[];
  private readonly adaptive: boolean;
  private readonly batchSpinUs: number;
  /** Between batch(true) and batch(false): large products are split without timing (BATCH_SURE_SPLIT_NS). */
  private batching = false;
  /** Per product shape: one thread (first) against split (second). */
  private readonly shapes = new Map<number, FasterOf>();
  private calls = 0;
  private overflow = false;
  private readonly argv: number[] = [];
  private readonly direct: RowCall = (fn, ...args) => {
    fn(...args);
  };
  private readonly record: RowCall = (fn, ...args) => {
    const id = this.ids.get(fn);
    if (id === undefined || this.calls >= MAX_CALLS || args.length > CALL_SLOTS - 2) {
      this.overflow = true;
      return;
    }
    const o = this.calls * CALL_SLOTS;
    this.args[o] = id;
    this.args[o + 1] = args.length;
    for (let i = 0; i < args.length; i++) this.args[o + 2 + i] = args[i]!;
    this.calls++;
  };

  constructor(sources: ArenaModules[], options: ThreadPoolOptions) {
    const threads = options.threads;
    if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `threads must be an integer from 1 to 256, got ${String(threads)}`, {
        hint: 'pass threads: 1 for one thread, or the number of cores to use',
      });
    }
    this.threads = threads;
    this.minWorkNs = options.minWorkNs ?? DEFAULT_MIN_WORK_NS;
    this.stallMs = options.stallMs ?? 30_000;
    this.adaptive = options.adaptive ?? true;
    const env = typeof process === 'undefined' ? undefined : process.env.ULTRASKETCH_BATCH_SPIN_US;
    const spin = options.batchSpinUs ?? (env !== undefined && env !== '' ? Number(env) : BATCH_SPIN_US);
    if (!Number.isInteger(spin) || spin < 0 || spin > 1_000_000) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `batch spin must be an integer number of µs from 0 to 1000000, got ${options.batchSpinUs ?? JSON.stringify(env)}`, {
        ...(options.batchSpinUs === undefined ? { source: 'ULTRASKETCH_BATCH_SPIN_US' } : {}),
        hint: 'use 0 to let workers sleep after every job, or e.g. 200',
      });
    }
    this.batchSpinUs = spin;
    this.arenas = sources.map((s) => s.arena);
    if (threads < 2) return;
    for (const s of sources) {
      if (!s.arena.shared) {
        throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'a thread pool needs arenas over a shared WebAssembly.Memory', {
          hint: 'build the kernels into a WasmArena created with { shared: true }',
        });
      }
    }
    // Number every exported function; a worker instantiates the same modules and numbers them the same way.
    const memories = sources.map((s) => s.arena.memory);
    const modules: { arena: number; module: WasmModule; names: string[] }[] = [];
    sources.forEach((s, a) => {
      for (const m of s.modules) {
        const names = Object.keys(m.exports).filter((k) => typeof m.exports[k] === 'function');
        for (const name of names) {
          this.ids.set(m.exports[name], this.fns.length);
          this.fns.push(m.exports[name] as AnyFn);
        }
        modules.push({ arena: a, module: m.module, names });
      }
    });
    const { ctrl, args, err } = this;
    for (let w = 0; w < threads - 1; w++) {
      const worker = new (nodeWorker())(WORKER_SOURCE, {
        eval: true,
        workerData: { ctrlBuf: ctrl.buffer, argsBuf: args.buffer, errBuf: err.buffer, memories, modules, spinMs: options.spinMs ?? 0, sliceMs: WAIT_SLICE_MS },
      });
      worker.unref();
      this.workers.push(worker);
    }
    for (const a of this.arenas) a.threads = this;
  }

  /** Whether products can be split (workers running). */
  get active(): boolean {
    return !this.stopped && this.workers.length > 0;
  }

  /**
   * Compute rows [0, rows) of a product: `body` over disjoint chunks of rows whose boundaries are multiples of
   * `align`, claimed by this thread and the workers — or body(0, rows) here. Products estimated under
   * `minWorkNs` always run here. Above it, with `adaptive` (the default), the pool TIMES both ways per product
   * shape (rows and estimated work, i.e. the same linear at the same batch size): the first calls alternate, then
   * the faster way is used, and one call in RECHECK (backing off to MAX_RECHECK while the answer stays the same) tries the other again — so a second core that other jobs
   * keep busy (a loaded machine) stops being used, and comes back into use when it frees up. Both ways compute
   * every row with the same calls: the choice never changes a result.
   */
  rows(rows: number, workNs: number, align: number, body: RowBody): void {
    const groups = Math.floor(rows / align);
    const chunks = Math.min(groups, MAX_CHUNKS, 4 * this.threads, Math.max(this.threads, Math.round(workNs / CHUNK_NS)));
    if (this.stopped || this.workers.length === 0 || chunks < 2 || workNs < this.minWorkNs) {
      this.singleCount++;
      body(this.direct, 0, rows);
      return;
    }
    if (!this.adaptive || (this.batching && workNs >= BATCH_SURE_SPLIT_NS)) {
      this.split(rows, chunks, align, body);
      return;
    }
    // the same linear at the same batch size gives the same (rows, work): one key per product shape
    const key = rows * 4096 + Math.round(Math.log2(workNs) * 64);
    let st = this.shapes.get(key);
    if (!st) {
      if (this.shapes.size > 4096) this.shapes.clear();
      this.shapes.set(key, (st = new FasterOf()));
    }
    st.run(
      () => {
        this.singleCount++;
        body(this.direct, 0, rows);
      },
      () => this.split(rows, chunks, align, body),
    );
  }

  private split(rows: number, chunks: number, align: number, body: RowBody): void {
    const groups = Math.floor(rows / align);
    const ctrl = this.ctrl;
    const edge = (i: number) => (i === chunks ? rows : Math.round((groups * i) / chunks) * align);
    // record every chunk; if one cannot be recorded (an unknown function, too many calls) the product runs here
    this.calls = 0;
    this.overflow = false;
    for (let c = 0; c < chunks; c++) {
      ctrl[CHUNK_AT + c] = this.calls;
      body(this.record, edge(c), edge(c + 1));
      if (this.overflow) {
        this.singleCount++;
        body(this.direct, 0, rows);
        return;
      }
    }
    ctrl[CHUNK_AT + chunks] = this.calls;
    const seq = (this.seq = (this.seq + 1) & SEQ_MASK || 1);
    const tag = (seq << SEQ_SHIFT) | (chunks << COUNT_SHIFT);
    ctrl[NCHUNKS] = chunks;
    Atomics.store(ctrl, DONE, 0);
    Atomics.store(ctrl, CLAIM, tag);
    Atomics.store(ctrl, JOB, seq);
    Atomics.notify(ctrl, JOB);
    this.splitCount++;
    this.chunksTotal += chunks;
    // claim chunks like a worker; if one of ours throws, the rest are claimed without running them, and the
    // workers' chunks are waited for before the error is rethrown (the next job must not overlap this one)
    let failure: unknown;
    let failed = false;
    for (;;) {
      const w = Atomics.load(ctrl, CLAIM);
      const c = w & MAX_CHUNKS;
      if (c >= chunks) break;
      if (Atomics.compareExchange(ctrl, CLAIM, w, w + 1) !== w) continue;
      if (!failed) {
        try {
          this.replay(ctrl[CHUNK_AT + c]!, ctrl[CHUNK_AT + c + 1]!);
          this.chunksHere++;
        } catch (err) {
          failed = true;
          failure = err;
        }
      }
      Atomics.add(ctrl, DONE, 1);
    }
    this.await(chunks);
    if (failed) throw failure;
  }

  /** Run recorded calls [from, to) here. */
  private replay(from: number, to: number): void {
    const a = this.argv;
    const args = this.args;
    for (let k = from; k < to; k++) {
      const o = k * CALL_SLOTS;
      const n = args[o + 1]!;
      a.length = n;
      for (let i = 0; i < n; i++) a[i] = args[o + 2 + i]!;
      this.fns[args[o]!]!(...a);
    }
  }

  /** Wait until all `chunks` chunks are done: spin briefly, then sleep in slices; a stall is a typed error. */
  private await(chunks: number): void {
    const ctrl = this.ctrl;
    if (Atomics.load(ctrl, DONE) < chunks) {
      let spins = 0;
      while (Atomics.load(ctrl, DONE) < chunks && ++spins < 20_000);
      let progress = Atomics.load(ctrl, PROGRESS);
      let since = performance.now();
      let done: number;
      while ((done = Atomics.load(ctrl, DONE)) < chunks) {
        Atomics.wait(ctrl, DONE, done, WAIT_SLICE_MS);
        const now = performance.now();
        const seen = Atomics.load(ctrl, PROGRESS);
        if (seen !== progress) {
          progress = seen;
          since = now;
        } else if (Atomics.load(ctrl, DONE) < chunks && now - since > this.stallMs) {
          const state = `job ${Atomics.load(ctrl, JOB)}, chunks done ${Atomics.load(ctrl, DONE)} of ${chunks}, workers ready ${Atomics.load(ctrl, READY)} of ${this.workers.length}, chunks finished by workers ${seen}`;
          this.dispose();
          throw new UltraSketchError(
            ErrorCodes.SYSTEM,
            `an inference worker finished no chunk for ${this.stallMs} ms (pool counters: ${state})`,
            { hint: 'a worker may have crashed or the machine is overloaded: run with threads: 1 (--threads 1, ULTRASKETCH_THREADS=1)' },
          );
        }
      }
    }
    if (Atomics.load(ctrl, STATUS) !== 0) {
      const end = this.err.indexOf(0);
      const msg = new TextDecoder().decode(this.err.slice(0, end < 0 ? this.err.length : end));
      this.dispose();
      throw new UltraSketchError(ErrorCodes.SYSTEM, `an inference worker failed: ${msg}`, {
        hint: 'run with one thread (--threads 1, ULTRASKETCH_THREADS=1) and report this message',
      });
    }
  }

  /**
   * Say that a batch (a prefill: many products back to back) starts (true) or ended (false). During a batch a
   * worker spins up to BATCH_SPIN_US after each job instead of going to sleep, so the next product does not
   * pay a wake-up; between batches (generation, one token per call) workers sleep at once, as before.
   */
  batch(on: boolean): void {
    this.batching = on;
    if (this.workers.length > 0) Atomics.store(this.ctrl, SPIN, on ? this.batchSpinUs : 0);
  }

  /** Stop the workers (idempotent); later products run on the calling thread. */
  dispose(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const a of this.arenas) if (a.threads === this) a.threads = undefined;
    Atomics.store(this.ctrl, JOB, -1);
    Atomics.notify(this.ctrl, JOB);
    for (const w of this.workers) void w.terminate();
  }
}

/**
 * Run `body` over rows [0, rows) of a product on `arena`'s thread pool when it has one (see ThreadPool.rows),
 * else here.
 */
export function splitRows(arena: WasmArena, rows: number, workNs: number, align: number, body: RowBody): void {
  const pool = arena.threads;
  if (pool) pool.rows(rows, workNs, align, body);
  else body(directCall, 0, rows);
}

/** A RowCall that makes the call here, on the calling thread (splitRows without a pool; kernels' serial calls). */
export const directCall: RowCall = (fn, ...args) => {
  fn(...args);
};

/**
 * The thread count asked for: `threads` when given, else the environment's ULTRASKETCH_THREADS, else 1. A bad
 * value is a typed error naming where it came from.
 */
export function resolveThreads(threads: number | undefined, env: Record<string, string | undefined> = typeof process === 'undefined' ? {} : process.env): number {
  const fromEnv = threads === undefined && env.ULTRASKETCH_THREADS !== undefined && env.ULTRASKETCH_THREADS !== '';
  const v = threads ?? (fromEnv ? Number(env.ULTRASKETCH_THREADS) : 1);
  if (!Number.isInteger(v) || v < 1 || v > 256) {
    throw new UltraSketchError(
      ErrorCodes.BAD_ARGUMENT,
      `threads must be an integer from 1 to 256, got ${fromEnv ? JSON.stringify(env.ULTRASKETCH_THREADS) : String(v)}`,
      { ...(fromEnv ? { source: 'ULTRASKETCH_THREADS' } : {}), hint: 'use 1 for one thread, or the number of cores to use (e.g. 2)' },
    );
  }
  return v;
}

/** Node's Worker class, loaded on first use (process.getBuiltinModule: Node ≥ 20.16), or UNSUPPORTED off Node. */
function nodeWorker(): typeof Worker {
  const get = typeof process === 'undefined' ? undefined : (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  const mod = get?.('node:worker_threads') as { Worker: typeof Worker } | undefined;
  if (!mod) {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'worker threads need Node.js ≥ 20.16 (node:worker_threads)', {
      hint: 'run with threads: 1 here',
    });
  }
  return mod.Worker;
}
