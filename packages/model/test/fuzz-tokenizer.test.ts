import { UltraSketchError } from '@ultrasketch/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Tokenizer } from '../src/index.js';

/**
 * The Tokenizer on hostile vocabularies (fast-check, fixed seed): whatever a tokenizer file that passed the
 * format reader can hold — duplicate, empty and NUL-containing pieces, `<0xXX>`-like pieces that are not byte
 * tokens, any float32 scores (NaN, ±Infinity, the -1e10 merge floor), no space piece, fewer than 259 tokens —
 * construction, encode (of text or raw bytes, invalid UTF-8 included) and decode either work or throw an
 * UltraSketchError; ids stay in range; the merge work stays within run.c's bound; and the same input gives the
 * same ids twice. The exactness of the encoding itself is tokenizer.test.ts's job (golden files, naive run.c).
 */

const SEED = 18_2026;
const enc = new TextEncoder();

/** Pieces built from a small alphabet, so that many pairs merge. */
const piece = fc.oneof(
  fc.constantFrom('a', 'b', ' ', 'ab', 'ba', ' a', 'aab', 'bab', '', '\u0000', 'a\u0000b', '<0x41>', '<0x4>', '<0xZZ>', '<0x00>', 'é', '猫', '\n<s>\n').map((s) => enc.encode(s)),
  fc.uint8Array({ maxLength: 6 }),
);
const score = fc.oneof(
  fc.constantFrom(Number.NaN, Infinity, -Infinity, -1e10, Math.fround(-1e10), -1e10 * 1.0000001, 0, -0, 1, -1),
  fc.float({ noDefaultInfinity: false }),
);
const vocabulary = fc.array(fc.tuple(piece, score), { minLength: 0, maxLength: 300 });
const text = fc.oneof(
  fc.string({ unit: fc.constantFrom('a', 'b', ' ', 'é', '猫', '\u0000', '\n', 'Z', '\ud800') as fc.Arbitrary<string>, maxLength: 40 }),
  fc.uint8Array({ maxLength: 40 }),
);

describe('fuzz: Tokenizer on hostile vocabularies', () => {
  it('constructs, encodes and decodes or throws a typed error; ids in range; deterministic', () => {
    fc.assert(
      fc.property(vocabulary, fc.boolean(), text, fc.boolean(), (entries, withBytes, input, bos) => {
        // The three specials first; optionally the 256 byte-fallback pieces <0x00>..<0xFF> at ids 3..258.
        const pieces = [enc.encode('<unk>'), enc.encode('\n<s>\n'), enc.encode('\n</s>\n')];
        const scores = [0, 0, 0];
        if (withBytes) {
          for (let b = 0; b < 256; b++) {
            pieces.push(enc.encode(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`));
            scores.push(0);
          }
        }
        for (const [p, s] of entries) {
          pieces.push(p);
          scores.push(s);
        }
        const run = () => {
          try {
            const tok = new Tokenizer(pieces, Float32Array.from(scores), 16, 'fuzz.tok');
            const ids = tok.encode(input, { bos, eos: true });
            for (const id of ids) {
              expect(Number.isInteger(id) && id >= 0 && id < pieces.length, `id ${id}`).toBe(true);
            }
            const bytesIn = typeof input === 'string' ? enc.encode(input).length : input.length;
            // run.c: BOS, the dummy space, at most one token per byte, EOS; merges only shorten it.
            expect(ids.length).toBeLessThanOrEqual(bytesIn + 3);
            return { ids, text: tok.decode(ids) };
          } catch (err) {
            if (err instanceof UltraSketchError) return { code: err.code, message: err.message };
            throw err;
          }
        };
        expect(run()).toEqual(run());
      }),
      { seed: SEED, numRuns: 400 },
    );
  });
});
