import {
  ErrorCodes,
  Rng,
  type StoredTensor,
  getCodec,
  leadingSingularPair,
  listCodecs,
  svd,
} from '@ultrasketch/core';
import { TensorNames, linearShape } from '@ultrasketch/model';
import { describe, expect, it } from 'vitest';
import {
  dualSvidFactors,
  littlebitCodec,
  littlebitFormulaBits,
  littlebitFormulaBpw,
  littlebitMinBpw,
  littlebitParamsFormulaBits,
  littlebitRank,
  littlebitStoredBits,
  naiveSignSvd,
  packSigns,
  paddingIsZero,
  rankForBpw,
  registerAll,
  registerLittleBitCodec,
  signAt,
  unpackSigns,
} from '../src/index.js';
import { codeOf, denseFromStored, stories3MCalibrated } from './helpers.js';

const ctx = (name = 'test', seed = 0) => ({ name, seed });
const opts = (raw: Record<string, unknown>) => littlebitCodec.resolveOptions(raw);

function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  return '';
}

function relErr(w: ArrayLike<number>, d: ArrayLike<number>, colWeight?: Float64Array, cols = 1): number {
  let e = 0;
  let n = 0;
  for (let i = 0; i < w.length; i++) {
    const s = colWeight ? colWeight[i % cols]! : 1;
    e += (w[i]! - d[i]!) ** 2 * s;
    n += w[i]! ** 2 * s;
  }
  return Math.sqrt(e / n);
}

// ---------------------------------------------------------------------------------------------------------

describe('sign packing', () => {
  it('is LSB-first in 32-bit words, −1 as bit 1, sign(0) = +1 (also −0)', () => {
    const v = new Array(33).fill(1);
    v[0] = -1;
    v[32] = -0.5;
    v[5] = 0;
    v[6] = -0;
    expect([...packSigns(v)]).toEqual([1, 1]);
    const w = packSigns([1, -1, 1, 1, 1, 1, 1, -1]);
    expect([...w]).toEqual([0b10000010]);
    expect(new Uint8Array(w.buffer)[0]).toBe(0b10000010); // little-endian: same bits read as bytes
    expect(signAt(w, 1)).toBe(-1);
    expect(signAt(w, 2)).toBe(1);
  });

  it.each([1, 31, 32, 33, 64, 100, 1000])('round-trips %i signs; padding bits are 0', (n) => {
    const rng = new Rng(n);
    const v = Array.from({ length: n }, () => rng.normal());
    const w = packSigns(v);
    expect(w.length).toBe(Math.ceil(n / 32));
    expect([...unpackSigns(w, n)]).toEqual(v.map((x) => (x < 0 ? -1 : 1)));
    expect(paddingIsZero(w, n)).toBe(true);
    if (n % 32 !== 0) {
      const dirty = w.slice();
      dirty[dirty.length - 1] = dirty[dirty.length - 1]! | (1 << 31);
      expect(paddingIsZero(dirty, n)).toBe(false);
    }
  });
});

