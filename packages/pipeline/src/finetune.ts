/**
 * Compression-aware finetuning inside `compress()` (docs/ste-trainer.md, issue 6): after the post-training
 * encode, every compressed linear gets a weight provider of @ultrasketch/ste-trainer, the Trainer distils the
 * float teacher into it (KD / CE on calibration text or teacher samples — never the evaluation text), and the
 * trained codec parameters replace the post-training ones in the bundle, with a `training` section recording
 * the recipe and its cost.
 *
 * Providers: `sketch-states` for sketch, `hashednets-states` for hashednets and `littlebit` for littlebit when
 * those provider kinds are registered (the trainer package's providers-sketch / providers-littlebit); the
 * generic `ste` provider (straight-through through the codec's own encode/decode) otherwise, and for rtn and
 * binary. Linears the codec does not compress (and kept-dense ones) stay frozen at the float weights.
 *
 * `device: 'webgpu'` (issue 15) runs every step on the GPU (ste-trainer's GpuTrainer through Dawn in Node) with
 * the same options, data, checkpoints and bundle writer; the recipe records the device.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, UltraSketchError, fromSystemError } from '@ultrasketch/core';
import { LINEAR_KINDS, type ModelConfig, type ModelWeights, TensorNames, type TextTokenizer, linearShape, parameterCount } from '@ultrasketch/model';
import type { MemoryItem } from './memory.js';
import * as ste from '@ultrasketch/ste-trainer';
import {
  type ProviderChoice,
  type StepResult,
  type TrainProgress,
  Trainer,
  type TrainerOptions,
  getProviderFactory,
  makeProviders,
} from '@ultrasketch/ste-trainer';
import type { GpuTrainer } from '@ultrasketch/ste-trainer/webgpu';
import { removeStaleTemporaries } from './stale.js';
import { killMidWrite, killSelf, testKillPoint } from './test-kill.js';
import { type TeacherCorpus, teacherCorpus } from './teacher-corpus.js';
import { documentTokenStream } from './text.js';

/** The checkpoint file finetuning writes in its checkpoint directory. */
export const CHECKPOINT_FILE = 'finetune.ckpt';

export type FinetuneLoss = 'kd' | 'ce' | 'kd+ce';
export const FINETUNE_LOSSES: readonly FinetuneLoss[] = ['kd', 'ce', 'kd+ce'];
export type FinetuneData = 'calib' | 'teacher' | 'both';
export const FINETUNE_DATA: readonly FinetuneData[] = ['calib', 'teacher', 'both'];
/**
 * What the trainer trains: `states` = the codec's own parameters (sketch/hashednets states, LittleBit factors
 * and scales) through their state-training provider; `ste` = full-precision weights with a straight-through
 * estimator through the codec's encode/decode (the compressed parameters are re-derived from the trained
 * weights at the end); `auto` = `states` where the codec has such a provider, else `ste`.
 */
export type FinetuneMode = 'auto' | 'states' | 'ste';
export const FINETUNE_MODES: readonly FinetuneMode[] = ['auto', 'states', 'ste'];
/**
 * Where the training steps run: `cpu` (the Trainer: JS / WebAssembly SIMD, worker threads) or `webgpu` (issue 15:
 * the same recipe with every step on the GPU through Dawn — the `webgpu` package — in Node). Data, recipe,
 * checkpoints and the bundle writer are the same for both; a checkpoint of one device resumes on the other.
 */
export type FinetuneDevice = 'cpu' | 'webgpu';
export const FINETUNE_DEVICES: readonly FinetuneDevice[] = ['cpu', 'webgpu'];

/** The loss weights of each --loss choice (KD = KL + 10·Σ hidden MSE, methods.md §2). */
export const LOSS_WEIGHTS: Record<FinetuneLoss, { kl: number; mse: number; ce: number }> = {
  kd: { kl: 1, mse: 10, ce: 0 },
  ce: { kl: 0, mse: 0, ce: 1 },
  'kd+ce': { kl: 1, mse: 10, ce: 1 },
};

/** The loss weights of `loss` with the hidden-state MSE's weight replaced by `mseWeight` when given. */
export function lossWeightsOf(loss: FinetuneLoss, mseWeight?: number): { kl: number; mse: number; ce: number } {
  const w = LOSS_WEIGHTS[loss];
  return mseWeight === undefined || w.mse === 0 ? { ...w } : { ...w, mse: mseWeight };
}

