import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import {
  type Bundle,
  type BundleTokenizer,
  type GgufHeader,
  LIMITS,
  USK_HF_TOKENIZER_TENSOR,
  USK_TOKENIZER_TENSOR,
  readLlama2cTokenizer,
  scanJson,
} from '@ultrasketch/format';
import { HfTokenizer, type ModelConfig, type TextTokenizer, Tokenizer, ggufGpt2TokenizerJson, tokenizerFromGguf } from '@ultrasketch/model';

/**
 * Tokenizers as the pipeline uses them: whichever one a model came with (a llama2.c tokenizer file, a Hugging Face
 * tokenizer.json with its tokenizer_config.json, a GGUF's embedded `llama` or `gpt2` vocabulary), behind the
 * model package's `TextTokenizer`, plus what a bundle embeds so that it needs nothing else to run, and the ids
 * generation stops at.
 */

export interface LoadedTokenizer {
  tokenizer: TextTokenizer;
  /** What a bundle stores (docs/bundle.md, "Tokenizer"). */
  embed: BundleTokenizer;
  /** The files it was read from (none for a GGUF's embedded vocabulary). */
  files: string[];
  /**
   * The ids generation stops at. llama2.c models: BOS only (run.c ends a story at the next BOS and ignores EOS).
   * Others: the end-of-sequence ids the model's files name (config.json, generation_config.json, the tokenizer),
   * and BOS where the vocabulary has one (a generated BOS starts a new document, as in run.c).
   */
  stopIds: number[];
  /** Where it came from, for reports: 'llama2c', 'hf-json' (tokenizer.json), 'gguf-llama', 'gguf-gpt2'. */
  kind: TextTokenizer['kind'];
  /** A short description for `inspect` and reports. */
  description: string;
}

/** Largest tokenizer.json / tokenizer_config.json accepted (Llama 3's tokenizer.json is 9 MB; Gemma's 33 MB). */
export const MAX_TOKENIZER_JSON_BYTES = 64 * 1024 * 1024;
/** Largest config.json / generation_config.json / index accepted (real ones are a few KB; an index ~100 KB). */
export const MAX_CONFIG_JSON_BYTES = 16 * 1024 * 1024;

/**
 * Parse a JSON file the way the format package's readers do: strict UTF-8, valid JSON, no key twice at any depth
 * (JSON.parse keeps the last of two equal keys, other tools the first: the file would mean two things), nesting
 * within LIMITS.maxJsonDepth. Each failure is E_BAD_HEADER naming the file and the key.
 */
export function parseJsonFile(bytes: Uint8Array, path: string): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw new UltraSketchError(ErrorCodes.BAD_HEADER, 'the file is not valid UTF-8', { source: path, hint: 'it is not the JSON file it is named after; re-download it', cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UltraSketchError(ErrorCodes.BAD_HEADER, `the file is not valid JSON: ${(err as Error).message}`, {
      source: path,
      hint: 'the file is truncated or corrupt; re-download it',
      cause: err,
    });
  }
  const problem = scanJson(text, LIMITS.maxJsonDepth);
  if (problem) {
    const where = problem.path.length === 0 ? '' : ` (in ${problem.path.map((p) => JSON.stringify(p)).join(' → ')})`;
    if (problem.kind === 'duplicate') {
      throw new UltraSketchError(ErrorCodes.BAD_HEADER, `the key ${JSON.stringify(problem.key)} appears twice${where}`, {
        source: path,
        hint: 'JSON readers disagree on which of two equal keys wins, so the file is ambiguous; keep each key once',
      });
    }
    throw new UltraSketchError(ErrorCodes.LIMIT_EXCEEDED, `the JSON nests deeper than the limit of ${LIMITS.maxJsonDepth} levels${where}`, { source: path });
  }
  return value;
}

/** @internal */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** @internal */
export function unique(ids: number[]): number[] {
  return [...new Set(ids)];
}

/** A tokenizer with fewer ids than the model's vocabulary is fine (Qwen pads its embedding); more is not. */
export function checkVocabulary(tok: TextTokenizer, config: ModelConfig, source: string): void {
  if (tok.vocabSize > config.vocabSize) {
    throw new UltraSketchError(
      ErrorCodes.TOKENIZER_MISMATCH,
      `the tokenizer has ${tok.vocabSize} token ids but the model's vocabulary has ${config.vocabSize}`,
      { source, hint: 'use the tokenizer that came with this model (--tokenizer FILE)' },
    );
  }
}

/** The llama2.c tokenizer file format (llama2cTokenizer.ts reads it): i32 max length, then per token f32 score, i32 length, bytes. */
export function llama2cTokenizerBytes(tok: Tokenizer): Uint8Array {
  let size = 4;
  for (let i = 0; i < tok.vocabSize; i++) size += 8 + tok.pieceBytes(i).byteLength;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setInt32(0, tok.maxTokenLength, true);
  let o = 4;
  for (let i = 0; i < tok.vocabSize; i++) {
    const piece = tok.pieceBytes(i);
    view.setFloat32(o, tok.score(i), true);
    view.setInt32(o + 4, piece.byteLength, true);
    out.set(piece, o + 8);
    o += 8 + piece.byteLength;
  }
  return out;
}

/**
 * The vocabulary a GGUF embeds: `llama` runs on the llama2.c tokenizer and is stored in bundles as a llama2.c
 * tokenizer file (kind gguf-llama); `gpt2` runs as (and is stored as) the tokenizer.json it describes.
 */