describe('bits and rank from bpw (the paper formulas)', () => {
  it('reproduces the paper appendix: 4096×4096 → rank 546 at 0.55 bpw, 4096×11008 → rank 133 at 0.1 bpw (residual, floored)', () => {
    expect(rankForBpw(4096, 4096, 0.55, true)).toBe(546);
    expect(rankForBpw(11008, 4096, 0.1, true)).toBe(133);
    expect(rankForBpw(4096, 11008, 0.1, true)).toBe(133); // symmetric in (in, out)
    // and not the other pairings: these are the shapes that give those numbers
    expect(rankForBpw(4096, 11008, 0.55, true)).toBe(804);
    expect(rankForBpw(4096, 4096, 0.1, true)).toBe(86);
    // without the residual path, and with the reference code's multiple-of-8 rounding
    expect(rankForBpw(4096, 4096, 0.55, false)).toBe(1108);
    expect(rankForBpw(4096, 4096, 0.55, true, 'multiple8')).toBe(544);
    expect(rankForBpw(11008, 4096, 0.1, true, 'multiple8')).toBe(128);
    // the formula itself: 546 fits in 0.55 bpw, 547 does not
    expect(littlebitFormulaBits(4096, 4096, 546, true)).toBe(2 * 546 * (4096 + 4096 + 16) + 32 * 8192);
    expect(littlebitFormulaBpw(4096, 4096, 546, true)).toBeLessThanOrEqual(0.55);
    expect(littlebitFormulaBpw(4096, 4096, 547, true)).toBeGreaterThan(0.55);
  });

  it('the rank is the largest whose formula bits fit the budget, for random shapes and targets', () => {
    const rng = new Rng(4);
    for (let trial = 0; trial < 300; trial++) {
      const out = 1 + rng.int(5000);
      const inp = 1 + rng.int(5000);
      const bpw = 0.05 + rng.next() * 2;
      for (const residual of [false, true]) {
        const r = rankForBpw(out, inp, bpw, residual);
        if (r >= 1) expect(littlebitFormulaBits(out, inp, r, residual)).toBeLessThanOrEqual(bpw * out * inp * (1 + 1e-12));
        expect(littlebitFormulaBits(out, inp, r + 1, residual)).toBeGreaterThan(bpw * out * inp);
        const r8 = rankForBpw(out, inp, bpw, residual, 'multiple8');
        expect(r8 % 8).toBe(0);
        expect(r8).toBeLessThanOrEqual(r);
        expect(r - r8).toBeLessThan(8);
      }
    }
  });

  it('a target that lands exactly on an integer rank gives that rank (no float-noise off-by-one)', () => {
    for (const [out, inp, r] of [
      [4096, 4096, 546],
      [192, 512, 21],
      [64, 64, 3],
    ] as const) {
      for (const residual of [false, true]) {
        expect(rankForBpw(out, inp, littlebitFormulaBpw(out, inp, r, residual), residual)).toBe(r);
      }
    }
  });

  it('stored bits = formula + padding of each sign matrix to a 32-bit word', () => {
    // 192×192 at rank 9: 1728 signs per matrix = 54 words exactly — no padding
    expect(littlebitStoredBits(192, 192, 9, true)).toBe(littlebitFormulaBits(192, 192, 9, true));
    // 13×7 at rank 3: U_s 39 bits → 64, V_s 21 bits → 32: 36 padding bits per path
    expect(littlebitStoredBits(13, 7, 3, false) - littlebitFormulaBits(13, 7, 3, false)).toBe(25 + 11);
    expect(littlebitStoredBits(13, 7, 3, true) - littlebitFormulaBits(13, 7, 3, true)).toBe(2 * 36);
  });

  it('small matrices: the FP16 scales set a floor — a 64×64 matrix cannot go below ~0.5 bpw', () => {
    expect(littlebitMinBpw(64, 64, false)).toBeCloseTo((64 + 64 + 16 + 16 * 128) / 4096, 12); // 0.5352
    expect(littlebitMinBpw(64, 64, true)).toBeCloseTo((2 * 144 + 32 * 128) / 4096, 12); // 1.0703
    expect(littlebitMinBpw(64, 64, false)).toBeGreaterThan(0.5);
  });
});

