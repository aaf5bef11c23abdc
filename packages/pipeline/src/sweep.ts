import type { TrainProgress } from '@ultrasketch/ste-trainer';
import { type FinetuneOptions, finetuneProviderKind } from './finetune.js';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { ErrorCodes, UltraSketchError, isUltraSketchError } from '@ultrasketch/core';
import { parameterCount } from '@ultrasketch/model';
import { type KernelChoice, NodeSession } from '@ultrasketch/runtime-node';
import { type Calibration, type CalibrationInfo, calibrate, codecUsesSaliency, evaluationOverlap, overlapError } from './calibrate.js';
import { COMPRESS_CODECS, codecOptionKeys, isBpwTargeted, optionsFor, resolveCodecOptions } from './codec-options.js';
import { type CompressProgress, type EmbeddingStorage, type SmallMatrixPolicy, compress } from './compress.js';
import { writeFileAtomic } from '@ultrasketch/node-files';
import { type NamedPath, assertOutputDirectory, assertOutputNotInput, ensureOutputDirectory } from './files.js';
import { type EvaluateResult, type ScoringSession, defaultWindow, evaluate } from './evaluate.js';
import { type LoadedModel, loadModel } from './load.js';
import { PIPELINE_VERSION, TOOL_NAME } from './version.js';

/**
 * `sweep()`: compress + evaluate a grid of codecs × bits-per-weight targets on one model, with the float
 * model evaluated by the same code in the same run, and write the table (`sweep.json`), a plot
 * (`sweep.svg`: bpwLinears vs perplexity) and a Markdown table. Codecs with fixed bits (`rtn:K`, `binary`,
 * `float`, `littlebit:rank=R`) run once; codecs with a target (sketch, hashednets, littlebit) once per bpw.
 * A point whose budget the codec cannot meet is recorded as skipped with the codec's reason, not a crash.
 */

// ------------------------------------------------------------------------------------------ specs

/** One codec of the grid: its id, raw options of its own, and the label rows and plot lines use. */
export interface SweepCodecSpec {
  label: string;
  codec: string;
  options: Record<string, unknown>;
}

/**
 * Parse a codec spec: `NAME[:OPT...]`. Options are `key=value` (kebab or camel case: `group-size=32`,
 * `hash=mixed`, `residual=false`); for `rtn` a bare number is the bit width (`rtn:2`). A part without `=`
 * after a `key=value` continues that value, so `alloc=saliency:0.5` works. Examples: `rtn:2`, `binary`,
 * `sketch:hash=mixed:groups=4:alloc=saliency:0.5`, `littlebit:residual=false`, `littlebit:rank=8`,
 * `littlebit:residual=false:ls-rounds=8:refine-signs=true:refine-objective=activation`.
 */
export function parseCodecSpec(text: string): SweepCodecSpec {
  const label = text.trim();
  const [codec, ...parts] = label.split(':');
  const bad = (problem: string): never => {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `codec spec ${JSON.stringify(label)}: ${problem}`, {
      source: '--codecs',
      hint: `write NAME[:key=value...], e.g. rtn:2, binary, sketch:hash=mixed, littlebit:residual=false; codecs: ${COMPRESS_CODECS.join(', ')}`,
    });
  };
  if (!codec) bad('the codec name is empty');
  const keys = codecOptionKeys(codec!);
  if (!keys) bad(`unknown codec "${codec}"`);
  const options: Record<string, unknown> = {};
  let last: string | undefined;
  for (const part of parts) {
    const eq = part.indexOf('=');
    if (eq < 0) {
      if (codec === 'rtn' && last === undefined && /^\d+$/.test(part)) {
        options.bits = Number(part);
        last = 'bits';
      } else if (last !== undefined && typeof options[last] === 'string') {
        options[last] = `${options[last] as string}:${part}`;
      } else bad(`"${part}" is not key=value`);
      continue;
    }
    const key = part.slice(0, eq).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    if (!keys!.includes(key)) bad(`codec ${codec} has no option "${key}" (options: ${keys!.join(', ') || 'none'})`);
    options[key] = parseValue(part.slice(eq + 1));
    last = key;
  }
  return { label, codec: codec!, options };
}

function parseValue(v: string): unknown {
  if (v === 'true') return true;
  if (v === 'false') return false;
  if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v)) return Number(v);
  return v;
}

// ------------------------------------------------------------------------------------------ types

export interface SweepProgressEvent {
  phase: 'calibrate' | 'float' | 'point-start' | 'point-end' | 'weight' | 'finetune';
  /** 1-based index of the point (the float evaluation is point 0). */
  index: number;
  total: number;
  label: string;
  bpw: number | null;
  row?: SweepRow;
  weight?: CompressProgress;
  calibration?: { tokensDone: number; tokensTotal: number };
  /** phase 'finetune': the point's training progress after each step. */
  training?: TrainProgress;
}

