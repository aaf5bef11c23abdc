/**
 * Hostile Hugging Face and GGUF inputs through the BUILT command (issue 11, done-when 5): copies of the real
 * stories260K / stories3M files in a temporary directory, damaged the way downloads and hand edits damage them —
 * truncated, a tensor offset past the end, an unknown tensor type, a config whose shapes disagree with the
 * tensors, a missing shard, a missing tokenizer.json / config.json, counts that would overflow, an architecture
 * outside the family. Each must be a typed error (exit 1, `error [E_…]:`) naming the file, with a hint, and never
 * a crash, a hang or a model that runs wrong.
 *
 * The GGUF fields are found by walking the header from the GGUF specification (ggml/docs/gguf.md), written here
 * independently of the reader under test.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HAVE_SHARED, SHARED, cli, ensureBuilt } from './helpers.js';

const M = (p: string) => join(SHARED, 'models', p);
let tmp: string;
let n = 0;
beforeAll(() => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'ultrasketch-hostile-'));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** A fresh copy of a model directory. */
function copyDir(src: string): string {
  const dir = join(tmp, `m${n++}`);
  cpSync(src, dir, { recursive: true });
  return dir;
}

function writeCopy(bytes: Uint8Array, name = 'model.gguf'): string {
  const dir = join(tmp, `g${n++}`);
  mkdirSync(dir);
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** Run a command that must fail: exit 1, a typed error with `code`, no stack trace, nothing on stdout. */
function refused(args: string[], code: string): string {
  const r = cli(args);
  expect(r.code, r.stderr).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(new RegExp(`^error \\[${code}\\]: `, 'm'));
  expect(r.stderr).not.toMatch(/^\s+at .+/m);
  return r.stderr;
}

// ------------------------------------------------------------------------------------------ GGUF fields

interface GgufFields {
  /** Offset of the tensor count (u64). */
  tensorCountAt: number;
  /** Per tensor: where its n_dims, dims, type and offset are. */
  tensors: Map<string, { nDimsAt: number; dimsAt: number; typeAt: number; offsetAt: number }>;
  /** Offset of the general.architecture string's bytes and its length. */
  architectureAt: number;
}

/** Walk a GGUF header (v2/v3, little-endian) and return where the fields are. */
function ggufFields(b: Uint8Array): GgufFields {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let at = 8;
  const u64 = () => {
    const x = Number(v.getBigUint64(at, true));
    at += 8;
    return x;
  };
  const u32 = () => {
    const x = v.getUint32(at, true);
    at += 4;
    return x;
  };
  const str = () => {
    const len = u64();
    const s = new TextDecoder().decode(b.subarray(at, at + len));
    at += len;
    return s;
  };
  const SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const skip = (type: number): void => {
    if (type === 8) str();
    else if (type === 9) {
      const et = u32();
      const count = u64();
      for (let i = 0; i < count; i++) skip(et);
    } else at += SIZE[type]!;
  };
  const tensorCountAt = at;
  const nTensors = u64();
  const nKv = u64();
  let architectureAt = -1;
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const type = u32();
    if (key === 'general.architecture') architectureAt = at + 8;
    skip(type);
  }
  const tensors = new Map<string, { nDimsAt: number; dimsAt: number; typeAt: number; offsetAt: number }>();
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nDimsAt = at;
    const nd = u32();
    const dimsAt = at;
    at += 8 * nd;
    const typeAt = at;
    at += 4;
    const offsetAt = at;
    at += 8;
    tensors.set(name, { nDimsAt, dimsAt, typeAt, offsetAt });
  }
  return { tensorCountAt, tensors, architectureAt };
}

const GGUF_260K = () => new Uint8Array(readFileSync(M('stories260K/gguf/stories260K-f32.gguf')));

