import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { vqCodec, vqEncode } from '@ultrasketch/baselines';
import { getCodec } from '@ultrasketch/core';
import { USK_PACKED_METADATA_TENSOR } from '@ultrasketch/format';
import { type Tensor, TensorNames } from '@ultrasketch/model';
import { NodeSession, getKernel, registerAllKernels, sessionFromBundle } from '@ultrasketch/runtime-node';
import { describe, expect, it } from 'vitest';
import { compress, loadBundleFromBytes, loadModel, registerAllCodecs } from '../src/index.js';
import { requireShared } from '../../../test/require-shared.js';

/**
 * Whole-file bits (docs/results.md §11.1b): the vq-stored embedding (tied classifier) and format 3 (packed
 * metadata and tokenizer), on stories260K. The runtime's output is checked against the same model with every
 * weight decoded to dense float.
 */
const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL_PATH = shared('models/stories260K/stories260K.bin');
const CALIB = shared('data/tinystories/calib.txt');
const OLD_BUNDLE = fileURLToPath(new URL('../../../models/stories3M-littlebit-0.55.usk', import.meta.url));
const HAVE = requireShared('vq embedding tests', [MODEL_PATH, CALIB]);

describe('vq codec and kernel', () => {
  registerAllCodecs();
  let s = 7;
  const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const rows = 96;
  const cols = 24;
  const w = Float32Array.from({ length: rows * cols }, rnd);
  const o = vqCodec.resolveOptions({ dim: 4, bits: 5, iterations: 8 });

  it('round-trips through its tensors, counts exactly the bytes it stores, and decodes rows as the whole', () => {
    const p = vqCodec.encode(w, rows, cols, o, { name: 'w', seed: 0 });
    const t = vqCodec.toTensors(p);
    expect(vqCodec.bits(p).total).toBe(8 * (t.codes!.data.byteLength + t.codebook!.data.byteLength));
    expect(t.codes!.data.byteLength).toBe(Math.ceil(((rows * cols) / 4) * 5 / 8));
    const back = vqCodec.fromTensors(t, rows, cols, o, 'w');
    const full = vqCodec.decode(back);
    expect(full).toEqual(vqCodec.decode(p));
    const row = new Float32Array(cols);
    vqCodec.decodeRows(back, 17, 1, row);
    expect(row).toEqual(full.subarray(17 * cols, 18 * cols));
  });

  it('the kernel (codebook dot tables) matches the decoded matrix times x', () => {
    const p = vqCodec.encode(w, rows, cols, o, { name: 'w', seed: 0 });
    const dense = vqCodec.decode(p);
    const n = 3;
    const x = Float32Array.from({ length: n * cols }, rnd);
    const y = new Float32Array(n * rows);
    registerAllKernels();
    getKernel('vq')(p).apply(x, y, n);
    for (let b = 0; b < n; b++) {
      for (let r = 0; r < rows; r++) {
        let ref = 0;
        for (let j = 0; j < cols; j++) ref += dense[r * cols + j]! * x[b * cols + j]!;
        expect(y[b * rows + r]).toBeCloseTo(ref, 5);
      }
    }
  });

  it('row weights pull the codebook toward the heavy rows', () => {
    const heavy = new Float64Array(rows).fill(1);
    for (let r = 0; r < 8; r++) heavy[r] = 1000;
    const err = (p: ReturnType<typeof vqEncode>) => {
      const d = vqCodec.decode(p);
      let e = 0;
      for (let i = 0; i < 8 * cols; i++) e += (d[i]! - w[i]!) ** 2;
      return e;
    };
    expect(err(vqEncode(w, rows, cols, o, 'w', heavy))).toBeLessThan(0.7 * err(vqEncode(w, rows, cols, o, 'w')));
  });

  it('refuses a sub-vector length that does not divide the row, and a non-finite codebook', () => {
    expect(() => vqCodec.encode(w, rows, cols, vqCodec.resolveOptions({ dim: 5 }), { name: 'w', seed: 0 })).toThrow(/does not divide/);
    const p = vqCodec.encode(w, rows, cols, o, { name: 'w', seed: 0 });
    const t = vqCodec.toTensors(p);
    const cb = t.codebook!.data.slice();
    cb[1] = 0x7c; // f16 +Inf in the first entry
    expect(() => vqCodec.fromTensors({ ...t, codebook: { ...t.codebook!, data: cb } }, rows, cols, o, 'w')).toThrow(/not finite/);
  });
});

