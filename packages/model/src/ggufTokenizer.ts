import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type GgufHeader, getGgufArray, getGgufNumber, getGgufString } from '@ultrasketch/format';
import { HfTokenizer } from './hfTokenizer.js';
import { type TextTokenizer, Tokenizer } from './tokenizer.js';

/**
 * The vocabulary a GGUF file embeds (`tokenizer.ggml.*`), as a tokenizer.
 *
 * `llama` (SentencePiece BPE with scores, llama.cpp's SPM): the same algorithm as llama2.c's tokenizer — dummy
 * prefix, characters looked up whole, highest-score adjacent pair merged first, `<0xXX>` byte fallback — so the
 * llama2.c `Tokenizer` runs it, with each piece mapped as llama2.c's exporter maps SentencePiece's: '▁' → ' ',
 * byte pieces kept as `<0xXX>`, control tokens wrapped in newlines ("\n<s>\n": never matched by text, as in
 * llama.cpp without special-token parsing). That class fixes BOS = 1, EOS = 2 and byte b at id b + 3 (every
 * Llama 1/2, Mistral and TinyLlama vocabulary); a vocabulary laid out otherwise, one without the dummy prefix,
 * or one with user-defined tokens (llama.cpp matches those whole, before the merges) is refused as UNSUPPORTED.
 *
 * `gpt2` (byte-level BPE with a merge list: Llama 3, Qwen2, SmolLM, ...): a tokenizer.json-shaped object is built
 * in memory and run by `@huggingface/tokenizers`. The pre-tokenizer is what `tokenizer.ggml.pre` names; only the
 * ones whose splitting rule is known here are accepted (gpt2, llama-bpe, qwen2), others are UNSUPPORTED naming it.
 */

/** The WHATWG TextEncoder exists in every runtime we target; its types live in lib.dom/@types/node, which this package does not compile against. */
declare const TextEncoder: new () => { encode(input: string): Uint8Array };

const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

function unsupported(problem: string, source: string, hint?: string): never {
  throw new UltraSketchError(ErrorCodes.UNSUPPORTED, problem, { source, hint: hint ?? 'use the model\'s tokenizer.json or a llama2.c tokenizer file instead' });
}

function stringArray(header: GgufHeader, key: string, source: string, n?: number): string[] {
  const a = getGgufArray(header, key, source);
  if (!a) throw new UltraSketchError(ErrorCodes.BAD_HEADER, `${key} is missing`, { source, hint: 'the GGUF vocabulary is incomplete; re-convert the model' });
  if (a.elementType !== 'string') throw new UltraSketchError(ErrorCodes.BAD_HEADER, `${key} holds ${a.elementType} values, expected strings`, { source });
  const values = a.values as string[];
  if (n !== undefined && values.length !== n) {
    throw new UltraSketchError(ErrorCodes.BAD_HEADER, `${key} has ${values.length} entries, tokenizer.ggml.tokens has ${n}`, { source });
  }
  return values;
}

function numberArray(header: GgufHeader, key: string, source: string, n: number): ArrayLike<number> | undefined {
  const a = getGgufArray(header, key, source);
  if (!a) return undefined;
  const v = a.values;
  const numeric = v instanceof Float32Array || v instanceof Float64Array || v instanceof Int32Array || v instanceof Uint32Array || v instanceof Int8Array || v instanceof Uint8Array || v instanceof Int16Array || v instanceof Uint16Array;
  if (!numeric) throw new UltraSketchError(ErrorCodes.BAD_HEADER, `${key} holds ${a.elementType} values, expected numbers`, { source });
  if (v.length !== n) throw new UltraSketchError(ErrorCodes.BAD_HEADER, `${key} has ${v.length} entries, tokenizer.ggml.tokens has ${n}`, { source });
  return v;
}

function flag(header: GgufHeader, key: string, source: string): boolean | undefined {
  const e = header.metadata.get(key);
  if (!e) return undefined;
  if (typeof e.value !== 'boolean') throw new UltraSketchError(ErrorCodes.BAD_HEADER, `${key} is a ${e.type}, expected a bool`, { source });
  return e.value;
}

