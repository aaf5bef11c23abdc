/**
 * Node-only helpers of the trainer (subpath "@ultrasketch/ste-trainer/node"): checkpoint files written
 * atomically, a checkpointing run loop that stops cleanly on SIGINT/SIGTERM, and data-parallel worker
 * threads. Only this file and worker.ts import node:* modules.
 */
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { ErrorCodes, UltraSketchError, fromSystemError } from '@ultrasketch/core';
import { crc32 } from '@ultrasketch/format';
import { type WriteAtomicOptions, temporaryPathFor, writeFileAtomic } from '@ultrasketch/node-files';
import { type WasmTrainerExp, type WasmTrainerGemm, type WasmTrainerOps, createTrainerExp, createTrainerGemm, createTrainerOps } from '@ultrasketch/runtime-node';
import { setFloat32Allocator, setMatmulKernel } from './matmul.js';
import { setCausalKernels, setElementwiseKernels, setExpKernel, setKdKernel, setSoftmaxKernel } from './ops.js';
import { setAdamWKernel, setSumSquaresKernel } from './optim.js';
import {
  CTRL,
  CTRL_WORDS,
  ERROR_BYTES,
  JOB,
  STATUS_ERROR,
  type ShardExecutor,
  type ShardExecutorFactory,
  type ShardResult,
  type ShardSetup,
  type ShardWorkerInit,
  WAIT_SLICE_MS,
} from './shard.js';
import type { TeacherCache } from './teacher-cache.js';
import type { StepResult, Trainer } from './trainer.js';

// ------------------------------------------------------------------------------------ WebAssembly gemm

let wasmGemm: WasmTrainerGemm | null | undefined;
let wasmExp: WasmTrainerExp | null | undefined;
let wasmOps: WasmTrainerOps | null | undefined;
let wasmActive = false;

/**
 * Route the trainer's float32 matmuls through runtime-node's WebAssembly SIMD gemm, and its row-wise
 * exponentials (soft-maxes, SwiGLU) through the SIMD exponential (on = true), or back to the JS kernels
 * (on = false). Returns whether the wasm gemm is now in use (false when this engine cannot validate the SIMD
 * kernels). Importing this module turns them on, unless ULTRASKETCH_TRAINER_GEMM=js; worker threads follow
 * the choice of the thread that creates them.
 */
export function useWasmGemm(on = true): boolean {
  // Fused multiply-adds (relaxed SIMD; Node 20 needs a V8 flag, set here) unless ULTRASKETCH_TRAINER_FMA=0:
  // ~25% faster products, rounded once per multiply-add on hardware with FMA.
  if (on && wasmGemm === undefined) wasmGemm = createTrainerGemm({ fma: process.env.ULTRASKETCH_TRAINER_FMA !== '0', setFlags: setFlagsFromString });
  // The exponentials share the gemm's memory, where the graphs' float32 buffers then live (used in place).
  // Their exponentials use fused multiply-adds when the gemm does (relaxed SIMD compiles, ULTRASKETCH_TRAINER_FMA ≠ 0).
  if (on && wasmExp === undefined) wasmExp = createTrainerExp(wasmGemm ? wasmGemm.mem : undefined, { fma: wasmGemm?.fma === true });
  wasmActive = on && wasmGemm !== null && wasmGemm !== undefined;
  setMatmulKernel(wasmActive ? wasmGemm!.matmul : null);
  setExpKernel(on && wasmExp ? wasmExp.expRows : null);
  setSoftmaxKernel(on && wasmExp ? { causal: wasmExp.softmaxCausal, backward: wasmExp.softmaxBackward } : null);
  setKdKernel(on && wasmExp ? wasmExp.kdRows : null);
  if (on && wasmOps === undefined) wasmOps = wasmGemm ? createTrainerOps(wasmGemm.mem, { fma: wasmGemm.fma }) : null;
  setElementwiseKernels(wasmActive && wasmOps ? wasmOps : null);
  setAdamWKernel(wasmActive && wasmOps ? (p, g, m, v, s) => wasmOps!.adamw(p, g, m, v, s) : null);
  setSumSquaresKernel(wasmActive && wasmOps ? (x) => wasmOps!.sumSquares(x, x.length) : null);
  setCausalKernels(wasmActive ? wasmGemm! : null);
  setFloat32Allocator(wasmActive ? wasmGemm!.allocF32 : null);
  return wasmActive;
}

