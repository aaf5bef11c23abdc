import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { LINEAR_KINDS, type ModelConfig, TensorNames } from '@ultrasketch/model';
import { type GraphWeights, type LayerProviders, LlamaGraph, type NormWeight } from './graph.js';
import { allocFloat32 } from './matmul.js';
import { distillLosses, mseLoss } from './ops.js';
import type { CodecParams } from '@ultrasketch/core';
import type { Param, WeightProvider } from './providers.js';
import { type TeacherCache, TeacherCacheViews } from './teacher-cache.js';

/**
 * Data-parallel training across threads. The batch's sequences are cut into shards; shard 0 runs on the
 * trainer's own thread, shards 1.. on workers. Every worker holds a student graph whose linears are
 * PROXIES over shared memory (Ŵ written by the trainer before each step, ∂L/∂Ŵ written back) and its own
 * teacher graph; the trainer adds each worker's ∂L/∂Ŵ into its real providers, in worker order, after its
 * own shard. That needs one property of providers, which every chain rule has: backward() is linear in
 * gradW (backward(g1); backward(g2) ≡ backward(g1 + g2)). Codec providers never run on workers.
 *
 * Results are deterministic for a given thread count; a different count sums the same terms in another
 * order (float rounding), so the thread count is part of the recipe a checkpoint records.
 *
 * This module is platform-neutral (SharedArrayBuffer + Atomics); the Node glue is in node.ts / worker.ts.
 */

/** What the trainer tells an executor about the job. */
export interface ShardSetup {
  config: ModelConfig;
  /** Every teacher tensor by canonical name (the student's frozen embedding and classifier come from it). */
  teacher: Map<string, Float32Array>;
  /**
   * rank > 0: a low-rank linear (WeightProvider.factorRank): the shared buffers then carry packed [Left | Right]
   * and [∂L/∂Left | ∂L/∂Right] (r·(rows + cols) ≤ rows·cols values at their start) instead of Ŵ and ∂L/∂Ŵ.
   */
  linears: Array<{ name: string; rows: number; cols: number; trainable: boolean; rank?: number }>;
  /** Norm names in order: attn[0..L−1], ffn[0..L−1], final. */
  norms: string[];
  trainNorms: boolean;
  /**
   * The embedding (and an untied classifier) train: the executor shares studentEmbedding / studentClassifier
   * as buffers the trainer rewrites before every step (embeddingBuffer), and returns each worker's gradient.
   */
  trainEmbedding?: boolean;
  needTeacher: boolean;
  loss: { kl: number; mse: number; ce: number };
  seqLen: number;
  /** Sequences per shard, shard 0 being the trainer's own. */
  shardSizes: number[];
  batch: number;
  /** TeacherCache.workerSpec of the trainer's cache (workers open the same cache), if any. */
  teacherCache?: unknown;
  /** The cache's key for this teacher and seqLen (computed once, by the trainer). */
  teacherCacheKey?: string;
  /** The student's embedding and classifier when they differ from the teacher's (TrainerOptions.studentEmbedding). */
  studentEmbedding?: Float32Array;
  studentClassifier?: Float32Array;
}

/** Results of one worker shard for one step. */
export interface ShardResult {
  /** ∂L/∂Ŵ per linear (in ShardSetup.linears order; frozen linears: empty). */
  gradW: Float32Array[];
  /** Norm gradients (ShardSetup.norms order), when trainNorms. */
  normGrad: Float32Array[];
  /** ∂L/∂embedding, then (untied) ∂L/∂classifier, when trainEmbedding (else empty). */
  embeddingGrad: Float32Array[];
  /** Σ over the shard's rows of KL, CE, top-1; Σ_layers Σ rows MSE-per-row; row count. */
  klSum: number;
  ceSum: number;
  top1Sum: number;
  mseSum: number;
  rows: number;
}

/** Runs shards 1.. of every step somewhere else (worker threads). */
export interface ShardExecutor {
  /** Threads in all, the trainer's included. */
  readonly threads: number;
  /** Ŵ of linear i: the trainer writes it before start(). */
  weightBuffer(i: number): Float32Array;
  /** Student norm j (values): the trainer writes them before start() when norms train. */
  normBuffer(j: number): Float32Array;
  /** The student's embedding (j = 0) or untied classifier (j = 1): the trainer writes them before start() when they train. */
  embeddingBuffer(j: number): Float32Array;
  /** The whole batch's windows [batch, seqLen + 1]. */
  tokenBuffer(): Int32Array;
  /** Begin shards 1.. of a step (returns at once). */
  start(): void;
  /**
   * The workers' ∂L/∂Ŵ of trainable linear i for the step in flight (shard order), waiting until each has
   * written it — or null when a worker ended its step without it (it failed: finish() reports why).
   */
  gradientOf(i: number): Float32Array[] | null;
  /** Wait for them; results in shard order. */
  finish(): ShardResult[];
  dispose(): void;
}