function tokenId(header: GgufHeader, key: string, source: string): number | undefined {
  const v = getGgufNumber(header, key, source);
  if (v !== undefined && (!Number.isInteger(v) || v < 0)) throw new UltraSketchError(ErrorCodes.BAD_HEADER, `${key} is ${v}, expected a token id`, { source });
  return v;
}

/** The tokenizer of a GGUF's embedded vocabulary (`llama` or `gpt2`); see the comment at the top of this file. */
export function tokenizerFromGguf(header: GgufHeader, source = '<gguf>'): TextTokenizer {
  const model = getGgufString(header, 'tokenizer.ggml.model', source);
  if (model === undefined) {
    throw new UltraSketchError(ErrorCodes.BAD_HEADER, 'the GGUF has no embedded vocabulary (no tokenizer.ggml.model)', {
      source,
      hint: "pass the model's tokenizer.json (or a llama2.c tokenizer file) beside it",
    });
  }
  if (model === 'llama') return ggufLlamaTokenizer(header, source);
  if (model === 'gpt2') return ggufGpt2Tokenizer(header, source);
  unsupported(`GGUF vocabulary type ${JSON.stringify(model)} is not supported (llama and gpt2 are)`, source);
}

function ggufLlamaTokenizer(header: GgufHeader, source: string): Tokenizer {
  const tokens = stringArray(header, 'tokenizer.ggml.tokens', source);
  const n = tokens.length;
  const scores = numberArray(header, 'tokenizer.ggml.scores', source, n);
  if (!scores) throw new UltraSketchError(ErrorCodes.BAD_HEADER, 'tokenizer.ggml.scores is missing (a llama vocabulary merges by score)', { source });
  const types = numberArray(header, 'tokenizer.ggml.token_type', source, n);
  const type = (i: number) => (types ? types[i]! : TOKEN_TYPE.NORMAL);
  const bos = tokenId(header, 'tokenizer.ggml.bos_token_id', source) ?? 1;
  const eos = tokenId(header, 'tokenizer.ggml.eos_token_id', source) ?? 2;
  if (bos !== 1 || eos !== 2) {
    unsupported(`the vocabulary's BOS/EOS are ids ${bos}/${eos}; the SentencePiece tokenizer here has them at 1/2`, source);
  }
  if (flag(header, 'tokenizer.ggml.add_space_prefix', source) === false) {
    unsupported('the vocabulary is used without the dummy space prefix (tokenizer.ggml.add_space_prefix false)', source);
  }
  if (n < 259) unsupported(`the vocabulary has ${n} tokens, fewer than <unk>, <s>, </s> and the 256 byte tokens`, source);
  for (let b = 0; b < 256; b++) {
    const want = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
    if (tokens[b + 3] !== want || (types && type(b + 3) !== TOKEN_TYPE.BYTE)) {
      unsupported(`token ${b + 3} is ${JSON.stringify(tokens[b + 3])}, not the byte token ${want}: the byte tokens are not at ids 3..258`, source);
    }
  }
  const encoder = new TextEncoder();
  const pieces: Uint8Array[] = [];
  let maxLen = 0;
  for (let i = 0; i < n; i++) {
    const t = tokens[i]!;
    const ty = type(i);
    if (ty === TOKEN_TYPE.USER_DEFINED) {
      unsupported(`token ${i} ${JSON.stringify(t)} is user-defined (llama.cpp matches such tokens whole, before merging)`, source);
    }
    if (t.includes(' ')) unsupported(`token ${i} ${JSON.stringify(t)} contains a plain space, which '▁' pieces cannot be told apart from`, source);
    const text = ty === TOKEN_TYPE.CONTROL ? `\n${t}\n` : t.replaceAll('\u2581', ' ');
    const bytes = encoder.encode(text);
    pieces.push(bytes);
    maxLen = Math.max(maxLen, bytes.length);
  }
  return new Tokenizer(pieces, Float32Array.from(scores), maxLen, source, 'gguf-llama');
}

