import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, isUltraSketchError } from '@ultrasketch/core';
import { type GgufHeader, type GgufMetadataEntry, readBundle, readSafetensors } from '@ultrasketch/format';
import { VARIANTS, randomWeights } from '../../model/test/variant-models.js';
import { type TensorSource, loadLayer } from '@ultrasketch/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { editMetadataJson, specParse } from '../../format/test/bundleFixture.js';
import { requireShared } from '../../../test/require-shared.js';
import {
  AVAILABLE_MEMORY_VARIABLE,
  LayerwiseCalibrator,
  type ModelSource,
  calibrate,
  calibrationTokens,
  compress,
  detectModelPath,
  documentTokenStream,
  ggufTokenizer,
  loadBundleFromBytes,
  loadModel,
  openModelSource,
} from '../src/index.js';

/**
 * The pipeline's side of issue 11: what a path is (by content), streamed sources (one tensor's bytes at a time,
 * one layer at a time during compression), layer-wise calibration, bundle tokenizer kinds and configs, and the
 * memory refusal of finetuning. The CLI tests (apps/cli/test/inputs.test.ts) check the numbers against llama2.c.
 */

const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const L2C = shared('models/stories260K/stories260K.bin');
const HF = shared('models/stories260K/hf');
const GGUF = shared('models/stories260K/gguf/stories260K-f32.gguf');
const SHARDED = shared('models/stories3M/hf-sharded');
const CALIB = shared('data/tinystories/calib.txt');
const EVAL = shared('data/tinystories/eval.txt');
const HAVE = requireShared('pipeline sources tests', [L2C, HF, GGUF, SHARDED, CALIB, EVAL]);

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'usk-sources-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function code(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (isUltraSketchError(err)) return `${err.code}: ${err.message}`;
    throw err;
  }
  throw new Error('expected a typed error');
}

describe.runIf(HAVE)('what a path is, by content', () => {
  it('directory → HF, "GGUF" magic → gguf, a safetensors header → plain or usk by its metadata, else llama2.c', async () => {
    expect(detectModelPath(HF)).toBe('hf-directory');
    expect(detectModelPath(GGUF)).toBe('gguf');
    expect(detectModelPath(join(HF, 'model.safetensors'))).toBe('safetensors');
    expect(detectModelPath(L2C)).toBe('llama2c');
    const bundle = join(tmp, 'named-like-a-model.safetensors');
    writeFileSync(bundle, (await compress({ model: L2C, codec: 'rtn', codecOptions: { bits: 8 } })).bytes);
    expect(detectModelPath(bundle)).toBe('usk');
  });

  it('a FIFO is refused without being opened for a blocking read; a missing path is E_FILE_NOT_FOUND', () => {
    const fifo = join(tmp, 'fifo');
    execFileSync('mkfifo', [fifo]);
    expect(code(() => detectModelPath(fifo))).toMatch(/^E_NOT_A_FILE: .*named pipe/);
    expect(code(() => detectModelPath(join(tmp, 'none')))).toMatch(/^E_FILE_NOT_FOUND/);
  });
});

