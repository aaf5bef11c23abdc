import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, f16BitsToF32, f32ToF16Bits } from '@ultrasketch/core';
import {
  decodeGgufRows,
  decodeGgufTensor,
  getGgufArray,
  getGgufFloat32,
  getGgufNumber,
  getGgufString,
  getGgufTensorBytes,
  parseGgufHeader,
  readGguf,
  readLlama2cCheckpoint,
  readLlama2cTokenizer,
  type GgufArray,
  type GgufFile,
  type GgufHeader,
  type Llama2cWeights,
} from '../src/index.js';
import { expectRejects, readShared, sharedPath } from './helpers.js';
import { G, T, arr, f32, f32Data, f64, i32, i64, kv, simpleGguf, str, u16, u16Data, u32, u64, u8 } from './ggufBytes.js';
import { requireShared } from '../../../test/require-shared.js';

/**
 * The GGUF reader on the real fixtures of ../shared/models (written by an independent writer and by
 * llama.cpp's own quantizer, FORMATS.md beside them says how), and on small files built byte by byte.
 */

const GGUF_DIR = {
  s260: 'models/stories260K/gguf',
  s3m: 'models/stories3M/gguf',
};
const QUANT_FILES = ['stories3M-q4_0.gguf', 'stories3M-q4_k_m.gguf', 'stories3M-q5_k_m.gguf', 'stories3M-q6_k.gguf'];
const HAVE = requireShared('format GGUF tests', [
  sharedPath(`${GGUF_DIR.s260}/stories260K-f32.gguf`),
  sharedPath(`${GGUF_DIR.s260}/stories260K-q8_0.gguf`),
  sharedPath(`${GGUF_DIR.s3m}/stories3M-f32.gguf`),
  sharedPath(`${GGUF_DIR.s3m}/stories3M-q8_0.gguf`),
  sharedPath(`${GGUF_DIR.s3m}/dequant-reference.json`),
  ...QUANT_FILES.map((f) => sharedPath(`${GGUF_DIR.s3m}/${f}`)),
  sharedPath('models/stories260K/stories260K.bin'),
  sharedPath('models/stories260K/tok512.bin'),
  sharedPath('models/stories3M/stories3M-q80.bin'),
  sharedPath('models/stories3M/tok4096.bin'),
]);

const cache = new Map<string, GgufFile>();
function gguf(rel: string): GgufFile {
  let g = cache.get(rel);
  if (!g) {
    g = readGguf(readShared(rel), rel.split('/').pop());
    cache.set(rel, g);
  }
  return g;
}

const sha256 = (a: Float32Array) => createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

/**
 * Assert two float32 arrays are bit-identical, reporting the first difference. (A plain loop: vitest's
 * deep equality walks a 10^6-element typed array slowly.)
 */
function expectSameBits(got: Float32Array, expected: Float32Array, what: string): void {
  expect(got.length, `${what}: length`).toBe(expected.length);
  const a = bitsOf(got);
  const b = bitsOf(expected);
  let first = -1;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      first = i;
      break;
    }
  }
  expect(first === -1 ? 'identical' : `element ${first}: ${got[first]} vs ${expected[first]}`, what).toBe('identical');
}
const countBy = <K>(xs: Iterable<K>) => {
  const m: Record<string, number> = {};
  for (const x of xs) m[String(x)] = (m[String(x)] ?? 0) + 1;
  return m;
};

/** The llama2.c array a GGUF tensor holds (FORMATS.md's name table; GGUF llama keeps llama2.c's q/k order). */
function llama2cArray(w: Llama2cWeights, name: string): Float32Array {
  if (name === 'token_embd.weight') return w.tokenEmbedding;
  if (name === 'output_norm.weight') return w.rmsFinal;
  const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(name);
  if (!m) throw new Error(`unexpected tensor ${name}`);
  const l = Number(m[1]);
  const key = {
    attn_norm: 'rmsAtt',
    attn_q: 'wq',
    attn_k: 'wk',
    attn_v: 'wv',
    attn_output: 'wo',
    ffn_norm: 'rmsFfn',
    ffn_gate: 'w1',
    ffn_down: 'w2',
    ffn_up: 'w3',
  }[m[2]!] as 'rmsAtt' | 'wq' | 'wk' | 'wv' | 'wo' | 'rmsFfn' | 'w1' | 'w2' | 'w3';
  return w[key][l]!;
}

