import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, isUltraSketchError } from '@ultrasketch/core';
import { readLlama2cTokenizer } from '@ultrasketch/format';
import { describe, expect, it, vi } from 'vitest';
import { Tokenizer } from '../src/tokenizer.js';
import { requireShared } from '../../../test/require-shared.js';

const shared = (rel: string) => fileURLToPath(new URL(`../../../../shared/${rel}`, import.meta.url));
const haveShared = requireShared('model tokenizer tests against the real vocabularies', [
  shared('models/stories260K/tok512.bin'),
  shared('models/stories3M/tok4096.bin'),
  shared('data/tinystories/eval.txt'),
]);

const MODELS = [
  { name: 'stories260K', tok: 'models/stories260K/tok512.bin', vocab: 512, streamTokens: 144_501 },
  { name: 'stories3M', tok: 'models/stories3M/tok4096.bin', vocab: 4096, streamTokens: 73_242 },
] as const;

/** The evaluation protocol's document split (shared/reference/README.md). */
function documents(text: string): string[] {
  return text
    .split('\n\n')
    .map((d) => d.replace(/^[ \n]+|[ \n]+$/g, ''))
    .filter((d) => d.length > 0);
}

function load(tokPath: string, vocab: number): Tokenizer {
  const path = shared(tokPath);
  return Tokenizer.fromLlama2c(readLlama2cTokenizer(new Uint8Array(readFileSync(path)), vocab, path), path);
}

/** The id of the piece with exactly these bytes. */
function pieceId(t: Tokenizer, piece: string): number {
  const want = Buffer.from(piece, 'utf8');
  for (let i = 0; i < t.vocabSize; i++) if (want.equals(t.pieceBytes(i))) return i;
  throw new Error(`no piece ${JSON.stringify(piece)}`);
}

/**
 * A line-by-line port of run.c's encode() (full rescan per merge, string keys): slow and obviously faithful,
 * to check the fast encoder against on many inputs. Assumes no duplicate pieces (checked below).
 */
