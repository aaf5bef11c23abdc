import os from 'node:os';
import { ErrorCodes, UltraSketchError, getCodec } from '@ultrasketch/core';
import type { ModelConfig, ModelWeights, Tensor } from '@ultrasketch/model';
import { type OpenedModel, type ReferenceModel, openModel, openReference } from '@ultrasketch/pipeline';
import type { KernelChoice } from '@ultrasketch/runtime-node';
import type { AdapterSummary } from '@ultrasketch/runtime-webgpu';
import type { Command } from '../command.js';
import { fmtInt, note, table, writeJson } from '../io.js';
import { Progress } from '../progress.js';
import { type MemoryReport, RUNTIME_OPTION, THREADS_OPTION, kernelsOption, memoryReport, threadsOption, type RunSession, type RuntimeChoice, SessionFactory, describeRunSession } from '../runtime.js';
import { TOKENIZER_OPTION, kernelsNote, tokenizerOption } from './generate.js';

/**
 * `ultrasketch bench`: end-to-end speed of a checkpoint or a bundle on one runtime, always as a ratio to a float
 * baseline measured in the same process, on the same runtime, interleaved with it (so machine load hits both).
 */

export const DEFAULT_BENCH_PROMPT =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. ' +
  'One day, she saw a big red ball under a tree.';

/** What the baseline is, in the report. */
export type BaselineKind = 'same-weights' | 'checkpoint' | 'bundle' | 'decoded-bundle';

