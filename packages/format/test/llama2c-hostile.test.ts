import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '@ultrasketch/core';
import {
  LIMITS,
  LLAMA2C_MAGIC,
  LLAMA2C_V2_HEADER_BYTES,
  readLlama2cCheckpoint,
  writeLlama2cLegacy,
  writeLlama2cV2,
} from '../src/index.js';
import { TINY_CONFIG, concat, expectRejects, randomWeights, withF32, withI32 } from './helpers.js';

/**
 * Malformed llama2.c checkpoints, built byte by byte from a small valid file. Every rejection must be a
 * typed error whose message names the file and the problem, and none may allocate from a bogus size.
 */

const SRC = 'hostile.bin';
const read = (bytes: Uint8Array) => () => readLlama2cCheckpoint(bytes, SRC);

// Byte offsets of the seven header ints: legacy at 0, version 2 after magic and version.
const FIELDS = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'] as const;
const LEGACY_FIELD = (name: (typeof FIELDS)[number]) => 4 * FIELDS.indexOf(name);
const V2_FIELD = (name: (typeof FIELDS)[number]) => 8 + 4 * FIELDS.indexOf(name);
const V2_SHARED_OFFSET = 36;
const V2_GROUP_OFFSET = 37;
const GROUP = 4;

const legacy = writeLlama2cLegacy(TINY_CONFIG, randomWeights(TINY_CONFIG, 5));
const v2 = writeLlama2cV2(TINY_CONFIG, randomWeights(TINY_CONFIG, 6), GROUP);

/** Header-field mutations that every layout must refuse with BAD_DIMENSION, and what the message says. */
const BAD_DIMS: Array<[string, (typeof FIELDS)[number], number, RegExp]> = [
  ['zero dim', 'dim', 0, /header field dim = 0 is outside 1\.\.131072/],
  ['absurd dim', 'dim', 1 << 30, /header field dim = 1073741824 is outside/],
  ['negative hidden_dim', 'hidden_dim', -12, /header field hidden_dim = -12 is outside/],
  ['zero layers', 'n_layers', 0, /header field n_layers = 0 is outside/],
  ['absurd layers', 'n_layers', 1_000_000, /header field n_layers = 1000000 is outside 1\.\.1024/],
  ['zero heads', 'n_heads', 0, /header field n_heads = 0 is outside/],
  ['dim not divisible by heads', 'n_heads', 3, /dim 8 is not divisible by n_heads 3/],
  ['odd head size', 'n_heads', 8, /head size 1 is odd/],
  ['zero kv heads', 'n_kv_heads', 0, /header field n_kv_heads = 0 is outside/],
  ['kv heads not dividing heads', 'n_kv_heads', 3, /n_kv_heads 3 does not divide n_heads 2/],
  ['negative seq_len', 'seq_len', -4, /header field seq_len = -4 is outside/],
  ['absurd vocab', 'vocab_size', 1 << 30, /header field vocab_size = 1073741824 is outside/],
];