describe.runIf(HAVE)('streamed sources', () => {
  it('an HF directory: the config, files, dtypes and the SHA-256 of model.safetensors itself', () => {
    const src = openModelSource(HF);
    try {
      expect(src.format).toBe('hf');
      expect(src.config).toMatchObject({ dim: 64, nLayers: 5, vocabSize: 512, ropeLayout: 'halves', sourceArchitecture: 'LlamaForCausalLM' });
      expect(src.files.map((f) => f.role).sort()).toEqual(['config', 'config', 'tokenizer', 'tokenizer', 'weights']);
      expect(src.tokenizer.kind).toBe('hf-json');
      const whole = execFileSync('sha256sum', [join(HF, 'model.safetensors')], { encoding: 'utf8' }).split(' ')[0];
      expect(src.sha256()).toBe(whole);
    } finally {
      src.close();
    }
  });

  it('reads one tensor byte range at a time: the bytes asked for are exactly the tensors read', () => {
    const src = openModelSource(SHARDED);
    try {
      // The file as a whole vs the streamed tensor: same values.
      const shard = readSafetensors(new Uint8Array(readFileSync(join(SHARDED, 'model-00001-of-00002.safetensors'))));
      const name = 'model.embed_tokens.weight';
      const t = shard.tensors.get(name)!;
      const streamed = src.tensors.read(name);
      const bits = new Uint16Array(t.data.slice().buffer);
      for (let i = 0; i < bits.length; i += 997) expect(streamed[i]).toBe(new Float32Array(new Uint32Array([bits[i]! << 16]).buffer)[0]);
    } finally {
      src.close();
    }
  });

  it('compress streams the model: header shapes first, then every tensor read once, layer after layer, never two layers at once', async () => {
    const src = openModelSource(SHARDED);
    const reads: string[] = [];
    const inner = src.tensors;
    const spy: TensorSource = {
      naming: inner.naming,
      source: inner.source,
      names: () => inner.names(),
      shape: (n) => inner.shape(n),
      read: (n) => {
        reads.push(n);
        return inner.read(n);
      },
    };
    const watched: ModelSource = { ...src, tensors: spy };
    try {
      await compress({ model: watched, codec: 'rtn', codecOptions: { bits: 4 } });
    } finally {
      src.close();
    }
    expect(new Set(reads).size).toBe(reads.length); // each tensor once
    expect(reads).toHaveLength(56);
    const layerOf = (n: string) => Number(/^model\.layers\.(\d+)\./.exec(n)?.[1] ?? -1);
    const layers = reads.map(layerOf).filter((l) => l >= 0);
    // Non-decreasing: layer l is finished before layer l + 1 is read.
    for (let i = 1; i < layers.length; i++) expect(layers[i]!).toBeGreaterThanOrEqual(layers[i - 1]!);
    expect(reads[0]).toBe('model.embed_tokens.weight');
  });

  it('a streamed HF compress writes the same bytes as compressing the model loaded whole', async () => {
    const streamed = await compress({ model: HF, codec: 'sketch', codecOptions: { bpw: 0.75 } });
    const whole = await compress({ model: loadModel(HF), codec: 'sketch', codecOptions: { bpw: 0.75 } });
    expect(Buffer.compare(streamed.bytes, whole.bytes)).toBe(0);
    expect(streamed.report.provenance.sourceFormat).toBe('hf');
  });
});

describe.runIf(HAVE)('layer-wise calibration of a streamed model', () => {
  it('gives exactly the statistics calibrate() gives over the whole model in memory (stories260K GGUF)', () => {
    const model = loadModel(GGUF);
    const text = readFileSync(CALIB, 'utf8');
    const whole = calibrate({ model, text, maxTokens: 1024, window: 256 });
    const src = openModelSource(GGUF);
    try {
      const cal = new LayerwiseCalibrator(src.config, calibrationTokens(src.tokenizer.tokenizer, text, 1024), 256);
      expect(cal.forward).toBe(whole.info.forward === 'wasm-f32' ? 'wasm-f32-layerwise' : 'reference-f32-layerwise');
      cal.embed(src.tensors.read('token_embd.weight'));
      let compared = 0;
      for (let l = 0; l < src.config.nLayers; l++) {
        // Each layer read from the file on its own, as compress reads it.
        for (const [name, v] of cal.layer(l, loadLayer(src.config, src.tensors, l))) {
          expect(Array.from(v), name).toEqual(Array.from(whole.stats.meanSquare.get(name)!));
          compared++;
        }
      }
      expect(compared).toBe(35);
    } finally {
      src.close();
    }
  });

  it('a streamed GGUF compress with a calibrated codec stores the same tensors as the llama2.c checkpoint compressed whole', async () => {
    const text = readFileSync(CALIB, 'utf8') as string;
    const opts = { codec: 'sketch', codecOptions: { bpw: 0.75, groups: 4 } } as const;
    const streamed = await compress({ ...opts, model: GGUF, calibrate: { text, textSource: CALIB, maxTokens: 1024 } });
    const model = loadModel(L2C);
    const c = calibrate({ model, text, textSource: CALIB, maxTokens: 1024 });
    const whole = await compress({ ...opts, model, saliency: c.stats.meanSquare, calibration: c.info });
    const a = specParse(streamed.bytes);
    const b = specParse(whole.bytes);
    expect([...a.tensors.keys()].sort()).toEqual([...b.tensors.keys()].sort());
    for (const [name, t] of a.tensors) expect(Buffer.compare(t.bytes, b.tensors.get(name)!.bytes), name).toBe(0);
    expect(streamed.report.provenance.calibration?.forward).toMatch(/-layerwise$/);
  });
});

