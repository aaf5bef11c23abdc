import { readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  COMPRESS_CODECS,
  type Calibration,
  type CompressCalibration,
  type CompressReport,
  type EmbeddingStorage,
  type KeptDense,
  type LoadedModel,
  type ModelSource,
  type NamedPath,
  type SmallMatrixPolicy,
  type TextFile,
  assertNotEvaluationText,
  assertOutputDirectory,
  assertOutputNotInput,
  availableMemory,
  calibrate,
  codecUsesSaliency,
  compress,
  detectModelPath,
  finetuneMemory,
  findTokenizer,
  formatGiB,
  loadCheckpointForCompress,
  openModelSource,
  RECIPE_NAMES,
  defaultLayers,
  describeRecipes,
  documentTokenStream,
  embeddingCodec,
  parseLayers,
  sensitivityPlan,
  readFileChecked,
  recipeSettings,
  resolveCodecOptions,
  shellJoin,
  withMargin,
} from '@ultrasketch/pipeline';
import { TensorNames } from '@ultrasketch/model';
import { type Command, type CommandIO, type CommandInput, UsageError } from '../command.js';
import { PACK_SPEC, codecFlagSpecs, defaultDataFile, rawCodecOptions, sharedCompressSpecs, sketchDefaultsFor } from '../codec-flags.js';
import { fmtBytes, fmtInt, note, table, warn, writeJson } from '../io.js';
import { finetuneFromInput, finetuneSpecs } from '../finetune-flags.js';
import { Progress } from '../progress.js';

