import { ErrorCodes } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import { USK_TOKENIZER_TENSOR, readBundle, writeBundle } from '../src/index.js';
import {
  editMetadata,
  editMetadataJson,
  editTensors,
  expectBundleError,
  fixtureInput,
  specParse,
  specWithHeader,
} from './bundleFixture.js';

/**
 * Hostile and damaged bundles: each must be refused with a typed error whose message names the file, before
 * any kernel sees the data. The bundle is built by the real writer, then damaged with the test's own
 * spec-level safetensors tools (bundleFixture.ts).
 */

const SRC = 'evil.usk';
const read = (bytes: Uint8Array) => () => readBundle(bytes, SRC);
const GOOD = writeBundle(fixtureInput().input);
const Q = 'model.layers.0.self_attn.q_proj.weight';
const K = 'model.layers.0.self_attn.k_proj.weight';

/** Absolute file offset of a tensor's first byte. */
function tensorOffset(bytes: Uint8Array, name: string): number {
  const spec = specParse(bytes);
  return 8 + spec.headerLength + spec.tensors.get(name)!.offsets[0];
}

describe('hostile bundles: damaged bytes', () => {
  it('the undamaged fixture reads', () => {
    expect(readBundle(GOOD, SRC).weights.size).toBe(9);
  });

  it.each([`${Q}.codes`, `${Q}.scales`, `${K}.signs`, 'model.norm.weight', USK_TOKENIZER_TENSOR])(
    'a flipped byte in tensor %s is CHECKSUM, naming the tensor',
    (name) => {
      const bad = GOOD.slice();
      bad[tensorOffset(GOOD, name)]! ^= 0x40;
      expectBundleError(read(bad), ErrorCodes.CHECKSUM, SRC, new RegExp(`checksum mismatch in tensor "${name.replace(/\./g, '\\.')}"`));
    },
  );

  it('a header length claiming more bytes than the file is TRUNCATED', () => {
    const bad = GOOD.slice();
    new DataView(bad.buffer).setBigUint64(0, BigInt(GOOD.byteLength), true);
    expectBundleError(read(bad), ErrorCodes.TRUNCATED, SRC, /header length/);
  });

  it('a header length claiming fewer bytes (JSON cut short) is BAD_HEADER', () => {
    const bad = GOOD.slice();
    new DataView(bad.buffer).setBigUint64(0, BigInt(specParse(GOOD).headerLength - 16), true);
    expectBundleError(read(bad), ErrorCodes.BAD_HEADER, SRC);
  });

  it.each([1, 7, 100])('a file truncated by %i bytes is refused (BAD_OFFSET: tensors reach past the end)', (cut) => {
    expectBundleError(read(GOOD.subarray(0, GOOD.byteLength - cut)), ErrorCodes.BAD_OFFSET, SRC, /outside the data area/);
  });

  it('a file truncated inside its header is TRUNCATED', () => {
    expectBundleError(read(GOOD.subarray(0, 64)), ErrorCodes.TRUNCATED, SRC);
    expectBundleError(read(GOOD.subarray(0, 5)), ErrorCodes.TRUNCATED, SRC);
  });

  it('bytes appended after the last tensor are TRAILING_DATA', () => {
    const bad = new Uint8Array(GOOD.byteLength + 3);
    bad.set(GOOD);
    expectBundleError(read(bad), ErrorCodes.TRAILING_DATA, SRC);
  });
});

describe('hostile bundles: the format marker and the metadata', () => {
  it('a wrong format marker is BAD_MAGIC; a missing one too (a plain safetensors file)', () => {
    expectBundleError(read(editMetadata(GOOD, (m) => void (m.format = 'gguf'))), ErrorCodes.BAD_MAGIC, SRC, /not an UltraSketch bundle/);
    expectBundleError(read(editMetadata(GOOD, (m) => void delete m.format)), ErrorCodes.BAD_MAGIC, SRC);
    const spec = specParse(GOOD);
    const { __metadata__: _, ...noMeta } = spec.header;
    expectBundleError(read(specWithHeader(noMeta, spec.data)), ErrorCodes.BAD_MAGIC, SRC);
  });

  it.each(['3', '0', 'one', '', ' 2', '2.0'])('format_version %j is BAD_VERSION', (v) => {
    expectBundleError(read(editMetadata(GOOD, (m) => void (m.format_version = v))), ErrorCodes.BAD_VERSION, SRC, /format version/);
  });

  it.each(['model_config', 'weights', 'checksums', 'vectors', 'tokenizer', 'provenance'])('metadata "%s" that is not JSON is BAD_HEADER', (key) => {
    expectBundleError(read(editMetadata(GOOD, (m) => void (m[key] = '{"unterminated'))), ErrorCodes.BAD_HEADER, SRC, new RegExp(`"${key}" is not valid JSON`));
  });

  it.each(['model_config', 'weights', 'checksums', 'vectors', 'tokenizer'])('metadata "%s" missing is BAD_HEADER', (key) => {
    expectBundleError(read(editMetadata(GOOD, (m) => void delete m[key])), ErrorCodes.BAD_HEADER, SRC, new RegExp(`"${key}" is missing`));
  });

  it('structured metadata of the wrong JSON type is BAD_HEADER', () => {
    expectBundleError(read(editMetadata(GOOD, (m) => void (m.model_config = '[1,2]'))), ErrorCodes.BAD_HEADER, SRC);
    expectBundleError(read(editMetadata(GOOD, (m) => void (m.weights = '"x"'))), ErrorCodes.BAD_HEADER, SRC);
    expectBundleError(read(editMetadata(GOOD, (m) => void (m.vectors = '[1]'))), ErrorCodes.BAD_HEADER, SRC);
    expectBundleError(read(editMetadata(GOOD, (m) => void (m.tokenizer = '{"kind":"sentencepiece"}'))), ErrorCodes.BAD_HEADER, SRC);
  });

  it('a weight entry with fields of the wrong type is BAD_HEADER', () => {
    for (const [field, value] of [['codec', 3], ['version', '1'], ['seed', null], ['options', 'bits=4']] as const) {
      const bad = editMetadataJson(GOOD, 'weights', (w) => void (w[Q][field] = value));
      expectBundleError(read(bad), ErrorCodes.BAD_HEADER, SRC, /needs string codec/);
    }
  });
});

