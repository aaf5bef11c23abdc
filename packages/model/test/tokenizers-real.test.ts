import { readFileSync } from 'node:fs';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type GgufHeader, type GgufMetadataEntry, readGguf, readLlama2cTokenizer } from '@ultrasketch/format';
import { describe, expect, it } from 'vitest';
import { HfTokenizer, type TextTokenizer, Tokenizer, ggufGpt2TokenizerJson, tokenizerFromGguf } from '../src/index.js';
import { bytes, caught, shared } from './helpers.js';

/**
 * Issue 11 done-when 2: the Hugging Face tokenizer.json (through @huggingface/tokenizers) and the GGUF-embedded
 * `llama` vocabulary encode the first 50 evaluation documents exactly as the llama2.c tokenizer does; decoding
 * gives the text back, all at once and streamed. Plus GGUF `gpt2` vocabularies on a hand-built vocabulary, and
 * the refusals.
 */

const json = (p: string): unknown => JSON.parse(readFileSync(shared(p), 'utf8'));

/** The evaluation protocol's documents (reference/README.md): split on blank lines, trimmed, empty dropped. */
const DOCS = readFileSync(shared('data/tinystories/eval.txt'), 'utf8')
  .split('\n\n')
  .map((d) => d.replace(/^[ \n]+|[ \n]+$/g, ''))
  .filter((d) => d.length > 0)
  .slice(0, 50);

function streamed(tok: TextTokenizer, ids: number[]): string {
  const d = tok.createStreamDecoder();
  let out = '';
  for (const id of ids) out += d.push(id);
  return out + d.flush();
}

const MODELS = [
  { model: 'stories260K', tok: 'models/stories260K/tok512.bin', vocab: 512 },
  { model: 'stories3M', tok: 'models/stories3M/tok4096.bin', vocab: 4096 },
];

describe.each(MODELS)('$model: tokenizer.json and the GGUF vocabulary against llama2.c', ({ model, tok, vocab }) => {
  const llama2c = Tokenizer.fromLlama2c(readLlama2cTokenizer(bytes(tok), vocab));
  const expected = DOCS.map((d) => llama2c.encode(d, { bos: true }));
  const storyTokens = readFileSync(shared(`reference/${model}/story_tokens.txt`), 'utf8').trim().split('\n').map((l) => l.split(' ').map(Number));
  const hf = new HfTokenizer(json(`models/${model}/hf/tokenizer.json`), { config: json(`models/${model}/hf/tokenizer_config.json`), source: 'tokenizer.json' });
  const gguf = tokenizerFromGguf(readGguf(bytes(`models/${model}/gguf/${model}-f32.gguf`)));

  it('the documents are the real ones (50, and the first three encode as llama2.c wrote in story_tokens.txt)', () => {
    expect(DOCS).toHaveLength(50);
    expect(expected.slice(0, 3)).toEqual(storyTokens);
  });

  it.each([
    ['tokenizer.json', () => hf],
    ['GGUF llama vocabulary', () => gguf],
  ] as const)('%s: ids, BOS/EOS and vocabulary size as llama2.c', (_, get) => {
    const t = get();
    expect(t.vocabSize).toBe(vocab);
    expect(t.bosId).toBe(1);
    expect(t.eosId).toBe(2);
    const got = DOCS.map((d) => t.encode(d, { bos: true }));
    const differing = got.map((ids, i) => (JSON.stringify(ids) === JSON.stringify(expected[i]) ? -1 : i)).filter((i) => i >= 0);
    expect(differing).toEqual([]);
    expect(got.reduce((s, ids) => s + ids.length, 0)).toBe(expected.reduce((s, ids) => s + ids.length, 0));
    expect(t.encode('One day', { bos: true, eos: true })).toEqual(llama2c.encode('One day', { bos: true, eos: true }));
    expect(t.encode('')).toEqual([]);
  });

  it.each([
    ['tokenizer.json', () => hf],
    ['GGUF llama vocabulary', () => gguf],
  ] as const)('%s: decode and streamed decode give every document back', (_, get) => {
    const t = get();
    for (const [i, ids] of expected.entries()) {
      expect(t.decode(ids)).toBe(DOCS[i]);
      expect(streamed(t, ids)).toBe(DOCS[i]);
    }
  });

  it('tokenizer.json: byte-fallback characters and a continuation after a mid-sentence token decode as llama2.c does', () => {
    const text = 'Zoë saw a 🐉 — and “smiled”.';
    const ids = llama2c.encode(text, { bos: true });
    expect(hf.encode(text, { bos: true })).toEqual(ids);
    expect(hf.decode(ids)).toBe(text);
    expect(streamed(hf, ids)).toBe(text);
    // decoding the tail after a given previous token keeps its leading space, as llama2.c's decode does
    expect(hf.decode(ids.slice(3), { prevToken: ids[2]! })).toBe(llama2c.decode(ids.slice(3), { prevToken: ids[2]! }));
  });
});

