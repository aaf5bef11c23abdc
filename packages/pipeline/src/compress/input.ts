/**
 * What `compress` works on: the config, the tokenizer and each tensor — the whole float model in memory (a
 * llama2.c checkpoint, a `LoadedModel`) or a source streamed from its files (HF, GGUF).
 */
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { ModelConfig, ModelWeights } from '@ultrasketch/model';
import { type LoadedModel, type ModelSourceInfo, loadModel, sourceInfo } from '../load.js';
import { type ModelSource, detectModelPath, openModelSource } from '../sources.js';
import type { LoadedTokenizer } from '../tokenizers.js';
import type { CompressOptions } from '../compress.js';

/** What compress works on: the config, the tokenizer, and each tensor — from memory or streamed from the files. */
export interface CompressInput {
  /** The model's path as given (errors, the memory checks). */
  path: string;
  config: ModelConfig;
  tokenizer: LoadedTokenizer;
  /** The whole float model, when it is in memory (llama2.c checkpoints, a LoadedModel). */
  weights: ModelWeights | null;
  /** The streamed source (HF, GGUF). */
  stream: ModelSource | null;
  /** Where it came from (for a stream, the SHA-256 is computed when first asked for). */
  info(): ModelSourceInfo;
  close(): void;
}

export function compressInput(options: CompressOptions): CompressInput {
  const m = options.model;
  if (typeof m === 'string') {
    const kind = detectModelPath(m, 'checkpoint');
    if (kind === 'usk') throw bundleAsInput(m);
    if (kind === 'llama2c') return fromLoaded(loadModel(m, options.tokenizerPath === undefined ? {} : { tokenizerPath: options.tokenizerPath }));
    return fromStream(openModelSource(m, options.tokenizerPath === undefined ? {} : { tokenizerPath: options.tokenizerPath }), true);
  }
  if ('tensors' in m && 'sha256' in m && typeof m.sha256 === 'function') return fromStream(m, false);
  return fromLoaded(m as LoadedModel);
}

function fromLoaded(model: LoadedModel): CompressInput {
  if (!(model.tokenizerBytes instanceof Uint8Array)) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'the loaded model has no tokenizer bytes to embed', {
      source: model.source.path,
      hint: 'load it with loadModel() of this version',
    });
  }
  // A LoadedModel built by hand (tests, older callers) may lack tokenizerInfo: a llama2.c tokenizer then.
  const tokenizer: LoadedTokenizer = model.tokenizerInfo ?? {
    tokenizer: model.tokenizer,
    embed: { kind: 'llama2c', bytes: model.tokenizerBytes },
    files: model.source.tokenizerPath ? [model.source.tokenizerPath] : [],
    stopIds: [model.tokenizer.bosId],
    kind: 'llama2c',
    description: 'llama2.c tokenizer',
  };
  return { path: model.source.path, config: model.weights.config, tokenizer, weights: model.weights, stream: null, info: () => model.source, close: () => {} };
}

function fromStream(src: ModelSource, owned: boolean): CompressInput {
  let info: ModelSourceInfo | undefined;
  return {
    path: src.path,
    config: src.config,
    tokenizer: src.tokenizer,
    weights: null,
    stream: src,
    info: () => (info ??= sourceInfo(src)),
    close: () => {
      if (owned) src.close();
    },
  };
}

/** Every file compress reads from a model (weights, config, tokenizer), for the output-is-input check. */
export function inputFiles(model: CompressInput): Array<{ path: string; what: string }> {
  const files = model.stream ? model.stream.files : model.info().files ?? [{ path: model.info().path, role: 'weights' as const, bytes: 0 }];
  const out = files.map((f) => ({ path: f.path, what: f.role === 'weights' ? 'checkpoint' : f.role === 'tokenizer' ? 'tokenizer' : f.role === 'index' ? 'shard index' : 'model config' }));
  const tokPath = model.info().tokenizerPath;
  if (!model.stream && tokPath && !out.some((f) => f.path === tokPath)) out.push({ path: tokPath, what: 'tokenizer' });
  return out;
}

/** compress refuses a bundle as its input: no re-compression. */
export function bundleAsInput(path: string): UltraSketchError {
  return new UltraSketchError(ErrorCodes.UNSUPPORTED, 'compress needs a float model; this is a .usk bundle', {
    source: path,
    hint: 'pass the model the bundle was made from (llama2.c checkpoint, HF directory or GGUF)',
  });
}
