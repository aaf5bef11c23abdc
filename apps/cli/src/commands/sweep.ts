import { join } from 'node:path';
import {
  type Calibration,
  type EmbeddingStorage,
  type SmallMatrixPolicy,
  type SweepResult,
  assertOutputDirectory,
  assertOutputNotInput,
  codecUsesSaliency,
  isBpwTargeted,
  loadCheckpointForCompress,
  optionsFor,
  parseCodecSpec,
  resolveCodecOptions,
  shellJoin,
  sweep,
  sweepMarkdown,
} from '@ultrasketch/pipeline';
import type { KernelChoice } from '@ultrasketch/runtime-node';
import { type Command, UsageError } from '../command.js';
import { codecFlagSpecs, rawCodecOptions, sharedCompressSpecs, sketchDefaultsFor } from '../codec-flags.js';
import { note, writeJson } from '../io.js';
import { finetuneFromInput, finetuneSpecs, trainingDetail } from '../finetune-flags.js';
import { Progress } from '../progress.js';
import { assertCheckpointDirectory, commandInputs, maybeCalibrate, readText, textPath, warnIfCalibrationText } from './compress.js';
import { kernelsOption } from '../runtime.js';

const DEFAULT_CODECS = 'rtn:2,binary,sketch,hashednets,littlebit';
const DEFAULT_BPW = '0.5,0.75,1.0';