export interface FinetuneOptions {
  /** Training steps (> 0). */
  steps: number;
  /** Peak learning rate (default 1e-3). */
  lr?: number;
  /** Sequences per step (default 8). */
  batch?: number;
  /** Tokens per sequence (default min(256, the model's seq_len)). */
  seq?: number;
  /** Default 'kd'. */
  loss?: FinetuneLoss;
  /**
   * The weight of Σ hidden-state MSE in the kd losses (default LOSS_WEIGHTS' 10; 0 = the logit KL alone).
   * Refused with loss 'ce', which has no MSE term. Part of the recipe (stored in the training section's
   * lossWeights and in checkpoints).
   */
  mseWeight?: number;
  /** Default 'calib'. */
  data?: FinetuneData;
  /** Default 'auto' (state training where the codec has it, else STE). */
  mode?: FinetuneMode;
  /** Train the RMSNorm weights too (stored in the bundle). Default false. */
  trainNorms?: boolean;
  /**
   * Train the token embedding and the classifier too (one tensor when tied), at `embeddingLrScale` × the
   * schedule's rate (default the trainer's EMBEDDING_LR_SCALE, 1). They are stored as before (f16 or f32: the
   * storage must be float), so the bit count does not change. CPU only. Default false.
   */
  trainEmbedding?: boolean;
  embeddingLrScale?: number;
  /**
   * Train the linears the bundle stores in float (kept dense, or kinds the codec leaves out) as well, as
   * plain dense weights; they are stored in float f16 exactly as without training, so the bit count does not
   * change. Default false (they stay frozen at the teacher's weights).
   */
  trainDense?: boolean;
  /** LittleBit provider: the SmoothSign sharpness k in k·(1 − tanh²(k·x)) (default 100, methods.md §2). */
  smoothK?: number;
  /** Threads (1 = this thread only; default 1). Part of the recipe. CPU only. */
  threads?: number;
  /** Where the steps run (default 'cpu'). Recorded in the training section, not in checkpoints. */
  device?: FinetuneDevice;
  /** Calibration text (documents separated by blank lines): required unless data is 'teacher'. Never eval text. */
  calibText?: string;
  /** Its name for the training section. */
  calibSource?: string;
  /** Directory for the checkpoint file `finetune.ckpt` (created if missing). */
  checkpointDir?: string;
  /** Save a checkpoint every N steps (default 50). */
  checkpointEvery?: number;
  /** Continue from the checkpoint in checkpointDir when there is one (default false: start over). */
  resume?: boolean;
  /**
   * Train only up to this step of the `steps`-long schedule, then save the checkpoint and return what the
   * model is at that step (a long run in segments: each segment a bundle, the next one resumes). Needs
   * checkpointDir. Default: all steps.
   */
  stopAfterSteps?: number;
  /**
   * With resume: no checkpoint is an error (E_FILE_NOT_FOUND naming it) instead of a fresh start — what
   * `compress --resume` asks for. Off for a sweep's points, whose later points have no checkpoint yet.
   */
  requireCheckpoint?: boolean;
  /**
   * With data 'teacher' or 'both': draw the teacher's windows from samples generated once and cached in
   * `dir` (teacher-corpus.ts) instead of sampling inside every step. `windows` caps how many the run draws
   * from, the cache's first ones, generated if missing (default: as many as the run draws, at most 4,096; more
   * steps reuse them); the first `holdout` (default 32) are never trained on: the student is measured on them
   * at the end (the training section's `holdout`), a figure for choosing recipes and checkpoints that is not
   * the evaluation text.
   */
  teacherSamples?: { dir: string; windows?: number; holdout?: number };
  /** Called while teacher windows are generated (done, total). */
  onTeacherSamples?: (done: number, total: number) => void;
  /** The name of the recipe these options came from (recipes.ts), recorded in the training section. */
  recipeName?: string;
  /** Progress after every step (loss, tokens/s, ETA). */
  onProgress?: (p: TrainProgress) => void;
  /** Called after every step (tests use it to stop a run mid-way, like a kill). */
  onStep?: (r: StepResult) => void;
}

/**
 * The `training` section of the compress report. The bundle stores it without `cost.wallSeconds` (the only field
 * that is not a pure function of the inputs), so a finetuned bundle is byte-identical from run to run.
 */
