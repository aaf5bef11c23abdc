import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { GGUF_LIMITS, decodeGgufTensor, getGgufFloat32, parseGgufHeader, readGguf } from '../src/index.js';
import { concat, expectRejects, readShared, sharedPath } from './helpers.js';
import { G, T, arr, f32Data, kv, patch, rawGguf, simpleGguf, str, tensorInfo, tensorInfoFields, u32, u64, u8 } from './ggufBytes.js';
import { requireShared } from '../../../test/require-shared.js';

/**
 * Malformed GGUF files: real files cut or patched, and files built byte by byte. Each must be refused
 * with a typed error naming the file and the problem, before the reader allocates anything sized by the
 * bad field.
 */

const SRC = 'evil.gguf';
const read = (bytes: Uint8Array) => () => readGguf(bytes, SRC);
const REAL = 'models/stories260K/gguf/stories260K-q8_0.gguf';
const HAVE = requireShared('format GGUF hostile tests', [sharedPath(REAL)]);

/** A small valid file: two F32 tensors and two metadata entries. */
const KVS = [kv('general.architecture', T.string, str('llama')), kv('llama.block_count', T.u32, u32(1))];
const TENSORS = [
  { name: 'a', dims: [4, 2], type: G.F32, data: f32Data([1, 2, 3, 4, 5, 6, 7, 8]) },
  { name: 'b', dims: [3], type: G.F32, data: f32Data([9, 10, 11]) },
];
const GOOD = simpleGguf(TENSORS, KVS);
/** The fixed 24-byte preamble: magic, version, tensor count, metadata count. */
const PREAMBLE = (tensors: bigint, kvs: bigint, version = 3) => concat(new TextEncoder().encode('GGUF'), u32(version), u64(tensors), u64(kvs));

/** ArrayBuffer memory grown while running `fn` (which must throw): the reader allocated nothing big. */
function arrayBufferGrowth(fn: () => unknown): number {
  const before = process.memoryUsage().arrayBuffers;
  try {
    fn();
  } catch {
    // the caller checks the error separately
  }
  return process.memoryUsage().arrayBuffers - before;
}

describe('hostile GGUF: the preamble', () => {
  it('the baseline file reads', () => {
    const g = readGguf(GOOD, SRC);
    expect([...g.tensors.keys()]).toEqual(['a', 'b']);
    expect([...getGgufFloat32(g, 'b')]).toEqual([9, 10, 11]);
  });

  it.each([
    ['"GGUG"', new TextEncoder().encode('GGUGxxxxxxxx')],
    ['a safetensors header', concat(u64(100), new TextEncoder().encode('{"a":{}}'))],
    ['a llama2.c v2 checkpoint ("ak42")', concat(u32(0x616b3432), u32(2))],
    ['two wrong bytes', Uint8Array.of(0x47, 0x00)],
  ])('%s is BAD_MAGIC', (_label, bytes) => {
    expectRejects(read(bytes), ErrorCodes.BAD_MAGIC, SRC, /not a GGUF file: it starts with bytes/);
  });

  it.each([0, 1, 2, 3])('a file of %i bytes of the magic is TRUNCATED', (n) => {
    expectRejects(read(GOOD.subarray(0, n)), ErrorCodes.TRUNCATED, SRC, /file is truncated/);
  });

  it.each([
    [1, /obsolete/],
    [0, /not a valid GGUF/],
    [4, /not a valid GGUF/],
    [0x03000000, /big-endian/],
    [0x02000000, /big-endian/],
  ])('version %i is BAD_VERSION with a fitting hint', (version, hint) => {
    const err = expectRejects(read(patch(GOOD, 4, u32(version))), ErrorCodes.BAD_VERSION, SRC, new RegExp(`GGUF version ${version} is not supported`));
    expect(err.hint).toMatch(hint);
  });

  it.each([
    ['tensor count 2^64 − 1', PREAMBLE(2n ** 64n - 1n, 0n), /claims 18446744073709551615 tensors, more than the limit/],
    ['tensor count just over the limit', PREAMBLE(BigInt(GGUF_LIMITS.maxTensorCount) + 1n, 0n), /tensors, more than the limit/],
    ['metadata count 2^63', PREAMBLE(0n, 2n ** 63n), /claims 9223372036854775808 metadata entries, more than the limit/],
  ])('%s is LIMIT_EXCEEDED at once, without allocating', (_label, bytes, problem) => {
    const file = concat(bytes, new Uint8Array(64));
    expectRejects(read(file), ErrorCodes.LIMIT_EXCEEDED, SRC, problem);
    expect(arrayBufferGrowth(read(file))).toBeLessThan(1 << 20);
  });

  it('counts within the limits but more than the file can hold are TRUNCATED before any entry is read', () => {
    const file = concat(PREAMBLE(BigInt(GGUF_LIMITS.maxTensorCount), 1000n), new Uint8Array(100));
    expectRejects(read(file), ErrorCodes.TRUNCATED, SRC, /1000 metadata entries and 1048576 tensor infos need at least \d+ bytes, only 100 remain/);
    expect(arrayBufferGrowth(read(file))).toBeLessThan(1 << 20);
  });
});

