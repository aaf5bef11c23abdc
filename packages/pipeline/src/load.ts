import { createHash } from 'node:crypto';
import { constants as bufferConstants } from 'node:buffer';
import { closeSync, readSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ErrorCodes, UltraSketchError, fromSystemError } from '@ultrasketch/core';
import { type ModelDescription, readLlama2cCheckpoint } from '@ultrasketch/format';
import { type ModelWeights, type TextTokenizer, loadModelWeights, modelFromLlama2c, parameterCount } from '@ultrasketch/model';
import { openRegularFile } from './files.js';
import { assertMemoryFor } from './memory.js';
import { type ModelFormat, type ModelSource, type SourceFile, detectModelPath, openModelSource } from './sources.js';
import type { LoadedTokenizer } from './tokenizers.js';
import { llama2cTokenizerFile, tokenizerFromPath } from './tokenizer-files.js';

/**
 * The largest file `readFileChecked` reads: Node's largest buffer (`buffer.constants.MAX_LENGTH`, 4 GiB in
 * Node 20). A bigger model has to be stored more compactly (a version-2 Q8_0 checkpoint is 4× smaller).
 */
export const MAX_READ_BYTES: number = bufferConstants.MAX_LENGTH;

/** Bytes per read call: well under the 2 GiB a single read may ask for, large enough to cost nothing. */
const READ_CHUNK_BYTES = 64 * 1024 * 1024;

export interface ReadFileOptions {
  /** Bytes per read call (default 64 MiB). Tests pass a small one to run the chunk loop on small files. */
  chunkBytes?: number;
  /** The largest file accepted (default MAX_READ_BYTES, which is also the ceiling). */
  maxBytes?: number;
  /** Called after each chunk with the bytes read so far (tests change the file mid-read with it). */
  onChunk?(read: number, total: number): void;
}

/**
 * Read a whole regular file into one Uint8Array, with a typed error for everything that can go wrong:
 * - missing → E_FILE_NOT_FOUND (naming `flag`, the option that takes another path);
 * - a directory, FIFO, device or socket → E_NOT_A_FILE, refused by its stat before it is opened, and again by
 *   an fstat of the open descriptor (the path may have been swapped in between). It is opened non-blocking, so
 *   even then a FIFO cannot hang the open, and it is never read;
 * - larger than `maxBytes` (≤ MAX_READ_BYTES) → E_LIMIT_EXCEEDED;
 * - shorter or longer than its size at open (it changed while being read) → E_TRUNCATED;
 * - any other system error (permission, I/O) → the typed error of `fromSystemError`.
 * The bytes are read in chunks into one buffer sized from fstat, so files over 2 GiB (where `readFileSync`
 * fails) work. The result is a plain Uint8Array, not a Buffer: Buffer#slice does not copy (Uint8Array#slice
 * does), and readers that copy a tensor with `.slice()` must not end up with a view of the whole file.
 */
export function readFileChecked(path: string, what: string, flag?: string, options: ReadFileOptions = {}): Uint8Array {
  const limit = Math.min(options.maxBytes ?? MAX_READ_BYTES, MAX_READ_BYTES);
  const chunk = options.chunkBytes ?? READ_CHUNK_BYTES;
  if (!Number.isInteger(chunk) || chunk <= 0) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `chunkBytes ${chunk} must be a positive integer`, { source: path });
  }
  const { fd, size } = openRegularFile(path, what, flag);
  try {
    if (size > limit) {
      throw new UltraSketchError(
        ErrorCodes.LIMIT_EXCEEDED,
        `${what} is ${size} bytes, over the limit of ${limit} bytes (${limit === MAX_READ_BYTES ? "MAX_READ_BYTES, Node's largest buffer" : 'maxBytes'})`,
        { source: path, hint: 'use a smaller file (a version-2 Q8_0 checkpoint is 4× smaller than float32)' },
      );
    }
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(size);
    } catch (err) {
      throw new UltraSketchError(ErrorCodes.OUT_OF_MEMORY, `cannot allocate ${size} bytes to read the ${what}`, {
        source: path,
        hint: 'free memory, or use a smaller file',
        cause: err,
      });
    }
    let done = 0;
    while (done < size) {
      const n = readSync(fd, bytes, done, Math.min(chunk, size - done), done);
      if (n === 0) {
        throw new UltraSketchError(ErrorCodes.TRUNCATED, `${what} ended after ${done} of its ${size} bytes: it shrank while being read`, {
          source: path,
          hint: 'wait until whatever writes the file has finished, then run the command again',
        });
      }
      done += n;
      options.onChunk?.(done, size);
    }
    // One byte past the size: a file that grew while it was read was read only in part.
    if (readSync(fd, new Uint8Array(1), 0, 1, size) !== 0) {
      throw new UltraSketchError(ErrorCodes.TRUNCATED, `${what} has more than the ${size} bytes it had when opened: it grew while being read`, {
        source: path,
        hint: 'wait until whatever writes the file has finished, then run the command again',
      });
    }
    return bytes;
  } catch (err) {
    throw fromSystemError(err, path, 'read');
  } finally {
    closeSync(fd);
  }
}