interface ModelFacts {
  name: string;
  dim: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  tensors: number;
  parameters: number;
  dataOffset: number;
  checkpoint: string;
  tokenizer: string;
}
const S260: ModelFacts = {
  name: 'stories260K', dim: 64, hidden: 172, layers: 5, heads: 8, kvHeads: 4, vocab: 512,
  tensors: 47, parameters: 260_032, dataOffset: 14_304,
  checkpoint: 'models/stories260K/stories260K.bin', tokenizer: 'models/stories260K/tok512.bin',
};
const S3M: ModelFacts = {
  name: 'stories3M', dim: 192, hidden: 512, layers: 6, heads: 6, kvHeads: 2, vocab: 4096,
  tensors: 56, parameters: 3_148_224, dataOffset: 96_864,
  checkpoint: 'models/stories3M/stories3M-q80.bin', tokenizer: 'models/stories3M/tok4096.bin',
};

const FILES: Array<[string, ModelFacts, number]> = [
  [`${GGUF_DIR.s260}/stories260K-f32.gguf`, S260, 0],
  [`${GGUF_DIR.s260}/stories260K-q8_0.gguf`, S260, 7],
  [`${GGUF_DIR.s3m}/stories3M-f32.gguf`, S3M, 0],
  [`${GGUF_DIR.s3m}/stories3M-q8_0.gguf`, S3M, 7],
  [`${GGUF_DIR.s3m}/stories3M-q4_0.gguf`, S3M, 2],
  [`${GGUF_DIR.s3m}/stories3M-q4_k_m.gguf`, S3M, 15],
  [`${GGUF_DIR.s3m}/stories3M-q5_k_m.gguf`, S3M, 17],
  [`${GGUF_DIR.s3m}/stories3M-q6_k.gguf`, S3M, 18],
];