export function ggufTokenizer(header: GgufHeader, config: ModelConfig, source: string, eosIds: readonly number[] = []): LoadedTokenizer {
  const tok = tokenizerFromGguf(header, source);
  checkVocabulary(tok, config, source);
  const eos = unique([...eosIds, ...(tok.eosId >= 0 ? [tok.eosId] : [])]).filter((id) => id < config.vocabSize);
  const stopIds = unique([...(tok.bosId >= 0 ? [tok.bosId] : []), ...eos]);
  if (tok instanceof Tokenizer) {
    return {
      tokenizer: tok,
      embed: { kind: 'gguf-llama', bytes: llama2cTokenizerBytes(tok), bosId: tok.bosId, eosIds: eos },
      files: [],
      stopIds,
      kind: 'gguf-llama',
      description: `GGUF llama (SentencePiece) vocabulary, ${tok.vocabSize} tokens`,
    };
  }
  const { json } = ggufGpt2TokenizerJson(header, source);
  return {
    tokenizer: tok,
    embed: {
      kind: 'hf-json',
      bytes: new TextEncoder().encode(JSON.stringify(json)),
      bosId: tok.bosId >= 0 ? tok.bosId : null,
      eosIds: eos,
      origin: 'gguf-gpt2',
    },
    files: [],
    stopIds,
    kind: tok.kind,
    description: `GGUF gpt2 (byte-level BPE) vocabulary, ${tok.vocabSize} tokens`,
  };
}

const CONFIG_DISAGREES = "the bundle's model_config does not match its tensors: the header was damaged or edited; re-create the bundle";

/** The tokenizer a bundle embeds, for its config (an old bundle's `llama2c` kind exactly as before). */
export function bundleTokenizer(bundle: Bundle, config: ModelConfig, source: string): LoadedTokenizer {
  const t = bundle.tokenizer;
  const where = `${source} (${t.kind === 'hf-json' ? USK_HF_TOKENIZER_TENSOR : USK_TOKENIZER_TENSOR})`;
  if (t.kind === 'llama2c' || t.kind === 'gguf-llama') {
    let f;
    try {
      f = readLlama2cTokenizer(t.bytes, config.vocabSize, where);
    } catch (err) {
      // There is no --tokenizer to fix for a bundle: a count that disagrees is the bundle's own inconsistency.
      if (err instanceof UltraSketchError && err.code === ErrorCodes.TOKENIZER_MISMATCH) {
        throw new UltraSketchError(
          ErrorCodes.TOKENIZER_MISMATCH,
          `model_config vocabSize = ${config.vocabSize} disagrees with the embedded tokenizer (${USK_TOKENIZER_TENSOR}): ${err.problem}`,
          { source, hint: CONFIG_DISAGREES, cause: err },
        );
      }
      throw err;
    }
    const tokenizer = new Tokenizer(f.pieces, f.scores, f.maxTokenLength, source, t.kind);
    const eos = t.kind === 'gguf-llama' ? (t.eosIds ?? []) : [];
    return {
      tokenizer,
      embed: t,
      files: [],
      stopIds: t.kind === 'llama2c' ? [tokenizer.bosId] : unique([tokenizer.bosId, ...eos]),
      kind: t.kind,
      description: t.kind === 'llama2c' ? `embedded llama2.c tokenizer (${config.vocabSize} tokens)` : `embedded GGUF llama vocabulary (${config.vocabSize} tokens)`,
    };
  }
  const json = parseJsonFile(t.bytes, where);
  const tokConfig = t.configBytes === undefined ? {} : parseJsonFile(t.configBytes, `${source} (tokenizer_config.json)`);
  if (!isObject(tokConfig)) throw new UltraSketchError(ErrorCodes.BAD_HEADER, 'the embedded tokenizer_config.json is not a JSON object', { source });
  const eos = t.eosIds ?? [];
  for (const id of [...eos, ...(t.bosId === null || t.bosId === undefined ? [] : [t.bosId])]) {
    if (id >= config.vocabSize) {
      throw new UltraSketchError(ErrorCodes.BAD_HEADER, `metadata "tokenizer" ${eos.includes(id) ? 'eosIds' : 'bosId'} holds ${id}, outside the model's vocabulary of ${config.vocabSize}`, {
        source,
        hint: CONFIG_DISAGREES,
      });
    }
  }
  const tokenizer = new HfTokenizer(json, {
    config: tokConfig,
    bosId: t.bosId ?? null,
    eosId: eos.length > 0 ? eos[0]! : null,
    source: where,
    kind: t.origin === 'gguf-gpt2' ? 'gguf-gpt2' : 'hf-json',
  });
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new UltraSketchError(
      ErrorCodes.TOKENIZER_MISMATCH,
      `model_config vocabSize = ${config.vocabSize} disagrees with the embedded tokenizer (${USK_HF_TOKENIZER_TENSOR}): it has ${tokenizer.vocabSize} token ids`,
      { source, hint: CONFIG_DISAGREES },
    );
  }
  return {
    tokenizer,
    embed: t,
    files: [],
    stopIds: unique([...(tokenizer.bosId >= 0 ? [tokenizer.bosId] : []), ...eos]),
    kind: tokenizer.kind,
    description: `embedded ${t.origin === 'gguf-gpt2' ? 'GGUF gpt2 vocabulary' : 'tokenizer.json'} (${tokenizer.vocabSize} tokens)`,
  };
}