/**
 * Find the tokenizer for a llama2.c checkpoint when none was given: the `tok*.bin` or `tokenizer.bin`
 * next to it. With several candidates the user has to choose.
 */
export function findTokenizer(checkpointPath: string): string {
  const dir = dirname(checkpointPath);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw fromSystemError(err, dir, 'list');
  }
  const candidates = names
    .filter((f) => f !== basename(checkpointPath) && /^(tok.*|tokenizer)\.bin$/.test(f))
    .sort();
  if (candidates.length === 1) return join(dir, candidates[0]!);
  throw new UltraSketchError(
    ErrorCodes.FILE_NOT_FOUND,
    candidates.length === 0
      ? `no tokenizer (tok*.bin or tokenizer.bin) next to the checkpoint`
      : `several tokenizers next to the checkpoint (${candidates.join(', ')})`,
    { source: checkpointPath, hint: 'name one with --tokenizer FILE' },
  );
}

export interface LoadOptions {
  /** Tokenizer file (llama2.c .bin or tokenizer.json); default: the model's own (next to a llama2.c checkpoint, in an HF directory, inside a GGUF). */
  tokenizerPath?: string;
}

/** Where a model came from (reports, provenance, the output-is-input check). */
export interface ModelSourceInfo {
  /** The path as given: a file, or an HF directory. */
  path: string;
  format: ModelFormat;
  /** Bytes of the weight file(s). */
  fileBytes: number;
  /** SHA-256 of the weights: the file's; for shards, see `ModelSource.sha256` (docs/inputs.md). */
  sha256: string;
  /** The tokenizer file (llama2.c .bin or tokenizer.json); null when it is embedded in the model file (GGUF). */
  tokenizerPath: string | null;
  /** Every file read: weights, config.json, tokenizer files, ... */
  files: SourceFile[];
}

/** A model loaded from disk, with where it came from. */
export interface LoadedModel {
  weights: ModelWeights;
  tokenizer: TextTokenizer;
  /** The tokenizer as a bundle embeds it, the ids generation stops at, and where it came from. */
  tokenizerInfo: LoadedTokenizer;
  /** The embedded tokenizer's main bytes (the llama2.c tokenizer file, or tokenizer.json). */
  tokenizerBytes: Uint8Array;
  source: ModelSourceInfo;
  /** The config's description as the source states it (HF config.json or GGUF metadata); null for llama2.c. */
  description: ModelDescription | null;
  /** Tensors by stored type ("F32": 57, "BF16": 56, "Q8_0": 43). */
  dtypes: Record<string, number>;
}

/** The bytes a model's float32 weights take in memory. */
export function denseBytes(config: ModelWeights['config']): number {
  return 4 * parameterCount(config);
}

/**
 * Load a model into memory as float32, whatever its format: a llama2.c checkpoint (legacy f32 or version-2
 * int8, with its tokenizer next to it), an HF directory, a `.safetensors` file with config.json beside it, or a
 * GGUF file (docs/inputs.md). A `.usk` bundle is not a float model: `openModel` runs it.
 */
