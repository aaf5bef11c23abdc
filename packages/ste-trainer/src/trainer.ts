import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { crc32, readSafetensors, writeSafetensors, type SafetensorsTensorInput } from '@ultrasketch/format';
import {
  LINEAR_KINDS,
  type ModelConfig,
  type ModelWeights,
  TensorNames,
  validateModelWeights,
} from '@ultrasketch/model';
import { type BatchSource, CalibrationBatches, CorpusBatches, TeacherSamples } from './data.js';
import { type GraphWeights, type LayerProviders, LlamaGraph, type NormWeight } from './graph.js';
import { allocFloat32 } from './matmul.js';
import { type LogitLossResult, addRows, distillLosses, logSoftmaxRows, logitLosses, mseLoss } from './ops.js';
import { AdamW, globalGradNorm, learningRate } from './optim.js';
import { DenseProvider, type Param, type WeightProvider, factorRankOf } from './providers.js';
import { type ShardExecutor, type ShardExecutorFactory, type ShardResult, shardSizes } from './shard.js';
import { type TeacherCache, TeacherCacheViews, teacherCacheKey } from './teacher-cache.js';

export type DataSource = 'calib' | 'teacher' | 'both';

/** Weights of the loss terms: loss = kl·KL(teacher‖student) + mse·Σ_layers MSE(hidden) + ce·CE(next token). */
export interface LossWeights {
  kl: number;
  mse: number;
  ce: number;
}

/**
 * What a distillation run trains and how: the options the CPU trainer and the WebGPU trainer (`GpuKdTrainer`)
 * share, with the same defaults, so one recipe drives either device.
 */
export interface KdRunOptions {
  /** The float model: the teacher, and the source of every weight the student does not train. */
  teacher: ModelWeights;
  /** Providers by canonical linear name (any other linear stays frozen at the teacher's weight). */
  providers?: Map<string, WeightProvider> | Iterable<WeightProvider>;
  batch: number;
  seqLen: number;
  /** Total steps (the schedule's length). */
  steps: number;
  /** Peak learning rate (default 5e-4). */
  lr?: number;
  /** Warm-up as a fraction of steps (default 0.02, LittleBit's recipe). */
  warmup?: number;
  /** Final learning rate / peak (default 0). */
  minLrRatio?: number;
  /** AdamW decoupled weight decay (default 0). */
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Clip the global gradient norm to this (default 1; 0 disables). */
  clipNorm?: number;
  /** Default KD as in LittleBit: {kl: 1, mse: 10, ce: 0}. */
  loss?: Partial<LossWeights>;
  /** Train the RMSNorm weights too (default false). */
  trainNorms?: boolean;
  /**
   * Train the token embedding and the classifier too (one array when tied; default false), at
   * `embeddingLrScale` × the schedule's rate. CPU trainer only. The student starts from its own copy
   * (studentEmbedding when given); the teacher keeps the float ones.
   */
  trainEmbedding?: boolean;
  /** The embedding's and classifier's learning rate ÷ the schedule's (default EMBEDDING_LR_SCALE). */
  embeddingLrScale?: number;
}

/** A trained embedding's learning rate ÷ the schedule's when KdRunOptions.embeddingLrScale is not given (docs/results.md §11.3d). */
export const EMBEDDING_LR_SCALE = 1;

/** A run's schedule, optimizer and loss settings with every default filled in and checked: what both devices run. */
export interface ResolvedKdRun {
  lr: number;
  warmup: number;
  minLrRatio: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  clipNorm: number;
  loss: LossWeights;
  trainNorms: boolean;
  trainEmbedding: boolean;
  embeddingLrScale: number;
}

/** The defaults of KdRunOptions, in one place (BAD_ARGUMENT on a negative loss weight, all zero, lr ≤ 0, warmup ∉ [0, 1)). */
export function resolveKdRun(o: KdRunOptions): ResolvedKdRun {
  const loss = { kl: o.loss?.kl ?? 1, mse: o.loss?.mse ?? 10, ce: o.loss?.ce ?? 0 };
  for (const [k, v] of Object.entries(loss)) if (!(v >= 0) || !Number.isFinite(v)) throw badArg(`loss weight ${k} = ${v} must be ≥ 0`);
  if (loss.kl + loss.mse + loss.ce === 0) throw badArg('every loss weight is 0: nothing to train');
  const run: ResolvedKdRun = {
    lr: o.lr ?? 5e-4,
    warmup: o.warmup ?? 0.02,
    minLrRatio: o.minLrRatio ?? 0,
    weightDecay: o.weightDecay ?? 0,
    beta1: o.beta1 ?? 0.9,
    beta2: o.beta2 ?? 0.999,
    eps: o.eps ?? 1e-8,
    clipNorm: o.clipNorm ?? 1,
    loss,
    trainNorms: o.trainNorms ?? false,
    trainEmbedding: o.trainEmbedding ?? false,
    embeddingLrScale: o.embeddingLrScale ?? EMBEDDING_LR_SCALE,
  };
  if (!(run.lr > 0)) throw badArg(`lr ${run.lr} must be positive`);
  if (!(run.embeddingLrScale > 0) || !Number.isFinite(run.embeddingLrScale)) throw badArg(`embeddingLrScale ${run.embeddingLrScale} must be a positive number`);
  if (!(run.warmup >= 0 && run.warmup < 1)) throw badArg(`warmup ${run.warmup} must be a fraction in [0, 1)`);
  return run;
}