describe.skipIf(!HAVE_SHARED)('hostile GGUF files: typed errors', () => {
  it('truncated inside the header: E_TRUNCATED', () => {
    const path = writeCopy(GGUF_260K().subarray(0, 5000));
    expect(refused(['generate', path], 'E_TRUNCATED')).toContain(path);
  });

  it('truncated inside the tensor data: a tensor past the end of the file is refused before anything runs', () => {
    const full = GGUF_260K();
    const path = writeCopy(full.subarray(0, full.byteLength - 1000));
    const err = refused(['generate', path], '(E_TRUNCATED|E_BAD_OFFSET)');
    expect(err).toContain(path);
  });

  it('a tensor offset past the end of the file: E_BAD_OFFSET (or E_TRUNCATED) naming the tensor', () => {
    const bytes = GGUF_260K().slice();
    const f = ggufFields(bytes).tensors.get('blk.2.ffn_up.weight')!;
    new DataView(bytes.buffer).setBigUint64(f.offsetAt, 1n << 40n, true);
    const err = refused(['generate', writeCopy(bytes)], '(E_BAD_OFFSET|E_TRUNCATED)');
    expect(err).toContain('blk.2.ffn_up.weight');
  });

  it('an unknown tensor type: refused naming the tensor and the type', () => {
    const bytes = GGUF_260K().slice();
    const f = ggufFields(bytes).tensors.get('blk.0.attn_q.weight')!;
    new DataView(bytes.buffer).setUint32(f.typeAt, 99, true);
    const err = refused(['inspect', writeCopy(bytes)], '(E_BAD_DTYPE|E_UNSUPPORTED)');
    expect(err).toContain('blk.0.attn_q.weight');
    expect(err).toContain('99');
  });

  it('a tensor count that would overflow (2^63): E_LIMIT_EXCEEDED (or E_TRUNCATED), no allocation from it', () => {
    const bytes = GGUF_260K().slice();
    new DataView(bytes.buffer).setBigUint64(ggufFields(bytes).tensorCountAt, 1n << 63n, true);
    refused(['generate', writeCopy(bytes)], '(E_LIMIT_EXCEEDED|E_TRUNCATED)');
  });

  it('tensor dimensions whose product overflows: E_LIMIT_EXCEEDED', () => {
    const bytes = GGUF_260K().slice();
    const f = ggufFields(bytes).tensors.get('blk.1.ffn_gate.weight')!;
    const v = new DataView(bytes.buffer);
    v.setBigUint64(f.dimsAt, 1n << 31n, true);
    v.setBigUint64(f.dimsAt + 8, 1n << 31n, true);
    expect(refused(['generate', writeCopy(bytes)], 'E_LIMIT_EXCEEDED')).toContain('blk.1.ffn_gate.weight');
  });

  it('a shape that disagrees with the metadata (a matrix of another width): E_SHAPE_MISMATCH naming tensor and config field', () => {
    const bytes = GGUF_260K().slice();
    const f = ggufFields(bytes).tensors.get('blk.3.ffn_down.weight')!;
    const v = new DataView(bytes.buffer);
    // [cols, rows] = [172, 64] stored innermost first; swap to [64, 172]: same byte length, wrong shape.
    v.setBigUint64(f.dimsAt, 64n, true);
    v.setBigUint64(f.dimsAt + 8, 172n, true);
    const err = refused(['compress', writeCopy(bytes), '--codec', 'rtn', '-o', join(tmp, 'never.usk')], 'E_SHAPE_MISMATCH');
    expect(err).toMatch(/blk\.3\.ffn_down\.weight.*hiddenDim/);
  });

  it('an architecture outside the family: E_UNSUPPORTED naming it', () => {
    const bytes = GGUF_260K().slice();
    const at = ggufFields(bytes).architectureAt;
    bytes.set(new TextEncoder().encode('gemma'), at); // "llama" → "gemma": same length
    expect(refused(['generate', writeCopy(bytes)], 'E_UNSUPPORTED')).toContain('gemma');
  });
});

// -------------------------------------------------------------------------------------------------- HF

function editJson(path: string, edit: (v: Record<string, unknown>) => void): void {
  const v = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  edit(v);
  writeFileSync(path, JSON.stringify(v));
}

/** The safetensors header of a copy, edited, written back with the same data (the header length may change). */
function editSafetensorsHeader(path: string, edit: (h: Record<string, any>) => void): void {
  const b = readFileSync(path);
  const nLen = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + nLen).toString('utf8')) as Record<string, any>;
  edit(header);
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  writeFileSync(path, Buffer.concat([len, Buffer.from(json), b.subarray(8 + nLen)]));
}