export function loadModel(path: string, options: LoadOptions = {}): LoadedModel {
  const kind = detectModelPath(path);
  if (kind === 'usk') {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'this is a .usk bundle, not a float model', {
      source: path,
      hint: 'bundles are run with openModel (generate, eval); compress takes the float model they were made from',
    });
  }
  if (kind === 'llama2c') return loadModelFromBytes(readFileChecked(path, 'checkpoint'), path, options);
  const src = openModelSource(path, options.tokenizerPath === undefined ? {} : { tokenizerPath: options.tokenizerPath });
  try {
    return loadFromSource(src);
  } finally {
    src.close();
  }
}

/** Every tensor of an opened source, decoded to float32 (the memory it needs is checked first). */
export function loadFromSource(src: ModelSource): LoadedModel {
  assertMemoryFor(
    `loading ${src.path} as float32`,
    [{ what: `${parameterCount(src.config).toLocaleString('en-US')} parameters × 4 bytes`, bytes: denseBytes(src.config) }],
    src.path,
    'generate/eval hold the float model in memory; compress streams it one layer at a time and does not',
  );
  const weights = loadModelWeights(src.config, src.tensors);
  return {
    weights,
    tokenizer: src.tokenizer.tokenizer,
    tokenizerInfo: src.tokenizer,
    tokenizerBytes: src.tokenizer.embed.bytes,
    source: sourceInfo(src),
    description: src.description,
    dtypes: src.dtypes,
  };
}

/** The reportable facts of an opened source (computes its SHA-256). */
export function sourceInfo(src: ModelSource): ModelSourceInfo {
  return {
    path: src.path,
    format: src.format,
    fileBytes: src.fileBytes,
    sha256: src.sha256(),
    tokenizerPath: src.tokenizer.files[0] ?? null,
    files: src.files,
  };
}

/** `loadModel` for a llama2.c checkpoint already read into memory (`path` names it and finds the tokenizer). */
export function loadModelFromBytes(bytes: Uint8Array, path: string, options: LoadOptions = {}): LoadedModel {
  const ckpt = readLlama2cCheckpoint(bytes, path);
  const weights = modelFromLlama2c(ckpt, path);
  const tokenizerPath = options.tokenizerPath ?? findTokenizer(path);
  // The llama2.c tokenizer file (or a tokenizer.json given with --tokenizer).
  const tok = options.tokenizerPath === undefined ? llama2cTokenizerFile(tokenizerPath, weights.config.vocabSize) : tokenizerFromPath(tokenizerPath, weights.config);
  return {
    weights,
    tokenizer: tok.tokenizer,
    tokenizerInfo: tok,
    tokenizerBytes: tok.embed.bytes,
    source: {
      path,
      format: ckpt.layout,
      fileBytes: bytes.byteLength,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      tokenizerPath,
      files: [
        { path, role: 'weights', bytes: bytes.byteLength },
        ...tok.files.map((f) => ({ path: f, role: 'tokenizer' as const, bytes: statSync(f).size })),
      ],
    },
    description: null,
    dtypes: { [ckpt.layout === 'v2-q8_0' ? 'Q8_0+F32' : 'F32']: expectedTensorCount(weights) },
  };
}

function expectedTensorCount(w: ModelWeights): number {
  return w.tensors.size;
}

/** A model's weights without a tokenizer (a reference model scores the evaluated model's tokens). */
export interface LoadedWeights {
  weights: ModelWeights;
  source: { path: string; format: ModelFormat; fileBytes: number; sha256: string };
}

/** Load a float model's weights only (no tokenizer is looked for), in any format `loadModel` reads. */
export function loadCheckpointWeights(path: string): LoadedWeights {
  const kind = detectModelPath(path);
  if (kind === 'llama2c') {
    const bytes = readFileChecked(path, 'checkpoint');
    const ckpt = readLlama2cCheckpoint(bytes, path);
    return {
      weights: modelFromLlama2c(ckpt, path),
      source: { path, format: ckpt.layout, fileBytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') },
    };
  }
  if (kind === 'usk') {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'this is a .usk bundle, not a float model', { source: path, hint: 'open bundles with loadBundle' });
  }
  const src = openModelSource(path, { noTokenizer: true });
  try {
    const m = loadFromSource(src);
    return { weights: m.weights, source: { path: m.source.path, format: m.source.format, fileBytes: m.source.fileBytes, sha256: m.source.sha256 } };
  } finally {
    src.close();
  }
}