export interface TrainerOptions extends KdRunOptions {
  /** Calibration token stream (documents with BOS); required unless data is 'teacher'. NEVER eval text. */
  calibTokens?: Int32Array;
  /** 'calib' (default), 'teacher' (data-free: samples of the teacher), 'both' (half and half per batch). */
  data?: DataSource;
  /** Seed of the data order and teacher sampling (default 0). */
  seed?: number;
  /** Teacher sampling temperature (default 1). */
  temperature?: number;
  /**
   * Teacher samples generated beforehand (windows of seqLen + 1 tokens back to back; see CorpusBatches): with
   * data 'teacher' or 'both', training windows are drawn from these instead of sampled at every step (which
   * costs a sequential forward per token). Windows [0, teacherHoldout) are never trained on.
   */
  teacherWindows?: Int32Array;
  /** Leading teacherWindows kept out of training (default 0). */
  teacherHoldout?: number;
  /**
   * The embedding (and an untied classifier) as the bundle will store them — e.g. decoded from a 2-bit rtn
   * storage — for the student; the teacher keeps the float ones. Without it the student uses the float ones.
   */
  studentEmbedding?: Float32Array;
  studentClassifier?: Float32Array;
  onProgress?: (p: TrainProgress) => void;
  /**
   * Data-parallel execution over threads (e.g. `workerThreads(2)` from "@ultrasketch/ste-trainer/node").
   * Deterministic for a given thread count; the count is part of the recipe.
   */
  parallel?: ShardExecutorFactory;
  /**
   * Teacher outputs (logits and every layer's hidden state) of each training window, kept across runs —
   * e.g. `teacherCacheDir()` from the node entry. A sweep's configurations (same model, calibration text,
   * seed, batch and sequence length) see the same windows, so from the second run on the teacher's forward
   * (a quarter of a step) is read instead of computed. Exact float32 copies: a run with the cache is
   * byte-identical to one without. Worker shards use it too when it has a `workerSpec` (teacherCacheDir's does).
   */
  teacherCache?: TeacherCache;
  /** Clock in ms (default performance.now). */
  now?: () => number;
}

export interface StepResult {
  /** Steps completed, counting this one. */
  step: number;
  loss: number;
  kl: number;
  ce: number;
  /** Σ over layers of the hidden-state MSE (unweighted). */
  mse: number;
  /** Tokens processed this step (batch · seqLen). */
  tokens: number;
  ms: number;
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
}

export interface TrainProgress extends StepResult {
  steps: number;
  tokensSeen: number;
  elapsedMs: number;
  tokensPerSec: number;
  etaMs: number;
}

export interface EvalResult {
  kl: number;
  ce: number;
  top1: number;
  mse: number;
  positions: number;
}

export const CHECKPOINT_FORMAT = 'ultrasketch-ste-checkpoint';
/**
 * 2 adds `last` (the losses of the last completed step), so a run resumed from its final checkpoint still
 * knows them; version 1 checkpoints are still read (their `lastStep` is null).
 */
export const CHECKPOINT_VERSION = 2;
const READABLE_CHECKPOINT_VERSIONS = ['1', '2'];

/**
 * Compression-aware finetuning: a student whose linears come from weight providers, distilled from (and
 * initialised by) the float teacher. See docs/ste-trainer.md.
 */
export class Trainer {
  readonly config: ModelConfig;
  readonly batch: number;
  readonly seqLen: number;
  readonly steps: number;
  readonly loss: LossWeights;
  readonly data: DataSource;
  readonly seed: number;
  readonly trainNorms: boolean;
  /** The embedding (and classifier) train too (KdRunOptions.trainEmbedding). */
  readonly trainEmbedding: boolean;
  /** The schedule, optimizer and loss settings, defaults filled in (the WebGPU trainer runs the same). */
  readonly settings: ResolvedKdRun;
  /** Trainable parameters in a fixed order (providers layer by layer, then norms, then the embedding and an untied classifier). */
  readonly params: Param[];
  readonly providers: WeightProvider[];
  private readonly student: LlamaGraph;
  private readonly teacherGraph: LlamaGraph | null;
  private readonly teacherCache: TeacherCacheViews | null;
  /** Teacher windows of this thread's shard read from the cache / computed, since construction. */
  get teacherCacheHits(): number {
    return this.teacherCache?.hits ?? 0;
  }
  get teacherCacheMisses(): number {
    return this.teacherCache?.misses ?? 0;
  }
  private readonly optim: AdamW;
  private readonly sources: { calib?: BatchSource; teacher?: BatchSource };
  /** The caller's stored-form embedding / classifier of the student (null: the float ones). */
  private readonly storedEmbedding: { embedding: Float32Array | null; classifier: Float32Array | null };
  private readonly teacherData: string;
  private readonly windows: Int32Array; // [batch, seqLen + 1]
  private readonly inputs: Int32Array; // [batch · seqLen]
  private readonly targets: Int32Array;
  private readonly dLogits: Float32Array;
  private readonly opts: Required<Pick<TrainerOptions, 'lr' | 'warmup' | 'minLrRatio' | 'weightDecay' | 'beta1' | 'beta2' | 'eps' | 'clipNorm' | 'temperature'>>;
  private readonly onProgress: ((p: TrainProgress) => void) | undefined;
  private readonly now: () => number;
  private readonly calibCrc: string;
  private mseAcc = 0;
  private readonly mseGrad: (layer: number, dX: Float32Array) => void;
  private stepCount = 0;
  private last: StepResult | null = null;
  private tokensSeen = 0;
  private elapsedMs = 0;
  private readonly studentWeightsG: GraphWeights;
  private readonly teacher: ModelWeights;
  /** Sequences per shard; shard 0 runs on this thread. */
  readonly shards: number[];
  private readonly executor: ShardExecutor | null;
  private executorPrimed = false;

