import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { LINEAR_KINDS, type ModelWeights, TensorNames } from '@ultrasketch/model';
import type { CodecParams } from '@ultrasketch/core';
import { readSafetensors, writeSafetensors } from '@ultrasketch/format';
import type { ScheduleOptions } from '../optim.js';
import { CodecSteProvider, DenseProvider, type WeightProvider } from '../providers.js';
import { LittleBitProvider } from '../providers-littlebit.js';
import { HashedNetsStateProvider, SketchStateProvider } from '../providers-sketch.js';
import { type EvalResult, type KdRunOptions, type LossWeights, type StepResult, resolveKdRun } from '../trainer.js';
import type { GpuTensor, GpuTrainContext } from './context.js';
import { GpuDenseProvider, GpuLlamaGraph, type GpuGraphWeights, type GpuWeightProvider, graphParameters, uploadDenseWeights } from './graph.js';
import { distillLosses, mseLoss, partialCount } from './ops.js';
import { DISTILL_STATS } from './programs.js';
import { GpuAdamW } from './optim.js';
import { GpuLittleBitProvider } from './providers-littlebit.js';
import { GpuStatePickProvider } from './providers-sketch.js';
import { GPU_STE_CODECS, GpuCodecSteProvider } from './providers-ste.js';

/**
 * A dense KD training step on WebGPU with the CPU Trainer's semantics (trainer.ts `stepOnce`): student and
 * teacher forward on the same batch, loss = kl·KL + mse·Σ hidden MSE + ce·CE (defaults 1, 10, 0), the same
 * denominators (KL/CE over the batch's rows, MSE over its elements), the hidden-MSE gradient added at each
 * layer's output during backward, E_NOT_FINITE before the optimizer on a non-finite loss or gradient norm,
 * clipping, the warm-up + cosine schedule, AdamW. Linears come from the CPU trainer's providers (`providers`,
 * as `makeProviders` builds them; any linear without one stays frozen at the teacher's weight, as on the CPU):
 * a trainable `DenseProvider` becomes a `GpuDenseProvider`, a `LittleBitProvider` a `GpuLittleBitProvider`
 * (from the same initialisation); other kinds are refused (not on WebGPU yet). Norms train with
 * `trainNorms`. What comes back per
 * step: the per-row loss figures, the MSE partial sums and the gradient norm's partial sums (three small
 * reads). The data is the caller's: `step(windows)` takes [batch, seqLen + 1] token windows (e.g. filled by
 * the CPU trainer's `CalibrationBatches`, so both devices see the same batches).
 */
export interface GpuKdTrainerOptions extends KdRunOptions {
  /** The student's starting weights (default: the teacher's). */
  student?: ModelWeights;
}

/** The GPU provider for a CPU one (same initialisation), or a typed refusal for kinds not on WebGPU yet. */
export function gpuProviderFor(ctx: GpuTrainContext, p: WeightProvider): GpuWeightProvider {
  if (p instanceof LittleBitProvider) return new GpuLittleBitProvider(ctx, p);
  if (p instanceof SketchStateProvider || p instanceof HashedNetsStateProvider) return new GpuStatePickProvider(ctx, p);
  if (p instanceof CodecSteProvider && (GPU_STE_CODECS as readonly string[]).includes(p.codecId)) return new GpuCodecSteProvider(ctx, p);
  if (p instanceof DenseProvider) {
    const param = p.parameters()[0];
    return new GpuDenseProvider(ctx, p.name, p.rows, p.cols, p.weight(), p.trainable, param?.decay !== false);
  }
  throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `the ${p.constructor.name} provider of ${p.name} (codec ${p.codecId}) has no WebGPU version yet`, {
    hint: 'train this method on the CPU (--device cpu); WebGPU training has the dense, littlebit, sketch-states, hashednets-states and ste (binary, rtn) providers so far (issue 15)',
  });
}

