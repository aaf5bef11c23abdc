import { registerAll as registerBaselines } from '@ultrasketch/baselines';
import { type Codec, Rng, f16BitsToF32, getCodec } from '@ultrasketch/core';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { registerAll as registerLittleBit } from '@ultrasketch/littlebit';
import { LINEAR_KINDS, type LinearKind, TensorNames, linearShape, modelFromLlama2c } from '@ultrasketch/model';
import { hashedNetsMinBpw, registerAll as registerSketch, sketchMinBpw } from '@ultrasketch/sketch-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GpuContext, LinearRunner, type LinearRunnerOptions } from '../src/index.js';
import { AWKWARD_SHAPES } from '../../runtime-node/test/shapes.js';
import { gpuContext, readShared } from './gpu.js';

/**
 * Every WebGPU codec kernel against its oracle: the codec's decode() to dense, then a float64 product. The
 * tolerance is relative to Σ_j |ŵ_ij x_j| (the scale of any summation order's rounding) — 1e-5 on awkward
 * shapes and on real stories3M layers, for the matrix-vector kernel (n = 1), the 8-token tile (n = 3, 9: a
 * partial and a full-plus-partial tile), one thread per row and eight, and the fused residual add.
 * Runs on the real adapter (SwiftShader in CI); fails when there is none.
 */
const TOL = 1e-5;

type Case = [label: string, codec: string, options: Record<string, unknown>];
const CASES: Case[] = [
  ['float f32', 'float', { dtype: 'f32' }],
  ['float f16', 'float', { dtype: 'f16' }],
  ['rtn 2 g16', 'rtn', { bits: 2, groupSize: 16 }],
  ['rtn 3 g5', 'rtn', { bits: 3, groupSize: 5 }],
  ['rtn 4 row', 'rtn', { bits: 4, groupSize: 0 }],
  ['rtn 8 g64', 'rtn', { bits: 8, groupSize: 64 }],
  ['binary', 'binary', {}],
  ['sketch f16 rowrun d3', 'sketch', { bpw: 3, rows: 3 }],
  ['sketch int8 rowrun d2 3 groups', 'sketch', { bpw: 3, rows: 2, state: 'int8', groups: 3 }],
  ['sketch f32 mixed d3 2 groups', 'sketch', { bpw: 4, rows: 3, state: 'f32', hash: 'mixed', groups: 2 }],
  ['sketch f16 mixed d4', 'sketch', { bpw: 2, rows: 4, hash: 'mixed' }],
  ['sketch f16 rowrun d1 signmean', 'sketch', { bpw: 2, rows: 1, query: 'signmean' }],
  ['sketch int8 rowrun d2 signmean 3 groups', 'sketch', { bpw: 3, rows: 2, state: 'int8', groups: 3, query: 'signmean' }],
  ['hashednets f16', 'hashednets', { bpw: 3 }],
  ['hashednets f32', 'hashednets', { bpw: 6, state: 'f32' }],
  ['littlebit 1 path', 'littlebit', { rank: 3, residual: false }],
  ['littlebit 2 paths', 'littlebit', { rank: 5, residual: true }],
];
const SHAPES: Array<[number, number]> = [
  ...AWKWARD_SHAPES,
  [70, 9],
];

let ctx: GpuContext;
beforeAll(async () => {
  registerBaselines();
  registerSketch();
  registerLittleBit();
  ctx = await gpuContext();
});
afterAll(() => ctx?.destroy());

/**
 * Options fitted to the shape: sketch/hashednets budgets raised to the smallest feasible target (null when even
 * 64 bpw cannot pay for the fixed costs of so small a matrix), littlebit ranks capped at min(rows, cols).
 */