export const compressCommand: Command = {
  name: 'compress',
  summary: 'compress a model (llama2.c, HF directory, GGUF) into a .usk bundle (rtn, binary, float, sketch, hashednets, littlebit)',
  description:
    'Encodes the chosen linear kinds (--layers; by default what the method compresses) with --codec, stores the ' +
    'other linears in float f16, the embedding as --embeddings says, the norms as float32 and the tokenizer ' +
    'inside the bundle, with the codec options, seeds, provenance (source sha256, this command line) and the bit ' +
    'accounting of ../shared/docs/methods.md §4: bpwLinears = bits stored for the compressed linears ÷ their weights, ' +
    'bitsPerParam = 8 × file bytes ÷ all parameters. The same command gives a byte-identical file. The file is ' +
    'written atomically (a temporary file renamed into place).\n\n' +
    'The model: a llama2.c checkpoint, a Hugging Face directory (config.json, model.safetensors or shards with ' +
    'model.safetensors.index.json, tokenizer.json), a .safetensors file with its config.json beside it, or a GGUF ' +
    'file, told apart by content (docs/inputs.md). HF and GGUF models are streamed: one decoder layer is read, ' +
    'calibrated, encoded and freed at a time, so memory holds the bundle being built and one layer, not the dense ' +
    'model. The bundle embeds the tokenizer the model came with (llama2.c file, tokenizer.json, GGUF vocabulary). ' +
    'Finetuning and --eval-windows need the whole float model in memory: they state what they need and refuse ' +
    '(E_OUT_OF_MEMORY) when it will not fit.\n\n' +
    'Codec flags: rtn --bits K --group-size G; float --dtype; sketch --bpw X --rows D --state f16|int8|f32 ' +
    '--hash rowrun|mixed --groups G --alloc uniform|saliency[:ALPHA] --split count|mass; hashednets --bpw X ' +
    '--state f16|f32; littlebit --bpw X or --rank R, --residual/--no-residual, --rank-rounding. A flag the codec ' +
    'does not take is refused. A target a matrix cannot meet is refused with the smallest feasible bpw, unless ' +
    '--small-matrix keep stores such matrices in float f16 (listed as kept dense in the report).\n\n' +
    'Calibration: a sketch with --groups > 1 scores input channels by E[a²]·‖W[:,j]‖², with E[a²] measured by ' +
    'the float model on the first --calib-tokens tokens of --calib. Calibrating on the evaluation text ' +
    '(eval.txt, the --eval-text file, a file with the same documents up to whitespace and line ends, or one that ' +
    'shares 1 % or more of its documents) is refused.\n\n' +
    '-o must not be an input of the command (the checkpoint, its tokenizer, --calib, --eval-text, a file in ' +
    '--checkpoint-dir; also through a symbolic or hard link): refused before any work, nothing written.\n\n' +
    "--eval-windows N > 0 measures the bundle's quality now (perplexity, KL and top-1 against the float model on " +
    'the first N windows of --eval-text, running the bundle with its fused kernels) and stores it in the ' +
    "bundle's quality section. With --json stdout gets exactly one JSON object: the report (output, fileBytes, " +
    'bitsPerParam, bpwLinears, bpwSelectedLinears, params, keptDense, codec, layers, accounting, provenance, ' +
    'quality, seconds).\n\n' +
    'Recipes (--recipe NAME; the name is stored in the bundle\'s training section, the command in its provenance):\n' +
    describeRecipes(),
  positionals: [{ name: 'checkpoint', description: 'the float model to compress: a llama2.c checkpoint, an HF directory, a .safetensors file with config.json beside it, or a .gguf file' }],
  options: [
    { name: 'output', short: 'o', kind: 'path', valueName: 'OUT.usk', required: true, description: 'the bundle to write' },
    {
      name: 'codec',
      kind: 'string',
      valueName: 'C',
      required: true,
      choices: [...COMPRESS_CODECS],
      description: 'codec of the compressed linears',
    },
    ...codecFlagSpecs(),
    ...sharedCompressSpecs(),
    PACK_SPEC,
    ...finetuneSpecs(),
    {
      name: 'plan',
      kind: 'string',
      valueName: 'P',
      choices: ['uniform', 'sensitivity', 'kl'],
      default: 'uniform',
      description:
        'uniform = every compressed linear at --bpw; sensitivity / kl = the same total bits spent by measured sensitivity: each linear encoded at 0.5–2× the target, its error measured — sensitivity: Σ (W − Ŵ)²·E[a²] on --calib; kl: the float model\'s KL to itself with only that linear compressed, on 8 windows of 128 tokens of --calib — and rates bought greedily by error saved per bit (codecs with --bpw)',
    },
    {
      name: 'recipe',
      kind: 'string',
      valueName: 'NAME',
      choices: [...RECIPE_NAMES],
      description: 'finetune with a named recipe: per-method codec options, learning rate, data and a token budget (explicit flags win; see below)',
    },
    { name: 'eval-windows', kind: 'int', valueName: 'N', min: 0, default: 0, description: 'measure quality on the first N evaluation windows and store it in the bundle (0 = skip)' },
    { name: 'json', kind: 'boolean', default: false, description: 'print the report as one JSON object' },
  ],
  examples: [
    'ultrasketch compress ../shared/models/stories3M/hf --codec littlebit --bpw 0.55 --small-matrix keep -o s3m-lb.usk',
    'ultrasketch compress ../shared/models/stories3M/gguf/stories3M-f32.gguf --codec rtn --bits 4 -o s3m-rtn4.usk',
    'ultrasketch compress ../shared/models/stories260K/stories260K.bin --codec rtn --bits 8 -o stories260K-rtn8.usk',
    'ultrasketch compress ../shared/models/stories3M/stories3M-q80.bin --codec sketch --bpw 0.75 --groups 8 --alloc saliency:0.5 -o s3m-sketch.usk --eval-windows 8',
    'ultrasketch compress ../shared/models/stories3M/stories3M-q80.bin --codec littlebit --bpw 0.55 --small-matrix keep -o s3m-lb.usk --json',
    'ultrasketch compress ../shared/models/stories3M/stories3M-q80.bin --codec littlebit --bpw 0.55 --recipe standard --threads 2 -o s3m-lb-standard.usk',
  ],

  async run(input, io) {
    const { positionals, options } = input;
    const quiet = options.quiet === true;
    const codec = options.codec as string;
    const given = rawCodecOptions(input, [codec], 'compress');
    const raw = { ...sketchDefaultsFor(codec, given), ...given };
    const resolved = resolveCodecOptions(codec, raw);
    const evalWindows = options['eval-windows'] as number;
    const evalPath = textPath(options['eval-text'], 'eval.txt', '--eval-text', evalWindows > 0);
    // Before any work: the bundle must not replace a file this command reads.
    assertOutputNotInput(options.output as string, commandInputs(input), { what: 'bundle', flag: '-o' });
    assertCheckpointDirectory(input);

    // llama2.c checkpoints are read whole (as always: a bundle of one is byte-identical to earlier builds'); HF
    // and GGUF models are opened as sources and streamed layer by layer by compress().
    const modelPath = positionals.checkpoint!;
    const tokenizerPath = options.tokenizer as string | undefined;
    const kind = detectModelPath(modelPath, 'checkpoint');
    const model: LoadedModel | ModelSource =
      kind === 'llama2c' || kind === 'usk'
        ? loadCheckpointForCompress(modelPath, tokenizerPath)
        : openModelSource(modelPath, tokenizerPath === undefined ? {} : { tokenizerPath });
    try {
      if (typeof options.recipe === 'string') {
        const config = 'weights' in model ? model.weights.config : model.config;
        const r = withRecipe(input, codec, raw, options.recipe, config.seqLen, 'weights' in model);
        note(io, quiet, `compress: recipe ${options.recipe} for ${codec}: ${r.summary}`);
        await compressOpened(r.input, io, model, { codec, raw: r.raw, resolved: resolveCodecOptions(codec, r.raw), evalWindows, evalPath, recipe: options.recipe });
      } else {
        await compressOpened(input, io, model, { codec, raw, resolved, evalWindows, evalPath });
      }
    } finally {
      if ('close' in model) model.close();
    }
  },
};