describe('damaged tokenizer.json files found by fuzzing (bench/fuzz.mjs hf-tokenizer)', () => {
  const base = () => structuredClone(json('models/stories260K/hf/tokenizer.json')) as Record<string, any>;
  it('a post-processor part of the wrong type is a typed error at load, not a TypeError at the first encode', () => {
    const t = base();
    t.post_processor.single[0] = 0;
    const err = (() => {
      try {
        new HfTokenizer(t, { source: 'damaged.json' });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(UltraSketchError);
    expect((err as UltraSketchError).code).toBe(ErrorCodes.BAD_HEADER);
    expect((err as UltraSketchError).message).toMatch(/^damaged\.json: tokenizer\.json failed while encoding a probe text/);
  });
  it('an id far beyond any vocabulary is refused before the library sizes its tables by it', () => {
    const t = base();
    t.model.vocab['▁there'] = 568_302_773;
    expect(() => new HfTokenizer(t, { source: 'damaged.json' })).toThrow(/model\.vocab\["▁there"\] has id 568302773, not an integer in 0\.\.4194303/);
    const a = base();
    a.added_tokens[0].id = -1;
    expect(() => new HfTokenizer(a, { source: 'damaged.json' })).toThrow(/added_tokens has id -1/);
  });
});

describe('tokenizer refusals', () => {
  it('tokenizer.json that is not a BPE tokenizer object', () => {
    expect(caught(() => new HfTokenizer([])).code).toBe(ErrorCodes.BAD_HEADER);
    expect(caught(() => new HfTokenizer({ model: { type: 'WordPiece', vocab: {} } })).code).toBe(ErrorCodes.UNSUPPORTED);
  });

  it('a tokenizer_config.json whose BOS is not in the vocabulary', () => {
    const err = caught(() => new HfTokenizer(json('models/stories260K/hf/tokenizer.json'), { config: { bos_token: '<|begin_of_text|>' } }));
    expect(err.code).toBe(ErrorCodes.TOKENIZER_MISMATCH);
    expect(err.problem).toContain('<|begin_of_text|>');
  });

  it('ids outside the vocabulary are refused when decoding', () => {
    const hf = new HfTokenizer(json('models/stories260K/hf/tokenizer.json'));
    expect(caught(() => hf.decode([5, 512])).code).toBe(ErrorCodes.BAD_ARGUMENT);
  });
});

/** A GGUF header holding only tokenizer metadata (the vocabulary functions read nothing else). */
function vocabHeader(entries: Record<string, GgufMetadataEntry>): GgufHeader {
  return { version: 3, metadata: new Map(Object.entries(entries)), tensors: new Map(), alignment: 32, headerBytes: 0, dataOffset: 0, fileSize: 0 };
}
const str = (value: string): GgufMetadataEntry => ({ type: 'string', value });
const strings = (values: string[]): GgufMetadataEntry => ({ type: 'array', value: { elementType: 'string', values } });
const ints = (values: number[]): GgufMetadataEntry => ({ type: 'array', value: { elementType: 'int32', values: Int32Array.from(values) } });
const u32 = (value: number): GgufMetadataEntry => ({ type: 'uint32', value });
const bool = (value: boolean): GgufMetadataEntry => ({ type: 'bool', value });

describe('GGUF gpt2 (byte-level BPE) vocabularies', () => {
  // GPT-2's byte-to-character map: printable bytes stand for themselves; space (0x20) is 'Ġ' (U+0120).
  const letters = 'abcdehlortw'.split('');
  const tokens = ['<|end|>', ...letters, 'Ġ', 'he', 'll', 'hell', 'hello', 'Ġw', 'or', 'Ġwor', 'ld', 'Ġworld'];
  const merges = ['h e', 'l l', 'he ll', 'hell o', 'Ġ w', 'o r', 'Ġw or', 'l d', 'Ġwor ld'];
  const base = {
    'tokenizer.ggml.model': str('gpt2'),
    'tokenizer.ggml.tokens': strings(tokens),
    'tokenizer.ggml.merges': strings(merges),
    'tokenizer.ggml.token_type': ints(tokens.map((_, i) => (i === 0 ? 3 : 1))),
    'tokenizer.ggml.eos_token_id': u32(0),
    'tokenizer.ggml.bos_token_id': u32(0),
  };
  const id = (t: string) => tokens.indexOf(t);

  it('merges apply in rank order; special tokens match whole; decode gives the text back', () => {
    for (const pre of ['gpt2', 'llama-bpe', 'qwen2']) {
      const t = tokenizerFromGguf(vocabHeader({ ...base, 'tokenizer.ggml.pre': str(pre) }));
      expect(t.kind).toBe('gguf-gpt2');
      expect(t.encode('hello world')).toEqual([id('hello'), id('Ġworld')]);
      expect(t.encode('hello world<|end|>')).toEqual([id('hello'), id('Ġworld'), 0]);
      expect(t.encode('held')).toEqual([id('he'), id('ld')]); // 'h e' (rank 0) and 'l d' (rank 7); no 'he l' merge
      expect(t.encode('hell')).toEqual([id('hell')]); // 'h e', then 'l l', then 'he ll'
      expect(t.encode('lol')).toEqual([id('l'), id('o'), id('l')]);
      expect(t.decode(t.encode('hello world'))).toBe('hello world');
      expect(t.decode([id('hello'), 0, id('Ġworld')])).toBe('hello world'); // the control token gives no text
      expect(t.eosId).toBe(0);
      expect(t.bosId).toBe(-1); // add_bos_token absent: llama.cpp adds none
    }
  });

  it('the in-memory tokenizer.json round-trips through JSON (a bundle can embed it) and tokenizes the same', () => {
    const { json: tj, bosId, eosId } = ggufGpt2TokenizerJson(vocabHeader(base));
    const again = new HfTokenizer(JSON.parse(JSON.stringify(tj)), { bosId, eosId });
    expect(again.encode('hello world<|end|>')).toEqual([id('hello'), id('Ġworld'), 0]);
    expect(again.eosId).toBe(0);
  });

  it('BOS is used when the file says to add it', () => {
    const t = tokenizerFromGguf(vocabHeader({ ...base, 'tokenizer.ggml.add_bos_token': bool(true) }));
    expect(t.bosId).toBe(0);
    expect(t.encode('hello', { bos: true })).toEqual([0, id('hello')]);
  });

  it('an unknown pre-tokenizer, an unknown vocabulary type and a GGUF without vocabulary are refused', () => {
    let err = caught(() => tokenizerFromGguf(vocabHeader({ ...base, 'tokenizer.ggml.pre': str('deepseek-coder') })));
    expect(err.code).toBe(ErrorCodes.UNSUPPORTED);
    expect(err.problem).toContain('deepseek-coder');
    err = caught(() => tokenizerFromGguf(vocabHeader({ ...base, 'tokenizer.ggml.model': str('bert') })));
    expect(err.code).toBe(ErrorCodes.UNSUPPORTED);
    expect(err.problem).toContain('bert');
    err = caught(() => tokenizerFromGguf(vocabHeader({})));
    expect(err.code).toBe(ErrorCodes.BAD_HEADER);
    expect(err.hint).toContain('tokenizer.json');
  });
});

describe('GGUF llama vocabularies that do not map onto the llama2.c tokenizer', () => {
  const file = readGguf(bytes('models/stories260K/gguf/stories260K-f32.gguf'));
  const edit = (key: string, entry: GgufMetadataEntry) => ({ ...file, metadata: new Map([...file.metadata, [key, entry]]) });
  const tokens = (file.metadata.get('tokenizer.ggml.tokens')!.value as { values: string[] }).values;
  const types = (file.metadata.get('tokenizer.ggml.token_type')!.value as { values: Int32Array }).values;

  it.each([
    ['BOS at another id', 'tokenizer.ggml.bos_token_id', u32(5), /BOS\/EOS are ids 5\/2/],
    ['no dummy prefix', 'tokenizer.ggml.add_space_prefix', bool(false), /add_space_prefix/],
    ['byte tokens elsewhere', 'tokenizer.ggml.tokens', strings(['<unk>', '<s>', '</s>', 'x', ...tokens.slice(4)]), /byte token <0x00>/],
    ['a user-defined token', 'tokenizer.ggml.token_type', ints(Array.from(types, (t, i) => (i === 300 ? 4 : t))), /user-defined/],
  ])('%s: UNSUPPORTED', (_, key, entry, message) => {
    const err = caught(() => tokenizerFromGguf(edit(key, entry)));
    expect(err.code).toBe(ErrorCodes.UNSUPPORTED);
    expect(err.problem).toMatch(message);
  });
});