const naiveTables = new WeakMap<Tokenizer, { vocab: string[]; index: Map<string, number>; scores: number[] }>();
function naiveEncode(t: Tokenizer, bytes: Uint8Array, bos: boolean): number[] {
  let tables = naiveTables.get(t);
  if (!tables) {
    const vocab = Array.from({ length: t.vocabSize }, (_, i) => Buffer.from(t.pieceBytes(i)).toString('latin1'));
    const index = new Map(vocab.map((piece, i) => [piece, i] as const));
    const scores = Array.from({ length: t.vocabSize }, (_, i) => t.score(i));
    tables = { vocab, index, scores };
    naiveTables.set(t, tables);
  }
  const { vocab, index, scores } = tables;
  const lookup = (s: string) => index.get(s) ?? -1;
  const end = bytes.indexOf(0);
  const text = end < 0 ? bytes : bytes.subarray(0, end);
  const tokens: number[] = [];
  if (bos) tokens.push(1);
  if (text.length > 0) tokens.push(lookup(' '));
  let buf = '';
  for (let c = 0; c < text.length; c++) {
    if ((text[c]! & 0xc0) !== 0x80) buf = '';
    buf += String.fromCharCode(text[c]!);
    if (((text[c + 1] ?? 0) & 0xc0) === 0x80 && buf.length < 4) continue;
    const id = lookup(buf);
    if (id !== -1) tokens.push(id);
    else for (let i = 0; i < buf.length; i++) tokens.push(buf.charCodeAt(i) + 3);
    buf = '';
  }
  for (;;) {
    let bestScore = Math.fround(-1e10);
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = lookup(vocab[tokens[i]!]! + vocab[tokens[i + 1]!]!);
      if (id !== -1 && scores[id]! > bestScore) {
        bestScore = scores[id]!;
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  return tokens;
}

function expectCode(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (err) {
    expect(isUltraSketchError(err), String(err)).toBe(true);
    expect((err as { code: string }).code).toBe(code);
    return;
  }
  throw new Error(`expected an error with code ${code}`);
}

const UNICODE_SAMPLES = [
  'héllo 世界 🎉',
  'Ünïcödé — “quotes” … ñ ©®™ Ωμέγα Привет мир 𝔘𝔫𝔦 👩‍👩‍👧 e\u0301',
  '\t tabs\tand\nnewlines\r\n and  double  spaces ',
  ' leading space',
  '<0x41> <unk> <s> </s> literal pieces',
  '\ufeffstarts with a BOM',
];

describe.skipIf(!haveShared).each(MODELS)('llama2.c tokenizer on $name', ({ name, tok, vocab, streamTokens }) => {
  const tokenizer = load(tok, vocab);
  const evalText = haveShared ? readFileSync(shared('data/tinystories/eval.txt'), 'utf8') : '';
  const docs = documents(evalText);

  it('has the vocabulary layout the encoder relies on', () => {
    expect(tokenizer.vocabSize).toBe(vocab);
    expect(tokenizer.bosId).toBe(1);
    expect(tokenizer.eosId).toBe(2);
    expect(new TextDecoder().decode(tokenizer.pieceBytes(1))).toBe('\n<s>\n');
    expect(new TextDecoder().decode(tokenizer.pieceBytes(3 + 0x41))).toBe('<0x41>');
    // No duplicate piece strings: run.c's bsearch answer is then unambiguous.
    const seen = new Set<string>();
    for (let i = 0; i < vocab; i++) seen.add(Buffer.from(tokenizer.pieceBytes(i)).toString('latin1'));
    expect(seen.size).toBe(vocab);
  });

  it('encodes the first 3 evaluation documents exactly as llama2.c (story_tokens.txt)', () => {
    const expected = readFileSync(shared(`reference/${name}/story_tokens.txt`), 'utf8')
      .split('\n')
      .filter((l) => l.trim().length > 0)
      .map((l) => l.trim().split(/\s+/).map(Number));
    expect(expected).toHaveLength(3);
    for (let d = 0; d < 3; d++) expect(tokenizer.encode(docs[d]!, { bos: true })).toEqual(expected[d]);
  });

  it(`encodes the whole eval.txt to ${streamTokens} tokens (BOS per document), in O(n log n) work`, () => {
    // Work done, not time (time flakes on a loaded machine): count the merge loop's pair lookups and heap
    // comparisons. run.c's loop rescans every pair after each merge (quadratic: ~n²/2 lookups for n bytes);
    // ours pushes at most 3 candidate pairs per initial token and pays log₂ of the heap size per push/pop.
    const proto = Tokenizer.prototype as unknown as Record<'pairId' | 'before', (...a: never[]) => unknown>;
    const lookups = vi.spyOn(proto, 'pairId');
    const compares = vi.spyOn(proto, 'before');
    let total = 0;
    let lookupBound = 0;
    let compareBound = 0;
    const enc = new TextEncoder();
    try {
      for (const doc of docs) {
        total += tokenizer.encode(doc, { bos: true }).length;
        const n = enc.encode(doc).length + 2; // bytes, the dummy-prefix space and BOS
        lookupBound += 3 * n;
        compareBound += 2 * 3 * n * Math.ceil(Math.log2(3 * n) + 1);
      }
      expect(total).toBe(streamTokens);
      expect(lookups.mock.calls.length).toBeGreaterThan(0);
      expect(lookups.mock.calls.length).toBeLessThanOrEqual(lookupBound);
      expect(compares.mock.calls.length).toBeLessThanOrEqual(compareBound);
    } finally {
      lookups.mockRestore();
      compares.mockRestore();
    }
  });

  it('agrees with a naive port of run.c encode() on documents and on random byte strings', () => {
    const enc = new TextEncoder();
    // Every 8th document keeps this quick (all 1700 agree too; the naive port takes ~5 s for tok4096).
    for (const doc of docs.filter((_, i) => i % 8 === 0)) expect(tokenizer.encode(doc, { bos: true })).toEqual(naiveEncode(tokenizer, enc.encode(doc), true));
    // Random strings over a small alphabet that mixes ASCII, multi-byte characters and stray bytes.
    let x = 12345;
    const rnd = (n: number) => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const alphabet = [...enc.encode(' eatonhsirl.,\n"!'), ...enc.encode('é’—世🎉'), 0x80, 0xbf, 0xc3, 0xe4, 0xf0, 0xff];
    for (let trial = 0; trial < 300; trial++) {
      const bytes = Uint8Array.from({ length: 1 + rnd(60) }, () => alphabet[rnd(alphabet.length)]!);
      const bos = trial % 2 === 0;
      expect(tokenizer.encode(bytes, { bos })).toEqual(naiveEncode(tokenizer, bytes, bos));
    }
  });

  it('round-trips text through decode, in one go and streamed', () => {
    for (const text of [...docs.slice(0, 3), ...UNICODE_SAMPLES]) {
      for (const bos of [true, false]) {
        const ids = tokenizer.encode(text, { bos, eos: true });
        expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < vocab)).toBe(true);
        expect(tokenizer.decode(ids)).toBe(text);
        const stream = tokenizer.createStreamDecoder();
        let streamed = '';
        for (const id of ids) streamed += stream.push(id);
        streamed += stream.flush();
        expect(streamed).toBe(text);
      }
    }
  });

  it('falls back to byte tokens for characters outside the vocabulary', () => {
    const ids = tokenizer.encode('世', { bos: true });
    // 世 = E4 B8 96 → byte tokens 0xE4+3, 0xB8+3, 0x96+3, after BOS and the dummy-prefix space.
    expect(ids).toEqual([1, pieceId(tokenizer, ' '), 0xe4 + 3, 0xb8 + 3, 0x96 + 3]);
    expect(tokenizer.decodePiece(2, 0xe4 + 3)).toEqual(Uint8Array.of(0xe4));
  });

  it('streams text only once a UTF-8 character is complete', () => {
    const ids = tokenizer.encode('a🎉b', { bos: true });
    const stream = tokenizer.createStreamDecoder();
    const outs = ids.map((id) => stream.push(id));
    expect(outs.join('') + stream.flush()).toBe('a🎉b');
    // 🎉 is four byte tokens: three pushes give nothing, the fourth gives the whole character.
    const i = outs.indexOf('🎉');
    expect(i).toBeGreaterThan(0);
    expect(outs.slice(i - 3, i)).toEqual(['', '', '']);
  });

  it('handles empty text and the BOS/EOS options', () => {
    expect(tokenizer.encode('')).toEqual([]);
    expect(tokenizer.encode('', { bos: true, eos: true })).toEqual([1, 2]);
    const ids = tokenizer.encode('Hi', { bos: true, eos: true });
    expect(ids[0]).toBe(1);
    expect(ids.at(-1)).toBe(2);
    expect(tokenizer.decode([1, 2, 1, 2])).toBe('');
  });

  it('follows run.c on invalid UTF-8 and on NUL', () => {
    // Six continuation bytes after a lead byte: groups [lead, c, c, c], [c, c, c]; none is a piece → bytes.
    const bad = Uint8Array.of(0x61, 0xe4, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x62);
    const ids = tokenizer.encode(bad);
    const last = ids.at(-1)!;
    expect(tokenizer.decode([last], { prevToken: 0 })).toBe('b');
    expect(ids).toEqual([...tokenizer.encode('a'), ...[0xe4, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85].map((x) => x + 3), last]);
    expect(tokenizer.decode(ids)).toBe(new TextDecoder().decode(bad));
    // C stops at the terminating NUL.
    expect(tokenizer.encode('abc\u0000def')).toEqual(tokenizer.encode('abc'));
    expect(tokenizer.encode('\u0000abc', { bos: true })).toEqual([1]);
    // Lone surrogates are encoded as U+FFFD, like TextEncoder.
    expect(tokenizer.encode('x\ud800y')).toEqual(tokenizer.encode('x\ufffdy'));
    // A byte string with the same bytes as a string encodes the same.
    expect(tokenizer.encode(new TextEncoder().encode(docs[0]!), { bos: true })).toEqual(tokenizer.encode(docs[0]!, { bos: true }));
  });

  it('decodes invalid byte sequences like TextDecoder', () => {
    const seqs = [
      [0xff, 0x61],
      [0xe4, 0xb8],
      [0xe4, 0x61, 0xf0, 0x9f, 0x8e],
      [0xed, 0xa0, 0x80],
      [0xc0, 0xaf, 0xe0, 0x80, 0xbf, 0xf4, 0x90, 0x80, 0x80],
    ];
    for (const seq of seqs) {
      const ids = seq.map((x) => x + 3);
      expect(tokenizer.decode(ids)).toBe(new TextDecoder().decode(Uint8Array.from(seq)));
    }
  });

  it('decodePiece strips the space after BOS and resolves byte tokens', () => {
    const space = pieceId(tokenizer, ' ');
    expect(tokenizer.decodePiece(1, space)).toEqual(new Uint8Array(0));
    expect(tokenizer.decodePiece(5, space)).toEqual(Uint8Array.of(0x20));
    expect(tokenizer.decodePiece(1, 3 + 0x0a)).toEqual(Uint8Array.of(0x0a));
    expect(tokenizer.decode([space, space], { prevToken: 0 })).toBe('  ');
    expect(tokenizer.decode([space, space])).toBe(' ');
  });

  it('rejects token ids out of range with BAD_ARGUMENT', () => {
    for (const id of [-1, vocab, 1.5, Number.NaN]) {
      expectCode(() => tokenizer.decode([id]), ErrorCodes.BAD_ARGUMENT);
      expectCode(() => tokenizer.decodePiece(1, id), ErrorCodes.BAD_ARGUMENT);
      expectCode(() => tokenizer.pieceBytes(id), ErrorCodes.BAD_ARGUMENT);
      expectCode(() => tokenizer.createStreamDecoder().push(id), ErrorCodes.BAD_ARGUMENT);
    }
  });
});