async function compressOpened(
  input: CommandInput,
  io: CommandIO,
  model: LoadedModel | ModelSource,
  a: { codec: string; raw: Record<string, unknown>; resolved: unknown; evalWindows: number; evalPath: string | undefined; recipe?: string },
): Promise<void> {
  const { positionals, options } = input;
  const quiet = options.quiet === true;
  const { codec, raw, resolved, evalWindows, evalPath } = a;
  {
    const evalFile = evalPath !== undefined && (evalWindows > 0 || input.given?.has('eval-text')) ? readText(evalPath, 'evaluation text', '--eval-text') : undefined;
    const calibration = maybeCalibrate(input, io, model, codec, resolved, evalFile);

    let text: string | undefined;
    if (evalWindows > 0) {
      text = new TextDecoder('utf-8').decode(evalFile!.bytes);
      warnIfCalibrationText(io, evalFile!.path);
      note(io, quiet, `compress: quality will be measured on the first ${evalWindows} window(s) of ${evalFile!.path}`);
    }
    let bpwPlan: Record<string, number> | undefined;
    if (options.plan === 'sensitivity' || options.plan === 'kl') {
      if (!('weights' in model)) {
        throw new UsageError(`--plan ${options.plan} encodes every linear at several rates and needs the model in memory: use a llama2.c checkpoint, or --plan uniform for streamed HF/GGUF models`, 'compress');
      }
      const stats = calibration && 'stats' in calibration ? calibration : (maybeCalibrate(input, io, model, codec, resolved, evalFile, true) as Calibration);
      const kinds = options.layers === undefined ? defaultLayers(codec) : parseLayers(options.layers as string);
      const names: string[] = [];
      for (let l = 0; l < model.weights.config.nLayers; l++) for (const k of kinds) names.push(TensorNames.linear(l, k));
      const planProgress = new Progress({ label: 'plan', total: names.length, unit: 'linears', quiet, stream: io.stderr });
      let klWindows: Int32Array[] | undefined;
      if (options.plan === 'kl') {
        // 8 windows of 128 tokens from the calibration text (never the evaluation text: maybeCalibrate checked it).
        const calibPath = textPath(options.calib, 'calib.txt', '--calib', true)!;
        const stream = documentTokenStream(model.tokenizer, new TextDecoder('utf-8').decode(readText(calibPath, 'calibration text', '--calib').bytes), calibPath);
        const L = Math.min(128, model.weights.config.seqLen);
        klWindows = [];
        for (let w = 0; w < 8 && (w + 1) * L <= stream.length; w++) klWindows.push(stream.slice(w * L, (w + 1) * L));
      }
      const p = sensitivityPlan({
        weights: model.weights,
        codecId: codec,
        codecOptions: raw,
        names,
        saliency: stats.stats.meanSquare,
        seed: options.seed as number,
        ...(klWindows ? { objective: 'kl' as const, klWindows } : {}),
        onProgress: (d) => planProgress.update(d),
      });
      planProgress.finish();
      bpwPlan = p.bpw;
      const counts = new Map<number, number>();
      for (const l of p.linears) counts.set(l.bpw, (counts.get(l.bpw) ?? 0) + 1);
      note(
        io,
        quiet,
        `plan: ${options.plan}, ${fmtInt(p.plannedBits)} of ${fmtInt(p.budgetBits)} bits (the uniform plan's); rates ${[...counts].sort((x, y) => x[0] - y[0]).map(([b, n]) => `${b} × ${n}`).join(', ')}; ` +
          `${p.objective === 'kl' ? 'summed single-linear KL' : 'activation-weighted error'} ${p.totalError.toExponential(3)} vs uniform ${p.uniformError.toExponential(3)}` +
          (p.excluded.length > 0 ? `; ${p.excluded.length} linear(s) the target cannot reach left to --small-matrix` : ''),
      );
    }
    const c = 'weights' in model ? model.weights.config : model.config;
    const weightCount = 7 * c.nLayers + (c.tiedClassifier ? 1 : 2);
    const progress = new Progress({ label: 'compress', total: weightCount, unit: 'weights', quiet, stream: io.stderr });
    const ft = finetuneFromInput(input, io, evalFile, () => progress.finish());
    if (ft) {
      // Finetuning holds the whole model in memory: say what it will take before starting (compress() refuses
      // with E_OUT_OF_MEMORY when it will not fit).
      const need = withMargin(finetuneMemory(c, ft.options, !('weights' in model)));
      note(io, quiet, `finetune: will hold about ${formatGiB(need.total)} in memory (margin included); ${formatGiB(availableMemory())} available`);
    }
    let report: CompressReport;
    try {
      ({ report } = await compress({
        model,
        codec,
        codecOptions: raw,
        ...(bpwPlan ? { bpwPlan } : {}),
        ...(options.layers === undefined ? {} : { layers: options.layers as string }),
        embeddings: options.embeddings as EmbeddingStorage,
        ...(options.pack === true ? { pack: true } : {}),
        seed: options.seed as number,
        smallMatrix: options['small-matrix'] as SmallMatrixPolicy,
        output: options.output as string,
        provenance: { command: shellJoin(['ultrasketch', 'compress', ...(input.argv ?? [])]) },
        ...(calibration && 'stats' in calibration ? { saliency: calibration.stats.meanSquare, calibration: calibration.info } : {}),
        ...(calibration && 'text' in calibration ? { calibrate: calibration } : {}),
        ...(text !== undefined
          ? {
              measureQuality: {
                text,
                textSource: evalFile!.path,
                windows: evalWindows,
                ...(options['eval-window'] === undefined ? {} : { window: options['eval-window'] as number }),
              },
            }
          : {}),
        onProgress: (p) => progress.update(p.index + 1, p.name),
        // --resume here means "continue that run": no checkpoint is an error, not a silent fresh start.
        ...(ft ? { finetune: { ...ft.options, ...(ft.options.resume ? { requireCheckpoint: true } : {}), ...(a.recipe ? { recipeName: a.recipe } : {}) } } : {}),
      }));
    } catch (err) {
      progress.clear();
      ft?.progress.clear();
      throw err;
    }
    progress.finish();
    ft?.progress.finish();

    if (report.keptDense.length > 0) {
      warn(
        io,
        `${report.keptDense.length} linear(s) too small for the target were kept dense in float f16 (--small-matrix keep): ` +
          `${describeKept(report.keptDense)}; bpwLinears ${report.bpwLinears.toFixed(4)} counts the compressed linears only, ` +
          `all selected linears (kept ones included) ${report.bpwSelectedLinears.toFixed(4)}; the full list is in the report (--json: keptDense)`,
      );
    }
    if (options.json === true) {
      writeJson(io, report);
      return;
    }
    io.stdout.write(`${table(summaryRows(report, positionals.checkpoint!))}\n`);
    note(io, quiet, `compress: ${report.seconds.total.toFixed(1)} s (encode ${report.seconds.encode.toFixed(1)} s${report.training ? `, finetune ${report.seconds.finetune.toFixed(1)} s` : ''}${report.quality ? `, quality ${report.seconds.quality.toFixed(1)} s` : ''})`);
  }
}