describe('options', () => {
  it('defaults and parsing (strings from the CLI)', () => {
    expect(opts({})).toEqual({ bpw: 0.55, rank: null, residual: true, rankRounding: 'floor', oversampling: 10, powerIterations: 2 });
    expect(opts({ bpw: '0.1', residual: 'false', rankRounding: 'multiple8' })).toMatchObject({ bpw: 0.1, rank: null, residual: false, rankRounding: 'multiple8' });
    expect(opts({ rank: '16' })).toMatchObject({ bpw: null, rank: 16 });
    // resolved options survive a JSON round trip (they are stored in bundles)
    const o = opts({ rank: 8, residual: false });
    expect(opts(JSON.parse(JSON.stringify(o)))).toEqual(o);
  });

  it.each<[string, Record<string, unknown>]>([
    ['both bpw and rank', { bpw: 0.5, rank: 4 }],
    ['bpw 0', { bpw: 0 }],
    ['bpw negative', { bpw: -1 }],
    ['bpw NaN', { bpw: 'abc' }],
    ['bpw Infinity', { bpw: Infinity }],
    ['rank 0', { rank: 0 }],
    ['rank 2.5', { rank: 2.5 }],
    ['residual maybe', { residual: 'maybe' }],
    ['rankRounding ceil', { rankRounding: 'ceil' }],
    ['oversampling -1', { oversampling: -1 }],
    ['powerIterations 1.5', { powerIterations: 1.5 }],
    ['unknown key', { bpww: 0.5 }],
  ])('rejects %s with BAD_ARGUMENT', (_label, raw) => {
    expect(codeOf(() => opts(raw))).toBe(ErrorCodes.BAD_ARGUMENT);
  });

  it('an explicit rank above min(out, in) is refused at encode; a bpw above full rank is capped', () => {
    const w = new Rng(1).normalArray(6 * 4);
    expect(codeOf(() => littlebitCodec.encode(w, 6, 4, opts({ rank: 5 }), ctx()))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(littlebitRank(opts({ bpw: 60 }), 6, 4)).toBe(4);
    expect(littlebitCodec.encode(w, 6, 4, opts({ bpw: 60 }), ctx()).rank).toBe(4);
  });
});

describe('infeasible budgets', () => {
  it('refuses with INFEASIBLE_BUDGET naming the smallest feasible bpw', () => {
    const w = new Rng(2).normalArray(64 * 64);
    const msg = messageOf(() => littlebitCodec.encode(w, 64, 64, opts({ bpw: 0.3, residual: false }), ctx('model.layers.0.self_attn.k_proj.weight')));
    expect(codeOf(() => littlebitCodec.encode(w, 64, 64, opts({ bpw: 0.3, residual: false }), ctx()))).toBe(ErrorCodes.INFEASIBLE_BUDGET);
    expect(msg).toContain('model.layers.0.self_attn.k_proj.weight');
    expect(msg).toContain('0.5352');
    const withRes = messageOf(() => littlebitCodec.encode(w, 64, 64, opts({ bpw: 0.55 }), ctx()));
    expect(withRes).toContain('1.0703'); // rank 1 with two paths
    expect(withRes).toContain('without the residual path the minimum is 0.5352');
    const m8 = messageOf(() => littlebitCodec.encode(w, 64, 64, opts({ bpw: 0.6, residual: false, rankRounding: 'multiple8' }), ctx()));
    expect(m8).toContain("rankRounding 'floor' would allow rank 2");
  });

  it('stories3M K and V (64×192) cannot take 0.55 bpw with the residual path; without it they can', () => {
    expect(codeOf(() => littlebitRank(opts({ bpw: 0.55 }), 64, 192))).toBe(ErrorCodes.INFEASIBLE_BUDGET);
    expect(littlebitRank(opts({ bpw: 0.55, residual: false }), 64, 192)).toBe(9);
  });
});

// ---------------------------------------------------------------------------------------------------------

describe('reconstruction', () => {
  it.each([
    [1, 1, 1],
    [1, 9, 1],
    [9, 1, 1],
    [13, 7, 3],
    [33, 130, 17],
    [40, 40, 40],
  ])('%i×%i rank %i: decode() = diag(h)·U_s·diag(ℓ)·V_sᵀ·diag(g) (+ residual path), decodeRows agrees', (rows, cols, rank) => {
    const w = new Rng(rows * 100 + cols).normalArray(rows * cols);
    for (const residual of [false, true]) {
      const p = littlebitCodec.encode(w, rows, cols, opts({ rank, residual }), ctx());
      expect(p.paths.length).toBe(residual ? 2 : 1);
      const ref = denseFromStored(p);
      const d = littlebitCodec.decode(p);
      let scale = 0;
      for (const x of ref) scale = Math.max(scale, Math.abs(x));
      for (let i = 0; i < d.length; i++) expect(Math.abs(d[i]! - ref[i]!)).toBeLessThanOrEqual(1e-6 * (scale || 1));
      const part = new Float32Array(2 * cols);
      const row0 = Math.max(0, rows - 2);
      littlebitCodec.decodeRows(p, row0, rows - row0, part);
      expect([...part.subarray(0, (rows - row0) * cols)]).toEqual([...d.subarray(row0 * cols)]);
    }
  });

  it('Dual-SVID follows methods.md §2 step by step (checked against the exact SVD and the exact rank-1 fits)', () => {
    const [rows, cols, rank] = [24, 18, 5];
    const w = new Rng(77).normalArray(rows * cols);
    const f = dualSvidFactors({ rows, cols, data: w }, rank, { oversampling: 100 }); // exact-SVD path
    const e = svd({ rows, cols, data: w });
    // U' = U√Σ, V' = V√Σ up to the sign of each singular pair
    for (let k = 0; k < rank; k++) {
      const sq = Math.sqrt(e.s[k]!);
      const flip = Math.sign(f.uPrime.data[k]!) === Math.sign(e.u.data[k]! * sq) ? 1 : -1;
      for (let i = 0; i < rows; i++) expect(f.uPrime.data[i * rank + k]!).toBeCloseTo(flip * e.u.data[i * cols + k]! * sq, 10);
      for (let j = 0; j < cols; j++) expect(f.vPrime.data[j * rank + k]!).toBeCloseTo(flip * e.v.data[j * cols + k]! * sq, 10);
    }
    // h ℓ_uᵀ ⊙ … : the scale outer products equal the best rank-1 fits of |U'| and |V'| (balancing only moves
    // scalars between h, g and ℓ), so h_i ℓ_k g_j = (σ_u u_i v_k)(σ_v p_j q_k)
    const abs = (m: { rows: number; cols: number; data: Float64Array }) => ({ ...m, data: m.data.map(Math.abs) });
    const pu = leadingSingularPair(abs(f.uPrime));
    const pv = leadingSingularPair(abs(f.vPrime));
    for (const [i, j, k] of [
      [0, 0, 0],
      [5, 7, 2],
      [23, 17, 4],
    ] as const) {
      const expected = pu.sigma * pu.u[i]! * pu.v[k]! * pv.sigma * pv.u[j]! * pv.v[k]!;
      expect(f.h[i]! * f.l[k]! * f.g[j]!).toBeCloseTo(expected, 10);
    }
  });

  it('is deterministic for a seed', () => {
    const w = new Rng(3).normalArray(50 * 70);
    const a = littlebitCodec.toTensors(littlebitCodec.encode(w, 50, 70, opts({ rank: 12 }), ctx('t', 5)));
    const b = littlebitCodec.toTensors(littlebitCodec.encode(w, 50, 70, opts({ rank: 12 }), ctx('t', 5)));
    for (const k of Object.keys(a)) expect([...a[k]!.data]).toEqual([...b[k]!.data]);
  });

  it('refuses NaN weights, naming the tensor', () => {
    const w = new Float32Array(12);
    w[5] = Number.NaN;
    expect(codeOf(() => littlebitCodec.encode(w, 3, 4, opts({ rank: 2 }), ctx('model.layers.0.mlp.up_proj.weight')))).toBe(ErrorCodes.NOT_FINITE);
  });
});

describe('storage', () => {
  const CASES: Array<[number, number, Record<string, unknown>]> = [
    [1, 1, { rank: 1 }],
    [13, 7, { rank: 3, residual: false }],
    [13, 7, { rank: 3 }],
    [33, 130, { rank: 17 }],
    [192, 512, { bpw: 0.55 }],
  ];

  it.each(CASES)('%i×%i %j: bits() = stored bytes × 8 (= formula + word padding); tensors round-trip', (rows, cols, raw) => {
    const o = opts(raw);
    const p = littlebitCodec.encode(new Rng(rows + cols).normalArray(rows * cols), rows, cols, o, ctx());
    const tensors = littlebitCodec.toTensors(p);
    const bytes = Object.values(tensors).reduce((n, t) => n + t.data.byteLength, 0);
    const bits = littlebitCodec.bits(p);
    expect(bits.total).toBe(bytes * 8);
    expect(bits.total).toBe(littlebitStoredBits(rows, cols, p.rank, o.residual));
    const pad = bits.total - littlebitParamsFormulaBits(p);
    expect(pad).toBeGreaterThanOrEqual(0);
    expect(pad).toBeLessThanOrEqual((o.residual ? 2 : 1) * 62);
    const copy = Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { ...t, data: t.data.slice() }]));
    const back = littlebitCodec.fromTensors(copy, rows, cols, o, 'bundle.usk');
    expect([...littlebitCodec.decode(back)]).toEqual([...littlebitCodec.decode(p)]);
  });

  it('fromTensors rejects missing, mis-shaped, mis-typed, dirty-padded and non-finite tensors with typed errors', () => {
    const o = opts({ rank: 3 });
    const p = littlebitCodec.encode(new Rng(1).normalArray(13 * 7), 13, 7, o, ctx());
    const t = littlebitCodec.toTensors(p);
    expect(Object.keys(t).sort()).toEqual(['g', 'h', 'l', 'res_g', 'res_h', 'res_l', 'res_u_signs', 'res_v_signs', 'u_signs', 'v_signs']);
    const with_ = (name: string, change: Partial<StoredTensor>) => ({ ...t, [name]: { ...t[name]!, ...change } });
    const missing = { ...t };
    delete missing.res_l;
    expect(codeOf(() => littlebitCodec.fromTensors(missing, 13, 7, o, 'x.usk'))).toBe(ErrorCodes.MISSING_TENSOR);
    expect(codeOf(() => littlebitCodec.fromTensors(with_('u_signs', { data: t.u_signs!.data.subarray(4), shape: [1] }), 13, 7, o, 'x.usk'))).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(codeOf(() => littlebitCodec.fromTensors(with_('h', { dtype: 'F32', shape: [13] }), 13, 7, o, 'x.usk'))).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(codeOf(() => littlebitCodec.fromTensors(with_('v_signs', { dtype: 'U8', shape: [4] }), 13, 7, o, 'x.usk'))).toBe(ErrorCodes.SHAPE_MISMATCH);
    // wrong shape for the options: another matrix size, another rank, residual tensors expected but absent
    expect(codeOf(() => littlebitCodec.fromTensors(t, 14, 7, o, 'x.usk'))).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(codeOf(() => littlebitCodec.fromTensors(t, 13, 7, opts({ rank: 4 }), 'x.usk'))).toBe(ErrorCodes.SHAPE_MISMATCH);
    const single = littlebitCodec.toTensors(littlebitCodec.encode(new Rng(1).normalArray(13 * 7), 13, 7, opts({ rank: 3, residual: false }), ctx()));
    expect(codeOf(() => littlebitCodec.fromTensors(single, 13, 7, o, 'x.usk'))).toBe(ErrorCodes.MISSING_TENSOR);
    // bits set past the last sign
    const dirty = t.u_signs!.data.slice();
    dirty[dirty.length - 1] = 0x80;
    expect(codeOf(() => littlebitCodec.fromTensors(with_('u_signs', { data: dirty }), 13, 7, o, 'x.usk'))).toBe(ErrorCodes.TRAILING_DATA);
    // an infinite scale
    const inf = t.l!.data.slice();
    inf[0] = 0x00;
    inf[1] = 0x7c;
    expect(codeOf(() => littlebitCodec.fromTensors(with_('l', { data: inf }), 13, 7, o, 'x.usk'))).toBe(ErrorCodes.NOT_FINITE);
    // an infeasible budget in stored options is refused before anything is read
    expect(codeOf(() => littlebitCodec.fromTensors(t, 13, 7, opts({ bpw: 0.01 }), 'x.usk'))).toBe(ErrorCodes.INFEASIBLE_BUDGET);
  });

  it('registerLittleBitCodec is idempotent; the codec is found by id; registerAll is its deprecated alias', () => {
    registerLittleBitCodec();
    registerLittleBitCodec();
    expect(registerAll).toBe(registerLittleBitCodec);
    expect(listCodecs()).toContain('littlebit');
    expect(getCodec('littlebit')).toBe(littlebitCodec);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Real matrices: stories3M, with real calibration statistics (E[a_j²] of each linear's inputs, measured by
// the float model on the first 1024 tokens of calib.txt).

describe('on stories3M (real weights, real calibration statistics)', () => {
  const { model, stats } = stories3MCalibrated(1024);
  const KINDS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;

  it('Dual-SVID beats naive sign-of-SVD at equal rank: relative Frobenius and activation-weighted error (layers 0 and 3, every kind)', () => {
    for (const layer of [0, 3]) {
      for (const kind of KINDS) {
        const [rows, cols] = linearShape(model.config, kind);
        const name = TensorNames.linear(layer, kind);
        const w = model.tensors.get(name)!.data;
        const s2 = stats.meanSquare.get(name)!;
        for (const bpw of [1.0, 0.55]) {
          const p = littlebitCodec.encode(w, rows, cols, opts({ bpw, residual: false }), ctx(name));
          const dual = littlebitCodec.decode(p);
          const naive = naiveSignSvd({ rows, cols, data: w }, p.rank).data;
          const label = `${name} @ ${bpw} bpw, rank ${p.rank}`;
          expect(relErr(w, dual), label).toBeLessThan(relErr(w, naive));
          expect(relErr(w, dual, s2, cols), label).toBeLessThan(relErr(w, naive, s2, cols));
        }
      }
    }
  });

  it('the residual path lowers error at equal bits where the scales are a small part of the budget (1.0 bpw, the 192-wide and 512×192 matrices)', () => {
    for (const kind of ['q', 'o', 'gate', 'up'] as const) {
      const [rows, cols] = linearShape(model.config, kind);
      const name = TensorNames.linear(0, kind);
      const w = model.tensors.get(name)!.data;
      const s2 = stats.meanSquare.get(name)!;
      const one = littlebitCodec.encode(w, rows, cols, opts({ bpw: 1.0, residual: false }), ctx(name));
      const two = littlebitCodec.encode(w, rows, cols, opts({ bpw: 1.0, residual: true }), ctx(name));
      // equal bits: both within the same 1.0 bpw budget
      expect(littlebitCodec.bits(one).total).toBeLessThanOrEqual(rows * cols);
      expect(littlebitCodec.bits(two).total).toBeLessThanOrEqual(rows * cols);
      const d1 = littlebitCodec.decode(one);
      const d2 = littlebitCodec.decode(two);
      expect(relErr(w, d2), name).toBeLessThan(relErr(w, d1));
      expect(relErr(w, d2, s2, cols), name).toBeLessThan(relErr(w, d1, s2, cols));
    }
  });

  it('the residual path lowers error at equal RANK on every kind (layer 2, rank 8) — twice the bits, so no free lunch', () => {
    for (const kind of KINDS) {
      const [rows, cols] = linearShape(model.config, kind);
      const name = TensorNames.linear(2, kind);
      const w = model.tensors.get(name)!.data;
      const one = littlebitCodec.decode(littlebitCodec.encode(w, rows, cols, opts({ rank: 8, residual: false }), ctx(name)));
      const two = littlebitCodec.decode(littlebitCodec.encode(w, rows, cols, opts({ rank: 8, residual: true }), ctx(name)));
      expect(relErr(w, two), name).toBeLessThan(relErr(w, one));
    }
  });
});
