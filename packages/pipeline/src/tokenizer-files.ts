import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { readLlama2cTokenizer } from '@ultrasketch/format';
import { HfTokenizer, type ModelConfig, Tokenizer } from '@ultrasketch/model';
import { readFileChecked } from './load.js';
import { type LoadedTokenizer, MAX_CONFIG_JSON_BYTES, MAX_TOKENIZER_JSON_BYTES, checkVocabulary, isObject, parseJsonFile, unique } from './tokenizers.js';

/**
 * Tokenizers read from files (Node only): a llama2.c tokenizer file, a tokenizer.json with its
 * tokenizer_config.json, either by --tokenizer path. Kept apart from tokenizers.ts, which a browser build
 * imports (a bundle's embedded tokenizer needs no file system).
 */

/** Read and parse a JSON file (strict, bounded in size). */
export function readJsonFile(path: string, what: string, maxBytes = MAX_CONFIG_JSON_BYTES, flag?: string): unknown {
  return parseJsonFile(readFileChecked(path, what, flag, { maxBytes }), path);
}

/** A llama2.c tokenizer file for a model with `vocabSize` ids (it must have exactly that many entries). */
export function llama2cTokenizerFile(path: string, vocabSize: number, flag = '--tokenizer'): LoadedTokenizer {
  const bytes = readFileChecked(path, 'tokenizer', flag);
  const tokenizer = Tokenizer.fromLlama2c(readLlama2cTokenizer(bytes, vocabSize, path), path);
  return {
    tokenizer,
    embed: { kind: 'llama2c', bytes },
    files: [path],
    stopIds: [tokenizer.bosId],
    kind: 'llama2c',
    description: `llama2.c tokenizer file ${path} (${vocabSize} tokens)`,
  };
}

export interface HfTokenizerFiles {
  /** tokenizer.json. */
  tokenizerJson: string;
  /** tokenizer_config.json, when there is one. */
  tokenizerConfig?: string;
}

/**
 * A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) for `config`. BOS is the tokenizer_config's
 * bos_token, unless it sets add_bos_token false (or names none: Qwen), so `encode(text, {bos: true})` adds what
 * the model's own tokenizer adds. `eosIds` are the model's end-of-sequence ids from config.json /
 * generation_config.json; the tokenizer's eos_token joins them.
 */
export function hfTokenizerFiles(files: HfTokenizerFiles, config: ModelConfig, eosIds: readonly number[] = []): LoadedTokenizer {
  const jsonBytes = readFileChecked(files.tokenizerJson, 'tokenizer.json', '--tokenizer', { maxBytes: MAX_TOKENIZER_JSON_BYTES });
  const json = parseJsonFile(jsonBytes, files.tokenizerJson);
  const configBytes = files.tokenizerConfig === undefined ? undefined : readFileChecked(files.tokenizerConfig, 'tokenizer_config.json', undefined, { maxBytes: MAX_TOKENIZER_JSON_BYTES });
  const tokConfig = configBytes === undefined ? {} : parseJsonFile(configBytes, files.tokenizerConfig!);
  if (!isObject(tokConfig)) {
    throw new UltraSketchError(ErrorCodes.BAD_HEADER, 'tokenizer_config.json is not a JSON object', { source: files.tokenizerConfig });
  }
  const noBos = tokConfig.add_bos_token === false;
  const tokenizer = new HfTokenizer(json, { config: tokConfig, ...(noBos ? { bosId: null } : {}), source: files.tokenizerJson });
  checkVocabulary(tokenizer, config, files.tokenizerJson);
  const eos = unique([...eosIds, ...(tokenizer.eosId >= 0 ? [tokenizer.eosId] : [])]).filter((id) => id < config.vocabSize);
  return {
    tokenizer,
    embed: {
      kind: 'hf-json',
      bytes: jsonBytes,
      ...(configBytes === undefined ? {} : { configBytes }),
      bosId: tokenizer.bosId >= 0 ? tokenizer.bosId : null,
      eosIds: eos,
      origin: 'tokenizer.json',
    },
    files: [files.tokenizerJson, ...(files.tokenizerConfig === undefined ? [] : [files.tokenizerConfig])],
    stopIds: unique([...(tokenizer.bosId >= 0 ? [tokenizer.bosId] : []), ...eos]),
    kind: 'hf-json',
    description: `tokenizer.json (${tokenizer.vocabSize} tokens, BOS ${tokenizer.bosId >= 0 ? tokenizer.bosId : 'none'}, EOS ${eos.length > 0 ? eos.join('/') : 'none'})`,
  };
}

/**
 * A tokenizer given with --tokenizer: a tokenizer.json (JSON: its tokenizer_config.json beside it is used when
 * present) or a llama2.c tokenizer file, told apart by content.
 */
export function tokenizerFromPath(path: string, config: ModelConfig, eosIds: readonly number[] = []): LoadedTokenizer {
  const head = readFileChecked(path, 'tokenizer', '--tokenizer', { maxBytes: MAX_TOKENIZER_JSON_BYTES });
  const first = head.find((b) => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09 && b !== 0xef && b !== 0xbb && b !== 0xbf);
  if (first === 0x7b) {
    const beside = join(dirname(path), 'tokenizer_config.json');
    return hfTokenizerFiles({ tokenizerJson: path, ...(isRegularFile(beside) ? { tokenizerConfig: beside } : {}) }, config, eosIds);
  }
  return llama2cTokenizerFile(path, config.vocabSize);
}

function isRegularFile(path: string): boolean {
  try {
    return existsSync(path) && statSync(path).isFile();
  } catch {
    return false;
  }
}
