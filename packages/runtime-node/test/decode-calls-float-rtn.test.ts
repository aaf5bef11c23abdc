import { readFileSync } from 'node:fs';
import { type FloatParams, floatCodec, rtnCodec } from '@ultrasketch/baselines';
import { Rng, f16BitsToF32 } from '@ultrasketch/core';
import { readBundle, readLlama2cCheckpoint } from '@ultrasketch/format';
import { type DecodeCall, type Linear, type ModelWeights, TensorNames, modelFromLlama2c, runDecodePlan } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import { asEmbeddingTable, wasmF16ToF32, wasmFloatKernel } from '../src/kernels/wasm-float.js';
import { wasmRtnKernel } from '../src/kernels/wasm-rtn.js';
import { WasmArena, compileDecodeProgram, sessionFromBundle } from '../src/index.js';
import { arenaViews, checkPool, checkUndefined, expectProgramMatchesForward } from './decode-fixtures.js';
import { bundleOf } from './bundle-fixture.js';

/**
 * Issue 12: the f16 `float` kernel (every bundle's default classifier, and its tied embedding table) and the
 * `rtn` kernel describe their one-token calls for a decode plan (`decodeCalls`, `lookupCall`). Per variant, with x
 * and y views of a shared arena (as the forward holds them): the plan compiled into one wasm function and run
 * call by call (runDecodePlan) writes the same bits as `apply(x, y, 1)`; it is undefined wherever apply would
 * stage x or y through scratch; and a thread pool on the arena changes neither the calls nor the bits (the plan
 * is apply's one-thread calls; the session times it against the pooled forward). Then a stories260K bundle with
 * rtn linears and the f16 tied table runs its tokens through the program with the logits of the forward's own calls.
 */
const rng = new Rng(1212);
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** x and y lent from the arena (outside scratch), x random: what a kernel reads and writes in place. */
function arenaVectors(arena: WasmArena, rows: number, cols: number) {
  const v = arenaViews(arena, rows, cols);
  v.x.set(rng.normalArray(cols));
  return v;
}

/**
 * apply(x, y, 1) from plain arrays, in place, through the compiled plan and through runDecodePlan: the same bits.
 * Then another kernel's call clobbers the shared scratch, and a prefill grows it (a new region): the plan, which
 * computes everything it reads, still gives the same bits at its recorded addresses. Returns the calls.
 */
function checkPlan(arena: WasmArena, k: Linear, other: Linear): DecodeCall[] {
  const rows = k.outFeatures;
  const cols = k.inFeatures;
  const { x, y } = arenaVectors(arena, rows, cols);
  const want = new Float32Array(rows);
  k.apply(x.slice(), want, 1);
  y.fill(Number.NaN);
  k.apply(x, y, 1);
  expect(bits(y).equals(bits(want)), 'apply in place').toBe(true);
  const calls = k.decodeCalls!(x, y)!;
  expect(calls, 'decodeCalls').toBeDefined();
  expect(calls.length).toBeGreaterThan(0);
  const program = compileDecodeProgram(calls);
  y.fill(Number.NaN);
  program(0, 0);
  expect(bits(y).equals(bits(want)), 'compiled program').toBe(true);
  y.fill(Number.NaN);
  runDecodePlan(calls, 7, 3); // no argument depends on pos or token
  expect(bits(y).equals(bits(want)), 'runDecodePlan').toBe(true);
  other.apply(rng.normalArray(other.inFeatures), new Float32Array(other.outFeatures), 1);
  const n = 9;
  k.apply(rng.normalArray(n * cols), new Float32Array(n * rows), n);
  y.fill(Number.NaN);
  program(0, 0);
  expect(bits(y).equals(bits(want)), 'program after other calls used scratch').toBe(true);
  return calls;
}

function f16Params(values: Float32Array, rows: number, cols: number): FloatParams {
  return floatCodec.encode(values, rows, cols, floatCodec.resolveOptions({ dtype: 'f16' }), { name: 't', seed: 1 });
}

