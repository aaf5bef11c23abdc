import { readFileSync } from 'node:fs';
import { type VqParams, rtnCodec, vqCodec } from '@ultrasketch/baselines';
import { Rng } from '@ultrasketch/core';
import { readBundle, readLlama2cCheckpoint } from '@ultrasketch/format';
import { type ModelWeights, TensorNames, modelFromLlama2c, runDecodePlan } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { vqKernel } from '../src/kernels/vq.js';
import { asVqEmbeddingTable, emitVqModule, wasmVqKernel } from '../src/kernels/wasm-vq.js';
import {
  ThreadPool,
  WasmArena,
  arenaModules,
  bundleForwardParts,
  bundleWeightBytes,
  compileDecodeProgram,
  getKernel,
  registerAllKernels,
  sessionFromBundle,
} from '../src/index.js';
import { applyBothWays, checkPool, checkProgram, checkUndefined, expectProgramMatchesForward, hexBits } from './decode-fixtures.js';
import { bundleOf } from './bundle-fixture.js';

/**
 * The `vq` kernel in WebAssembly SIMD (kernels/wasm-vq.ts, issue 12) against the JS `vqKernel` and a float64
 * oracle of the decoded matrix, per shape / index width / sub-vector length (rows whose codes start inside a byte,
 * 1-bit codes with a padded codebook, one sub-vector per row), one token and batches; bit-identical with a
 * 2-thread pool; its rows as the embedding table (lookup, lookupCall) against the codec's decodeRows; its decode
 * calls compiled into a program against apply; and a stories260K bundle with a vq tied embedding/classifier
 * whose generated tokens run as a decode program with the forward's logits.
 *
 * Error bound. The wasm kernel forms each table entry as a float32 dot of `dim` products and each output as a
 * float32 sum of S = cols/dim entries: |y − Ŵx| ≤ γ_{dim+S} Σ_j |ŵ_j x_j| with γ_m ≈ m·2⁻²⁴ (the standard bound
 * for recursive summation; the pairwise combining of the four accumulators only shortens the chains). The JS
 * kernel sums in float64 and rounds each entry and the output to float32 once: within 2·2⁻²⁴ of the same scale.
 * The tests allow (dim + S)·2⁻²⁴ against the oracle and (dim + S + 2)·2⁻²⁴ against the JS kernel, relative to
 * Σ_j |ŵ_j x_j|.
 */
const U = 2 ** -24;
const rng = new Rng(1231);

function encode(rows: number, cols: number, dim: number, bits: number): VqParams {
  return vqCodec.encode(rng.normalArray(rows * cols), rows, cols, vqCodec.resolveOptions({ dim, bits, iterations: 3 }), { name: 't', seed: 1 });
}

/** Worst |y − ref| / Σ|ŵx| over the n·rows outputs, with ref the float64 product of the decoded matrix. */
function worstAgainst(dense: Float32Array, rows: number, cols: number, x: Float32Array, y: Float32Array, ref: Float32Array | undefined, n: number): number {
  let worst = 0;
  for (let t = 0; t < n; t++) {
    for (let r = 0; r < rows; r++) {
      let exact = 0;
      let scale = 0;
      for (let j = 0; j < cols; j++) {
        const p = dense[r * cols + j]! * x[t * cols + j]!;
        exact += p;
        scale += Math.abs(p);
      }
      const other = ref ? ref[t * rows + r]! : exact;
      const err = Math.abs(y[t * rows + r]! - other) / (scale || 1);
      worst = Math.max(worst, Number.isNaN(err) ? Infinity : err);
    }
  }
  return worst;
}