/** A factory the trainer calls once with its setup (e.g. `workerThreads(2)` from the node entry). */
export interface ShardExecutorFactory {
  readonly threads: number;
  create(setup: ShardSetup): ShardExecutor;
}

/** Split `batch` sequences into `threads` contiguous shards whose sizes differ by at most one. */
export function shardSizes(batch: number, threads: number): number[] {
  const t = Math.max(1, Math.min(threads, batch));
  return Array.from({ length: t }, (_, i) => Math.floor(batch / t) + (i < batch % t ? 1 : 0));
}

// ----------------------------------------------------------------------------------------------- worker side

/** Control words of one worker's Int32Array. */
export const CTRL = { JOB: 0, DONE: 1, STATUS: 2, READY: 3, PROGRESS: 4 } as const;
/** Int32 words of the control buffer (CTRL). */
export const CTRL_WORDS = 5;
/**
 * Longest single Atomics.wait, in ms, on either side: every wait is a loop of short waits that re-reads the
 * word, so a missed wake-up costs at most this long instead of a hang (seen once on a loaded CI machine: a
 * worker's DONE was never noticed by a 30-minute wait).
 */
export const WAIT_SLICE_MS = 50;
/** Worker's job words: first sequence, count, whole-batch sequences. */
export const JOB = { FIRST: 0, COUNT: 1, TOTAL: 2 } as const;
export const STATUS_OK = 0;
export const STATUS_ERROR = 1;
export const ERROR_BYTES = 4096;

/** Everything a worker receives (structured-cloneable: SharedArrayBuffers are shared, not copied). */
export interface ShardWorkerInit {
  config: ModelConfig;
  seqLen: number;
  maxSeqs: number;
  loss: { kl: number; mse: number; ce: number };
  needTeacher: boolean;
  teacher: Record<string, SharedArrayBuffer>;
  linears: Array<{ name: string; rows: number; cols: number; trainable: boolean; rank?: number; weight: SharedArrayBuffer; grad: SharedArrayBuffer | null }>;
  norms: Array<{ name: string; data: SharedArrayBuffer; grad: SharedArrayBuffer | null }>;
  tokens: SharedArrayBuffer;
  control: SharedArrayBuffer; // Int32 [CTRL_WORDS]
  ready: SharedArrayBuffer; // Int32 [linears]: the job number whose ∂L/∂Ŵ of linear i is written
  job: SharedArrayBuffer; // Int32 [3]
  results: SharedArrayBuffer; // Float64 [5]
  error: SharedArrayBuffer; // Uint8 [ERROR_BYTES]
  /** The trainer's TeacherCache.workerSpec and key (the worker entry opens the cache from the spec). */
  teacherCache?: unknown;
  teacherCacheKey?: string;
  /** The student's own embedding / classifier (absent: the teacher's). */
  studentEmbedding?: SharedArrayBuffer;
  studentClassifier?: SharedArrayBuffer;
  /** Their gradients, when they train (one buffer for a tied model: embeddingGrad). */
  embeddingGrad?: SharedArrayBuffer;
  classifierGrad?: SharedArrayBuffer;
}

/**
 * A linear on a worker: Ŵ from shared memory, ∂L/∂Ŵ written to shared memory — or, for a low-rank linear
 * (factorRank r > 0), packed [Left | Right] and [∂L/∂Left | ∂L/∂Right] at the start of the same buffers.
 */
class ProxyProvider implements WeightProvider {
  readonly codecId = 'proxy';
  private readonly packed: Float32Array;
  constructor(
    readonly name: string,
    readonly rows: number,
    readonly cols: number,
    readonly trainable: boolean,
    private readonly w: Float32Array,
    private readonly g: Float32Array | null,
    private readonly post: (() => void) | null = null,
    readonly factorRank = 0,
  ) {
    const len = factorRank * (rows + cols);
    if (len > w.length || (g !== null && len > g.length)) throw new Error(`worker: low-rank ${name} (rank ${factorRank}) does not fit its ${rows}×${cols} buffers`);
    this.packed = w.subarray(0, len);
  }
  weight(): Float32Array {
    return this.w;
  }
  factors(): Float32Array {
    return this.packed;
  }
  backward(gradW: Float32Array): void {
    this.g!.set(gradW.subarray(0, this.g!.length));
    this.post?.(); // the trainer's thread may be waiting for it (ShardExecutor.gradientOf)
  }
  backwardFactors(grad: Float32Array): void {
    this.g!.set(grad);
    this.post?.();
  }
  parameters(): Param[] {
    return [];
  }
  toCodecParams(): CodecParams {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'a worker proxy has no codec parameters');
  }
}

