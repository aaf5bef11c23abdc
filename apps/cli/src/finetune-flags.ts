/**
 * The finetuning flags shared by `compress` and `sweep` (docs/ste-trainer.md): --finetune-steps N [--lr X]
 * [--batch B] [--seq L] [--loss kd|ce|kd+ce] [--mse-weight W] [--data calib|teacher|both] [--train-mode auto|states|ste] [--train-norms] [--train-dense] [--train-embedding|--no-train-embedding] [--embedding-lr-scale S] [--smooth-k K] [--threads T]
 * [--checkpoint-dir D] [--checkpoint-every N] [--resume] [--device cpu|webgpu], training on --calib (never the evaluation text).
 */
import {
  FINETUNE_DATA,
  FINETUNE_DEVICES,
  FINETUNE_LOSSES,
  FINETUNE_MODES,
  type FinetuneData,
  type FinetuneDevice,
  type FinetuneMode,
  type FinetuneLoss,
  type FinetuneOptions,
  type TextFile,
  assertNotEvaluationText,
  readFileChecked,
} from '@ultrasketch/pipeline';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { type CommandInput, type OptionSpec, UsageError } from './command.js';
import { defaultDataFile } from './codec-flags.js';
import { note } from './io.js';
import type { CommandIO } from './command.js';
import { Progress } from './progress.js';

export function finetuneSpecs(): OptionSpec[] {
  return [
    { name: 'finetune-steps', kind: 'int', valueName: 'N', min: 0, default: 0, description: 'finetune the compressed linears for N steps after encoding (0 = post-training only)' },
    { name: 'lr', kind: 'number', valueName: 'X', description: 'finetuning peak learning rate', defaultText: '1e-3' },
    { name: 'batch', kind: 'int', valueName: 'B', min: 1, description: 'finetuning sequences per step', defaultText: '8' },
    { name: 'seq', kind: 'int', valueName: 'L', min: 1, description: 'finetuning tokens per sequence', defaultText: "min(256, the model's seq_len)" },
    { name: 'loss', kind: 'string', valueName: 'LOSS', choices: [...FINETUNE_LOSSES], description: 'kd = KL + 10·Σ hidden MSE against the float model; ce = next-token cross-entropy; kd+ce = both', defaultText: 'kd' },
    { name: 'mse-weight', kind: 'number', valueName: 'W', description: 'weight of Σ hidden-state MSE in the kd losses (0 = the logit KL alone)', defaultText: '10' },
    { name: 'data', kind: 'string', valueName: 'D', choices: [...FINETUNE_DATA], description: 'training sequences: calibration text, samples of the float model, or half of each', defaultText: 'calib' },
    { name: 'train-mode', kind: 'string', valueName: 'M', choices: [...FINETUNE_MODES], description: 'states = train the codec parameters (sketch/hashednets states, LittleBit factors); ste = train full weights through the codec with a straight-through estimator; auto = states where the codec has them, else ste', defaultText: 'auto' },
    { name: 'train-norms', kind: 'boolean', default: false, description: 'train the RMSNorm weights too' },
    { name: 'train-dense', kind: 'boolean', default: false, description: 'train the linears stored in float (kept dense, or left out by the codec) too; still stored in f16, so no bits change' },
    {
      name: 'train-embedding',
      kind: 'boolean',
      default: false,
      description: 'train the token embedding and the classifier too (one tensor when tied); stored as before (needs --embeddings f16 or f32), so no bits change; CPU only',
    },
    { name: 'no-train-embedding', kind: 'boolean', default: false, description: 'keep the embedding and classifier frozen where the --recipe would train them' },
    { name: 'embedding-lr-scale', kind: 'number', valueName: 'S', description: "the trained embedding's learning rate ÷ --lr (same schedule)", defaultText: '1' },
    { name: 'smooth-k', kind: 'number', valueName: 'K', description: 'littlebit: SmoothSign sharpness k of the sign gradient k·(1 − tanh²(k·x))', defaultText: '100' },
    { name: 'threads', kind: 'int', valueName: 'T', min: 1, max: 64, description: 'training threads (part of the recipe; --device cpu)', defaultText: '1' },
    {
      name: 'device',
      kind: 'string',
      valueName: 'DEV',
      choices: [...FINETUNE_DEVICES],
      description:
        "where the training steps run: cpu, or webgpu (Dawn: the optional 'webgpu' package and a Vulkan/Metal/D3D12 driver; SwiftShader when there is no GPU). Same recipe, checkpoints (they resume on either device) and bundle",
      defaultText: 'cpu',
    },
    {
      name: 'teacher-samples',
      kind: 'string',
      valueName: 'DIR',
      description:
        "with --data teacher/both: samples of the float model are generated once into DIR and reused by every later run with the same model, seed and --seq ('off': sample inside every step instead, slower)",
      defaultText: '$XDG_CACHE_HOME/ultrasketch/teacher-samples (~/.cache/...)',
    },
    { name: 'teacher-windows', kind: 'int', valueName: 'N', min: 1, description: 'the run trains on at most N teacher windows: the cache\'s first N, generated if missing (more steps draw them again)', defaultText: '4096' },
    { name: 'teacher-holdout', kind: 'int', valueName: 'N', min: 0, description: 'the first N teacher windows are never trained on; the bundle records the KL to the float model on them', defaultText: '32' },
    { name: 'checkpoint-dir', kind: 'path', valueName: 'DIR', description: 'write training checkpoints here (atomically; Ctrl-C saves and stops)' },
    { name: 'checkpoint-every', kind: 'int', valueName: 'N', min: 1, description: 'checkpoint every N steps', defaultText: '50' },
    { name: 'resume', kind: 'boolean', default: false, description: 'continue from the checkpoint in --checkpoint-dir' },
    {
      name: 'stop-after-steps',
      kind: 'int',
      valueName: 'N',
      min: 1,
      description: 'train only to step N of the --finetune-steps schedule, save the checkpoint and write the bundle as it is then (a long run in segments: the next one runs with --resume)',
    },
  ];
}