export interface SweepOptions {
  /** A loaded float model, or the path of a llama2.c checkpoint. */
  model: LoadedModel | string;
  tokenizerPath?: string;
  /** The codecs of the grid: specs or their text (`rtn:2`, `binary`, `sketch`, ...). */
  codecs: ReadonlyArray<SweepCodecSpec | string>;
  /** Bits-per-weight targets for the codecs that take one. */
  bpw: readonly number[];
  /** Raw options given to every codec that accepts each key (a spec's own options win). */
  codecOptions?: Record<string, unknown>;
  layers?: string | readonly string[];
  embeddings?: EmbeddingStorage;
  seed?: number;
  /** Policy for matrices too small for a target (default 'error': the point is skipped). */
  smallMatrix?: SmallMatrixPolicy;
  /** Evaluation text (never calibration text). */
  evalText: string;
  evalTextSource?: string;
  /** First N windows (default 8). */
  evalWindows?: number;
  window?: number;
  /** Calibration text, used (once, shared by every point) when a codec of the grid uses saliency. */
  calibration?: { text: string; textSource?: string; maxTokens?: number };
  /** Calibration statistics already measured (`calibrate()`), used instead of `calibration`. */
  calibrated?: Calibration;
  /** Write sweep.json and sweep.svg here (and the bundles with keepBundles). */
  outDir?: string;
  /**
   * Inputs besides the model, tokenizer and texts (which are known), that no output may overwrite: refused
   * with E_OUTPUT_IS_INPUT before any work.
   */
  inputs?: NamedPath[];
  keepBundles?: boolean;
  /** Dense kernels of the float model (default auto). */
  kernels?: KernelChoice;
  /** The command line that ran the sweep (stored in sweep.json). */
  command?: string;
  /** How the per-row commands name things (default: the paths as given to sweep). */
  commandArgs?: { program?: string; model?: string; tokenizer?: string; evalText?: string; calib?: string };
  onProgress?(e: SweepProgressEvent): void;
  /**
   * Finetune every point with this recipe (docs/ste-trainer.md); the same token budget for every method.
   * With checkpointDir, each point checkpoints into its own subdirectory (named like its bundle).
   */
  finetune?: FinetuneOptions;
}

export interface SweepRow {
  label: string;
  codec: string;
  /**
   * ok: measured. skipped: the codec (or finetuning) cannot make this point (infeasible budget, a finetuning
   * flag with nothing to act on). failed: the point was made but its quality is not a number (E_NOT_FINITE):
   * recorded with its reason and null figures, never as NaN, and the sweep goes on.
   */
  status: 'ok' | 'skipped' | 'failed';
  /** Why a point was skipped or failed (the typed error's message). */
  reason?: string;
  /** The target of this point (null for fixed-bit codecs and the float model). */
  bpwTarget: number | null;
  /** Resolved codec options (raw for a skipped point). */
  options: unknown;
  bpwLinears: number | null;
  bpwSelectedLinears: number | null;
  bitsPerParam: number | null;
  fileBytes: number | null;
  keptDense: string[];
  meanNll: number | null;
  perplexity: number | null;
  kl: number | null;
  top1: number | null;
  /** Wall-clock seconds of compress + evaluation (evaluation alone for the float row). */
  seconds: number;
  /** A command that reproduces this row. */
  command: string;
  /** Training tokens and wall seconds when the point was finetuned. */
  training?: { tokens: number; wallSeconds: number };
  /** The bundle, when kept. */
  bundle?: string;
}

export interface SweepResult {
  tool: string;
  toolVersion: string;
  command: string;
  model: { path: string; sha256: string; format: string; params: number };
  protocol: EvaluateResult['protocol'];
  evalText: { source: string; sha256: string };
  window: number;
  windows: number;
  predictedTokens: number;
  calibration: CalibrationInfo | null;
  /** The float model first, then every point in grid order (codec, then bpw). */
  rows: SweepRow[];
  files: { json: string; svg: string } | null;
}

// ------------------------------------------------------------------------------------------ sweep

interface Point {
  spec: SweepCodecSpec;
  bpw: number | null;
  raw: Record<string, unknown>;
  resolved: unknown;
}

/** The file a point's bundle is written to (in the output directory, with --keep-bundles). */
function bundleFileName(p: Point): string {
  return `${slug(p.spec.label)}${p.bpw === null ? '' : `-bpw${p.bpw}`}.usk`;
}

