import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type Llama2cLayout, readLlama2cCheckpoint, readLlama2cTokenizer } from '@ultrasketch/format';
import { type ModelWeights, Tokenizer, modelFromLlama2c } from '@ultrasketch/model';

/** A model loaded from disk, with where it came from. */
export interface LoadedModel {
  weights: ModelWeights;
  tokenizer: Tokenizer;
  /** The tokenizer file's raw bytes (a bundle embeds them, so it needs nothing else to run). */
  tokenizerBytes: Uint8Array;
  source: {
    path: string;
    format: Llama2cLayout;
    fileBytes: number;
    sha256: string;
    tokenizerPath: string;
  };
}

/** Read a whole file, turning "not there" and "is a directory" into typed errors that say what to do. */
export function readFileChecked(path: string, what: string, flag?: string): Uint8Array {
  if (!existsSync(path)) {
    throw new UltraSketchError(ErrorCodes.FILE_NOT_FOUND, `${what} not found`, {
      source: path,
      hint: flag ? `check the path, or pass another with ${flag}` : 'check the path',
    });
  }
  if (statSync(path).isDirectory()) {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `${what} is a directory, expected a file`, {
      source: path,
      hint: flag ? `pass the file itself with ${flag}` : 'pass the file itself',
    });
  }
  // A plain Uint8Array view, not the Buffer itself: Buffer#slice does not copy (Uint8Array#slice does), and
  // readers that copy a tensor with `.slice()` must not end up with a view of the whole file.
  const bytes = readFileSync(path);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Find the tokenizer for a llama2.c checkpoint when none was given: the `tok*.bin` or `tokenizer.bin`
 * next to it. With several candidates the user has to choose.
 */
export function findTokenizer(checkpointPath: string): string {
  const dir = dirname(checkpointPath);
  const candidates = readdirSync(dir)
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
  /** Tokenizer file; found next to the checkpoint when omitted. */
  tokenizerPath?: string;
}

/** Load a llama2.c checkpoint (legacy f32 or version-2 int8) and its tokenizer. */
export function loadModel(path: string, options: LoadOptions = {}): LoadedModel {
  return loadModelFromBytes(readFileChecked(path, 'checkpoint'), path, options);
}

/** `loadModel` for a checkpoint already read into memory (`path` names it and finds the tokenizer). */
export function loadModelFromBytes(bytes: Uint8Array, path: string, options: LoadOptions = {}): LoadedModel {
  const ckpt = readLlama2cCheckpoint(bytes, path);
  const weights = modelFromLlama2c(ckpt, path);
  const tokenizerPath = options.tokenizerPath ?? findTokenizer(path);
  const tokBytes = readFileChecked(tokenizerPath, 'tokenizer', '--tokenizer');
  const tokenizer = Tokenizer.fromLlama2c(readLlama2cTokenizer(tokBytes, weights.config.vocabSize, tokenizerPath));
  return {
    weights,
    tokenizer,
    tokenizerBytes: tokBytes,
    source: {
      path,
      format: ckpt.layout,
      fileBytes: bytes.byteLength,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      tokenizerPath,
    },
  };
}

/** A checkpoint's weights without a tokenizer (a reference model scores the evaluated model's tokens). */
export interface LoadedWeights {
  weights: ModelWeights;
  source: { path: string; format: Llama2cLayout; fileBytes: number; sha256: string };
}

/** Load a llama2.c checkpoint's weights only (no tokenizer is looked for). */
export function loadCheckpointWeights(path: string): LoadedWeights {
  const bytes = readFileChecked(path, 'checkpoint');
  const ckpt = readLlama2cCheckpoint(bytes, path);
  return {
    weights: modelFromLlama2c(ckpt, path),
    source: { path, format: ckpt.layout, fileBytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') },
  };
}