/**
 * The worker's loop: build the graphs, say READY, then for every job number posted in CTRL.JOB run the
 * shard and post it in CTRL.DONE. A negative job number ends the loop.
 */
export function serveShards(init: ShardWorkerInit, teacherCache: TeacherCache | null = null): void {
  const ctrl = new Int32Array(init.control);
  const errBuf = new Uint8Array(init.error);
  const fail = (e: unknown) => {
    const msg = new TextEncoder().encode(e instanceof Error ? `${e.message}\n${e.stack ?? ''}` : String(e));
    errBuf.fill(0);
    errBuf.set(msg.subarray(0, ERROR_BYTES));
    Atomics.store(ctrl, CTRL.STATUS, STATUS_ERROR);
  };
  let run: () => void;
  try {
    run = buildShardRunner(init, teacherCache);
  } catch (e) {
    fail(e);
    Atomics.store(ctrl, CTRL.READY, 1);
    Atomics.notify(ctrl, CTRL.READY);
    return;
  }
  Atomics.store(ctrl, CTRL.READY, 1);
  Atomics.notify(ctrl, CTRL.READY);
  let seen = 0;
  for (;;) {
    // Idle: short waits, re-reading JOB each time (see WAIT_SLICE_MS); an idle worker wakes 20 times a second.
    Atomics.wait(ctrl, CTRL.JOB, seen, WAIT_SLICE_MS);
    const job = Atomics.load(ctrl, CTRL.JOB);
    if (job < 0) return;
    if (job === seen) continue;
    seen = job;
    try {
      run();
      Atomics.store(ctrl, CTRL.STATUS, STATUS_OK);
    } catch (e) {
      fail(e);
    }
    Atomics.store(ctrl, CTRL.DONE, job);
    Atomics.notify(ctrl, CTRL.DONE);
  }
}

