import { existsSync } from 'node:fs';
import * as core from '@ultrasketch/core';
import { UltraSketchError } from '@ultrasketch/core';
import * as model from '@ultrasketch/model';
import { beforeAll, describe, expect, it } from 'vitest';
// The fuzzing engine and the reader table are plain ESM shared with bench/fuzz.mjs (which runs them 10^5 times).
import { GEN, applySafetensorsStruct, fc, joinSafetensors } from '../../../bench/fuzz/lib.mjs';
import { bundleSealer, fuzzReaders } from '../../../bench/fuzz/readers.mjs';
import * as format from '../src/index.js';
import { fixtureInput } from './bundleFixture.js';
import { expectSeedsRead, outcomeKinds } from './fuzz-checks.js';
import { HAVE_SHARED, readShared, sharedPath } from './helpers.js';

/**
 * Property-based tests of every reader of @ultrasketch/format (llama2.c checkpoints in both layouts, the llama2.c
 * tokenizer with the model's Tokenizer on top, safetensors, bundles, GGUF), with fast-check at a FIXED seed and a few
 * hundred cases each, so a failure is reproducible (fast-check prints the shrunk plan and the seed).
 *
 * Cases start from real files (stories260K and stories3M from ../shared, their GGUF exports among them; a bundle
 * written by the format's own writer) and mutate them with structure-aware edits: header fields set to boundary values (0, -1, 2^31 - 1,
 * 2^32, NaN floats, ...) and optionally the file resized to what the edited header claims, tokenizer entries'
 * lengths and scores, JSON header edits (fields deleted, duplicated, retyped, renamed; huge shapes; offsets
 * moved; numbers as strings; deep nesting), tensor data changed with the checksums re-sealed, GGUF counts,
 * lengths, types and offsets found by walking the seed's header, plus byte flips,
 * truncations and appended bytes. For every case:
 * - the read returns a value or throws an UltraSketchError, never any other exception;
 * - the ArrayBuffer memory it keeps (the buffers the value reaches) and the memory it allocated while reading
 *   stay within the reader's expansion × the input's size + ALLOCATION_SLACK_BYTES;
 * - it does not write to its input, and reading the same input again gives the same outcome.
 */

const SEED = 18_2026;
const RUNS = 250;
/** Fewer cases where one read decodes megabytes (the stories3M GGUF seeds), to keep the file near 10 s. */
const RUNS_OF: Record<string, number> = { gguf: 120 };

describe.runIf(HAVE_SHARED)('fuzz: @ultrasketch/format readers on mutated real files', () => {
  const readers = fuzzReaders({
    core,
    format,
    model,
    sharedFile: (rel: string) => (existsSync(sharedPath(rel)) ? readShared(rel) : undefined),
    bundleSeeds: async () => [{ label: 'format fixture bundle', bytes: format.writeBundle(fixtureInput().input) }],
  });
  const seeds = new Map<string, any[]>();
  beforeAll(async () => {
    for (const r of readers) seeds.set(r.name, await r.seeds());
  });
  const names = readers.map((r) => r.name);

  it('covers every reader of the package', () => {
    expect(names).toEqual(['llama2c-legacy', 'llama2c-v2', 'tokenizer', 'safetensors', 'bundle', 'gguf']);
  });

  it.each(names)('%s: every seed file reads (the baseline every mutation starts from)', (name) => {
    const r = readers.find((x) => x.name === name)!;
    const list = seeds.get(name)!;
    expect(list.length).toBeGreaterThan(0);
    expectSeedsRead(r, list);
  });

  it.each(names)('%s: a mutated file reads or fails with a typed error, within its allocation bound, the same way twice', (name) => {
    const r = readers.find((x) => x.name === name)!;
    const list = seeds.get(name)!;
    const runs = RUNS_OF[name] ?? RUNS;
    const kinds = outcomeKinds(r, list, SEED, runs);
    // The generators must reach past the first check: a fair share of cases still reads, and the failures are
    // of several kinds (not, say, every case stopped by the length field).
    expect(kinds.get('ok') ?? 0, JSON.stringify([...kinds])).toBeGreaterThan(runs / 20);
    expect([...kinds.keys()].filter((k) => k !== 'ok' && k !== 'crash').length, JSON.stringify([...kinds])).toBeGreaterThanOrEqual(4);
  });
});