describe.skipIf(!HAVE)('GGUF fixtures: header and metadata as FORMATS.md lists them', () => {
  it.each(FILES)('%s: version, 24 keys with their values, tensors, data section', (rel, m, fileType) => {
    const g = gguf(rel);
    expect(g.version).toBe(3);
    expect(g.alignment).toBe(32);
    expect(g.metadata.has('general.alignment')).toBe(false);
    expect(g.metadata.size).toBe(24);
    expect(g.tensors.size).toBe(m.tensors);
    expect(g.dataOffset).toBe(m.dataOffset);
    const num = (k: string) => getGgufNumber(g, k);
    expect(getGgufString(g, 'general.architecture')).toBe('llama');
    expect(getGgufString(g, 'general.type')).toBe('model');
    expect(getGgufString(g, 'general.name')).toBe(m.name);
    expect(num('general.file_type')).toBe(fileType);
    expect(num('general.quantization_version')).toBe(2);
    expect(num('llama.vocab_size')).toBe(m.vocab);
    expect(num('llama.context_length')).toBe(512);
    expect(num('llama.embedding_length')).toBe(m.dim);
    expect(num('llama.block_count')).toBe(m.layers);
    expect(num('llama.feed_forward_length')).toBe(m.hidden);
    expect(num('llama.rope.dimension_count')).toBe(m.dim / m.heads);
    expect(num('llama.rope.freq_base')).toBe(10000);
    expect(num('llama.attention.head_count')).toBe(m.heads);
    expect(num('llama.attention.head_count_kv')).toBe(m.kvHeads);
    expect(g.metadata.get('llama.attention.layer_norm_rms_epsilon')).toEqual({ type: 'float32', value: Math.fround(1e-5) });
    expect(getGgufString(g, 'tokenizer.ggml.model')).toBe('llama');
    expect(num('tokenizer.ggml.bos_token_id')).toBe(1);
    expect(num('tokenizer.ggml.eos_token_id')).toBe(2);
    expect(num('tokenizer.ggml.unknown_token_id')).toBe(0);
    expect(g.metadata.get('tokenizer.ggml.add_bos_token')).toEqual({ type: 'bool', value: true });
    expect(g.metadata.get('tokenizer.ggml.add_eos_token')).toEqual({ type: 'bool', value: false });

    // The tensors: parameter count, and the data ends exactly at the end of the file (no gap, no tail).
    const infos = [...g.tensors.values()];
    expect(infos.reduce((n, t) => n + t.elements, 0)).toBe(m.parameters);
    expect(Math.max(...infos.map((t) => t.fileOffset + t.byteLength))).toBe(g.fileSize);
    for (const t of infos) expect(t.fileOffset % 32).toBe(0);
    const embd = g.tensors.get('token_embd.weight')!;
    expect(embd.dims).toEqual([m.dim, m.vocab]); // innermost first
    expect(embd.shape).toEqual([m.vocab, m.dim]);
    expect(g.tensors.get('blk.0.attn_k.weight')!.shape).toEqual([(m.dim / m.heads) * m.kvHeads, m.dim]);
    expect(g.tensors.get('blk.0.ffn_down.weight')!.shape).toEqual([m.dim, m.hidden]);
    expect(g.tensors.get('output_norm.weight')!.dims).toEqual([m.dim]);
    expect(g.tensors.has('output.weight')).toBe(false); // tied classifier
  });

  it.each([
    [`${GGUF_DIR.s260}/stories260K-f32.gguf`, S260],
    [`${GGUF_DIR.s3m}/stories3M-q4_k_m.gguf`, S3M],
  ])('%s: the vocabulary is the llama2.c tokenizer\'s pieces (space as ▁), its scores exactly, and its token types', (rel, m) => {
    const g = gguf(rel);
    const tok = readLlama2cTokenizer(readShared(m.tokenizer), m.vocab, m.tokenizer);
    const tokens = getGgufArray(g, 'tokenizer.ggml.tokens')!;
    const scores = getGgufArray(g, 'tokenizer.ggml.scores')!;
    const types = getGgufArray(g, 'tokenizer.ggml.token_type')!;
    expect(tokens.elementType).toBe('string');
    expect(scores.elementType).toBe('float32');
    expect(types.elementType).toBe('int32');
    const pieces = tokens.values as string[];
    expect(pieces.length).toBe(m.vocab);
    expect(pieces.slice(0, 3)).toEqual(['<unk>', '<s>', '</s>']);
    const decoder = new TextDecoder();
    for (let i = 3; i < m.vocab; i++) expect(pieces[i], `token ${i}`).toBe(decoder.decode(tok.pieces[i]).replaceAll(' ', '\u2581'));
    expectSameBits(scores.values as Float32Array, tok.scores, "scores");
    const t = [...(types.values as Int32Array)];
    expect(t.slice(0, 3)).toEqual([2, 3, 3]);
    for (let i = 3; i < m.vocab; i++) expect(t[i], `type of ${pieces[i]}`).toBe(/^<0x[0-9A-F]{2}>$/.test(pieces[i]!) ? 6 : 1);
    expect(t.filter((x) => x === 6).length).toBe(256);
  });

  it('tensor types per file are what llama.cpp chose (FORMATS.md\'s table, fallbacks included)', () => {
    const types = (rel: string) => countBy([...gguf(rel).tensors.values()].map((t) => t.type));
    expect(types(`${GGUF_DIR.s260}/stories260K-f32.gguf`)).toEqual({ F32: 47 });
    expect(types(`${GGUF_DIR.s260}/stories260K-q8_0.gguf`)).toEqual({ Q8_0: 31, F32: 11, F16: 5 });
    expect(types(`${GGUF_DIR.s3m}/stories3M-q8_0.gguf`)).toEqual({ Q8_0: 43, F32: 13 });
    expect(types(`${GGUF_DIR.s3m}/stories3M-q4_0.gguf`)).toEqual({ Q4_0: 42, Q8_0: 1, F32: 13 });
    expect(types(`${GGUF_DIR.s3m}/stories3M-q4_k_m.gguf`)).toEqual({ Q5_0: 34, Q4_K: 4, Q8_0: 3, Q6_K: 2, F32: 13 });
    expect(types(`${GGUF_DIR.s3m}/stories3M-q5_k_m.gguf`)).toEqual({ Q5_1: 34, Q5_K: 4, Q8_0: 3, Q6_K: 2, F32: 13 });
    expect(types(`${GGUF_DIR.s3m}/stories3M-q6_k.gguf`)).toEqual({ Q8_0: 37, Q6_K: 6, F32: 13 });
    const km = gguf(`${GGUF_DIR.s3m}/stories3M-q4_k_m.gguf`).tensors;
    expect(km.get('blk.2.attn_v.weight')!.type).toBe('Q8_0');
    expect(km.get('blk.1.attn_v.weight')!.type).toBe('Q5_0');
    expect(km.get('blk.5.ffn_down.weight')!.type).toBe('Q6_K');
    expect(km.get('blk.4.ffn_down.weight')!.type).toBe('Q4_K');
    // llama.cpp's tensor order: output_norm, token_embd, then per block in name order.
    expect([...km.keys()].slice(0, 5)).toEqual(['output_norm.weight', 'token_embd.weight', 'blk.0.attn_k.weight', 'blk.0.attn_norm.weight', 'blk.0.attn_output.weight']);
  });
});