export const benchCommand: Command = {
  name: 'bench',
  summary: 'end-to-end speed (prefill and generate tokens/s) of a checkpoint or bundle, as a ratio to a float baseline run alongside',
  description:
    'Measures two things a user feels, on the chosen runtime: prefill (the prompt — BOS + --prompt — in one ' +
    'forward call, logits of the last position; tokens/s = prompt tokens ÷ time) and generate (greedy decoding ' +
    'from BOS for --tokens positions, one forward call per position, as `generate` runs; tokens/s = positions ÷ ' +
    'time). Each is run --warmup times unrecorded, then --runs times; the median is reported.\n\n' +
    'Every figure is reported as a RATIO to a baseline measured in the same process on the same runtime, ' +
    'interleaved with the model (model and baseline alternate, in swapped order every run), so load from other ' +
    'jobs falls on both. ratio = model tokens/s ÷ baseline tokens/s (> 1: faster than the baseline). The ' +
    'baseline is the dense float32 model: for a checkpoint, the same weights with the runtime\'s default dense ' +
    'kernels (node: --kernels auto; webgpu: the f32 kernel) — a ratio near 1, or the cost of --kernels js; for a ' +
    'bundle, the float checkpoint it came from when --baseline names it, else the bundle\'s own weights decoded ' +
    'to dense float32 (codec decode(), same shapes, same tokens: what running the bundle expanded would cost). ' +
    'The baseline must have the same model config.\n\n' +
    '--runtime webgpu runs both on WebGPU through Dawn (the `webgpu` package). When the adapter is a software one ' +
    '(SwiftShader, lavapipe, WARP: adapter.info names it), the figures measure a CPU emulating a GPU: they are ' +
    'CORRECTNESS-GRADE numbers, not GPU speed, and the report says so (text and JSON "correctnessOnly": true).\n\n' +
    'With --json stdout gets exactly one JSON object: {"model", "baseline", "runtime", "kernels", "device" ' +
    '(cpu, cores, node, load average, adapter), "correctnessOnly", "note", "settings" (threads included), "memory" {model, ' +
    'baseline: bytes held for weights, KV cache and scratch, next to the file size and a bundle\'s tensor bytes; null ' +
    'on webgpu}, "results" {model, ' +
    'baseline: {prefill, generate: {tokensPerSecond, samples}}}, "ratio" {prefill, generate}, "seconds"}. ' +
    'Progress goes to stderr.',
  positionals: [{ name: 'model', description: 'a .usk bundle or a float model: a llama2.c checkpoint (legacy float32 or version-2 int8), an HF directory, a .safetensors file with config.json beside it, or a .gguf file' }],
  options: [
    RUNTIME_OPTION,
    THREADS_OPTION,
    {
      name: 'baseline',
      kind: 'path',
      valueName: 'FILE',
      description: 'the float checkpoint (or another bundle) to compare with, same model config',
      defaultText: "a checkpoint: itself with the runtime's default dense kernels; a bundle: its weights decoded to dense float32",
    },
    { name: 'tokens', kind: 'int', valueName: 'N', default: 32, min: 1, description: "generate: positions decoded from BOS, one token per forward call (≤ the model's seq_len)" },
    { name: 'prompt', kind: 'string', valueName: 'TEXT', defaultText: 'a fixed three-sentence TinyStories-style text', description: 'prefill: the text run in one forward call (encoded with BOS)' },
    { name: 'runs', kind: 'int', valueName: 'N', default: 3, min: 1, description: 'measured runs of each (the median is reported)' },
    { name: 'warmup', kind: 'int', valueName: 'N', default: 1, min: 0, description: 'unrecorded runs of each before measuring' },
    TOKENIZER_OPTION,
    kernelsOption('CPU kernels for the model when it is a checkpoint (the baseline keeps auto); --runtime node only'),
    { name: 'json', kind: 'boolean', default: false, description: 'print one JSON object instead of the table' },
  ],
  examples: [
    'ultrasketch bench ../shared/models/stories260K/stories260K.bin --tokens 16 --runs 3',
    'ultrasketch bench stories3M-rtn4.usk --baseline ../shared/models/stories3M/stories3M-q80.bin --runtime webgpu --json',
    'ultrasketch bench stories260K-rtn8.usk --tokens 64 --warmup 2 --runs 5',
  ],

  async run({ positionals, options, given }, io) {
    const quiet = options.quiet === true;
    const json = options.json === true;
    const runtime = options.runtime as RuntimeChoice;
    const tokens = options.tokens as number;
    const runs = options.runs as number;
    const warmup = options.warmup as number;
    const model = openModel(positionals.model!, tokenizerOption(options.tokenizer));
    const config = model.config;
    const kernels = options.kernels as KernelChoice;
    if (runtime === 'node') kernelsNote(io, quiet, model, kernels);

    if (tokens > config.seqLen) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `--tokens ${tokens} is more than the model's seq_len ${config.seqLen}`, {
        source: '--tokens',
        hint: `use --tokens ${config.seqLen} or fewer`,
      });
    }
    const promptText = options.prompt === undefined ? DEFAULT_BENCH_PROMPT : String(options.prompt);
    const prompt = model.tokenizer.encode(promptText, { bos: true, eos: false });
    if (prompt.length > config.seqLen) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `the prompt has ${prompt.length} tokens (BOS included), more than the model's seq_len ${config.seqLen}`, {
        source: '--prompt',
        hint: 'use a shorter --prompt',
      });
    }

    const baselinePath = options.baseline as string | undefined;
    const baseline = openBaseline(model, baselinePath);
    checkSameConfig(config, baseline.model.config, baseline.model.source.path);

    // The model runs with --kernels; the baseline with the runtime's default dense kernels.
    // Both run with the same --threads: the ratio compares models, not thread counts.
    const threads = threadsOption(options.threads);
    const factory = new SessionFactory(runtime, kernels, io, quiet, threads);
    const baseFactory = runtime === 'node' ? new SessionFactory(runtime, 'auto', io, true, threads) : factory;
    if (runtime === 'webgpu') factory.kernelsIgnoredNote(given);
    note(io, quiet, `bench: ${model.source.path} against ${baseline.description}, ${runtime}; prefill ${prompt.length} tokens, generate ${tokens}; ${warmup} warm-up + ${runs} runs each`);

    const started = performance.now();
    let opened: RunSession | undefined;
    let base: RunSession | undefined;
    const total = (warmup + runs) * 4;
    const progress = new Progress({ label: 'bench', total, unit: 'runs', quiet, stream: io.stderr });
    let memory: { model: MemoryReport | null; baseline: MemoryReport | null } = { model: null, baseline: null };
    const samples = { model: { prefill: [] as number[], generate: [] as number[] }, baseline: { prefill: [] as number[], generate: [] as number[] } };
    try {
      // The KV cache holds what a run uses (the longer of the prompt and --tokens), not a 128k-context model's whole seq_len.
      const context = Math.max(tokens, prompt.length);
      opened = await factory.open(model, context);
      base = await baseFactory.open(baseline.model, context);
      const contenders = [
        { key: 'model' as const, s: opened.session },
        { key: 'baseline' as const, s: base.session },
      ];
      let done = 0;
      for (let round = 0; round < warmup + runs; round++) {
        const record = round >= warmup;
        const order = round % 2 === 0 ? contenders : [...contenders].reverse();
        for (const what of ['prefill', 'generate'] as const) {
          for (const c of order) {
            const tps = what === 'prefill' ? await timePrefill(c.s, prompt) : await timeGenerate(c.s, tokens, model.tokenizer.bosId >= 0 ? model.tokenizer.bosId : prompt[0]!);
            if (record) samples[c.key][what].push(tps);
            progress.update(++done, `${record ? `run ${round - warmup + 1}/${runs}` : `warm-up ${round + 1}/${warmup}`}: ${what} ${c.key}`);
          }
        }
      }
      memory = { model: memoryReport(model, opened), baseline: memoryReport(baseline.model, base) };
    } catch (err) {
      progress.clear();
      throw err;
    } finally {
      opened?.session.dispose();
      base?.session.dispose();
    }
    progress.finish();
    const seconds = (performance.now() - started) / 1000;

    const summary = (xs: number[]) => ({ tokensPerSecond: median(xs), samples: xs });
    const results = {
      model: { prefill: summary(samples.model.prefill), generate: summary(samples.model.generate) },
      baseline: { prefill: summary(samples.baseline.prefill), generate: summary(samples.baseline.generate) },
    };
    const ratio = {
      prefill: results.model.prefill.tokensPerSecond / results.baseline.prefill.tokensPerSecond,
      generate: results.model.generate.tokensPerSecond / results.baseline.generate.tokensPerSecond,
    };
    for (const [what, r] of Object.entries(ratio)) {
      if (!Number.isFinite(r) || r <= 0) {
        throw new UltraSketchError(ErrorCodes.NOT_FINITE, `the ${what} ratio came out as ${r}: a run took no measurable time`, {
          hint: 'use more --tokens or a longer --prompt',
        });
      }
    }
    const adapter: AdapterSummary | null = opened.runtime === 'webgpu' ? opened.session.adapter : null;
    const correctnessOnly = adapter?.software === true;
    const noteText = correctnessOnly
      ? `${adapter!.architecture || adapter!.description || 'the adapter'} is a software (CPU) implementation of WebGPU: these are correctness-grade numbers, not GPU speed`
      : null;
    const kernelsUsed = { model: kernelsOf(model, opened), baseline: kernelsOf(baseline.model, base) };
    const device = {
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      node: process.version,
      platform: `${os.platform()} ${os.arch()}`,
      loadAverage: os.loadavg(),
      adapter,
    };

    if (json) {
      writeJson(io, {
        benchmark: 'ultrasketch bench',
        model: describeModel(model),
        baseline: { kind: baseline.kind, path: baseline.path, description: baseline.description },
        runtime,
        kernels: kernelsUsed,
        runtimeDescription: { model: describeRunSession(model, opened), baseline: describeRunSession(baseline.model, base) },
        device,
        correctnessOnly,
        note: noteText,
        settings: { tokens, promptTokens: prompt.length, prompt: promptText, runs, warmup, threads },
        memory,
        results,
        ratio,
        seconds,
      });
    } else {
      const f = (v: number) => `${v.toFixed(1)} tok/s`;
      const rows: Array<[string, string]> = [
        ['model', `${model.source.path} (${describeModelShort(model)}; ${describeRunSession(model, opened)})`],
        ['baseline', `${baseline.description} (${describeRunSession(baseline.model, base)})`],
        ['device', adapter ? `webgpu adapter ${[adapter.vendor, adapter.architecture, adapter.description].filter(Boolean).join(' / ')}` : `${device.cpu} × ${device.cores}, load ${device.loadAverage.map((l) => l.toFixed(2)).join(' ')}`],
        [`prefill ${prompt.length} tok`, `${f(results.model.prefill.tokensPerSecond)} vs ${f(results.baseline.prefill.tokensPerSecond)}  ratio ${ratio.prefill.toFixed(3)}×`],
        [`generate ${tokens} tok`, `${f(results.model.generate.tokensPerSecond)} vs ${f(results.baseline.generate.tokensPerSecond)}  ratio ${ratio.generate.toFixed(3)}×`],
        ...(memory.model
          ? ([['memory', `model: weights ${fmtBytes(memory.model.weightsBytes)} (file ${fmtBytes(memory.model.fileBytes)}), KV cache ${fmtBytes(memory.model.kvCacheBytes)}, scratch ${fmtBytes(memory.model.scratchBytes)}; baseline weights ${fmtBytes(memory.baseline?.weightsBytes ?? 0)}`]] as Array<[string, string]>)
          : []),
        ['runs', `median of ${runs} after ${warmup} warm-up, ${seconds.toFixed(1)} s in all; ratio = model ÷ baseline (> 1 is faster)`],
      ];
      if (noteText) rows.push(['NOTE', noteText]);
      io.stdout.write(`${table(rows)}\n`);
    }
    if (noteText && json) note(io, quiet, `NOTE: ${noteText}`);
  },
};

