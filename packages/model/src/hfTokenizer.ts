import { ErrorCodes, UltraSketchError, describeValue } from '@ultrasketch/core';
import { LIMITS } from '@ultrasketch/format';
import { Tokenizer as HfLibraryTokenizer } from '@huggingface/tokenizers';
import type { DecodeOptions, EncodeOptions, TextTokenizer, TokenStreamDecoder } from './tokenizer.js';

/**
 * A Hugging Face `tokenizer.json` (with its `tokenizer_config.json`), run by `@huggingface/tokenizers` — Hugging
 * Face's own pure-JavaScript port of its tokenizers (no native code, no network: it works offline and in the
 * browser) — behind the interface the rest of the code uses (`TextTokenizer`).
 *
 * Encoding: the text through the library without its post-processor's special tokens, then BOS/EOS added as asked,
 * so `encode(text, {bos: true})` means the same for every vocabulary (the llama2.c protocol: BOS per document, no
 * EOS) whatever template the file's post-processor would apply.
 *
 * Decoding: special tokens (BOS, EOS, chat markers) give no text, as with the llama2.c tokenizer. A sequence is
 * taken to start after `prevToken` (default BOS): the file's decoder may strip the space the normalizer prepended
 * at the start of a text (Llama's "Strip" decoder), so a continuation is decoded with its previous token as
 * context and only the new text kept.
 */

export interface HfTokenizerOptions {
  /** The parsed `tokenizer_config.json` (bos/eos tokens, cleanup and legacy settings); `{}` when absent. */
  config?: unknown;
  /** BOS id, overriding the config (e.g. config.json's `bos_token_id`); null: none. */
  bosId?: number | null;
  /** EOS id, overriding the config; null: none. */
  eosId?: number | null;
  /** Names the file in errors. */
  source?: string;
  /** What kind of source the JSON came from (a GGUF `gpt2` vocabulary builds one in memory). */
  kind?: 'hf-json' | 'gguf-gpt2';
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A token given in tokenizer_config.json as a string or as an AddedToken object ({content: ...}). */
function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return null;
}

export class HfTokenizer implements TextTokenizer {
  readonly kind: 'hf-json' | 'gguf-gpt2';
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  private readonly lib: HfLibraryTokenizer;
  private readonly special: Set<number>;
  private readonly source: string;

  constructor(tokenizerJson: unknown, options: HfTokenizerOptions = {}) {
    const source = options.source ?? 'tokenizer.json';
    this.source = source;
    this.kind = options.kind ?? 'hf-json';
    if (!isObject(tokenizerJson) || !isObject(tokenizerJson.model)) {
      throw new UltraSketchError(ErrorCodes.BAD_HEADER, 'tokenizer.json is not an object with a "model"', {
        source,
        hint: "use the tokenizer.json that came with the model (Hugging Face tokenizers' format)",
      });
    }
    const model = tokenizerJson.model;
    if (model.type !== 'BPE' && model.type !== undefined) {
      // The Llama family's tokenizers are all BPE (SentencePiece-style with byte fallback, or byte-level);
      // WordPiece/Unigram files belong to other model families.
      throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `tokenizer.json model type ${JSON.stringify(model.type)} is not supported (BPE only)`, {
        source,
        hint: 'the Llama-family models use BPE tokenizers; this tokenizer belongs to another kind of model',
      });
    }
    checkTokenIds(tokenizerJson, source);
    const config = options.config ?? {};
    if (!isObject(config)) {
      throw new UltraSketchError(ErrorCodes.BAD_HEADER, 'tokenizer_config.json is not a JSON object', { source });
    }
    try {
      this.lib = new HfLibraryTokenizer(tokenizerJson, config);
    } catch (err) {
      throw new UltraSketchError(ErrorCodes.BAD_HEADER, `tokenizer.json could not be loaded: ${err instanceof Error ? err.message : String(err)}`, {
        source,
        hint: "use the tokenizer.json that came with the model (Hugging Face tokenizers' format)",
        cause: err,
      });
    }
    let max = -1;
    for (const id of this.libraryCall('reading its vocabulary', () => this.lib.get_vocab(true)).values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    this.special = new Set(this.libraryCall('reading its added tokens', () => this.lib.get_added_tokens_decoder()).keys());
    // Fail at load, not in the middle of a generation: one probe text through every stage the file defines.
    this.libraryCall('encoding a probe text', () => this.lib.decode(this.lib.encode('Once upon a time, 42 dogs!\n', { add_special_tokens: true }).ids));
    const resolve = (given: number | null | undefined, key: 'bos_token' | 'eos_token'): number => {
      if (given === null) return -1;
      if (given !== undefined) {
        if (!Number.isInteger(given) || given < 0 || given >= this.vocabSize) {
          throw new UltraSketchError(ErrorCodes.TOKENIZER_MISMATCH, `${key} id ${given} is outside the tokenizer's 0..${this.vocabSize - 1}`, { source });
        }
        return given;
      }
      const text = tokenText(config[key]);
      if (text === null) return -1;
      const id = this.libraryCall('looking up a special token', () => this.lib.token_to_id(text));
      if (id === undefined) {
        throw new UltraSketchError(ErrorCodes.TOKENIZER_MISMATCH, `tokenizer_config.json's ${key} ${JSON.stringify(text)} is not in tokenizer.json's vocabulary`, {
          source,
          hint: 'tokenizer.json and tokenizer_config.json come from different models',
        });
      }
      return id;
    };
    this.bosId = resolve(options.bosId, 'bos_token');
    this.eosId = resolve(options.eosId, 'eos_token');
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids = this.libraryCall('encoding', () => this.lib.encode(text, { add_special_tokens: false }).ids);
    if (opts.bos && this.bosId >= 0) ids.unshift(this.bosId);
    if (opts.eos && this.eosId >= 0) ids.push(this.eosId);
    return ids;
  }

