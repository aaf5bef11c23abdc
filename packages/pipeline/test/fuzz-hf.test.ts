import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as core from '@ultrasketch/core';
import * as format from '@ultrasketch/format';
import * as model from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
// The same reader table that bench/fuzz.mjs runs 10^5 times per reader (and its engine, through fuzz-checks).
import { fuzzReaders } from '../../../bench/fuzz/readers.mjs';
import { requireShared } from '../../../test/require-shared.js';
import * as pipeline from '../src/index.js';
import { expectSeedsRead, outcomeKinds } from '../../format/test/fuzz-checks.js';

/**
 * Property-based tests of the Hugging Face directory's JSON files as the pipeline reads them (config.json, the
 * shard index, tokenizer.json through @huggingface/tokenizers), from the real stories260K/stories3M files with
 * JSON-aware and byte edits (FIXED seed): every case ends in a value or an UltraSketchError, within the
 * allocation bound, the same way twice.
 */
const SEED = 11_2026;
const shared = (rel: string) => fileURLToPath(new URL(`../../../../shared/${rel}`, import.meta.url));
const FILES = ['models/stories260K/hf/config.json', 'models/stories3M/hf/config.json', 'models/stories3M/hf-sharded/model.safetensors.index.json', 'models/stories260K/hf/tokenizer.json'];
const HAVE_SHARED = requireShared('pipeline HF JSON fuzz tests', FILES.map(shared));

describe.runIf(HAVE_SHARED)('fuzz: Hugging Face JSON files (config.json, shard index, tokenizer.json)', () => {
  const readers = fuzzReaders({
    core,
    format,
    model,
    pipeline,
    registerCodecs: pipeline.registerAllCodecs,
    sharedFile: (rel: string) => new Uint8Array(readFileSync(shared(rel))),
    bundleSeeds: async () => [],
  }).filter((r: { name: string }) => r.name.startsWith('hf-'));

  // Minimum distinct refusals: config.json edits meet several checks; a tokenizer.json is refused as BAD_HEADER.
  it.each([
    ['hf-config', 250, 2],
    ['hf-tokenizer', 120, 1],
  ])('%s: the real files read; mutated ones read or fail typed, within bounds, deterministically', async (name, runs, minKinds) => {
    const r = readers.find((x: { name: string }) => x.name === name)!;
    expect(r, `${name} is in the reader table`).toBeDefined();
    const seeds = await r.seeds();
    expectSeedsRead(r, seeds);
    const kinds = outcomeKinds(r, seeds, SEED, runs);
    // The edits must reach past the JSON parser: some cases still read, and several distinct refusals occur.
    expect(kinds.get('ok') ?? 0, JSON.stringify([...kinds])).toBeGreaterThan(runs / 20);
    expect([...kinds.keys()].filter((k) => k !== 'ok').length, JSON.stringify([...kinds])).toBeGreaterThanOrEqual(minKinds);
  });
});
