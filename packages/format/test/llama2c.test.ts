import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '@ultrasketch/core';
import {
  LLAMA2C_V2_HEADER_BYTES,
  legacyFileBytes,
  llama2cShapes,
  quantizeQ80,
  readLlama2cCheckpoint,
  v2FileBytes,
  writeLlama2cLegacy,
  writeLlama2cV2,
  type Llama2cWeights,
} from '../src/index.js';
import { HAVE_SHARED, TINY_CONFIG, expectRejects, randomWeights, readShared } from './helpers.js';

/** Every float32 array of a checkpoint, flattened in a fixed order, with its name. */
function allArrays(w: Llama2cWeights): Array<[string, Float32Array]> {
  const out: Array<[string, Float32Array]> = [['token_embedding', w.tokenEmbedding]];
  for (const key of ['rmsAtt', 'wq', 'wk', 'wv', 'wo', 'rmsFfn', 'w1', 'w2', 'w3'] as const) {
    w[key].forEach((a, l) => out.push([`${key}[${l}]`, a]));
  }
  out.push(['rms_final', w.rmsFinal]);
  if (w.classifier) out.push(['classifier', w.classifier]);
  return out;
}

/** Distance in units in the last place between two float32 values (same sign assumed). */
function ulpDistance(a: number, b: number): number {
  const f = new Float32Array([a, b]);
  const i = new Int32Array(f.buffer);
  return Math.abs(i[0]! - i[1]!);
}

describe.skipIf(!HAVE_SHARED)('real llama2.c checkpoints (../shared/models)', () => {
  it('reads stories260K (legacy float32) with the config its README documents', () => {
    const ckpt = readLlama2cCheckpoint(readShared('models/stories260K/stories260K.bin'), 'stories260K.bin');
    expect(ckpt.layout).toBe('legacy-f32');
    expect(ckpt.groupSize).toBeUndefined();
    expect(ckpt.config).toEqual({
      dim: 64,
      hiddenDim: 172,
      nLayers: 5,
      nHeads: 8,
      nKvHeads: 4,
      vocabSize: 512,
      seqLen: 512,
      sharedClassifier: true,
    });
    const s = llama2cShapes(ckpt.config);
    expect(s.headSize).toBe(8);
    expect(s.kvDim).toBe(32);
    expect(ckpt.weights.classifier).toBeUndefined();
    expect(ckpt.weights.wk[0]!.length).toBe(32 * 64);
    expect(ckpt.weights.w2[4]!.length).toBe(64 * 172);
    for (const [name, a] of allArrays(ckpt.weights)) {
      expect(a.every(Number.isFinite), name).toBe(true);
    }
    // RMSNorm gains of a trained model are mostly positive and of order one, not noise.
    const meanGain = ckpt.weights.rmsFinal.reduce((a, b) => a + b, 0) / 64;
    expect(meanGain).toBeGreaterThan(0.1);
  });

  it('reads stories3M-q80 (version 2, Q8_0) with the config its README documents', () => {
    const bytes = readShared('models/stories3M/stories3M-q80.bin');
    const ckpt = readLlama2cCheckpoint(bytes, 'stories3M-q80.bin');
    expect(ckpt.layout).toBe('v2-q8_0');
    expect(ckpt.groupSize).toBe(64);
    expect(ckpt.config).toEqual({
      dim: 192,
      hiddenDim: 512,
      nLayers: 6,
      nHeads: 6,
      nKvHeads: 2,
      vocabSize: 4096,
      seqLen: 512,
      sharedClassifier: true,
    });
    expect(v2FileBytes(ckpt.config, 64)).toBe(bytes.byteLength);
    const s = llama2cShapes(ckpt.config);
    expect([s.headSize, s.kvDim]).toEqual([32, 64]);
    // The README's parameter count: every float in the file, norms included.
    const params = allArrays(ckpt.weights).reduce((n, [, a]) => n + a.length, 0);
    expect(params).toBe(3_148_224);
    for (const [name, a] of allArrays(ckpt.weights)) {
      expect(a.every(Number.isFinite), name).toBe(true);
    }
  });

  it('re-quantizing stories3M reproduces its file byte for byte (its weights are exact Q8_0 values)', () => {
    // Dequantized weights are int8 × scale, so quantizing them again must give the same int8s and scales,
    // hence the same file: a strong check of both the v2 writer and the reader.
    const bytes = readShared('models/stories3M/stories3M-q80.bin');
    const ckpt = readLlama2cCheckpoint(bytes, 'stories3M-q80.bin');
    const again = writeLlama2cV2(ckpt.config, ckpt.weights, ckpt.groupSize!);
    expect(again.byteLength).toBe(bytes.byteLength);
    expect(Buffer.from(again).equals(Buffer.from(bytes))).toBe(true);
  });

  it('writing stories260K back gives the original file (the unused RoPE tables to within 1 ulp)', () => {
    const original = readShared('models/stories260K/stories260K.bin');
    const ckpt = readLlama2cCheckpoint(original, 'stories260K.bin');
    const written = writeLlama2cLegacy(ckpt.config, ckpt.weights);
    expect(written.byteLength).toBe(original.byteLength);
    expect(written.byteLength).toBe(legacyFileBytes(ckpt.config));

    // The freq_cis tables were computed by PyTorch's float32 cos/sin, which are not correctly rounded,
    // so a few percent of their values differ from ours in the last bit (no reader uses them: RoPE is
    // recomputed). Everything else must be identical; the tables must agree to within one ulp.
    const s = llama2cShapes(ckpt.config);
    const freqStart = legacyFileBytes(ckpt.config) - 2 * s.freqCis * 4; // shared classifier: tables end the file
    expect(Buffer.from(written.subarray(0, freqStart)).equals(Buffer.from(original.subarray(0, freqStart)))).toBe(true);
    const ours = new DataView(written.buffer, written.byteOffset + freqStart);
    const theirs = new DataView(original.buffer, original.byteOffset + freqStart);
    let exact = 0;
    for (let i = 0; i < 2 * s.freqCis; i++) {
      const a = ours.getFloat32(4 * i, true);
      const b = theirs.getFloat32(4 * i, true);
      if (a === b) exact++;
      else expect(ulpDistance(a, b), `freq_cis value ${i}: ${a} vs ${b}`).toBeLessThanOrEqual(1);
    }
    expect(exact / (2 * s.freqCis)).toBeGreaterThan(0.9);
  });
});

