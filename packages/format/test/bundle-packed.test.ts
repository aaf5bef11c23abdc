import { readFileSync } from 'node:fs';
import { constants, deflateRawSync } from 'node:zlib';
import { ErrorCodes } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import {
  USK_FORMAT_VERSION,
  USK_PACKED_FORMAT_VERSION,
  USK_PACKED_METADATA_TENSOR,
  USK_TOKENIZER_TENSOR,
  inflateRaw,
  llama2cColumns,
  llama2cFromColumns,
  readBundle,
  writeBundle,
} from '../src/index.js';
import { expectBundleError, fixtureInput, specParse, specWithHeader } from './bundleFixture.js';

const SRC = 'packed.usk';
const deflate = (level: number) => ({ deflateRaw: (b: Uint8Array) => deflateRawSync(b, { level }) });
const TOK512 = new Uint8Array(readFileSync('/work/shared/models/stories260K/tok512.bin'));
const TOK4096 = new Uint8Array(readFileSync('/work/shared/models/stories3M/tok4096.bin'));

describe('inflateRaw (format 3 decoder) against node:zlib', () => {
  // Random bytes (stored blocks at level 0, literal-heavy dynamic blocks), text-like bytes (long matches),
  // and a real tokenizer; level 1 vs 9 and Z_FIXED exercise both Huffman kinds.
  let s = 12345;
  const rnd = new Uint8Array(70_000).map(() => ((s = (s * 1103515245 + 12345) >>> 0) >>> 24) & 0xff);
  const text = new TextEncoder().encode('Once upon a time there was a little dog. '.repeat(2000) + 'The end.');
  for (const [name, data] of [['random', rnd], ['text', text], ['tok4096', TOK4096], ['empty', new Uint8Array(0)]] as const) {
    for (const opts of [{ level: 0 }, { level: 1 }, { level: 9 }, { level: 9, strategy: constants.Z_FIXED }]) {
      it(`${name}, ${JSON.stringify(opts)}`, () => {
        const z = deflateRawSync(data, opts);
        expect(Buffer.compare(Buffer.from(inflateRaw(z, data.length)), Buffer.from(data))).toBe(0);
      });
    }
  }

  it('refuses a wrong length, a truncated stream and garbage with a typed error (never more output than stated)', () => {
    const z = deflateRawSync(text, { level: 9 });
    expect(() => inflateRaw(z, text.length - 1, 'x')).toThrow(/longer than the stored length/);
    expect(() => inflateRaw(z, text.length + 1, 'x')).toThrow(/stored length/);
    expect(() => inflateRaw(z.subarray(0, z.length >> 1), text.length, 'x')).toThrow(/end of the compressed stream/);
    expect(() => inflateRaw(new Uint8Array([0xff, 0xff, 0xff]), 10, 'x')).toThrow(/compressed data/);
  });
});

describe('llama2c tokenizer columns', () => {
  it('round-trip real tokenizer files byte for byte, and compress better than deflate alone', () => {
    for (const tok of [TOK512, TOK4096]) {
      const cols = llama2cColumns(tok)!;
      expect(cols).not.toBeNull();
      expect(Buffer.compare(Buffer.from(llama2cFromColumns(cols)), Buffer.from(tok))).toBe(0);
      expect(deflateRawSync(cols, { level: 9 }).length).toBeLessThan(0.7 * deflateRawSync(tok, { level: 9 }).length);
    }
  });

  it('returns null for bytes that are not a llama2.c tokenizer file (the writer then deflates them as they are)', () => {
    expect(llama2cColumns(new Uint8Array([7, 0, 0, 0, 1, 2, 3, 250, 251]))).toBeNull();
    expect(llama2cColumns(TOK512.subarray(0, TOK512.length - 1))).toBeNull();
  });
});