export const sweepCommand: Command = {
  name: 'sweep',
  summary: 'compress + evaluate a grid of codecs × bpw targets; write sweep.json, sweep.svg (and a Markdown table)',
  description:
    'For every codec of --codecs: codecs with fixed bits (rtn:K, binary, float, littlebit:rank=R) run once; codecs ' +
    'with a target (sketch, hashednets, littlebit) run once per --bpw value. Each point is compressed in memory ' +
    '(--keep-bundles writes the bundles too) and evaluated with its fused kernels against the float model on the ' +
    'first --eval-windows windows of --eval-text; the float model itself is evaluated by the same code in the same ' +
    'run. A point whose budget the codec cannot meet is recorded as skipped with the reason; a point whose quality is ' +
    'not a number (E_NOT_FINITE) is recorded as failed with the reason, and the sweep goes on.\n\n' +
    'A codec spec is NAME[:key=value...] (options in kebab or camel case; for rtn a bare number is --bits), e.g. ' +
    'rtn:2, binary, sketch:hash=mixed, sketch:groups=8:alloc=saliency:0.5, littlebit:residual=false. Codec flags ' +
    '(--rows, --state, --hash, --groups, --alloc, --residual, ...) apply to every codec of the grid that takes them; ' +
    "a spec's own options win.\n\n" +
    'Writes DIR/sweep.json ({"rows": [{label, codec, options, bpwTarget, bpwLinears, bitsPerParam, meanNll, ' +
    'perplexity, kl, top1, seconds, command, status, reason?}, ...], ...}; the float model is row 0; each row\'s ' +
    'command reproduces it) and DIR/sweep.svg (bpwLinears vs perplexity on a log scale, one line per codec, ' +
    'float32 as a dashed line). stdout: a summary table, or --markdown (a table for docs/results.md), or --json ' +
    '(the sweep.json object).',
  positionals: [{ name: 'checkpoint', description: 'the float model: a llama2.c checkpoint, an HF directory, a .safetensors file with config.json beside it, or a .gguf file' }],
  options: [
    { name: 'codecs', kind: 'string', valueName: 'LIST', default: DEFAULT_CODECS, description: 'comma-separated codec specs' },
    { name: 'bpw', kind: 'string', valueName: 'LIST', default: DEFAULT_BPW, description: 'comma-separated bits-per-weight targets for the codecs that take one' },
    { name: 'eval-windows', kind: 'int', valueName: 'N', min: 1, default: 8, description: 'evaluate on the first N windows of the evaluation text' },
    { name: 'out-dir', kind: 'path', valueName: 'DIR', default: 'sweep', description: 'where sweep.json and sweep.svg are written (created if missing)' },
    { name: 'keep-bundles', kind: 'boolean', default: false, description: 'also write every bundle to DIR' },
    ...codecFlagSpecs(['bpw']),
    ...sharedCompressSpecs(),
    ...finetuneSpecs(),
    kernelsOption('CPU kernels of the float model (bundles run their fused codec kernels)'),
    { name: 'markdown', kind: 'boolean', default: false, description: 'print the results as a Markdown table (with the commands)' },
    { name: 'json', kind: 'boolean', default: false, description: 'print the sweep.json object' },
  ],
  examples: [
    'ultrasketch sweep ../shared/models/stories260K/stories260K.bin --codecs rtn:2,binary,sketch,hashednets --bpw 0.5,1.0 --eval-windows 2 --out-dir sweep-260k',
    'ultrasketch sweep ../shared/models/stories3M/stories3M-q80.bin --codecs sketch,sketch:hash=mixed,hashednets,littlebit,binary,rtn:2 --small-matrix keep --markdown',
  ],

  async run(input, io) {
    const { positionals, options } = input;
    const quiet = options.quiet === true;
    if (options.json === true && options.markdown === true) throw new UsageError('give --json or --markdown, not both', 'sweep');
    const specs = String(options.codecs)
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '')
      .map(parseCodecSpec);
    if (specs.length === 0) throw new UsageError('--codecs is empty', 'sweep');
    const bpw = String(options.bpw)
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '')
      .map((s) => {
        const v = Number(s);
        if (!Number.isFinite(v) || v <= 0) throw new UsageError(`--bpw: '${s}' is not a positive number`, 'sweep');
        return v;
      });
    const common = rawCodecOptions(input, [...new Set(specs.map((s) => s.codec))], 'sweep', ['bpw']);
    // A sketch point without a --query of its own gets the CLI's sketch defaults (as compress does), for the keys
    // neither the common flags nor the point itself set.
    for (const s of specs) s.options = { ...sketchDefaultsFor(s.codec, { ...optionsFor(s.codec, common), ...s.options }), ...s.options };
    // Resolve every point's options now (bad options fail before any work) and see whether any uses saliency.
    let usesSaliency = false;
    for (const s of specs) {
      const raw = { ...optionsFor(s.codec, common), ...s.options };
      const targets = isBpwTargeted(s.codec, raw) && raw.bpw === undefined ? bpw : [undefined];
      for (const b of targets) {
        const resolved = resolveCodecOptions(s.codec, b === undefined ? raw : { ...raw, bpw: b });
        if (codecUsesSaliency(s.codec, resolved)) usesSaliency = true;
      }
    }
    // Before any work: --out-dir must be a directory (or not exist yet), and sweep.json / sweep.svg must not
    // replace an input (the bundles' names are checked by sweep() itself, which knows them).
    const outDir = options['out-dir'] as string;
    assertOutputDirectory(outDir);
    assertCheckpointDirectory(input);
    const inputs = commandInputs(input);
    for (const name of ['sweep.json', 'sweep.svg']) assertOutputNotInput(join(outDir, name), inputs, { flag: '--out-dir', what: name });
    const evalPath = textPath(options['eval-text'], 'eval.txt', '--eval-text', true)!;
    const evalFile = readText(evalPath, 'evaluation text', '--eval-text');
    warnIfCalibrationText(io, evalPath);
    const model = loadCheckpointForCompress(positionals.checkpoint!, options.tokenizer as string | undefined);
    // The sweep holds the float model in memory (it evaluates it), so calibration gives statistics, never a text.
    const calibration = maybeCalibrate(input, io, model, 'sweep', null, evalFile, usesSaliency) as Calibration | undefined;

    // Finetuning flags apply to every point (the same token budget for every method); per-point checkpoints.
    const ftSetup = finetuneFromInput(input, io, evalFile);
    const finetune = ftSetup ? (({ onProgress: _ignored, ...rest }) => rest)(ftSetup.options) : undefined;
    const command = shellJoin(['ultrasketch', 'sweep', ...(input.argv ?? [])]);
    let bar: Progress | undefined;
    let trainBarFor = -1;
    const result: SweepResult = await sweep({
      model,
      codecs: specs,
      bpw,
      codecOptions: common,
      ...(options.layers === undefined ? {} : { layers: options.layers as string }),
      embeddings: options.embeddings as EmbeddingStorage,
      seed: options.seed as number,
      smallMatrix: options['small-matrix'] as SmallMatrixPolicy,
      evalText: new TextDecoder('utf-8').decode(evalFile.bytes),
      evalTextSource: evalPath,
      evalWindows: options['eval-windows'] as number,
      ...(options['eval-window'] === undefined ? {} : { window: options['eval-window'] as number }),
      ...(calibration ? { calibrated: calibration } : {}),
      ...(finetune ? { finetune } : {}),
      outDir,
      inputs,
      keepBundles: options['keep-bundles'] === true,
      kernels: options.kernels as KernelChoice,
      command,
      commandArgs: {
        model: positionals.checkpoint!,
        ...(options.tokenizer === undefined ? {} : { tokenizer: options.tokenizer as string }),
        evalText: evalPath,
        ...(calibration ? { calib: calibration.info.textSource } : {}),
      },
      onProgress: (e) => {
        if (e.phase === 'point-start') {
          bar = new Progress({ label: `sweep [${e.index}/${e.total}] ${e.label}${e.bpw === null ? '' : ` @ ${e.bpw}`}`, total: 1, unit: 'weights', quiet, stream: io.stderr });
        } else if (e.phase === 'weight' && e.weight) {
          bar?.update(e.weight.index + 1, `${e.weight.index + 1}/${e.weight.total}`);
        } else if (e.phase === 'finetune' && e.training) {
          // Encoding is done: the point's bar becomes its training bar (steps, loss, tokens/s, ETA).
          if (trainBarFor !== e.index) {
            bar?.clear();
            trainBarFor = e.index;
            bar = new Progress({ label: `sweep [${e.index}/${e.total}] ${e.label}${e.bpw === null ? '' : ` @ ${e.bpw}`} finetune`, total: e.training.steps, unit: 'steps', quiet, stream: io.stderr });
          }
          bar?.update(e.training.step, trainingDetail(e.training));
        } else if (e.phase === 'float' && e.row) {
          note(io, quiet, `sweep [0/${e.total}] float32: perplexity ${e.row.perplexity!.toFixed(4)} (${e.row.seconds.toFixed(1)} s)`);
        } else if (e.phase === 'point-end' && e.row) {
          bar?.finish();
          const r = e.row;
          const what = `sweep [${e.index}/${e.total}] ${r.label}${r.bpwTarget === null ? '' : ` @ ${r.bpwTarget} bpw`}`;
          note(
            io,
            quiet,
            r.status !== 'ok'
              ? `${what}: ${r.status}: ${r.reason}`
              : `${what}: bpwLinears ${r.bpwLinears!.toFixed(4)}, bitsPerParam ${r.bitsPerParam!.toFixed(3)}, perplexity ${fmtPpl(r.perplexity)}, KL ${r.kl!.toFixed(4)}, top-1 ${r.top1!.toFixed(4)} (${r.seconds.toFixed(1)} s)` +
                  (r.keptDense.length > 0 ? `; ${r.keptDense.length} linear(s) kept dense` : ''),
          );
        }
      },
    });
    if (options.json === true) {
      writeJson(io, result);
      return;
    }
    if (options.markdown === true) {
      io.stdout.write(sweepMarkdown(result));
      return;
    }
    io.stdout.write(summary(result));
    note(io, quiet, `sweep: wrote ${result.files!.json} and ${result.files!.svg}`);
  },
};

