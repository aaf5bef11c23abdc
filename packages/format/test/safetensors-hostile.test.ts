import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '@ultrasketch/core';
import { LIMITS, readSafetensors } from '../src/index.js';
import { concat, expectRejects } from './helpers.js';
import { entry, f32Bytes, header, rawSafetensors } from './safetensorsBytes.js';

/**
 * Malformed safetensors files, built byte by byte. Each must be refused with a typed error whose message
 * names the file and the problem, before the reader allocates anything sized by the bad field.
 */

const SRC = 'evil.safetensors';
const read = (bytes: Uint8Array) => () => readSafetensors(bytes, SRC);
const DATA = f32Bytes(1, 2, 3, 4); // 16 bytes
const OK = header(entry('a', 'F32', [2], [0, 8]), entry('b', 'F32', [2], [8, 16]));

/** A file with the valid two-tensor data and the given header text. */
const withHeader = (h: string, data: Uint8Array = DATA) => rawSafetensors(h, data);

describe('hostile safetensors: the length prefix', () => {
  it('the baseline file reads', () => {
    expect([...readSafetensors(withHeader(OK), SRC).tensors.keys()]).toEqual(['a', 'b']);
  });

  it.each([0, 1, 7])('a file of %i bytes is TRUNCATED', (n) => {
    expectRejects(read(new Uint8Array(n)), ErrorCodes.TRUNCATED, SRC, new RegExp(`${n} bytes is shorter than the 8-byte header length`));
  });

  it('a header length beyond the end of the file is TRUNCATED', () => {
    const bytes = withHeader(OK);
    const n = bytes.byteLength - 8;
    expectRejects(read(rawSafetensors(OK, DATA, BigInt(n + 1))), ErrorCodes.TRUNCATED, SRC, new RegExp(`header length is ${n + 1} bytes but only ${n} follow`));
    // Cutting the file inside the header is the same problem.
    expectRejects(read(bytes.subarray(0, 20)), ErrorCodes.TRUNCATED, SRC, /but only 12 follow/);
  });

  it.each([
    ['just over the limit', BigInt(LIMITS.maxSafetensorsHeaderBytes + 1)],
    ['2^40', 2n ** 40n],
    ['beyond 2^53', 2n ** 53n + 1n],
    ['2^64 - 1', 2n ** 64n - 1n],
  ])('a header length %s is LIMIT_EXCEEDED at once, without allocating', (_label, n) => {
    // Work done, not time: the length is refused before the header is decoded or any buffer is allocated.
    const before = process.memoryUsage().arrayBuffers;
    expectRejects(read(rawSafetensors(OK, DATA, n)), ErrorCodes.LIMIT_EXCEEDED, SRC, new RegExp(`header length ${n} exceeds the limit of ${LIMITS.maxSafetensorsHeaderBytes} bytes`));
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1 << 20);
  });

  it.each([0n, 1n])('a header length of %i is BAD_HEADER', (n) => {
    expectRejects(read(rawSafetensors('{}', new Uint8Array(), n)), ErrorCodes.BAD_HEADER, SRC, new RegExp(`header length ${n} is too short`));
  });
});