const FLAGS_NEEDING_STEPS = ['lr', 'batch', 'seq', 'loss', 'mse-weight', 'data', 'train-mode', 'train-norms', 'train-dense', 'train-embedding', 'no-train-embedding', 'embedding-lr-scale', 'smooth-k', 'threads', 'device', 'teacher-samples', 'teacher-windows', 'teacher-holdout', 'checkpoint-dir', 'checkpoint-every', 'resume', 'stop-after-steps', 'soft-query'];

/** Where teacher samples are cached unless --teacher-samples says otherwise. */
export function defaultTeacherSamplesDir(): string {
  const base = process.env.XDG_CACHE_HOME && isAbsolute(process.env.XDG_CACHE_HOME) ? process.env.XDG_CACHE_HOME : join(homedir(), '.cache');
  return join(base, 'ultrasketch', 'teacher-samples');
}

/** The detail shown next to a training progress bar (which shows steps, rate and ETA itself): loss, tokens/s. */
export function trainingDetail(p: { loss: number; tokensPerSec: number }): string {
  return `loss ${p.loss.toFixed(4)}, ${p.tokensPerSec.toFixed(0)} tok/s`;
}

export interface FinetuneSetup {
  options: FinetuneOptions;
  /** The progress bar (call finish() or clear()). */
  progress: Progress;
}

/**
 * The finetuning options from the command line, or undefined without --finetune-steps. Reads --calib (default
 * ../shared/data/tinystories/calib.txt) unless --data teacher, refusing evaluation text exactly as calibration
 * does (eval.txt by name, the --eval-text file or eval.txt next to the repository by path or content).
 */
