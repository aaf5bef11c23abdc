import { createHash } from 'node:crypto';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import {
  type Bundle,
  USK_FORMAT_VERSION,
  crc32Tag,
  readBundle,
  writeBundle,
} from '../src/index.js';
import {
  editMetadata,
  editMetadataJson,
  expectBundleError,
  fixtureInput,
  specParse,
  specWithHeader,
} from './bundleFixture.js';

/**
 * The bundle's metadata checksum (format version 2): one changed byte anywhere in the header either is
 * refused with a typed error or leaves the bundle exactly as written, never a silently different model.
 * Edits below are "careless": they change the header and do NOT recompute the checksum (the `false` passed
 * to the fixture tools), as a hand edit, a bad copy or a buggy tool would.
 */

const SRC = 'damaged.usk';
const { input } = fixtureInput();
const GOOD = writeBundle(input);
const Q = 'model.layers.0.self_attn.q_proj.weight';
const CHECKSUM_PROBLEM = /metadata checksum mismatch/;

/** Everything a reader gets from a bundle, as plain data, so two reads can be compared exactly. */
function snapshot(b: Bundle): unknown {
  return {
    formatVersion: b.formatVersion,
    config: b.config,
    tokenizer: crc32Tag(b.tokenizer.bytes),
    weights: [...b.weights].map(([name, w]) => [name, w.entry]),
    vectors: [...b.vectors].map(([name, v]) => [name, [...v]]),
    sections: b.sections,
    // Sorted: the order of entries in the header carries no meaning.
    table: [...b.file.tensors]
      .map(([name, t]) => [name, t.dtype, t.shape, t.dataOffsets, crc32Tag(t.data)])
      .sort((x, y) => (x[0]! < y[0]! ? -1 : 1)),
  };
}

const GOOD_SNAPSHOT = snapshot(readBundle(GOOD, SRC));

/** Read `bytes`: 'refused' (typed error), 'same' (reads as GOOD does), or throws on anything else. */
function outcome(bytes: Uint8Array): 'refused' | 'same' | 'changed' {
  let b: Bundle;
  try {
    b = readBundle(bytes, SRC);
  } catch (err) {
    if (err instanceof UltraSketchError) return 'refused';
    throw err; // an untyped error is a bug: fail the test with it
  }
  return JSON.stringify(snapshot(b)) === JSON.stringify(GOOD_SNAPSHOT) ? 'same' : 'changed';
}

describe('metadata checksum: every byte of the header', () => {
  it('the writer stores format version 2 and a sha256 metadata checksum; the reader verifies it', () => {
    const spec = specParse(GOOD);
    expect(USK_FORMAT_VERSION).toBe(2);
    expect(spec.metadata.format_version).toBe('2');
    expect(spec.metadata.metadata_checksum).toMatch(/^sha256:[0-9a-f]{64}$/);
    const b = readBundle(GOOD, SRC);
    expect(b.integrity).toEqual({ metadata: 'sha256', metadataChecksum: spec.metadata.metadata_checksum, tensorsVerified: true });
    expect(readBundle(GOOD, SRC, { verifyChecksums: false }).integrity.tensorsVerified).toBe(false);
  });

  it('a flipped bit in each header byte (length prefix, JSON, padding) is refused or changes nothing', () => {
    // Every byte once, with bit (pos mod 7): the top bit would make ASCII invalid UTF-8, refused trivially,
    // so the low seven bits are the hard cases (a digit becomes another digit, a letter another letter, the
    // JSON stays valid); every 8th byte gets the top bit too. The writer emits JSON without insignificant
    // whitespace, and no single-bit flip turns a padding space (0x20) into another JSON whitespace character
    // (0x09, 0x0a, 0x0d), so in practice every flip is refused; 'same' stays allowed because a flip that
    // left every parsed value equal would be harmless.
    const end = 8 + specParse(GOOD).headerLength;
    const counts = { refused: 0, same: 0, changed: 0 };
    const changed: string[] = [];
    for (let pos = 0; pos < end; pos++) {
      for (const mask of pos % 8 === 0 ? [1 << (pos % 7), 0x80] : [1 << (pos % 7)]) {
        const bad = GOOD.slice();
        bad[pos]! ^= mask;
        const o = outcome(bad);
        counts[o]++;
        if (o === 'changed' && changed.length < 5) changed.push(`byte ${pos} mask 0x${mask.toString(16)}`);
      }
    }
    expect(changed, 'flips that changed what the reader returns').toEqual([]);
    expect(counts.changed).toBe(0);
    expect(counts.refused).toBeGreaterThan(end);
  });

  it('a flip inside model_config, a codec entry or the checksums is refused as a metadata checksum mismatch', () => {
    const text = new TextDecoder().decode(GOOD.subarray(8, 8 + specParse(GOOD).headerLength));
    for (const needle of ['opaque to the bundle layer', '"seed\\":10', '"bits\\":4', 'crc32:']) {
      const at = text.indexOf(needle);
      expect(at, needle).toBeGreaterThan(0);
      const bad = GOOD.slice();
      bad[8 + at + needle.length - 1]! ^= 0x01; // a digit or letter becomes its neighbour: the JSON stays valid
      expectBundleError(() => readBundle(bad, SRC), ErrorCodes.CHECKSUM, SRC, CHECKSUM_PROBLEM);
    }
  });
});