  constructor(o: TrainerOptions) {
    validateModelWeights(o.teacher);
    const c = o.teacher.config;
    this.teacher = o.teacher;
    this.config = c;
    this.batch = o.batch;
    this.seqLen = o.seqLen;
    this.steps = o.steps;
    if (!Number.isInteger(o.steps) || o.steps < 1) throw badArg(`steps ${o.steps} must be a positive integer`);
    if (o.seqLen + 1 > c.seqLen && (o.data ?? 'calib') !== 'calib') {
      throw badArg(`seqLen ${o.seqLen} + 1 exceeds the model's seq_len ${c.seqLen} (teacher samples)`);
    }
    this.settings = resolveKdRun(o);
    this.loss = this.settings.loss;
    this.data = o.data ?? 'calib';
    if (!['calib', 'teacher', 'both'].includes(this.data)) throw badArg(`data ${String(this.data)} must be calib, teacher or both`);
    this.seed = o.seed ?? 0;
    if (!Number.isInteger(this.seed) || this.seed < 0 || this.seed > 0xffffffff) throw badArg(`seed ${this.seed} must be an integer in 0..2^32−1`);
    this.trainNorms = this.settings.trainNorms;
    this.trainEmbedding = this.settings.trainEmbedding;
    // the recipe's keys in this order (checkpoints record it)
    const { lr, warmup, minLrRatio, weightDecay, beta1, beta2, eps, clipNorm } = this.settings;
    this.opts = { lr, warmup, minLrRatio, weightDecay, beta1, beta2, eps, clipNorm, temperature: o.temperature ?? 1 };
    this.onProgress = o.onProgress;
    this.now = o.now ?? (() => performance.now());

    // ---- student weights
    const get = (name: string) => o.teacher.tensors.get(name)!.data;
    const byName = new Map<string, WeightProvider>();
    for (const p of o.providers instanceof Map ? o.providers.values() : (o.providers ?? [])) {
      if (byName.has(p.name)) throw badArg(`two providers for ${p.name}`);
      byName.set(p.name, p);
    }
    const layers: LayerProviders[] = [];
    const known = new Set<string>();
    for (let l = 0; l < c.nLayers; l++) {
      const lp = {} as LayerProviders;
      for (const kind of LINEAR_KINDS) {
        const name = TensorNames.linear(l, kind);
        known.add(name);
        const t = o.teacher.tensors.get(name)!;
        lp[kind] = byName.get(name) ?? new DenseProvider({ name, rows: t.shape[0]!, cols: t.shape[1]!, weight: t.data });
      }
      layers.push(lp);
    }
    for (const name of byName.keys()) if (!known.has(name)) throw badArg(`provider ${name} is not a linear of this model`);
    const norm = (name: string): NormWeight & { name: string } => {
      const data = get(name);
      return this.trainNorms
        ? { name, data: data.slice(), grad: new Float32Array(data.length) }
        : { name, data, grad: null };
    };
    const attnNorm = Array.from({ length: c.nLayers }, (_, l) => norm(TensorNames.attnNorm(l)));
    const ffnNorm = Array.from({ length: c.nLayers }, (_, l) => norm(TensorNames.ffnNorm(l)));
    const finalNorm = norm(TensorNames.finalNorm);
    const embedding = get(TensorNames.embedding);
    const classifier = c.tiedClassifier ? embedding : get(TensorNames.classifier);
    // The student's embedding/classifier: as stored in the bundle when the caller gives them.
    const sized = (a: Float32Array | undefined, like: Float32Array, what: string) => {
      if (a !== undefined && a.length !== like.length) throw badArg(`${what} has ${a.length} values, the model's has ${like.length}`);
      return a ?? like;
    };
    // A trained embedding/classifier is the student's own copy (in the kernels' memory); the teacher keeps its own.
    const own = (a: Float32Array) => {
      if (!this.trainEmbedding) return a;
      const copy = allocFloat32(a.length);
      copy.set(a);
      return copy;
    };
    const studentEmbedding = own(sized(o.studentEmbedding, embedding, 'studentEmbedding'));
    const studentClassifier = c.tiedClassifier ? studentEmbedding : own(sized(o.studentClassifier, classifier, 'studentClassifier'));
    this.storedEmbedding = { embedding: o.studentEmbedding ?? null, classifier: c.tiedClassifier ? null : (o.studentClassifier ?? null) };
    const embeddingGrad = this.trainEmbedding ? allocFloat32(studentEmbedding.length) : null;
    const classifierGrad = !this.trainEmbedding ? null : c.tiedClassifier ? embeddingGrad : allocFloat32(studentClassifier.length);
    this.studentWeightsG = {
      config: c,
      embedding: studentEmbedding,
      classifier: studentClassifier,
      ...(this.trainEmbedding ? { embeddingGrad, classifierGrad } : {}),
      attnNorm,
      ffnNorm,
      finalNorm,
      layers,
    };
    if (!Number.isInteger(o.batch) || o.batch < 1) throw badArg(`batch ${o.batch} must be a positive integer`);
    this.shards = shardSizes(o.batch, o.parallel?.threads ?? 1);
    const B0 = this.shards[0]!;
    this.student = new LlamaGraph(this.studentWeightsG, { batch: B0, seqLen: o.seqLen });

    this.providers = layers.flatMap((lp) => LINEAR_KINDS.map((k) => lp[k]));
    const params: Param[] = this.providers.flatMap((p) => p.parameters());
    if (this.trainNorms) {
      for (const nw of [...attnNorm, ...ffnNorm, finalNorm]) params.push({ name: nw.name, data: nw.data, grad: nw.grad!, decay: false });
    }
    for (const e of this.embeddingParams()) params.push({ ...e, decay: false, lrScale: this.settings.embeddingLrScale });
    if (params.length === 0) throw badArg('nothing to train: every provider is frozen and trainNorms is off');
    this.params = params;
    this.optim = new AdamW(params, { beta1: this.opts.beta1, beta2: this.opts.beta2, eps: this.opts.eps, weightDecay: this.opts.weightDecay });

    // ---- teacher
    const needTeacher = this.loss.kl > 0 || this.loss.mse > 0;
    this.teacherGraph = needTeacher
      ? new LlamaGraph(
          {
            config: c,
            embedding,
            classifier,
            attnNorm: attnNorm.map((nw) => ({ data: get(nw.name), grad: null })),
            ffnNorm: ffnNorm.map((nw) => ({ data: get(nw.name), grad: null })),
            finalNorm: { data: get(TensorNames.finalNorm), grad: null },
            layers: Array.from({ length: c.nLayers }, (_, l) => {
              const lp = {} as LayerProviders;
              for (const kind of LINEAR_KINDS) {
                const name = TensorNames.linear(l, kind);
                const t = o.teacher.tensors.get(name)!;
                lp[kind] = new DenseProvider({ name, rows: t.shape[0]!, cols: t.shape[1]!, weight: t.data });
              }
              return lp;
            }),
          },
          { batch: B0, seqLen: o.seqLen, training: false },
        )
      : null;

    // ---- teacher cache
    const cacheKey = this.teacherGraph && o.teacherCache ? teacherCacheKey(c, o.seqLen, [...o.teacher.tensors].map(([k, t]) => [k, t.data] as [string, Float32Array])) : '';
    this.teacherCache = this.teacherGraph && o.teacherCache ? new TeacherCacheViews(o.teacherCache, cacheKey, this.teacherGraph, B0) : null;

    // ---- data
    this.sources = {};
    if (this.data !== 'teacher') {
      if (!o.calibTokens) throw badArg(`data '${this.data}' needs calibTokens`);
      this.sources.calib = new CalibrationBatches(o.calibTokens, o.seqLen, this.seed);
    }
    if (this.data !== 'calib') {
      this.sources.teacher = o.teacherWindows
        ? new CorpusBatches(o.teacherWindows, o.seqLen, this.seed, o.teacherHoldout ?? 0)
        : new TeacherSamples(o.teacher, o.seqLen, this.seed, { temperature: this.opts.temperature });
    }
    // A resume must draw from the same corpus: its size, hold-out and CRC are part of the recipe.
    this.teacherData =
      this.data === 'calib'
        ? 'none'
        : o.teacherWindows
          ? `corpus ${crcOf(o.teacherWindows)} holdout ${o.teacherHoldout ?? 0}`
          : 'sampled';
    this.calibCrc = o.calibTokens ? crcOf(o.calibTokens) : 'none';
    this.inputs = new Int32Array(B0 * o.seqLen);
    this.targets = new Int32Array(B0 * o.seqLen);
    this.dLogits = allocFloat32(B0 * o.seqLen * c.vocabSize); // in the wasm kernels' memory (Node): no copies
    const denom = o.batch * o.seqLen * c.dim;
    this.mseGrad = (layer, dX) => {
      const tg = this.teacherGraph!;
      const n = this.student.rows;
      this.mseAcc += mseLoss(this.student.hidden(layer), tg.hidden(layer), n * c.dim, this.loss.mse, this.loss.mse > 0 ? dX : null, denom);
    };

    this.executor =
      this.shards.length > 1
        ? o.parallel!.create({
            config: c,
            teacher: new Map([...o.teacher.tensors].map(([k, t]) => [k, t.data])),
            linears: this.providers.map((p) => ({ name: p.name, rows: p.rows, cols: p.cols, trainable: p.trainable, rank: factorRankOf(p) })),
            norms: [...attnNorm, ...ffnNorm, finalNorm].map((nw) => nw.name),
            trainNorms: this.trainNorms,
            trainEmbedding: this.trainEmbedding,
            needTeacher,
            loss: this.loss,
            seqLen: o.seqLen,
            shardSizes: this.shards,
            batch: o.batch,
            teacherCache: o.teacherCache?.workerSpec,
            teacherCacheKey: cacheKey,
            ...(this.storedEmbedding.embedding || this.storedEmbedding.classifier || this.trainEmbedding
              ? { studentEmbedding: studentEmbedding, studentClassifier: studentClassifier }
              : {}),
          })
        : null;
    this.windows = this.executor ? this.executor.tokenBuffer() : new Int32Array(o.batch * (o.seqLen + 1));
    if (this.executor) {
      // Sum every shard's ∂L/∂Ŵ before the provider's backward (linear in gradW), in shard order, so an
      // expensive backward (a LittleBit chain rule, a sketch scatter) runs once per step, not once per shard,
      // and not on the serial path after the workers finish.
      const ex = this.executor;
      this.student.beforeProviderBackward = (i, gradW) => {
        const parts = ex.gradientOf(i);
        if (parts) for (const g of parts) addInto(gradW, g);
      };
    }
  }