/** The baseline to run next to `model`: a file given with --baseline, the same weights, or the bundle decoded. */
export function openBaseline(
  model: OpenedModel,
  path: string | undefined,
): { kind: BaselineKind; path: string; model: OpenedModel | ReferenceModel; description: string } {
  if (path !== undefined) {
    const ref = openReference(path);
    return { kind: ref.kind, path, model: ref, description: `${path} (${ref.kind === 'bundle' ? 'a bundle' : 'float checkpoint'}, --baseline)` };
  }
  if (model.kind === 'checkpoint') {
    return { kind: 'same-weights', path: model.source.path, model, description: `${model.source.path} (the same float32 weights, default dense kernels)` };
  }
  const weights = decodeBundleWeights(model);
  const ref: ReferenceModel = {
    kind: 'checkpoint',
    config: model.config,
    weights,
    source: { path: `${model.source.path} [decoded to float32]`, format: 'decoded-bundle', fileBytes: model.source.fileBytes, sha256: model.source.sha256 },
  };
  return { kind: 'decoded-bundle', path: model.source.path, model: ref, description: `${model.source.path} decoded to dense float32 (no --baseline given)` };
}

/** A bundle's weights expanded with each codec's decode() into dense float32 tensors (the norms as stored). */
export function decodeBundleWeights(model: Extract<OpenedModel, { kind: 'bundle' }>): ModelWeights {
  const tensors = new Map<string, Tensor>();
  for (const [name, w] of model.bundle.weights) {
    const codec = getCodec(w.entry.codec, w.entry.version, model.source.path);
    tensors.set(name, { shape: [w.entry.rows, w.entry.cols], data: codec.decode(w.params) });
  }
  for (const [name, v] of model.bundle.vectors) tensors.set(name, { shape: [v.length], data: v });
  return { config: model.config, tensors };
}