export async function sweep(options: SweepOptions): Promise<SweepResult> {
  const model = typeof options.model === 'string' ? loadModel(options.model, options.tokenizerPath === undefined ? {} : { tokenizerPath: options.tokenizerPath }) : options.model;
  const specs = options.codecs.map((c) => (typeof c === 'string' ? parseCodecSpec(c) : c));
  if (specs.length === 0) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'the sweep has no codecs', { source: '--codecs' });
  }
  for (const b of options.bpw) {
    if (!(typeof b === 'number' && Number.isFinite(b) && b > 0)) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `bpw target ${b} must be a positive number`, { source: '--bpw' });
    }
  }
  const evalWindows = options.evalWindows ?? 8;
  if (!Number.isInteger(evalWindows) || evalWindows < 1) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `a sweep evaluates every point: windows must be ≥ 1, got ${evalWindows}`, {
      source: '--eval-windows',
    });
  }
  if (options.calibration) {
    // Document by document, not byte for byte: an extra newline or CRLF line ends do not make it other text.
    const err = overlapError(
      evaluationOverlap(options.calibration.text, options.evalText),
      options.calibration.textSource ?? '--calib',
      options.evalTextSource ?? '<evaluation text>',
    );
    if (err) throw err;
  }

  // The grid, every point's options resolved (bad options fail here, before any work).
  const points: Point[] = [];
  for (const spec of specs) {
    const raw = { ...optionsFor(spec.codec, options.codecOptions ?? {}), ...spec.options };
    const targets = isBpwTargeted(spec.codec, raw) && raw.bpw === undefined ? options.bpw : [null];
    if (isBpwTargeted(spec.codec, raw) && raw.bpw === undefined && options.bpw.length === 0) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `codec ${spec.label} needs bpw targets`, { source: '--bpw' });
    }
    for (const bpw of targets) {
      const r = bpw === null ? raw : { ...raw, bpw };
      points.push({ spec, bpw: bpw ?? (typeof raw.bpw === 'number' ? raw.bpw : null), raw: r, resolved: resolveCodecOptions(spec.codec, r) });
    }
  }
  const total = points.length;
  const progress = (e: SweepProgressEvent) => options.onProgress?.(e);
  // --smooth-k acts only where LittleBit state training runs: refused when no point uses it (it would do
  // nothing), dropped from the points that do not (their commands do not carry it either).
  if (options.finetune?.smoothK !== undefined) {
    const mode = options.finetune.mode ?? 'auto';
    if (!points.some((p) => finetuneProviderKind(p.spec.codec, mode) === 'littlebit')) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'no codec of the grid trains through the littlebit provider, which is the only one that uses it', {
        source: '--smooth-k',
        hint: 'drop --smooth-k, or add codec littlebit to --codecs',
      });
    }
  }
  const finetuneFor = (codec: string): FinetuneOptions | undefined => {
    const f = options.finetune;
    if (f === undefined || f.smoothK === undefined || finetuneProviderKind(codec, f.mode ?? 'auto') === 'littlebit') return f;
    const { smoothK: _unused, ...rest } = f;
    return rest;
  };

  // Before any work: the output directory must be one (or not exist yet), and no file the sweep writes may be
  // one of its inputs (a model, tokenizer or text kept in the output directory under an output's name).
  if (options.outDir !== undefined) {
    assertOutputDirectory(options.outDir);
    const inputs: NamedPath[] = [
      { path: model.source.path, what: 'checkpoint' },
      ...(model.source.tokenizerPath ? [{ path: model.source.tokenizerPath, what: 'tokenizer' }] : []),
      ...(model.source.files ?? []).map((f) => ({ path: f.path, what: f.role === 'weights' ? 'checkpoint' : f.role })),
      ...(options.evalTextSource === undefined ? [] : [{ path: options.evalTextSource, what: 'evaluation text (--eval-text)' }]),
      ...(options.calibration?.textSource === undefined ? [] : [{ path: options.calibration.textSource, what: 'calibration text (--calib)' }]),
      ...(options.calibrated === undefined ? [] : [{ path: options.calibrated.info.textSource, what: 'calibration text (--calib)' }]),
      ...(options.inputs ?? []),
    ];
    const outputs = ['sweep.json', 'sweep.svg', ...(options.keepBundles ? points.map(bundleFileName) : [])];
    for (const name of outputs) assertOutputNotInput(join(options.outDir, name), inputs, { flag: '--out-dir', what: name });
  }

  // Calibration once, if any point uses it.
  let calibration: Calibration | undefined = options.calibrated;
  if (calibration === undefined && points.some((p) => codecUsesSaliency(p.spec.codec, p.resolved))) {
    if (!options.calibration) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'a codec of the grid uses calibration statistics, but no calibration text was given', {
        source: '--calib',
        hint: 'pass a calibration text (never the evaluation text)',
      });
    }
    calibration = calibrate({
      model,
      text: options.calibration.text,
      ...(options.calibration.textSource === undefined ? {} : { textSource: options.calibration.textSource }),
      ...(options.calibration.maxTokens === undefined ? {} : { maxTokens: options.calibration.maxTokens }),
      onProgress: (p) => progress({ phase: 'calibrate', index: 0, total, label: 'calibration', bpw: null, calibration: p }),
    });
  }

  if (options.outDir !== undefined) ensureOutputDirectory(options.outDir);
  const evalSource = options.evalTextSource ?? '<evaluation text>';
  // The KV cache holds one evaluation window, not the whole seq_len (gigabytes for a 128k-context model).
  const contextLength = Math.min(options.window ?? defaultWindow('llama2c-documents', model.weights.config), model.weights.config.seqLen);
  const reference = NodeSession.fromWeights(model.weights, { kernels: options.kernels ?? 'auto', contextLength });
  // Every point is compared with the float model on the same windows: compute its logits once.
  const cachedReference = new WindowCache(reference);
  const params = parameterCount(model.weights.config);
  const args = options.commandArgs ?? {};
  const program = args.program ?? 'ultrasketch';
  const common = {
    model: args.model ?? model.source.path,
    tokenizer: args.tokenizer ?? options.tokenizerPath,
    evalText: args.evalText ?? evalSource,
    calib: args.calib ?? calibration?.info.textSource,
  };
  const rows: SweepRow[] = [];
  try {
    // The float model, by the same code on the same windows (against itself: KL 0, top-1 1).
    const t0 = performance.now();
    const f = await evaluate({
      session: reference,
      reference: cachedReference,
      tokenizer: model.tokenizer,
      text: options.evalText,
      textSource: evalSource,
      windows: evalWindows,
      ...(options.window === undefined ? {} : { window: options.window }),
    });
    const floatRow: SweepRow = {
      label: 'float32',
      codec: 'float32',
      status: 'ok',
      bpwTarget: null,
      options: null,
      bpwLinears: 32,
      bpwSelectedLinears: 32,
      bitsPerParam: 32,
      fileBytes: null,
      keptDense: [],
      meanNll: f.meanNll,
      perplexity: f.perplexity,
      kl: f.kl!,
      top1: f.top1!,
      seconds: (performance.now() - t0) / 1000,
      command: shellJoin([
        program,
        'eval',
        common.model,
        ...(common.tokenizer ? ['--tokenizer', common.tokenizer] : []),
        '--text',
        common.evalText,
        '--windows',
        String(evalWindows),
        ...(options.window === undefined ? [] : ['--window', String(options.window)]),
        '--reference',
        common.model,
      ]),
    };
    rows.push(floatRow);
    progress({ phase: 'float', index: 0, total, label: 'float32', bpw: null, row: floatRow });

    for (let i = 0; i < points.length; i++) {
      const p = points[i]!;
      const index = i + 1;
      progress({ phase: 'point-start', index, total, label: p.spec.label, bpw: p.bpw });
      const file = bundleFileName(p);
      const out = options.outDir !== undefined ? join(options.outDir, file) : file;
      const pointFinetune = finetuneFor(p.spec.codec);
      const command = shellJoin([
        program,
        'compress',
        common.model,
        ...(common.tokenizer ? ['--tokenizer', common.tokenizer] : []),
        '--codec',
        p.spec.codec,
        ...codecFlags(p.raw),
        ...layerFlags(options),
        ...(codecUsesSaliency(p.spec.codec, p.resolved) && common.calib
          ? ['--calib', common.calib, '--calib-tokens', String(calibration!.info.tokens)]
          : []),
        ...(options.smallMatrix === undefined ? [] : ['--small-matrix', options.smallMatrix]),
        '--eval-windows',
        String(evalWindows),
        '--eval-text',
        common.evalText,
        ...(options.window === undefined ? [] : ['--eval-window', String(options.window)]),
        ...(pointFinetune ? finetuneFlags(pointFinetune, common.calib) : []),
        '-o',
        out,
        '--json',
      ]);
      const t = performance.now();
      let row: SweepRow;
      try {
        const { report } = await compress({
          model,
          codec: p.spec.codec,
          codecOptions: p.raw,
          ...(options.layers === undefined ? {} : { layers: options.layers }),
          ...(options.embeddings === undefined ? {} : { embeddings: options.embeddings }),
          ...(options.seed === undefined ? {} : { seed: options.seed }),
          ...(options.smallMatrix === undefined ? {} : { smallMatrix: options.smallMatrix }),
          ...(calibration ? { saliency: calibration.stats.meanSquare, calibration: calibration.info } : {}),
          ...(options.keepBundles && options.outDir !== undefined ? { output: out } : {}),
          provenance: { command },
          measureQuality: {
            text: options.evalText,
            textSource: evalSource,
            windows: evalWindows,
            reference: cachedReference,
            ...(options.window === undefined ? {} : { window: options.window }),
          },
          onProgress: (w) => progress({ phase: 'weight', index, total, label: p.spec.label, bpw: p.bpw, weight: w }),
          ...(pointFinetune
            ? {
                finetune: {
                  ...pointFinetune,
                  onProgress: (t: TrainProgress) => {
                    options.finetune?.onProgress?.(t);
                    progress({ phase: 'finetune', index, total, label: p.spec.label, bpw: p.bpw, training: t });
                  },
                  ...(pointFinetune.checkpointDir === undefined ? {} : { checkpointDir: join(pointFinetune.checkpointDir, file.replace(/\.usk$/, '')) }),
                },
              }
            : {}),
        });
        const q = report.quality as unknown as { meanNll: number; perplexity: number; kl: number; top1: number };
        row = {
          label: p.spec.label,
          codec: p.spec.codec,
          status: 'ok',
          bpwTarget: p.bpw,
          options: report.codec.options,
          bpwLinears: report.bpwLinears,
          bpwSelectedLinears: report.bpwSelectedLinears,
          bitsPerParam: report.bitsPerParam,
          fileBytes: report.fileBytes,
          keptDense: report.keptDense.map((k) => k.name),
          meanNll: q.meanNll,
          perplexity: q.perplexity,
          kl: q.kl,
          top1: q.top1,
          seconds: (performance.now() - t) / 1000,
          command,
          ...(report.training ? { training: { tokens: report.training.cost.tokens, wallSeconds: report.training.cost.wallSeconds } } : {}),
          ...(options.keepBundles && options.outDir !== undefined ? { bundle: out } : {}),
        };
      } catch (err) {
        // A point that cannot be made is skipped; one whose quality is not a number failed. Both keep the
        // sweep going (hours of other points are not thrown away) and are recorded with the typed reason.
        const status = pointFailure(err);
        if (status === null) throw err;
        row = {
          label: p.spec.label,
          codec: p.spec.codec,
          status,
          reason: (err as Error).message,
          bpwTarget: p.bpw,
          options: p.resolved,
          bpwLinears: null,
          bpwSelectedLinears: null,
          bitsPerParam: null,
          fileBytes: null,
          keptDense: [],
          meanNll: null,
          perplexity: null,
          kl: null,
          top1: null,
          seconds: (performance.now() - t) / 1000,
          command,
        };
      }
      rows.push(row);
      progress({ phase: 'point-end', index, total, label: p.spec.label, bpw: p.bpw, row });
    }

    const result: SweepResult = {
      tool: TOOL_NAME,
      toolVersion: PIPELINE_VERSION,
      command: options.command ?? '',
      model: { path: model.source.path, sha256: model.source.sha256, format: String(model.source.format), params },
      protocol: f.protocol,
      evalText: { source: evalSource, sha256: createHash('sha256').update(options.evalText).digest('hex') },
      window: f.window,
      windows: f.windows,
      predictedTokens: f.predictedTokens,
      calibration: calibration?.info ?? null,
      rows,
      files: null,
    };
    if (options.outDir !== undefined) {
      const files = { json: join(options.outDir, 'sweep.json'), svg: join(options.outDir, 'sweep.svg') };
      result.files = files;
      writeFileAtomic(files.json, new TextEncoder().encode(`${JSON.stringify(result, jsonSafe, 2)}\n`));
      writeFileAtomic(files.svg, new TextEncoder().encode(sweepSvg(result)));
    }
    return result;
  } finally {
    reference.dispose();
  }
}