// [rows, cols, dim, bits]: S·bits % 8 = 0 (rows start on a byte: constant shifts) and ≠ 0 (the `_u` rows), S % 8
// ≠ 0 (a tail after the groups of 8), 1-bit codes (2 entries padded to 4), dim 1 and 64, the bundle's form
const CASES: Array<[number, number, number, number]> = [
  [96, 24, 4, 5], // S 6: no whole group, 30 bits a row
  [300, 192, 4, 7], // the whole-file bundle's form (S 48, 336 bits a row)
  [37, 30, 3, 3], // S 10, 30 bits a row
  [50, 64, 4, 1], // 1-bit codes
  [20, 16, 1, 8], // dim 1, 8-bit codes
  [33, 45, 5, 6], // S 9, 54 bits a row
  [64, 128, 8, 4],
  [301, 12, 2, 7], // S 6, 42 bits a row
  [7, 64, 64, 2], // one sub-vector a row
  [129, 68, 4, 2], // S 17
];

describe('wasm vq kernel', () => {
  it('the module validates', () => {
    expect(WebAssembly.validate(emitVqModule())).toBe(true);
  });

  it.each(CASES)('%i×%i, dim %i, %i bits: the oracle and the JS kernel within the bound, n = 1 … 9; a batch’s vectors get their one-token bits', (rows, cols, dim, bits) => {
    const p = encode(rows, cols, dim, bits);
    const dense = vqCodec.decode(p);
    const k = wasmVqKernel(p);
    expect(k.constructor.name).toBe('WasmVqLinear');
    const js = vqKernel(p);
    const S = cols / dim;
    for (const n of [1, 2, 3, 4, 5, 9]) {
      const x = rng.normalArray(n * cols);
      const guard = 3;
      const y = new Float32Array(n * rows + guard).fill(Number.NaN);
      k.apply(x, y, n);
      for (let i = n * rows; i < y.length; i++) expect(y[i], 'no write past the outputs').toBeNaN();
      const yj = new Float32Array(n * rows);
      js.apply(x, yj, n);
      expect(worstAgainst(dense, rows, cols, x, y, undefined, n), `oracle, n ${n}`).toBeLessThanOrEqual((dim + S) * U);
      expect(worstAgainst(dense, rows, cols, x, y, yj, n), `JS kernel, n ${n}`).toBeLessThanOrEqual((dim + S + 2) * U);
      for (let t = 0; t < n; t++) {
        const one = new Float32Array(rows);
        k.apply(x.subarray(t * cols, (t + 1) * cols), one, 1);
        expect(hexBits(y.subarray(t * rows, (t + 1) * rows)), `vector ${t} of ${n}`).toBe(hexBits(one));
      }
    }
  });

  it('an exact case: codebook entries and inputs that are small integers give the exact products', () => {
    const [rows, cols, dim, bits] = [40, 24, 4, 3];
    const p = encode(rows, cols, dim, bits);
    // a codebook of small integers (f16 bits of −4 … 4) and integer inputs: every sum is exact in float32
    const ints = [0x0000, 0x3c00, 0x4000, 0x4200, 0x4400, 0xbc00, 0xc000, 0xc400];
    for (let i = 0; i < p.codebook.length; i++) p.codebook[i] = ints[(i * 5) % ints.length]!;
    const dense = vqCodec.decode(p);
    const x = Float32Array.from({ length: 2 * cols }, (_, i) => ((i * 7) % 9) - 4);
    const y = new Float32Array(2 * rows);
    wasmVqKernel(p).apply(x, y, 2);
    for (let t = 0; t < 2; t++) {
      for (let r = 0; r < rows; r++) {
        let want = 0;
        for (let j = 0; j < cols; j++) want += dense[r * cols + j]! * x[t * cols + j]!;
        expect(y[t * rows + r]).toBe(want);
      }
    }
  });

  it.each([
    [300, 192, 4, 7],
    [301, 12, 2, 7],
    [129, 68, 4, 2],
  ])('%i×%i, dim %i, %i bits: a 2-thread pool gives the bits of one thread, n = 1, 3, 6', (rows, cols, dim, bits) => {
    const p = encode(rows, cols, dim, bits);
    const alone = wasmVqKernel(p, { arena: new WasmArena({ shared: true }) });
    const arena = new WasmArena({ shared: true });
    const k = wasmVqKernel(p, { arena });
    const pool = new ThreadPool([{ arena, modules: arenaModules(arena) }], { threads: 2, minWorkNs: 0, adaptive: false });
    try {
      for (const n of [1, 3, 6]) {
        const x = rng.normalArray(n * cols);
        const a = new Float32Array(n * rows);
        const b = new Float32Array(n * rows);
        alone.apply(x, a, n);
        k.apply(x, b, n);
        expect(hexBits(b), `n ${n}`).toBe(hexBits(a));
      }
      expect(pool.splitCount).toBeGreaterThan(0);
    } finally {
      pool.dispose();
    }
  });

  it('bad shapes are typed errors', () => {
    const k = wasmVqKernel(encode(96, 24, 4, 5));
    expect(() => k.apply(new Float32Array(23), new Float32Array(96), 1)).toThrow(/vq kernel: n=1/);
    expect(() => k.apply(new Float32Array(24), new Float32Array(95), 1)).toThrow(/vq kernel/);
    expect(() => asVqEmbeddingTable(k)!.lookup(96, new Float32Array(24), 0)).toThrow(/token id 96/);
  });
});

