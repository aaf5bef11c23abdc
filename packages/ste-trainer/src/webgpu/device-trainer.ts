import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type ModelWeights, TensorNames } from '@ultrasketch/model';
import type { CodecParams } from '@ultrasketch/core';
import { CHECKPOINT_FORMAT, CHECKPOINT_VERSION, type EvalResult, type StepResult, type TrainProgress, Trainer, type TrainerOptions } from '../trainer.js';
import type { GpuTrainContext } from './context.js';
import { GpuKdTrainer } from './trainer.js';

/**
 * The CPU `Trainer`'s surface on WebGPU (issue 15): the same options (`TrainerOptions`), the same data, recipe,
 * progress reports and checkpoint files, with every step computed by `GpuKdTrainer`.
 *
 * How: a CPU `Trainer` built from the same options is kept as the *host*. It never steps; it is used for what
 * is not arithmetic on the model:
 * - the data: `host.batchFor(step)` makes each step's windows (calibration, teacher samples, both, a cached
 *   teacher corpus) exactly as a CPU run draws them — teacher sampling stays on the CPU;
 * - the recipe (`host.recipe()`), written into and checked against checkpoints, so a file written here resumes
 *   on the CPU and a CPU file (of a one-thread run) resumes here; the device is deliberately not part of it;
 * - the bundle: `codecParams()` reads the GPU parameters back into the (shared) CPU providers and asks the host,
 *   so the bundle is what the CPU trainer would write from those parameters, frozen linears included.
 * The cost is the host's CPU-side buffers (its graphs' activations for one batch, the providers' CPU copies).
 */
export class GpuTrainer {
  readonly host: Trainer;
  readonly gpu: GpuKdTrainer;
  private readonly windows: Int32Array;
  private readonly onProgress: ((p: TrainProgress) => void) | undefined;
  private last: StepResult | null = null;
  private tokensSeen = 0;
  private elapsedMs = 0;

  private constructor(host: Trainer, gpu: GpuKdTrainer, onProgress: ((p: TrainProgress) => void) | undefined) {
    this.host = host;
    this.gpu = gpu;
    this.onProgress = onProgress;
    this.windows = new Int32Array(host.batch * (host.seqLen + 1));
  }