describe.skipIf(!HAVE_SHARED)('hostile Hugging Face directories: typed errors that say which file to add or fix', () => {
  it('no tokenizer.json: E_FILE_NOT_FOUND saying to add tokenizer.json (or pass --tokenizer)', () => {
    const dir = copyDir(M('stories260K/hf'));
    unlinkSync(join(dir, 'tokenizer.json'));
    const err = refused(['generate', dir], 'E_FILE_NOT_FOUND');
    expect(err).toContain(join(dir, 'tokenizer.json'));
    expect(err).toMatch(/add the model's tokenizer\.json .* or pass --tokenizer FILE/);
    // With --tokenizer the model runs (the llama2.c tokenizer of the same model).
    expect(cli(['generate', dir, '--tokenizer', M('stories260K/tok512.bin'), '--steps', '8', '--temperature', '0']).code).toBe(0);
  });

  it('no config.json: E_FILE_NOT_FOUND saying to add config.json', () => {
    const dir = copyDir(M('stories260K/hf'));
    unlinkSync(join(dir, 'config.json'));
    expect(refused(['eval', dir, '--text', join(SHARED, 'data/tinystories/eval.txt')], 'E_FILE_NOT_FOUND')).toMatch(/no config\.json in .*add the model's config\.json/);
    // The weights file given alone, without config.json beside it: pass the directory.
    expect(refused(['generate', join(dir, 'model.safetensors')], 'E_FILE_NOT_FOUND')).toMatch(/holds only tensors.*pass the model's directory/);
  });

  it('no weights: E_FILE_NOT_FOUND naming model.safetensors and the index', () => {
    const dir = copyDir(M('stories260K/hf'));
    unlinkSync(join(dir, 'model.safetensors'));
    writeFileSync(join(dir, 'pytorch_model.bin'), 'not read');
    expect(refused(['generate', dir], 'E_FILE_NOT_FOUND')).toMatch(/no model\.safetensors or model\.safetensors\.index\.json.*not read \(they are Python pickles/);
  });

  it('a missing shard: E_FILE_NOT_FOUND naming the shard to add', () => {
    const dir = copyDir(M('stories3M/hf-sharded'));
    unlinkSync(join(dir, 'model-00002-of-00002.safetensors'));
    const err = refused(['compress', dir, '--codec', 'rtn', '-o', join(tmp, 'never.usk')], 'E_FILE_NOT_FOUND');
    expect(err).toMatch(/shard model-00002-of-00002\.safetensors, named by model\.safetensors\.index\.json, is missing.*add model-00002-of-00002\.safetensors/);
  });

  it('an index that maps a tensor to a shard without it: E_MISSING_TENSOR', () => {
    const dir = copyDir(M('stories3M/hf-sharded'));
    editJson(join(dir, 'model.safetensors.index.json'), (v) => {
      (v.weight_map as Record<string, string>)['model.norm.weight'] = 'model-00001-of-00002.safetensors';
    });
    expect(refused(['generate', dir], 'E_MISSING_TENSOR')).toContain('model.norm.weight');
  });

  it('a config whose sizes disagree with the tensors: E_SHAPE_MISMATCH naming the tensor and the config field', () => {
    const wider = copyDir(M('stories260K/hf'));
    editJson(join(wider, 'config.json'), (v) => (v.intermediate_size = 256));
    expect(refused(['generate', wider], 'E_SHAPE_MISMATCH')).toMatch(/mlp\.gate_proj\.weight.*hiddenDim/);
    const fewer = copyDir(M('stories260K/hf'));
    editJson(join(fewer, 'config.json'), (v) => (v.num_hidden_layers = 4));
    expect(refused(['compress', fewer, '--codec', 'rtn', '-o', join(tmp, 'never.usk')], 'E_SHAPE_MISMATCH')).toMatch(/layer 4.*nLayers is 4/);
  });

  it('a truncated model.safetensors: refused (E_BAD_OFFSET or E_TRUNCATED) naming the file', () => {
    const dir = copyDir(M('stories260K/hf'));
    const p = join(dir, 'model.safetensors');
    const b = readFileSync(p);
    writeFileSync(p, b.subarray(0, b.byteLength - 4096));
    expect(refused(['generate', dir], '(E_BAD_OFFSET|E_TRUNCATED|E_TRAILING_DATA)')).toContain(p);
    writeFileSync(p, b.subarray(0, 100));
    expect(refused(['generate', dir], 'E_TRUNCATED')).toContain(p);
  });

  it('a tensor offset past the end, an unknown dtype, a non-float dtype, an overflowing shape: typed', () => {
    const past = copyDir(M('stories260K/hf'));
    editSafetensorsHeader(join(past, 'model.safetensors'), (h) => (h['model.norm.weight'].data_offsets = [1e12, 1e12 + 256]));
    refused(['generate', past], 'E_BAD_OFFSET');

    const unknown = copyDir(M('stories260K/hf'));
    editSafetensorsHeader(join(unknown, 'model.safetensors'), (h) => (h['model.norm.weight'].dtype = 'Q9_X'));
    expect(refused(['generate', unknown], 'E_BAD_DTYPE')).toContain('Q9_X');

    const ints = copyDir(M('stories260K/hf'));
    editSafetensorsHeader(join(ints, 'model.safetensors'), (h) => (h['model.norm.weight'].dtype = 'I32'));
    expect(refused(['generate', ints], 'E_BAD_DTYPE')).toContain('model.norm.weight');

    const huge = copyDir(M('stories260K/hf'));
    editSafetensorsHeader(join(huge, 'model.safetensors'), (h) => (h['model.norm.weight'].shape = [2 ** 31, 2 ** 31]));
    refused(['generate', huge], 'E_LIMIT_EXCEEDED');
  });

  it('config.json with a key twice, or an architecture outside the family: typed, naming them', () => {
    const dup = copyDir(M('stories260K/hf'));
    const text = readFileSync(join(dup, 'config.json'), 'utf8').replace('{', '{"hidden_size": 64,');
    writeFileSync(join(dup, 'config.json'), text);
    expect(refused(['generate', dup], 'E_BAD_HEADER')).toMatch(/"hidden_size" appears twice/);

    const gpt2 = copyDir(M('stories260K/hf'));
    editJson(join(gpt2, 'config.json'), (v) => {
      v.architectures = ['GPT2LMHeadModel'];
      v.model_type = 'gpt2';
    });
    expect(refused(['inspect', gpt2], 'E_UNSUPPORTED')).toContain('GPT2LMHeadModel');
  });

  it('a tokenizer with more tokens than the model has rows: E_TOKENIZER_MISMATCH', () => {
    const err = refused(['generate', M('stories260K/hf'), '--tokenizer', M('stories3M/hf/tokenizer.json')], 'E_TOKENIZER_MISMATCH');
    expect(err).toMatch(/4096 token ids but the model's vocabulary has 512/);
  });
});