  private prof: Map<string, number> | null = null;
  private profAt = 0;
  private profClock: () => number = () => 0;

  /**
   * Turn per-op timing on (a fresh table) or off. While on, every op of this thread's step adds its
   * wall milliseconds to `profile()` under 'student …', 'teacher …' or a trainer phase ('data', 'losses',
   * 'optimizer', …). For benchmark scripts (throughput.mjs --profile); worker threads are not timed
   * (their time shows as 'shards wait'). `clock` (ms) defaults to the trainer's wall clock; a benchmark on a
   * shared machine passes the process's CPU time instead, which other jobs do not inflate.
   */
  setProfiling(on: boolean, clock: () => number = this.now): void {
    this.prof = on ? new Map() : null;
    this.profClock = clock;
    this.profAt = clock();
    const markAs = (prefix: string) => (op: string) => this.markOp(`${prefix} ${op}`);
    this.student.mark = on ? markAs('student') : null;
    if (this.teacherGraph) this.teacherGraph.mark = on ? markAs('teacher') : null;
  }

  /** Milliseconds per op since setProfiling(true) (empty when off). */
  profile(): Map<string, number> {
    return new Map(this.prof ?? []);
  }

  private markOp(label: string): void {
    const p = this.prof;
    if (p === null) return;
    const t = this.profClock();
    p.set(label, (p.get(label) ?? 0) + t - this.profAt);
    this.profAt = t;
  }

  /** Stop worker threads, if any. The trainer cannot step afterwards. */
  dispose(): void {
    this.executor?.dispose();
  }

  /** Steps completed so far. */
  get completedSteps(): number {
    return this.stepCount;
  }