export interface TrainingSection {
  method: 'ste-trainer';
  recipe: {
    /** The named recipe (compress --recipe), when one was used. */
    name?: string;
    steps: number;
    lr: number;
    batch: number;
    seq: number;
    loss: FinetuneLoss;
    lossWeights: { kl: number; mse: number; ce: number };
    data: FinetuneData;
    trainNorms: boolean;
    /** Present (true) only when the float-stored linears were trained too. */
    trainDense?: true;
    /** Present (true) only when the embedding (and an untied classifier) trained too, at embeddingLrScale × lr. */
    trainEmbedding?: true;
    embeddingLrScale?: number;
    /** Present only when not the default 100. */
    smoothK?: number;
    /** sketch: the soft query's initial temperature τ0 (codec option softQuery, training only), when used. */
    softQuery?: number;
    threads: number;
    /** Where the steps ran (always written now; absent in bundles written before issue 15, which trained on the CPU). */
    device?: FinetuneDevice;
    seed: number;
    schedule: string;
    optimizer: string;
    clipNorm: number;
    /** The matmul kernel: float32 sums in the WebAssembly SIMD gemm, float64 in JS, or the WGSL tiled matmul (device webgpu). */
    gemm: 'wasm-simd' | 'js' | 'wgsl';
    calibration: { textSource: string; textSha256: string; tokens: number } | null;
    /** Present when the student trained with its embedding/classifier as stored (decoded from this storage), not the float ones. */
    studentEmbedding?: string;
    /** The cached teacher samples trained on (data teacher/both with teacherSamples); absent when sampled per step. */
    teacherSamples?: { model: string; seed: number; temperature: number; window: number; windows: number; holdout: number; generator: string };
  };
  /**
   * The student against the float model on held-out teacher windows (never trained on; not the evaluation
   * text): mean KL, CE and top-1 over their positions. Absent without teacherSamples.
   */
  holdout?: { windows: number; positions: number; kl: number; ce: number; top1: number };
  /** Provider kind per trained linear kind ('q' → 'ste', ...; 'littlebit|dense' where layers differ). */
  providers: Record<string, string>;
  trainedLinears: number;
  cost: {
    steps: number;
    tokens: number;
    /** Wall seconds spent in training steps, summed over resumed segments: in the report only, never stored. */
    wallSeconds: number;
    /** Device webgpu: the adapter the steps of this call ran on (not byte-reproducible). */
    adapter?: string;
  };
  /**
   * The losses of the last step (restored from the checkpoint when a resumed run had no steps left). `kl` and
   * `mse` are null when they were not measured (no teacher: --loss ce); never NaN.
   */
  final: { loss: number; kl: number | null; ce: number; mse: number | null } | null;
}

export interface FinetuneResult {
  /** Trained codec parameters by linear name. */
  params: Map<string, { codecId: string; params: unknown }>;
  /** Trained norm vectors by name (trainNorms only). */
  norms: Map<string, Float32Array>;
  /** The trained embedding and (untied) classifier by name (trainEmbedding only). */
  embeddings: Map<string, Float32Array>;
  section: TrainingSection;
  /** Wall seconds of this call (training only). */
  seconds: number;
  interrupted: boolean;
  resumedFrom: number | null;
}

const STATE_PROVIDERS: Record<string, string> = {
  sketch: 'sketch-states',
  hashednets: 'hashednets-states',
  littlebit: 'littlebit',
};

/** Make the trainer package's optional provider kinds available when it ships their registration functions. */
function registerOptionalProviders(): void {
  const mod = ste as unknown as Record<string, unknown>;
  for (const fn of ['registerSketchProviders', 'registerLittleBitProviders']) {
    const f = mod[fn];
    if (typeof f === 'function') (f as () => void)();
  }
}

/**
 * The provider kind used for a codec: with mode 'auto' (the default) its state-training provider when
 * registered, else 'ste'; mode 'ste' always the generic straight-through provider; mode 'states' the
 * state-training provider or BAD_ARGUMENT when the codec has none.
 */
export function finetuneProviderKind(codecId: string, mode: FinetuneMode = 'auto'): string {
  if (mode === 'ste') return 'ste';
  registerOptionalProviders();
  const kind = STATE_PROVIDERS[codecId];
  let registered = false;
  if (kind !== undefined) {
    try {
      getProviderFactory(kind);
      registered = true;
    } catch {
      registered = false;
    }
  }
  if (registered) return kind!;
  if (mode === 'states') {
    const have = Object.keys(STATE_PROVIDERS).join(', ');
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `--train-mode states: codec ${codecId} has no state-training provider`, {
      source: '--train-mode',
      hint: `state training exists for ${have}; use --train-mode ste (or auto) for ${codecId}`,
    });
  }
  return 'ste';
}

/**
 * Check the finetuning options: BAD_ARGUMENT naming the flag. With `codecId`, also refuse flags that the codec's
 * training does not use (they would be recorded in the recipe without any effect), like a codec flag the codec
 * does not take. With `requireCheckpoint`, a `resume` without a checkpoint is FILE_NOT_FOUND. Cheap: the
 * pipeline calls it before encoding anything.
 */