/** Whether the trainer's matmuls currently run in the WebAssembly SIMD gemm (set by useWasmGemm). */
export function wasmGemmActive(): boolean {
  return wasmActive;
}

/** Whether that gemm uses fused multiply-adds (relaxed SIMD). */
export function wasmFmaActive(): boolean {
  return wasmActive && wasmGemm !== null && wasmGemm !== undefined && wasmGemm.fma;
}
useWasmGemm(process.env.ULTRASKETCH_TRAINER_GEMM !== 'js');

/** Options of a checkpoint write: those of the shared atomic writer (chunk size, the kill test's onChunk hook). */
export type CheckpointWriteOptions = WriteAtomicOptions;

// The atomic writer is @ultrasketch/node-files' (the one the pipeline writes bundles with), re-exported under the
// names this entry has always had: temporary names `${path}.tmp-<pid>-<12 hex digits>`, which the pipeline removes
// for dead processes when a run starts.
export { writeFileAtomic, temporaryPathFor as temporaryCheckpointPath };

/** Checkpoints are written 1 MiB per write call (the shared writer's default is 4 MiB), unless told otherwise. */
const CHECKPOINT_CHUNK_BYTES = 1024 * 1024;

/** Write one checkpoint file atomically (the shared writer with the checkpoint chunk size). */
function writeCheckpointFile(path: string, bytes: Uint8Array, options: CheckpointWriteOptions = {}): void {
  writeFileAtomic(path, bytes, { ...options, chunkBytes: options.chunkBytes ?? CHECKPOINT_CHUNK_BYTES });
}

/** Save the trainer's complete state to `path` atomically. */
export function saveCheckpoint(trainer: Trainer, path: string, options: CheckpointWriteOptions = {}): void {
  writeCheckpointFile(path, trainer.state(), options);
}

/** Restore a trainer from a checkpoint file written by saveCheckpoint. */
export function loadCheckpoint(trainer: Trainer, path: string): void {
  trainer.loadState(readCheckpointFile(path), path);
}

function readCheckpointFile(path: string): Uint8Array {
  if (!existsSync(path)) {
    throw new UltraSketchError(ErrorCodes.FILE_NOT_FOUND, 'checkpoint not found', { source: path, hint: 'check the --checkpoint-dir' });
  }
  try {
    return readFileSync(path);
  } catch (err) {
    throw fromSystemError(err, path, 'read');
  }
}

/**
 * What `runWithCheckpoints` drives: the CPU `Trainer`, or the WebGPU one (`GpuTrainer` of
 * "@ultrasketch/ste-trainer/webgpu"), whose steps and checkpoint reads are asynchronous.
 */
export interface CheckpointedTrainer {
  readonly steps: number;
  readonly completedSteps: number;
  step(): StepResult | Promise<StepResult>;
  state(): Uint8Array | Promise<Uint8Array>;
  loadState(bytes: Uint8Array, source?: string): void;
}

export interface RunWithCheckpointsOptions {
  /** Checkpoint file (written atomically). */
  path: string;
  /** Save every N completed steps (default 50; 0 = only at the end or on a signal). */
  every?: number;
  /** Load `path` first when it exists (default true): a killed run continues exactly. */
  resume?: boolean;
  /** Stop (after the current step, saving first) on SIGINT / SIGTERM (default true). */
  handleSignals?: boolean;
  /** Called after every step. */
  onStep?: (r: StepResult) => void;
  /** Passed to every checkpoint write of the step it is for (the kill test dies mid-write with it). */
  writeOptions?: (step: number) => CheckpointWriteOptions;
  /**
   * Stop once this many steps of the schedule are done (saving the checkpoint), though the schedule runs to
   * `trainer.steps`: a long run in segments, resumed by the next call. Default: the end.
   */
  untilStep?: number;
}