  get totalTokens(): number {
    return this.tokensSeen;
  }

  get trainingMs(): number {
    return this.elapsedMs;
  }

  /**
   * The result of the last completed step (restored from a version-2 checkpoint), or null before the first.
   * Loss terms that were not measured (KL and hidden MSE without a teacher) are NaN.
   */
  get lastStep(): StepResult | null {
    return this.last;
  }

  /** The learning rate of (0-based) step s. */
  learningRate(s: number): number {
    return learningRate(s, {
      lr: this.opts.lr,
      steps: this.steps,
      warmupSteps: Math.round(this.opts.warmup * this.steps),
      minLrRatio: this.opts.minLrRatio,
    });
  }

  /** The training windows of step s ([batch, seqLen + 1]), written into `out`. */
  batchFor(s: number, out: Int32Array = this.windows): Int32Array {
    const B = this.batch;
    if (this.data === 'calib') this.sources.calib!.fill(s, out, 0, B);
    else if (this.data === 'teacher') this.sources.teacher!.fill(s, out, 0, B);
    else {
      const half = Math.ceil(B / 2);
      this.sources.calib!.fill(s, out, 0, half);
      if (B > half) this.sources.teacher!.fill(s, out, half, B - half);
    }
    return out;
  }

  /** One optimisation step. */
  step(): StepResult {
    return this.stepOnce();
  }

  private stepOnce(): StepResult {
    if (this.stepCount >= this.steps) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `all ${this.steps} steps are done`);
    const t0 = this.now();
    const c = this.config;
    const L = this.seqLen;
    const B = this.batch;
    const n = B * L;
    const B0 = this.shards[0]!;
    const n0 = B0 * L;
    if (this.prof) this.profAt = this.profClock();
    this.batchFor(this.stepCount);
    splitWindows(this.windows, this.inputs, this.targets, B0, L);
    this.markOp('data');
    const ex = this.executor;
    if (ex) this.startShards(ex);
    this.markOp('shards start');

    let ll: LogitLossResult;
    let mse: number;
    let shardResults: ShardResult[] = [];
    let threw = true;
    try {
      this.student.forward(this.inputs, B0, ex !== null); // with workers, startShards loaded Ŵ already
      let teacherLogits: Float32Array | null = null;
      if (this.teacherGraph) {
        if (!this.teacherCache?.read(this.inputs, B0)) {
          this.teacherGraph.forward(this.inputs, B0);
          this.teacherCache?.write(B0);
        }
        this.markOp('teacher cache read/write');
        teacherLogits = this.teacherGraph.logits;
      }
      const r = distillLosses(this.student.logits, teacherLogits, this.targets, n0, c.vocabSize, this.loss.kl, this.loss.ce, this.dLogits, n);
      // A non-finite logit makes the figures meaningless (a NaN teacher row could read as KL 0): name the first
      // one, teacher first, before anything of this step is applied.
      if (!r.teacherFinite) this.checkFinite('teacher', teacherLogits!, n0, `step ${this.stepCount + 1}`);
      if (!r.studentFinite) this.checkFinite('student', this.student.logits, n0, `step ${this.stepCount + 1}`);
      ll = r;
      this.markOp('losses (logits)');
      this.mseAcc = 0;
      this.student.backward(this.dLogits, this.teacherGraph ? this.mseGrad : undefined);
      mse = this.teacherGraph ? this.mseAcc : NaN;
      threw = false;
    } finally {
      // The workers are waited for either way (they write shared buffers this thread reuses); when this
      // thread's shard threw, its error is the one reported, not a worker's.
      if (ex && threw) {
        try {
          ex.finish();
        } catch {
          // reported below: the original error propagates
        }
      } else if (ex) shardResults = ex.finish();
      this.markOp('shards wait');
    }
    if (ex) {
      // Worker shards, added after this thread's shard in shard order.
      let kl = ll.kl * n0;
      let ce = ll.ce * n0;
      let top1 = ll.top1 * n0;
      let mseSum = mse * n0;
      // (The workers' ∂L/∂Ŵ were added into this thread's before each provider's backward: student.beforeProviderBackward.)
      for (const r of shardResults) {
        if (this.trainNorms) this.normParams().forEach((np, j) => addInto(np.grad, r.normGrad[j]!));
        this.embeddingParams().forEach((ep, j) => addInto(ep.grad, r.embeddingGrad[j]!));
        kl += r.klSum;
        ce += r.ceSum;
        top1 += r.top1Sum;
        mseSum += r.mseSum;
      }
      ll = { kl: kl / n, ce: ce / n, top1: top1 / n };
      mse = mseSum / n;
      this.markOp('shards add gradients');
    }

    const loss =
      (this.loss.kl > 0 ? this.loss.kl * ll.kl : 0) + (this.loss.mse > 0 ? this.loss.mse * mse : 0) + (this.loss.ce > 0 ? this.loss.ce * ll.ce : 0);
    // A NaN/Inf loss stops here, before the optimiser step and before any checkpoint or bundle can record it.
    // Without a teacher, KL and MSE are not measured (NaN by design) and are not part of the check.
    const measured = this.teacherGraph ? [loss, ll.kl, ll.ce, mse] : [loss, ll.ce];
    if (!measured.every(Number.isFinite)) {
      const terms = this.teacherGraph ? `KL ${ll.kl}, CE ${ll.ce}, hidden MSE ${mse}` : `CE ${ll.ce}`;
      throw new UltraSketchError(ErrorCodes.NOT_FINITE, `the training loss is ${loss} at step ${this.stepCount + 1} (${terms}); nothing of this step was applied or saved`, {
        hint: 'the model overflows in the forward pass (check the float model with `ultrasketch eval`), or the training diverged: lower the learning rate',
      });
    }
    const gradNorm = globalGradNorm(this.params);
    if (!Number.isFinite(gradNorm)) {
      throw new UltraSketchError(ErrorCodes.NOT_FINITE, `the gradient norm is ${gradNorm} at step ${this.stepCount + 1}`, {
        hint: 'lower the learning rate, or enable gradient clipping',
      });
    }
    const clip = this.opts.clipNorm;
    const scale = clip > 0 && gradNorm > clip ? clip / gradNorm : 1;
    const lr = this.learningRate(this.stepCount);
    this.optim.step(this.stepCount + 1, lr, scale);
    this.markOp('optimizer');
    this.stepCount++;
    for (const p of this.providers) p.afterStep?.(this.stepCount);
    this.markOp('provider afterStep()');

