import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, Rng, UltraSketchError } from '@ultrasketch/core';
import { USK_TOKENIZER_TENSOR, crc32Tag } from '@ultrasketch/format';
import { TensorNames } from '@ultrasketch/model';
import { beforeAll, describe, expect, it } from 'vitest';
import { requireShared } from '../../../test/require-shared.js';
import { editMetadata, editMetadataJson, editTensors, expectBundleError, specParse } from '../../format/test/bundleFixture.js';
import { type LoadedBundle, compress, inspectLoadedBundle, loadBundleFromBytes, referenceSourceWarning } from '../src/index.js';

/**
 * The bundle's integrity above the format layer, on a real bundle (stories260K, rtn 4-bit, made by
 * compress()): a damaged header never loads as a different model; a model_config that disagrees with the
 * tensors is refused naming the field, even when whoever edited it also recomputed the metadata checksum;
 * the recorded source hash is checked for form and compared with a reference checkpoint.
 */

const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL_PATH = shared('models/stories260K/stories260K.bin');
const HAVE_SHARED = requireShared('pipeline bundle integrity tests', [MODEL_PATH]);
const SRC = 'damaged.usk';
const load = (bytes: Uint8Array) => () => loadBundleFromBytes(bytes, SRC);

/** What a loaded bundle means, as plain data (the header's entry order carries no meaning, so it is sorted). */
function snapshot(b: LoadedBundle): string {
  return JSON.stringify({
    config: b.config,
    integrity: b.integrity,
    weights: [...b.bundle.weights].map(([name, w]) => [name, w.entry]),
    vectors: [...b.bundle.vectors].map(([name, v]) => [name, [...v]]),
    tokenizer: crc32Tag(b.tokenizerBytes),
    provenance: b.provenance,
    quality: b.quality,
    sections: b.bundle.sections,
    accounting: [b.accounting.bpwLinears, b.accounting.bitsPerParam, b.accounting.compressedLinears],
    table: [...b.bundle.file.tensors]
      .map(([name, t]) => [name, t.dtype, t.shape, t.dataOffsets, crc32Tag(t.data)])
      .sort((x, y) => (x[0]! < y[0]! ? -1 : 1)),
  });
}