export class GpuKdTrainer {
  readonly batch: number;
  readonly seqLen: number;
  readonly steps: number;
  readonly loss: LossWeights;
  readonly schedule: ScheduleOptions;
  readonly clipNorm: number;
  stepCount = 0;
  private readonly studentW: GpuGraphWeights;
  private readonly student: GpuLlamaGraph;
  private teacher: GpuLlamaGraph | null;
  private readonly optim: GpuAdamW;
  private readonly targets: GpuTensor;
  private readonly dLogits: GpuTensor;
  private readonly msePartial: GpuTensor;
  private readonly perLayer: number;
  /** (CPU provider, its GPU counterpart) of every linear that has a provider. */
  private readonly pairs: Array<[WeightProvider, GpuWeightProvider]> = [];

  private constructor(
    readonly ctx: GpuTrainContext,
    private readonly o: GpuKdTrainerOptions,
  ) {
    const c = o.teacher.config;
    this.batch = o.batch;
    this.seqLen = o.seqLen;
    this.steps = o.steps;
    const run = resolveKdRun(o); // the CPU trainer's defaults and checks: both devices run the same schedule
    this.loss = run.loss;
    if (!Number.isInteger(o.steps) || o.steps < 1) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `steps ${o.steps} must be a positive integer`);
    this.schedule = { lr: run.lr, steps: o.steps, warmupSteps: Math.round(run.warmup * o.steps), minLrRatio: run.minLrRatio };
    this.clipNorm = run.clipNorm;
    const trainNorms = run.trainNorms;
    if (run.trainEmbedding) {
      throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'the WebGPU trainer does not train the embedding or the classifier', {
        hint: 'train with --device cpu, or drop --train-embedding',
      });
    }
    const byName = new Map<string, WeightProvider>();
    for (const p of o.providers instanceof Map ? o.providers.values() : (o.providers ?? [])) {
      if (byName.has(p.name)) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `two providers for ${p.name}`);
      byName.set(p.name, p);
    }
    this.studentW = uploadDenseWeights(ctx, o.student ?? o.teacher, {
      trainable: false,
      trainNorms,
      label: 'student',
      provider: (name) => {
        const cpu = byName.get(name);
        if (!cpu) return undefined;
        const gpu = gpuProviderFor(ctx, cpu);
        this.pairs.push([cpu, gpu]);
        return gpu;
      },
    });
    this.student = new GpuLlamaGraph(ctx, this.studentW, { batch: o.batch, seqLen: o.seqLen });
    const needTeacher = this.loss.kl > 0 || this.loss.mse > 0;
    this.teacher = needTeacher
      ? new GpuLlamaGraph(ctx, uploadDenseWeights(ctx, o.teacher, { trainable: false, trainNorms: false, label: 'teacher' }), {
          batch: o.batch,
          seqLen: o.seqLen,
          training: false,
        })
      : null;
    this.optim = new GpuAdamW(ctx, graphParameters(this.studentW), { beta1: run.beta1, beta2: run.beta2, eps: run.eps, weightDecay: run.weightDecay });
    const n = o.batch * o.seqLen;
    this.targets = ctx.tensor(n, 'targets');
    this.dLogits = ctx.tensor(n * c.vocabSize, 'dLogits');
    this.perLayer = partialCount(n * c.dim);
    this.msePartial = ctx.tensor(Math.max(1, this.perLayer * c.nLayers), 'mse.partial');
  }

  static async create(ctx: GpuTrainContext, o: GpuKdTrainerOptions): Promise<GpuKdTrainer> {
    const t = await ctx.gpu.guard('uploading the training model', () => new GpuKdTrainer(ctx, o));
    await ctx.flush();
    return t;
  }

  /** One step on `windows` ([batch, seqLen + 1] tokens: inputs 0..L−1, targets 1..L of each). */
  async step(windows: Int32Array): Promise<StepResult> {
    if (this.stepCount >= this.steps) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `all ${this.steps} steps are done`);
    const t0 = Date.now();
    const { batch: B, seqLen: L, ctx } = this;
    const c = this.o.teacher.config;
    if (windows.length !== B * (L + 1)) throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `step: ${windows.length} tokens, expected ${B} windows of ${L + 1}`);
    const n = B * L;
    const inputs = new Int32Array(n);
    const targets = new Uint32Array(n);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < L; t++) {
        inputs[b * L + t] = windows[b * (L + 1) + t]!;
        const y = windows[b * (L + 1) + t + 1]!;
        if (!(y >= 0 && y < c.vocabSize)) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `token id ${y} is outside 0..${c.vocabSize - 1}`);
        targets[b * L + t] = y;
      }
    }
    ctx.write(this.targets, targets);
    this.student.forward(inputs);
    const tg = this.teacher;
    tg?.forward(inputs);
    const losses = distillLosses(ctx, this.student.logits, tg ? tg.logits : null, this.targets, n, c.vocabSize, tg ? this.loss.kl : 0, this.loss.ce, this.dLogits, n);
    const denom = n * c.dim;
    this.student.backward(
      this.dLogits,
      tg
        ? (l, dX) => {
            mseLoss(ctx, this.student.hidden(l), tg.hidden(l), n * c.dim, this.loss.mse, this.loss.mse > 0 ? dX : null, denom, {
              partial: this.msePartial,
              offset: l * this.perLayer,
            });
          }
        : undefined,
    );
    // One read per step: the per-row loss figures, the MSE partial sums and the gradient norm's partial sums
    // are copied side by side and come back together (each read drains the GPU's queue).
    const gradParts = this.optim.encodeGradNorm();
    const nStats = n * DISTILL_STATS;
    const nMse = tg ? this.perLayer * c.nLayers : 0;
    const back = ctx.scratchTensor('step.readback', nStats + nMse + gradParts.length);
    ctx.copy(losses.stats, back, nStats, 0, 0);
    if (nMse > 0) ctx.copy(this.msePartial, back, nMse, 0, nStats);
    ctx.copy(gradParts, back, gradParts.length, 0, nStats + nMse);
    const figures = await ctx.read(back, 0, nStats + nMse + gradParts.length);
    const ll = losses.summarize(figures.subarray(0, nStats));
    let mse = NaN;
    if (tg) {
      let s = 0;
      for (let i = nStats; i < nStats + nMse; i++) s += figures[i]!;
      mse = s / denom; // Σ over layers of each layer's mean
    }
    const gradNormValue = GpuAdamW.normOf(figures.subarray(nStats + nMse));
    if (!ll.teacherFinite || !ll.studentFinite) {
      throw new UltraSketchError(ErrorCodes.NOT_FINITE, `a ${ll.teacherFinite ? 'student' : 'teacher'} logit is not finite at step ${this.stepCount + 1} (WebGPU)`, {
        hint: 'the model overflows in the forward pass (check the float model with `ultrasketch eval`), or the training diverged: lower the learning rate',
      });
    }
    const loss = (this.loss.kl > 0 ? this.loss.kl * ll.kl : 0) + (this.loss.mse > 0 ? this.loss.mse * mse : 0) + (this.loss.ce > 0 ? this.loss.ce * ll.ce : 0);
    const measured = tg ? [loss, ll.kl, ll.ce, mse] : [loss, ll.ce];
    if (!measured.every(Number.isFinite)) {
      throw new UltraSketchError(ErrorCodes.NOT_FINITE, `the training loss is ${loss} at step ${this.stepCount + 1} (WebGPU); nothing of this step was applied`, {
        hint: 'lower the learning rate',
      });
    }
    const { gradNorm, lr } = this.optim.applyClipped(gradNormValue, this.stepCount, this.schedule, this.clipNorm);
    this.stepCount++;
    for (const [, gpu] of this.pairs) gpu.afterStep?.(this.stepCount);
    await ctx.flush();
    return { step: this.stepCount, loss, kl: ll.kl, ce: ll.ce, mse, tokens: n, ms: Date.now() - t0, lr, gradNorm };
  }

  /**
   * What the bundle stores for every provider's linear: the GPU parameters are read back into the CPU
   * provider, which packs them (so the bundle is byte-for-byte what the CPU trainer would write from them).
   */
  async codecParams(): Promise<Map<string, { codecId: string; params: CodecParams }>> {
    const out = new Map<string, { codecId: string; params: CodecParams }>();
    for (const [cpu, gpu] of this.pairs) {
      const cp = cpu.parameters();
      const gp = gpu.parameters();
      for (let i = 0; i < gp.length; i++) cp[i]!.data.set(await this.ctx.read(gp[i]!.data));
      out.set(cpu.name, { codecId: cpu.codecId, params: cpu.toCodecParams() });
    }
    return out;
  }

  /**
   * Student vs teacher on fixed windows (each ≥ seqLen + 1 tokens; the first seqLen + 1 are used), as the CPU
   * Trainer's `evaluate`: mean KL(teacher ‖ student), CE, top-1 agreement, Σ hidden MSE. No training.
   */
  async evaluate(windows: ArrayLike<number>[]): Promise<EvalResult> {
    const { batch: B, seqLen: L, ctx } = this;
    const c = this.o.teacher.config;
    this.teacher ??= new GpuLlamaGraph(ctx, uploadDenseWeights(ctx, this.o.teacher, { trainable: false, trainNorms: false, label: 'teacher' }), {
      batch: B,
      seqLen: L,
      training: false,
    });
    const tg = this.teacher;
    let kl = 0;
    let ce = 0;
    let top1 = 0;
    let mse = 0;
    let positions = 0;
    for (let s = 0; s < windows.length; s += B) {
      const count = Math.min(B, windows.length - s);
      const n = count * L;
      const inputs = new Int32Array(n);
      const targets = new Uint32Array(n);
      for (let b = 0; b < count; b++) {
        const w = windows[s + b]!;
        if (w.length < L + 1) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `evaluation window ${s + b} has ${w.length} tokens, needs ${L + 1}`);
        for (let t = 0; t < L; t++) {
          inputs[b * L + t] = w[t]!;
          targets[b * L + t] = w[t + 1]!;
        }
      }
      ctx.write(this.targets, targets);
      this.student.forward(inputs, count);
      tg.forward(inputs, count);
      const r = await distillLosses(ctx, this.student.logits, tg.logits, this.targets, n, c.vocabSize, 0, 0, null).read();
      if (!r.teacherFinite || !r.studentFinite) {
        throw new UltraSketchError(ErrorCodes.NOT_FINITE, `a ${r.teacherFinite ? 'student' : 'teacher'} logit is not finite in evaluation window ${s}..${s + count - 1} (WebGPU)`);
      }
      kl += r.kl * n;
      ce += r.ce * n;
      top1 += r.top1 * n;
      for (let l = 0; l < c.nLayers; l++) mse += (await mseLoss(ctx, this.student.hidden(l), tg.hidden(l), n * c.dim, 0, null).read()) * n;
      positions += n;
    }
    return { kl: kl / positions, ce: ce / positions, top1: top1 / positions, mse: mse / positions, positions };
  }

  /** Every trainable parameter read back, by name (as the CPU Trainer's `params`). */
  async parameterValues(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const p of this.optim.params) out.set(p.name, await this.ctx.read(p.data));
    return out;
  }

  /**
   * The checkpoint tensors, named as the CPU Trainer's `state()` names them (`param/<name>`, `adam.m/<name>`,
   * `adam.v/<name>`, and providers' buffers `buffer/<provider>/<key>`), read back from the GPU.
   */
  async checkpointTensors(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    const states = this.optim.states;
    for (let i = 0; i < this.optim.params.length; i++) {
      const p = this.optim.params[i]!;
      out.set(`param/${p.name}`, await this.ctx.read(p.data));
      out.set(`adam.m/${p.name}`, await this.ctx.read(states[i]!.m));
      out.set(`adam.v/${p.name}`, await this.ctx.read(states[i]!.v));
    }
    for (const [cpu, gpu] of this.pairs) {
      for (const [key, t] of Object.entries(gpu.buffers?.() ?? {})) out.set(`buffer/${cpu.name}/${key}`, await this.ctx.read(t));
    }
    return out;
  }

  /**
   * A checkpoint file in the CPU Trainer's format: these tensors, `step` = the steps done here, and the rest of
   * the metadata from `metadata` (the CPU trainer's — format, version, recipe, … — so its `loadState` accepts
   * the file and continues on the CPU; recording the recipe itself is the device-neutral trainer's job, to do).
   */
  async state(metadata: Record<string, string>): Promise<Uint8Array> {
    const tensors = [...(await this.checkpointTensors())].map(([name, data]) => ({ name, dtype: 'F32' as const, shape: [data.length], data }));
    return writeSafetensors(tensors, { ...metadata, step: String(this.stepCount) });
  }

  /**
   * Continue from a CPU Trainer checkpoint (`state()` bytes): every parameter and both moments go to the GPU,
   * gradients are zeroed, the step count is the file's. Missing or mis-sized tensors are E_MISSING_TENSOR; the
   * recipe is not compared here (the caller's trainer must match it, as on the CPU).
   */
  loadState(bytes: Uint8Array, source = '<checkpoint>'): void {
    const file = readSafetensors(bytes, source);
    const step = Number(file.metadata.step);
    if (!Number.isInteger(step) || step < 0 || step > this.steps) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `invalid step ${String(file.metadata.step)} in the checkpoint`, { source, hint: 'pass a file written by the trainer' });
    }
    const take = (name: string, len: number): Float32Array => {
      const t = file.tensors.get(name);
      if (!t || t.dtype !== 'F32' || t.data.byteLength !== len * 4) {
        throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `checkpoint tensor ${name} is missing or has the wrong size`, {
          source,
          hint: 'resume with the providers and options the checkpoint was written with',
        });
      }
      // a copy (not `t.data.slice()`: for a Node Buffer — a file read with readFileSync — slice is a view)
      const out = new Float32Array(len);
      new Uint8Array(out.buffer).set(t.data);
      return out;
    };
    const states = this.optim.states;
    // read (and check) everything before writing anything: a bad file leaves the trainer as it was
    const loaded = this.optim.params.map((p) => ({
      p: take(`param/${p.name}`, p.data.length),
      m: take(`adam.m/${p.name}`, p.data.length),
      v: take(`adam.v/${p.name}`, p.data.length),
    }));
    const buffers = this.pairs.flatMap(([cpu, gpu]) => Object.entries(gpu.buffers?.() ?? {}).map(([key, t]) => ({ t, data: take(`buffer/${cpu.name}/${key}`, t.length) })));
    for (const b of buffers) this.ctx.write(b.t, b.data);
    this.optim.params.forEach((p, i) => {
      this.ctx.write(p.data, loaded[i]!.p);
      this.ctx.write(states[i]!.m, loaded[i]!.m);
      this.ctx.write(states[i]!.v, loaded[i]!.v);
      this.ctx.zero(p.grad);
    });
    this.stepCount = step;
  }

  /** The student's weights read back (every linear's Ŵ; the norms when trained; the rest the teacher's). */
  async studentWeights(): Promise<ModelWeights> {
    const c = this.o.teacher.config;
    const tensors = new Map(this.o.teacher.tensors);
    for (let l = 0; l < c.nLayers; l++) {
      for (const kind of LINEAR_KINDS) {
        const p = this.studentW.layers[l]![kind];
        tensors.set(TensorNames.linear(l, kind), { shape: [p.rows, p.cols], data: await this.ctx.read(p.weight()) });
      }
    }
    if (this.o.trainNorms) {
      const w = this.studentW;
      for (const nw of [...w.attnNorm, ...w.ffnNorm, w.finalNorm]) tensors.set(nw.name, { shape: [c.dim], data: await this.ctx.read(nw.data) });
    }
    return { config: c, tensors };
  }
}
