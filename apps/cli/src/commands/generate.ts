import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type OpenedModel, openModel } from '@ultrasketch/pipeline';
import type { KernelChoice } from '@ultrasketch/runtime-node';
import type { Command, CommandIO, OptionSpec } from '../command.js';
import { note, warn, writeJson } from '../io.js';
import { Progress } from '../progress.js';
import { KERNELS_FOR_CHECKPOINT, type MemoryReport, RUNTIME_OPTION, THREADS_OPTION, kernelsOption, memoryReport, threadsOption, type RuntimeChoice, SessionFactory, kernelsLabel } from '../runtime.js';

/** --tokenizer of the commands that run a model (generate, eval, bench): a float model's only. */
export const TOKENIZER_OPTION: OptionSpec = {
  name: 'tokenizer',
  kind: 'path',
  valueName: 'FILE',
  description: 'tokenizer of a float model: a llama2.c tokenizer file or a tokenizer.json (refused with a bundle)',
  defaultText: "the model's own: tok*.bin next to a llama2.c checkpoint, tokenizer.json in an HF directory, a GGUF's vocabulary; a bundle's own",
};

export const generateCommand: Command = {
  name: 'generate',
  summary: 'generate text from a model (llama2.c, HF directory, GGUF) or a .usk bundle, streamed to stdout',
  description:
    'Runs the model from BOS (and the prompt, if any) for --steps positions, feeding back sampled tokens, ' +
    "exactly as llama2.c's run.c does: the prompt is encoded with BOS (when the tokenizer has one), generation stops " +
    "after --steps positions (at most the model's seq_len) or when the model produces a stop token: BOS for llama2.c " +
    "models (as run.c), the end-of-sequence ids of the model's files (config.json, generation_config.json, the " +
    'tokenizer) and BOS for the others. The KV cache holds --steps positions (not the whole seq_len: a 128k-context ' +
    'model would reserve gigabytes). Text is printed as it is produced; a stats line (tokens/s) follows on stderr.\n\n' +
    'The model may be a llama2.c checkpoint, a Hugging Face directory (config.json, model.safetensors or shards, ' +
    'tokenizer.json), a .safetensors file with its config.json beside it, a GGUF file, or a .usk bundle, told apart ' +
    'by content (docs/inputs.md).\n\n' +
    'Without --seed the seed is taken from the clock and printed on stderr, so any run can be repeated. ' +
    '--temperature 0 is greedy decoding (argmax) and needs no seed.\n\n' +
    'With --json nothing is streamed; stdout gets exactly one JSON object: {"tokens": [the token fed at each ' +
    'position, starting with BOS], "text": "...", "seed", "temperature", "topP", "steps", "seconds", ' +
    '"tokensPerSecond", "timeToFirstTokenSeconds", "steadyTokensPerSecond"}. tokensPerSecond is over the whole run; ' +
    'the first position pays one-time costs (first calls into the kernels, JIT warm-up), so it is also reported ' +
    'apart: timeToFirstTokenSeconds, and steadyTokensPerSecond = the positions after the first ÷ their time (null ' +
    'with a single position). "threads" is the thread count (--threads) and "memory" the bytes the session ' +
    'holds: weightsBytes (wasmWeightsBytes + jsWeightsBytes), kvCacheBytes, scratchBytes, wasmReservedBytes, next ' +
    'to fileBytes and, for a bundle, bundleTensorBytes (null with --runtime webgpu).\n\n' +
    'A .usk bundle runs with its codecs\' fused kernels (the weights stay compressed) and its embedded ' +
    'tokenizer (--tokenizer is refused with a bundle; --kernels applies to checkpoints).\n\n' +
    '--runtime webgpu runs the model on a GPU through WebGPU (Dawn, the `webgpu` package); the adapter is ' +
    'printed on stderr, and when none is found SwiftShader (a CPU Vulkan) is used, with a warning: correctness ' +
    'only, not GPU speed. --kernels is ignored with --runtime webgpu.',
  positionals: [{ name: 'checkpoint', description: 'a model (llama2.c checkpoint, HF directory, .safetensors with config.json beside it, .gguf) or a .usk bundle' }],
  options: [
    TOKENIZER_OPTION,
    { name: 'prompt', kind: 'string', valueName: 'TEXT', default: '', defaultText: 'none, start from BOS alone', description: 'text to start from (encoded with BOS, llama2.c style)' },
    { name: 'steps', kind: 'int', valueName: 'N', default: 256, min: 1, description: "positions to run, prompt included; capped at the model's seq_len" },
    { name: 'temperature', kind: 'number', valueName: 'T', default: 1.0, defaultText: '1.0', min: 0, description: 'sampling temperature; 0 = greedy (argmax)' },
    { name: 'top-p', kind: 'number', valueName: 'P', default: 0.9, min: 0, max: 1, description: 'nucleus sampling threshold in (0, 1]; 1 samples from the whole distribution' },
    { name: 'seed', kind: 'int', valueName: 'S', min: 0, defaultText: 'time-based, printed on stderr', description: 'random seed for sampling' },
    kernelsOption(KERNELS_FOR_CHECKPOINT),
    RUNTIME_OPTION,
    THREADS_OPTION,
    { name: 'json', kind: 'boolean', default: false, description: 'print one JSON object {"tokens", "text", ...} instead of streaming text' },
  ],
  examples: [
    'ultrasketch generate ../shared/models/stories3M/stories3M-q80.bin --prompt "Once upon a time" --steps 128 --seed 42',
    'ultrasketch generate ../shared/models/stories260K/stories260K.bin --temperature 0 --json',
    'ultrasketch generate ../shared/models/stories3M/hf --prompt "Once upon a time" --temperature 0',
    'ultrasketch generate ../shared/models/stories3M/gguf/stories3M-q8_0.gguf --steps 64',
    'ultrasketch generate stories260K-rtn8.usk --temperature 0 --steps 64',
    'ultrasketch generate ../shared/models/stories260K/stories260K.bin --runtime webgpu --temperature 0 --steps 64',
  ],

  async run({ positionals, options, given }, io) {
    const quiet = options.quiet === true;
    const json = options.json === true;
    const model = openModel(positionals.checkpoint!, tokenizerOption(options.tokenizer));
    const { config } = model;
    const runtime = options.runtime as RuntimeChoice;
    const factory = new SessionFactory(runtime, options.kernels as KernelChoice, io, quiet, threadsOption(options.threads));
    if (runtime === 'node') kernelsNote(io, quiet, model, options.kernels);
    else factory.kernelsIgnoredNote(given);
    const temperature = options.temperature as number;
    const topP = options['top-p'] as number;
    const seed = options.seed === undefined ? Date.now() : (options.seed as number);
    let steps = options.steps as number;
    if (steps > config.seqLen) {
      note(io, quiet, `--steps ${steps} is more than the model's seq_len; running ${config.seqLen} positions`);
      steps = config.seqLen;
    }
    const promptTokens = model.tokenizer.encode(options.prompt as string, { bos: true, eos: false });
    if (promptTokens.length > steps) {
      note(io, quiet, `the prompt has ${promptTokens.length} tokens (BOS included), more than --steps ${steps}; only the first ${steps} are run`);
    }

    // The cache holds the positions this run uses (prompt included), not the model's whole context.
    const opened = await factory.open(model, steps);
    const session = opened.session;
    const kernels = kernelsLabel(model, opened);
    const decoder = model.tokenizer.createStreamDecoder();
    const progress = new Progress({ label: 'generate', total: steps, unit: 'tok', quiet: quiet || !json, stream: io.stderr });
    const tokens: number[] = [];
    let text = '';
    let started = 0;
    let firstAt = 0;
    let endedAt = 0;
    const stop = new Set(model.tokenizerInfo.stopIds);
    let stoppedAt: number | null = null;
    let padding = 0;
    let memory: MemoryReport | null = null;
    try {
      if (promptTokens.length === 0) {
        throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'there is nothing to start from: the tokenizer adds no BOS and the prompt is empty', {
          source: '--prompt',
          hint: 'give a --prompt (this vocabulary has no beginning-of-sequence token)',
        });
      }
      // Creating the generator validates the sampling options, before anything is printed. Stopping is done
      // here, at any of the model's stop ids (the session's own rule knows one id).
      const run = session.generate(promptTokens, { steps, temperature, topP, seed, stopToken: -1 });
      if (options.seed === undefined && temperature > 0) {
        note(io, quiet, `seed ${seed} (repeat this run with --seed ${seed})`);
      }
      started = performance.now();
      for await (const step of run) {
        if (tokens.length === 0) firstAt = performance.now();
        tokens.push(step.token);
        // llama2.c prints the piece of the token that follows each position (the prompt's own tokens
        // included), and stops before printing the BOS that ends a story.
        // An id past the tokenizer's vocabulary is a padding row of the embedding (Qwen pads to a multiple of
        // 128): it has no text.
        if (step.next >= model.tokenizer.vocabSize) padding++;
        else if (!stop.has(step.next)) {
          const piece = decoder.push(step.next);
          text += piece;
          if (!json && piece !== '') io.stdout.write(piece);
        }
        progress.update(tokens.length);
        if (stop.has(step.next)) {
          stoppedAt = step.next;
          break;
        }
      }
      endedAt = performance.now();
      memory = memoryReport(model, opened);
    } catch (err) {
      progress.clear();
      throw err;
    } finally {
      session.dispose();
    }
    const tail = decoder.flush();
    if (padding > 0) {
      warn(io, `${padding} generated id(s) are padding rows of the embedding, past the tokenizer's ${model.tokenizer.vocabSize} tokens: they have no text`);
    }
    text += tail;
    progress.finish();
    const { seconds, tokensPerSecond, timeToFirstTokenSeconds, steadyTokensPerSecond } = generationTimes(started, firstAt, endedAt, tokens.length);
    if (json) {
      writeJson(io, {
        tokens,
        text,
        seed,
        temperature,
        topP,
        steps,
        stopIds: [...stop],
        stoppedAt,
        contextLength: session.contextLength,
        model: { path: model.source.path, kind: model.kind, format: model.source.format, tokenizer: model.tokenizerInfo.kind },
        runtime,
        kernels,
        seconds,
        tokensPerSecond,
        timeToFirstTokenSeconds,
        steadyTokensPerSecond,
        threads: factory.threads,
        memory,
      });
    } else {
      io.stdout.write(`${tail}\n`);
    }
    note(
      io,
      quiet,
      `generate: ${tokens.length} positions (${Math.min(promptTokens.length, tokens.length)} from the prompt) in ${seconds.toFixed(2)} s, ` +
        `${tokensPerSecond.toFixed(1)} tokens/s; first token ${(timeToFirstTokenSeconds * 1000).toFixed(1)} ms, ` +
        `steady state ${steadyTokensPerSecond === null ? 'n/a (one position)' : `${steadyTokensPerSecond.toFixed(1)} tokens/s`} (${model.kind === 'bundle' ? 'fused codec' : kernels} kernels${runtime === 'webgpu' && model.kind === 'bundle' ? ', webgpu' : ''})` +
        (temperature > 0 ? `, seed ${seed}` : ', greedy'),
    );
  },
};