export function validateFinetune(o: FinetuneOptions, codecId?: string): void {
  const bad = (flag: string, why: string, hint?: string) => {
    // The flag is the error's source, which leads the message ("--lr: 0 must be a positive number").
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, why, { source: flag, ...(hint === undefined ? {} : { hint }) });
  };
  const posInt = (v: number | undefined, flag: string) => {
    if (v !== undefined && (!Number.isInteger(v) || v < 1)) bad(flag, `${v} must be a positive integer`);
  };
  posInt(o.steps, '--finetune-steps');
  posInt(o.batch, '--batch');
  posInt(o.seq, '--seq');
  posInt(o.threads, '--threads');
  if (o.device !== undefined && !FINETUNE_DEVICES.includes(o.device)) bad('--device', `${JSON.stringify(o.device)} is not one of ${FINETUNE_DEVICES.join(', ')}`);
  if (o.device === 'webgpu' && o.threads !== undefined && o.threads > 1) {
    bad('--threads', `${o.threads} threads: worker threads are a CPU trainer feature`, 'drop --threads with --device webgpu (the GPU runs the whole batch), or use --device cpu');
  }
  if (o.checkpointEvery !== undefined && (!Number.isInteger(o.checkpointEvery) || o.checkpointEvery < 0)) {
    bad('--checkpoint-every', `${o.checkpointEvery} must be a non-negative integer (0: only at the end)`);
  }
  if (o.smoothK !== undefined && !(o.smoothK > 0 && Number.isFinite(o.smoothK))) bad('--smooth-k', `${o.smoothK} must be a positive number`);
  if (o.lr !== undefined && !(o.lr > 0 && Number.isFinite(o.lr))) bad('--lr', `${o.lr} must be a positive number`);
  if (o.embeddingLrScale !== undefined) {
    if (!(o.embeddingLrScale > 0 && Number.isFinite(o.embeddingLrScale))) bad('--embedding-lr-scale', `${o.embeddingLrScale} must be a positive number`);
    if (!o.trainEmbedding) bad('--embedding-lr-scale', 'has no effect without --train-embedding', 'add --train-embedding, or drop it');
  }
  if (o.trainEmbedding && o.device === 'webgpu') bad('--train-embedding', 'the WebGPU trainer does not train the embedding', 'use --device cpu, or drop --train-embedding');
  if (o.loss !== undefined && !FINETUNE_LOSSES.includes(o.loss)) bad('--loss', `${JSON.stringify(o.loss)} is not one of ${FINETUNE_LOSSES.join(', ')}`);
  if (o.mseWeight !== undefined) {
    if (!(o.mseWeight >= 0 && Number.isFinite(o.mseWeight))) bad('--mse-weight', `${o.mseWeight} must be a non-negative number`);
    if ((o.loss ?? 'kd') === 'ce') bad('--mse-weight', 'loss ce has no hidden-state MSE term', 'use --loss kd or kd+ce, or drop --mse-weight');
  }
  if (o.data !== undefined && !FINETUNE_DATA.includes(o.data)) bad('--data', `${JSON.stringify(o.data)} is not one of ${FINETUNE_DATA.join(', ')}`);
  if (o.mode !== undefined && !FINETUNE_MODES.includes(o.mode)) bad('--train-mode', `${JSON.stringify(o.mode)} is not one of ${FINETUNE_MODES.join(', ')}`);
  if ((o.data ?? 'calib') !== 'teacher' && o.calibText === undefined) bad('--calib', 'finetuning on calibration text needs the text');
  if (o.resume && o.checkpointDir === undefined) bad('--resume', 'needs --checkpoint-dir');
  if (o.stopAfterSteps !== undefined) {
    if (!Number.isInteger(o.stopAfterSteps) || o.stopAfterSteps < 1 || o.stopAfterSteps > o.steps) bad('--stop-after-steps', `${o.stopAfterSteps} must be an integer in 1..${o.steps} (--finetune-steps)`);
    if (o.checkpointDir === undefined) bad('--stop-after-steps', 'needs --checkpoint-dir (the next segment resumes from its checkpoint)');
  }
  if (o.teacherSamples !== undefined && (o.data ?? 'calib') === 'calib') bad('--teacher-samples', 'has no effect with --data calib', 'use --data teacher or both, or drop it');
  if (o.teacherSamples?.holdout !== undefined && (!Number.isInteger(o.teacherSamples.holdout) || o.teacherSamples.holdout < 0)) bad('--teacher-holdout', `${o.teacherSamples.holdout} must be a non-negative integer`);
  if (o.teacherSamples?.windows !== undefined && (!Number.isInteger(o.teacherSamples.windows) || o.teacherSamples.windows < 1)) bad('--teacher-windows', `${o.teacherSamples.windows} must be a positive integer`);
  // Accepted but without effect: refused, so the recipe never records a setting that did nothing.
  if (o.checkpointEvery !== undefined && o.checkpointDir === undefined) bad('--checkpoint-every', 'needs --checkpoint-dir (there is nowhere to write checkpoints)');
  if (codecId !== undefined && o.smoothK !== undefined) {
    const kind = finetuneProviderKind(codecId, o.mode ?? 'auto');
    if (kind !== 'littlebit') {
      bad(
        '--smooth-k',
        `codec ${codecId} trains through the '${kind}' provider, which does not use it`,
        'only littlebit state training uses --smooth-k (codec littlebit, --train-mode auto or states); drop it',
      );
    }
  }
  if (o.resume && o.requireCheckpoint && o.checkpointDir !== undefined) {
    const path = join(o.checkpointDir, CHECKPOINT_FILE);
    if (!existsSync(path)) {
      throw new UltraSketchError(ErrorCodes.FILE_NOT_FOUND, '--resume: there is no checkpoint to resume from', {
        source: path,
        hint: 'drop --resume to start fresh, or pass the --checkpoint-dir of the run to continue',
      });
    }
  }
}