describe('metadata checksum: careless edits (checksum not recomputed)', () => {
  const careless = (edit: (meta: Record<string, string>) => void) => editMetadata(GOOD, edit, false);
  const carelessJson = (key: string, edit: (v: any) => void) =>
    careless((m) => {
      const v = JSON.parse(m[key]!);
      edit(v);
      m[key] = JSON.stringify(v);
    });

  it.each([
    ['a model config field (normEps)', () => carelessJson('model_config', (c) => void (c.normEps = 1e-6))],
    ['the RoPE layout', () => carelessJson('model_config', (c) => void (c.ropeLayout = 'halves'))],
    ['a codec seed', () => carelessJson('weights', (w) => void (w[Q].seed += 1))],
    ['codec options', () => carelessJson('weights', (w) => void (w[Q].options.groupSize = 4))],
    ['the vectors list order', () => carelessJson('vectors', (v) => void v.reverse())],
    ['a provenance field (the source hash)', () => carelessJson('provenance', (p) => void (p.sourceSha256 = 'f'.repeat(64)))],
    ['a report section', () => carelessJson('accounting', (a) => void (a.note = 'edited'))],
    ['a tensor checksum', () => carelessJson('checksums', (c) => void (c[`${Q}.codes`] = 'crc32:00000000'))],
    ['a new metadata key', () => careless((m) => void (m.extra = '{}'))],
    ['a removed report section', () => careless((m) => void delete m.accounting)],
    ['whitespace added to a JSON value', () => careless((m) => void (m.model_config = `${m.model_config} `))],
  ])('%s is a metadata checksum mismatch (E_CHECKSUM)', (_label, make) => {
    expectBundleError(() => readBundle(make(), SRC), ErrorCodes.CHECKSUM, SRC, CHECKSUM_PROBLEM);
  });

  it('the checksum is verified even when tensor CRCs are skipped (verifyChecksums: false)', () => {
    const bad = carelessJson('model_config', (c) => void (c.ropeTheta = 500000));
    expectBundleError(() => readBundle(bad, SRC, { verifyChecksums: false }), ErrorCodes.CHECKSUM, SRC, CHECKSUM_PROBLEM);
  });

  it('the tensor table is covered: swapped data_offsets of two equal-sized tensors, an edited dtype', () => {
    const spec = specParse(GOOD);
    const header = structuredClone(spec.header) as Record<string, { dtype: string; data_offsets: number[] }>;
    const a = header['model.layers.0.input_layernorm.weight']!;
    const b = header['model.layers.0.post_attention_layernorm.weight']!;
    [a.data_offsets, b.data_offsets] = [b.data_offsets, a.data_offsets];
    const swapped = specWithHeader(header, spec.data, false);
    // Without the tensor CRCs only the metadata checksum sees it: each norm would silently get the other's values.
    expectBundleError(() => readBundle(swapped, SRC, { verifyChecksums: false }), ErrorCodes.CHECKSUM, SRC, CHECKSUM_PROBLEM);

    const retyped = structuredClone(spec.header) as Record<string, { dtype: string }>;
    const f16 = Object.keys(retyped).find((n) => n !== '__metadata__' && retyped[n]!.dtype === 'F16')!;
    retyped[f16]!.dtype = 'BF16'; // same size: the safetensors layer cannot tell
    expectBundleError(() => readBundle(specWithHeader(retyped, spec.data, false), SRC), ErrorCodes.CHECKSUM, SRC, CHECKSUM_PROBLEM);
  });

  it('the same edits re-sealed (the checksum recomputed) reach the structure checks', () => {
    // A checksum is not a signature: whoever recomputes it can change the metadata. The structure and
    // codec checks still refuse what they can see, here an invalid option.
    const resealed = editMetadataJson(GOOD, 'weights', (w) => void (w[Q].options.bits = 5));
    expectBundleError(() => readBundle(resealed, SRC), ErrorCodes.BAD_ARGUMENT, SRC);
  });

  it('a missing or malformed checksum in a version-2 bundle is refused', () => {
    expectBundleError(() => readBundle(careless((m) => void delete m.metadata_checksum), SRC), ErrorCodes.BAD_HEADER, SRC, /"metadata_checksum" is missing/);
    expectBundleError(() => readBundle(careless((m) => void (m.metadata_checksum = 'crc32:00000000')), SRC), ErrorCodes.CHECKSUM, SRC);
  });
});