describe('f16 float kernel: decodeCalls', () => {
  // rows % 4 = 0 and cols % 8 = 0: x and y in place (whole tiles of 4 rows)
  it.each([
    [24, 64],
    [4, 8],
    [36, 136],
    [512, 64],
  ])('%i×%i: the plan gives apply’s bits', (rows, cols) => {
    const arena = new WasmArena({ shared: true });
    const k = wasmFloatKernel(f16Params(rng.normalArray(rows * cols), rows, cols), { arena });
    const other = wasmFloatKernel(f16Params(rng.normalArray(40 * 96), 40, 96), { arena });
    const calls = checkPlan(arena, k, other);
    expect(calls.length).toBe(1); // one tile call: every row in tiles of 4
    checkUndefined(arena, k);
  });

  it('the Inf/NaN fix-up variant: an Inf weight gives ±Inf, a NaN weight NaN (the finite variant would give Inf)', () => {
    const [rows, cols] = [16, 32];
    // planted in the stored bits (the codec refuses non-finite weights)
    const params = f16Params(rng.normalArray(rows * cols), rows, cols);
    const data = params.data as Uint16Array;
    data[3 * cols + 5] = 0x7c00; // +Inf
    data[9 * cols + 1] = 0x7e00; // NaN
    const arena = new WasmArena({ shared: true });
    const k = wasmFloatKernel(params, { arena });
    const { x, y } = arenaVectors(arena, rows, cols);
    x[5] = 1;
    x[1] = 1;
    const calls = k.decodeCalls!(x, y)!;
    y.fill(0);
    compileDecodeProgram(calls)(0, 0);
    expect(y[3]).toBe(Number.POSITIVE_INFINITY);
    expect(Number.isNaN(y[9]!)).toBe(true);
    const want = new Float32Array(rows);
    k.apply(x.slice(), want, 1);
    expect(bits(y).equals(bits(want))).toBe(true);
    expect(Array.from(y).filter((v) => !Number.isFinite(v))).toHaveLength(2);
  });

  it.each([
    [24, 61, 'cols % 8 ≠ 0: x staged with its padding'],
    [22, 64, 'rows % 4 ≠ 0: y staged'],
  ])('%i×%i is undefined (%s), and apply is unchanged', (rows, cols) => {
    const arena = new WasmArena({ shared: true });
    const k = wasmFloatKernel(f16Params(rng.normalArray(rows * cols), rows, cols), { arena });
    const { x, y } = arenaVectors(arena, rows, cols);
    expect(k.decodeCalls!(x, y)).toBeUndefined();
    const want = new Float32Array(rows);
    k.apply(x.slice(), want, 1);
    k.apply(x, y, 1);
    expect(bits(y).equals(bits(want))).toBe(true);
  });

  it('a thread pool on the arena changes neither the calls nor the bits', () => {
    const arena = new WasmArena({ shared: true });
    checkPool(arena, wasmFloatKernel(f16Params(rng.normalArray(64 * 48), 64, 48), { arena }));
  });
});

describe('f16 float kernel as the embedding table: lookupCall', () => {
  it.each([
    [24, 64],
    [13, 61],
    [9, 7],
    [41, 1],
  ])('%i×%i: per token, the program and runDecodePlan write the row lookup gives (decodeRows’ bits), nothing around it', (rows, cols) => {
    const values = rng.normalArray(rows * cols);
    values[0] = -0;
    if (values.length > 2) values[2] = 3 * 2 ** -24; // an f16 subnormal
    const params = f16Params(values, rows, cols);
    const arena = new WasmArena({ shared: true });
    const table = asEmbeddingTable(wasmFloatKernel(params, { arena }))!;
    // out inside a guarded arena buffer (the forward's x is a view of the arena)
    const buf = new Float32Array(arena.memory.buffer, arena.lend(4 * (cols + 8) + 16), cols + 8);
    const out = buf.subarray(4, 4 + cols);
    const call = table.lookupCall!(out)!;
    expect(call).toBeDefined();
    const program = compileDecodeProgram([call]);
    const guardsIntact = () => [...buf.subarray(0, 4), ...buf.subarray(4 + cols)].every((v) => v === 7);
    for (const token of [0, 1, rows >> 1, rows - 1]) {
      const want = new Float32Array(cols);
      floatCodec.decodeRows(params, token, 1, want);
      const plain = new Float32Array(cols + 2);
      table.lookup(token, plain, 1);
      expect(bits(plain.subarray(1, 1 + cols)).equals(bits(want)), `lookup, token ${token}`).toBe(true);
      buf.fill(7);
      table.lookup(token, buf, 4); // a view of the arena: written in place
      expect(bits(out).equals(bits(want)) && guardsIntact(), `lookup in place, token ${token}`).toBe(true);
      buf.fill(7);
      program(5, token);
      expect(bits(out).equals(bits(want)) && guardsIntact(), `program, token ${token}`).toBe(true);
      buf.fill(7);
      runDecodePlan([call], 2, token);
      expect(bits(out).equals(bits(want)) && guardsIntact(), `runDecodePlan, token ${token}`).toBe(true);
    }
    expect(table.lookupCall!(new Float32Array(cols)), 'out not in the arena').toBeUndefined();
    if (cols > 1) expect(table.lookupCall!(out.subarray(0, cols - 1)), 'out too short').toBeUndefined();
  });

  // f16tof32 stores a row's last cols % 8 values lane by lane (as integers): every pattern, in every tail lane
  it.each([7, 15])('rows of %i: all 65536 f16 patterns looked up equal f16BitsToF32 and the whole-block conversion, bit for bit', (cols) => {
    const rows = Math.ceil(65536 / cols);
    const data = new Uint16Array(rows * cols).map((_, i) => i & 0xffff);
    const p = { rows, cols, data, options: { dtype: 'f16' } } as unknown as FloatParams;
    const arena = new WasmArena({ shared: true });
    const table = asEmbeddingTable(wasmFloatKernel(p, { arena }))!;
    const out = new Float32Array(arena.memory.buffer, arena.lend(4 * cols + 16), cols);
    const call = table.lookupCall!(out)!;
    const program = compileDecodeProgram([call]);
    const whole = new Uint32Array(wasmF16ToF32(new WasmArena(), new Uint16Array(65536).map((_, i) => i)).buffer);
    const got = new Uint32Array(rows * cols);
    for (let t = 0; t < rows; t++) {
      program(0, t);
      got.set(new Uint32Array(out.buffer, out.byteOffset, cols), t * cols);
    }
    let wrong = 0;
    for (let i = 0; i < data.length; i++) {
      const h = data[i]!;
      if (got[i] !== whole[h] || !Object.is(new Float32Array(got.buffer, 4 * i, 1)[0], Math.fround(f16BitsToF32(h)))) wrong++;
    }
    expect(wrong).toBe(0);
  });

  it('an f32-stored float kernel is not an embedding table here (the codec decodes its rows)', () => {
    const f32 = floatCodec.encode(rng.normalArray(12), 3, 4, floatCodec.resolveOptions({ dtype: 'f32' }), { name: 't', seed: 1 });
    expect(asEmbeddingTable(wasmFloatKernel(f32))).toBeUndefined();
  });
});