    const ms = this.now() - t0;
    this.tokensSeen += n;
    this.elapsedMs += ms;
    const result: StepResult = { step: this.stepCount, loss, kl: ll.kl, ce: ll.ce, mse, tokens: n, ms, lr, gradNorm };
    this.last = result;
    if (this.onProgress) {
      const tps = this.elapsedMs > 0 ? (this.tokensSeen * 1000) / this.elapsedMs : 0;
      const left = (this.steps - this.stepCount) * n;
      this.onProgress({
        ...result,
        steps: this.steps,
        tokensSeen: this.tokensSeen,
        elapsedMs: this.elapsedMs,
        tokensPerSec: tps,
        etaMs: tps > 0 ? (left * 1000) / tps : NaN,
      });
    }
    return result;
  }

  /**
   * NOT_FINITE naming the model, the step (or 'evaluation'), the sequence (of the batch, or the evaluation
   * window counting from `firstSequence`) and the position of the first non-finite logit among `rows` rows.
   */
  private checkFinite(which: 'teacher' | 'student', logits: ArrayLike<number>, rows: number, at: string, firstSequence = 0): void {
    const V = this.config.vocabSize;
    for (let i = 0; i < rows * V; i++) {
      if (Number.isFinite(logits[i]!)) continue;
      const row = Math.floor(i / V);
      const where = `${at}, sequence ${firstSequence + Math.floor(row / this.seqLen)}, position ${row % this.seqLen}`;
      const result = at.startsWith('step') ? 'the training loss' : 'the evaluation';
      throw new UltraSketchError(
        ErrorCodes.NOT_FINITE,
        which === 'teacher'
          ? `the teacher (the float model) gives a non-finite logit (${logits[i]}) at ${where}: ${result} would be NaN`
          : `the student gives a non-finite logit (${logits[i]}) at ${where}: ${result} would be NaN`,
        {
          hint:
            which === 'teacher'
              ? 'the float model overflows in its forward pass: `ultrasketch eval` on it names the layer'
              : 'the trained weights diverged: lower the learning rate (or check the float model with `ultrasketch eval`)',
        },
      );
    }
  }

  /** The trained embedding, then (untied) the classifier: none unless trainEmbedding. */
  private embeddingParams(): Array<{ name: string; data: Float32Array; grad: Float32Array }> {
    const w = this.studentWeightsG;
    if (!w.embeddingGrad) return [];
    const out: Array<{ name: string; data: Float32Array; grad: Float32Array }> = [{ name: TensorNames.embedding, data: w.embedding, grad: w.embeddingGrad }];
    if (!this.config.tiedClassifier) out.push({ name: TensorNames.classifier, data: w.classifier, grad: w.classifierGrad! });
    return out;
  }

  private normParams(): Array<{ data: Float32Array; grad: Float32Array }> {
    const w = this.studentWeightsG;
    return [...w.attnNorm, ...w.ffnNorm, w.finalNorm] as Array<{ data: Float32Array; grad: Float32Array }>;
  }

  /** Publish this step's Ŵ, norms (tokens are already in the shared buffer) and start the worker shards. */
  private startShards(ex: ShardExecutor): void {
    this.student.loadWeights();
    const kinds = LINEAR_KINDS.length;
    this.providers.forEach((p, i) => {
      if (p.trainable || !this.executorPrimed) ex.weightBuffer(i).set(this.student.currentWeight(Math.floor(i / kinds), i % kinds));
    });
    if (this.trainNorms || !this.executorPrimed) this.normParams().forEach((np, j) => ex.normBuffer(j).set(np.data));
    this.embeddingParams().forEach((ep, j) => ex.embeddingBuffer(j).set(ep.data));
    this.executorPrimed = true;
    ex.start();
  }

  /** Run until `untilStep` (default: the end), or until `shouldStop()` says so between steps. */
  run(untilStep = this.steps, shouldStop?: () => boolean): StepResult | undefined {
    let last: StepResult | undefined;
    while (this.stepCount < Math.min(untilStep, this.steps)) {
      if (shouldStop?.()) break;
      last = this.stepOnce();
    }
    return last;
  }

  /**
   * Student vs teacher on fixed windows (each ≥ seqLen + 1 tokens; the first seqLen + 1 are used):
   * mean KL(teacher ‖ student), CE on next tokens, top-1 agreement, Σ hidden MSE. No training.
   */
  evaluate(windows: ArrayLike<number>[]): EvalResult {
    const c = this.config;
    const L = this.seqLen;
    const tg = this.teacherGraph ?? this.makeEvalTeacher();
    const G = this.shards[0]!; // the graphs on this thread hold G sequences
    const win = new Int32Array(G * (L + 1));
    const inputs = new Int32Array(G * L);
    const targets = new Int32Array(G * L);
    let kl = 0;
    let ce = 0;
    let top1 = 0;
    let mse = 0;
    let positions = 0;
    for (let s = 0; s < windows.length; s += G) {
      const count = Math.min(G, windows.length - s);
      for (let b = 0; b < count; b++) {
        const w = windows[s + b]!;
        if (w.length < L + 1) throw badArg(`evaluation window ${s + b} has ${w.length} tokens, needs ${L + 1}`);
        for (let t = 0; t <= L; t++) win[b * (L + 1) + t] = w[t]!;
      }
      splitWindows(win, inputs, targets, count, L);
      const n = count * L;
      this.student.forward(inputs, count);
      tg.forward(inputs, count);
      // As in a step: a NaN teacher row would otherwise count as KL 0.
      this.checkFinite('teacher', tg.logits, n, 'evaluation', s);
      this.checkFinite('student', this.student.logits, n, 'evaluation', s);
      logSoftmaxRows(tg.logits, n, c.vocabSize);
      const r = logitLosses(this.student.logits, tg.logits, targets, n, c.vocabSize, 0, 0, null);
      kl += r.kl * n;
      ce += r.ce * n;
      top1 += r.top1 * n;
      for (let l = 0; l < c.nLayers; l++) mse += mseLoss(this.student.hidden(l), tg.hidden(l), n * c.dim, 0, null) * n;
      positions += n;
    }
    return { kl: kl / positions, ce: ce / positions, top1: top1 / positions, mse: mse / positions, positions };
  }

  private evalTeacher: LlamaGraph | null = null;
  private makeEvalTeacher(): LlamaGraph {
    if (!this.evalTeacher) {
      const w = this.studentWeightsG;
      const c = this.config;
      const frozen = (name: string) => {
        const t = this.teacherTensor(name);
        return new DenseProvider({ name, rows: t.shape[0]!, cols: t.shape[1]!, weight: t.data });
      };
      this.evalTeacher = new LlamaGraph(
        {
          config: c,
          embedding: this.teacherTensor(TensorNames.embedding).data,
          classifier: this.teacherTensor(c.tiedClassifier ? TensorNames.embedding : TensorNames.classifier).data,
          attnNorm: Array.from({ length: c.nLayers }, (_, l) => ({ data: this.teacherTensor(TensorNames.attnNorm(l)).data, grad: null })),
          ffnNorm: Array.from({ length: c.nLayers }, (_, l) => ({ data: this.teacherTensor(TensorNames.ffnNorm(l)).data, grad: null })),
          finalNorm: { data: this.teacherTensor(TensorNames.finalNorm).data, grad: null },
          layers: Array.from({ length: c.nLayers }, (_, l) => {
            const lp = {} as LayerProviders;
            for (const kind of LINEAR_KINDS) lp[kind] = frozen(TensorNames.linear(l, kind));
            return lp;
          }),
        },
        { batch: this.shards[0]!, seqLen: this.seqLen, training: false },
      );
    }
    return this.evalTeacher;
  }

  private teacherTensor(name: string) {
    return this.teacher.tensors.get(name)!;
  }

  /** The student as dense float weights (Ŵ of every provider, trained norms): for evaluation with the
   * reference forward or any runtime. Frozen tensors are shared with the teacher, not copied. */
  studentWeights(): ModelWeights {
    const tensors = new Map(this.teacher.tensors);
    const stored = this.storedEmbedding;
    if (stored.embedding) tensors.set(TensorNames.embedding, { ...this.teacherTensor(TensorNames.embedding), data: stored.embedding });
    if (stored.classifier) tensors.set(TensorNames.classifier, { ...this.teacherTensor(TensorNames.classifier), data: stored.classifier });
    for (const e of this.embeddingParams()) tensors.set(e.name, { ...this.teacherTensor(e.name), data: e.data.slice() });
    for (const p of this.providers) tensors.set(p.name, { shape: [p.rows, p.cols], data: p.weight().slice() });
    if (this.trainNorms) {
      const w = this.studentWeightsG;
      const c = this.config;
      for (let l = 0; l < c.nLayers; l++) {
        tensors.set(TensorNames.attnNorm(l), { shape: [c.dim], data: w.attnNorm[l]!.data.slice() });
        tensors.set(TensorNames.ffnNorm(l), { shape: [c.dim], data: w.ffnNorm[l]!.data.slice() });
      }
      tensors.set(TensorNames.finalNorm, { shape: [c.dim], data: w.finalNorm.data.slice() });
    }
    return { config: this.config, tensors };
  }

  /** What the bundle stores for every linear: codec id and its parameters (a final build for STE). */
  codecParams(): Map<string, { codecId: string; params: ReturnType<WeightProvider['toCodecParams']> }> {
    const out = new Map<string, { codecId: string; params: ReturnType<WeightProvider['toCodecParams']> }>();
    for (const p of this.providers) out.set(p.name, { codecId: p.codecId, params: p.toCodecParams() });
    return out;
  }

  /** The recipe as recorded in checkpoints (and, by the pipeline, in bundles). */
  recipe(): Record<string, unknown> {
    return {
      batch: this.batch,
      seqLen: this.seqLen,
      steps: this.steps,
      ...this.opts,
      loss: this.loss,
      data: this.data,
      seed: this.seed,
      trainNorms: this.trainNorms,
      ...(this.trainEmbedding ? { trainEmbedding: true, embeddingLrScale: this.settings.embeddingLrScale } : {}),
      threads: this.shards.length,
      calib: this.calibCrc,
      ...(this.teacherData === 'none' || this.teacherData === 'sampled' ? {} : { teacherData: this.teacherData }),
      ...(this.storedEmbedding.embedding ? { studentEmbedding: crcOf(this.storedEmbedding.embedding) } : {}),
      ...(this.storedEmbedding.classifier ? { studentClassifier: crcOf(this.storedEmbedding.classifier) } : {}),
      model: this.config,
      providers: this.providers.map((p) => [p.name, p.codecId, p.trainable, p.constructor.name]),
      params: this.params.map((p) => [p.name, p.data.length]),
    };
  }

  // ------------------------------------------------------------------------------------------ checkpoints

  /**
   * Everything needed to resume exactly, as safetensors bytes: every parameter, its AdamW moments, every
   * provider buffer; metadata holds the step, token and time counters and the recipe (a resume with a
   * different recipe is refused). Data and sampling randomness are functions of (seed, step): no
   * generator state needs saving.
   */
  state(): Uint8Array {
    const tensors: SafetensorsTensorInput[] = [];
    const f32 = (name: string, data: Float32Array) => tensors.push({ name, dtype: 'F32', shape: [data.length], data });
    this.params.forEach((p, i) => {
      f32(`param/${p.name}`, p.data);
      f32(`adam.m/${p.name}`, this.optim.states[i]!.m);
      f32(`adam.v/${p.name}`, this.optim.states[i]!.v);
    });
    for (const p of this.providers) {
      const bufs = p.buffers?.() ?? {};
      for (const [key, data] of Object.entries(bufs)) f32(`buffer/${p.name}/${key}`, data);
    }
    return writeSafetensors(tensors, {
      format: CHECKPOINT_FORMAT,
      version: String(CHECKPOINT_VERSION),
      step: String(this.stepCount),
      tokensSeen: String(this.tokensSeen),
      elapsedMs: String(this.elapsedMs),
      recipe: JSON.stringify(this.recipe()),
      // JSON writes the unmeasured (NaN) terms as null; loadState turns them back into NaN.
      ...(this.last ? { last: JSON.stringify(this.last) } : {}),
    });
  }

  /** Restore a `state()`; the trainer must have been built with the same recipe. */
  loadState(bytes: Uint8Array, source = '<checkpoint>'): void {
    const file = readSafetensors(bytes, source);
    const meta = file.metadata;
    const bad = (problem: string, hint = 'resume with the options the checkpoint was written with'): never => {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, problem, { source, hint });
    };
    if (meta.format !== CHECKPOINT_FORMAT) bad(`not a trainer checkpoint (format ${JSON.stringify(meta.format)})`, 'pass a file written by the trainer');
    if (!READABLE_CHECKPOINT_VERSIONS.includes(meta.version ?? '')) bad(`checkpoint version ${meta.version} is not supported`, 'use the UltraSketch version that wrote it');
    const mine = JSON.stringify(this.recipe());
    if (meta.recipe !== mine) {
      const theirs = JSON.parse(meta.recipe ?? '{}') as Record<string, unknown>;
      const ours = JSON.parse(mine) as Record<string, unknown>;
      const diff = Object.keys({ ...theirs, ...ours }).filter((k) => JSON.stringify(theirs[k]) !== JSON.stringify(ours[k]));
      bad(`the checkpoint was written by a different training recipe (differs in: ${diff.join(', ')})`);
    }
    const step = Number(meta.step);
    if (!Number.isInteger(step) || step < 0 || step > this.steps) bad(`invalid step ${meta.step}`);
    const last = meta.last === undefined ? null : parseLastStep(meta.last, step, source);
    const take = (name: string, into: Float32Array) => {
      const t = file.tensors.get(name);
      if (!t || t.dtype !== 'F32' || t.data.byteLength !== into.byteLength) {
        throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `checkpoint tensor ${name} is missing or has the wrong size`, { source });
      }
      new Uint8Array(into.buffer, into.byteOffset, into.byteLength).set(t.data);
    };
    this.params.forEach((p, i) => {
      take(`param/${p.name}`, p.data);
      take(`adam.m/${p.name}`, this.optim.states[i]!.m);
      take(`adam.v/${p.name}`, this.optim.states[i]!.v);
      p.grad.fill(0);
    });
    for (const p of this.providers) {
      for (const [key, data] of Object.entries(p.buffers?.() ?? {})) take(`buffer/${p.name}/${key}`, data);
      p.afterLoad?.();
    }
    this.stepCount = step;
    this.last = last;
    this.tokensSeen = Number(meta.tokensSeen ?? 0);
    this.elapsedMs = Number(meta.elapsedMs ?? 0);
  }
}