describe('wasm vq kernel as the embedding table: lookup, lookupCall', () => {
  it.each(CASES)('%i×%i, dim %i, %i bits: per token, lookup (plain and in place), the program and runDecodePlan write decodeRows’ bits, nothing around them', (rows, cols, dim, bits) => {
    const p = encode(rows, cols, dim, bits);
    const arena = new WasmArena({ shared: true });
    const table = asVqEmbeddingTable(wasmVqKernel(p, { arena }))!;
    expect(table).toBeDefined();
    const buf = new Float32Array(arena.memory.buffer, arena.lend(4 * (cols + 8) + 16), cols + 8);
    const out = buf.subarray(4, 4 + cols);
    const call = table.lookupCall!(out)!;
    expect(call).toBeDefined();
    expect(call.args[1]).toEqual({ base: 0, perToken: cols / dim });
    const program = compileDecodeProgram([call]);
    const guardsIntact = () => [...buf.subarray(0, 4), ...buf.subarray(4 + cols)].every((v) => v === 7);
    for (const token of new Set([0, 1, rows >> 1, rows - 2, rows - 1])) {
      const want = new Float32Array(cols);
      vqCodec.decodeRows(p, token, 1, want);
      const plain = new Float32Array(cols + 2).fill(7);
      table.lookup(token, plain, 1);
      expect(hexBits(plain.subarray(1, 1 + cols)), `lookup, token ${token}`).toBe(hexBits(want));
      expect([plain[0], plain[cols + 1]]).toEqual([7, 7]);
      buf.fill(7);
      table.lookup(token, buf, 4); // a view of the arena: written in place
      expect(hexBits(out) === hexBits(want) && guardsIntact(), `lookup in place, token ${token}`).toBe(true);
      buf.fill(7);
      program(5, token);
      expect(hexBits(out) === hexBits(want) && guardsIntact(), `program, token ${token}`).toBe(true);
      buf.fill(7);
      runDecodePlan([call], 2, token);
      expect(hexBits(out) === hexBits(want) && guardsIntact(), `runDecodePlan, token ${token}`).toBe(true);
    }
    expect(table.lookupCall!(new Float32Array(cols)), 'out not in the arena').toBeUndefined();
    expect(table.lookupCall!(out.subarray(0, cols - 1)), 'out too short').toBeUndefined();
  });

  it('the JS kernel (no wasm SIMD) is not an embedding table: the codec decodes its rows', () => {
    expect(asVqEmbeddingTable(vqKernel(encode(96, 24, 4, 5)))).toBeUndefined();
  });
});