describe.runIf(HAVE)('a stories260K bundle with a vq embedding, packed (format 3)', () => {
  const model = HAVE ? loadModel(MODEL_PATH) : (undefined as never);
  const calibText = HAVE ? readFileSync(CALIB, 'utf8') : '';

  it('round-trips, the accounting adds up to every byte of the file, and the runtime matches the decoded-dense model', async () => {
    const packed = await compress({ model, codec: 'binary', embeddings: 'vq6', pack: true, calibrate: { text: calibText, textSource: 'calib.txt' } });
    const plain = await compress({ model, codec: 'binary', embeddings: 'vq6', calibrate: { text: calibText, textSource: 'calib.txt' } });
    const a = loadBundleFromBytes(packed.bytes, 'packed.usk');
    const b = loadBundleFromBytes(plain.bytes, 'plain.usk');
    expect(a.bundle.formatVersion).toBe(3);
    expect(b.bundle.formatVersion).toBe(2);
    // Packing changes the container only: the same weights.
    for (const [name, w] of b.bundle.weights) expect(a.bundle.weights.get(name)!.params, name).toEqual(w.params);
    const emb = a.bundle.weights.get(TensorNames.embedding)!;
    expect(emb.entry.codec).toBe('vq');
    expect(emb.entry.options).toEqual({ dim: 4, bits: 6, iterations: 12 });

    // Every byte: the JSON header (+ its 8-byte length) and every group, the packed metadata included.
    const acc = a.accounting;
    let bits = 0;
    for (const g of Object.values(acc.groups)) if (g) bits += g.bits;
    expect(bits / 8 + 8 + acc.headerBytes).toBe(packed.bytes.byteLength);
    // The stored section (a report) says what the file holds: the tokenizer as packed.
    const stored = a.bundle.sections.accounting as { groups: { tokenizer: { bits: number } } };
    expect(stored.groups.tokenizer.bits).toBe(acc.groups.tokenizer.bits);
    expect(acc.groups.metadata!.bits).toBe(8 * a.bundle.file.tensors.get(USK_PACKED_METADATA_TENSOR)!.data.byteLength);
    expect(acc.bitsPerParam).toBeCloseTo((8 * packed.bytes.byteLength) / acc.params, 12);
    expect(packed.bytes.byteLength).toBeLessThan(plain.bytes.byteLength - 20_000);
    // 64×512 values at 1.5 bits + a 64×4 f16 codebook.
    expect(acc.groups.embedding.bits).toBe(8 * (Math.ceil((512 * 64 * 6) / 4 / 8) + 64 * 4 * 2));

    // The fused-kernel session against a float session over every weight decoded.
    const tensors = new Map<string, Tensor>();
    for (const [name, w] of a.bundle.weights) {
      tensors.set(name, { shape: [w.entry.rows, w.entry.cols], data: getCodec(w.entry.codec).decode(w.params) } as Tensor);
    }
    for (const [name, v] of a.bundle.vectors) tensors.set(name, { shape: [v.length], data: v } as Tensor);
    const ref = NodeSession.fromWeights({ config: a.config, tensors }, { kernels: 'js', contextLength: 16 });
    const run = sessionFromBundle(a.bundle, { contextLength: 16 });
    const tokens = [1, 403, 407, 261, 378, 425, 22, 1000 % 512];
    const lr = ref.forward(tokens, { logits: 'all' });
    const lb = run.forward(tokens, { logits: 'all' });
    expect(lb.length).toBe(lr.length);
    let maxDiff = 0;
    let maxAbs = 0;
    for (let i = 0; i < lr.length; i++) {
      expect(Number.isFinite(lb[i]!)).toBe(true);
      maxDiff = Math.max(maxDiff, Math.abs(lb[i]! - lr[i]!));
      maxAbs = Math.max(maxAbs, Math.abs(lr[i]!));
    }
    expect(maxDiff).toBeLessThan(1e-3 * maxAbs);
  }, 60_000);

  it('an older (format 2) bundle still loads with its figures', () => {
    const bytes = readFileSync(OLD_BUNDLE);
    const l = loadBundleFromBytes(bytes, OLD_BUNDLE);
    expect(l.bundle.formatVersion).toBe(2);
    expect(l.accounting.groups.metadata).toBeUndefined();
    // every byte of the file counted (the embedded default is a format-2 bundle)
    expect(l.accounting.bitsPerParam).toBeCloseTo((8 * bytes.length) / 3_148_224, 10);
    expect(l.accounting.bitsPerParam).toBeGreaterThan(1);
  });
});