  /**
   * Build both trainers. Refused (typed): `parallel` (worker threads are a CPU feature: E_BAD_ARGUMENT naming
   * `--threads`), `teacherCache` (the teacher runs on the GPU anyway), and — from `GpuKdTrainer` — any provider
   * without a WebGPU version (E_UNSUPPORTED naming `--device cpu`).
   */
  static async create(ctx: GpuTrainContext, o: TrainerOptions): Promise<GpuTrainer> {
    if (o.parallel && o.parallel.threads > 1) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `${o.parallel.threads} training threads: worker threads are a CPU trainer feature`, {
        source: '--threads',
        hint: 'drop --threads with --device webgpu (the GPU runs the whole batch), or train with --device cpu',
      });
    }
    if (o.teacherCache) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'a teacher cache is not used on WebGPU (the teacher runs on the GPU)', {
        hint: 'drop the teacherCache option with WebGPU',
      });
    }
    const { onProgress, parallel: _p, teacherCache: _t, ...rest } = o;
    const host = new Trainer(rest);
    const c = o.teacher.config;
    // The student starts from the embedding/classifier the bundle stores, when given (as the CPU trainer does).
    let student: ModelWeights | undefined;
    if (o.studentEmbedding || o.studentClassifier) {
      const tensors = new Map(o.teacher.tensors);
      const set = (name: string, data: Float32Array) => tensors.set(name, { ...o.teacher.tensors.get(name)!, data });
      if (o.studentEmbedding) set(TensorNames.embedding, o.studentEmbedding);
      if (o.studentClassifier && !c.tiedClassifier) set(TensorNames.classifier, o.studentClassifier);
      student = { config: c, tensors };
    }
    const gpu = await GpuKdTrainer.create(ctx, {
      teacher: o.teacher,
      ...(student ? { student } : {}),
      batch: o.batch,
      seqLen: o.seqLen,
      steps: o.steps,
      // the host's resolved schedule, optimizer and loss settings: both devices must run the same
      ...host.settings,
      // the host's providers (the caller's and the frozen dense ones it made for the other linears): the same
      // objects, so reading the GPU parameters back into them gives the host the trained model
      providers: host.providers,
    });
    return new GpuTrainer(host, gpu, onProgress);
  }

  get steps(): number {
    return this.host.steps;
  }

  get completedSteps(): number {
    return this.gpu.stepCount;
  }

  get totalTokens(): number {
    return this.tokensSeen;
  }

  get trainingMs(): number {
    return this.elapsedMs;
  }

  get lastStep(): StepResult | null {
    return this.last;
  }

  /** The recipe checkpoints record (the CPU trainer's: no device in it, so checkpoints move between devices). */
  recipe(): Record<string, unknown> {
    return this.host.recipe();
  }

  /** One step on the windows a CPU run would draw for it. */
  async step(): Promise<StepResult> {
    const windows = this.host.batchFor(this.gpu.stepCount, this.windows);
    const r = await this.gpu.step(windows);
    this.tokensSeen += r.tokens;
    this.elapsedMs += r.ms;
    this.last = r;
    if (this.onProgress) {
      const tps = this.elapsedMs > 0 ? (this.tokensSeen * 1000) / this.elapsedMs : 0;
      const left = (this.steps - r.step) * r.tokens;
      this.onProgress({ ...r, steps: this.steps, tokensSeen: this.tokensSeen, elapsedMs: this.elapsedMs, tokensPerSec: tps, etaMs: tps > 0 ? (left * 1000) / tps : NaN });
    }
    return r;
  }

  /** Steps until `untilStep` (default: the end). */
  async run(untilStep = this.steps): Promise<StepResult | undefined> {
    let last: StepResult | undefined;
    while (this.completedSteps < Math.min(untilStep, this.steps)) last = await this.step();
    return last;
  }

  /** A checkpoint in the CPU Trainer's format (same tensors, same metadata, the host's recipe). */
  async state(): Promise<Uint8Array> {
    return this.gpu.state({
      format: CHECKPOINT_FORMAT,
      version: String(CHECKPOINT_VERSION),
      tokensSeen: String(this.tokensSeen),
      elapsedMs: String(this.elapsedMs),
      recipe: JSON.stringify(this.host.recipe()),
      ...(this.last ? { last: JSON.stringify(this.last) } : {}),
    });
  }

  /**
   * Continue from a checkpoint written by either device. The host's `loadState` checks it (format, version,
   * the recipe, every tensor) and restores the counters; only then do the tensors go to the GPU.
   */
  loadState(bytes: Uint8Array, source = '<checkpoint>'): void {
    this.host.loadState(bytes, source);
    this.gpu.loadState(bytes, source);
    this.last = this.host.lastStep;
    this.tokensSeen = this.host.totalTokens;
    this.elapsedMs = this.host.trainingMs;
  }

  /** Copy the GPU's parameters into the host's (the CPU providers and norm vectors). */
  private async syncHost(): Promise<void> {
    const values = await this.gpu.parameterValues();
    for (const p of this.host.params) {
      const t = values.get(p.name);
      if (t) p.data.set(t);
    }
  }

  /** What the bundle stores for every linear (as the CPU `Trainer.codecParams`, from the GPU's parameters). */
  async codecParams(): Promise<Map<string, { codecId: string; params: CodecParams }>> {
    await this.syncHost();
    return this.host.codecParams() as Map<string, { codecId: string; params: CodecParams }>;
  }

  /** The student as dense weights (as the CPU `Trainer.studentWeights`, from the GPU's parameters). */
  async studentWeights(): Promise<ModelWeights> {
    await this.syncHost();
    return this.host.studentWeights();
  }

  /** Student vs teacher on fixed windows, on the GPU (the CPU `evaluate`'s figures). */
  evaluate(windows: ArrayLike<number>[]): Promise<EvalResult> {
    return this.gpu.evaluate(windows);
  }

  dispose(): void {
    this.host.dispose();
  }
}