export function finetuneFromInput(input: CommandInput, io: CommandIO, evalFile: TextFile | undefined, before?: () => void): FinetuneSetup | undefined {
  const { options } = input;
  const given = input.given ?? new Set<string>();
  const steps = (options['finetune-steps'] as number | undefined) ?? 0;
  const quiet = options.quiet === true;
  if (steps === 0) {
    const stray = FLAGS_NEEDING_STEPS.filter((f) => given.has(f));
    if (stray.length > 0) throw new UsageError(`${stray.map((f) => `--${f}`).join(', ')} need(s) --finetune-steps N`);
    return undefined;
  }
  const data = (options.data as FinetuneData | undefined) ?? 'calib';
  if (options.resume === true && options['checkpoint-dir'] === undefined) throw new UsageError('--resume needs --checkpoint-dir DIR');
  let calibText: string | undefined;
  let calibSource: string | undefined;
  if (data !== 'teacher') {
    const path = typeof options.calib === 'string' ? options.calib : defaultDataFile('calib.txt');
    if (path === undefined) throw new UsageError('--calib FILE is required to finetune: the default ../shared/data/tinystories/calib.txt is not next to the repository');
    const bytes = readFileChecked(path, 'calibration text', '--calib');
    const evals: TextFile[] = [];
    if (evalFile) evals.push(evalFile);
    const defaultEval = defaultDataFile('eval.txt');
    if (defaultEval !== undefined && defaultEval !== evalFile?.path) evals.push({ path: defaultEval, bytes: readFileChecked(defaultEval, 'evaluation text', '--eval-text') });
    assertNotEvaluationText({ path, bytes }, evals);
    calibText = new TextDecoder('utf-8').decode(bytes);
    calibSource = path;
  }
  const teacherDir = typeof options['teacher-samples'] === 'string' ? (options['teacher-samples'] as string) : undefined;
  if (data === 'calib' && (given.has('teacher-samples') || given.has('teacher-windows') || given.has('teacher-holdout'))) {
    throw new UsageError('--teacher-samples, --teacher-windows and --teacher-holdout need --data teacher or both');
  }
  if (teacherDir === 'off' && (given.has('teacher-windows') || given.has('teacher-holdout'))) {
    throw new UsageError('--teacher-windows and --teacher-holdout need cached teacher samples (not --teacher-samples off)');
  }
  const teacherSamples =
    data === 'calib' || teacherDir === 'off'
      ? undefined
      : {
          dir: teacherDir ?? defaultTeacherSamplesDir(),
          ...(options['teacher-windows'] === undefined ? {} : { windows: options['teacher-windows'] as number }),
          ...(options['teacher-holdout'] === undefined ? {} : { holdout: options['teacher-holdout'] as number }),
        };
  if (given.has('train-embedding') && given.has('no-train-embedding')) throw new UsageError('give --train-embedding or --no-train-embedding, not both');
  // Timed from the first step this process trains: encoding and the bit plan come before it, and a resumed run's
  // earlier steps were trained by another process.
  const progress = new Progress({ label: 'finetune', total: steps, unit: 'steps', quiet, stream: io.stderr, fromFirstUpdate: true });
  let samplesBar: Progress | undefined;
  let started = false;
  const ft: FinetuneOptions = {
    steps,
    data,
    ...(options.lr === undefined ? {} : { lr: options.lr as number }),
    ...(options.batch === undefined ? {} : { batch: options.batch as number }),
    ...(options.seq === undefined ? {} : { seq: options.seq as number }),
    ...(options.loss === undefined ? {} : { loss: options.loss as FinetuneLoss }),
    ...(options['mse-weight'] === undefined ? {} : { mseWeight: options['mse-weight'] as number }),
    ...(options['train-mode'] === undefined ? {} : { mode: options['train-mode'] as FinetuneMode }),
    ...(options['train-norms'] === true ? { trainNorms: true } : {}),
    ...(options['train-dense'] === true ? { trainDense: true } : {}),
    ...(options['train-embedding'] === true ? { trainEmbedding: true } : {}),
    ...(options['embedding-lr-scale'] === undefined ? {} : { embeddingLrScale: options['embedding-lr-scale'] as number }),
    ...(options['smooth-k'] === undefined ? {} : { smoothK: options['smooth-k'] as number }),
    ...(options.threads === undefined ? {} : { threads: options.threads as number }),
    ...(options.device === undefined ? {} : { device: options.device as FinetuneDevice }),
    ...(options['checkpoint-dir'] === undefined ? {} : { checkpointDir: options['checkpoint-dir'] as string }),
    ...(options['checkpoint-every'] === undefined ? {} : { checkpointEvery: options['checkpoint-every'] as number }),
    ...(options.resume === true ? { resume: true } : {}),
    ...(options['stop-after-steps'] === undefined ? {} : { stopAfterSteps: options['stop-after-steps'] as number }),
    ...(calibText === undefined ? {} : { calibText, calibSource: calibSource! }),
    ...(teacherSamples ? { teacherSamples } : {}),
    onTeacherSamples: (done: number, total: number) => {
      if (!samplesBar) {
        if (!started) {
          started = true;
          before?.();
        }
        samplesBar = new Progress({ label: 'teacher samples', total, unit: 'windows', quiet, stream: io.stderr });
      }
      samplesBar.update(done, `into ${teacherSamples?.dir}`);
      if (done === total) samplesBar.finish();
    },
    onProgress: (p: { step: number; loss: number; tokensPerSec: number; etaMs: number }) => {
      if (!started) {
        started = true;
        before?.();
      }
      progress.update(p.step, trainingDetail(p));
    },
  };
  const samples = teacherSamples ? `samples of the float model (cached in ${teacherSamples.dir})` : 'samples of the float model';
  const where = options.device === 'webgpu' ? ' (WebGPU)' : '';
  note(io, quiet, `finetune: ${steps} steps${where} on ${data === 'teacher' ? samples : calibSource}${data === 'both' ? ` and ${samples}` : ''}`);
  return { options: ft, progress };
}
