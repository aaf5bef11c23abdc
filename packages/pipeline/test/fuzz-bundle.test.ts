import { fileURLToPath } from 'node:url';
import * as core from '@ultrasketch/core';
import * as format from '@ultrasketch/format';
import * as model from '@ultrasketch/model';
import { beforeAll, describe, expect, it } from 'vitest';
// The fuzzing engine and the reader table are plain ESM shared with bench/fuzz.mjs (which runs them 10^5 times).
import { GEN, applySafetensorsStruct } from '../../../bench/fuzz/lib.mjs';
import { bundleSealer, compressedBundleSeeds, fuzzReaders } from '../../../bench/fuzz/readers.mjs';
import { requireShared } from '../../../test/require-shared.js';
import * as pipeline from '../src/index.js';
import { expectSeedsRead, outcomeKinds } from '../../format/test/fuzz-checks.js';

/**
 * Property-based tests of bundle reading on real bundles: compress() makes one bundle per codec family from
 * stories260K (rtn, binary, sketch, LittleBit, HashedNets), and fast-check (FIXED seed, a few hundred cases)
 * mutates them: JSON edits of the header and of every metadata section (model config, codec entries and
 * options, vectors, checksums, ...), tensor data changed or resized with the checksums and the metadata checksum
 * re-sealed (so the edit reaches the codecs and the model-config checks instead of stopping at a checksum),
 * byte flips, truncations and appended bytes. Both layers are checked: the format's readBundle and the
 * pipeline's loadBundleFromBytes (model config, tensors against it, the embedded tokenizer, accounting).
 * Every case must end in a value or an UltraSketchError, within the allocation bound, the same way twice.
 */

const SEED = 18_2026;
const RUNS = 150;
const MODEL_PATH = fileURLToPath(new URL('../../../../shared/models/stories260K/stories260K.bin', import.meta.url));
const HAVE_SHARED = requireShared('pipeline bundle fuzz tests', [MODEL_PATH]);

describe.runIf(HAVE_SHARED)('fuzz: bundles compress() made, mutated, read by readBundle and loadBundleFromBytes', () => {
  let bundles: Array<{ label: string; bytes: Uint8Array }> = [];
  const readers = fuzzReaders({
    core,
    format,
    model,
    pipeline,
    registerCodecs: pipeline.registerAllCodecs,
    sharedFile: () => undefined,
    bundleSeeds: async () => bundles,
  }).filter((r: { name: string }) => r.name === 'bundle' || r.name === 'bundle-load');
  const seeds = new Map<string, any[]>();
  beforeAll(async () => {
    bundles = await compressedBundleSeeds(pipeline, MODEL_PATH);
    for (const r of readers) seeds.set(r.name, await r.seeds());
  });

  it.each(['bundle', 'bundle-load'])('%s: every compressed bundle reads', (name) => {
    const r = readers.find((x: { name: string }) => x.name === name)!;
    const list = seeds.get(name)!;
    expect(list.map((s) => s.label)).toHaveLength(5);
    expectSeedsRead(r, list, { reseal: false, verify: true });
  });

  it.each(['bundle', 'bundle-load'])('%s: a mutated bundle reads or fails with a typed error, within its allocation bound, the same way twice', (name) => {
    const r = readers.find((x: { name: string }) => x.name === name)!;
    const list = seeds.get(name)!;
    const kinds = outcomeKinds(r, list, SEED, RUNS);
    // Re-sealing must let a fair share of the edits through every integrity check, to the codecs and the
    // model-config checks behind them.
    expect(kinds.get('ok') ?? 0, JSON.stringify([...kinds])).toBeGreaterThan(RUNS / 20);
    expect([...kinds.keys()].filter((k) => k !== 'ok' && k !== 'crash').length, JSON.stringify([...kinds])).toBeGreaterThanOrEqual(5);
  });

  // Found by fuzzing the snapshot before JSON nesting was bounded (411ff89): a value nested 100000 deep in a
  // re-sealed bundle's metadata overflowed the stack in JSON.stringify while the error message was built, in
  // usk.ts (model_config fields) and in the codecs' option checks (baselines intOption, float dtype, core
  // badOption for sketch/hashednets, littlebit). The metadata is now refused before any of them sees it.
  it.each([
    ['rtn 4-bit', 'model_config', ['dim']],
    ['rtn 4-bit', 'model_config', ['ropeLayout']],
    ['rtn 4-bit', 'weights', ['model.layers.0.self_attn.q_proj.weight', 'options', 'bits']],
    ['sketch 1 bpw', 'weights', ['model.layers.0.self_attn.q_proj.weight', 'options', 'bpw']],
    ['littlebit 1.2 bpw', 'weights', ['model.layers.0.mlp.up_proj.weight', 'options', 'bpw']],
  ])('%s bundle: metadata %s.%s nested 100000 deep is a typed error, not a stack overflow', (label, key, path) => {
    const seed = bundles.find((b) => b.label.endsWith(label))!;
    const edit = { k: 'meta', key, edit: { path, a: 'set', v: { [GEN]: { nest: 100_000 } } } };
    const bytes = applySafetensorsStruct(seed.bytes, [edit], { reseal: true, sealMetadata: bundleSealer(format) });
    expect(() => pipeline.loadBundleFromBytes(bytes, 'deep.usk')).toThrow(expect.objectContaining({ name: 'UltraSketchError' }));
  });
});