function fmtPpl(x: number | null): string {
  if (x === null) return '—';
  if (!Number.isFinite(x)) return '∞';
  return x >= 1e4 ? x.toExponential(2) : x.toFixed(3);
}

function summary(r: SweepResult): string {
  const header = ['codec', 'target', 'bpwLinears', 'bits/param', 'perplexity', 'KL', 'top-1', 'seconds'];
  const rows = r.rows.map((x) =>
    x.status !== 'ok'
      ? [x.label, String(x.bpwTarget ?? '—'), x.status, '', '', '', '', x.seconds.toFixed(1)]
      : [
          x.label + (x.keptDense.length > 0 ? ` (${x.keptDense.length} kept dense)` : ''),
          x.bpwTarget === null ? '—' : String(x.bpwTarget),
          x.bpwLinears!.toFixed(4),
          x.bitsPerParam!.toFixed(3),
          fmtPpl(x.perplexity),
          x.kl!.toFixed(4),
          x.top1!.toFixed(4),
          x.seconds.toFixed(1),
        ],
  );
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  const skipped = r.rows.filter((x) => x.status !== 'ok').map((x) => `${x.status} ${x.label} @ ${x.bpwTarget}: ${x.reason}`);
  return `${[
    `${r.model.path}: ${r.protocol}, ${r.windows} window(s) × ${r.window} tokens of ${r.evalText.source}`,
    '',
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    ...(skipped.length > 0 ? ['', ...skipped] : []),
  ].join('\n')}\n`;
}