/** "k_proj, v_proj 32×64 (need ≥ 1.6094 bpw) in layers 0, 1, 2" — kept-dense matrices grouped by kind and shape. */
export function describeKept(kept: KeptDense[]): string {
  const groups = new Map<string, { layers: string[]; minBpw: number | null }>();
  for (const k of kept) {
    const m = /^model\.layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.weight$/.exec(k.name);
    const key = `${m ? m[2] : k.name} ${k.rows}×${k.cols}`;
    const g = groups.get(key) ?? { layers: [], minBpw: k.minBpw };
    if (m) g.layers.push(m[1]!);
    groups.set(key, g);
  }
  return [...groups]
    .map(([key, g]) => `${key}${g.minBpw === null ? '' : ` (needs ≥ ${g.minBpw.toFixed(4)} bpw)`}${g.layers.length > 0 ? ` in layers ${g.layers.join(', ')}` : ''}`)
    .join('; ');
}

function summaryRows(r: CompressReport, source: string): Array<[string, string]> {
  const rows: Array<[string, string]> = [
    ['bundle', `${r.output} (${fmtBytes(r.fileBytes)})`],
    ['source', `${source} (sha256 ${r.provenance.sourceSha256.slice(0, 16)}…)`],
    ['codec', `${r.codec.id} v${r.codec.version} ${JSON.stringify(r.codec.options)}`],
    ['layers', `${r.layers.join(',')} (${r.accounting.compressedLinears.length} compressed linears)`],
    ['bpwLinears', `${r.bpwLinears.toFixed(4)} (bits of the compressed linears ÷ their ${fmtInt(r.linearWeights)} weights)`],
    ['bitsPerParam', `${r.bitsPerParam.toFixed(4)} (8 × ${fmtInt(r.fileBytes)} file bytes ÷ ${fmtInt(r.params)} parameters)`],
    ['embeddings', r.embeddings + (r.classifier ? `, classifier ${r.classifier}` : ' (tied classifier)')],
    ['seed', String(r.seed)],
  ];
  if (r.keptDense.length > 0) {
    rows.push(['kept dense', `${r.keptDense.length} linear(s): ${describeKept(r.keptDense)} (all selected linears: ${r.bpwSelectedLinears.toFixed(4)} bpw)`]);
  }
  if (r.training) {
    const t = r.training;
    rows.push([
      'finetuned',
      `${t.cost.steps}${t.cost.steps < t.recipe.steps ? ` of ${t.recipe.steps}` : ''} steps × ${t.recipe.batch} × ${t.recipe.seq} = ${fmtInt(t.cost.tokens)} tokens, ${t.cost.wallSeconds.toFixed(1)} s; ${t.recipe.name ? `recipe ${t.recipe.name}, ` : ''}loss ${t.recipe.loss}, data ${t.recipe.data}, lr ${t.recipe.lr}, providers ${[...new Set(Object.values(t.providers))].join(',')}${t.recipe.device === 'webgpu' ? `, on WebGPU (${t.cost.adapter ?? 'unknown adapter'})` : ''}`,
    ]);
    if (t.holdout) {
      rows.push(['held out', `KL ${t.holdout.kl.toExponential(3)}, CE ${t.holdout.ce.toFixed(4)}, top-1 ${(100 * t.holdout.top1).toFixed(2)} % on ${t.holdout.windows} teacher window(s) never trained on`]);
    }
  }
  if (r.provenance.calibration) {
    rows.push(['calibration', `${r.provenance.calibration.tokens} tokens of ${r.provenance.calibration.textSource}`]);
  }
  const q = r.quality as { perplexity?: number; kl?: number; top1?: number; windows?: number; reference?: { perplexity: number } } | null;
  if (q && typeof q.perplexity === 'number') {
    rows.push([
      'quality',
      `perplexity ${q.perplexity.toFixed(4)} (float ${q.reference?.perplexity.toFixed(4)}), KL ${q.kl?.toExponential(3)}, top-1 ${(100 * (q.top1 ?? 0)).toFixed(2)} % on ${q.windows} window(s)`,
    ]);
  }
  return rows;
}