  decode(tokens: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const ids = Array.from(tokens);
    for (const id of ids) this.checkId(id);
    const prev = opts.prevToken ?? this.bosId;
    if (prev < 0 || this.special.has(prev)) return this.raw(ids);
    this.checkId(prev);
    // A continuation: decode with the previous token as context and keep what the new tokens add.
    const before = this.raw([prev]);
    const all = this.raw([prev, ...ids]);
    return all.startsWith(before) ? all.slice(before.length) : this.raw(ids);
  }

  createStreamDecoder(opts: DecodeOptions = {}): TokenStreamDecoder {
    return new HfStreamDecoder(this, opts);
  }

  /** The library's decoding of ids as a text of its own (special tokens skipped). */
  raw(ids: number[]): string {
    return this.libraryCall('decoding', () => this.lib.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }));
  }

  /**
   * The library builds parts of a tokenizer.json (normalizer, pre-tokenizer, post-processor, decoder) lazily
   * and trusts their shapes, so a damaged but well-formed file can fail only when text first goes through it,
   * with a TypeError from deep inside the library. Such failures are the file's fault: a typed error naming it.
   */
  private libraryCall<T>(doing: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof UltraSketchError) throw err;
      throw new UltraSketchError(ErrorCodes.BAD_HEADER, `tokenizer.json failed while ${doing}: ${err instanceof Error ? err.message : String(err)}`, {
        source: this.source,
        hint: "the file is damaged or not in Hugging Face tokenizers' format; use the tokenizer.json that came with the model",
        cause: err,
      });
    }
  }

  /** The token string of an id (the vocabulary's own spelling, e.g. "▁Once"), or undefined. */
  piece(id: number): string | undefined {
    return this.lib.id_to_token(id);
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `token id ${id} is outside 0..${this.vocabSize - 1}`, {
        source: this.source,
        hint: 'the token ids do not belong to this tokenizer',
      });
    }
  }
}

/**
 * Incremental decoding for a tokenizer whose decoder works on whole sequences: each push decodes a short window
 * of recent tokens twice (without and with the new token) and returns what the new token added; a window whose
 * text ends in U+FFFD (an unfinished UTF-8 character spread over byte tokens) is held back until it completes.
 * Only the window is decoded, so a long generation costs O(1) per token. The concatenation of every push and the
 * final flush equals `decode(tokens)`.
 */
class HfStreamDecoder implements TokenStreamDecoder {
  private tokens: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;

  constructor(
    private readonly tok: HfTokenizer,
    private readonly opts: DecodeOptions,
  ) {}

  push(token: number): string {
    this.tokens.push(token);
    const prefix = this.window(this.prefixOffset, this.readOffset);
    const text = this.window(this.prefixOffset, this.tokens.length);
    if (text.length <= prefix.length || text.endsWith('\ufffd') || !text.startsWith(prefix)) return '';
    this.prefixOffset = this.readOffset;
    this.readOffset = this.tokens.length;
    this.compact();
    return text.slice(prefix.length);
  }

  flush(): string {
    const prefix = this.window(this.prefixOffset, this.readOffset);
    const text = this.window(this.prefixOffset, this.tokens.length);
    this.tokens = [];
    this.prefixOffset = 0;
    this.readOffset = 0;
    this.started = false;
    return text.startsWith(prefix) ? text.slice(prefix.length) : text;
  }

  /** Whether tokens before prefixOffset were dropped (then the window no longer starts the sequence). */
  private started = false;

  private window(from: number, to: number): string {
    const ids = this.tokens.slice(from, to);
    if (ids.length === 0) return '';
    return from === 0 && !this.started ? this.tok.decode(ids, this.opts) : this.tok.raw(ids);
  }

  /** Drop tokens no window will read again. */
  private compact(): void {
    if (this.prefixOffset === 0) return;
    this.tokens = this.tokens.slice(this.prefixOffset);
    this.readOffset -= this.prefixOffset;
    this.prefixOffset = 0;
    this.started = true;
  }
}

/**
 * Every id in the vocabulary and the added tokens is an integer in 0..LIMITS.maxVocab − 1, checked before the
 * library sees the file: it sizes tables by the largest id, so one hostile id (5·10^8) made loading take a
 * minute; a real vocabulary (Llama 3: 128,256; Qwen: 151,936) is far below the limit.
 */
function checkTokenIds(json: Record<string, unknown>, source: string): void {
  const bad = (where: string, id: unknown) =>
    new UltraSketchError(ErrorCodes.BAD_HEADER, `tokenizer.json ${where} has id ${describeValue(id)}, not an integer in 0..${LIMITS.maxVocab - 1}`, {
      source,
      hint: "the file is damaged or not in Hugging Face tokenizers' format; use the tokenizer.json that came with the model",
    });
  const ok = (id: unknown) => Number.isInteger(id) && (id as number) >= 0 && (id as number) < LIMITS.maxVocab;
  const vocab = (json.model as Record<string, unknown>).vocab;
  if (isObject(vocab)) for (const [piece, id] of Object.entries(vocab)) if (!ok(id)) throw bad(`model.vocab[${describeValue(piece, 40)}]`, id);
  if (Array.isArray(json.added_tokens)) {
    for (const t of json.added_tokens) if (isObject(t) && !ok(t.id)) throw bad('added_tokens', t.id);
  }
}