describe('llama2.c writers on synthetic weights', () => {
  it('legacy: write → read round-trips exactly, with a separate classifier (negative vocab_size)', () => {
    const weights = randomWeights(TINY_CONFIG, 7);
    const bytes = writeLlama2cLegacy(TINY_CONFIG, weights);
    expect(bytes.byteLength).toBe(legacyFileBytes(TINY_CONFIG));
    const view = new DataView(bytes.buffer);
    expect(view.getInt32(5 * 4, true)).toBe(-10); // vocab_size negated: the classifier follows
    const back = readLlama2cCheckpoint(bytes, 'tiny.bin');
    expect(back.layout).toBe('legacy-f32');
    expect(back.config).toEqual(TINY_CONFIG);
    expect(back.weights).toEqual(weights);
    // The classifier is the last thing in the file.
    const last = view.getFloat32(bytes.byteLength - 4, true);
    expect(last).toBe(weights.classifier![weights.classifier!.length - 1]);
  });

  it('legacy: the freq_cis tables hold cos then sin of pos × 10000^(-2i/head_size)', () => {
    const c = { ...TINY_CONFIG, sharedClassifier: true };
    const w = randomWeights(c, 3);
    const bytes = writeLlama2cLegacy(c, w);
    const s = llama2cShapes(c);
    const start = bytes.byteLength - 2 * s.freqCis * 4;
    const view = new DataView(bytes.buffer, start);
    const half = s.headSize / 2;
    for (let pos = 0; pos < c.seqLen; pos++) {
      for (let i = 0; i < half; i++) {
        const angle = pos / 10000 ** ((2 * i) / s.headSize);
        expect(view.getFloat32(4 * (pos * half + i), true)).toBeCloseTo(Math.cos(angle), 6);
        expect(view.getFloat32(4 * (s.freqCis + pos * half + i), true)).toBeCloseTo(Math.sin(angle), 6);
      }
    }
    expect(new DataView(bytes.buffer).getInt32(5 * 4, true)).toBe(10); // shared: vocab_size stays positive
  });

  it('v2: write → read gives values within scale/2 of the originals, norms exact', () => {
    const weights = randomWeights(TINY_CONFIG, 11);
    const groupSize = 4;
    const bytes = writeLlama2cV2(TINY_CONFIG, weights, groupSize);
    expect(bytes.byteLength).toBe(v2FileBytes(TINY_CONFIG, groupSize));
    const back = readLlama2cCheckpoint(bytes, 'tiny-q80.bin');
    expect(back.layout).toBe('v2-q8_0');
    expect(back.groupSize).toBe(groupSize);
    expect(back.config).toEqual(TINY_CONFIG);
    expect(back.weights.rmsAtt).toEqual(weights.rmsAtt);
    expect(back.weights.rmsFfn).toEqual(weights.rmsFfn);
    expect(back.weights.rmsFinal).toEqual(weights.rmsFinal);
    const ours = allArrays(back.weights);
    allArrays(weights).forEach(([name, orig], k) => {
      if (name.startsWith('rms')) return;
      const deq = ours[k]![1];
      expect(ours[k]![0]).toBe(name);
      for (let g = 0; g < orig.length / groupSize; g++) {
        const group = orig.subarray(g * groupSize, (g + 1) * groupSize);
        const scale = Math.max(...group.map(Math.abs)) / 127;
        for (let i = 0; i < groupSize; i++) {
          const err = Math.abs(deq[g * groupSize + i]! - group[i]!);
          expect(err, `${name} element ${g * groupSize + i}`).toBeLessThanOrEqual(scale / 2 + 1e-6 * scale);
        }
      }
    });
  });

  it('v2: the header holds magic, version, config, shared flag and group size, then zeros to 256', () => {
    const c = { ...TINY_CONFIG, sharedClassifier: true };
    const bytes = writeLlama2cV2(c, randomWeights(c), 8);
    const v = new DataView(bytes.buffer);
    expect(String.fromCharCode(...bytes.subarray(0, 4))).toBe('24ka'); // 0x616b3432 little-endian
    expect(v.getInt32(4, true)).toBe(2);
    expect([8, 12, 16, 20, 24, 28, 32].map((o) => v.getInt32(o, true))).toEqual([8, 12, 2, 2, 1, 10, 4]);
    expect(bytes[36]).toBe(1);
    expect(v.getInt32(37, true)).toBe(8);
    expect(bytes.subarray(41, LLAMA2C_V2_HEADER_BYTES).every((b) => b === 0)).toBe(true);
  });

  it('quantizeQ80 rounds halves to even, handles all-zero groups, and refuses NaN', () => {
    // max |w| = 127 → scale 1 exactly, so q = round-half-even(w).
    const { q, scales } = quantizeQ80(new Float32Array([127, 0.5, 1.5, -2.5, 0, 0, 0, 0]), 4);
    expect(Array.from(scales)).toEqual([1, 0]);
    expect(Array.from(q)).toEqual([127, 0, 2, -2, 0, 0, 0, 0]);
    expectRejects(() => quantizeQ80(new Float32Array([1, NaN]), 2, 'wq[0]'), ErrorCodes.NOT_FINITE, 'wq[0]', /value 1 is NaN/);
    expectRejects(() => quantizeQ80(new Float32Array(6), 4, 'w1[0]'), ErrorCodes.BAD_DIMENSION, 'w1[0]', /not a whole number of groups/);
  });

  it('refuses weights whose shapes disagree with the config, naming the array', () => {
    const w = randomWeights(TINY_CONFIG);
    expectRejects(
      () => writeLlama2cLegacy(TINY_CONFIG, { ...w, wk: [w.wk[0]!, new Float32Array(31)] }),
      ErrorCodes.SHAPE_MISMATCH,
      'wk[1]',
      /has 31 values but the config needs 32 \(kv_dim × dim\)/,
    );
    expectRejects(
      () => writeLlama2cLegacy(TINY_CONFIG, { ...w, w2: [w.w2[0]!] }),
      ErrorCodes.SHAPE_MISMATCH,
      'w2',
      /has 1 layers but the config has n_layers 2/,
    );
    expectRejects(
      () => writeLlama2cLegacy(TINY_CONFIG, { ...w, tokenEmbedding: new Float32Array(81) }),
      ErrorCodes.SHAPE_MISMATCH,
      'token_embedding',
      /81 values but the config needs 80/,
    );
    expectRejects(
      () => writeLlama2cV2(TINY_CONFIG, { ...w, rmsFinal: new Float32Array(7) }, 4),
      ErrorCodes.SHAPE_MISMATCH,
      'rms_final',
      /7 values but the config needs 8/,
    );
    const { classifier: _dropped, ...noClassifier } = w;
    expectRejects(() => writeLlama2cLegacy(TINY_CONFIG, noClassifier), ErrorCodes.MISSING_TENSOR, 'classifier', /no classifier/);
    expectRejects(
      () => writeLlama2cLegacy({ ...TINY_CONFIG, sharedClassifier: true }, w),
      ErrorCodes.BAD_ARGUMENT,
      'classifier',
      /sharedClassifier is true/,
    );
    expectRejects(
      () => writeLlama2cLegacy({ ...TINY_CONFIG, nKvHeads: 3 }, w),
      ErrorCodes.BAD_DIMENSION,
      'llama2.c writer config',
      /n_kv_heads 3 does not divide n_heads 2/,
    );
    expectRejects(
      () => writeLlama2cV2(TINY_CONFIG, w, 3),
      ErrorCodes.BAD_DIMENSION,
      'llama2.c writer group_size',
      /8 values are not a whole number of groups of 3/,
    );
  });
});