export interface FinetuneInput {
  teacher: ModelWeights;
  tokenizer: TextTokenizer;
  codecId: string;
  /** Raw codec options (as given to compress). */
  codecOptions: Record<string, unknown>;
  /** The compressed linears to train, each with the seed its bundle entry records (and its own raw codec options under a mixed bit plan). */
  linears: ReadonlyMap<string, { seed: number; codecOptions?: Record<string, unknown> }>;
  saliency?: ReadonlyMap<string, Float64Array>;
  seed: number;
  options: FinetuneOptions;
  /**
   * The embedding (and untied classifier) decoded from the storage the bundle will have (e.g. rtn2): the student
   * trains with them, so the trained linears fit the embedding the bundle really has. Absent: the float ones.
   */
  storedEmbedding?: { embedding: Float32Array; classifier?: Float32Array; storage: string };
}

/**
 * The trainer's graph (ste-trainer) implements the plain Llama decoder: no biases, no q/k norm, head width
 * dim / nHeads, unscaled RoPE. Training any other member of the family through it would optimise another model
 * than the one being compressed, so such a config is refused (E_UNSUPPORTED naming each feature) before anything
 * is encoded; compressing it without finetuning works.
 */
export function assertTrainableConfig(config: ModelConfig, source?: string): void {
  const features: string[] = [];
  if (config.qkvBias) features.push('q/k/v projection biases (Qwen2, attention_bias)');
  if (config.oBias) features.push('an output projection bias (attention_bias)');
  if (config.qkNorm) features.push('per-head q/k RMSNorm (Qwen3)');
  if (config.headDim !== undefined && config.headDim * config.nHeads !== config.dim) {
    features.push(`a head width of ${config.headDim} ≠ dim / nHeads = ${config.dim / config.nHeads}`);
  }
  if (config.ropeScaling) features.push(`RoPE scaling (${config.ropeScaling.type})`);
  if (features.length > 0) {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `finetuning does not support this model: the trainer's graph implements the plain Llama decoder, and this one has ${features.join(', ')}`, {
      ...(source === undefined ? {} : { source }),
      hint: 'compress it without --finetune-steps (post-training compression supports the whole Llama family)',
    });
  }
}

/**
 * What finetuning holds in memory, part by part (an estimate, stated before training starts): the float teacher;
 * for the trained linears their trainable parameters with gradient and AdamW's two moments (at most four float32
 * copies of each weight: the STE provider trains full-precision weights; state providers train less); the
 * activations kept for the backward pass of teacher and student (per token and layer: the residual, the norms,
 * q/k/v, the attention output, the three MLP widths and a row of attention scores); the logits of both models and
 * their gradient. `loadTeacher`: the float model must first be read from a streamed source.
 */
export function finetuneMemory(config: ModelConfig, o: FinetuneOptions, loadTeacher: boolean): MemoryItem[] {
  const batch = o.batch ?? 8;
  const seq = o.seq ?? Math.min(256, config.seqLen);
  let linearWeights = 0;
  for (const k of LINEAR_KINDS) {
    const [r, c] = linearShape(config, k);
    linearWeights += r * c;
  }
  linearWeights *= config.nLayers;
  const tokens = batch * seq;
  const perTokenLayer = 8 * config.dim + 4 * config.hiddenDim + config.nHeads * seq;
  return [
    { what: `the float teacher${loadTeacher ? ' (read from the streamed source)' : ''}`, bytes: 4 * parameterCount(config) },
    { what: 'trained linears with gradients and AdamW moments', bytes: 16 * linearWeights },
    { what: `activations of ${batch} × ${seq} tokens`, bytes: 2 * 4 * tokens * config.nLayers * perTokenLayer },
    { what: 'logits of teacher and student and their gradient', bytes: 3 * 4 * tokens * config.vocabSize },
  ];
}