/**
 * A scorer that remembers the logits of each window it has scored (evaluation resets the session before
 * every window, so a window's logits depend on its tokens only). Bounded: past `maxBytes` it stops storing
 * and just forwards.
 */
export class WindowCache implements ScoringSession {
  private readonly cache = new Map<string, { tokens: Int32Array; logits: Float32Array }>();
  private bytes = 0;

  constructor(
    private readonly inner: ScoringSession,
    private readonly maxBytes = 512 * 1024 * 1024,
  ) {}

  get config() {
    return this.inner.config;
  }

  reset(): void {
    // Every forward below starts from an empty context (the inner session is reset on a miss).
  }

  async forward(tokens: ArrayLike<number>, options: { logits: 'all' }): Promise<Float32Array> {
    let h = 0x811c9dc5;
    for (let i = 0; i < tokens.length; i++) h = Math.imul(h ^ (tokens[i]! >>> 0), 0x01000193);
    const key = `${tokens.length}:${h >>> 0}`;
    const hit = this.cache.get(key);
    if (hit && hit.tokens.every((t, i) => t === tokens[i])) return hit.logits;
    this.inner.reset();
    const logits = await this.inner.forward(tokens, options);
    if (hit || this.bytes + logits.byteLength > this.maxBytes) return logits;
    const copy = logits.slice();
    this.cache.set(key, { tokens: Int32Array.from(tokens), logits: copy });
    this.bytes += copy.byteLength;
    return copy;
  }
}