export interface RunWithCheckpointsResult {
  /** Steps completed when the loop ended. */
  step: number;
  /** True when a signal stopped it before the last step. */
  interrupted: boolean;
  resumedFrom: number | null;
}

/**
 * Train to the end with periodic atomic checkpoints. Yields to the event loop between steps, so a
 * Ctrl-C is noticed after the step in flight: the state is saved and the loop returns (interrupted: true);
 * run it again to continue exactly where it stopped.
 */
export async function runWithCheckpoints(trainer: CheckpointedTrainer, o: RunWithCheckpointsOptions): Promise<RunWithCheckpointsResult> {
  const every = o.every ?? 50;
  let resumedFrom: number | null = null;
  if ((o.resume ?? true) && existsSync(o.path)) {
    trainer.loadState(readCheckpointFile(o.path), o.path);
    resumedFrom = trainer.completedSteps;
  }
  let stop = false;
  let until = trainer.steps;
  const onSignal = () => {
    stop = true;
  };
  const signals: NodeJS.Signals[] = (o.handleSignals ?? true) ? ['SIGINT', 'SIGTERM'] : [];
  for (const s of signals) process.on(s, onSignal);
  try {
    until = Math.min(trainer.steps, o.untilStep ?? trainer.steps);
    while (trainer.completedSteps < until && !stop) {
      const r = await trainer.step();
      o.onStep?.(r);
      if (every > 0 && trainer.completedSteps % every === 0) writeCheckpointFile(o.path, await trainer.state(), o.writeOptions?.(trainer.completedSteps));
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    writeCheckpointFile(o.path, await trainer.state(), o.writeOptions?.(trainer.completedSteps));
  } finally {
    for (const s of signals) process.off(s, onSignal);
  }
  return { step: trainer.completedSteps, interrupted: stop && trainer.completedSteps < until, resumedFrom };
}

// ------------------------------------------------------------------------------------------ worker threads

/** Where the built worker entry is: next to this module in dist/, or dist/ when running from src/. */
function workerUrl(): URL {
  const here = new URL(import.meta.url);
  return here.pathname.endsWith('.ts') ? new URL('../dist/worker.js', here) : new URL('./worker.js', here);
}

export interface WorkerThreadsOptions {
  /**
   * Give up when a worker has made no progress (not one op of its graphs done, no start-up finished) for this
   * long (default 5 minutes: far longer than any single op of a 1B-parameter model takes). A worker that
   * died (out of memory, killed) cannot say so while this thread blocks, so this is how it is noticed.
   */
  timeoutMs?: number;
}

/**
 * Data-parallel training on `threads` threads: this one plus threads − 1 workers (see shard.ts). The
 * trainer blocks in Atomics.wait while the workers finish, so `step()` stays synchronous. Call
 * `trainer.dispose()` at the end to stop the workers (they are unref'd, so they never keep the process
 * alive on their own).
 */
export function workerThreads(threads: number, options: WorkerThreadsOptions = {}): ShardExecutorFactory {
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `threads ${threads} must be an integer in 1..256`);
  }
  const timeoutMs = options.timeoutMs ?? 5 * 60_000;
  if (!(timeoutMs > 0)) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `timeoutMs ${timeoutMs} must be positive`);
  return { threads, create: (setup) => new WorkerExecutor(setup, timeoutMs) };
}

const sab = (bytes: number) => new SharedArrayBuffer(bytes);

interface WorkerSlot {
  ctrl: Int32Array;
  ready: Int32Array;
  job: Int32Array;
  results: Float64Array;
  error: Uint8Array;
  gradW: Float32Array[];
  normGrad: Float32Array[];
  embeddingGrad: Float32Array[];
  first: number;
  count: number;
}