describe('hostile bundles: codecs and their parameters', () => {
  it('an unknown codec id is UNKNOWN_CODEC, naming the file and the weight', () => {
    const bad = editMetadataJson(GOOD, 'weights', (w) => void (w[Q].codec = 'quantum'));
    const err = expectBundleError(read(bad), ErrorCodes.UNKNOWN_CODEC, SRC, /unknown codec "quantum"/);
    expect(err.message).toContain(Q);
  });

  it('an unknown codec version is UNKNOWN_CODEC', () => {
    const bad = editMetadataJson(GOOD, 'weights', (w) => void (w[K].version = 99));
    const err = expectBundleError(read(bad), ErrorCodes.UNKNOWN_CODEC, SRC, /codec "binary" version 99 is not supported/);
    expect(err.message).toContain(K);
  });

  it.each([
    ['rows', 9],
    ['cols', 7],
    ['rows', 1],
  ] as const)('metadata %s changed to %i (inconsistent with the stored tensors) is SHAPE_MISMATCH', (field, value) => {
    const bad = editMetadataJson(GOOD, 'weights', (w) => void (w[Q][field] = value));
    const err = expectBundleError(read(bad), ErrorCodes.SHAPE_MISMATCH, SRC, /codec tensor/);
    expect(err.message).toContain(Q);
  });

  it.each([0, -3, 2.5, 2 ** 31 + 1])('a weight dimension of %d is BAD_DIMENSION', (value) => {
    const bad = editMetadataJson(GOOD, 'weights', (w) => void (w[Q].rows = value));
    expectBundleError(read(bad), ErrorCodes.BAD_DIMENSION, SRC, /invalid shape/);
  });

  it('codec options inconsistent with the stored tensors (rtn bits 4 → 2, group size 3 → 4) are SHAPE_MISMATCH', () => {
    const bits = editMetadataJson(GOOD, 'weights', (w) => void (w[Q].options.bits = 2));
    expectBundleError(read(bits), ErrorCodes.SHAPE_MISMATCH, SRC, /codes/);
    const group = editMetadataJson(GOOD, 'weights', (w) => void (w[Q].options.groupSize = 4));
    expectBundleError(read(group), ErrorCodes.SHAPE_MISMATCH, SRC, /scales/);
  });

  it('invalid codec options (rtn bits 5, an unknown option) are BAD_ARGUMENT', () => {
    const code = (bytes: Uint8Array) => {
      try {
        readBundle(bytes, SRC);
      } catch (err) {
        return (err as { code?: string }).code;
      }
      return 'no error';
    };
    expect(code(editMetadataJson(GOOD, 'weights', (w) => void (w[Q].options.bits = 5)))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(code(editMetadataJson(GOOD, 'weights', (w) => void (w[K].options.scale = 'row')))).toBe(ErrorCodes.BAD_ARGUMENT);
  });

  // KNOWN GAP (format/src/bundle.ts): readBundle passes stored options to the codec's resolveOptions without
  // re-sourcing its error, so the message names the CLI flag ("--bits") instead of the file and weight.
  // When readBundle wraps that call (source = "<file> (<weight>)"), turn this `it.fails` into `it`.
  it('invalid codec options: the message names the file', () => {
    expectBundleError(read(editMetadataJson(GOOD, 'weights', (w) => void (w[Q].options.bits = 5))), ErrorCodes.BAD_ARGUMENT, SRC);
  });

  it('a component tensor of the wrong size (checksums consistent) is SHAPE_MISMATCH', () => {
    const bad = editTensors(GOOD, (t) => {
      const codes = t.get(`${Q}.codes`)!;
      t.set(`${Q}.codes`, { dtype: 'U8', shape: [codes.data.length - 1], data: codes.data.slice(1) });
    });
    expectBundleError(read(bad), ErrorCodes.SHAPE_MISMATCH, SRC, /codes/);
  });

  it('a component tensor of the wrong dtype is SHAPE_MISMATCH', () => {
    const bad = editTensors(GOOD, (t) => {
      const scales = t.get(`${Q}.scales`)!;
      t.set(`${Q}.scales`, { dtype: 'U8', shape: [scales.data.length], data: scales.data });
    });
    expectBundleError(read(bad), ErrorCodes.SHAPE_MISMATCH, SRC, /scales/);
  });
});

describe('hostile bundles: tensors missing, extra or unaccounted for', () => {
  it('a component tensor missing (with its checksum) is MISSING_TENSOR', () => {
    const bad = editTensors(GOOD, (t) => void t.delete(`${Q}.offsets`));
    expectBundleError(read(bad), ErrorCodes.MISSING_TENSOR, SRC, /offsets/);
  });

  it('a tensor missing but still listed in the checksums is MISSING_TENSOR', () => {
    const spec = specParse(GOOD);
    const victim = `${K}.scales`;
    // Remove the tensor's bytes and header entry, shifting the later offsets down.
    const [b, e] = spec.tensors.get(victim)!.offsets;
    const header: Record<string, any> = {};
    for (const [name, v] of Object.entries(spec.header)) {
      if (name === victim) continue;
      if (name === '__metadata__') header[name] = v;
      else {
        const [vb, ve] = (v as any).data_offsets;
        header[name] = { ...(v as any), data_offsets: vb >= e ? [vb - (e - b), ve - (e - b)] : [vb, ve] };
      }
    }
    const data = new Uint8Array(spec.data.byteLength - (e - b));
    data.set(spec.data.subarray(0, b));
    data.set(spec.data.subarray(e), b);
    expectBundleError(read(specWithHeader(header, data)), ErrorCodes.MISSING_TENSOR, SRC, /listed in the checksums but missing/);
  });

  it('a vector or the tokenizer missing is MISSING_TENSOR', () => {
    expectBundleError(read(editTensors(GOOD, (t) => void t.delete('model.norm.weight'))), ErrorCodes.MISSING_TENSOR, SRC, /model\.norm\.weight/);
    expectBundleError(read(editTensors(GOOD, (t) => void t.delete(USK_TOKENIZER_TENSOR))), ErrorCodes.MISSING_TENSOR, SRC, /tokenizer/);
  });

  it('a vector of the wrong dtype or rank is MISSING_TENSOR (no F32 1-D vector by that name)', () => {
    const bad = editTensors(GOOD, (t) => {
      const v = t.get('model.norm.weight')!;
      t.set('model.norm.weight', { dtype: 'F32', shape: [2, 4], data: v.data });
    });
    expectBundleError(read(bad), ErrorCodes.MISSING_TENSOR, SRC, /model\.norm\.weight/);
  });

  it('a tensor not described by the metadata is BAD_HEADER', () => {
    const extra = editTensors(GOOD, (t) => void t.set('model.layers.7.mlp.secret.weight.codes', { dtype: 'U8', shape: [4], data: new Uint8Array(4) }));
    expectBundleError(read(extra), ErrorCodes.BAD_HEADER, SRC, /is not described by the bundle's metadata/);
    const noDot = editTensors(GOOD, (t) => void t.set('orphan', { dtype: 'U8', shape: [1], data: new Uint8Array(1) }));
    expectBundleError(read(noDot), ErrorCodes.BAD_HEADER, SRC, /"orphan" is not described/);
    // An extra component of a known weight: the codec stores [codes, offsets, scales], not a fourth.
    const extraComponent = editTensors(GOOD, (t) => void t.set(`${Q}.bonus`, { dtype: 'U8', shape: [1], data: new Uint8Array(1) }));
    expectBundleError(read(extraComponent), ErrorCodes.BAD_HEADER, SRC, /bonus/);
  });

  it('a tensor without a checksum is BAD_HEADER', () => {
    const bad = editMetadataJson(GOOD, 'checksums', (c) => void delete c[`${Q}.codes`]);
    expectBundleError(read(bad), ErrorCodes.BAD_HEADER, SRC, /has no checksum/);
  });

  it('a weight entry whose tensors are all missing is refused', () => {
    const bad = editMetadataJson(GOOD, 'weights', (w) => void (w['model.layers.0.mlp.ghost.weight'] = { ...w[K] }));
    expectBundleError(read(bad), ErrorCodes.MISSING_TENSOR, SRC, /ghost/);
  });
});