describe('hostile GGUF: metadata', () => {
  const withKvs = (...kvs: Uint8Array[]) => rawGguf({ kvs });

  it('a key length past the end of the file is TRUNCATED; a key of 2^62 bytes is LIMIT_EXCEEDED without allocating', () => {
    expectRejects(read(withKvs(concat(u64(1000), new TextEncoder().encode('general')))), ErrorCodes.TRUNCATED, SRC, /metadata key 0 needs 1000 bytes at offset 32/);
    const huge = withKvs(concat(u64(2n ** 62n), new Uint8Array(16)));
    expectRejects(read(huge), ErrorCodes.LIMIT_EXCEEDED, SRC, /metadata key 0 claims 4611686018427387904 bytes, more than the limit/);
    expect(arrayBufferGrowth(read(huge))).toBeLessThan(1 << 20);
  });

  it('a string value whose length runs past the end of the file is TRUNCATED, naming the key', () => {
    const file = withKvs(kv('general.name', T.string, concat(u64(50), new TextEncoder().encode('stories'))));
    expectRejects(read(file), ErrorCodes.TRUNCATED, SRC, /the value of "general.name" needs 50 bytes/);
  });

  it.each([
    ['2^62 elements', 2n ** 62n],
    ['2^64 − 1 elements', 2n ** 64n - 1n],
    ['one more than the limit', BigInt(GGUF_LIMITS.maxArrayLength) + 1n],
  ])('an array of %s is LIMIT_EXCEEDED without allocating', (_label, count) => {
    const file = withKvs(kv('tokenizer.ggml.scores', T.array, arr(T.f32, count, new Uint8Array(8))));
    expectRejects(read(file), ErrorCodes.LIMIT_EXCEEDED, SRC, new RegExp(`"tokenizer.ggml.scores" claims ${count} elements, more than the limit`));
    expect(arrayBufferGrowth(read(file))).toBeLessThan(1 << 20);
  });

  it.each([
    ['u64', T.u64, 8],
    ['f32', T.f32, 4],
    ['string', T.string, 8],
    ['array', T.array, 12],
  ])('an array of 2^23 %s elements (within the limit) in a tiny file is TRUNCATED before allocating', (label, type, least) => {
    const n = 1 << 23;
    const file = withKvs(kv('x', T.array, arr(type, n, new Uint8Array(40))));
    expectRejects(read(file), ErrorCodes.TRUNCATED, SRC, new RegExp(`claims ${n} ${label === 'u64' ? 'uint64' : label === 'f32' ? 'float32' : label} elements, which need at least ${n * least} bytes`));
    // 2^23 × 8 bytes would be 64 MiB if the count were trusted.
    expect(arrayBufferGrowth(read(file))).toBeLessThan(1 << 20);
  });

  it('arrays nested deeper than the limit are LIMIT_EXCEEDED', () => {
    let value = arr(T.u8, 1, u8(7));
    for (let d = 1; d < GGUF_LIMITS.maxArrayDepth; d++) value = arr(T.array, 1, value);
    expect(readGguf(withKvs(kv('deep', T.array, value)), SRC).metadata.get('deep')!.type).toBe('array');
    const tooDeep = arr(T.array, 1, value);
    expectRejects(read(withKvs(kv('deep', T.array, tooDeep))), ErrorCodes.LIMIT_EXCEEDED, SRC, new RegExp(`nests arrays ${GGUF_LIMITS.maxArrayDepth + 1} deep`));
  });

  it.each([
    ['an unknown value type', kv('k', 13, u32(0)), /metadata "k" has unknown value type 13/],
    ['an unknown array element type', kv('k', T.array, arr(99, 1, u32(0))), /an array in "k" has unknown value type 99/],
    ['a bool stored as 2', kv('k', T.bool, u8(2)), /"k" is a bool stored as 2/],
    ['a bool array element stored as 255', kv('k', T.array, arr(T.bool, 2, u8(1), u8(255))), /element 1 of "k" is a bool stored as 255/],
    ['a key that is not UTF-8', kv(Uint8Array.of(0x61, 0xff), T.u8, u8(1)), /metadata key 0 at offset 32 is not valid UTF-8/],
    ['a string value that is not UTF-8 (overlong "/")', kv('k', T.string, str(Uint8Array.of(0xc0, 0xaf))), /the value of "k" at offset \d+ is not valid UTF-8/],
    ['general.alignment as a uint64', kv('general.alignment', T.u64, u64(32)), /general.alignment is a uint64, expected a uint32/],
    ['general.alignment 48', kv('general.alignment', T.u32, u32(48)), /general.alignment 48 is not a power of two/],
    ['general.alignment 0', kv('general.alignment', T.u32, u32(0)), /general.alignment 0 is not a power of two/],
  ])('%s is BAD_HEADER', (_label, entry, problem) => {
    expectRejects(read(withKvs(entry)), ErrorCodes.BAD_HEADER, SRC, problem);
  });

  it('a key given twice is BAD_HEADER (readers disagree on which wins)', () => {
    const file = withKvs(kv('general.name', T.string, str('a')), kv('general.name', T.string, str('b')));
    const err = expectRejects(read(file), ErrorCodes.BAD_HEADER, SRC, /metadata key "general.name" appears twice/);
    expect(err.hint).toMatch(/each key once/);
  });

  it('a header larger than a (tightened) limit is LIMIT_EXCEEDED, also when streaming', () => {
    const tight = { ...GGUF_LIMITS, maxHeaderBytes: 40 };
    expectRejects(() => readGguf(GOOD, SRC, tight), ErrorCodes.LIMIT_EXCEEDED, SRC, /the header is larger than the limit of 40 bytes/);
    // Streaming asks for more only up to the limit, then refuses.
    const r = parseGgufHeader(GOOD.subarray(0, 24), GOOD.byteLength, SRC, tight);
    expect(r).toEqual({ done: false, needBytes: 40 });
    expectRejects(() => parseGgufHeader(GOOD.subarray(0, 40), GOOD.byteLength, SRC, tight), ErrorCodes.LIMIT_EXCEEDED, SRC, /larger than the limit of 40 bytes/);
  });
});