describe('hostile safetensors: the JSON header', () => {
  it('bytes that are not UTF-8 are BAD_HEADER', () => {
    const h = new TextEncoder().encode(header(entry('a', 'F32', [2], [0, 8])));
    h[2] = 0xff; // the name "a"
    expectRejects(read(rawSafetensors(h, DATA.subarray(0, 8))), ErrorCodes.BAD_HEADER, SRC, /header is not valid UTF-8/);
  });

  it('an overlong (non-shortest) UTF-8 encoding is BAD_HEADER', () => {
    const h = new TextEncoder().encode('{"x":1}');
    const evil = concat(h.subarray(0, 2), new Uint8Array([0xc1, 0xb8]), h.subarray(3)); // "x" as 2 bytes
    expectRejects(read(rawSafetensors(evil)), ErrorCodes.BAD_HEADER, SRC, /not valid UTF-8/);
  });

  it.each([
    ['truncated JSON', '{"a":{"dtype":"F32"'],
    ['a trailing comma', `${OK.slice(0, -1)},}`],
    ['NUL padding instead of spaces', `${OK}\u0000\u0000`],
    ['two objects', `${OK}{}`],
  ])('%s is BAD_HEADER (not valid JSON)', (_label, h) => {
    expectRejects(read(withHeader(h)), ErrorCodes.BAD_HEADER, SRC, /header is not valid JSON/);
  });

  it.each([
    ['an array', '[1,2,3]'],
    ['a string', '"tensors"'],
    ['null', 'null'],
    ['leading whitespace', ` ${OK}`],
    ['a byte-order mark', `\uFEFF${OK}`],
  ])('a header that is %s (not starting with "{") is BAD_HEADER', (_label, h) => {
    expectRejects(read(withHeader(h)), ErrorCodes.BAD_HEADER, SRC, /header does not start with "\{"/);
  });

  it.each([
    ['a number', '5'],
    ['null', 'null'],
    ['an array', '[]'],
  ])('a tensor entry that is %s is BAD_HEADER', (label, value) => {
    expectRejects(read(withHeader(`{"a":${value}}`, new Uint8Array())), ErrorCodes.BAD_HEADER, SRC, new RegExp(`tensor "a" is ${label}, expected an object`));
  });

  it('deeply nested JSON (a parser stack-exhaustion attempt) is LIMIT_EXCEEDED, not a crash', () => {
    const depth = 200_000;
    const h = `{"a":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    expectRejects(read(withHeader(h, new Uint8Array())), ErrorCodes.LIMIT_EXCEEDED, SRC, /header JSON nests deeper than the limit of 64 levels \(under "a"\)|not valid JSON/);
  });

  it('nesting inside a shape or data_offsets is LIMIT_EXCEEDED before any message stringifies it (a fuzz crash)', () => {
    // JSON.parse accepts 100,000 nested arrays; the BAD_DIMENSION message used to JSON.stringify them and
    // overflow the stack (a RangeError, not a typed error). The depth limit refuses them first.
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    for (const h of [header(entry('t', 'F32', [1], [0, 4])).replace('"shape":[1]', `"shape":[1,${deep}]`), header(entry('t', 'F32', [1], [0, 4])).replace('"data_offsets":[0,4]', `"data_offsets":[0,${deep}]`)]) {
      expect(h).toContain(deep);
      expectRejects(read(withHeader(h, new Uint8Array(4))), ErrorCodes.LIMIT_EXCEEDED, SRC, /nests deeper than the limit of 64 levels \(under "t" → "(shape|data_offsets)"\)/);
    }
    // Exactly at the limit is still read as far as the depth goes (here: the tensor entry itself is bad).
    const atLimit = `{"t":${'['.repeat(63)}${']'.repeat(63)}}`;
    expectRejects(read(withHeader(atLimit, new Uint8Array())), ErrorCodes.BAD_HEADER, SRC, /tensor "t" is an array/);
  });

  it('__metadata__ that is not an object is BAD_HEADER', () => {
    expectRejects(read(withHeader(`{"__metadata__":["x"],${OK.slice(1)}`)), ErrorCodes.BAD_HEADER, SRC, /__metadata__ is an array, expected an object/);
  });

  it.each([
    ['a number', '1'],
    ['an object', '{"nested":"x"}'],
    ['null', 'null'],
    ['a boolean', 'true'],
  ])('a __metadata__ value that is %s is BAD_HEADER', (label, value) => {
    const h = `{"__metadata__":{"ok":"fine","k":${value}},${OK.slice(1)}`;
    expectRejects(read(withHeader(h)), ErrorCodes.BAD_HEADER, SRC, new RegExp(`__metadata__ value for key "k" is ${label}, expected a string`));
  });

  it('more tensors than the limit is LIMIT_EXCEEDED (before any tensor is examined)', () => {
    const tight = { ...LIMITS, maxTensorCount: 1 };
    // The entries are not even valid; the count is checked first.
    expectRejects(() => readSafetensors(withHeader('{"a":1,"b":2,"__metadata__":{}}'), SRC, tight), ErrorCodes.LIMIT_EXCEEDED, SRC, /lists 2 tensors, more than the limit of 1/);
  });

  it('a header above a (tightened) size limit is LIMIT_EXCEEDED', () => {
    const tight = { ...LIMITS, maxSafetensorsHeaderBytes: 16 };
    expectRejects(() => readSafetensors(withHeader(OK), SRC, tight), ErrorCodes.LIMIT_EXCEEDED, SRC, /exceeds the limit of 16 bytes/);
  });
});

describe('hostile safetensors: dtypes and shapes', () => {
  it.each(['F7', 'f32', 'F8_E4M3', 'Q4_0', ''])('dtype "%s" is BAD_DTYPE', (dtype) => {
    const h = header(entry('a', dtype, [2], [0, 8]), entry('b', 'F32', [2], [8, 16]));
    expectRejects(read(withHeader(h)), ErrorCodes.BAD_DTYPE, SRC, new RegExp(`tensor "a" has dtype "${dtype}", which is unknown or unsupported`));
  });

  it('a dtype that is not a string is BAD_HEADER', () => {
    const h = `{"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}`;
    expectRejects(read(withHeader(h, DATA.subarray(0, 8))), ErrorCodes.BAD_HEADER, SRC, /tensor "a" has a dtype that is a number/);
  });

  it.each([
    ['missing', undefined],
    ['a number', 2],
    ['an object', { 0: 2 }],
  ])('a shape that is %s is BAD_HEADER', (_label, shape) => {
    const h = `{"a":{"dtype":"F32",${shape === undefined ? '' : `"shape":${JSON.stringify(shape)},`}"data_offsets":[0,8]}}`;
    expectRejects(read(withHeader(h, DATA.subarray(0, 8))), ErrorCodes.BAD_HEADER, SRC, /tensor "a" has a shape that is/);
  });

  it.each([
    [[-2], /dimension -2/],
    [[2.5], /dimension 2.5/],
    [['2'], /dimension "2"/],
    [[null], /dimension null/],
    [[1e300], /dimension 1e\+300/],
  ])('shape %j is BAD_DIMENSION', (shape, problem) => {
    const h = header(entry('a', 'F32', shape, [0, 8]));
    expectRejects(read(withHeader(h, DATA.subarray(0, 8))), ErrorCodes.BAD_DIMENSION, SRC, problem);
  });

  it('a rank above the limit is LIMIT_EXCEEDED', () => {
    const shape = new Array(LIMITS.maxTensorRank + 1).fill(1);
    expectRejects(read(withHeader(header(entry('a', 'U8', shape, [0, 1])), new Uint8Array(1))), ErrorCodes.LIMIT_EXCEEDED, SRC, /tensor "a" has rank 9, more than the limit of 8/);
  });

  it('a dimension above the limit is LIMIT_EXCEEDED', () => {
    const h = header(entry('a', 'U8', [2 ** 31 + 1], [0, 1]));
    expectRejects(read(withHeader(h, new Uint8Array(1))), ErrorCodes.LIMIT_EXCEEDED, SRC, /dimension 2147483649, more than the limit of 2147483648/);
  });

  it('a tensor of 2^60 elements is LIMIT_EXCEEDED at once, without allocating', () => {
    const before = process.memoryUsage().arrayBuffers;
    const h = header(entry('huge', 'F32', [2 ** 30, 2 ** 30], [0, 16]));
    expectRejects(read(withHeader(h)), ErrorCodes.LIMIT_EXCEEDED, SRC, /tensor "huge" of shape \[1073741824, 1073741824\] has more elements than the limit/);
    // A shape whose product overflows even float64 precision (2^31 × ... × 2^31) is caught step by step.
    const h2 = header(entry('huge', 'U8', new Array(8).fill(2 ** 31), [0, 16]));
    expectRejects(read(withHeader(h2)), ErrorCodes.LIMIT_EXCEEDED, SRC, /more elements than the limit/);
    // Work done, not time: nothing near the claimed size (2^62 bytes) was allocated.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1 << 20);
  });

  it('a byte range that disagrees with shape × dtype is SHAPE_MISMATCH', () => {
    const h = header(entry('a', 'F32', [3], [0, 8]), entry('b', 'F32', [2], [8, 16]));
    expectRejects(read(withHeader(h)), ErrorCodes.SHAPE_MISMATCH, SRC, /tensor "a" of shape \[3\] and dtype F32 needs 12 bytes but data_offsets \[0, 8\] span 8/);
    const h2 = header(entry('a', 'F16', [2], [0, 8]), entry('b', 'F32', [2], [8, 16]));
    expectRejects(read(withHeader(h2)), ErrorCodes.SHAPE_MISMATCH, SRC, /dtype F16 needs 4 bytes/);
  });
});

describe('hostile safetensors: data offsets and coverage', () => {
  it.each([
    ['missing', undefined],
    ['one number', [0]],
    ['three numbers', [0, 8, 16]],
    ['strings', ['0', '8']],
    ['fractions', [0, 7.5]],
    ['beyond 2^53', [0, 2 ** 60]],
  ])('data_offsets that are %s are BAD_HEADER', (_label, offsets) => {
    const h = `{"a":{"dtype":"F32","shape":[2]${offsets === undefined ? '' : `,"data_offsets":${JSON.stringify(offsets)}`}}}`;
    expectRejects(read(withHeader(h, DATA.subarray(0, 8))), ErrorCodes.BAD_HEADER, SRC, /tensor "a" has data_offsets .*expected \[begin, end\] integers/);
  });

  it.each([
    ['past the end of the data', [8, 24]],
    ['negative', [-8, 0]],
    ['reversed', [16, 8]],
  ])('a range %s is BAD_OFFSET', (_label, offsets) => {
    const h = header(entry('a', 'F32', [2], [0, 8]), entry('b', 'F32', [2], offsets));
    expectRejects(read(withHeader(h)), ErrorCodes.BAD_OFFSET, SRC, new RegExp(`tensor "b" has data_offsets \\[${offsets[0]}, ${offsets[1]}\\], outside the data area of 16 bytes`));
  });

  it('two tensors sharing bytes are OVERLAP, naming both', () => {
    const h = header(entry('a', 'F32', [3], [0, 12]), entry('b', 'F32', [2], [8, 16]));
    expectRejects(read(withHeader(h)), ErrorCodes.OVERLAP, SRC, /tensor "b" \[8, 16\] overlaps tensor "a" \[0, 12\]/);
    // Two names for the very same bytes are an overlap too.
    const h2 = header(entry('a', 'F32', [4], [0, 16]), entry('alias', 'F32', [4], [0, 16]));
    expectRejects(read(withHeader(h2)), ErrorCodes.OVERLAP, SRC, /overlaps/);
    // A zero-size tensor placed inside another tensor's bytes is refused as well.
    const h3 = header(entry('a', 'F32', [4], [0, 16]), entry('z', 'F32', [0], [4, 4]));
    expectRejects(read(withHeader(h3)), ErrorCodes.OVERLAP, SRC, /tensor "z" \[4, 4\] overlaps tensor "a"/);
  });

  it('bytes between tensors (a hole) are TRAILING_DATA', () => {
    const h = header(entry('a', 'F32', [1], [0, 4]), entry('b', 'F32', [2], [8, 16]));
    expectRejects(read(withHeader(h)), ErrorCodes.TRAILING_DATA, SRC, /data bytes \[4, 8\) before tensor "b" belong to no tensor \(a hole\)/);
  });

  it('data that does not start at offset 0 is a hole (TRAILING_DATA)', () => {
    const h = header(entry('a', 'F32', [3], [4, 16]));
    expectRejects(read(withHeader(h)), ErrorCodes.TRAILING_DATA, SRC, /data bytes \[0, 4\) before tensor "a"/);
  });

  it('bytes after the last tensor are TRAILING_DATA', () => {
    expectRejects(read(withHeader(OK, concat(DATA, new Uint8Array(3)))), ErrorCodes.TRAILING_DATA, SRC, /3 trailing bytes after the last tensor/);
    // A header with no tensors at all but some data.
    expectRejects(read(withHeader('{}', new Uint8Array(1))), ErrorCodes.TRAILING_DATA, SRC, /1 trailing bytes/);
  });

  it('a duplicate tensor name is BAD_HEADER naming it (JSON.parse would keep the last and drop the first)', () => {
    const h = header(entry('a', 'F32', [2], [0, 8]), entry('a', 'F32', [2], [8, 16]));
    expectRejects(read(withHeader(h)), ErrorCodes.BAD_HEADER, SRC, /duplicate key: tensor "a" appears twice/);
  });

  it('a file whose data was cut short fails on the offsets, naming the tensor', () => {
    const bytes = withHeader(OK);
    expectRejects(read(bytes.subarray(0, bytes.byteLength - 4)), ErrorCodes.BAD_OFFSET, SRC, /tensor "b" has data_offsets \[8, 16\], outside the data area of 12 bytes/);
  });

  it('an empty file with an empty header is valid (no tensors, no data)', () => {
    const file = readSafetensors(withHeader('{}', new Uint8Array()), SRC);
    expect(file.tensors.size).toBe(0);
  });
});
