import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { registerAll } from '@ultrasketch/baselines';
import { ErrorCodes, UltraSketchError, getCodec } from '@ultrasketch/core';
import { readBundle } from '@ultrasketch/format';
import { LINEAR_KINDS, TensorNames, parseLinearName } from '@ultrasketch/model';
import { sessionFromBundle } from '@ultrasketch/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CompressResult,
  PIPELINE_VERSION,
  compress,
  defaultLayers,
  inspectBundle,
  loadBundle,
  loadBundleFromBytes,
  loadModel,
  openModel,
  parseLayers,
  setDefaultLayers,
  weightSeed,
} from '../src/index.js';
import { requireShared } from '../../../test/require-shared.js';

const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL_PATH = shared('models/stories260K/stories260K.bin');
const HAVE_SHARED = requireShared('pipeline compress tests', [MODEL_PATH]);

registerAll();

// ------------------------------------------------------------------------------------------------------
// An independent safetensors parser, written here from the spec (https://github.com/huggingface/safetensors):
// 8-byte little-endian u64 N, N bytes of JSON {name: {dtype, shape, data_offsets: [b, e]}, "__metadata__":
// {str: str}}, then the data area; offsets are relative to the data area (byte 8 + N).

interface SpecTensor {
  dtype: string;
  shape: number[];
  begin: number; // absolute file offsets
  end: number;
}

function parseSpec(bytes: Uint8Array): { tensors: Map<string, SpecTensor>; metadata: Record<string, string>; dataStart: number } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n))) as Record<string, any>;
  const dataStart = 8 + n;
  const tensors = new Map<string, SpecTensor>();
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    tensors.set(name, { dtype: v.dtype, shape: v.shape, begin: dataStart + v.data_offsets[0], end: dataStart + v.data_offsets[1] });
  }
  return { tensors, metadata: header.__metadata__ ?? {}, dataStart };
}

/** Parameters of a Llama model, counted by hand from the config (tied classifier once). */
function paramsByHand(c: Record<string, any>): number {
  const kv = (c.dim / c.nHeads) * c.nKvHeads;
  const perLayer = 2 * c.dim + 2 * c.dim * c.dim + 2 * kv * c.dim + 3 * c.dim * c.hiddenDim;
  return c.vocabSize * c.dim * (c.tiedClassifier ? 1 : 2) + c.nLayers * perLayer + c.dim;
}