describe('hostile GGUF: tensor infos', () => {
  const one = (info: Uint8Array, data = new Uint8Array(64)) => rawGguf({ infos: [info], data });

  it.each([
    ['0 dimensions', tensorInfo('w', [], G.F32, 0), ErrorCodes.BAD_DIMENSION, /"w" has 0 dimensions/],
    ['5 dimensions', tensorInfo('w', [1, 1, 1, 1, 1], G.F32, 0), ErrorCodes.BAD_DIMENSION, /"w" has 5 dimensions \(1 to 4/],
    ['a zero dimension', tensorInfo('w', [4, 0], G.F32, 0), ErrorCodes.BAD_DIMENSION, /"w" has dimension 1 = 0/],
    ['a dimension of 2^64 − 1', tensorInfo('w', [2n ** 64n - 1n], G.F32, 0), ErrorCodes.BAD_DIMENSION, /dimension 0 = 18446744073709551615/],
    ['dimensions whose product overflows 2^64', tensorInfo('w', [2n ** 31n, 2n ** 31n, 2n ** 31n], G.F32, 0), ErrorCodes.LIMIT_EXCEEDED, /"w" has more than the limit of \d+ elements/],
    ['an unknown ggml type (99)', tensorInfo('w', [4], 99, 0), ErrorCodes.BAD_DTYPE, /"w" has unknown ggml type 99/],
    ['a removed ggml type (4, Q4_2)', tensorInfo('w', [4], 4, 0), ErrorCodes.BAD_DTYPE, /unknown ggml type 4/],
    ['rows that are not whole blocks (Q8_0, 33 values)', tensorInfo('w', [33, 2], G.Q8_0, 0), ErrorCodes.BAD_DIMENSION, /rows of 33 values, not a multiple of the Q8_0 block of 32/],
    ['a misaligned offset', tensorInfo('w', [4], G.F32, 4), ErrorCodes.BAD_OFFSET, /"w" has offset 4, not a multiple of the alignment 32/],
    ['an empty name', tensorInfo('', [4], G.F32, 0), ErrorCodes.BAD_HEADER, /tensor 0 has an empty name/],
  ])('%s is refused', (_label, info, code, problem) => {
    expectRejects(read(one(info)), code, SRC, problem);
  });

  it('a dimension product that overflows is refused without allocating', () => {
    const file = one(tensorInfo('w', [2n ** 31n, 2n ** 31n], G.F32, 0));
    expect(arrayBufferGrowth(read(file))).toBeLessThan(1 << 20);
  });

  it('a tensor name given twice is BAD_HEADER', () => {
    const file = rawGguf({ infos: [tensorInfo('w', [4], G.F32, 0), tensorInfo('w', [4], G.F32, 32)], data: new Uint8Array(64) });
    expectRejects(read(file), ErrorCodes.BAD_HEADER, SRC, /tensor "w" appears twice/);
  });

  it.each([
    ['2^40', 2n ** 40n],
    ['2^64 − 32', 2n ** 64n - 32n],
    ['just past the end', 64n],
  ])('an offset of %s (past the end of the file) is BAD_OFFSET naming the tensor', (_label, offset) => {
    const file = rawGguf({ infos: [tensorInfo('a', [8], G.F32, 0), tensorInfo('b', [4], G.F32, offset)], data: new Uint8Array(48) });
    expectRejects(read(file), ErrorCodes.BAD_OFFSET, SRC, new RegExp(`tensor "b" has offset ${offset}: its 16 bytes at file byte \\d+ lie past the end of the \\d+-byte file`));
  });

  it('overlapping tensors are OVERLAP naming both', () => {
    const file = rawGguf({ infos: [tensorInfo('a', [16], G.F32, 0), tensorInfo('b', [4], G.F32, 32)], data: new Uint8Array(64) });
    expectRejects(read(file), ErrorCodes.OVERLAP, SRC, /tensors "a" \[0, 64\) and "b" \[32, 48\) overlap/);
    // Two tensors at the same offset (listed in either order).
    const same = rawGguf({ infos: [tensorInfo('b', [4], G.F32, 0), tensorInfo('a', [4], G.F32, 0)], data: new Uint8Array(64) });
    expectRejects(read(same), ErrorCodes.OVERLAP, SRC, /overlap/);
  });
});

describe.skipIf(!HAVE)('hostile GGUF: a real file (stories260K-q8_0.gguf) cut and patched', () => {
  const bytes = HAVE ? readShared(REAL) : new Uint8Array();
  const header = HAVE ? readGguf(bytes, REAL) : undefined;

  it('cut at every byte of the preamble, every 37th byte of the header, and through the data: TRUNCATED each time', () => {
    const cuts = new Set<number>();
    for (let n = 0; n < 64; n++) cuts.add(n);
    for (let n = 64; n < header!.dataOffset + 64; n += 37) cuts.add(n);
    for (const t of header!.tensors.values()) {
      cuts.add(t.fileOffset); // exactly at a tensor's start
      cuts.add(t.fileOffset + 1);
      cuts.add(t.fileOffset + t.byteLength - 1);
    }
    cuts.add(bytes.byteLength - 1);
    let checked = 0;
    for (const n of cuts) {
      if (n >= bytes.byteLength) continue;
      let caught: unknown;
      try {
        readGguf(bytes.subarray(0, n), REAL);
      } catch (err) {
        caught = err;
      }
      expect(caught, `cut at ${n}`).toBeInstanceOf(UltraSketchError);
      expect((caught as UltraSketchError).code, `cut at ${n}: ${(caught as Error).message}`).toBe(ErrorCodes.TRUNCATED);
      checked++;
    }
    expect(checked).toBeGreaterThan(500);
  });

  it('a tensor offset moved past the end is BAD_OFFSET; moved onto its neighbour is OVERLAP; misaligned is BAD_OFFSET', () => {
    const name = 'blk.0.attn_q.weight';
    const at = tensorInfoFields(bytes, name);
    expectRejects(() => readGguf(patch(bytes, at.offset, u64(2n ** 40n)), REAL), ErrorCodes.BAD_OFFSET, REAL, new RegExp(`tensor "${name}" has offset 1099511627776`));
    const neighbour = [...header!.tensors.values()].find((t) => t.offset > 0 && t.name !== name)!;
    expectRejects(() => readGguf(patch(bytes, at.offset, u64(neighbour.offset)), REAL), ErrorCodes.OVERLAP, REAL, /overlap in the data section/);
    const own = header!.tensors.get(name)!.offset;
    expectRejects(() => readGguf(patch(bytes, at.offset, u64(own + 2)), REAL), ErrorCodes.BAD_OFFSET, REAL, /not a multiple of the alignment 32/);
  });

  it('an unknown tensor type is BAD_DTYPE; a known type that does not fit the bytes shifts every later range (OVERLAP)', () => {
    const at = tensorInfoFields(bytes, 'blk.1.ffn_up.weight');
    expectRejects(() => readGguf(patch(bytes, at.type, u32(77)), REAL), ErrorCodes.BAD_DTYPE, REAL, /"blk.1.ffn_up.weight" has unknown ggml type 77/);
    // Q8_0 → F32 makes the tensor ~3.8 × longer: it runs over the next tensor's bytes.
    expectRejects(() => readGguf(patch(bytes, at.type, u32(G.F32)), REAL), ErrorCodes.OVERLAP, REAL, /"blk.1.ffn_up.weight" \[/);
  });

  it('a huge tensor count or dimension in the real header is refused without allocating', () => {
    const bigCount = patch(bytes, 8, u64(2n ** 62n));
    expectRejects(() => readGguf(bigCount, REAL), ErrorCodes.LIMIT_EXCEEDED, REAL, /4611686018427387904 tensors/);
    const at = tensorInfoFields(bytes, 'token_embd.weight');
    const bigDim = patch(bytes, at.dims + 8, u64(2n ** 40n));
    expectRejects(() => readGguf(bigDim, REAL), ErrorCodes.BAD_DIMENSION, REAL, /"token_embd.weight" has dimension 1 = 1099511627776/);
    expect(arrayBufferGrowth(() => readGguf(bigDim, REAL))).toBeLessThan(1 << 20);
  });

  it('streaming: a head of 64 bytes with a hostile count fails at once instead of asking for more', () => {
    const bigCount = patch(bytes, 8, u64(2n ** 62n));
    expectRejects(() => parseGgufHeader(bigCount.subarray(0, 64), bytes.byteLength, REAL), ErrorCodes.LIMIT_EXCEEDED, REAL, /tensors/);
    // A string length beyond the FILE (not just the head) is TRUNCATED at once too.
    const longKey = patch(bytes, 24, u64(bytes.byteLength));
    expectRejects(() => parseGgufHeader(longKey.subarray(0, 64), bytes.byteLength, REAL), ErrorCodes.TRUNCATED, REAL, /metadata key 0 needs/);
    // The file size must cover the bytes given.
    expectRejects(() => parseGgufHeader(bytes.subarray(0, 100), 50, REAL), ErrorCodes.BAD_ARGUMENT, REAL, /file size 50/);
  });
});

describe('hostile GGUF: random corruption', () => {
  it('any byte flipped or any cut of a small valid file reads or fails with a typed error, and decoding what reads never throws untyped', () => {
    // A file exercising most parts: metadata of several types, an F32 and a Q8_0 tensor.
    const q8 = new Uint8Array(34);
    q8[1] = 0x3c; // d = 1
    const base = simpleGguf(
      [...TENSORS, { name: 'q', dims: [32], type: G.Q8_0, data: q8 }],
      [...KVS, kv('tokenizer.ggml.tokens', T.array, arr(T.string, 2, str('a'), str('▁b'))), kv('x', T.array, arr(T.array, 1, arr(T.i32, 1, u32(5))))],
    );
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.nat(base.byteLength - 1), value: fc.integer({ min: 0, max: 255 }) }),
      fc.record({ kind: fc.constant('cut' as const), at: fc.nat(base.byteLength - 1), value: fc.constant(0) }),
    );
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (ms) => {
        let bytes: Uint8Array = base;
        for (const m of ms) {
          if (m.kind === 'cut') bytes = bytes.subarray(0, m.at);
          else if (bytes.byteLength > 0) bytes = patch(bytes, m.at % bytes.byteLength, Uint8Array.of(m.value));
        }
        try {
          const g = readGguf(bytes, SRC);
          for (const t of g.tensors.values()) decodeGgufTensor(t, bytes.subarray(t.fileOffset, t.fileOffset + t.byteLength), SRC);
        } catch (err) {
          if (!(err instanceof UltraSketchError)) throw err;
          expect(err.source).toBe(SRC);
        }
      }),
      { numRuns: 400, seed: 11 },
    );
  });
});
