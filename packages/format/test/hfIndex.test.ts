import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '@ultrasketch/core';
import { parseHfShardIndex, readSafetensors, shardNameProblem } from '../src/index.js';
import { expectRejects, readShared, sharedPath } from './helpers.js';
import { requireShared } from '../../../test/require-shared.js';

/** `model.safetensors.index.json`: the real sharded stories3M directory, and indexes that must be refused. */

const SRC = 'model.safetensors.index.json';
const DIR = 'models/stories3M/hf-sharded';
const HAVE = requireShared('format shard-index tests', [sharedPath(`${DIR}/${SRC}`), sharedPath('models/stories3M/hf/model.safetensors')]);

describe.skipIf(!HAVE)('the stories3M sharded directory', () => {
  it('maps all 56 tensors to the two shards, each tensor to the shard that holds it, and total_size is the data of both', () => {
    const index = parseHfShardIndex(JSON.parse(readFileSync(sharedPath(`${DIR}/${SRC}`), 'utf8')), SRC);
    expect(index.shards).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(index.weightMap.size).toBe(56);
    expect(index.totalSize).toBe(6_296_448);
    // Every shard holds exactly the tensors the index assigns to it, and together they are the unsharded file's.
    let dataBytes = 0;
    const all = new Set<string>();
    for (const shard of index.shards) {
      const file = readSafetensors(readShared(`${DIR}/${shard}`), shard);
      const assigned = [...index.weightMap].filter(([, s]) => s === shard).map(([n]) => n);
      expect([...file.tensors.keys()].sort()).toEqual(assigned.sort());
      for (const [name, t] of file.tensors) {
        all.add(name);
        dataBytes += t.data.byteLength;
      }
    }
    expect(dataBytes).toBe(index.totalSize);
    const single = readSafetensors(readShared('models/stories3M/hf/model.safetensors'), 'model.safetensors');
    expect([...all].sort()).toEqual([...single.tensors.keys()].sort());
  });
});

describe('shard index validation', () => {
  const ok = { metadata: { total_size: 16 }, weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors', 'c.weight': 'model-00001-of-00002.safetensors' } };

  it('reads a valid index: shards in order of first appearance, each once', () => {
    const index = parseHfShardIndex(ok, SRC);
    expect(index.shards).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect([...index.weightMap.keys()]).toEqual(['a.weight', 'b.weight', 'c.weight']);
  });

  it('metadata and total_size are optional', () => {
    expect(parseHfShardIndex({ weight_map: ok.weight_map }, SRC).totalSize).toBeNull();
    expect(parseHfShardIndex({ metadata: {}, weight_map: ok.weight_map }, SRC).totalSize).toBeNull();
  });

  it.each([
    ['../model.safetensors', /contains a path separator/],
    ['sub/model.safetensors', /contains a path separator/],
    ['/etc/passwd.safetensors', /contains a path separator/],
    ['..\\model.safetensors', /contains a path separator/],
    ['..', /is a directory reference/],
    ['.', /is a directory reference/],
    ['', /is empty/],
    ['C:model.safetensors', /contains ":"/],
    ['model.safetensors\u0000.txt', /contains a control character/],
    ['model.bin', /does not end in .safetensors/],
  ])('a shard named %j is BAD_HEADER (%s)', (shard, why) => {
    const index = { weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': shard } };
    const err = expectRejects(() => parseHfShardIndex(index, SRC), ErrorCodes.BAD_HEADER, SRC, new RegExp(`entry "b.weight" names shard .*, which ${why.source}`));
    expect(err.hint).toMatch(/plain .safetensors file name/);
    expect(shardNameProblem(shard)).toBeDefined();
  });

  it.each([
    ['not an object', 'weights', /the index is a string, expected a JSON object/],
    ['no weight_map', { metadata: {} }, /weight_map is missing, expected an object/],
    ['weight_map an array', { weight_map: ['a'] }, /weight_map is an array/],
    ['an empty weight_map', { weight_map: {} }, /weight_map is empty/],
    ['a shard that is a number', { weight_map: { a: 1 } }, /entry "a" is a number, expected a shard file name/],
    ['a shard that is null', { weight_map: { a: null } }, /entry "a" is null/],
    ['an empty tensor name', { weight_map: { '': 'm.safetensors' } }, /empty tensor name/],
    ['metadata an array', { metadata: [], weight_map: { a: 'm.safetensors' } }, /metadata is an array, expected an object/],
    ['total_size negative', { metadata: { total_size: -1 }, weight_map: { a: 'm.safetensors' } }, /metadata.total_size is -1, expected a byte count/],
    ['total_size a string', { metadata: { total_size: '16' }, weight_map: { a: 'm.safetensors' } }, /metadata.total_size is a string/],
  ])('%s is BAD_HEADER', (_label, json, problem) => {
    expectRejects(() => parseHfShardIndex(json, SRC), ErrorCodes.BAD_HEADER, SRC, problem);
  });

  it('a tensor named "__proto__" is an ordinary entry', () => {
    const index = parseHfShardIndex(JSON.parse('{"weight_map":{"__proto__":"m.safetensors"}}'), SRC);
    expect(index.weightMap.get('__proto__')).toBe('m.safetensors');
  });
});