function fit(codec: Codec<any, any>, raw: Record<string, unknown>, rows: number, cols: number): unknown {
  const capped = (bpw: number) => (bpw > 64 ? null : bpw);
  if (codec.id === 'littlebit') return codec.resolveOptions({ ...raw, rank: Math.min(raw.rank as number, rows, cols) });
  if (codec.id === 'sketch') {
    const groups = Math.min((raw.groups as number | undefined) ?? 1, cols);
    const o = codec.resolveOptions({ ...raw, groups });
    const bpw = capped(Math.max(raw.bpw as number, sketchMinBpw(rows, cols, o)));
    return bpw === null ? null : codec.resolveOptions({ ...raw, groups, bpw });
  }
  if (codec.id === 'hashednets') {
    const o = codec.resolveOptions(raw);
    const bpw = capped(Math.max(raw.bpw as number, hashedNetsMinBpw(rows, cols, o)));
    return bpw === null ? null : codec.resolveOptions({ ...raw, bpw });
  }
  return codec.resolveOptions(raw);
}

/** Worst |y − ref| / Σ|ŵ x| over the batch, ref = decode() then a float64 product (+ the initial y). */
function worstError(dense: Float32Array, rows: number, cols: number, x: Float32Array, n: number, y: Float32Array, initial?: Float32Array): number {
  let worst = 0;
  for (let t = 0; t < n; t++) {
    for (let r = 0; r < rows; r++) {
      let ref = initial ? initial[t * rows + r]! : 0;
      let scale = initial ? Math.abs(ref) : 0;
      for (let j = 0; j < cols; j++) {
        const p = dense[r * cols + j]! * x[t * cols + j]!;
        ref += p;
        scale += Math.abs(p);
      }
      worst = Math.max(worst, Math.abs(y[t * rows + r]! - ref) / (scale || 1));
    }
  }
  return worst;
}

async function check(codecId: string, params: any, rng: Rng, ns: number[], options: LinearRunnerOptions = {}): Promise<number> {
  const codec = getCodec(codecId);
  const dense = codec.decode(params);
  const runner = await LinearRunner.create(ctx, codecId, params, { maxBatch: Math.max(...ns), ...options });
  let worst = 0;
  try {
    for (const n of ns) {
      const x = rng.normalArray(n * params.cols);
      const initial = options.accumulate ? rng.normalArray(n * params.rows) : undefined;
      const y = await runner.run(x, n, initial);
      worst = Math.max(worst, worstError(dense, params.rows, params.cols, x, n, y, initial));
    }
  } finally {
    runner.dispose();
  }
  return worst;
}

/** Shapes also run with eight threads per row (the hardware-GPU kernel shape); the rest with one. */
const EIGHT_LANES = new Set(['7×24', '33×130']);

describe.each(CASES)('WebGPU %s kernel equals decode-then-dense', (_label, id, raw) => {
  it.each(SHAPES)('random %i×%i, n = 1, 3, 9', async (rows, cols) => {
    const codec = getCodec(id);
    const rng = new Rng(rows * 7919 + cols);
    const options = fit(codec, raw, rows, cols);
    if (options === null) {
      // Not a kernel case: the codec itself refuses a matrix this small (its fixed costs exceed 64 bpw).
      const most = codec.resolveOptions({ ...raw, bpw: 64, ...(raw.groups ? { groups: Math.min(raw.groups as number, cols) } : {}) });
      expect(() => codec.encode(rng.normalArray(rows * cols), rows, cols, most, { name: 't', seed: 11 })).toThrow(/infeasible/);
      return;
    }
    const params = codec.encode(rng.normalArray(rows * cols), rows, cols, options, { name: 't', seed: 11 });
    for (const lanes of EIGHT_LANES.has(`${rows}×${cols}`) ? [1, 8] : [1]) {
      expect(await check(id, params, rng, [1, 3, 9], { lanes }), `lanes ${lanes}`).toBeLessThanOrEqual(TOL);
    }
  });

  it('adds into y (the fused residual), n = 1 and 5', async () => {
    const codec = getCodec(id);
    const rng = new Rng(5);
    const [rows, cols] = [19, 37];
    const params = codec.encode(rng.normalArray(rows * cols), rows, cols, fit(codec, raw, rows, cols), { name: 't', seed: 3 });
    expect(await check(id, params, rng, [1, 5], { accumulate: true })).toBeLessThanOrEqual(TOL);
  });
});