/** Quality measured on calibration text says nothing about unseen text: say so (like `eval`). */
export function warnIfCalibrationText(io: CommandIO, path: string): void {
  if (basename(path) === 'calib.txt') {
    warn(io, `measuring quality on calibration text (${path}): the result says nothing about unseen text; use eval.txt`);
  }
}

/** A text path from an option or the default data file; undefined when neither exists and it is not needed. */
export function textPath(value: unknown, file: 'calib.txt' | 'eval.txt', flag: string, required: boolean): string | undefined {
  if (typeof value === 'string') return value;
  const d = defaultDataFile(file);
  if (d === undefined && required) {
    throw new UsageError(`${flag} FILE is required here: the default ../shared/data/tinystories/${file} is not next to the repository`);
  }
  return d;
}

/**
 * Every file `compress` or `sweep` may read, for the output-is-input check: the checkpoint, its tokenizer
 * (--tokenizer, or the one found next to the checkpoint), the --calib and --eval-text files (or the default
 * calib.txt / eval.txt), and the files already in --checkpoint-dir (read back by --resume).
 */
export function commandInputs(input: CommandInput): NamedPath[] {
  const { positionals, options } = input;
  const checkpoint = positionals.checkpoint!;
  const list: NamedPath[] = [{ path: checkpoint, what: 'checkpoint' }];
  let tokenizer = typeof options.tokenizer === 'string' ? options.tokenizer : undefined;
  let kind: string | undefined;
  try {
    kind = detectModelPath(checkpoint);
  } catch {
    // missing or unreadable: loading the model reports it (typed)
  }
  if (kind === 'hf-directory' || kind === 'safetensors' || kind === 'gguf') {
    // Every file the model is read from (weights, shards, index, config.json, tokenizer files): headers only.
    try {
      const src = openModelSource(checkpoint, tokenizer === undefined ? {} : { tokenizerPath: tokenizer });
      src.close();
      for (const f of src.files) list.push({ path: f.path, what: f.role === 'weights' ? 'model weights' : f.role === 'tokenizer' ? 'tokenizer' : `model ${f.role} file` });
    } catch {
      // a broken model: loading it reports why (typed); nothing to protect yet
    }
  } else if (tokenizer === undefined && kind === 'llama2c') {
    try {
      tokenizer = findTokenizer(checkpoint);
    } catch {
      // none or several: loading the model reports it (typed); nothing to protect yet
    }
  }
  if (tokenizer !== undefined) list.push({ path: tokenizer, what: 'tokenizer' });
  const calib = typeof options.calib === 'string' ? options.calib : defaultDataFile('calib.txt');
  if (calib !== undefined) list.push({ path: calib, what: 'calibration text (--calib)' });
  const evalText = typeof options['eval-text'] === 'string' ? options['eval-text'] : defaultDataFile('eval.txt');
  if (evalText !== undefined) list.push({ path: evalText, what: 'evaluation text (--eval-text)' });
  const ckptDir = options['checkpoint-dir'];
  if (typeof ckptDir === 'string') {
    try {
      for (const name of readdirSync(ckptDir)) {
        const p = join(ckptDir, name);
        if (statSync(p).isFile()) list.push({ path: p, what: 'training checkpoint file (--checkpoint-dir)' });
      }
    } catch {
      // missing (created by training) or unreadable (training reports it, typed)
    }
  }
  return list;
}