describe.runIf(HAVE)('bundle tokenizer kinds and configs', () => {
  it('hf-json: the bundle tokenizes eval.txt as the directory does (and as llama2.c does: same stream)', async () => {
    const { bytes } = await compress({ model: HF, codec: 'rtn', codecOptions: { bits: 8 } });
    const b = loadBundleFromBytes(bytes, 'hf.usk');
    expect(b.tokenizer.kind).toBe('hf-json');
    expect(b.tokenizerInfo.stopIds).toEqual([1, 2]);
    const text = readFileSync(EVAL, 'utf8') as string;
    const fromBundle = documentTokenStream(b.tokenizer, text);
    expect(Array.from(fromBundle)).toEqual(Array.from(documentTokenStream(loadModel(L2C).tokenizer, text)));
  });

  it('gguf-llama: stored as a llama2.c tokenizer file; for stories260K it is tok512.bin byte for byte', async () => {
    const { bytes } = await compress({ model: GGUF, codec: 'rtn', codecOptions: { bits: 8 } });
    const bundle = readBundle(bytes);
    expect(bundle.tokenizer.kind).toBe('gguf-llama');
    const tok512 = readFileSync(shared('models/stories260K/tok512.bin'));
    expect(Buffer.compare(bundle.tokenizer.bytes, tok512)).toBe(0);
  });

  it('a damaged tokenizer entry is refused naming it (an unknown kind, an extra key, an eos id past the vocabulary)', async () => {
    const { bytes } = await compress({ model: HF, codec: 'rtn', codecOptions: { bits: 8 } });
    const bad = (edit: (v: Record<string, unknown>) => unknown) => code(() => loadBundleFromBytes(editMetadataJson(bytes, 'tokenizer', edit), 'x.usk'));
    expect(bad((v) => ({ ...v, kind: 'sentencepiece' }))).toMatch(/^E_BAD_HEADER: .*tokenizer kind/);
    expect(bad((v) => ({ ...v, extra: 1 }))).toMatch(/^E_BAD_HEADER: .*exactly the keys/);
    expect(bad((v) => ({ ...v, eosIds: [100000] }))).toMatch(/^E_BAD_HEADER: .*eosIds holds 100000/);
    expect(bad((v) => ({ ...v, bosId: -3 }))).toMatch(/^E_BAD_HEADER: .*bosId/);
  });

  it('a llama2.c model\'s bundle config has exactly the fields bundles always had; an HF one adds only sourceArchitecture', async () => {
    const l2c = specParse((await compress({ model: L2C, codec: 'rtn', codecOptions: { bits: 8 } })).bytes);
    expect(Object.keys(JSON.parse(l2c.metadata.model_config!)).sort()).toEqual(
      ['architecture', 'dim', 'hiddenDim', 'nHeads', 'nKvHeads', 'nLayers', 'normEps', 'ropeLayout', 'ropeTheta', 'seqLen', 'tiedClassifier', 'vocabSize'].sort(),
    );
    const hf = (await compress({ model: HF, codec: 'rtn', codecOptions: { bits: 8 } })).bytes;
    const cfg = JSON.parse(specParse(hf).metadata.model_config!);
    expect(cfg.sourceArchitecture).toBe('LlamaForCausalLM');
    expect(loadBundleFromBytes(hf, 'hf.usk').config.sourceArchitecture).toBe('LlamaForCausalLM');
    // A variant field of the wrong type is refused by the bundle reader, naming it.
    expect(code(() => loadBundleFromBytes(editMetadataJson(hf, 'model_config', (v) => ({ ...v, qkNorm: 'yes' })), 'x.usk'))).toMatch(
      /^E_BAD_HEADER: .*qkNorm is "yes"/,
    );
  });
});

