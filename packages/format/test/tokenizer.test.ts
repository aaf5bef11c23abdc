import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '@ultrasketch/core';
import { readLlama2cTokenizer } from '../src/index.js';
import { HAVE_SHARED, concat, expectRejects, readShared, withF32, withI32 } from './helpers.js';

/**
 * llama2.c tokenizer files: int32 max_token_length, then per token float32 score, int32 length, bytes.
 * The file does not store its size, so the reader is told the model's vocabulary size and must refuse a
 * file that holds more or fewer entries.
 */

const SRC = 'tok.bin';
const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** Build a tokenizer file byte by byte. */
function tokenizerFile(maxTokenLength: number, entries: Array<[score: number, piece: Uint8Array]>): Uint8Array {
  const size = 4 + entries.reduce((n, [, p]) => n + 8 + p.byteLength, 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setInt32(0, maxTokenLength, true);
  let at = 4;
  for (const [score, piece] of entries) {
    view.setFloat32(at, score, true);
    view.setInt32(at + 4, piece.byteLength, true);
    out.set(piece, at + 8);
    at += 8 + piece.byteLength;
  }
  return out;
}

// Three tokens of five bytes each: 4 + 3 × 13 = 43 bytes. Entry k starts at 4 + 13k.
const THREE = tokenizerFile(5, [
  [0, ascii('<unk>')],
  [-1.5, ascii('hello')],
  [-2, ascii('world')],
]);
const ENTRY = (k: number) => 4 + 13 * k;

describe('llama2.c tokenizer files', () => {
  it('reads a synthetic file: pieces as raw bytes, scores, max length', () => {
    const t = readLlama2cTokenizer(THREE, 3, SRC);
    expect(t.maxTokenLength).toBe(5);
    expect(Array.from(t.scores)).toEqual([0, -1.5, -2]);
    expect(t.pieces.map((p) => String.fromCharCode(...p))).toEqual(['<unk>', 'hello', 'world']);
    // Pieces are copies, not views into the file.
    expect(t.pieces[1]!.buffer).not.toBe(THREE.buffer);
  });

  it('accepts empty pieces and non-UTF-8 bytes (byte-fallback pieces need not be valid UTF-8 alone)', () => {
    const t = readLlama2cTokenizer(tokenizerFile(2, [[0, new Uint8Array()], [1, new Uint8Array([0xe2, 0x82])]]), 2, SRC);
    expect(t.pieces[0]!.byteLength).toBe(0);
    expect(Array.from(t.pieces[1]!)).toEqual([0xe2, 0x82]);
  });

  it.each([
    [ENTRY(2), /only 2 tokens/],
    [ENTRY(2) + 3, /only 2 tokens/],
    [ENTRY(1), /room for at most 1 tokens/],
    [2, /room for at most 0 tokens/],
  ])('a file cut at an entry boundary (%i bytes) has too few tokens: TOKENIZER_MISMATCH', (cut, problem) => {
    // Without a stored count, a file cut between entries is indistinguishable from a smaller vocabulary.
    expectRejects(() => readLlama2cTokenizer(THREE.subarray(0, cut), 3, SRC), ErrorCodes.TOKENIZER_MISMATCH, SRC, problem);
  });

  it.each([ENTRY(2) + 8, ENTRY(3) - 1])('a file cut inside a token\'s bytes (%i bytes) is TRUNCATED', (cut) => {
    expectRejects(() => readLlama2cTokenizer(THREE.subarray(0, cut), 3, SRC), ErrorCodes.TRUNCATED, SRC, /bytes of token 2 needs 5 bytes/);
  });

  it('a model with more tokens than the file is TOKENIZER_MISMATCH', () => {
    expectRejects(() => readLlama2cTokenizer(THREE, 4, SRC), ErrorCodes.TOKENIZER_MISMATCH, SRC, /tokenizer has .* but the model's vocabulary has 4/);
  });

  it('a model with fewer tokens than the file is TOKENIZER_MISMATCH', () => {
    expectRejects(
      () => readLlama2cTokenizer(THREE, 2, SRC),
      ErrorCodes.TOKENIZER_MISMATCH,
      SRC,
      /tokenizer has 13 bytes after entry 2 \(more tokens\) but the model's vocabulary has 2/,
    );
  });

  it('trailing garbage shorter than an entry is also refused', () => {
    expectRejects(() => readLlama2cTokenizer(concat(THREE, new Uint8Array(3)), 3, SRC), ErrorCodes.TOKENIZER_MISMATCH, SRC, /3 bytes after entry 3/);
  });

  it('a negative token length is BAD_HEADER', () => {
    expectRejects(
      () => readLlama2cTokenizer(withI32(THREE, ENTRY(1) + 4, -1), 3, SRC),
      ErrorCodes.BAD_HEADER,
      SRC,
      /token 1 has length -1, outside 0\.\.max_token_length \(5\)/,
    );
  });

  it('a token longer than max_token_length is BAD_HEADER', () => {
    expectRejects(
      () => readLlama2cTokenizer(withI32(THREE, ENTRY(2) + 4, 6), 3, SRC),
      ErrorCodes.BAD_HEADER,
      SRC,
      /token 2 has length 6, outside 0\.\.max_token_length \(5\)/,
    );
  });

  it.each([0, -5, 1 << 30])('max_token_length %i is BAD_HEADER', (max) => {
    expectRejects(() => readLlama2cTokenizer(withI32(THREE, 0, max), 3, SRC), ErrorCodes.BAD_HEADER, SRC, new RegExp(`max_token_length ${max} is outside 1\\.\\.65536`));
  });

  it('a NaN score is NOT_FINITE', () => {
    expectRejects(() => readLlama2cTokenizer(withF32(THREE, ENTRY(1), NaN), 3, SRC), ErrorCodes.NOT_FINITE, SRC, /token 1 has a non-finite score/);
  });

  it.each([0, -1, 2 ** 40, 1.5])('a vocabulary size of %s is BAD_DIMENSION before anything is read', (v) => {
    expectRejects(() => readLlama2cTokenizer(THREE, v, SRC), ErrorCodes.BAD_DIMENSION, SRC, /vocabulary size .* is outside 1\.\./);
  });
});

describe.skipIf(!HAVE_SHARED)('real llama2.c tokenizers (../shared/models)', () => {
  const cases = [
    { file: 'stories260K/tok512.bin', name: 'tok512.bin', vocab: 512, maxLen: 7, lastScore: -252 },
    { file: 'stories3M/tok4096.bin', name: 'tok4096.bin', vocab: 4096, maxLen: 14, lastScore: -3836 },
  ];

  it.each(cases)('$name reads with vocabulary $vocab', ({ file, name, vocab, maxLen, lastScore }) => {
    const t = readLlama2cTokenizer(readShared(`models/${file}`), vocab, name);
    expect(t.pieces).toHaveLength(vocab);
    expect(t.maxTokenLength).toBe(maxLen);
    const text = (i: number) => String.fromCharCode(...t.pieces[i]!);
    // The README's conventions: <unk>, BOS, EOS, then 256 byte-fallback tokens (id = byte + 3).
    expect(text(0)).toBe('<unk>');
    expect(text(1)).toContain('<s>');
    expect(text(2)).toContain('</s>');
    expect(text(3)).toBe('<0x00>');
    expect(text(13)).toBe('<0x0A>');
    expect(text(258)).toBe('<0xFF>');
    expect(t.scores[vocab - 1]).toBe(lastScore);
    expect(t.pieces.every((p) => p.byteLength <= maxLen)).toBe(true);
  });

  it.each([
    ['stories260K/tok512.bin', 'tok512.bin', 4096],
    ['stories260K/tok512.bin', 'tok512.bin', 511],
    ['stories3M/tok4096.bin', 'tok4096.bin', 512],
    ['stories3M/tok4096.bin', 'tok4096.bin', 4097],
  ] as const)('%s with vocabulary %i is TOKENIZER_MISMATCH', (file, name, vocab) => {
    expectRejects(
      () => readLlama2cTokenizer(readShared(`models/${file}`), vocab, name),
      ErrorCodes.TOKENIZER_MISMATCH,
      name,
      new RegExp(`but the model's vocabulary has ${vocab}`),
    );
  });
});