function checkSameConfig(a: ModelConfig, b: ModelConfig, source: string): void {
  const keys = ['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'vocabSize', 'seqLen'] as const;
  const diff = keys.filter((k) => a[k] !== b[k]);
  if (diff.length > 0) {
    throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `the baseline's config differs from the model's: ${diff.map((k) => `${k} ${b[k]} vs ${a[k]}`).join(', ')}`, {
      source,
      hint: 'give --baseline the float checkpoint the bundle was compressed from (or leave it out to compare with the decoded bundle)',
    });
  }
}

type AnySession = RunSession['session'];

async function timePrefill(s: AnySession, prompt: readonly number[]): Promise<number> {
  s.reset();
  const t0 = performance.now();
  await s.forward(prompt, { logits: 'last' });
  const ms = performance.now() - t0;
  s.reset();
  return prompt.length / (ms / 1000);
}

async function timeGenerate(s: AnySession, tokens: number, bos: number): Promise<number> {
  let count = 0;
  const t0 = performance.now();
  for await (const _ of s.generate([bos], { steps: tokens, temperature: 0, stopToken: -1 })) count++;
  const ms = performance.now() - t0;
  s.reset();
  return count / (ms / 1000);
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function kernelsOf(model: OpenedModel | ReferenceModel, s: RunSession): string {
  if (model.kind === 'bundle') return 'fused';
  return s.runtime === 'node' ? s.session.kernels : 'webgpu-f32';
}

function describeModel(model: OpenedModel): Record<string, unknown> {
  const base = { path: model.source.path, kind: model.kind, sha256: model.source.sha256, fileBytes: model.source.fileBytes };
  if (model.kind === 'checkpoint') return { ...base, format: model.source.format };
  const a = model.loaded.accounting;
  return { ...base, codecs: Object.keys(a.linearCodecs), bpwLinears: a.bpwLinears, bitsPerParam: a.bitsPerParam };
}

function describeModelShort(model: OpenedModel): string {
  if (model.kind === 'checkpoint') return `${model.source.format} checkpoint, ${fmtInt(model.source.fileBytes)} bytes`;
  const a = model.loaded.accounting;
  return `usk bundle: ${Object.keys(a.linearCodecs).join(', ')}, bpwLinears ${a.bpwLinears.toFixed(4)}`;
}

function fmtBytes(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}
