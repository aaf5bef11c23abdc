import { ErrorCodes } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import { LIMITS, findDuplicateKey, readBundle, readSafetensors, scanJson, writeBundle } from '../src/index.js';
import { editMetadata, expectBundleError, fixtureInput, specParse } from './bundleFixture.js';
import { expectRejects } from './helpers.js';

/**
 * Duplicate JSON keys: JSON.parse keeps the last of two equal keys, other readers the first or neither, so
 * a header (or a metadata JSON value) with one means different things to different tools. Refused at
 * every level, with the key named.
 */

const SRC = 'dup.safetensors';

/** A safetensors file whose header is exactly `json` (padded with spaces), followed by `data`. */
function file(json: string, data = new Uint8Array(8)): Uint8Array {
  const h = new TextEncoder().encode(json);
  const n = Math.ceil(h.byteLength / 8) * 8;
  const out = new Uint8Array(8 + n + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(h, 8);
  out.fill(0x20, 8 + h.byteLength, 8 + n);
  out.set(data, 8 + n);
  return out;
}

const A = '{"dtype":"F32","shape":[2],"data_offsets":[0,8]}';

describe('findDuplicateKey (on valid JSON)', () => {
  it.each([
    ['{"a":1,"a":1}', 'a', []],
    ['{"a":1,"b":{"x":1,"y":2,"x":3}}', 'x', ['b']],
    ['{"a":[{"k":1},{"k":2,"k":3}]}', 'k', ['a']],
    ['{"a":1,"\\u0061":2}', 'a', []], // the same key, escaped
    ['{"":1,"":2}', '', []],
    ['{"__proto__":1,"__proto__":2}', '__proto__', []],
    ['{"a\\"b":1,"a\\"b":2}', 'a"b', []],
  ] as const)('%s: finds %j', (json, key, path) => {
    expect(findDuplicateKey(json)).toEqual({ key, path });
  });

  it.each([
    '{"a":1,"b":1}',
    '{"a":{"a":{"a":1}}}', // the same key at different levels
    '[{"k":1},{"k":2}]', // the same key in sibling objects
    '{"a":"a","b":"a"}', // values equal to keys
    '{"a":"{\\"a\\":1,\\"a\\":2}"}', // a duplicate inside a string value is text, not a key
    '{"a":"}","b":"{","c":"[\\\\"}', // brackets and escaped backslashes inside strings
    '{"a":[1,"x",{"b":null}],"c":true}',
    '"just a string"',
    '[]',
  ])('%s: none', (json) => {
    JSON.parse(json); // precondition: valid JSON
    expect(findDuplicateKey(json)).toBeUndefined();
  });

  it('is iterative: 200,000 levels of nesting do not exhaust the stack', () => {
    const depth = 200_000;
    const deep = `${'{"a":['.repeat(depth)}${']}'.repeat(depth)}`;
    expect(findDuplicateKey(deep)).toBeUndefined();
    const deepDup = `${'{"a":['.repeat(depth)}{"z":1,"z":2}${']}'.repeat(depth)}`;
    expect(findDuplicateKey(deepDup)?.key).toBe('z');
    expect(findDuplicateKey(deepDup)?.path).toHaveLength(depth);
  });

  it('handles an object of 100,000 distinct keys, and finds the one repeated last', () => {
    const keys = Array.from({ length: 100_000 }, (_, i) => `"k${i}":${i}`);
    expect(findDuplicateKey(`{${keys.join(',')}}`)).toBeUndefined();
    expect(findDuplicateKey(`{${keys.join(',')},"k0":0}`)).toEqual({ key: 'k0', path: [] });
  });
});

describe('scanJson: depth', () => {
  it('reports the first container deeper than the limit, with the keys above it; the top level is depth 1', () => {
    expect(scanJson('{"a":{"b":[1]}}', 3)).toBeUndefined();
    expect(scanJson('{"a":{"b":[1]}}', 2)).toEqual({ kind: 'depth', depth: 3, path: ['a', 'b'] });
    expect(scanJson('[[[]]]', 2)).toEqual({ kind: 'depth', depth: 3, path: [] });
    expect(scanJson('"[[[[["', 1)).toBeUndefined(); // brackets inside a string are text
    expect(LIMITS.maxJsonDepth).toBe(64);
  });

  it('a duplicate before the deep part is reported first (text order)', () => {
    expect(scanJson('{"a":1,"a":[[[[]]]]}', 2)).toEqual({ kind: 'duplicate', key: 'a', path: [] });
  });
});

describe('safetensors header: duplicate keys are BAD_HEADER', () => {
  it('the same header without duplicates reads', () => {
    expect(readSafetensors(file(`{"a":${A}}`), SRC).tensors.size).toBe(1);
  });

  it('a tensor name twice, even with identical entries (JSON.parse would silently keep one)', () => {
    expectRejects(() => readSafetensors(file(`{"a":${A},"a":${A}}`), SRC), ErrorCodes.BAD_HEADER, SRC, /duplicate key: tensor "a" appears twice/);
  });

  it('a tensor name twice, once escaped', () => {
    expectRejects(() => readSafetensors(file(`{"a":${A},"\\u0061":${A}}`), SRC), ErrorCodes.BAD_HEADER, SRC, /tensor "a" appears twice/);
  });

  it('__metadata__ twice', () => {
    const json = `{"__metadata__":{"x":"1"},"a":${A},"__metadata__":{"x":"2"}}`;
    expectRejects(() => readSafetensors(file(json), SRC), ErrorCodes.BAD_HEADER, SRC, /__metadata__ appears twice/);
  });

  it('a __metadata__ key twice', () => {
    const json = `{"__metadata__":{"format":"a","format":"b"},"a":${A}}`;
    expectRejects(() => readSafetensors(file(json), SRC), ErrorCodes.BAD_HEADER, SRC, /__metadata__ key "format" appears twice/);
  });

  it.each(['dtype', 'shape', 'data_offsets'])('the field %s twice in a tensor entry', (field) => {
    const entry = A.replace('{', `{"${field}":${field === 'dtype' ? '"F32"' : field === 'shape' ? '[2]' : '[0,8]'},`);
    expectRejects(() => readSafetensors(file(`{"a":${entry}}`), SRC), ErrorCodes.BAD_HEADER, SRC, new RegExp(`tensor "a" has the field "${field}" twice`));
  });

  it('a duplicate deeper in an entry (an extra field the reader otherwise ignores)', () => {
    const entry = A.replace('{', '{"extra":{"k":1,"k":2},');
    expectRejects(() => readSafetensors(file(`{"a":${entry}}`), SRC), ErrorCodes.BAD_HEADER, SRC, /key "k" appears twice in "a" → "extra"/);
  });
});

describe('bundle metadata JSON values: duplicate keys are BAD_HEADER', () => {
  const GOOD = writeBundle(fixtureInput().input);
  const BSRC = 'dup.usk';
  /** Insert a repeated key right after the first "{" of a metadata JSON value (checksum re-sealed). */
  const withDup = (key: string, insert: string) => editMetadata(GOOD, (m) => void (m[key] = m[key]!.replace('{', `{${insert},`)));

  it.each([
    ['model_config', '"dim":9', /metadata "model_config" has the key "dim" twice/],
    ['tokenizer', '"kind":"llama2c"', /metadata "tokenizer" has the key "kind" twice/],
    ['checksums', '"tokenizer.llama2c":"crc32:00000000"', /metadata "checksums" has the key "tokenizer\.llama2c" twice/],
    ['provenance', '"tool":"other"', /metadata "provenance" has the key "tool" twice/],
  ])('in "%s"', (key, insert, problem) => {
    expectBundleError(() => readBundle(withDup(key, insert), BSRC), ErrorCodes.BAD_HEADER, BSRC, problem);
  });

  it('in "weights": a weight listed twice, and a field twice inside one entry', () => {
    const weights = JSON.parse(specParse(GOOD).metadata.weights!) as Record<string, unknown>;
    const [first] = Object.keys(weights);
    const twice = withDup('weights', `${JSON.stringify(first)}:${JSON.stringify(weights[first!])}`);
    expectBundleError(() => readBundle(twice, BSRC), ErrorCodes.BAD_HEADER, BSRC, new RegExp(`"weights" has the key "${first!.replace(/\./g, '\\.')}" twice`));
    const seed = editMetadata(GOOD, (m) => void (m.weights = m.weights!.replace('"seed":', '"seed":1,"seed":')));
    expectBundleError(() => readBundle(seed, BSRC), ErrorCodes.BAD_HEADER, BSRC, /"weights" has the key "seed" twice \(in "model\.embed_tokens\.weight"\)/);
  });
});

describe('bundle metadata JSON values: nesting beyond LIMITS.maxJsonDepth is LIMIT_EXCEEDED', () => {
  const GOOD = writeBundle(fixtureInput().input);
  const BSRC = 'deep.usk';
  const deep = '['.repeat(100_000) + ']'.repeat(100_000);

  it('in model_config', () => {
    const bad = editMetadata(GOOD, (m) => void (m.model_config = m.model_config!.replace('{', `{"x":${deep},`)));
    expectBundleError(() => readBundle(bad, BSRC), ErrorCodes.LIMIT_EXCEEDED, BSRC, /metadata "model_config" nests deeper than the limit of 64 levels \(in "x"\)/);
  });

  it('as a weight\'s rows (whose error message would stringify it and overflow the stack)', () => {
    const bad = editMetadata(GOOD, (m) => void (m.weights = m.weights!.replace(/"rows":\d+/, `"rows":${deep}`)));
    expectBundleError(() => readBundle(bad, BSRC), ErrorCodes.LIMIT_EXCEEDED, BSRC, /metadata "weights" nests deeper than the limit/);
  });
});