describe.runIf(HAVE_SHARED)('compress() on stories260K', () => {
  const model = HAVE_SHARED ? loadModel(MODEL_PATH) : (undefined as never);
  let dir: string;
  const results = new Map<string, CompressResult>();
  const CASES: Array<{ key: string; codec: string; options: Record<string, unknown> }> = [
    { key: 'rtn8', codec: 'rtn', options: { bits: 8 } },
    { key: 'rtn4', codec: 'rtn', options: { bits: 4 } },
    { key: 'rtn2', codec: 'rtn', options: { bits: 2 } },
    { key: 'binary', codec: 'binary', options: {} },
    { key: 'float', codec: 'float', options: {} },
  ];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'usk-compress-'));
    for (const c of CASES) {
      results.set(
        c.key,
        await compress({
          model,
          codec: c.codec,
          codecOptions: c.options,
          output: join(dir, `${c.key}.usk`),
          provenance: { command: `ultrasketch compress ${MODEL_PATH} --codec ${c.codec} -o ${c.key}.usk` },
        }),
      );
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the returned bytes to the output path, atomically (no temporary file left)', () => {
    for (const c of CASES) {
      const onDisk = new Uint8Array(readFileSync(join(dir, `${c.key}.usk`)));
      expect(Buffer.compare(onDisk, results.get(c.key)!.bytes)).toBe(0);
    }
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it.each(CASES)('$key: bits() × 1 of every weight equals 8 × the bytes the file holds for it', ({ key }) => {
    const { bytes } = results.get(key)!;
    const spec = parseSpec(bytes);
    const bundle = readBundle(bytes, key);
    for (const [name, w] of bundle.weights) {
      const codec = getCodec(w.entry.codec);
      const bits = codec.bits(w.params);
      let fileBytes = 0;
      for (const [tname, t] of spec.tensors) if (tname.startsWith(`${name}.`) && !tname.slice(name.length + 1).includes('.')) fileBytes += t.end - t.begin;
      expect(bits.total, name).toBe(8 * fileBytes);
      for (const [component, b] of Object.entries(bits.components)) {
        const t = spec.tensors.get(`${name}.${component}`)!;
        expect(b, `${name}.${component}`).toBe(8 * (t.end - t.begin));
      }
    }
  });

  it.each(CASES)('$key: bpwLinears and bitsPerParam recomputed independently from the file equal inspect\'s', ({ key, codec }) => {
    const path = join(dir, `${key}.usk`);
    const bytes = new Uint8Array(readFileSync(path));
    const spec = parseSpec(bytes);
    const config = JSON.parse(spec.metadata.model_config!);
    const accounting = JSON.parse(spec.metadata.accounting!);
    // Which linears are compressed: the 7 kinds of every layer (the default for the baselines).
    const compressed = [...Array(config.nLayers).keys()].flatMap((l) => LINEAR_KINDS.map((k) => TensorNames.linear(l, k)));
    expect(accounting.compressedLinears).toEqual(compressed);
    let bits = 0;
    let weights = 0;
    for (const name of compressed) {
      const entry = JSON.parse(spec.metadata.weights!)[name];
      expect(entry.codec).toBe(codec);
      weights += entry.rows * entry.cols;
      for (const [tname, t] of spec.tensors) if (tname.startsWith(`${name}.`)) bits += 8 * (t.end - t.begin);
    }
    const params = paramsByHand(config);
    const fileBytes = statSync(path).size;
    const inspected = inspectBundle(path);
    expect(inspected.totals.fileBytes).toBe(fileBytes);
    expect(inspected.totals.params).toBe(params);
    expect(inspected.totals.linearBits).toBe(bits);
    expect(inspected.totals.linearWeights).toBe(weights);
    expect(inspected.totals.bpwLinears).toBe(bits / weights);
    expect(inspected.totals.bitsPerParam).toBe((8 * fileBytes) / params);
    // The stored accounting agrees with what is stored, and the report with both.
    expect(accounting.bpwLinears).toBe(bits / weights);
    expect(accounting.params).toBe(params);
    const report = results.get(key)!.report;
    expect(report.bpwLinears).toBe(bits / weights);
    expect(report.bitsPerParam).toBe((8 * fileBytes) / params);
    expect(report.fileBytes).toBe(fileBytes);
    // The table's rows and the header add up to the file exactly.
    const rowBits = inspected.tensors.reduce((s, r) => s + r.bits, 0);
    expect(rowBits + 8 * (spec.dataStart)).toBe(8 * fileBytes);
    expect(inspected.totals.headerBytes + 8 + inspected.totals.tensorBytes).toBe(fileBytes);
  });

  it('bpw of the baselines is what their packing says (rtn k + 32/64, binary 1 + 16/cols, float 16)', () => {
    const bpw = (k: string) => results.get(k)!.report.bpwLinears;
    // stories260K: every linear row is 64 or 172 wide; rtn groups of 64 → 2 f16 per ≤64 weights.
    const w = results.get('rtn8')!.report.linearWeights;
    expect(bpw('rtn8')).toBeGreaterThan(8.5);
    expect(bpw('rtn8')).toBeLessThan(8.6);
    expect(bpw('rtn4') - bpw('rtn2')).toBeCloseTo(2, 2); // codes differ by exactly 2 bits per weight (+ byte padding)
    expect(bpw('float')).toBe(16);
    expect(bpw('binary')).toBeGreaterThan(1);
    expect(bpw('binary')).toBeLessThan(1.26);
    expect(w).toBe(5 * (64 * 64 * 2 + 32 * 64 * 2 + 3 * 64 * 172));
  });

  it.each(CASES)('$key: every weight round-trips: decode(params from the bundle) = decode(params from encode)', ({ key }) => {
    const loaded = loadBundle(join(dir, `${key}.usk`));
    for (const [name, w] of loaded.bundle.weights) {
      const codec = getCodec(w.entry.codec, w.entry.version);
      const t = model.weights.tensors.get(name)!;
      const fresh = codec.encode(t.data, w.entry.rows, w.entry.cols, codec.resolveOptions(w.entry.options as Record<string, unknown>), {
        name,
        seed: w.entry.seed,
      });
      expect(w.entry.seed).toBe(weightSeed(0, name));
      expect(Buffer.compare(new Uint8Array(codec.decode(w.params).buffer), new Uint8Array(codec.decode(fresh).buffer)), name).toBe(0);
    }
    for (const [name, v] of loaded.bundle.vectors) expect(v).toEqual(model.weights.tensors.get(name)!.data);
  });

  it('stores the right codec per weight: compressed linears with the codec, embedding as float f16', () => {
    const loaded = loadBundle(join(dir, 'rtn4.usk'));
    for (const [name, w] of loaded.bundle.weights) {
      if (parseLinearName(name)) expect(w.entry).toMatchObject({ codec: 'rtn', options: { bits: 4, groupSize: 64 } });
      else expect(w.entry).toMatchObject({ codec: 'float', options: { dtype: 'f16' } });
    }
    expect(loaded.config.tiedClassifier).toBe(true);
    expect(loaded.bundle.weights.has(TensorNames.classifier)).toBe(false);
  });

  it('provenance: source path as given, its sha256, tool, version and command; no timestamps', () => {
    const loaded = loadBundle(join(dir, 'rtn8.usk'));
    expect(loaded.provenance).toEqual({
      sourcePath: MODEL_PATH,
      sourceSha256: createHash('sha256').update(readFileSync(MODEL_PATH)).digest('hex'),
      sourceFormat: 'legacy-f32',
      tool: 'ultrasketch',
      toolVersion: PIPELINE_VERSION,
      command: `ultrasketch compress ${MODEL_PATH} --codec rtn -o rtn8.usk`,
    });
    const header = JSON.stringify(parseSpec(results.get('rtn8')!.bytes).metadata);
    expect(header).not.toMatch(/20\d\d-\d\d-\d\d|timestamp|date/i);
  });

  it('deterministic: compressing twice gives byte-identical bundles', async () => {
    const again = await compress({
      model: MODEL_PATH,
      codec: 'rtn',
      codecOptions: { bits: 8 },
      provenance: { command: `ultrasketch compress ${MODEL_PATH} --codec rtn -o rtn8.usk` },
    });
    expect(Buffer.compare(again.bytes, results.get('rtn8')!.bytes)).toBe(0);
    const b1 = await compress({ model, codec: 'binary', seed: 7 });
    const b2 = await compress({ model, codec: 'binary', seed: 7 });
    expect(Buffer.compare(b1.bytes, b2.bytes)).toBe(0);
  });

  it('the rtn 8 bundle reproduces the float model\'s greedy tokens (first 64 positions at least)', () => {
    const golden = readFileSync(shared('reference/stories260K/greedy_tokens.txt'), 'utf8').trim().split('\n').map(Number);
    const loaded = loadBundle(join(dir, 'rtn8.usk'));
    const session = sessionFromBundle(loaded.bundle);
    const fed = [1];
    for (let pos = 0; pos < 64; pos++) {
      const logits = session.forward([fed[pos]!]);
      let best = 0;
      for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
      fed.push(best);
    }
    expect(fed.slice(0, 64)).toEqual(golden.slice(0, 64));
  });

  it.each(['rtn4', 'rtn2', 'binary', 'float'])('the %s bundle loads and generates through openModel', async (key) => {
    const opened = openModel(join(dir, `${key}.usk`));
    expect(opened.kind).toBe('bundle');
    if (opened.kind !== 'bundle') return;
    const session = sessionFromBundle(opened.bundle);
    const tokens: number[] = [];
    for await (const step of session.generate([1], { steps: 16, temperature: 0 })) tokens.push(step.token);
    expect(tokens.length).toBeGreaterThan(1);
    expect(tokens.every((t) => Number.isInteger(t) && t >= 0 && t < opened.config.vocabSize)).toBe(true);
  });
});