describe('Tokenizer on a hand-made vocabulary', () => {
  const enc = new TextEncoder();
  /** A vocabulary with the 3 specials, 256 byte tokens, then the given pieces and scores. */
  function vocab(extra: [string | Uint8Array, number][]): Tokenizer {
    const pieces: Uint8Array[] = [enc.encode('<unk>'), enc.encode('\n<s>\n'), enc.encode('\n</s>\n')];
    const scores: number[] = [0, 0, 0];
    for (let b = 0; b < 256; b++) {
      pieces.push(enc.encode(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`));
      scores.push(0);
    }
    for (const [p, s] of extra) {
      pieces.push(typeof p === 'string' ? enc.encode(p) : p);
      scores.push(s);
    }
    return new Tokenizer(pieces, Float32Array.from(scores), 16);
  }

  it('merges the highest-scoring pair first, the leftmost of equal scores', () => {
    // ids: ' '=259 a=260 b=261 ab=262 ' a'=263 ...
    const t = vocab([
      [' ', -100],
      ['a', -100],
      ['b', -100],
      ['ab', -1],
      [' a', -2],
      ['abab', -3],
      ['aa', -5],
    ]);
    // " abab": ' ' a b a b → ab is best (leftmost first): ' ' ab a b → ' ' ab ab → ' '+ab not in vocab,
    // abab (-3) → ' ' abab.
    expect(t.encode('abab')).toEqual([259, 264]);
    // " aaa": ' a'(-2) beats 'aa'(-5): ' a' a a → then aa: ' a' aa.
    expect(t.encode('aaa')).toEqual([263, 265]);
    // Unknown characters fall back to bytes.
    expect(t.encode('c')).toEqual([259, 0x63 + 3]);
  });

  it('groups a lead byte with at most 3 continuation bytes, then continuation bytes by 4 (run.c)', () => {
    const t = vocab([
      [' ', 0],
      [Uint8Array.of(0xe4, 0x80, 0x81, 0x82), 0],
      [Uint8Array.of(0x83, 0x84, 0x85, 0x86), 0],
      [Uint8Array.of(0x87), 0],
    ]);
    const text = Uint8Array.of(0xe4, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x41);
    expect(t.encode(text)).toEqual([259, 260, 261, 262, 0x41 + 3]);
    const bytes = Uint8Array.of(0x80, 0x81, 0x82, 0x83, 0x84);
    expect(t.encode(bytes)).toEqual([259, ...[0x80, 0x81, 0x82, 0x83].map((b) => b + 3), 0x84 + 3]);
  });

  it('never merges pairs scoring -1e10 or less (run.c initial best score)', () => {
    const t = vocab([
      [' ', 0],
      ['x', 0],
      [' x', -1e10],
    ]);
    expect(t.encode('x')).toEqual([259, 260]);
    const u = vocab([
      [' ', 0],
      ['x', 0],
      [' x', -9.99e9],
    ]);
    expect(u.encode('x')).toEqual([261]);
  });

  it('resolves duplicate pieces to the id glibc bsearch over a stable qsort would return', () => {
    // Three copies of "q" at ids 260, 261, 262 among 263 pieces (262 would be "last", 260 "first").
    const t = vocab([
      [' ', 0],
      ['q', 0],
      ['q', 0],
      ['q', 0],
    ]);
    const id = t.encode('q')[1]!;
    expect([260, 261, 262]).toContain(id);
    // Reproduce glibc: stable sort by bytes, bsearch probing (l + u) >> 1.
    const keys = Array.from({ length: t.vocabSize }, (_, i) => Buffer.from(t.pieceBytes(i)).toString('latin1'));
    const order = keys.map((_, i) => i).sort((x, y) => (keys[x]! < keys[y]! ? -1 : keys[x]! > keys[y]! ? 1 : x - y));
    let l = 0;
    let u = order.length;
    let found = -1;
    while (l < u) {
      const m = (l + u) >> 1;
      const k = keys[order[m]!]!;
      if ('q' < k) u = m;
      else if ('q' > k) l = m + 1;
      else {
        found = order[m]!;
        break;
      }
    }
    expect(id).toBe(found);
  });

  it('reports a vocabulary without byte fallback or a space piece', () => {
    const enc2 = (s: string) => new TextEncoder().encode(s);
    const tiny = new Tokenizer([enc2('<unk>'), enc2('<s>'), enc2('</s>'), enc2(' '), enc2('a')], new Float32Array(5), 8);
    expect(tiny.encode('a')).toEqual([3, 4]);
    expectCode(() => tiny.encode('b'), ErrorCodes.UNSUPPORTED);
    const noSpace = new Tokenizer([enc2('<unk>'), enc2('<s>'), enc2('</s>'), enc2('a')], new Float32Array(4), 8);
    expectCode(() => noSpace.encode('a'), ErrorCodes.UNSUPPORTED);
    expectCode(() => new Tokenizer([enc2('<unk>')], new Float32Array(1), 8), ErrorCodes.BAD_DIMENSION);
    expectCode(() => new Tokenizer([enc2('<unk>')], new Float32Array(2), 8), ErrorCodes.SHAPE_MISMATCH);
  });
});