/** JSON has no Infinity/NaN: write them as null. */
export function jsonSafe(_key: string, value: unknown): unknown {
  return typeof value === 'number' && !Number.isFinite(value) ? null : value;
}

function slug(label: string): string {
  return label.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^_+|_+$/g, '') || 'codec';
}

/**
 * CLI flags for raw codec options: camelCase key → --kebab-case; residual false → --no-residual; alpha joins
 * --alloc; a false option whose default is false and that has no --no- flag (littlebit's refineSigns) is left out.
 */
const FALSE_BY_DEFAULT = new Set(['refineSigns']);

export function codecFlags(raw: Record<string, unknown>): string[] {
  const out: string[] = [];
  const o = { ...raw };
  if (o.alpha !== undefined) {
    const alloc = typeof o.alloc === 'string' ? o.alloc.split(':')[0] : 'saliency';
    o.alloc = `${alloc}:${String(o.alpha)}`;
    delete o.alpha;
  }
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined || v === null) continue;
    const flag = `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    if (v === true) out.push(flag);
    else if (v === false) {
      if (!FALSE_BY_DEFAULT.has(k)) out.push(`--no-${flag.slice(2)}`);
    } else out.push(flag, String(v));
  }
  return out;
}

/**
 * How a point's error is recorded: 'skipped' for a point that cannot be made (the codec cannot meet the
 * budget; --train-dense where the point compresses every linear), 'failed' for a non-finite quality, null
 * for anything else (rethrown: bad arguments and system errors stop the sweep).
 */
function pointFailure(err: unknown): 'skipped' | 'failed' | null {
  if (isUltraSketchError(err, ErrorCodes.INFEASIBLE_BUDGET)) return 'skipped';
  if (isUltraSketchError(err, ErrorCodes.BAD_ARGUMENT) && err.source === '--train-dense') return 'skipped';
  if (isUltraSketchError(err, ErrorCodes.NOT_FINITE)) return 'failed';
  return null;
}

/** The compress flags that reproduce a finetuning recipe. */
export function finetuneFlags(f: FinetuneOptions, calib?: string): string[] {
  const out = ['--finetune-steps', String(f.steps)];
  if (f.lr !== undefined) out.push('--lr', String(f.lr));
  if (f.batch !== undefined) out.push('--batch', String(f.batch));
  if (f.seq !== undefined) out.push('--seq', String(f.seq));
  if (f.loss !== undefined) out.push('--loss', f.loss);
  if (f.mseWeight !== undefined) out.push('--mse-weight', String(f.mseWeight));
  if (f.data !== undefined) out.push('--data', f.data);
  if (f.mode !== undefined && f.mode !== 'auto') out.push('--train-mode', f.mode);
  if (f.trainNorms) out.push('--train-norms');
  if (f.trainDense) out.push('--train-dense');
  if (f.trainEmbedding) out.push('--train-embedding');
  if (f.embeddingLrScale !== undefined) out.push('--embedding-lr-scale', String(f.embeddingLrScale));
  if (f.smoothK !== undefined) out.push('--smooth-k', String(f.smoothK));
  if (f.threads !== undefined) out.push('--threads', String(f.threads));
  if (f.device !== undefined && f.device !== 'cpu') out.push('--device', f.device);
  const source = f.calibSource ?? calib;
  if ((f.data ?? 'calib') !== 'teacher' && source !== undefined) out.push('--calib', source);
  return out;
}

function layerFlags(o: SweepOptions): string[] {
  const out: string[] = [];
  if (o.layers !== undefined) out.push('--layers', typeof o.layers === 'string' ? o.layers : o.layers.join(','));
  if (o.embeddings !== undefined) out.push('--embeddings', o.embeddings);
  if (o.seed !== undefined) out.push('--seed', String(o.seed));
  return out;
}

/** Quote words for a POSIX shell only where needed. */
export function shellJoin(words: readonly string[]): string {
  return words.map((w) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ');
}

// ------------------------------------------------------------------------------------------ markdown

function fmt(x: number | null, digits: number): string {
  if (x === null || !Number.isFinite(x)) return '—';
  return x.toFixed(digits);
}

function fmtPpl(x: number | null): string {
  if (x === null) return '—';
  if (!Number.isFinite(x)) return '∞';
  return x >= 1e4 ? x.toExponential(2) : x.toFixed(2);
}

/** The sweep as a Markdown table (paste into docs/results.md), then the command of every row. */
export function sweepMarkdown(r: SweepResult): string {
  // Finetuned sweeps also say what each point's training cost (issue 6: tokens and minutes per row).
  const trained = r.rows.some((row) => row.training !== undefined && row.training !== null);
  const lines = [
    `Model \`${r.model.path}\` (${r.model.params.toLocaleString('en-US')} parameters); ${r.protocol} protocol, first ${r.windows} window(s) of ${r.window} tokens of \`${r.evalText.source}\` (${r.predictedTokens.toLocaleString('en-US')} predicted tokens)` +
      (r.calibration ? `; calibration: first ${r.calibration.tokens} tokens of \`${r.calibration.textSource}\`` : '') +
      '. KL = mean KL(P_float ‖ P) per position.',
    '',
    `| # | codec | target bpw | bpwLinears | bitsPerParam | perplexity | mean NLL | KL | top-1 |${trained ? ' training tokens | training minutes |' : ''} seconds |`,
    `| --- | --- | --- | --- | --- | --- | --- | --- | --- |${trained ? ' --- | --- |' : ''} --- |`,
  ];
  r.rows.forEach((row, i) => {
    const kept = row.keptDense.length > 0 ? ` (${row.keptDense.length} kept dense)` : '';
    if (row.status !== 'ok') {
      lines.push(`| ${i} | ${row.label} | ${fmt(row.bpwTarget, 2)} | ${row.status}: ${row.reason!.replace(/\|/g, '\\|')} | | | | | |${trained ? ' | |' : ''}`);
      return;
    }
    const training = !trained ? '' : row.training ? ` ${row.training.tokens.toLocaleString('en-US')} | ${(row.training.wallSeconds / 60).toFixed(1)} |` : ' — | — |';
    lines.push(
      `| ${i} | ${row.label}${kept} | ${row.bpwTarget === null ? '—' : String(row.bpwTarget)} | ${fmt(row.bpwLinears, 4)} | ${fmt(row.bitsPerParam, 3)} | ` +
        `${fmtPpl(row.perplexity)} | ${fmt(row.meanNll, 4)} | ${fmt(row.kl, 4)} | ${fmt(row.top1, 4)} |${training} ${row.seconds.toFixed(1)} |`,
    );
  });
  lines.push('', 'Commands (row #: command):', '');
  r.rows.forEach((row, i) => lines.push(`${i}. \`${row.command}\``));
  if (r.command) lines.push('', `The whole sweep: \`${r.command}\``);
  return `${lines.join('\n')}\n`;
}