describe('sketch states in workgroup memory or read from the storage buffer give the same result', () => {
  it.each([
    ['f16 rowrun', { bpw: 2, rows: 3 }],
    ['int8 mixed, 4 groups', { bpw: 2, rows: 3, state: 'int8', hash: 'mixed', groups: 4 }],
  ])('%s, 96×80', async (_l, raw) => {
    const codec = getCodec('sketch');
    const rng = new Rng(17);
    const params = codec.encode(rng.normalArray(96 * 80), 96, 80, codec.resolveOptions(raw), { name: 't', seed: 5 });
    const x = rng.normalArray(3 * 80);
    for (const lanes of [1, 8]) {
      const outs: Float32Array[] = [];
      for (const residentBytes of [0, 16384]) {
        const r = await LinearRunner.create(ctx, 'sketch', params, { maxBatch: 3, residentBytes, lanes });
        expect(r.linear.programs().some((p) => p.name.includes('-res')), `resident ${residentBytes}`).toBe(residentBytes > 0);
        outs.push(await r.run(x, 3));
        r.dispose();
      }
      expect(worstError(codec.decode(params), 96, 80, x, 3, outs[0]!)).toBeLessThanOrEqual(TOL);
      // Same arithmetic in the same order: bit-identical.
      expect(Array.from(outs[1]!)).toEqual(Array.from(outs[0]!));
    }
  });
});

describe('f16 conversion on the device', () => {
  it('every finite f16 bit pattern (normal, subnormal, ±0) decodes to the same float32 as the CPU', async () => {
    const codec = getCodec('float');
    const bits = new Uint16Array(65536);
    for (let h = 0; h < 65536; h++) bits[h] = (h & 0x7c00) === 0x7c00 ? 0 : h;
    const params = { rows: 65536, cols: 1, options: codec.resolveOptions({ dtype: 'f16' }), data: bits };
    const r = await LinearRunner.create(ctx, 'float', params, { maxBatch: 1 });
    const y = await r.run(Float32Array.of(1), 1);
    r.dispose();
    let mismatches = 0;
    for (let h = 0; h < 65536; h++) if (!Object.is(y[h]! + 0, f16BitsToF32(bits[h]!) + 0)) mismatches++;
    expect(mismatches).toBe(0);
  });
});

describe('real layers (stories3M)', () => {
  const file = 'models/stories3M/stories3M-q80.bin';
  const model = modelFromLlama2c(readLlama2cCheckpoint(readShared(file), file));
  const REAL: Case[] = [
    ['float f16', 'float', { dtype: 'f16' }],
    ['rtn 4 g64', 'rtn', { bits: 4, groupSize: 64 }],
    ['rtn 3 g32', 'rtn', { bits: 3, groupSize: 32 }],
    ['binary', 'binary', {}],
    ['sketch f16 rowrun 0.8 bpw', 'sketch', { bpw: 0.8 }],
    ['sketch int8 mixed 0.8 bpw 4 groups', 'sketch', { bpw: 0.8, state: 'int8', hash: 'mixed', groups: 4 }],
    ['hashednets 1 bpw', 'hashednets', { bpw: 1 }],
    ['littlebit 0.55 bpw', 'littlebit', { bpw: 0.55, residual: false }],
    ['littlebit 1.0 bpw residual', 'littlebit', { bpw: 1.0 }],
  ];
  // Every linear of the first layer, and the last layer's down projection (the widest rows, 512 columns).
  const LAYERS: Array<[number, readonly LinearKind[]]> = [
    [0, LINEAR_KINDS],
    [model.config.nLayers - 1, ['down']],
  ];
  it.each(REAL)('%s: every linear of layer 0 and the last down_proj, n = 1 and 4', async (_l, id, raw) => {
    const codec = getCodec(id);
    const options = codec.resolveOptions(raw);
    const rng = new Rng(3);
    for (const [l, kinds] of LAYERS) {
      for (const kind of kinds) {
        const [rows, cols] = linearShape(model.config, kind);
        const name = TensorNames.linear(l, kind);
        const params = codec.encode(model.tensors.get(name)!.data, rows, cols, options, { name, seed: 1 });
        expect(await check(id, params, rng, [1, 4]), name).toBeLessThanOrEqual(TOL);
      }
    }
  });
});