describe('hostile legacy llama2.c files', () => {
  it('the unmodified synthetic file reads (the baseline every mutation starts from)', () => {
    expect(readLlama2cCheckpoint(legacy, SRC).config).toEqual(TINY_CONFIG);
  });

  it.each([0, 3, 27])('a file cut to %i bytes (inside the header) is TRUNCATED', (cut) => {
    expectRejects(read(legacy.subarray(0, cut)), ErrorCodes.TRUNCATED, SRC, new RegExp(`${cut} bytes is shorter than any llama2.c header`));
  });

  it.each([28, 100, legacy.byteLength - 4, legacy.byteLength - 1])('a file cut to %i bytes (inside the data) is TRUNCATED', (cut) => {
    expectRejects(
      read(legacy.subarray(0, cut)),
      ErrorCodes.TRUNCATED,
      SRC,
      new RegExp(`header describes ${legacy.byteLength} bytes but the file has ${cut}`),
    );
  });

  it('trailing bytes are TRAILING_DATA', () => {
    expectRejects(read(concat(legacy, new Uint8Array([0]))), ErrorCodes.TRAILING_DATA, SRC, /1 bytes beyond the \d+ its legacy llama2.c header describes/);
  });

  it.each(BAD_DIMS)('%s is BAD_DIMENSION', (_label, field, value, problem) => {
    expectRejects(read(withI32(legacy, LEGACY_FIELD(field), value)), ErrorCodes.BAD_DIMENSION, SRC, problem);
  });

  it('vocab_size = INT32_MIN (whose negation overflows int32) is BAD_DIMENSION, not a crash', () => {
    expectRejects(read(withI32(legacy, LEGACY_FIELD('vocab_size'), -(2 ** 31))), ErrorCodes.BAD_DIMENSION, SRC, /vocab_size = 2147483648 is outside/);
  });

  it('a header claiming a huge (but in-limit) model on a small file is TRUNCATED, quickly and without allocating', () => {
    let bytes: Uint8Array = legacy;
    bytes = withI32(bytes, LEGACY_FIELD('dim'), LIMITS.maxModelDim);
    bytes = withI32(bytes, LEGACY_FIELD('hidden_dim'), LIMITS.maxModelDim);
    bytes = withI32(bytes, LEGACY_FIELD('n_layers'), LIMITS.maxLayers);
    bytes = withI32(bytes, LEGACY_FIELD('n_heads'), 1024);
    bytes = withI32(bytes, LEGACY_FIELD('n_kv_heads'), 1024);
    bytes = withI32(bytes, LEGACY_FIELD('vocab_size'), -LIMITS.maxVocab);
    // Work done, not time: the sizes are checked against the file before any tensor is allocated, so
    // rejecting this header allocates (almost) nothing. Real tensors of this size would be ~10^13 bytes.
    const before = process.memoryUsage().arrayBuffers;
    expectRejects(read(bytes), ErrorCodes.TRUNCATED, SRC, /header describes \d+ bytes but the file has/);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1 << 20);
  });

  it('a legacy file whose header was shifted (one int missing) fails on its sizes', () => {
    // Dropping hidden_dim shifts every later field down one: n_kv_heads now reads vocab_size's -10.
    const shifted = concat(legacy.subarray(0, 4), legacy.subarray(8));
    const err = expectRejects(read(shifted), ErrorCodes.BAD_DIMENSION, SRC, /header field n_kv_heads = -10 is outside/);
    expect(err.hint).toMatch(/not a valid llama2\.c checkpoint/);
  });
});