function buildShardRunner(init: ShardWorkerInit, cache: TeacherCache | null): () => void {
  const c = init.config;
  const L = init.seqLen;
  const f32 = (b: SharedArrayBuffer) => new Float32Array(b);
  const teacher = (name: string) => {
    const b = init.teacher[name];
    if (!b) throw new Error(`worker: teacher tensor ${name} missing`);
    return f32(b);
  };
  const embedding = teacher(TensorNames.embedding);
  const classifier = c.tiedClassifier ? embedding : teacher(TensorNames.classifier);
  const norms: NormWeight[] = init.norms.map((n) => ({ data: f32(n.data), grad: n.grad ? f32(n.grad) : null }));
  const layers: LayerProviders[] = [];
  const grads: Float32Array[] = [];
  const ready = new Int32Array(init.ready);
  const ctrl = new Int32Array(init.control);
  let i = 0;
  for (let l = 0; l < c.nLayers; l++) {
    const lp = {} as LayerProviders;
    for (const kind of LINEAR_KINDS) {
      const index = i;
      const s = init.linears[i++]!;
      const g = s.grad ? f32(s.grad) : null;
      if (g) grads.push(g);
      // Post "linear `index` written for job J" (J = the job being served, CTRL.JOB).
      const post = () => {
        Atomics.store(ready, index, Atomics.load(ctrl, CTRL.JOB));
        Atomics.notify(ready, index);
      };
      lp[kind] = new ProxyProvider(s.name, s.rows, s.cols, s.trainable, f32(s.weight), g, post, s.rank ?? 0);
    }
    layers.push(lp);
  }
  const nL = c.nLayers;
  const studentEmbedding = init.studentEmbedding ? f32(init.studentEmbedding) : embedding;
  const embeddingGrad = init.embeddingGrad ? f32(init.embeddingGrad) : null;
  const classifierGrad = c.tiedClassifier ? embeddingGrad : init.classifierGrad ? f32(init.classifierGrad) : null;
  const sw: GraphWeights = {
    config: c,
    embedding: studentEmbedding,
    classifier: c.tiedClassifier ? studentEmbedding : init.studentClassifier ? f32(init.studentClassifier) : classifier,
    ...(embeddingGrad ? { embeddingGrad, classifierGrad } : {}),
    attnNorm: norms.slice(0, nL),
    ffnNorm: norms.slice(nL, 2 * nL),
    finalNorm: norms[2 * nL]!,
    layers,
  };
  const student = new LlamaGraph(sw, { batch: init.maxSeqs, seqLen: L });
  // Every op of either graph counts in CTRL.PROGRESS: the trainer tells a slow worker from a stalled one by it.
  const progress = () => {
    Atomics.add(ctrl, CTRL.PROGRESS, 1);
  };
  student.mark = progress;
  const teacherGraph = init.needTeacher
    ? new LlamaGraph(
        {
          config: c,
          embedding,
          classifier,
          attnNorm: Array.from({ length: nL }, (_, l) => ({ data: teacher(TensorNames.attnNorm(l)), grad: null })),
          ffnNorm: Array.from({ length: nL }, (_, l) => ({ data: teacher(TensorNames.ffnNorm(l)), grad: null })),
          finalNorm: { data: teacher(TensorNames.finalNorm), grad: null },
          layers: Array.from({ length: nL }, (_, l) => {
            const lp = {} as LayerProviders;
            for (const kind of LINEAR_KINDS) {
              const name = TensorNames.linear(l, kind);
              const s = init.linears.find((x) => x.name === name)!;
              lp[kind] = new ProxyProvider(name, s.rows, s.cols, false, teacher(name), null);
            }
            return lp;
          }),
        },
        { batch: init.maxSeqs, seqLen: L, training: false },
      )
    : null;
  if (teacherGraph) teacherGraph.mark = progress;
  const cacheViews = cache && teacherGraph && init.teacherCacheKey ? new TeacherCacheViews(cache, init.teacherCacheKey, teacherGraph, init.maxSeqs) : null;
  const tokens = new Int32Array(init.tokens);
  const job = new Int32Array(init.job);
  const res = new Float64Array(init.results);
  const inputs = new Int32Array(init.maxSeqs * L);
  const targets = new Int32Array(init.maxSeqs * L);
  const dLogits = allocFloat32(init.maxSeqs * L * c.vocabSize); // beside the logits, in the kernels' memory
  // The norms' and the embedding's gradients (the graph adds into them), zeroed before each job as the linears' are.
  const addedGrads = norms.map((n) => n.grad).filter((g): g is Float32Array => g !== null);
  if (embeddingGrad) addedGrads.push(embeddingGrad);
  if (classifierGrad && classifierGrad !== embeddingGrad) addedGrads.push(classifierGrad);
  let mseSum = 0;
  let denomRows = 0;
  const mseGrad = (layer: number, dX: Float32Array) => {
    const n = student.rows;
    mseSum += mseLoss(student.hidden(layer), teacherGraph!.hidden(layer), n * c.dim, init.loss.mse, init.loss.mse > 0 ? dX : null, denomRows * c.dim) * n;
  };
  return () => {
    const first = job[JOB.FIRST]!;
    const count = job[JOB.COUNT]!;
    const total = job[JOB.TOTAL]!;
    for (let b = 0; b < count; b++) {
      const w = (first + b) * (L + 1);
      for (let t = 0; t < L; t++) {
        inputs[b * L + t] = tokens[w + t]!;
        targets[b * L + t] = tokens[w + t + 1]!;
      }
    }
    const n = count * L;
    denomRows = total * L;
    for (const g of grads) g.fill(0);
    for (const g of addedGrads) g.fill(0);
    student.forward(inputs, count);
    let tl: Float32Array | null = null;
    if (teacherGraph) {
      if (!cacheViews?.read(inputs, count)) {
        teacherGraph.forward(inputs, count);
        cacheViews?.write(count);
      }
      tl = teacherGraph.logits;
    }
    // A non-finite logit here makes this shard's sums non-finite, and the trainer's finite-loss check stops the step.
    const r = distillLosses(student.logits, tl, targets, n, c.vocabSize, init.loss.kl, init.loss.ce, dLogits, denomRows);
    mseSum = 0;
    student.backward(dLogits, teacherGraph ? mseGrad : undefined);
    res[0] = r.kl * n;
    res[1] = r.ce * n;
    res[2] = r.top1 * n;
    res[3] = teacherGraph ? mseSum : NaN;
    res[4] = n;
  };
}