describe('fuzz-found crashes in safetensors.ts and bundle.ts, fixed by bounding JSON nesting (411ff89)', () => {
  // Found by bench/fuzz.mjs --readers safetensors --seed 1 (case 314), shrunk: one dimension of one shape
  // replaced by 100000 nested arrays. JSON.parse accepts it; the message for the bad dimension was built with
  // JSON.stringify, which recursed and overflowed: a RangeError instead of a typed error.
  const deep = '['.repeat(100_000) + ']'.repeat(100_000);

  it('a shape dimension nested 100000 deep is a typed error', () => {
    const bytes = joinSafetensors(`{"t":{"dtype":"F32","shape":[1,${deep}],"data_offsets":[0,4]}}`, new Uint8Array(4));
    expect(() => format.readSafetensors(bytes, 'deep.safetensors')).toThrow(expect.objectContaining({ name: 'UltraSketchError', code: 'E_LIMIT_EXCEEDED' }));
  });

  it('data_offsets nested 100000 deep is a typed error', () => {
    const bytes = joinSafetensors(`{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,${deep}]}}`, new Uint8Array(4));
    expect(() => format.readSafetensors(bytes, 'deep.safetensors')).toThrow(expect.objectContaining({ name: 'UltraSketchError', code: 'E_LIMIT_EXCEEDED' }));
  });

  // bench/fuzz.mjs --readers bundle --seed 1, case 42347: a weight entry's cols nested 100000 deep in an
  // otherwise valid (re-sealed) bundle; readBundle's "invalid shape" message stringifies [rows, cols].
  it('a bundle weight entry whose cols is nested 100000 deep is a typed error', () => {
    const edit = { k: 'meta', key: 'weights', edit: { path: ['model.layers.0.self_attn.q_proj.weight', 'cols'], a: 'set', v: { [GEN]: { nest: 100_000 } } } };
    const bytes = applySafetensorsStruct(format.writeBundle(fixtureInput().input), [edit], { reseal: true, sealMetadata: bundleSealer(format) });
    expect(() => format.readBundle(bytes, 'deep.usk')).toThrow(expect.objectContaining({ name: 'UltraSketchError', code: 'E_LIMIT_EXCEEDED' }));
  });
});

describe('fuzz: ByteReader, the bounds-checked cursor under the llama2.c readers', () => {
  // Any sequence of reads of any (even nonsensical: negative, fractional, NaN, huge) length over any bytes ends
  // in values or a typed error, and the cursor never leaves the bytes.
  const n = fc.oneof(
    fc.nat({ max: 40 }),
    fc.constantFrom(-1, -4, 0.5, 1.5, Number.NaN, Infinity, -Infinity, 2 ** 31, 2 ** 32, 2 ** 53, Number.MAX_VALUE),
  );
  const read = fc.oneof(
    fc.constantFrom('i32', 'u32', 'u8', 'f32').map((k) => ({ k, n: 0 })),
    fc.record({ k: fc.constantFrom('take', 'f32Array', 'need'), n }),
  );

  it('any reads of any length over any bytes give values or a typed error; the offset stays within the bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat({ max: 8 }), fc.array(read, { maxLength: 12 }), (bytes, skip, reads) => {
        // a view that does not start at the buffer's start, as a tensor inside a file is
        const r = new format.ByteReader(new Uint8Array(bytes.buffer.slice(0), Math.min(skip, bytes.length)), 'cursor.bin');
        try {
          for (const { k, n: len } of reads) {
            const before = r.offset;
            const out: any = k === 'take' || k === 'f32Array' || k === 'need' ? (r as any)[k](len, 'field') : (r as any)[k]('field');
            if (k === 'take' || k === 'f32Array') expect(out.length).toBe(len);
            expect(r.offset).toBeGreaterThanOrEqual(before);
            expect(r.offset).toBeLessThanOrEqual(r.bytes.byteLength);
          }
        } catch (err) {
          if (!(err instanceof UltraSketchError)) throw err;
        }
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});