describe.skipIf(!HAVE)('GGUF fixtures: every quantized type decodes exactly (dequant-reference.json)', () => {
  const ref = HAVE
    ? (JSON.parse(readFileSync(sharedPath(`${GGUF_DIR.s3m}/dequant-reference.json`), 'utf8')) as Record<
        string,
        Record<string, { type: string; shape: number[]; ne: number[]; first_rows: number[][]; sha256_f32: string }>
      >)
    : {};

  it.each(QUANT_FILES)('%s: all 43 quantized tensors, first two rows value for value and the whole tensor by sha256', (file) => {
    const g = gguf(`${GGUF_DIR.s3m}/${file}`);
    const entries = Object.entries(ref[file]!);
    expect(entries.length).toBe(43);
    const seen = new Set<string>();
    for (const [name, r] of entries) {
      const info = g.tensors.get(name)!;
      expect(info.type, name).toBe(r.type);
      expect(info.dims, name).toEqual(r.ne);
      expect(info.shape, name).toEqual(r.shape);
      const values = getGgufFloat32(g, name, file);
      const cols = r.shape[1]!;
      expect([...values.subarray(0, cols)], `${name} row 0`).toEqual(r.first_rows[0]);
      expect([...values.subarray(cols, 2 * cols)], `${name} row 1`).toEqual(r.first_rows[1]);
      expect(sha256(values), `${name} (${r.type}) whole tensor`).toBe(r.sha256_f32);
      seen.add(r.type);
    }
    expect(seen.size).toBeGreaterThanOrEqual(2);
  });

  it('between them the files exercise Q4_0, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K', () => {
    const types = new Set(QUANT_FILES.flatMap((f) => Object.values(ref[f]!).map((r) => r.type)));
    expect([...types].sort()).toEqual(['Q4_0', 'Q4_K', 'Q5_0', 'Q5_1', 'Q5_K', 'Q6_K', 'Q8_0']);
  });

  it('stories3M-q8_0.gguf (our writer\'s Q8_0) decodes to the same values as the reference\'s Q8_0 tensors of the llama.cpp files', () => {
    const g = gguf(`${GGUF_DIR.s3m}/stories3M-q8_0.gguf`);
    const q8 = Object.entries(ref['stories3M-q6_k.gguf']!).filter(([, r]) => r.type === 'Q8_0');
    expect(q8.length).toBe(37);
    for (const [name, r] of q8) expect(sha256(getGgufFloat32(g, name)), name).toBe(r.sha256_f32);
  });
});