describe.runIf(HAVE_SHARED)('compress() options', () => {
  const model = HAVE_SHARED ? loadModel(MODEL_PATH) : (undefined as never);

  it('layers: only the chosen kinds are compressed; the rest are float f16 and bpwLinears counts only the compressed', async () => {
    const { bytes, report } = await compress({ model, codec: 'rtn', codecOptions: { bits: 4 }, layers: 'k,q' });
    expect(report.layers).toEqual(['q', 'k']);
    const loaded = loadBundleFromBytes(bytes, 'qk.usk');
    const c = loaded.config;
    expect(loaded.accounting.compressedLinears).toEqual([...Array(c.nLayers).keys()].flatMap((l) => [TensorNames.linear(l, 'q'), TensorNames.linear(l, 'k')]));
    for (const [name, w] of loaded.bundle.weights) {
      const kind = parseLinearName(name)?.kind;
      expect(w.entry.codec, name).toBe(kind === 'q' || kind === 'k' ? 'rtn' : 'float');
    }
    expect(loaded.accounting.linearWeights).toBe(c.nLayers * (64 * 64 + 32 * 64));
    expect(loaded.accounting.bpwLinears).toBe(report.bpwLinears);
    expect(loaded.accounting.groups.uncompressedLinears.weights).toBe(c.nLayers * (64 * 64 + 32 * 64 + 3 * 64 * 172));
    expect(loaded.accounting.groups.uncompressedLinears.bits).toBe(16 * loaded.accounting.groups.uncompressedLinears.weights);
  });

  it('default layers come from a per-codec table that other codecs can set', () => {
    expect(defaultLayers('rtn')).toEqual([...LINEAR_KINDS]);
    expect(defaultLayers('binary')).toEqual([...LINEAR_KINDS]);
    expect(defaultLayers('sketch')).toEqual(['q', 'k', 'v', 'gate', 'up', 'down']);
    setDefaultLayers('my-codec', ['down', 'up']);
    expect(defaultLayers('my-codec')).toEqual(['up', 'down']);
    expect(defaultLayers('unknown-codec')).toEqual([...LINEAR_KINDS]);
    expect(parseLayers('all')).toEqual([...LINEAR_KINDS]);
    for (const bad of ['', 'q,x', 'o_proj']) {
      expect(() => parseLayers(bad)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_ARGUMENT, source: '--layers' }));
    }
  });

  it.each([
    ['f32', 'float', { dtype: 'f32' }, 32],
    ['rtn8', 'rtn', { bits: 8, groupSize: 64 }, 8 + 32 / 64],
    ['rtn4', 'rtn', { bits: 4, groupSize: 64 }, 4 + 32 / 64],
  ] as const)('embeddings %s: stored through %s %o at %d bpw, and the bundle runs', async (storage, codec, options, bpw) => {
    const { bytes } = await compress({ model, codec: 'rtn', codecOptions: { bits: 8 }, embeddings: storage });
    const loaded = loadBundleFromBytes(bytes, `${storage}.usk`);
    const e = loaded.bundle.weights.get(TensorNames.embedding)!;
    expect(e.entry).toMatchObject({ codec, options });
    expect(loaded.accounting.groups.embedding.bits / loaded.accounting.groups.embedding.weights).toBe(bpw);
    const logits = sessionFromBundle(loaded.bundle).forward([1, 2, 3]);
    expect(logits.every(Number.isFinite)).toBe(true);
  });

  it('progress: one call per 2-D weight, in order, with the total', async () => {
    const seen: Array<[string, number, number]> = [];
    await compress({ model, codec: 'binary', onProgress: (p) => seen.push([p.name, p.index, p.total]) });
    const total = 1 + 7 * model.weights.config.nLayers;
    expect(seen.length).toBe(total);
    expect(seen.map((s) => s[1])).toEqual([...Array(total).keys()]);
    expect(seen.every((s) => s[2] === total)).toBe(true);
    expect(seen[0]![0]).toBe(TensorNames.embedding);
  });

  it('quality measured at compression time: rtn 8 is close to float (KL, top-1), stored in the bundle, still deterministic', async () => {
    const text = readFileSync(shared('data/tinystories/eval.txt'), 'utf8');
    const opts = { model, codec: 'rtn', codecOptions: { bits: 8 }, measureQuality: { text, textSource: 'eval.txt', windows: 1 } };
    const a = await compress(opts);
    const b = await compress(opts);
    expect(Buffer.compare(a.bytes, b.bytes)).toBe(0);
    const q = loadBundleFromBytes(a.bytes, 'q.usk').quality!;
    expect(q).toMatchObject({ protocol: 'llama2c-documents', textSource: 'eval.txt', windows: 1, window: 512, predictedTokens: 511 });
    expect(q.kl as number).toBeLessThan(0.01);
    expect(q.top1 as number).toBeGreaterThan(0.95);
    expect(Math.abs((q.meanNll as number) - (q.reference as { meanNll: number }).meanNll)).toBeLessThan(0.02);
    expect(a.report.quality).toEqual(q);
  });

  it('bad arguments are typed errors', async () => {
    const expectCode = async (p: Promise<unknown>, code: string) => {
      const err = await p.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(UltraSketchError);
      expect((err as UltraSketchError).code).toBe(code);
    };
    await expectCode(compress({ model, codec: 'nope' }), ErrorCodes.UNKNOWN_CODEC);
    await expectCode(compress({ model, codec: 'rtn', codecOptions: { bits: 5 } }), ErrorCodes.BAD_ARGUMENT);
    await expectCode(compress({ model, codec: 'rtn', embeddings: 'rtn5' as never }), ErrorCodes.BAD_ARGUMENT);
    await expectCode(compress({ model, codec: 'rtn', seed: -1 }), ErrorCodes.BAD_ARGUMENT);
    await expectCode(compress({ model, codec: 'rtn', layers: [] }), ErrorCodes.BAD_ARGUMENT);
    const dir = mkdtempSync(join(tmpdir(), 'usk-bad-'));
    try {
      await expectCode(compress({ model, codec: 'rtn', output: join(dir, 'missing', 'x.usk') }), ErrorCodes.FILE_NOT_FOUND);
      const { bytes } = await compress({ model, codec: 'binary' });
      writeFileSync(join(dir, 'b.usk'), bytes);
      await expectCode(compress({ model: join(dir, 'b.usk'), codec: 'rtn' }), ErrorCodes.UNSUPPORTED);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the library refuses what the CLI refuses: output = its own checkpoint or tokenizer, finetuning on the evaluation text', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'usk-self-'));
    try {
      const ckpt = join(dir, 'model.bin');
      const tok = join(dir, 'tok512.bin');
      copyFileSync(MODEL_PATH, ckpt);
      copyFileSync(shared('models/stories260K/tok512.bin'), tok);
      const before = [readFileSync(ckpt), readFileSync(tok)];
      const copy = loadModel(ckpt);
      for (const output of [ckpt, tok]) {
        await expect(compress({ model: copy, codec: 'rtn', output })).rejects.toMatchObject({ code: ErrorCodes.OUTPUT_IS_INPUT });
      }
      expect(readFileSync(ckpt).equals(before[0]!)).toBe(true);
      expect(readFileSync(tok).equals(before[1]!)).toBe(true);
      // The evaluation text with one more newline is the same text (document-level comparison, not a hash).
      const evalText = readFileSync(shared('data/tinystories/eval.txt'), 'utf8');
      await expect(
        compress({
          model: copy,
          codec: 'binary',
          finetune: { steps: 1, batch: 1, seq: 16, calibText: `${evalText}\n`, calibSource: 'calib-copy.txt' },
          measureQuality: { text: evalText, textSource: 'eval.txt', windows: 1 },
        }),
      ).rejects.toMatchObject({ code: ErrorCodes.BAD_ARGUMENT, message: expect.stringMatching(/refusing to calibrate on the evaluation text/) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.runIf(HAVE_SHARED)('openModel()', () => {
  it('opens a checkpoint (dense weights) and a bundle (its own tokenizer) by content', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'usk-open-'));
    try {
      const ckpt = openModel(MODEL_PATH);
      expect(ckpt.kind).toBe('checkpoint');
      const { bytes } = await compress({ model: MODEL_PATH, codec: 'rtn', codecOptions: { bits: 8 } });
      const path = join(dir, 'model.bin'); // the extension does not matter: content decides
      writeFileSync(path, bytes);
      const b = openModel(path);
      expect(b.kind).toBe('bundle');
      expect(b.config).toEqual(ckpt.config);
      const text = 'Once upon a time, there was a little girl named Lily.';
      expect(b.tokenizer.encode(text, { bos: true, eos: false })).toEqual(ckpt.tokenizer.encode(text, { bos: true, eos: false }));
      expect(() => openModel(path, { tokenizerPath: shared('models/stories260K/tok512.bin') })).toThrow(
        expect.objectContaining({ code: ErrorCodes.BAD_ARGUMENT }),
      );
      expect(b.source.fileBytes).toBe(bytes.byteLength);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('pipeline version', () => {
  it('PIPELINE_VERSION equals package.json', () => {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8'));
    expect(PIPELINE_VERSION).toBe(pkg.version);
  });
});

describe('compress() on a tiny model with an untied classifier (synthetic, no ../shared needed)', () => {
  it('stores lm_head with the classifier storage, counts it in params, loads and runs', async () => {
    const { TINY_CONFIG, randomWeights } = await import('../../format/test/helpers.js');
    const { readLlama2cCheckpoint, writeLlama2cLegacy } = await import('@ultrasketch/format');
    const { modelFromLlama2c, Tokenizer } = await import('@ultrasketch/model');
    const { readLlama2cTokenizer } = await import('@ultrasketch/format');
    const ckptBytes = writeLlama2cLegacy(TINY_CONFIG, randomWeights(TINY_CONFIG, 3));
    const weights = modelFromLlama2c(readLlama2cCheckpoint(ckptBytes, 'tiny.bin'), 'tiny.bin');
    // A llama2.c tokenizer file: i32 max length, then per token f32 score, i32 length, bytes.
    const pieces = ['<unk>', '\n<s>\n', '\n</s>\n', 'a', 'b', 'c', ' a', ' b', 'ab', 'ba'];
    const parts: number[] = [];
    const i32 = (v: number) => parts.push(...new Uint8Array(new Int32Array([v]).buffer));
    const f32 = (v: number) => parts.push(...new Uint8Array(new Float32Array([v]).buffer));
    i32(8);
    pieces.forEach((p, i) => {
      f32(-i);
      const b = new TextEncoder().encode(p);
      i32(b.length);
      parts.push(...b);
    });
    const tokenizerBytes = new Uint8Array(parts);
    const tokenizer = Tokenizer.fromLlama2c(readLlama2cTokenizer(tokenizerBytes, 10, 'tok.bin'));
    const model = {
      weights,
      tokenizer,
      tokenizerBytes,
      source: { path: 'tiny.bin', format: 'legacy-f32' as const, fileBytes: ckptBytes.byteLength, sha256: '00', tokenizerPath: 'tok.bin' },
    };
    expect(weights.config.tiedClassifier).toBe(false);
    const { bytes, report } = await compress({ model, codec: 'binary', embeddings: 'f32', classifier: 'rtn8' });
    const loaded = loadBundleFromBytes(bytes, 'tiny.usk');
    expect(loaded.bundle.weights.get(TensorNames.embedding)!.entry).toMatchObject({ codec: 'float', options: { dtype: 'f32' } });
    expect(loaded.bundle.weights.get(TensorNames.classifier)!.entry).toMatchObject({ codec: 'rtn', options: { bits: 8, groupSize: 64 } });
    expect(report.classifier).toBe('rtn8');
    expect(loaded.accounting.params).toBe(paramsByHand(loaded.config as unknown as Record<string, unknown>));
    expect(loaded.accounting.groups.classifier).toEqual({ weights: 80, bits: 8 * 10 * 8 + 10 * 32 });
    expect(loaded.accounting.bitsPerParam).toBe((8 * bytes.byteLength) / loaded.accounting.params);
    // Default classifier storage follows the embedding's.
    const same = await compress({ model, codec: 'binary', embeddings: 'rtn4' });
    expect(loadBundleFromBytes(same.bytes, 'tiny.usk').bundle.weights.get(TensorNames.classifier)!.entry.options).toEqual({ bits: 4, groupSize: 64 });
    // 2-bit embeddings (whole-file budgets near 1 bit per parameter): 2 bits and an f16 scale and offset per
    // group of 64, counted in the embedding group.
    const two = await compress({ model, codec: 'binary', embeddings: 'rtn2' });
    const twoLoaded = loadBundleFromBytes(two.bytes, 'tiny.usk');
    expect(twoLoaded.bundle.weights.get(TensorNames.embedding)!.entry).toMatchObject({ codec: 'rtn', options: { bits: 2, groupSize: 64 } });
    const emb = twoLoaded.accounting.groups.embedding!;
    const group = Math.min(64, twoLoaded.config.dim); // a row narrower than 64 is one group
    expect(emb.bits).toBe(2 * emb.weights + (emb.weights / group) * 32);
    expect(sessionFromBundle(twoLoaded.bundle).forward([1, 3, 4], { logits: 'all' }).every(Number.isFinite)).toBe(true);
    const logits = sessionFromBundle(loaded.bundle).forward([1, 3, 4], { logits: 'all' });
    expect(logits.length).toBe(30);
    expect(logits.every(Number.isFinite)).toBe(true);
  });
});