describe('wasm vq kernel: decodeCalls', () => {
  it.each(CASES)('%i×%i, dim %i, %i bits: the program gives apply’s bits (the table, then the rows)', (rows, cols, dim, bits) => {
    const arena = new WasmArena({ shared: true });
    const k = wasmVqKernel(encode(rows, cols, dim, bits), { arena });
    // another kernel of the arena uses (and grows) the shared scratch too
    const other = wasmVqKernel(encode(80, 96, 4, 6), { arena });
    other.apply(rng.normalArray(7 * 96), new Float32Array(7 * 80), 7);
    const { x, xv, yv, want, calls } = applyBothWays(arena, k);
    expect(calls).toBeDefined();
    expect(calls!.map((c) => c.fn.name)).toHaveLength(2);
    checkProgram(arena, k, calls!, x, xv, yv, want);
    checkUndefined(arena, k);
  });

  it('a thread pool on the arena changes neither the calls nor the bits', () => {
    const arena = new WasmArena({ shared: true });
    checkPool(arena, wasmVqKernel(encode(300, 192, 4, 7), { arena }));
  });
});

describe('session from a stories260K bundle: rtn linears, a vq tied embedding/classifier', () => {
  const file = 'models/stories260K/stories260K.bin';
  const model = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(new URL(`../../../../shared/${file}`, import.meta.url)), file));

  /** Every linear in 4-bit rtn, the embedding (tied classifier) in vq: dim 4, 7 bits. */
  const vqBundleOf = (weights: ModelWeights) =>
    bundleOf(weights, (name) => (name === TensorNames.embedding ? { codec: vqCodec, options: { dim: 4, bits: 7, iterations: 4 } } : { codec: rtnCodec, options: { bits: 4 } }));
  const bytes = vqBundleOf(model);

  it('the registry gives the wasm kernel, and the tied classifier is also the embedding table', () => {
    registerAllKernels();
    const bundle = readBundle(bytes, '<vq bundle>');
    const emb = bundle.weights.get(TensorNames.embedding)!;
    expect(emb.entry.codec).toBe('vq');
    expect(getKernel('vq')(emb.params).constructor.name).toBe('WasmVqLinear');
    const parts = bundleForwardParts(bundle, '<vq bundle>', { arena: new WasmArena({ shared: true }) });
    expect(parts.embedding).toBe(parts.classifier as unknown);
  });

  it('generated tokens run through the decode program with the forward’s logits, bit for bit; 2 threads give the same bits', () => {
    expect(model.config.tiedClassifier).toBe(true);
    const program = sessionFromBundle(readBundle(bytes, '<vq bundle>'));
    const plain = sessionFromBundle(readBundle(bytes, '<vq bundle>'), { decodeProgram: false });
    expectProgramMatchesForward(program, plain, [1, 403, 407], 16);
    const one = sessionFromBundle(readBundle(bytes, '<vq bundle>'), { threads: 1 });
    const two = sessionFromBundle(readBundle(bytes, '<vq bundle>'), { threads: 2, threadMinWorkNs: 0, threadAdaptive: false });
    try {
      const prompt = [1, 403, 407, 300, 12];
      expect(hexBits(two.forward(prompt))).toBe(hexBits(one.forward(prompt)));
      for (const token of [5, 77, 401]) expect(hexBits(two.forward([token]))).toBe(hexBits(one.forward([token])));
      expect(two.threadStats.split).toBeGreaterThan(0);
    } finally {
      two.dispose();
    }
  });

  it('the weights held are the bundle’s tensor bytes (±10%)', () => {
    const bundle = readBundle(bytes, '<vq bundle>');
    const tensorBytes = bundleWeightBytes(bundle);
    const session = sessionFromBundle(bundle);
    session.forward([1, 403]);
    const m = session.memory();
    expect(m.weightsBytes / tensorBytes).toBeGreaterThan(0.9);
    expect(m.weightsBytes / tensorBytes).toBeLessThan(1.1);
  });
});