describe.skipIf(!HAVE)('GGUF fixtures against the llama2.c checkpoints', () => {
  it.each([
    [`${GGUF_DIR.s260}/stories260K-f32.gguf`, S260],
    [`${GGUF_DIR.s3m}/stories3M-f32.gguf`, S3M],
  ])('%s: every tensor equals the llama2.c weights bit for bit', (rel, m) => {
    const g = gguf(rel);
    const ckpt = readLlama2cCheckpoint(readShared(m.checkpoint), m.checkpoint);
    expect(ckpt.layout).toBe(m === S260 ? 'legacy-f32' : 'v2-q8_0');
    for (const name of g.tensors.keys()) {
      const expected = llama2cArray(ckpt.weights, name);
      const got = getGgufFloat32(g, name);
      expect(got.length, name).toBe(expected.length);
      expectSameBits(got, expected, name);
    }
  });

  it('stories260K-q8_0.gguf: the F16 ffn_down tensors are the float32 weights rounded to f16; Q8_0 values lie within half a step of them', () => {
    const g = gguf(`${GGUF_DIR.s260}/stories260K-q8_0.gguf`);
    const w = readLlama2cCheckpoint(readShared(S260.checkpoint), S260.checkpoint).weights;
    for (const [name, info] of g.tensors) {
      const src = llama2cArray(w, name);
      const got = getGgufFloat32(g, name);
      if (info.type === 'F16') {
        expect(name).toMatch(/ffn_down/);
        const rounded = Float32Array.from(src, (x) => f16BitsToF32(f32ToF16Bits(x)));
        expectSameBits(got, rounded, name);
      } else if (info.type === 'Q8_0') {
        // Per block of 32: the scale d = max|x|/127 (stored f16), each value d·round(x/d): off by at most
        // d/2 plus the f16 rounding of d times 127 (2^-11 relative).
        let worst = 0;
        let beyond = 'none';
        for (let b = 0; b < src.length / 32; b++) {
          const block = src.subarray(32 * b, 32 * b + 32);
          const d = Math.max(...block.map(Math.abs)) / 127;
          for (let j = 0; j < 32; j++) {
            const err = Math.abs(got[32 * b + j]! - block[j]!);
            if (err > d / 2 + 127 * d * 2 ** -11 + 1e-9 && beyond === 'none') beyond = `block ${b} value ${j}: error ${err}, step ${d}`;
            worst = Math.max(worst, err);
          }
        }
        expect(beyond, name).toBe('none');
        expect(worst, name).toBeGreaterThan(0); // really quantized, not a copy
      } else {
        expectSameBits(got, src, name);
      }
    }
  });
});

describe.skipIf(!HAVE)('GGUF streaming: header from the first bytes, one tensor at a time', () => {
  it.each([`${GGUF_DIR.s3m}/stories3M-q4_k_m.gguf`, `${GGUF_DIR.s260}/stories260K-q8_0.gguf`])(
    '%s: a 64-byte start grows (at least doubling) to the same header readGguf gives',
    (rel) => {
      const bytes = readShared(rel);
      let head = bytes.subarray(0, 64);
      let calls = 0;
      let header: GgufHeader | undefined;
      for (;;) {
        calls++;
        const r = parseGgufHeader(head, bytes.byteLength, rel);
        if (r.done) {
          header = r.header;
          break;
        }
        expect(r.needBytes).toBeGreaterThanOrEqual(2 * head.byteLength);
        expect(r.needBytes).toBeLessThanOrEqual(bytes.byteLength);
        head = bytes.subarray(0, r.needBytes);
      }
      const whole = gguf(rel);
      expect(calls).toBeLessThanOrEqual(Math.ceil(Math.log2(whole.dataOffset / 64)) + 2);
      expect(header.metadata).toEqual(whole.metadata);
      expect(header.tensors).toEqual(whole.tensors);
      expect(header.dataOffset).toBe(whole.dataOffset);
      // Doubling reads at most twice the header; exactly the header's bytes suffice, one fewer does not.
      expect(head.byteLength).toBeLessThanOrEqual(2 * whole.headerBytes);
      expect(parseGgufHeader(bytes.subarray(0, whole.headerBytes), bytes.byteLength, rel).done).toBe(true);
      const short = parseGgufHeader(bytes.subarray(0, whole.headerBytes - 1), bytes.byteLength, rel);
      expect(short).toEqual({ done: false, needBytes: Math.min(bytes.byteLength, 2 * (whole.headerBytes - 1)) });
      // Decode each tensor from a copy of just its bytes (as a loader reading from disk would have).
      for (const info of header.tensors.values()) {
        const own = bytes.slice(info.fileOffset, info.fileOffset + info.byteLength);
        expectSameBits(decodeGgufTensor(info, own), getGgufFloat32(whole, info.name), info.name);
      }
    },
  );

  it('decodeGgufRows decodes a run of rows from just those rows\' bytes (Q4_K, Q6_K, Q5_0, Q8_0, F32)', () => {
    const g = gguf(`${GGUF_DIR.s3m}/stories3M-q4_k_m.gguf`);
    for (const name of ['blk.0.ffn_down.weight', 'blk.2.ffn_down.weight', 'blk.0.ffn_up.weight', 'token_embd.weight']) {
      const info = g.tensors.get(name)!;
      const full = getGgufFloat32(g, name);
      const [first, count] = [5, 7];
      const at = info.fileOffset + first * info.rowBytes;
      const rows = decodeGgufRows(info, g.bytes.slice(at, at + count * info.rowBytes), count);
      expect(rows.length).toBe(count * info.rowLength);
      expectSameBits(rows, full.subarray(first * info.rowLength, (first + count) * info.rowLength), name);
    }
    const norm = g.tensors.get('output_norm.weight')!;
    expect(decodeGgufRows(norm, getGgufTensorBytes(g, 'output_norm.weight'), 1)).toEqual(getGgufFloat32(g, 'output_norm.weight'));
  });

  it('a tensor given too few or too many bytes is refused with the numbers', () => {
    const g = gguf(`${GGUF_DIR.s3m}/stories3M-q6_k.gguf`);
    const info = g.tensors.get('blk.0.ffn_down.weight')!;
    const bytes = getGgufTensorBytes(g, info.name);
    expectRejects(() => decodeGgufTensor(info, bytes.subarray(0, bytes.byteLength - 1)), ErrorCodes.TRUNCATED, info.name, new RegExp(`take ${info.byteLength} bytes, got ${info.byteLength - 1}`));
    const more = new Uint8Array(bytes.byteLength + 210);
    expectRejects(() => decodeGgufTensor(info, more), ErrorCodes.BAD_ARGUMENT, info.name, /got \d+/);
    expectRejects(() => getGgufFloat32(g, 'output.weight', 'q6.gguf'), ErrorCodes.MISSING_TENSOR, 'q6.gguf', /"output.weight" is not in the file/);
  });
});