/** Train the compressed linears of a model through their codec and return what the bundle stores. */
export async function finetune(input: FinetuneInput): Promise<FinetuneResult> {
  const o = input.options;
  validateFinetune(o, input.codecId);
  assertTrainableConfig(input.teacher.config);
  const t0 = performance.now();
  // Loaded on first use: importing the trainer's Node entry switches its matmuls to the WebAssembly SIMD gemm
  // (unless ULTRASKETCH_TRAINER_GEMM=js), which should not happen merely because the pipeline was imported.
  const { runWithCheckpoints, workerThreads, wasmGemmActive } = await import('@ultrasketch/ste-trainer/node');
  const config = input.teacher.config;
  const lr = o.lr ?? 1e-3;
  const batch = o.batch ?? 8;
  const seq = o.seq ?? Math.min(256, config.seqLen);
  const loss = o.loss ?? 'kd';
  const lossWeights = lossWeightsOf(loss, o.mseWeight);
  const data = o.data ?? 'calib';
  const threads = o.threads ?? 1;
  const trainNorms = o.trainNorms ?? false;
  // The embedding's settings as the trainer takes them and the training section records them.
  const embeddingTraining = o.trainEmbedding ? { trainEmbedding: true as const, embeddingLrScale: o.embeddingLrScale ?? ste.EMBEDDING_LR_SCALE } : {};
  const kind = finetuneProviderKind(input.codecId, o.mode ?? 'auto');
  if (input.codecOptions.softQuery !== undefined && kind !== 'sketch-states') {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `the soft query trains sketch states; codec ${input.codecId} trains through the '${kind}' provider`, {
      source: '--soft-query',
      hint: 'use it with --codec sketch --query absmaxmin and --train-mode auto or states, or drop it',
    });
  }
  const calibTokens = data === 'teacher' || o.calibText === undefined ? undefined : documentTokenStream(input.tokenizer, o.calibText, o.calibSource ?? '<calib>');
  // Teacher windows generated once (or read from the cache) instead of sampled inside every step.
  let corpus: TeacherCorpus | null = null;
  const holdout = o.teacherSamples ? (o.teacherSamples.holdout ?? 32) : 0;
  if (data !== 'calib' && o.teacherSamples) {
    const perStep = data === 'teacher' ? batch : batch - Math.ceil(batch / 2);
    const drawn = Math.min(perStep * o.steps, o.teacherSamples.windows ?? 4096);
    corpus = teacherCorpus(input.teacher, {
      dir: o.teacherSamples.dir,
      windows: holdout + Math.max(1, drawn),
      seqLen: seq,
      seed: input.seed,
      ...(o.onTeacherSamples ? { onProgress: o.onTeacherSamples } : {}),
    });
  }

  const providerKinds: Record<string, string> = {};
  const noteKind = (k: string, used: string) => {
    const had = providerKinds[k];
    if (had === undefined) providerKinds[k] = used;
    else if (!had.split('|').includes(used)) providerKinds[k] = `${had}|${used}`;
  };
  const trainDense = o.trainDense ?? false;
  if (trainDense && [...linearNames(input.teacher)].every((name) => input.linears.has(name))) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `codec ${input.codecId} compresses every linear; there is no float-stored linear to train`, {
      source: '--train-dense',
      hint: 'drop --train-dense, or leave some linear kinds in float with --layers',
    });
  }
  const providers = makeProviders(input.teacher, (layer, k): ProviderChoice => {
    const name = TensorNames.linear(layer, k);
    const entry = input.linears.get(name);
    if (entry === undefined) {
      if (!trainDense) return undefined; // frozen
      noteKind(k, 'dense');
      return { kind: 'dense', options: { trainable: true, dtype: 'f16' } };
    }
    noteKind(k, kind);
    const codecOptions = entry.codecOptions ?? input.codecOptions;
    const options: Record<string, unknown> =
      kind === 'ste'
        ? { codec: input.codecId, codecOptions }
        : {
            codecOptions,
            ...(o.smoothK !== undefined && kind === 'littlebit' ? { smoothK: o.smoothK } : {}),
            // the sketch's soft query (codec option softQuery) anneals over the run: its provider needs the length
            ...(kind === 'sketch-states' ? { steps: o.steps } : {}),
          };
    const sal = input.saliency?.get(name);
    // The bundle entry records weightSeed(seed, name): the provider encodes with exactly that seed.
    return (ctx) => getProviderFactory(kind)({ ...ctx, seed: entry.seed, ...(sal ? { saliency: sal } : {}) }, options);
  });

  const device = o.device ?? 'cpu';
  const trainerOptions: TrainerOptions = {
    teacher: input.teacher,
    providers,
    ...(calibTokens ? { calibTokens } : {}),
    data,
    batch,
    seqLen: seq,
    steps: o.steps,
    lr,
    loss: lossWeights,
    trainNorms,
    ...embeddingTraining,
    seed: input.seed,
    ...(corpus ? { teacherWindows: corpus.tokens, teacherHoldout: holdout } : {}),
    ...(input.storedEmbedding ? { studentEmbedding: input.storedEmbedding.embedding } : {}),
    ...(input.storedEmbedding?.classifier ? { studentClassifier: input.storedEmbedding.classifier } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  };
  // WebGPU: the same options, data and checkpoints, every step on the GPU (GpuTrainer keeps a CPU Trainer as its
  // host for the data, the recipe and the bundle's packing).
  let adapter: string | undefined;
  let trainer: Trainer | GpuTrainer;
  let gpuContext: NodeTrainContext['ctx'] | null = null;
  if (device === 'webgpu') {
    const gpu = await webgpuTrainContext();
    adapter = gpu.adapter;
    gpuContext = gpu.ctx;
    const { GpuTrainer } = await import('@ultrasketch/ste-trainer/webgpu');
    try {
      trainer = await GpuTrainer.create(gpu.ctx as Parameters<typeof GpuTrainer.create>[0], trainerOptions);
    } catch (err) {
      gpu.ctx.dispose();
      throw err;
    }
  } else {
    trainer = new Trainer({ ...trainerOptions, ...(threads > 1 ? { parallel: workerThreads(threads) } : {}) });
  }
  const cpuTrainer = trainer instanceof Trainer ? trainer : null;
  let interrupted = false;
  let resumedFrom: number | null = null;
  const kill = testKillPoint();
  try {
    const onStep = (r: StepResult) => {
      o.onStep?.(r);
      if (kill?.at === 'step' && kill.step === r.step) killSelf();
    };
    if (o.checkpointDir !== undefined) {
      const path = join(o.checkpointDir, CHECKPOINT_FILE);
      try {
        if (!existsSync(o.checkpointDir)) mkdirSync(o.checkpointDir, { recursive: true });
      } catch (err) {
        throw fromSystemError(err, o.checkpointDir, 'create');
      }
      // A run killed while writing its checkpoint left `finetune.ckpt.tmp-<pid>-*`: remove it (never a live run's).
      removeStaleTemporaries(path);
      const r = await runWithCheckpoints(trainer, {
        path,
        every: o.checkpointEvery ?? 50,
        resume: o.resume ?? false,
        ...(o.stopAfterSteps === undefined ? {} : { untilStep: o.stopAfterSteps }),
        onStep,
        ...(kill?.at === 'checkpoint' && cpuTrainer ? { writeOptions: (step: number) => (step === kill.step ? killMidWrite(cpuTrainer.state().byteLength) : {}) } : {}),
      });
      interrupted = r.interrupted;
      resumedFrom = r.resumedFrom;
    } else {
      while (trainer.completedSteps < trainer.steps) {
        onStep(await trainer.step());
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    if (interrupted) {
      throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `finetuning interrupted after step ${trainer.completedSteps} of ${trainer.steps}; the checkpoint is saved`, {
        source: o.checkpointDir,
        hint: 'run the same command again with --resume to continue',
      });
    }
    const params = new Map<string, { codecId: string; params: unknown }>();
    for (const [name, p] of await trainer.codecParams()) params.set(name, p);
    const norms = new Map<string, Float32Array>();
    const embeddings = new Map<string, Float32Array>();
    if (trainNorms || o.trainEmbedding) {
      const student = await trainer.studentWeights();
      if (trainNorms) for (const [name, t] of student.tensors) if (t.shape.length === 1) norms.set(name, t.data);
      if (o.trainEmbedding) {
        for (const name of config.tiedClassifier ? [TensorNames.embedding] : [TensorNames.embedding, TensorNames.classifier]) embeddings.set(name, student.tensors.get(name)!.data);
      }
    }
    // From the trainer, not from onStep: a run resumed from its final checkpoint takes no step here, and the
    // checkpoint restored the last step's losses.
    const finalStep = trainer.lastStep;
    let held: TrainingSection['holdout'];
    if (corpus && holdout > 0) {
      const w = seq + 1;
      const windows = Array.from({ length: holdout }, (_, i) => corpus!.tokens.subarray(i * w, (i + 1) * w));
      const e = await trainer.evaluate(windows);
      held = { windows: holdout, positions: e.positions, kl: e.kl, ce: e.ce, top1: e.top1 };
    }
    const section: TrainingSection = {
      method: 'ste-trainer',
      recipe: {
        ...(o.recipeName === undefined ? {} : { name: o.recipeName }),
        steps: o.steps,
        lr,
        batch,
        seq,
        loss,
        lossWeights,
        data,
        trainNorms,
        ...embeddingTraining,
        ...(trainDense ? { trainDense: true as const } : {}),
        ...(o.smoothK !== undefined && o.smoothK !== 100 ? { smoothK: o.smoothK } : {}),
        ...(input.codecId === 'sketch' && input.codecOptions.softQuery !== undefined ? { softQuery: Number(input.codecOptions.softQuery) } : {}),
        threads,
        device,
        seed: input.seed,
        schedule: 'linear warm-up over 2% of the steps, cosine to 0',
        optimizer: 'AdamW β (0.9, 0.999), eps 1e-8, weight decay 0',
        clipNorm: 1,
        gemm: device === 'webgpu' ? 'wgsl' : wasmGemmActive() ? 'wasm-simd' : 'js',
        calibration:
          calibTokens && o.calibText !== undefined
            ? {
                textSource: o.calibSource ?? '<calib>',
                textSha256: createHash('sha256').update(o.calibText).digest('hex'),
                tokens: calibTokens.length,
              }
            : null,
        ...(corpus ? { teacherSamples: { ...corpus.key, windows: corpus.windows, holdout } } : {}),
        ...(input.storedEmbedding ? { studentEmbedding: input.storedEmbedding.storage } : {}),
      },
      ...(held ? { holdout: held } : {}),
      providers: providerKinds,
      trainedLinears: providers.size,
      cost: { steps: trainer.completedSteps, tokens: trainer.totalTokens, wallSeconds: trainer.trainingMs / 1000, ...(adapter === undefined ? {} : { adapter }) },
      final: finalStep ? { loss: finalStep.loss, kl: measured(finalStep.kl), ce: finalStep.ce, mse: measured(finalStep.mse) } : null,
    };
    gemmUsed = wasmGemmActive() ? 'wasm-simd' : 'js';
    return { params, norms, embeddings, section, seconds: (performance.now() - t0) / 1000, interrupted, resumedFrom };
  } finally {
    trainer.dispose();
    gpuContext?.dispose(); // this run's GPU tensors; the device and its compiled programs stay for the next run
  }
}

type NodeTrainContext = import('@ultrasketch/ste-trainer/node').NodeTrainContext;
let webgpuDevice: Promise<NodeTrainContext['device']> | null = null;

/**
 * A WebGPU training context on the process's device (Dawn through runtime-webgpu's nodeGpu(), opened once: a
 * sweep's points share it and its compiled programs; each call's context is disposed by the caller, freeing its
 * tensors). No `webgpu` package, no loadable Dawn or no adapter: E_UNSUPPORTED naming --device, what is missing
 * and both fixes (install what is missing, or train with --device cpu).
 */
async function webgpuTrainContext(): Promise<NodeTrainContext> {
  const { nodeTrainContext } = await import('@ultrasketch/ste-trainer/node');
  try {
    const open = () =>
      nodeTrainContext().then((c) => {
        c.ctx.dispose();
        return c.device;
      });
    webgpuDevice ??= open();
    let device = await webgpuDevice;
    try {
      device.checkLive();
    } catch {
      // lost (a driver reset) or destroyed since the last run: open a new one
      webgpuDevice = open();
      device = await webgpuDevice;
    }
    return await nodeTrainContext(device);
  } catch (err) {
    webgpuDevice = null;
    const failure = (err as { failure?: unknown } | null)?.failure;
    if (err instanceof UltraSketchError && (failure === 'no-webgpu' || failure === 'no-adapter')) {
      throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `cannot train on WebGPU: ${err.problem}`, {
        source: '--device',
        hint: `${err.hint ?? 'install a WebGPU driver'}; or train on the CPU with --device cpu`,
        cause: err,
      });
    }
    throw err;
  }
}

/** A loss term, or null when it was not measured (NaN from the trainer): the bundle stores no NaN. */
function measured(x: number): number | null {
  return Number.isNaN(x) ? null : x;
}

/** Canonical names of every linear of the model. */
function* linearNames(weights: ModelWeights): Generator<string> {
  for (let l = 0; l < weights.config.nLayers; l++) for (const k of LINEAR_KINDS) yield TensorNames.linear(l, k);
}

let gemmUsed: 'wasm-simd' | 'js' | null = null;
/** The matmul kernel the last finetune() ran with (null before the first). */
export function finetuneGemm(): 'wasm-simd' | 'js' | null {
  return gemmUsed;
}