// ------------------------------------------------------------------------------------------ svg

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function num(x: number): string {
  return (Math.round(x * 100) / 100).toString();
}

/** "Nice" linear ticks covering [lo, hi]. */
function linearTicks(lo: number, hi: number, target = 6): number[] {
  const span = hi - lo || 1;
  const raw = span / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= target) ?? 10 * mag;
  const ticks: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Math.round(t / step) * step);
  return ticks;
}

/**
 * The sweep's plot as a standalone SVG (no dependencies): x = bpwLinears (linear), y = perplexity on a log
 * scale (post-training sub-1-bit points can be astronomically large), one polyline with markers per codec
 * label, the float32 model as a dashed horizontal line; axes labelled, decade ticks, a legend. Skipped
 * points and non-finite perplexities are listed under the plot instead of drawn.
 */
export function sweepSvg(r: SweepResult): string {
  const W = 820;
  const H = 520;
  const m = { left: 80, right: 200, top: 50, bottom: 70 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const floatRow = r.rows.find((x) => x.codec === 'float32');
  const pts = r.rows.filter(
    (x) => x.codec !== 'float32' && x.status === 'ok' && x.bpwLinears !== null && x.perplexity !== null && Number.isFinite(x.perplexity) && x.perplexity > 0,
  );
  const notDrawn = r.rows.filter((x) => x.codec !== 'float32' && !pts.includes(x));

  const xs = pts.map((p) => p.bpwLinears!);
  let xLo = 0;
  let xHi = xs.length > 0 ? Math.max(...xs) : 1;
  xHi = xHi <= 0 ? 1 : xHi * 1.05;
  const xTicks = linearTicks(xLo, xHi);
  xHi = Math.max(xHi, xTicks[xTicks.length - 1]!);
  xLo = Math.min(xLo, xTicks[0]!);

  const ys = pts.map((p) => p.perplexity!);
  if (floatRow?.perplexity && Number.isFinite(floatRow.perplexity)) ys.push(floatRow.perplexity);
  let dLo = ys.length > 0 ? Math.floor(Math.log10(Math.min(...ys))) : 0;
  let dHi = ys.length > 0 ? Math.ceil(Math.log10(Math.max(...ys))) : 1;
  if (dHi <= dLo) dHi = dLo + 1;
  dLo = Math.max(dLo, -1);
  const decadeStep = Math.max(1, Math.ceil((dHi - dLo) / 10));
  dHi = dLo + Math.ceil((dHi - dLo) / decadeStep) * decadeStep; // the top of the axis gets a label

  const X = (v: number) => m.left + ((v - xLo) / (xHi - xLo)) * pw;
  const Y = (ppl: number) => m.top + ph - ((Math.log10(ppl) - dLo) / (dHi - dLo)) * ph;

  const out: string[] = [];
  out.push(`<?xml version="1.0" encoding="UTF-8"?>`);
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<title>bpwLinears vs perplexity: ${esc(r.model.path)}</title>`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`);
  out.push(
    `<text x="${m.left + pw / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">Perplexity vs bits per weight: ${esc(r.model.path.split('/').pop() ?? r.model.path)}</text>`,
  );
  out.push(
    `<text x="${m.left + pw / 2}" y="38" text-anchor="middle" font-size="11" fill="#555">${esc(`${r.protocol}, ${r.windows} window(s) × ${r.window} tokens of ${r.evalText.source}`)}</text>`,
  );
  // grid and ticks
  out.push(`<g class="grid" stroke="#e5e5e5" stroke-width="1">`);
  for (let d = dLo; d <= dHi; d += decadeStep) out.push(`<line x1="${m.left}" y1="${num(Y(10 ** d))}" x2="${m.left + pw}" y2="${num(Y(10 ** d))}"/>`);
  for (const t of xTicks) out.push(`<line x1="${num(X(t))}" y1="${m.top}" x2="${num(X(t))}" y2="${m.top + ph}"/>`);
  out.push(`</g>`);
  out.push(`<g class="axes" stroke="black" stroke-width="1">`);
  out.push(`<line x1="${m.left}" y1="${m.top + ph}" x2="${m.left + pw}" y2="${m.top + ph}"/>`);
  out.push(`<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + ph}"/>`);
  out.push(`</g>`);
  out.push(`<g class="x-ticks" text-anchor="middle">`);
  for (const t of xTicks) out.push(`<text x="${num(X(t))}" y="${m.top + ph + 18}">${num(t)}</text>`);
  out.push(`</g>`);
  out.push(`<g class="y-ticks" text-anchor="end">`);
  for (let d = dLo; d <= dHi; d += decadeStep) {
    const label = d >= 0 && d <= 4 ? String(10 ** d) : `1e${d}`;
    out.push(`<text x="${m.left - 8}" y="${num(Y(10 ** d) + 4)}">${label}</text>`);
  }
  out.push(`</g>`);
  out.push(
    `<text class="x-label" x="${m.left + pw / 2}" y="${H - 28}" text-anchor="middle">bits per weight of the compressed linears (bpwLinears)</text>`,
  );
  out.push(
    `<text class="y-label" x="20" y="${m.top + ph / 2}" text-anchor="middle" transform="rotate(-90 20 ${m.top + ph / 2})">perplexity (log scale)</text>`,
  );

  // float32 line
  const legend: Array<{ label: string; color: string; dashed?: boolean }> = [];
  if (floatRow?.perplexity && Number.isFinite(floatRow.perplexity)) {
    const y = num(Y(floatRow.perplexity));
    out.push(
      `<line class="float32" x1="${m.left}" y1="${y}" x2="${m.left + pw}" y2="${y}" stroke="black" stroke-width="1.5" stroke-dasharray="6 4"><title>float32: perplexity ${floatRow.perplexity.toFixed(4)}</title></line>`,
    );
    out.push(`<text x="${m.left + pw - 4}" y="${num(Y(floatRow.perplexity) - 5)}" text-anchor="end" font-size="11">float32 (${floatRow.perplexity.toFixed(2)})</text>`);
    legend.push({ label: 'float32', color: 'black', dashed: true });
  }

  // one polyline per codec label
  const labels = [...new Set(pts.map((p) => p.label))];
  labels.forEach((label, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const series = pts.filter((p) => p.label === label).sort((a, b) => a.bpwLinears! - b.bpwLinears!);
    const coords = series.map((p) => `${num(X(p.bpwLinears!))},${num(Y(p.perplexity!))}`).join(' ');
    out.push(`<g class="series" data-codec="${esc(label)}">`);
    out.push(`<polyline points="${coords}" fill="none" stroke="${color}" stroke-width="2"><title>${esc(label)}</title></polyline>`);
    for (const p of series) {
      out.push(
        `<circle cx="${num(X(p.bpwLinears!))}" cy="${num(Y(p.perplexity!))}" r="3.5" fill="${color}"><title>${esc(
          `${label}${p.bpwTarget === null ? '' : ` @ ${p.bpwTarget} bpw`}: bpwLinears ${p.bpwLinears!.toFixed(4)}, perplexity ${fmtPpl(p.perplexity)}`,
        )}</title></circle>`,
      );
    }
    out.push(`</g>`);
    legend.push({ label, color });
  });

  // legend
  out.push(`<g class="legend">`);
  legend.forEach((l, i) => {
    const y = m.top + 10 + i * 20;
    const x = m.left + pw + 20;
    out.push(
      `<line x1="${x}" y1="${y}" x2="${x + 24}" y2="${y}" stroke="${l.color}" stroke-width="2"${l.dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
    );
    out.push(`<text x="${x + 30}" y="${y + 4}">${esc(l.label)}</text>`);
  });
  if (notDrawn.length > 0) {
    const y0 = m.top + 20 + legend.length * 20;
    out.push(`<text x="${m.left + pw + 20}" y="${y0}" font-size="11" fill="#555">not drawn:</text>`);
    notDrawn.slice(0, 12).forEach((row, i) => {
      const why = row.status === 'skipped' ? 'skipped' : 'perplexity not finite';
      out.push(
        `<text x="${m.left + pw + 20}" y="${y0 + 16 + i * 14}" font-size="10" fill="#555">${esc(`${row.label}${row.bpwTarget === null ? '' : ` @ ${row.bpwTarget}`}: ${why}`)}</text>`,
      );
    });
  }
  out.push(`</g>`);
  out.push(`</svg>`);
  return `${out.join('\n')}\n`;
}