describe.runIf(HAVE_SHARED)('bundle integrity on a real stories260K bundle', () => {
  let GOOD: Uint8Array;
  let GOOD_SNAPSHOT: string;
  let sourceSha: string;
  beforeAll(async () => {
    GOOD = (await compress({ model: MODEL_PATH, codec: 'rtn', codecOptions: { bits: 4 } })).bytes;
    GOOD_SNAPSHOT = snapshot(loadBundleFromBytes(GOOD, SRC));
    sourceSha = (loadBundleFromBytes(GOOD, SRC).provenance as { sourceSha256: string }).sourceSha256;
  });

  it('loads with its metadata covered by the checksum, and inspect says so', () => {
    const b = loadBundleFromBytes(GOOD, SRC);
    expect(b.bundle.formatVersion).toBe(2);
    expect(b.integrity.metadata).toBe('sha256');
    expect(inspectLoadedBundle(b).integrity).toEqual(b.integrity);
  });

  it('a flipped bit at 400 sampled header positions and in every byte of model_config is refused or changes nothing', () => {
    const headerEnd = 8 + specParse(GOOD).headerLength;
    const text = new TextDecoder().decode(GOOD.subarray(0, headerEnd));
    const configAt = text.indexOf('"model_config":"') + '"model_config":"'.length;
    const configEnd = text.indexOf('}', configAt) + 1;
    expect(configEnd - configAt).toBeGreaterThan(100);
    const rng = new Rng(18);
    const positions = [
      ...Array.from({ length: 400 }, () => rng.int(headerEnd)),
      ...Array.from({ length: configEnd - configAt }, (_, i) => configAt + i),
    ];
    const changed: string[] = [];
    let refused = 0;
    for (const [i, pos] of positions.entries()) {
      const bad = GOOD.slice();
      bad[pos]! ^= 1 << (i % 7); // low bits: ASCII stays ASCII, the JSON usually stays valid
      try {
        if (snapshot(loadBundleFromBytes(bad, SRC)) !== GOOD_SNAPSHOT) changed.push(`byte ${pos}`);
      } catch (err) {
        if (!(err instanceof UltraSketchError)) throw err; // an untyped error is a bug
        refused++;
      }
    }
    expect(changed, 'flips that loaded as a different model').toEqual([]);
    expect(refused).toBe(positions.length);
  });

  it('a careless edit of model_config (normEps: no tensor shows it) is a metadata checksum mismatch', () => {
    const bad = editMetadata(
      GOOD,
      (m) => void (m.model_config = m.model_config!.replace(/"normEps":[^,}]+/, '"normEps":0.001')),
      false,
    );
    expectBundleError(load(bad), ErrorCodes.CHECKSUM, SRC, /metadata checksum mismatch/);
  });

  // Re-sealed edits (the checksum recomputed, as a tool that rewrote the header would): the config must
  // still agree with what the tensors say, and the error names the config field.
  it.each([
    ['dim', 128, ErrorCodes.SHAPE_MISMATCH, /model_config dim = 128 disagrees with the tensors: weight model\.embed_tokens\.weight is 512×64/],
    ['vocabSize', 256, ErrorCodes.SHAPE_MISMATCH, /model_config vocabSize = 256 disagrees with the tensors: weight model\.embed_tokens\.weight is 512×64/],
    ['hiddenDim', 200, ErrorCodes.SHAPE_MISMATCH, /model_config hiddenDim = 200 disagrees with the tensors: weight model\.layers\.0\.mlp\.gate_proj\.weight is 172×64/],
    ['nKvHeads', 8, ErrorCodes.SHAPE_MISMATCH, /model_config nKvHeads = 8 disagrees with the tensors: with nHeads = 8 the key\/value width is 64, but weight model\.layers\.0\.self_attn\.k_proj\.weight is 32×64/],
    ['nLayers', 6, ErrorCodes.MISSING_TENSOR, /model_config nLayers = 6 disagrees with the tensors: they hold 5 layer\(s\): model\.layers\.5\.input_layernorm\.weight is missing/],
    ['nLayers', 4, ErrorCodes.BAD_HEADER, /model_config nLayers = 4 disagrees with the tensors: they hold 5 layers: tensor model\.layers\.4\..* is not part of a model with this config/],
    ['tiedClassifier', false, ErrorCodes.MISSING_TENSOR, /model_config tiedClassifier = false disagrees with the tensors: weight lm_head\.weight is missing/],
  ] as const)('model_config %s = %j that the tensors contradict is refused, naming the field', (field, value, code, problem) => {
    const bad = editMetadataJson(GOOD, 'model_config', (c) => void (c[field] = value));
    const err = expectBundleError(load(bad), code, SRC, problem);
    expect(err.hint).toMatch(/model_config does not match its tensors/);
  });

  it('a stray layer past a gap (layer 7 of a 5-layer model) is refused, naming nLayers and the stray weight', () => {
    const q = TensorNames.linear(0, 'q');
    const stray = TensorNames.linear(7, 'q');
    let bad = editTensors(GOOD, (t) => {
      for (const [name, v] of [...t]) if (name.startsWith(`${q}.`)) t.set(stray + name.slice(q.length), v);
    });
    bad = editMetadataJson(bad, 'weights', (w) => void (w[stray] = w[q]));
    expectBundleError(load(bad), ErrorCodes.BAD_HEADER, SRC, /model_config nLayers = 5 disagrees with the tensors: they hold 8 layers: tensor model\.layers\.7\.self_attn\.q_proj\.weight is not part of a model/);
  });

  it('an embedded tokenizer with fewer entries than vocabSize is refused, naming vocabSize', () => {
    const tok = new Uint8Array(specParse(GOOD).tensors.get(USK_TOKENIZER_TENSOR)!.bytes);
    // Drop the last entry: walk the llama2.c entries (f32 score, i32 length, bytes) to find where it starts.
    const view = new DataView(tok.buffer);
    let at = 4;
    let last = at;
    while (at < tok.byteLength) {
      last = at;
      at += 8 + view.getInt32(at + 4, true);
    }
    const short = tok.slice(0, last);
    const bad = editTensors(GOOD, (t) => void t.set(USK_TOKENIZER_TENSOR, { dtype: 'U8', shape: [short.byteLength], data: short }));
    const err = expectBundleError(load(bad), ErrorCodes.TOKENIZER_MISMATCH, SRC, /model_config vocabSize = 512 disagrees with the embedded tokenizer \(tokenizer\.llama2c\): tokenizer has only 511 tokens/);
    expect(err.hint).not.toMatch(/--tokenizer/); // a bundle has no --tokenizer to fix
  });

  it('the recorded source hash edited carelessly is a metadata checksum mismatch', () => {
    const other = editMetadata(
      GOOD,
      (m) => void (m.provenance = m.provenance!.replace(sourceSha, 'a'.repeat(64))),
      false,
    );
    expectBundleError(load(other), ErrorCodes.CHECKSUM, SRC, /metadata checksum mismatch/);
  });

  it('referenceSourceWarning: silent for the source checkpoint, a warning naming both files for another one', () => {
    const prov = loadBundleFromBytes(GOOD, SRC).provenance;
    const realSha = createHash('sha256').update(readFileSync(MODEL_PATH)).digest('hex');
    expect(realSha).toBe(sourceSha);
    expect(referenceSourceWarning(prov, { path: MODEL_PATH, sha256: realSha })).toBeNull();
    const warning = referenceSourceWarning(prov, { path: 'other.bin', sha256: 'b'.repeat(64) });
    expect(warning).toMatch(/the reference other\.bin \(sha256 bbbbbbbbbbbbbbbb…\) is not the checkpoint this bundle was compressed from/);
    expect(warning).toContain(`sha256 ${sourceSha.slice(0, 16)}…`);
    // Nothing to compare with: no warning (no provenance, or a recorded value that is not a SHA-256).
    expect(referenceSourceWarning(null, { path: 'other.bin', sha256: 'b'.repeat(64) })).toBeNull();
    expect(referenceSourceWarning({ sourceSha256: '00' }, { path: 'other.bin', sha256: 'b'.repeat(64) })).toBeNull();
  });

  it('a version-1 bundle (no metadata checksum) still loads, and reports that its metadata is not covered', () => {
    const v1 = editMetadata(
      GOOD,
      (m) => {
        delete m.metadata_checksum;
        m.format_version = '1';
      },
      false,
    );
    const b = loadBundleFromBytes(v1, SRC);
    expect(b.bundle.formatVersion).toBe(1);
    expect(b.integrity).toEqual({ metadata: 'none', metadataChecksum: null, tensorsVerified: true });
    expect(inspectLoadedBundle(b).integrity.metadata).toBe('none');
    expect(b.config).toEqual(loadBundleFromBytes(GOOD, SRC).config);
  });
});