/** --checkpoint-dir that exists as a file fails now (E_EXISTS), not after the first training steps. */
export function assertCheckpointDirectory(input: CommandInput): void {
  const dir = input.options['checkpoint-dir'];
  if (typeof dir === 'string') assertOutputDirectory(dir, '--checkpoint-dir');
}

export function readText(path: string, what: string, flag: string): TextFile {
  return { path, bytes: readFileChecked(path, what, flag) };
}

/**
 * Calibrate when the codec uses saliency; refuse a --calib that is evaluation text whether or not it is used.
 * Evaluation files compared: eval.txt next to the repository and the --eval-text file.
 */
export function maybeCalibrate(
  input: CommandInput,
  io: CommandIO,
  model: LoadedModel | ModelSource,
  codec: string,
  resolved: unknown,
  evalFile: TextFile | undefined,
  usesOverride?: boolean,
): Calibration | (CompressCalibration & { text: string }) | undefined {
  const { options } = input;
  const quiet = options.quiet === true;
  const uses = usesOverride ?? codecUsesSaliency(codec, resolved);
  const given = input.given ?? new Set<string>();
  const alloc = (resolved as { alloc?: string; groups?: number } | null) ?? {};
  if (codec === 'sketch' && alloc.alloc === 'saliency' && alloc.groups === 1) {
    warn(io, '--alloc saliency has no effect with one channel group; use --groups G > 1');
  }
  if (!uses && !given.has('calib')) {
    if (given.has('calib-tokens')) note(io, quiet, '--calib-tokens is ignored: this codec does not use calibration statistics');
    return undefined;
  }
  const calibPath = textPath(options.calib, 'calib.txt', '--calib', uses)!;
  const calib = readText(calibPath, 'calibration text', '--calib');
  const evals: TextFile[] = [];
  if (evalFile) evals.push(evalFile);
  const defaultEval = defaultDataFile('eval.txt');
  if (defaultEval !== undefined && defaultEval !== evalFile?.path) evals.push(readText(defaultEval, 'evaluation text', '--eval-text'));
  assertNotEvaluationText(calib, evals);
  if (!uses) {
    note(io, quiet, `--calib is ignored: codec ${codec} with these options does not use calibration statistics`);
    return undefined;
  }
  if (!('weights' in model)) {
    // A streamed model is calibrated layer by layer inside compress(), as each layer is read for encoding.
    note(io, quiet, `calibrate: E[a²] from the first ${fmtInt(options['calib-tokens'] as number)} tokens of ${calibPath}, layer by layer while compressing`);
    return {
      text: new TextDecoder('utf-8').decode(calib.bytes),
      textSource: calibPath,
      maxTokens: options['calib-tokens'] as number,
    };
  }
  const progress = new Progress({ label: 'calibrate', total: options['calib-tokens'] as number, unit: 'tok', quiet, stream: io.stderr });
  try {
    const c = calibrate({
      model,
      text: new TextDecoder('utf-8').decode(calib.bytes),
      textSource: calibPath,
      maxTokens: options['calib-tokens'] as number,
      onProgress: (p) => progress.update(p.tokensDone),
    });
    progress.finish();
    note(io, quiet, `calibrate: E[a²] of ${c.stats.meanSquare.size} linears from ${fmtInt(c.stats.tokens)} tokens of ${calibPath}`);
    return c;
  } catch (err) {
    progress.clear();
    throw err;
  }
}

