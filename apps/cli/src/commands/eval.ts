import { basename } from 'node:path';
import { parameterCount } from '@ultrasketch/model';
import {
  EVAL_PROTOCOLS,
  type EvalProtocol,
  type ReferenceModel,
  defaultWindow,
  evaluate,
  openModel,
  openReference,
  readFileChecked,
  referenceSourceWarning,
} from '@ultrasketch/pipeline';
import type { KernelChoice } from '@ultrasketch/runtime-node';
import type { Command } from '../command.js';
import { fmtInt, note, table, warn, writeJson } from '../io.js';
import { Progress } from '../progress.js';
import { KERNELS_FOR_CHECKPOINT, RUNTIME_OPTION, THREADS_OPTION, kernelsOption, threadsOption, type RunSession, type RuntimeChoice, SessionFactory, describeRunSession } from '../runtime.js';
import { TOKENIZER_OPTION, kernelsNote, tokenizerOption } from './generate.js';

export const evalCommand: Command = {
  name: 'eval',
  summary: 'perplexity of a checkpoint or bundle on a text (and KL / top-1 agreement against a reference model)',
  description:
    'Three protocols (../shared/docs/evaluation.md), named in every report. --protocol llama2c-documents (the default, ' +
    "llama2.c's): the text is split into documents on blank lines, each encoded with BOS, concatenated into one " +
    'stream and cut into non-overlapping windows of --window tokens (default seq_len, at most 2048; the remainder is dropped); ' +
    'each window runs from an empty KV cache and positions 1..W-1 are scored. --protocol wikitext (the ' +
    "literature's, for Hugging Face models): the file joined as given (e.g. WikiText-2's test split joined with " +
    'blank lines) is tokenized once, BOS first when the tokenizer adds one, cut into non-overlapping windows of ' +
    '--window (default 2048, capped by the model), the first token of each window not scored. --protocol ' +
    "llamacpp (llama.cpp's perplexity): tokenized once, chunks of --window (default 512) each starting with BOS " +
    'in place of its first token, only the second half of each chunk scored. Prints the mean negative ' +
    'log-likelihood (nats) and perplexity = exp(mean NLL).\n\n' +
    'The model may be a llama2.c checkpoint, an HF directory, a .safetensors file with its config.json beside ' +
    'it, a GGUF file or a .usk bundle (docs/inputs.md).\n\n' +
    'With --reference, the reference model runs on the same windows and KL(P_reference || P_model) per ' +
    'position and top-1 agreement are reported, together with the reference\'s own NLL and perplexity. ' +
    'The reference (a checkpoint or a bundle) scores the same token stream, made with the evaluated model\'s ' +
    'tokenizer.\n\n' +
    '--runtime webgpu runs the model (and the reference) on a GPU through WebGPU (Dawn, the `webgpu` package); ' +
    'the adapter is printed on stderr, and when none is found SwiftShader (a CPU Vulkan) is used, with a ' +
    'warning: correctness only, not GPU speed. --kernels is ignored with --runtime webgpu.\n\n' +
    'A .usk bundle runs with its codecs\' fused kernels and its embedded tokenizer (--tokenizer is refused with ' +
    'a bundle); its JSON report adds "bundle": {bpwLinears, bitsPerParam, fileBytes, params}.\n\n' +
    'Evaluate on text the model was not calibrated or finetuned on (eval.txt, not calib.txt). ' +
    'With --json stdout gets exactly one JSON object: {"meanNll", "perplexity", "windows", "predictedTokens", ' +
    '"windowNll", "protocol", "window", "streamTokens", "model", "text", ...} (+ "kl", "top1", "reference" ' +
    'with --reference).',
  positionals: [{ name: 'checkpoint', description: 'the model (llama2.c checkpoint, HF directory, .safetensors with config.json, .gguf) or .usk bundle to evaluate' }],
  options: [
    { name: 'text', kind: 'path', valueName: 'FILE', required: true, description: 'evaluation text (llama2c-documents: documents separated by blank lines)' },
    { name: 'protocol', kind: 'string', valueName: 'P', default: 'llama2c-documents', choices: [...EVAL_PROTOCOLS], description: 'perplexity protocol: llama2c-documents, wikitext (whole text, windows of 2048) or llamacpp (chunks of 512, second half scored)' },
    TOKENIZER_OPTION,
    { name: 'window', kind: 'int', valueName: 'W', min: 2, defaultText: "the protocol's: llama2c-documents and wikitext 2048, llamacpp 512, each capped by seq_len", description: 'window length in tokens' },
    { name: 'windows', kind: 'count-or-all', valueName: 'N', default: 'all', min: 1, description: "evaluate only the first N windows ('all' for every window)" },
    { name: 'reference', kind: 'path', valueName: 'MODEL', description: 'a reference model (checkpoint or bundle; normally the float model) to compare with on the same windows (KL, top-1)' },
    kernelsOption(KERNELS_FOR_CHECKPOINT),
    RUNTIME_OPTION,
    THREADS_OPTION,
    { name: 'json', kind: 'boolean', default: false, description: 'print one JSON object instead of the summary' },
  ],
  examples: [
    'ultrasketch eval ../shared/models/stories3M/stories3M-q80.bin --text ../shared/data/tinystories/eval.txt --windows 16',
    'ultrasketch eval model.usk --text ../shared/data/tinystories/eval.txt --reference ../shared/models/stories3M/stories3M-q80.bin --windows 8 --json',
    'ultrasketch eval ../shared/models/stories260K/stories260K.bin --text ../shared/data/tinystories/eval.txt --runtime webgpu --windows 4',
    'ultrasketch eval ../shared/models/stories3M/hf --text wiki.test.raw --protocol wikitext --windows 8',
    'ultrasketch eval ../shared/models/stories3M/gguf/stories3M-q6_k.gguf --text ../shared/data/tinystories/eval.txt --protocol llamacpp',
  ],

  async run({ positionals, options, given }, io) {
    const quiet = options.quiet === true;
    const textPath = options.text as string;
    if (basename(textPath) === 'calib.txt') {
      warn(io, `evaluating on calibration text (${textPath}): the result says nothing about unseen text; use eval.txt`);
    }
    const model = openModel(positionals.checkpoint!, tokenizerOption(options.tokenizer));
    const runtime = options.runtime as RuntimeChoice;
    const factory = new SessionFactory(runtime, options.kernels as KernelChoice, io, quiet, threadsOption(options.threads));
    if (runtime === 'node') kernelsNote(io, quiet, model, options.kernels);
    else factory.kernelsIgnoredNote(given);
    const refPath = options.reference as string | undefined;
    // The reference scores the same token stream (the evaluated model's tokenizer): it needs no tokenizer.
    const reference: ReferenceModel | undefined = refPath ? openReference(refPath) : undefined;
    // A bundle records the checkpoint it was compressed from: comparing it with another model is allowed (a
    // deliberate cross-model comparison), but never silently.
    if (reference?.kind === 'checkpoint' && model.kind === 'bundle') {
      const mismatch = referenceSourceWarning(model.loaded.provenance, reference.source);
      if (mismatch) warn(io, mismatch);
    }
    const text = new TextDecoder('utf-8').decode(readFileChecked(textPath, 'evaluation text', '--text'));

    const protocol = options.protocol as EvalProtocol;
    const window = options.window === undefined ? defaultWindow(protocol, model.config) : (options.window as number);
    // The cache holds one window (a 128k-context model would otherwise reserve gigabytes); a window past the
    // model's seq_len is refused by evaluate() with the limit named.
    const cache = Math.min(window, model.config.seqLen);
    const opened: RunSession = await factory.open(model, cache);
    const session = opened.session;
    let refSession: RunSession['session'] | undefined;
    const windowsOpt = options.windows;
    let progress: Progress | undefined;
    const started = performance.now();
    let result;
    try {
      refSession = reference ? (await factory.open(reference, cache)).session : undefined;
      result = await evaluate({
        session,
        protocol,
        tokenizer: model.tokenizer,
        text,
        textSource: textPath,
        window,
        ...(windowsOpt === 'all' || windowsOpt === undefined ? {} : { windows: windowsOpt as number }),
        ...(refSession ? { reference: refSession } : {}),
        // A NaN/Inf result is a NOT_FINITE error naming the model by its path (never "perplexity NaN").
        modelSource: model.source.path,
        ...(refPath ? { referenceSource: refPath } : {}),
        onProgress: (p) => {
          progress ??= new Progress({
            label: 'eval',
            total: p.windowsTotal * window,
            unit: 'tok',
            quiet,
            stream: io.stderr,
          });
          progress.update(p.tokensDone, `window ${p.windowsDone}/${p.windowsTotal}`);
        },
      });
    } catch (err) {
      progress?.clear();
      throw err;
    } finally {
      session.dispose();
      refSession?.dispose();
    }
    progress?.finish();
    const seconds = (performance.now() - started) / 1000;
    if (typeof windowsOpt === 'number' && windowsOpt > result.windows) {
      note(io, quiet, `--windows ${windowsOpt}: the text has only ${result.windows} windows of ${result.window} tokens; evaluated all of them`);
    }
    const windowsAvailable = Math.floor(result.streamTokens / result.window);
    const params = parameterCount(model.config);
    const scoredTokens = result.windows * result.window * (refSession ? 2 : 1);

    if (options.json === true) {
      writeJson(io, {
        meanNll: result.meanNll,
        perplexity: result.perplexity,
        windows: result.windows,
        predictedTokens: result.predictedTokens,
        ...(result.kl === undefined ? {} : { kl: result.kl, top1: result.top1 }),
        ...(result.reference && reference
          ? { reference: { path: reference.source.path, kind: reference.kind, sha256: reference.source.sha256, ...result.reference } }
          : {}),
        protocol: result.protocol,
        firstScored: result.firstScored,
        window: result.window,
        windowsAvailable,
        streamTokens: result.streamTokens,
        windowNll: result.windowNll,
        model: {
          path: model.source.path,
          kind: model.kind,
          format: model.source.format,
          sha256: model.source.sha256,
          fileBytes: model.source.fileBytes,
          parameters: params,
          tokenizer: model.kind === 'bundle' ? 'embedded' : (model.source.tokenizerPath ?? 'embedded'),
          tokenizerKind: model.tokenizerInfo.kind,
        },
        ...(model.kind === 'bundle'
          ? {
              bundle: {
                bpwLinears: model.loaded.accounting.bpwLinears,
                bitsPerParam: model.loaded.accounting.bitsPerParam,
                fileBytes: model.loaded.accounting.fileBytes,
                params: model.loaded.accounting.params,
                linearCodecs: model.loaded.accounting.linearCodecs,
              },
            }
          : {}),
        text: { path: textPath, bytes: Buffer.byteLength(text, 'utf8') },
        runtime: describeRunSession(model, opened),
        seconds,
        tokensPerSecond: scoredTokens / seconds,
      });
      return;
    }
    const rows: Array<[string, string]> = [
      [
        'model',
        model.kind === 'bundle'
          ? `${model.source.path} (usk bundle: ${Object.keys(model.loaded.accounting.linearCodecs).join(', ')}, bpwLinears ${model.loaded.accounting.bpwLinears.toFixed(4)}, bitsPerParam ${model.loaded.accounting.bitsPerParam.toFixed(4)}, ${fmtInt(params)} parameters)`
          : `${model.source.path} (${model.source.format}, ${fmtInt(params)} parameters)`,
      ],
      ['text', `${textPath}: ${fmtInt(result.streamTokens)} tokens, protocol ${result.protocol}${result.firstScored > 0 ? ` (positions ${result.firstScored}..${result.window - 2} of each window scored)` : ''}`],
      [
        'windows',
        `${result.windows} of ${windowsAvailable} × ${result.window} tokens (${fmtInt(result.predictedTokens)} predicted)`,
      ],
      ['mean NLL', `${result.meanNll.toFixed(6)} nats`],
      ['perplexity', result.perplexity.toFixed(4)],
    ];
    if (result.reference && reference) {
      rows.push(
        ['reference', `${reference.source.path}: mean NLL ${result.reference.meanNll.toFixed(6)}, perplexity ${result.reference.perplexity.toFixed(4)}`],
        ['ratio', `perplexity ${(result.perplexity / result.reference.perplexity).toFixed(2)}× the reference's, on the same windows`],
        ['KL(ref||model)', `${result.kl!.toExponential(4)} nats per position`],
        ['top-1 agree', `${(100 * result.top1!).toFixed(2)} %`],
      );
    }
    io.stdout.write(`${table(rows)}\n`);
    note(io, quiet, `eval: ${seconds.toFixed(1)} s, ${fmtInt(Math.round(scoredTokens / seconds))} tokens/s`);
  },
};