class WorkerExecutor implements ShardExecutor {
  readonly threads: number;
  private readonly workers: Worker[] = [];
  private readonly weights: Float32Array[];
  private readonly norms: Float32Array[];
  /** The student's embedding and (untied) classifier, shared with the workers, when they train. */
  private readonly embeddings: Float32Array[];
  private readonly tokens: Int32Array;
  private readonly per: WorkerSlot[] = [];
  private seq = 0;
  private disposed = false;

  constructor(
    private readonly setup: ShardSetup,
    private readonly timeoutMs: number,
  ) {
    const s = setup;
    this.threads = s.shardSizes.length;
    const teacher: Record<string, SharedArrayBuffer> = {};
    for (const [name, data] of s.teacher) {
      const b = sab(data.byteLength);
      new Float32Array(b).set(data);
      teacher[name] = b;
    }
    const weightBufs = s.linears.map((l) => sab(l.rows * l.cols * 4));
    this.weights = weightBufs.map((b) => new Float32Array(b));
    const normBufs = s.norms.map(() => sab(s.config.dim * 4));
    this.norms = normBufs.map((b) => new Float32Array(b));
    const tokenBuf = sab(s.batch * (s.seqLen + 1) * 4);
    const shared = (a: Float32Array | undefined) => {
      if (!a) return undefined;
      const b = sab(a.byteLength);
      new Float32Array(b).set(a);
      return b;
    };
    const studentEmbedding = shared(s.studentEmbedding);
    const studentClassifier = s.config.tiedClassifier ? undefined : shared(s.studentClassifier);
    const trainE = s.trainEmbedding === true;
    if (trainE && (!studentEmbedding || (!s.config.tiedClassifier && !studentClassifier))) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'a trained embedding needs the student embedding (and an untied classifier) in the shard setup');
    }
    this.embeddings = trainE ? [studentEmbedding!, ...(studentClassifier ? [studentClassifier] : [])].map((b) => new Float32Array(b)) : [];
    this.tokens = new Int32Array(tokenBuf);
    const maxSeqs = Math.max(...s.shardSizes.slice(1));
    let first = s.shardSizes[0]!;
    for (let w = 1; w < s.shardSizes.length; w++) {
      const count = s.shardSizes[w]!;
      const gradBufs = s.linears.map((l) => (l.trainable ? sab(l.rows * l.cols * 4) : null));
      const normGradBufs = s.norms.map(() => (s.trainNorms ? sab(s.config.dim * 4) : null));
      const embeddingGradBufs = this.embeddings.map((e) => sab(e.byteLength));
      const init: ShardWorkerInit = {
        config: s.config,
        seqLen: s.seqLen,
        maxSeqs,
        loss: s.loss,
        needTeacher: s.needTeacher,
        teacher,
        linears: s.linears.map((l, i) => ({ ...l, weight: weightBufs[i]!, grad: gradBufs[i]! })),
        norms: s.norms.map((name, j) => ({ name, data: normBufs[j]!, grad: normGradBufs[j]! })),
        tokens: tokenBuf,
        control: sab(4 * CTRL_WORDS),
        ready: sab(4 * s.linears.length),
        job: sab(3 * 4),
        results: sab(5 * 8),
        error: sab(ERROR_BYTES),
        ...(s.teacherCache !== undefined && s.teacherCacheKey ? { teacherCache: s.teacherCache, teacherCacheKey: s.teacherCacheKey } : {}),
        ...(studentEmbedding ? { studentEmbedding } : {}),
        ...(studentClassifier ? { studentClassifier } : {}),
        ...(embeddingGradBufs.length > 0 ? { embeddingGrad: embeddingGradBufs[0]! } : {}),
        ...(embeddingGradBufs.length > 1 ? { classifierGrad: embeddingGradBufs[1]! } : {}),
      };
      this.per.push({
        ctrl: new Int32Array(init.control),
        ready: new Int32Array(init.ready),
        job: new Int32Array(init.job),
        results: new Float64Array(init.results),
        error: new Uint8Array(init.error),
        gradW: gradBufs.map((b) => (b ? new Float32Array(b) : new Float32Array(0))),
        normGrad: normGradBufs.map((b) => (b ? new Float32Array(b) : new Float32Array(0))),
        embeddingGrad: embeddingGradBufs.map((b) => new Float32Array(b)),
        first,
        count,
      });
      first += count;
      const worker = new Worker(fileURLToPath(workerUrl()), { workerData: { ...init, wasmGemm: wasmActive } });
      worker.unref();
      this.workers.push(worker);
    }
    // Wait (blocking) until every worker has built its graphs.
    this.per.forEach((p, w) => {
      this.waitUntil(p, w, p.ctrl, CTRL.READY, () => Atomics.load(p.ctrl, CTRL.READY) === 1, 'start-up');
      this.check(p);
    });
  }

  weightBuffer(i: number): Float32Array {
    return this.weights[i]!;
  }

  normBuffer(j: number): Float32Array {
    return this.norms[j]!;
  }

  embeddingBuffer(j: number): Float32Array {
    const b = this.embeddings[j];
    if (!b) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `no trained embedding buffer ${j}: the setup did not train the embedding`);
    return b;
  }

  tokenBuffer(): Int32Array {
    return this.tokens;
  }

  start(): void {
    if (this.disposed) throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'the trainer was disposed');
    this.seq++;
    for (const p of this.per) {
      p.job[JOB.FIRST] = p.first;
      p.job[JOB.COUNT] = p.count;
      p.job[JOB.TOTAL] = this.setup.batch;
      Atomics.store(p.ctrl, CTRL.JOB, this.seq);
      Atomics.notify(p.ctrl, CTRL.JOB);
    }
  }

  gradientOf(i: number): Float32Array[] | null {
    const out: Float32Array[] = [];
    for (let w = 0; w < this.per.length; w++) {
      const p = this.per[w]!;
      let failed = false;
      this.waitUntil(p, w, p.ready, i, () => {
        if (Atomics.load(p.ready, i) === this.seq) return true;
        // A worker that finished this step without posting the gradient failed: finish() says why.
        failed = Atomics.load(p.ctrl, CTRL.DONE) === this.seq;
        return failed;
      }, `a training step (∂L/∂Ŵ of linear ${i})`);
      if (failed) return null;
      out.push(p.gradW[i]!);
    }
    return out;
  }

  finish(): ShardResult[] {
    const out: ShardResult[] = [];
    this.per.forEach((p, w) => {
      this.waitUntil(p, w, p.ctrl, CTRL.DONE, () => Atomics.load(p.ctrl, CTRL.DONE) === this.seq, 'a training step');
      this.check(p);
      const r = p.results;
      out.push({ gradW: p.gradW, normGrad: p.normGrad, embeddingGrad: p.embeddingGrad, klSum: r[0]!, ceSum: r[1]!, top1Sum: r[2]!, mseSum: r[3]!, rows: r[4]! });
    });
    return out;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const p of this.per) {
      Atomics.store(p.ctrl, CTRL.JOB, -1);
      Atomics.notify(p.ctrl, CTRL.JOB);
    }
    for (const w of this.workers) void w.terminate();
  }

  /**
   * Block until `done()` holds, waiting on `word[index]` in short slices (WAIT_SLICE_MS) and re-checking
   * after each, so a missed wake-up can never hang the trainer. Gives up with a typed error, naming what
   * each counter showed, once worker `w` has made no progress (CTRL.PROGRESS unchanged) for timeoutMs.
   */
  private waitUntil(p: WorkerSlot, w: number, word: Int32Array, index: number, done: () => boolean, what: string): void {
    let progress = Atomics.load(p.ctrl, CTRL.PROGRESS);
    let since = performance.now();
    while (!done()) {
      Atomics.wait(word, index, Atomics.load(word, index), WAIT_SLICE_MS);
      const now = performance.now();
      const seen = Atomics.load(p.ctrl, CTRL.PROGRESS);
      if (seen !== progress) {
        progress = seen;
        since = now;
      } else if (now - since > this.timeoutMs) {
        const state = `job ${Atomics.load(p.ctrl, CTRL.JOB)}, done ${Atomics.load(p.ctrl, CTRL.DONE)}, ready ${Atomics.load(p.ctrl, CTRL.READY)}, ops ${seen}`;
        this.dispose();
        throw new UltraSketchError(
          ErrorCodes.UNSUPPORTED,
          `training worker ${w + 1} made no progress for ${this.timeoutMs >= 10_000 ? `${Math.round(this.timeoutMs / 1000)} s` : `${this.timeoutMs} ms`} during ${what} (step ${this.seq}; worker counters: ${state})`,
          { hint: 'a worker may have crashed (out of memory?): run with fewer threads, or report this with the counters above' },
        );
      }
    }
  }

  private check(p: { ctrl: Int32Array; error: Uint8Array }): void {
    if (Atomics.load(p.ctrl, CTRL.STATUS) === STATUS_ERROR) {
      const end = p.error.indexOf(0);
      const msg = new TextDecoder().decode(p.error.slice(0, end < 0 ? p.error.length : end));
      this.dispose();
      throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `a training worker failed: ${msg}`);
    }
  }
}