describe('hostile version-2 llama2.c files', () => {
  it('the unmodified synthetic file reads (the baseline every mutation starts from)', () => {
    const ckpt = readLlama2cCheckpoint(v2, SRC);
    expect(ckpt.layout).toBe('v2-q8_0');
    expect(ckpt.groupSize).toBe(GROUP);
  });

  it.each([4, 27])('a file cut to %i bytes is TRUNCATED (shorter than any header)', (cut) => {
    expectRejects(read(v2.subarray(0, cut)), ErrorCodes.TRUNCATED, SRC, /is shorter than any llama2.c header/);
  });

  it.each([28, 41, 255])('a file cut to %i bytes (inside the 256-byte header) is TRUNCATED', (cut) => {
    expectRejects(read(v2.subarray(0, cut)), ErrorCodes.TRUNCATED, SRC, /the 256-byte version-2 header needs 256 bytes/);
  });

  it.each([256, 300, v2.byteLength - 1])('a file cut to %i bytes (inside the data) is TRUNCATED', (cut) => {
    expectRejects(read(v2.subarray(0, cut)), ErrorCodes.TRUNCATED, SRC, new RegExp(`version-2 llama2.c header describes ${v2.byteLength} bytes but the file has ${cut}`));
  });

  it('trailing bytes are TRAILING_DATA', () => {
    expectRejects(read(concat(v2, new Uint8Array(4))), ErrorCodes.TRAILING_DATA, SRC, /4 bytes beyond the \d+ its version-2 llama2.c header describes/);
  });

  it.each([1, 3, 0, -1])('version %i is BAD_VERSION', (version) => {
    expectRejects(read(withI32(v2, 4, version)), ErrorCodes.BAD_VERSION, SRC, new RegExp(`checkpoint version ${version} is not supported`));
  });

  it('a v2 file with a different magic is read as legacy and then fails sensibly on its "dim"', () => {
    // "ak43": the magic word becomes the legacy dim field, far beyond any limit.
    const other = withI32(v2, 0, LLAMA2C_MAGIC + 1);
    expectRejects(read(other), ErrorCodes.BAD_DIMENSION, SRC, /header field dim = 1634415667 is outside/);
    // All-zero magic: dim = 0.
    expectRejects(read(withI32(v2, 0, 0)), ErrorCodes.BAD_DIMENSION, SRC, /header field dim = 0 is outside/);
  });

  it.each(BAD_DIMS)('%s is BAD_DIMENSION', (_label, field, value, problem) => {
    expectRejects(read(withI32(v2, V2_FIELD(field), value)), ErrorCodes.BAD_DIMENSION, SRC, problem);
  });

  it('a negative vocab_size (legacy sign convention) is refused in a v2 header', () => {
    expectRejects(read(withI32(v2, V2_FIELD('vocab_size'), -10)), ErrorCodes.BAD_DIMENSION, SRC, /vocab_size = -10 is outside/);
  });

  it('a shared_classifier byte other than 0/1 is BAD_HEADER', () => {
    const bytes = v2.slice();
    bytes[V2_SHARED_OFFSET] = 2;
    expectRejects(read(bytes), ErrorCodes.BAD_HEADER, SRC, /shared_classifier byte is 2, expected 0 or 1/);
  });

  it.each([
    [0, /group_size 0 is outside 1\.\.65536/],
    [-4, /group_size -4 is outside/],
    [1 << 20, /group_size 1048576 is outside/],
    [3, /dim 8 is not a multiple of group_size 3/],
    [16, /dim 8 is not a multiple of group_size 16/],
  ])('group_size %i is BAD_DIMENSION', (groupSize, problem) => {
    expectRejects(read(withI32(v2, V2_GROUP_OFFSET, groupSize)), ErrorCodes.BAD_DIMENSION, SRC, problem);
  });

  it('a group size that divides dim but does not match the data is caught by the size check', () => {
    // Bigger groups mean fewer scales, so the file is longer than the header says; smaller, shorter.
    expectRejects(read(withI32(v2, V2_GROUP_OFFSET, 8)), ErrorCodes.TRAILING_DATA, SRC, /bytes beyond/);
    expectRejects(read(withI32(v2, V2_GROUP_OFFSET, 2)), ErrorCodes.TRUNCATED, SRC, /header describes \d+ bytes/);
  });

  it('a NaN or infinite scale is NOT_FINITE, naming the tensor and the group', () => {
    const { dim, nLayers, vocabSize } = TINY_CONFIG;
    // After the header: float32 norms (2 per layer + final), then token_embedding's int8 values, then its scales.
    const firstScale = LLAMA2C_V2_HEADER_BYTES + 4 * (2 * nLayers * dim + dim) + vocabSize * dim;
    expectRejects(read(withF32(v2, firstScale, NaN)), ErrorCodes.NOT_FINITE, SRC, /token_embedding has a non-finite scale \(NaN\) in group 0/);
    // The classifier's scales end the file (it is not shared here).
    const lastGroup = (vocabSize * dim) / GROUP - 1;
    expectRejects(
      read(withF32(v2, v2.byteLength - 4, Infinity)),
      ErrorCodes.NOT_FINITE,
      SRC,
      new RegExp(`classifier has a non-finite scale \\(Infinity\\) in group ${lastGroup}`),
    );
  });
});