describe('metadata checksum: what it is computed over', () => {
  /** The canonical bytes, rebuilt here from docs/bundle.md with Node's Buffer and crypto, not the package's code. */
  function independentChecksum(file: Uint8Array): string {
    const spec = specParse(file);
    const parts: Buffer[] = [Buffer.from('ultrasketch.usk metadata_checksum v1\n', 'utf8')];
    const u32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(n);
      return b;
    };
    const u64 = (n: number) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(BigInt(n));
      return b;
    };
    const str = (s: string) => {
      const b = Buffer.from(s, 'utf8');
      return Buffer.concat([u32(b.length), b]);
    };
    const keys = Object.keys(spec.metadata)
      .filter((k) => k !== 'metadata_checksum')
      .sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    parts.push(u32(keys.length));
    for (const k of keys) parts.push(str(k), str(spec.metadata[k]!));
    const names = [...spec.tensors.keys()].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    parts.push(u32(names.length));
    for (const n of names) {
      const t = spec.tensors.get(n)!;
      parts.push(str(n), str(t.dtype), u32(t.shape.length), ...t.shape.map(u64), u64(t.offsets[0]), u64(t.offsets[1]));
    }
    return `sha256:${createHash('sha256').update(Buffer.concat(parts)).digest('hex')}`;
  }

  it('matches an independent implementation of the documented canonical encoding', () => {
    expect(specParse(GOOD).metadata.metadata_checksum).toBe(independentChecksum(GOOD));
    // A bundle with a non-ASCII and an integer-like metadata key (JS orders those first) as well.
    const odd = writeBundle({ ...input, sections: { ...input.sections, '7': 1, 'zé': { ü: 'ñ' } } });
    expect(specParse(odd).metadata.metadata_checksum).toBe(independentChecksum(odd));
    expect(readBundle(odd, SRC).sections['zé']).toEqual({ ü: 'ñ' });
  });

  it('covers parsed values, not formatting: a re-serialized header (spacing, escapes, key order) still verifies', () => {
    const spec = specParse(GOOD);
    const entries = Object.entries(spec.header).reverse();
    const pretty = JSON.stringify(Object.fromEntries(entries), null, 2).replace(/"format"/, '"\\u0066ormat"');
    const json = new TextEncoder().encode(pretty);
    const n = Math.ceil(json.byteLength / 8) * 8;
    const out = new Uint8Array(8 + n + spec.data.byteLength);
    new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
    out.set(json, 8);
    out.fill(0x0a, 8 + json.byteLength, 8 + n);
    out.set(spec.data, 8 + n);
    expect(JSON.stringify(snapshot(readBundle(out, SRC)))).toBe(JSON.stringify(GOOD_SNAPSHOT));
  });

  it('is deterministic: the same input gives the same checksum and the same bytes', () => {
    expect(Buffer.compare(writeBundle(fixtureInput().input), GOOD)).toBe(0);
  });
});

describe('format version 1 (written before the metadata checksum)', () => {
  /** A version-1 bundle as the old writer made it: no metadata_checksum, format_version "1". */
  const V1 = editMetadata(
    GOOD,
    (m) => {
      delete m.metadata_checksum;
      m.format_version = '1';
    },
    false,
  );

  it('still loads, and says its metadata is not covered', () => {
    const b = readBundle(V1, SRC);
    expect(b.formatVersion).toBe(1);
    expect(b.integrity).toEqual({ metadata: 'none', metadataChecksum: null, tensorsVerified: true });
    const { formatVersion: _v, ...rest } = snapshot(b) as Record<string, unknown>;
    const { formatVersion: _g, ...good } = GOOD_SNAPSHOT as Record<string, unknown>;
    expect(rest).toEqual(good);
  });

  it('its tensor CRCs are still verified', () => {
    const spec = specParse(V1);
    const bad = V1.slice();
    bad[8 + spec.headerLength + spec.tensors.get(`${Q}.codes`)!.offsets[0]]! ^= 0x04;
    expectBundleError(() => readBundle(bad, SRC), ErrorCodes.CHECKSUM, SRC, /checksum mismatch in tensor/);
  });

  it('a version-2 bundle whose format_version was changed to "1" is refused (it still carries its checksum)', () => {
    const downgraded = editMetadata(GOOD, (m) => void (m.format_version = '1'), false);
    expectBundleError(() => readBundle(downgraded, SRC), ErrorCodes.BAD_VERSION, SRC, /format_version" was changed/);
  });
});