export interface GenerationTimes {
  /** Whole run: start of the loop to the end of the last position. */
  seconds: number;
  tokensPerSecond: number;
  /** Start of the loop to the first position's token. */
  timeToFirstTokenSeconds: number;
  /** Positions after the first ÷ the time after the first; null with fewer than 2 positions. */
  steadyTokensPerSecond: number | null;
}

/**
 * The speed figures of a run from its timestamps (ms, performance.now()): the first position is reported
 * apart because it carries one-time costs that the whole-run average spreads over every token.
 */
export function generationTimes(startedMs: number, firstMs: number, endedMs: number, positions: number): GenerationTimes {
  const seconds = (endedMs - startedMs) / 1000;
  const steadySeconds = (endedMs - firstMs) / 1000;
  return {
    seconds,
    tokensPerSecond: positions / seconds,
    timeToFirstTokenSeconds: positions > 0 ? (firstMs - startedMs) / 1000 : seconds,
    steadyTokensPerSecond: positions >= 2 && steadySeconds > 0 ? (positions - 1) / steadySeconds : null,
  };
}

export function tokenizerOption(value: unknown): { tokenizerPath?: string } {
  return typeof value === 'string' ? { tokenizerPath: value } : {};
}

/** A bundle always runs its codecs' fused kernels: say so when --kernels asked for something else. */
export function kernelsNote(io: CommandIO, quiet: boolean, model: OpenedModel, kernels: unknown): void {
  if (model.kind === 'bundle' && kernels !== 'auto' && kernels !== undefined) {
    note(io, quiet, `--kernels ${String(kernels)} applies to checkpoints; the bundle runs its codecs' fused kernels`);
  }
}