// ------------------------------------------------------------------------------------------ teacher cache

export interface TeacherCacheOptions {
  /** Stop adding entries once the directory's entries total this many bytes (default 4 GiB). */
  maxBytes?: number;
}

const CACHE_MAGIC = 0x54434b55; // "UKCT": an UltraSketch teacher-cache entry, version 1

/**
 * A TeacherCache in a directory: one file per window, `<model key>-<CRC-32 of the tokens>.tch`, holding a
 * header (magic, seqLen, vocab, layers, dim), the window's input tokens (compared on every read, so a CRC
 * collision or another window is a miss, never wrong data), the teacher's float32 logits and every layer's
 * hidden state — 4·L·(1 + V + layers·dim) bytes, 2.6 MB for a 128-token stories3M window. Bounded: once the
 * entries total `maxBytes` no more are added (the run goes on computing its teacher). An entry is written
 * to a temporary name and renamed, so a reader sees a whole file or none; one of the wrong size is a miss.
 * Reads go into one reused buffer (no allocation per step).
 */
export function teacherCacheDir(dir: string, options: TeacherCacheOptions = {}): TeacherCache & { readonly bytes: number } {
  // Worker threads open their own instance of the same directory (their `bytes` count their own writes, so
  // with T threads the bound holds per thread: at most T · maxBytes in all).
  const workerSpec = { dir, ...(options.maxBytes === undefined ? {} : { maxBytes: options.maxBytes }) };
  const maxBytes = options.maxBytes ?? 4 * 1024 ** 3;
  mkdirSync(dir, { recursive: true });
  let bytes = 0;
  for (const f of readdirSync(dir)) if (f.endsWith('.tch')) bytes += statSync(join(dir, f)).size;
  let buf = new Uint8Array(0);
  const fileOf = (model: string, tokens: Int32Array) =>
    join(dir, `${model}-${crc32Hex(new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength))}.tch`);
  const size = (L: number, V: number, hidden: Float32Array[]) => 4 * (5 + L + L * V + hidden.reduce((a, h) => a + h.length, 0));
  return {
    workerSpec,
    get bytes() {
      return bytes;
    },
    get(model, tokens, logits, hidden) {
      const L = tokens.length;
      const V = logits.length / L;
      const want = size(L, V, hidden);
      let fd: number;
      try {
        fd = openSync(fileOf(model, tokens), 'r');
      } catch {
        return false;
      }
      try {
        if (fstatSync(fd).size !== want) return false;
        if (buf.byteLength < want) buf = new Uint8Array(want);
        let got = 0;
        while (got < want) {
          const r = readSync(fd, buf, got, want - got, got);
          if (r <= 0) return false;
          got += r;
        }
      } finally {
        closeSync(fd);
      }
      const i32 = new Int32Array(buf.buffer, 0, 5 + L);
      const dim = hidden[0]!.length / L;
      if (i32[0] !== CACHE_MAGIC || i32[1] !== L || i32[2] !== V || i32[3] !== hidden.length || i32[4] !== dim) return false;
      for (let t = 0; t < L; t++) if (i32[5 + t] !== tokens[t]) return false;
      let at = 4 * (5 + L);
      logits.set(new Float32Array(buf.buffer, at, L * V));
      at += 4 * L * V;
      for (const h of hidden) {
        h.set(new Float32Array(buf.buffer, at, h.length));
        at += 4 * h.length;
      }
      return true;
    },
    put(model, tokens, logits, hidden) {
      const L = tokens.length;
      const V = logits.length / L;
      const n = size(L, V, hidden);
      const path = fileOf(model, tokens);
      if (bytes + n > maxBytes || existsSync(path)) return;
      const out = new Uint8Array(n);
      const i32 = new Int32Array(out.buffer, 0, 5 + L);
      i32.set([CACHE_MAGIC, L, V, hidden.length, hidden[0]!.length / L]);
      i32.set(tokens, 5);
      let at = 4 * (5 + L);
      new Float32Array(out.buffer, at, L * V).set(logits);
      at += 4 * L * V;
      for (const h of hidden) {
        new Float32Array(out.buffer, at, h.length).set(h);
        at += 4 * h.length;
      }
      const tmp = temporaryPathFor(path); // the one temporary naming of every write here
      const fd = openSync(tmp, 'w');
      try {
        let done = 0;
        while (done < n) done += writeSync(fd, out, done, n - done);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
      bytes += n;
    },
  };
}

function crc32Hex(bytes: Uint8Array): string {
  return crc32(bytes).toString(16).padStart(8, '0');
}

// ------------------------------------------------------------------------------------------ WebGPU (Dawn)

/**
 * What `nodeTrainContext` returns. The handles are typed structurally on purpose: this entry's declarations must
 * compile for Node consumers without DOM/WebGPU types (test/packaging.test.ts, node16 without DOM). `ctx` is a
 * `GpuTrainContext` of '@ultrasketch/ste-trainer/webgpu' and `device` a `GpuContext` of '@ultrasketch/runtime-webgpu':
 * cast them where those types are in scope.
 */
export interface NodeTrainContext {
  ctx: { dispose(): void };
  device: { checkLive(): void };
  adapter: string;
  software: boolean;
}

/**
 * A WebGPU training context in Node (issue 15): Dawn from the optional `webgpu` package through runtime-webgpu's
 * `nodeGpu()` (which falls back to SwiftShader, a CPU Vulkan, when no GPU driver answers), then every training
 * program compiled once. Loaded on first use, so CPU-only users never load Dawn. Failures are runtime-webgpu's
 * typed `WebGpuError`s (`failure` 'no-webgpu': the package is missing or cannot load; 'no-adapter': no driver).
 * Pass the `device` of an earlier call to reuse it: its compiled programs are cached per device, and the new
 * context's `dispose()` frees only that context's tensors.
 */
export async function nodeTrainContext(device?: NodeTrainContext['device']): Promise<NodeTrainContext> {
  const { GpuContext, describeAdapter } = await import('@ultrasketch/runtime-webgpu');
  const { GpuTrainContext } = await import('./webgpu/context.js');
  let gpu = device as import('@ultrasketch/runtime-webgpu').GpuContext | undefined;
  if (!gpu) {
    const { nodeGpu } = await import('@ultrasketch/runtime-webgpu/node');
    gpu = await GpuContext.create(await nodeGpu());
  }
  const ctx = await GpuTrainContext.create(gpu);
  return { ctx, device: gpu, adapter: describeAdapter(gpu.adapter), software: gpu.adapter.software };
}