describe('GGUF files built byte by byte', () => {
  it('every metadata value type, arrays of arrays, v2 and v3 alike', () => {
    const kvs = [
      kv('a.u8', T.u8, u8(200)),
      kv('a.i8', T.i8, Uint8Array.of(0xfe)),
      kv('a.u16', T.u16, u16(65535)),
      kv('a.i16', T.i16, Uint8Array.of(0x00, 0x80)),
      kv('a.u32', T.u32, u32(4_000_000_000)),
      kv('a.i32', T.i32, i32(-7)),
      kv('a.f32', T.f32, f32(0.1)),
      kv('a.bool', T.bool, u8(1)),
      kv('a.str', T.string, str('héllo ▁ 🦙')),
      kv('a.u64', T.u64, u64(2n ** 63n + 5n)),
      kv('a.i64', T.i64, i64(-(2n ** 62n))),
      kv('a.f64', T.f64, f64(0.1)),
      kv('a.arr.i32', T.array, arr(T.i32, 3, i32(1), i32(-2), i32(3))),
      kv('a.arr.f64', T.array, arr(T.f64, 2, f64(1.5), f64(-0.25))),
      kv('a.arr.u64', T.array, arr(T.u64, 1, u64(2n ** 64n - 1n))),
      kv('a.arr.bool', T.array, arr(T.bool, 3, u8(0), u8(1), u8(0))),
      kv('a.arr.str', T.array, arr(T.string, 2, str(''), str('x'))),
      kv('a.arr.empty', T.array, arr(T.f32, 0)),
      kv('a.arr.arr', T.array, arr(T.array, 2, arr(T.string, 1, str('p')), arr(T.u8, 2, u8(1), u8(2)))),
    ];
    const tensors = [{ name: 'w', dims: [2, 3], type: G.F32, data: f32Data([1, 2, 3, 4, 5, 6]) }];
    for (const version of [2, 3]) {
      const g = readGguf(simpleGguf(tensors, kvs, 32, version), 'kinds.gguf');
      expect(g.version).toBe(version);
      const v = (k: string) => g.metadata.get(k);
      expect(v('a.u8')).toEqual({ type: 'uint8', value: 200 });
      expect(v('a.i8')).toEqual({ type: 'int8', value: -2 });
      expect(v('a.u16')).toEqual({ type: 'uint16', value: 65535 });
      expect(v('a.i16')).toEqual({ type: 'int16', value: -32768 });
      expect(v('a.u32')).toEqual({ type: 'uint32', value: 4_000_000_000 });
      expect(v('a.i32')).toEqual({ type: 'int32', value: -7 });
      expect(v('a.f32')).toEqual({ type: 'float32', value: Math.fround(0.1) });
      expect(v('a.bool')).toEqual({ type: 'bool', value: true });
      expect(v('a.str')).toEqual({ type: 'string', value: 'héllo ▁ 🦙' });
      expect(v('a.u64')).toEqual({ type: 'uint64', value: 2n ** 63n + 5n });
      expect(v('a.i64')).toEqual({ type: 'int64', value: -(2n ** 62n) });
      expect(v('a.f64')).toEqual({ type: 'float64', value: 0.1 });
      expect(v('a.arr.i32')!.value).toEqual({ elementType: 'int32', values: Int32Array.of(1, -2, 3) });
      expect(v('a.arr.f64')!.value).toEqual({ elementType: 'float64', values: Float64Array.of(1.5, -0.25) });
      expect(v('a.arr.u64')!.value).toEqual({ elementType: 'uint64', values: BigUint64Array.of(2n ** 64n - 1n) });
      expect(v('a.arr.bool')!.value).toEqual({ elementType: 'bool', values: [false, true, false] });
      expect(v('a.arr.str')!.value).toEqual({ elementType: 'string', values: ['', 'x'] });
      expect(v('a.arr.empty')!.value).toEqual({ elementType: 'float32', values: new Float32Array(0) });
      const nested = v('a.arr.arr')!.value as GgufArray;
      expect(nested.elementType).toBe('array');
      expect(nested.values).toEqual([
        { elementType: 'string', values: ['p'] },
        { elementType: 'uint8', values: Uint8Array.of(1, 2) },
      ]);
      expect([...g.metadata.keys()].slice(0, 4)).toEqual(['a.u8', 'a.i8', 'a.u16', 'a.i16']); // file order kept
      expect(g.metadata.size).toBe(kvs.length);
      expect([...getGgufFloat32(g, 'w')]).toEqual([1, 2, 3, 4, 5, 6]);
      expect(g.tensors.get('w')!.shape).toEqual([3, 2]);
      // The typed getters: a u64 count converts exactly below 2^53 and is refused above it.
      expect(() => getGgufNumber(g, 'a.u64', 'kinds.gguf')).toThrow(/too large/);
      expect(getGgufNumber(g, 'a.i32')).toBe(-7);
      expect(getGgufNumber(g, 'absent')).toBeUndefined();
      expectRejects(() => getGgufString(g, 'a.u8', 'kinds.gguf'), ErrorCodes.BAD_HEADER, 'kinds.gguf', /a.u8 is a uint8, expected a string/);
      expectRejects(() => getGgufNumber(g, 'a.str', 'kinds.gguf'), ErrorCodes.BAD_HEADER, 'kinds.gguf', /a.str is a string, expected a number/);
      expectRejects(() => getGgufArray(g, 'a.f32', 'kinds.gguf'), ErrorCodes.BAD_HEADER, 'kinds.gguf', /expected an array/);
    }
  });

  it('F16 and BF16 tensors widen exactly (subnormals, signed zero, infinities, NaN)', () => {
    const f16 = [0x0000, 0x8000, 0x0001, 0x03ff, 0x3c00, 0xc000, 0x7bff, 0x7c00, 0xfc00, 0x3555];
    const bf16 = [0x0000, 0x8000, 0x3f80, 0xc040, 0x0001, 0x7f80, 0xff80, 0x4049, 0x7fc1, 0x3e9a];
    const file = simpleGguf([
      { name: 'h', dims: [10], type: G.F16, data: u16Data(f16) },
      { name: 'b', dims: [5, 2], type: G.BF16, data: u16Data(bf16) },
    ]);
    const g = readGguf(file, 'halves.gguf');
    expect([...getGgufFloat32(g, 'h')]).toEqual([0, -0, 2 ** -24, 1023 * 2 ** -24, 1, -2, 65504, Infinity, -Infinity, 0.333251953125]);
    expect(Object.is(getGgufFloat32(g, 'h')[1], -0)).toBe(true);
    const b = getGgufFloat32(g, 'b');
    // bf16 bits are the top half of the float32 bits, NaN payload included.
    expect([...bitsOf(b)]).toEqual(bf16.map((x) => (x << 16) >>> 0));
    expect(b[2]).toBe(1);
    expect(b[3]).toBe(-3);
    expect(b[5]).toBe(Infinity);
    expect(Number.isNaN(b[8])).toBe(true);
  });

  it('Q8_0 and Q4_0 blocks built by hand decode to d·q and d·(q − 8)', () => {
    // Q8_0: d = 0.5 (f16 0x3800), q = -128..-97 → x = q / 2.
    const q8 = new Uint8Array(34);
    new DataView(q8.buffer).setUint16(0, 0x3800, true);
    for (let j = 0; j < 32; j++) q8[2 + j] = (j - 128) & 0xff;
    // Q4_0: d = 2 (0x4000); byte j holds value j (low nibble = j % 16) and value j+16 (high nibble = 15 - j).
    const q4 = new Uint8Array(18);
    new DataView(q4.buffer).setUint16(0, 0x4000, true);
    for (let j = 0; j < 16; j++) q4[2 + j] = (j % 16) | ((15 - j) << 4);
    const g = readGguf(simpleGguf([
      { name: 'q8', dims: [32], type: G.Q8_0, data: q8 },
      { name: 'q4', dims: [32], type: G.Q4_0, data: q4 },
    ]));
    expect([...getGgufFloat32(g, 'q8')]).toEqual(Array.from({ length: 32 }, (_, j) => (j - 128) / 2));
    const q4Expected = [...Array.from({ length: 16 }, (_, j) => 2 * (j - 8)), ...Array.from({ length: 16 }, (_, j) => 2 * (15 - j - 8))];
    expect([...getGgufFloat32(g, 'q4')]).toEqual(q4Expected);
  });

  it('general.alignment 64 places the data section and the tensors on 64-byte boundaries', () => {
    const kvs = [kv('general.alignment', T.u32, u32(64))];
    const file = simpleGguf(
      [
        { name: 'a', dims: [3], type: G.F32, data: f32Data([1, 2, 3]) },
        { name: 'b', dims: [2], type: G.F32, data: f32Data([4, 5]) },
      ],
      kvs,
      64,
    );
    const g = readGguf(file, 'aligned.gguf');
    expect(g.alignment).toBe(64);
    expect(g.dataOffset % 64).toBe(0);
    expect(g.tensors.get('b')!.offset).toBe(64);
    expect([...getGgufFloat32(g, 'b')]).toEqual([4, 5]);
  });

  it('a file with no tensors and no metadata is valid', () => {
    const g = readGguf(simpleGguf([]), 'empty.gguf');
    expect(g.tensors.size).toBe(0);
    expect(g.metadata.size).toBe(0);
    expect(g.headerBytes).toBe(24);
  });

  it('a type the reader knows but cannot decode (Q4_1) parses, and decoding it is UNSUPPORTED naming the type', () => {
    const g = readGguf(simpleGguf([{ name: 'w', dims: [32], type: G.Q4_1, data: new Uint8Array(20) }]), 'q41.gguf');
    expect(g.tensors.get('w')!.type).toBe('Q4_1');
    expect(g.tensors.get('w')!.byteLength).toBe(20);
    const err = expectRejects(() => getGgufFloat32(g, 'w', 'q41.gguf'), ErrorCodes.UNSUPPORTED, 'q41.gguf: w', /"w" is Q4_1, which this reader cannot decode/);
    expect(err.hint).toMatch(/Q4_K/);
    expectRejects(() => decodeGgufRows(g.tensors.get('w')!, new Uint8Array(20), 1, 'w'), ErrorCodes.UNSUPPORTED, 'w', /Q4_1/);
  });
});