describe('rtn kernel: decodeCalls', () => {
  // codes in place (cols and the group a multiple of a chunk's 16·8/k codes) and re-packed (a group ending
  // inside a chunk, per-row groups, groups of 48), odd row counts
  const CASES: Array<[number, number, 2 | 4 | 8, number]> = [
    [40, 128, 4, 64],
    [33, 100, 4, 64],
    [12, 200, 4, 48],
    [20, 72, 2, 64],
    [16, 96, 2, 0],
    [7, 64, 2, 64],
    [24, 80, 8, 64],
    [18, 96, 8, 32],
    [5, 24, 8, 0],
  ];
  const build = (rows: number, cols: number, b: number, groupSize: number, arena: WasmArena) =>
    wasmRtnKernel(rtnCodec.encode(rng.normalArray(rows * cols), rows, cols, rtnCodec.resolveOptions({ bits: b, groupSize }), { name: 't', seed: 1 }), {
      arena,
    });

  it.each(CASES)('%i×%i, %i bits, groups of %i: the plan gives apply’s bits', (rows, cols, b, groupSize) => {
    const arena = new WasmArena({ shared: true });
    const k = build(rows, cols, b, groupSize, arena);
    expect(k.constructor.name).toBe('WasmRtnLinear');
    const calls = checkPlan(arena, k, build(30, 70, 4, 32, arena));
    // scales and offsets to f32, the group sums' unused lanes zeroed (a wasm call, no JS fill), x permuted, the rows
    expect(calls).toHaveLength(5);
    expect(calls[2]!.fn).toBe(arena.zeroBytes);
    checkUndefined(arena, k);
  });

  it('a thread pool on the arena changes neither the calls nor the bits', () => {
    const arena = new WasmArena({ shared: true });
    checkPool(arena, build(64, 128, 4, 64, arena));
  });

  it('3-bit codes run on the JS kernel: no decode calls (a model with them keeps the forward’s path)', () => {
    const arena = new WasmArena({ shared: true });
    expect(build(8, 64, 3, 64, arena).decodeCalls).toBeUndefined();
  });
});

describe('session from a stories260K bundle: rtn linears, the f16 tied embedding/classifier', () => {
  const file = 'models/stories260K/stories260K.bin';
  const model = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(new URL(`../../../../shared/${file}`, import.meta.url)), file));

  /** Every matrix in rtn (bits by kind: 2, 4, 8; groups of 64 or 32) but the embedding, f16. */
  const rtnBundleOf = (weights: ModelWeights) =>
    bundleOf(weights, (name) =>
      name === TensorNames.embedding
        ? { codec: floatCodec, options: { dtype: 'f16' } }
        : { codec: rtnCodec, options: { bits: /q_proj|k_proj/.test(name) ? 2 : /v_proj|o_proj/.test(name) ? 8 : 4, groupSize: /down/.test(name) ? 32 : 64 } },
    );

  it('generated tokens run through the decode program with the forward’s logits, bit for bit', () => {
    expect(model.config.tiedClassifier).toBe(true);
    const bytes = rtnBundleOf(model);
    const program = sessionFromBundle(readBundle(bytes, '<rtn bundle>'));
    const plain = sessionFromBundle(readBundle(bytes, '<rtn bundle>'), { decodeProgram: false });
    expectProgramMatchesForward(program, plain, [1, 403, 407], 16);
  });
});