describe('format 3: packed metadata and tokenizer', () => {
  const { input } = fixtureInput();
  const realTok = { ...input, tokenizer: { kind: 'llama2c' as const, bytes: TOK4096 } };
  const plain = writeBundle(realTok);
  const packed = writeBundle(realTok, { pack: deflate(9) });

  it('reads back exactly what format 2 holds, and is smaller', () => {
    const a = readBundle(plain, 'plain.usk');
    const b = readBundle(packed, SRC);
    expect(a.formatVersion).toBe(USK_FORMAT_VERSION);
    expect(b.formatVersion).toBe(USK_PACKED_FORMAT_VERSION);
    expect(b.config).toEqual(a.config);
    expect(b.tokenizer).toEqual(a.tokenizer);
    expect(Buffer.compare(Buffer.from(b.tokenizer.bytes), Buffer.from(TOK4096))).toBe(0);
    expect(b.sections).toEqual(a.sections);
    expect(b.vectors).toEqual(a.vectors);
    expect([...b.weights.keys()]).toEqual([...a.weights.keys()]);
    for (const [name, w] of a.weights) {
      expect(b.weights.get(name)!.entry).toEqual(w.entry);
      expect(b.weights.get(name)!.params).toEqual(w.params);
    }
    expect(b.integrity).toMatchObject({ metadata: 'sha256', tensorsVerified: true });
    expect(packed.length).toBeLessThan(plain.length - 30_000);
  });

  it('is still a plain safetensors file: its header holds only the marker, version, packed-metadata entry and checksum', () => {
    const spec = specParse(packed);
    expect(Object.keys(spec.metadata).sort()).toEqual(['format', 'format_version', 'metadata_checksum', 'packed_metadata']);
    expect(spec.metadata.format_version).toBe('3');
    expect(spec.tensors.get(USK_PACKED_METADATA_TENSOR)!.dtype).toBe('U8');
    expect(spec.tensors.get(USK_TOKENIZER_TENSOR)!.shape[0]).toBeLessThan(TOK4096.length / 3);
  });

  it('is deterministic: the same input gives the same bytes', () => {
    expect(Buffer.compare(Buffer.from(writeBundle(realTok, { pack: deflate(9) })), Buffer.from(packed))).toBe(0);
  });

  it('refuses a changed byte in the packed metadata, the packed tokenizer or any tensor', () => {
    const spec = specParse(packed);
    const dataStart = packed.length - spec.data.length;
    for (const name of [USK_PACKED_METADATA_TENSOR, USK_TOKENIZER_TENSOR, 'model.norm.weight']) {
      const t = spec.tensors.get(name)!;
      const copy = packed.slice();
      copy[dataStart + t.offsets[0] + 1] ^= 0x10;
      expectBundleError(() => readBundle(copy, SRC), ErrorCodes.CHECKSUM, SRC, new RegExp(name.replace(/\./g, '\\.')));
    }
  });

  it('refuses extra outer metadata, a missing packed_metadata, a changed version and a lying length', () => {
    const spec = specParse(packed);
    const withMeta = (edit: (m: Record<string, string>) => void) => {
      const meta = { ...spec.metadata };
      edit(meta);
      return specWithHeader({ ...spec.header, __metadata__: meta }, spec.data);
    };
    expectBundleError(() => readBundle(withMeta((m) => void (m.model_config = '{}')), SRC), ErrorCodes.BAD_HEADER, SRC, /also has "model_config"/);
    expectBundleError(() => readBundle(withMeta((m) => void delete m.packed_metadata), SRC), ErrorCodes.BAD_VERSION, SRC, /format version 3/);
    expectBundleError(() => readBundle(withMeta((m) => void (m.format_version = '2')), SRC), ErrorCodes.BAD_HEADER, SRC);
    const lying = withMeta((m) => {
      const d = JSON.parse(m.packed_metadata!);
      m.packed_metadata = JSON.stringify({ ...d, length: d.length + 1 });
    });
    expectBundleError(() => readBundle(lying, SRC), ErrorCodes.BAD_HEADER, SRC, /stored length/);
  });

  it('a tokenizer that is not a llama2.c file is deflated as it is; hf-json packs both files', () => {
    const odd = writeBundle(input, { pack: deflate(9) });
    expect(readBundle(odd, SRC).tokenizer).toEqual(readBundle(writeBundle(input), SRC).tokenizer);
    const hf = { ...input, tokenizer: { kind: 'hf-json' as const, bytes: new TextEncoder().encode('{"model":{}}'), configBytes: new TextEncoder().encode('{}'), bosId: 1, eosIds: [2], origin: 'tokenizer.json' } };
    expect(readBundle(writeBundle(hf, { pack: deflate(9) }), SRC).tokenizer).toEqual(readBundle(writeBundle(hf), SRC).tokenizer);
  });
});