/** Pre-tokenizer splitting rules by `tokenizer.ggml.pre`, as the models' own tokenizer.json files state them. */
const BPE_PRE: Record<string, { preTokenizer: unknown; normalizer: unknown; ignoreMerges: boolean }> = {
  // GPT-2's rule is the ByteLevel pre-tokenizer's built-in one.
  gpt2: { preTokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }, normalizer: null, ignoreMerges: false },
  'llama-bpe': {
    preTokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
          behavior: 'Isolated',
          invert: false,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    normalizer: null,
    // Llama 3's tokenizer.json sets ignore_merges: a word that is itself in the vocabulary is one token.
    ignoreMerges: true,
  },
  qwen2: {
    preTokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
          behavior: 'Isolated',
          invert: false,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
      ],
    },
    normalizer: { type: 'NFC' },
    ignoreMerges: false,
  },
};

/**
 * The tokenizer.json-shaped object a GGUF `gpt2` vocabulary is run as (a bundle can embed it as a tokenizer.json),
 * with the BOS/EOS ids llama.cpp would use (BOS only where `tokenizer.ggml.add_bos_token` says so).
 */
export function ggufGpt2TokenizerJson(header: GgufHeader, source = '<gguf>'): { json: Record<string, unknown>; bosId: number | null; eosId: number | null } {
  const tokens = stringArray(header, 'tokenizer.ggml.tokens', source);
  const n = tokens.length;
  const merges = stringArray(header, 'tokenizer.ggml.merges', source);
  const types = numberArray(header, 'tokenizer.ggml.token_type', source, n);
  const pre = getGgufString(header, 'tokenizer.ggml.pre', source) ?? 'gpt2';
  const rule = BPE_PRE[pre];
  if (!rule) {
    unsupported(`GGUF gpt2 vocabulary with pre-tokenizer ${JSON.stringify(pre)} is not supported (gpt2, llama-bpe, qwen2 are)`, source, "pass the model's tokenizer.json beside it: it states its own pre-tokenizer");
  }
  const vocab: Record<string, number> = {};
  const added: unknown[] = [];
  for (let i = 0; i < n; i++) {
    const t = tokens[i]!;
    if (Object.hasOwn(vocab, t)) throw new UltraSketchError(ErrorCodes.BAD_HEADER, `token ${JSON.stringify(t)} appears twice (ids ${vocab[t]} and ${i})`, { source });
    vocab[t] = i;
    const ty = types ? types[i]! : TOKEN_TYPE.NORMAL;
    // Control and user-defined tokens are matched whole before BPE, as llama.cpp and tokenizer.json's added_tokens do.
    if (ty === TOKEN_TYPE.CONTROL || ty === TOKEN_TYPE.USER_DEFINED) {
      added.push({ id: i, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: ty === TOKEN_TYPE.CONTROL });
    }
  }
  const json = {
    version: '1.0',
    added_tokens: added,
    normalizer: rule.normalizer,
    pre_tokenizer: rule.preTokenizer,
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: rule.ignoreMerges, vocab, merges },
  };
  const bos = tokenId(header, 'tokenizer.ggml.bos_token_id', source);
  const eos = tokenId(header, 'tokenizer.ggml.eos_token_id', source);
  for (const [what, id] of [['bos', bos], ['eos', eos]] as const) {
    if (id !== undefined && id >= n) throw new UltraSketchError(ErrorCodes.BAD_HEADER, `tokenizer.ggml.${what}_token_id ${id} is outside the ${n} tokens`, { source });
  }
  // llama.cpp adds BOS only where the file says so (Llama 3 yes, Qwen2 no).
  const addBos = flag(header, 'tokenizer.ggml.add_bos_token', source) ?? false;
  return { json, bosId: bos !== undefined && addBos ? bos : null, eosId: eos ?? null };
}

function ggufGpt2Tokenizer(header: GgufHeader, source: string): HfTokenizer {
  const { json, bosId, eosId } = ggufGpt2TokenizerJson(header, source);
  return new HfTokenizer(json, { bosId, eosId, source, kind: 'gguf-gpt2' });
}