/** The `last` metadata of a checkpoint: a StepResult of step `step`, its unmeasured terms null (→ NaN). */
function parseLastStep(json: string, step: number, source: string): StepResult {
  const corrupt = (why: string): never => {
    throw new UltraSketchError(ErrorCodes.BAD_HEADER, `checkpoint metadata "last" ${why}`, { source, hint: 'the checkpoint is corrupt: delete it to start over' });
  };
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    corrupt('is not JSON');
  }
  const o = raw as Record<string, unknown>;
  if (o === null || typeof o !== 'object') corrupt('is not an object');
  const num = (key: keyof StepResult, nullable: boolean): number => {
    const v = o[key];
    if (v === null && nullable) return NaN;
    if (typeof v !== 'number' || !Number.isFinite(v)) corrupt(`has ${key} = ${JSON.stringify(v)}`);
    return v as number;
  };
  const r: StepResult = {
    step: num('step', false),
    loss: num('loss', false),
    kl: num('kl', true),
    ce: num('ce', false),
    mse: num('mse', true),
    tokens: num('tokens', false),
    ms: num('ms', false),
    lr: num('lr', false),
    gradNorm: num('gradNorm', false),
  };
  if (r.step !== step) corrupt(`is for step ${r.step}, the checkpoint for step ${step}`);
  return r;
}

function splitWindows(win: Int32Array, inputs: Int32Array, targets: Int32Array, count: number, L: number): void {
  for (let b = 0; b < count; b++) {
    for (let t = 0; t < L; t++) {
      inputs[b * L + t] = win[b * (L + 1) + t]!;
      targets[b * L + t] = win[b * (L + 1) + t + 1]!;
    }
  }
}

function addInto(dst: Float32Array, src: Float32Array): void {
  addRows(dst, src, dst, dst.length); // the wasm add when installed (same float32 sums): on the serial path
}

function badArg(problem: string): UltraSketchError {
  return new UltraSketchError(ErrorCodes.BAD_ARGUMENT, problem);
}

/** `length:CRC-32` of an array's bytes (recorded in the recipe, so a resume uses the same data). */
function crcOf(a: Float32Array | Int32Array): string {
  return `${a.length}:${crc32(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))}`;
}