describe('a GGUF gpt2 vocabulary is embedded as the tokenizer.json it runs as (origin gguf-gpt2)', () => {
  it('compress → loadBundle: kind hf-json on disk, gguf-gpt2 when read, the same ids and stop ids', async () => {
    // A hand-built byte-level vocabulary (GPT-2's map: 'Ġ' is the space byte), as llama.cpp stores one.
    const tokens = ['<|end|>', ...'abcdehlortw'.split(''), 'Ġ', 'he', 'll', 'hell', 'hello', 'Ġw', 'or', 'Ġwor', 'ld', 'Ġworld'];
    const merges = ['h e', 'l l', 'he ll', 'hell o', 'Ġ w', 'o r', 'Ġw or', 'l d', 'Ġwor ld'];
    const e = (type: GgufMetadataEntry['type'], value: GgufMetadataEntry['value']): GgufMetadataEntry => ({ type, value });
    const header: GgufHeader = {
      version: 3,
      metadata: new Map([
        ['tokenizer.ggml.model', e('string', 'gpt2')],
        ['tokenizer.ggml.pre', e('string', 'qwen2')],
        ['tokenizer.ggml.tokens', e('array', { elementType: 'string', values: tokens })],
        ['tokenizer.ggml.merges', e('array', { elementType: 'string', values: merges })],
        ['tokenizer.ggml.token_type', e('array', { elementType: 'int32', values: Int32Array.from(tokens.map((_, i) => (i === 0 ? 3 : 1))) })],
        ['tokenizer.ggml.eos_token_id', e('uint32', 0)],
      ]),
      tensors: new Map(),
      alignment: 32,
      headerBytes: 0,
      dataOffset: 0,
      fileSize: 0,
    };
    const v = VARIANTS.find((x) => x.name.startsWith('Qwen2'))!;
    const variant = { ...v, config: { ...v.config, vocabSize: 32 }, spec: { ...v.spec, vocab: 32 } };
    const weights = randomWeights(variant, 3);
    const tok = ggufTokenizer(header, weights.config, '<test gguf>');
    expect(tok.embed).toMatchObject({ kind: 'hf-json', origin: 'gguf-gpt2', bosId: null, eosIds: [0] });
    const { bytes } = await compress({
      model: { weights, tokenizer: tok.tokenizer, tokenizerInfo: tok, tokenizerBytes: tok.embed.bytes, source: { path: 'x.gguf', format: 'gguf', fileBytes: 0, sha256: '0'.repeat(64), tokenizerPath: null, files: [] }, description: null, dtypes: {} },
      codec: 'float',
      codecOptions: { dtype: 'f32' },
    });
    const b = loadBundleFromBytes(bytes, 'gpt2.usk');
    expect(JSON.parse(specParse(bytes).metadata.tokenizer!)).toEqual({ kind: 'hf-json', tensor: 'tokenizer.json', configTensor: 'tokenizer_config.json', bosId: null, eosIds: [0], origin: 'gguf-gpt2' });
    expect(b.tokenizer.kind).toBe('gguf-gpt2');
    expect(b.tokenizer.bosId).toBe(-1);
    expect(b.tokenizerInfo.stopIds).toEqual([0]);
    expect(b.tokenizer.encode('hello world<|end|>', { bos: true })).toEqual(tok.tokenizer.encode('hello world<|end|>', { bos: true }));
    expect(b.tokenizer.encode('hello world')).toEqual([tokens.indexOf('hello'), tokens.indexOf('Ġworld')]);
  });
});

describe.runIf(HAVE)('finetuning states what it needs and refuses what will not fit', () => {
  it(`${AVAILABLE_MEMORY_VARIABLE}=1 GB: compress --finetune-steps is E_OUT_OF_MEMORY with both figures, before encoding`, async () => {
    const before = process.env[AVAILABLE_MEMORY_VARIABLE];
    process.env[AVAILABLE_MEMORY_VARIABLE] = String(1e6);
    let progress = 0;
    try {
      const text = readFileSync(CALIB, 'utf8') as string;
      const err = await compress({
        model: L2C,
        codec: 'rtn',
        codecOptions: { bits: 4 },
        finetune: { steps: 1, calibText: text },
        onProgress: () => progress++,
      }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(isUltraSketchError(err, ErrorCodes.OUT_OF_MEMORY)).toBe(true);
      expect((err as Error).message).toMatch(/finetuning needs about [\d.]+ GiB of memory \(the float teacher [\d.]+ GiB \+ .*\), and 0\.00 GiB is available/);
      expect(progress).toBe(0);
    } finally {
      if (before === undefined) delete process.env[AVAILABLE_MEMORY_VARIABLE];
      else process.env[AVAILABLE_MEMORY_VARIABLE] = before;
    }
  });
});
