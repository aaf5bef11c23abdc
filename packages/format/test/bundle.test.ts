import { getCodec } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import { USK_FORMAT, USK_FORMAT_VERSION, USK_TOKENIZER_TENSOR, crc32Tag, readBundle, writeBundle } from '../src/index.js';
import { FIXTURE_CONFIG, FIXTURE_TOKENIZER, editMetadata, fixtureInput, specParse } from './bundleFixture.js';

const SRC = 'fixture.usk';

describe('the .usk bundle', () => {
  const { input, weights, vectors } = fixtureInput();
  const bytes = writeBundle(input);

  it('round-trips: config, entries, codec parameters (same decode), vectors, tokenizer, sections', () => {
    const b = readBundle(bytes, SRC);
    expect(b.formatVersion).toBe(USK_FORMAT_VERSION);
    expect(b.config).toEqual(FIXTURE_CONFIG);
    expect(b.tokenizer).toEqual({ kind: 'llama2c', bytes: FIXTURE_TOKENIZER });
    expect([...b.weights.keys()]).toEqual(weights.map((w) => w.name));
    for (const w of weights) {
      const got = b.weights.get(w.name)!;
      expect(got.entry).toEqual({ codec: w.codec, version: 1, options: w.options, seed: w.seed, rows: w.rows, cols: w.cols });
      const codec = getCodec(w.codec);
      expect(codec.decode(got.params)).toEqual(codec.decode(w.params));
      expect(codec.bits(got.params)).toEqual(codec.bits(w.params));
    }
    expect(b.vectors).toEqual(vectors);
    expect(b.sections).toEqual(input.sections);
  });

  it('opens in an independent safetensors parser, and every tensor\'s bytes are the codec\'s bytes', () => {
    const spec = specParse(bytes);
    // The header: 8-byte aligned, "{" first, the data area tiled exactly by the tensors.
    expect((8 + spec.headerLength) % 8).toBe(0);
    const ranges = [...spec.tensors.values()].map((t) => t.offsets).sort((a, b) => a[0] - b[0]);
    let covered = 0;
    for (const [b, e] of ranges) {
      expect(b).toBe(covered);
      covered = e;
    }
    expect(covered).toBe(spec.data.byteLength);
    // Every metadata value is a string (the spec), the structured ones JSON.
    for (const v of Object.values(spec.metadata)) expect(typeof v).toBe('string');
    expect(spec.metadata.format).toBe(USK_FORMAT);
    expect(spec.metadata.format_version).toBe(String(USK_FORMAT_VERSION));
    expect(JSON.parse(spec.metadata.model_config!)).toEqual(FIXTURE_CONFIG);
    expect(JSON.parse(spec.metadata.tokenizer!)).toEqual({ kind: 'llama2c', tensor: USK_TOKENIZER_TENSOR });

    const expected = new Map<string, { dtype: string; shape: number[]; data: Uint8Array }>();
    for (const w of weights) for (const [c, t] of Object.entries(w.tensors)) expected.set(`${w.name}.${c}`, t);
    for (const [name, v] of vectors) expected.set(name, { dtype: 'F32', shape: [v.length], data: new Uint8Array(v.buffer) });
    expected.set(USK_TOKENIZER_TENSOR, { dtype: 'U8', shape: [FIXTURE_TOKENIZER.length], data: FIXTURE_TOKENIZER });
    expect([...spec.tensors.keys()].sort()).toEqual([...expected.keys()].sort());
    const checksums = JSON.parse(spec.metadata.checksums!) as Record<string, string>;
    for (const [name, t] of spec.tensors) {
      const e = expected.get(name)!;
      expect(t.dtype, name).toBe(e.dtype);
      expect(t.shape, name).toEqual(e.shape);
      expect(Buffer.compare(t.bytes, e.data), name).toBe(0);
      expect(checksums[name]).toBe(crc32Tag(t.bytes));
      // Each tensor starts at a file offset that is a multiple of its element size.
      const size = { U8: 1, F16: 2, F32: 4 }[t.dtype as 'U8']!;
      expect((8 + spec.headerLength + t.offsets[0]) % size, name).toBe(0);
    }
    // The entries say how each weight's tensors decode.
    const entries = JSON.parse(spec.metadata.weights!);
    for (const w of weights) expect(entries[w.name]).toMatchObject({ codec: w.codec, rows: w.rows, cols: w.cols, seed: w.seed });
  });

  it('each weight\'s bits() equals 8 × the bytes of its tensors in the file', () => {
    const spec = specParse(bytes);
    for (const w of weights) {
      const bits = getCodec(w.codec).bits(w.params);
      let stored = 0;
      for (const [name, t] of spec.tensors) if (name.startsWith(`${w.name}.`)) stored += t.bytes.byteLength;
      expect(bits.total, w.name).toBe(8 * stored);
    }
  });

  it('is deterministic: the same input gives byte-identical files; nothing time-dependent is stored', () => {
    const again = writeBundle(fixtureInput().input);
    expect(Buffer.compare(again, bytes)).toBe(0);
    const header = new TextDecoder().decode(bytes.subarray(8, 8 + specParse(bytes).headerLength));
    expect(header).not.toMatch(/20\d\d-\d\d-\d\d|timestamp/i);
  });

  it('verifyChecksums: false skips the CRC pass (a flipped data byte then goes unnoticed by the reader)', () => {
    const spec = specParse(bytes);
    const t = spec.tensors.get('model.layers.0.self_attn.o_proj.weight.weight')!;
    const flipped = bytes.slice();
    flipped[bytes.byteLength - spec.data.byteLength + t.offsets[0] + 3]! ^= 0x01;
    expect(() => readBundle(flipped, SRC)).toThrow(/checksum/);
    expect(readBundle(flipped, SRC, { verifyChecksums: false }).weights.size).toBe(weights.length);
  });

  it('extra sections are kept; reserved names are refused', () => {
    const withExtra = writeBundle({ ...input, sections: { ...input.sections, quality: { kl: 0.25 } } });
    expect(readBundle(withExtra, SRC).sections.quality).toEqual({ kl: 0.25 });
    expect(() => writeBundle({ ...input, sections: { checksums: {} } })).toThrow(/reserved/);
    // Metadata with an unknown extra key (from a newer writer) is still read.
    const extra = editMetadata(bytes, (m) => {
      m.training = JSON.stringify({ steps: 3 });
    });
    expect(readBundle(extra, SRC).sections.training).toEqual({ steps: 3 });
  });
});
