import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, getCodec } from '@ultrasketch/core';
import { USK_TOKENIZER_TENSOR } from '@ultrasketch/format';
import { TensorNames } from '@ultrasketch/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  editMetadata,
  editMetadataJson,
  editTensors,
  expectBundleError,
  specParse,
} from '../../format/test/bundleFixture.js';
import { compress, inspectBundle, loadBundle, loadBundleFromBytes, loadModel, openModel } from '../src/index.js';
import { requireShared } from '../../../test/require-shared.js';

/**
 * loadBundle's checks above the format layer: the stored model config (types, limits, consistency), every
 * tensor the config needs present with its shape and nothing else, the embedded tokenizer, the accounting
 * section. Bundles are made by compress() from stories260K, then damaged with spec-level tools.
 */

const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL_PATH = shared('models/stories260K/stories260K.bin');
const HAVE_SHARED = requireShared('pipeline loadBundle tests', [MODEL_PATH]);
const SRC = 'evil.usk';
const load = (bytes: Uint8Array) => () => loadBundleFromBytes(bytes, SRC);

describe.runIf(HAVE_SHARED)('loadBundle() on damaged stories260K bundles', () => {
  let GOOD: Uint8Array;
  let dir: string;
  beforeAll(async () => {
    GOOD = (await compress({ model: MODEL_PATH, codec: 'rtn', codecOptions: { bits: 4 } })).bytes;
    dir = mkdtempSync(join(tmpdir(), 'usk-load-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('the undamaged bundle loads', () => {
    const b = loadBundleFromBytes(GOOD, SRC);
    expect(b.config.dim).toBe(64);
    expect(b.accounting.compressedFrom).toBe('accounting-section');
  });

  it('every tensor in an independent parse has exactly the bytes the codecs produce from the float model', () => {
    const model = loadModel(MODEL_PATH);
    const spec = specParse(GOOD);
    const entries = JSON.parse(spec.metadata.weights!) as Record<string, { codec: string; options: Record<string, unknown>; seed: number; rows: number; cols: number }>;
    let seen = 0;
    for (const [name, e] of Object.entries(entries)) {
      const codec = getCodec(e.codec);
      const params = codec.encode(model.weights.tensors.get(name)!.data, e.rows, e.cols, codec.resolveOptions(e.options), { name, seed: e.seed });
      for (const [component, t] of Object.entries(codec.toTensors(params))) {
        const stored = spec.tensors.get(`${name}.${component}`)!;
        expect(stored.dtype).toBe(t.dtype);
        expect(stored.shape).toEqual(t.shape);
        expect(Buffer.compare(stored.bytes, t.data), `${name}.${component}`).toBe(0);
        seen++;
      }
    }
    for (const name of JSON.parse(spec.metadata.vectors!) as string[]) {
      expect(Buffer.compare(spec.tensors.get(name)!.bytes, new Uint8Array(model.weights.tensors.get(name)!.data.buffer.slice(0)))).toBe(0);
      seen++;
    }
    expect(Buffer.compare(spec.tensors.get(USK_TOKENIZER_TENSOR)!.bytes, model.tokenizerBytes)).toBe(0);
    expect(seen + 1).toBe(spec.tensors.size);
  });

  it('a flipped byte in the file on disk is CHECKSUM naming the path; skipping verification loads it', () => {
    const spec = specParse(GOOD);
    const t = spec.tensors.get(`${TensorNames.linear(2, 'down')}.codes`)!;
    const bad = GOOD.slice();
    bad[8 + spec.headerLength + t.offsets[0] + 5]! ^= 0x10;
    const path = join(dir, 'flipped.usk');
    writeFileSync(path, bad);
    expectBundleError(() => loadBundle(path), ErrorCodes.CHECKSUM, path, /down_proj/);
    expectBundleError(() => inspectBundle(path), ErrorCodes.CHECKSUM, path);
    expectBundleError(() => openModel(path), ErrorCodes.CHECKSUM, path);
    expect(loadBundle(path, { verifyChecksums: false }).fileBytes).toBe(GOOD.byteLength);
  });

  it('a missing file is FILE_NOT_FOUND', () => {
    expectBundleError(() => loadBundle(join(dir, 'nope.usk')), ErrorCodes.FILE_NOT_FOUND, join(dir, 'nope.usk'));
  });

  it.each([
    ['dim as a string', (c: any): void => void (c.dim = '64'), ErrorCodes.BAD_HEADER, /dim is "64"/],
    ['ropeLayout unknown', (c: any): void => void (c.ropeLayout = 'spiral'), ErrorCodes.BAD_HEADER, /ropeLayout/],
    ['tiedClassifier not boolean', (c: any): void => void (c.tiedClassifier = 1), ErrorCodes.BAD_HEADER, /tiedClassifier/],
    ['another architecture', (c: any): void => void (c.architecture = 'gpt2'), ErrorCodes.UNSUPPORTED, /architecture "gpt2"/],
    ['a vocabulary beyond the limit', (c: any): void => void (c.vocabSize = 2 ** 30), ErrorCodes.LIMIT_EXCEEDED, /vocabSize/],
    ['dim not divisible by nHeads', (c: any): void => void (c.nHeads = 7), ErrorCodes.BAD_DIMENSION, /not divisible/],
    ['a negative hidden size', (c: any): void => void (c.hiddenDim = -1), ErrorCodes.BAD_DIMENSION, /hiddenDim/],
    ['dim that the tensors do not have', (c: any): void => void (c.dim = 128), ErrorCodes.SHAPE_MISMATCH, /model\.embed_tokens\.weight is 512×64, the model config needs 512×128/],
    ['more layers than stored', (c: any): void => void (c.nLayers = 6), ErrorCodes.MISSING_TENSOR, /model\.layers\.5\./],
    ['fewer layers than stored', (c: any): void => void (c.nLayers = 4), ErrorCodes.BAD_HEADER, /model\.layers\.4\..* is not part of a model with this config/],
    ['an untied classifier that is not stored', (c: any): void => void (c.tiedClassifier = false), ErrorCodes.MISSING_TENSOR, /lm_head\.weight/],
  ] as const)('model_config with %s is refused', (_label, edit, code, problem) => {
    expectBundleError(load(editMetadataJson(GOOD, 'model_config', edit)), code, SRC, problem);
  });

  it('a norm vector of the wrong length or with a NaN is refused', () => {
    const short = editTensors(GOOD, (t) => {
      const v = t.get(TensorNames.finalNorm)!;
      t.set(TensorNames.finalNorm, { dtype: 'F32', shape: [63], data: v.data.slice(4) });
    });
    expectBundleError(load(short), ErrorCodes.SHAPE_MISMATCH, SRC, /model\.norm\.weight has 63 values/);
    const nan = editTensors(GOOD, (t) => {
      const v = t.get(TensorNames.attnNorm(1))!;
      new DataView(v.data.buffer, v.data.byteOffset).setFloat32(12, Number.NaN, true);
    });
    expectBundleError(load(nan), ErrorCodes.NOT_FINITE, SRC, /input_layernorm/);
  });

  it('a weight removed entirely (entry, tensors, checksums) is MISSING_TENSOR', () => {
    const victim = TensorNames.linear(0, 'v');
    let bad = editTensors(GOOD, (t) => {
      for (const name of [...t.keys()]) if (name.startsWith(`${victim}.`)) t.delete(name);
    });
    bad = editMetadataJson(bad, 'weights', (w) => void delete w[victim]);
    bad = editMetadataJson(bad, 'accounting', (a) => void (a.compressedLinears = a.compressedLinears.filter((n: string) => n !== victim)));
    expectBundleError(load(bad), ErrorCodes.MISSING_TENSOR, SRC, /v_proj/);
  });

  it('an embedded tokenizer that does not parse is refused with a typed error naming the file', () => {
    const bad = editTensors(GOOD, (t) => void t.set(USK_TOKENIZER_TENSOR, { dtype: 'U8', shape: [6], data: new Uint8Array([255, 255, 255, 127, 1, 2]) }));
    const err = expectBundleError(load(bad), ErrorCodes.TOKENIZER_MISMATCH, SRC);
    expect(err.message).toContain(USK_TOKENIZER_TENSOR);
  });

  it('accounting.compressedLinears naming something that is not a stored linear is BAD_HEADER', () => {
    for (const list of [['model.embed_tokens.weight'], ['model.layers.9.mlp.up_proj.weight'], 'all', []]) {
      const bad = editMetadataJson(GOOD, 'accounting', (a) => void (a.compressedLinears = list));
      expectBundleError(load(bad), ErrorCodes.BAD_HEADER, SRC, /compressedLinears/);
    }
  });

  it('without an accounting section, the compressed set falls back to the non-float linears', () => {
    const noSection = editMetadata(GOOD, (m) => void delete m.accounting);
    const a = loadBundleFromBytes(noSection, SRC).accounting;
    const b = loadBundleFromBytes(GOOD, SRC).accounting;
    expect(a.compressedFrom).toBe('non-float-linears');
    expect(a.compressedLinears).toEqual(b.compressedLinears);
    expect(a.bpwLinears).toBe(b.bpwLinears);
    expect(a.fileBytes).toBeLessThan(b.fileBytes);
  });

  it('stored accounting numbers are never trusted: a lying bpwLinears does not change what is reported', () => {
    const lying = editMetadataJson(GOOD, 'accounting', (a) => void (a.bpwLinears = 0.01));
    expect(loadBundleFromBytes(lying, SRC).accounting.bpwLinears).toBe(loadBundleFromBytes(GOOD, SRC).accounting.bpwLinears);
  });
});