/**
 * The command line with recipe `name`'s settings for `codec` filled in wherever the user gave nothing: codec
 * options (raw keys), --small-matrix, and the finetuning flags (--finetune-steps from the recipe's token
 * budget at the batch and sequence length in force). Explicit flags always win.
 */
function withRecipe(
  input: CommandInput,
  codec: string,
  raw: Record<string, unknown>,
  name: string,
  modelSeqLen: number,
  inMemory: boolean,
): { input: CommandInput; raw: Record<string, unknown>; summary: string } {
  const s = recipeSettings(name, codec, modelSeqLen);
  const options = { ...input.options };
  const given = new Set(input.given ?? []);
  const fill = (flag: string, value: unknown) => {
    if (given.has(flag)) return;
    options[flag] = value as never;
    given.add(flag);
  };
  const merged = { ...raw };
  for (const [k, v] of Object.entries(s.codecOptions)) if (!(k in merged) && !(k === 'residual' && (given.has('residual') || given.has('no-residual')))) merged[k] = v;
  if (s.smallMatrix) fill('small-matrix', s.smallMatrix);
  fill('lr', s.lr);
  fill('batch', s.batch);
  fill('seq', s.seq);
  fill('loss', s.loss);
  fill('data', s.data);
  // The KL plan encodes every linear at several rates, which needs the whole model in memory: a streamed model
  // keeps the uniform plan (and the summary says so) rather than refusing the recipe.
  const planNote = s.plan !== undefined && !given.has('plan') && !inMemory ? `, plan uniform (the recipe's ${s.plan} plan needs the model in memory)` : '';
  if (s.plan !== undefined && inMemory) fill('plan', s.plan);
  // A trained embedding is float: with coded storage (rtn/vq/binary) or the WebGPU trainer it stays frozen, and the
  // summary says so; --no-train-embedding keeps it frozen anyway.
  let embeddingNote = '';
  if (s.trainEmbedding && !given.has('train-embedding') && !given.has('no-train-embedding')) {
    const storage = (options.embeddings ?? 'f16') as EmbeddingStorage;
    if (embeddingCodec(storage).id !== 'float') embeddingNote = `, embedding frozen (the recipe trains it only when stored in float, not ${storage})`;
    else if (options.device === 'webgpu') embeddingNote = ', embedding frozen (the recipe trains it on the CPU trainer only)';
    else fill('train-embedding', true);
  }
  const batch = options.batch as number;
  const seq = options.seq as number;
  fill('finetune-steps', Math.ceil(s.recipe.tokens / (batch * seq)));
  const steps = options['finetune-steps'] as number;
  const codecText = Object.entries(s.codecOptions)
    .filter(([k]) => merged[k] === s.codecOptions[k])
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(', ');
  const summary = `${steps} steps × ${batch} × ${seq} = ${(steps * batch * seq).toLocaleString('en-US')} training tokens, lr ${options.lr}, loss ${options.loss}, data ${options.data}${options.plan !== 'uniform' ? `, plan ${options.plan}` : planNote}${options['train-embedding'] === true ? `, embedding trained` : embeddingNote}${codecText ? `, ${codecText}` : ''}`;
  return { input: { ...input, options, given }, raw: merged, summary };
}
