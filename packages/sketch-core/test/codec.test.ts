import { type Codec, ErrorCodes, Rng, type StoredTensor, f16BitsToF32, getCodec, listCodecs } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import {
  STATE_BITS,
  groupMapBits,
  hashedNetsCodec,
  hashedNetsFamily,
  registerAll,
  registerSketchCodecs,
  sketchCodec,
  sketchGroups,
  sketchMinBpw,
  targetBits,
} from '../src/index.js';
import { codeOf, copyTensors, errorOf, realMatrix } from './helpers.js';

const ctx = (seed = 1, extra: Partial<{ name: string; saliency: Float64Array }> = {}) => ({ name: 'test', seed, ...extra });
const SHAPES: Array<[number, number]> = [
  [1, 1],
  [1, 37],
  [29, 1],
  [13, 7],
  [33, 130],
];
const sameTensors = (a: Record<string, StoredTensor>, b: Record<string, StoredTensor>) => {
  expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
  for (const k of Object.keys(a)) {
    expect(a[k]!.dtype).toBe(b[k]!.dtype);
    expect(a[k]!.shape).toEqual(b[k]!.shape);
    expect([...a[k]!.data]).toEqual([...b[k]!.data]);
  }
};

describe('registry', () => {
  it('registerSketchCodecs is explicit and idempotent; registerAll is its deprecated alias', () => {
    registerSketchCodecs();
    registerSketchCodecs();
    expect(registerAll).toBe(registerSketchCodecs);
    expect(listCodecs()).toEqual(expect.arrayContaining(['sketch', 'hashednets']));
    expect(getCodec('sketch')).toBe(sketchCodec);
    expect(getCodec('hashednets')).toBe(hashedNetsCodec);
  });
});

describe('sketch options', () => {
  it('fills defaults; bpw is required', () => {
    expect(sketchCodec.resolveOptions({ bpw: '0.5' })).toEqual({
      bpw: 0.5,
      rows: 3,
      state: 'f16',
      hash: 'rowrun',
      groups: 1,
      alloc: 'uniform',
      alpha: 1,
      split: 'count',
    });
    expect(codeOf(() => sketchCodec.resolveOptions({}))).toBe(ErrorCodes.BAD_ARGUMENT);
  });

  it('accepts the CLI spelling alloc saliency:α', () => {
    expect(sketchCodec.resolveOptions({ bpw: 1, alloc: 'saliency:0.5' })).toMatchObject({ alloc: 'saliency', alpha: 0.5 });
    expect(sketchCodec.resolveOptions({ bpw: 1, alloc: 'saliency' })).toMatchObject({ alloc: 'saliency', alpha: 1 });
  });

  it.each<Record<string, unknown>>([
    { bpw: 0 },
    { bpw: -1 },
    { bpw: 'x' },
    { bpw: Infinity },
    { bpw: 1, rows: 0 },
    { bpw: 1, rows: 2.5 },
    { bpw: 1, rows: 17 },
    { bpw: 1, state: 'int4' },
    { bpw: 1, hash: 'murmur' },
    { bpw: 1, groups: 0 },
    { bpw: 1, groups: 257 },
    { bpw: 1, alloc: 'salience' },
    { bpw: 1, alloc: 'saliency:x' },
    { bpw: 1, alloc: 'saliency:0.5', alpha: 2 },
    { bpw: 1, alpha: -1 },
    { bpw: 1, split: 'halves' },
    { bpw: 1, depth: 3 },
  ])('rejects %o with BAD_ARGUMENT', (raw) => {
    expect(codeOf(() => sketchCodec.resolveOptions(raw))).toBe(ErrorCodes.BAD_ARGUMENT);
  });

  it('hashednets: bpw required, state f16 | f32', () => {
    expect(hashedNetsCodec.resolveOptions({ bpw: '1' })).toEqual({ bpw: 1, state: 'f16' });
    expect(codeOf(() => hashedNetsCodec.resolveOptions({}))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(codeOf(() => hashedNetsCodec.resolveOptions({ bpw: 1, state: 'int8' }))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(codeOf(() => hashedNetsCodec.resolveOptions({ bpw: 1, rows: 3 }))).toBe(ErrorCodes.BAD_ARGUMENT);
  });
});

describe('encode input checks', () => {
  const o = sketchCodec.resolveOptions({ bpw: 2, groups: 2 });
  it('refuses non-finite weights, wrong sizes, bad seeds, bad saliency, more groups than channels', () => {
    expect(codeOf(() => sketchCodec.encode(Float32Array.from([1, NaN, 2, 3]), 2, 2, o, ctx()))).toBe(ErrorCodes.NOT_FINITE);
    expect(codeOf(() => sketchCodec.encode(new Float32Array(5), 2, 2, o, ctx()))).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(codeOf(() => sketchCodec.encode(new Float32Array(4), 2, 2, o, ctx(-1)))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(codeOf(() => sketchCodec.encode(new Float32Array(4), 2, 2, o, ctx(2 ** 32)))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(codeOf(() => sketchCodec.encode(new Float32Array(4), 2, 2, o, ctx(1, { saliency: new Float64Array(3) })))).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(codeOf(() => sketchCodec.encode(new Float32Array(4), 2, 2, o, ctx(1, { saliency: Float64Array.from([1, -1]) })))).toBe(ErrorCodes.NOT_FINITE);
    expect(codeOf(() => sketchCodec.encode(new Float32Array(4), 4, 1, o, ctx()))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(codeOf(() => hashedNetsCodec.encode(Float32Array.from([Infinity]), 1, 1, { bpw: 64, state: 'f16' }, ctx()))).toBe(ErrorCodes.NOT_FINITE);
  });
});

describe('determinism', () => {
  const [w, rows, cols] = realMatrix(0, 'q');
  const sal = Float64Array.from({ length: cols }, (_, j) => 1 + Math.sin(j));
  const sal2 = Float64Array.from({ length: cols }, (_, j) => 1 + Math.cos(j));
  it.each<[string, Codec<any, any>, Record<string, unknown>]>([
    ['sketch rowrun', sketchCodec, { bpw: 0.75 }],
    ['sketch mixed int8', sketchCodec, { bpw: 0.75, hash: 'mixed', state: 'int8' }],
    ['sketch groups', sketchCodec, { bpw: 0.75, groups: 4, alloc: 'saliency:1.5' }],
    ['hashednets', hashedNetsCodec, { bpw: 0.75 }],
  ])('%s: same (weights, options, seed) → identical params; other seed → others; name never matters', (label, codec, raw) => {
    const o = codec.resolveOptions(raw);
    const a = codec.toTensors(codec.encode(w, rows, cols, o, ctx(5, { name: 'a', saliency: sal })));
    sameTensors(codec.toTensors(codec.encode(w.slice(), rows, cols, { ...o }, ctx(5, { name: 'other name', saliency: sal.slice() }))), a);
    const b = codec.toTensors(codec.encode(w, rows, cols, o, ctx(6, { name: 'a', saliency: sal })));
    expect([...b.states!.data]).not.toEqual([...a.states!.data]);
    expect([...b.seed!.data]).toEqual([6, 0, 0, 0]);
    const c = codec.toTensors(codec.encode(w, rows, cols, o, ctx(5, { name: 'a', saliency: sal2 })));
    if (label === 'sketch groups') expect([...c.groupMap!.data]).not.toEqual([...a.groupMap!.data]); // saliency shapes the groups
    else sameTensors(c, a); // one group: saliency is not used
  });
});

describe('bit accounting', () => {
  const configs: Array<Record<string, unknown>> = [
    { bpw: 0.5 },
    { bpw: 0.75, state: 'int8' },
    { bpw: 1, state: 'f32', hash: 'mixed' },
    { bpw: 1, rows: 1 },
    { bpw: 1.25, groups: 3, alloc: 'saliency', state: 'int8' },
    { bpw: 2, groups: 5, alloc: 'saliency:2', split: 'mass' },
    { bpw: 20, groups: 2 },
  ];
  it.each(configs)('bits() = 8 × stored bytes = the formula, within the target, with the largest state count that fits (%o)', (raw) => {
    const o = sketchCodec.resolveOptions(raw);
    for (const [rows, cols] of [...SHAPES, [64, 192] as [number, number], [512, 192] as [number, number]]) {
      const groups = Math.min(o.groups, cols);
      const oo = { ...o, groups, bpw: Math.max(o.bpw, sketchMinBpw(rows, cols, { ...o, groups })) };
      const rng = new Rng(rows * 1000 + cols);
      const w = rng.normalArray(rows * cols);
      const saliency = Float64Array.from({ length: cols }, () => rng.next());
      let p;
      try {
        p = sketchCodec.encode(w, rows, cols, oo, ctx(1, { saliency }));
      } catch (err) {
        // a mass split can make groups smaller than the count split that sketchMinBpw assumes
        expect(codeOf(() => { throw err; })).toBe(ErrorCodes.INFEASIBLE_BUDGET);
        continue;
      }
      const tensors = sketchCodec.toTensors(p);
      const bytes = Object.values(tensors).reduce((n, t) => n + t.data.byteLength, 0);
      const bits = sketchCodec.bits(p);
      expect(bits.total).toBe(bytes * 8);
      expect(bits.components.seed).toBe(32);
      const T = p.states.length;
      const sketchRows = sketchGroups(p).reduce((a, g) => a + g.alloc.depth, 0);
      const formula =
        STATE_BITS[oo.state] * T + 32 + (oo.state === 'int8' ? 16 * sketchRows : 0) +
        (groups > 1 ? 8 * Math.ceil((cols * groupMapBits(groups)) / 8) + 32 * groups : 0);
      expect(bits.total).toBe(formula);
      expect(bits.total).toBeLessThanOrEqual(targetBits(oo.bpw, rows * cols));
      expect(bits.total / (rows * cols)).toBeLessThanOrEqual(oo.bpw);
      if (groups === 1 && !sketchGroups(p)[0]!.alloc.exact) {
        // one more state per sketch row would not fit (int8 budgets reserve d scales per group)
        expect(bits.total + oo.rows * STATE_BITS[oo.state]).toBeGreaterThan(targetBits(oo.bpw, rows * cols));
      }
    }
  });

  it('hashednets: bits = 16|32 · width + 32, the largest width that fits, capped at one state per weight', () => {
    for (const state of ['f16', 'f32'] as const) {
      for (const [rows, cols] of [[64, 192], [13, 7], [1, 1]] as Array<[number, number]>) {
        for (const bpw of [0.5, 1, 3, 64]) {
          const o = hashedNetsCodec.resolveOptions({ bpw, state });
          const n = rows * cols;
          if (targetBits(bpw, n) < 32 + STATE_BITS[state]) continue;
          const p = hashedNetsCodec.encode(new Rng(n).normalArray(n), rows, cols, o, ctx());
          const bits = hashedNetsCodec.bits(p).total;
          expect(bits).toBe(STATE_BITS[state] * p.states.length + 32);
          expect(bits).toBeLessThanOrEqual(targetBits(bpw, n));
          expect(p.states.length === n || bits + STATE_BITS[state] > targetBits(bpw, n)).toBe(true);
        }
      }
    }
  });
});

describe('infeasible budgets are refused with the smallest feasible bpw', () => {
  const smallest = (message: string) => Number(/smallest feasible target is ([0-9.]+) bpw/.exec(message)![1]);
  it.each<[number, number, Record<string, unknown>]>([
    [1, 1, { bpw: 1 }],
    [13, 7, { bpw: 0.5 }],
    [64, 192, { bpw: 0.001 }],
    [64, 192, { bpw: 0.01, state: 'int8', groups: 8 }],
    [33, 130, { bpw: 0.05, groups: 16, rows: 4 }],
    [4, 3, { bpw: 2, rows: 16 }],
  ])('%i×%i %o', (rows, cols, raw) => {
    const o = sketchCodec.resolveOptions(raw);
    const w = new Rng(rows + cols).normalArray(rows * cols);
    const err = errorOf(() => sketchCodec.encode(w, rows, cols, o, ctx()));
    expect(err.code).toBe(ErrorCodes.INFEASIBLE_BUDGET);
    expect(err.message).toContain(`${rows}×${cols}`);
    const min = smallest(err.message);
    expect(min).toBe(sketchMinBpw(rows, cols, o));
    const p = sketchCodec.encode(w, rows, cols, { ...o, bpw: min }, ctx());
    expect(sketchCodec.bits(p).total / (rows * cols)).toBeLessThanOrEqual(min);
    expect(codeOf(() => sketchCodec.encode(w, rows, cols, { ...o, bpw: min - 1e-4 }, ctx()))).toBe(ErrorCodes.INFEASIBLE_BUDGET);
  });

  it('hashednets', () => {
    const o = hashedNetsCodec.resolveOptions({ bpw: 0.1 });
    const err = errorOf(() => hashedNetsCodec.encode(new Float32Array(64), 8, 8, o, ctx()));
    expect(err.code).toBe(ErrorCodes.INFEASIBLE_BUDGET);
    const min = smallest(err.message);
    expect(min).toBe(0.75); // (32 + 16) / 64
    hashedNetsCodec.encode(new Float32Array(64), 8, 8, { ...o, bpw: min }, ctx());
  });
});

describe('storage round trip and rejection', () => {
  const configs: Array<Record<string, unknown>> = [
    { bpw: 0.75 },
    { bpw: 0.75, state: 'int8', hash: 'mixed' },
    { bpw: 1, state: 'f32' },
    { bpw: 2, groups: 3, alloc: 'saliency:2', state: 'int8' },
    { bpw: 8, groups: 4, alloc: 'saliency:3' },
  ];
  it.each(configs)('toTensors → fromTensors → identical decode and decodeRows (%o)', (raw) => {
    const o = sketchCodec.resolveOptions(raw);
    for (const [rows, cols] of [[33, 130], [64, 192]] as Array<[number, number]>) {
      const rng = new Rng(rows);
      const w = rng.normalArray(rows * cols);
      const p = sketchCodec.encode(w, rows, cols, o, ctx(3, { saliency: Float64Array.from({ length: cols }, () => rng.next()) }));
      const back = sketchCodec.fromTensors(copyTensors(sketchCodec, p), rows, cols, o, 'b.usk');
      sameTensors(sketchCodec.toTensors(back), sketchCodec.toTensors(p));
      const dense = sketchCodec.decode(p);
      expect([...sketchCodec.decode(back)]).toEqual([...dense]);
      const part = new Float32Array(2 * cols);
      sketchCodec.decodeRows(back, rows - 2, 2, part);
      expect([...part]).toEqual([...dense.subarray((rows - 2) * cols)]);
    }
  });

  it.each(['f16', 'int8', 'f32'])('decodeRows of single rows (dequantized on access) equals decode (%s)', (state) => {
    const [rows, cols] = [64, 192];
    const rng = new Rng(2);
    const w = rng.normalArray(rows * cols);
    const o = sketchCodec.resolveOptions({ bpw: 6, state, groups: 3, alloc: 'saliency:2' });
    const p = sketchCodec.encode(w, rows, cols, o, ctx(3, { saliency: Float64Array.from({ length: cols }, () => rng.next()) }));
    expect(cols * o.rows).toBeLessThan(p.states.length); // the lazy path
    const dense = sketchCodec.decode(p);
    const one = new Float32Array(cols);
    for (let r = 0; r < rows; r++) {
      sketchCodec.decodeRows(p, r, 1, one);
      expect([...one]).toEqual([...dense.subarray(r * cols, (r + 1) * cols)]);
    }
  });

  const rows = 20;
  const cols = 30;
  const w = new Rng(1).normalArray(rows * cols);
  const o1 = sketchCodec.resolveOptions({ bpw: 1 }); // 600 weights: 18 states per row, 54 states
  const oG = sketchCodec.resolveOptions({ bpw: 2, groups: 3, state: 'int8', alloc: 'saliency' });
  const p1 = sketchCodec.encode(w, rows, cols, o1, ctx());
  const pG = sketchCodec.encode(w, rows, cols, oG, ctx());
  const mutate = (p: unknown, o: any, edit: (t: Record<string, StoredTensor>) => void) => {
    const t = copyTensors(sketchCodec, p);
    edit(t);
    return codeOf(() => sketchCodec.fromTensors(t, rows, cols, o, 'bad.usk'));
  };
  it('rejects missing, mistyped, misshapen and inconsistent tensors', () => {
    expect(mutate(p1, o1, (t) => delete t.states)).toBe(ErrorCodes.MISSING_TENSOR);
    expect(mutate(p1, o1, (t) => delete t.seed)).toBe(ErrorCodes.MISSING_TENSOR);
    expect(mutate(p1, o1, (t) => (t.seed = { ...t.seed!, shape: [2], data: new Uint8Array(8) }))).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(mutate(p1, o1, (t) => (t.states = { ...t.states!, dtype: 'F32' }))).toBe(ErrorCodes.SHAPE_MISMATCH);
    // 53 states: not whole sketch rows
    expect(mutate(p1, o1, (t) => (t.states = { dtype: 'F16', shape: [53], data: t.states!.data.slice(0, 106) }))).toBe(ErrorCodes.SHAPE_MISMATCH);
    // 2-D states
    expect(mutate(p1, o1, (t) => (t.states = { ...t.states!, shape: [3, 18] }))).toBe(ErrorCodes.SHAPE_MISMATCH);
    // more states than weights (and not exactly one per weight)
    expect(mutate(p1, o1, (t) => (t.states = { dtype: 'F16', shape: [603], data: new Uint8Array(1206) }))).toBe(ErrorCodes.SHAPE_MISMATCH);
    // byte length disagreeing with the shape
    expect(mutate(p1, o1, (t) => (t.states = { ...t.states!, data: t.states!.data.slice(2) }))).toBe(ErrorCodes.SHAPE_MISMATCH);
    // exactly one state per weight is a valid (exact) layout
    expect(mutate(p1, o1, (t) => (t.states = { dtype: 'F16', shape: [600], data: new Uint8Array(1200) }))).toBeUndefined();
    // non-finite f16 states
    expect(mutate(p1, o1, (t) => { t.states!.data[1] = 0x7c; })).toBe(ErrorCodes.NOT_FINITE);
    // groups: missing map, wrong map size, group index out of range, an empty group, counts ≠ states
    expect(mutate(pG, oG, (t) => delete t.groupMap)).toBe(ErrorCodes.MISSING_TENSOR);
    expect(mutate(pG, oG, (t) => delete t.groupStates)).toBe(ErrorCodes.MISSING_TENSOR);
    expect(mutate(pG, oG, (t) => (t.groupMap = { dtype: 'U8', shape: [7], data: new Uint8Array(7) }))).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(mutate(pG, oG, (t) => { t.groupMap!.data[0] = 0xff; })).toBe(ErrorCodes.SHAPE_MISMATCH); // group 3 of 3
    expect(mutate(pG, oG, (t) => t.groupMap!.data.fill(0))).toBe(ErrorCodes.SHAPE_MISMATCH); // groups 1, 2 empty
    expect(mutate(pG, oG, (t) => { t.groupStates!.data[0] = t.groupStates!.data[0]! + 3; })).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(mutate(pG, oG, (t) => (t.scales = { ...t.scales!, shape: [1], data: t.scales!.data.slice(0, 2) }))).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(mutate(pG, oG, (t) => delete t.scales)).toBe(ErrorCodes.MISSING_TENSOR);
    expect(mutate(pG, oG, (t) => { t.scales!.data[1] = 0xfc; })).toBe(ErrorCodes.NOT_FINITE);
    // options that disagree with the stored layout
    expect(codeOf(() => sketchCodec.fromTensors(copyTensors(sketchCodec, p1), rows, cols, { ...o1, rows: 4 }, 'x'))).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(codeOf(() => sketchCodec.fromTensors(copyTensors(sketchCodec, p1), rows, cols, { ...o1, state: 'int8' }, 'x'))).toBe(ErrorCodes.SHAPE_MISMATCH);
  });

  it('hashednets: round trip and rejection', () => {
    const o = hashedNetsCodec.resolveOptions({ bpw: 1 });
    const p = hashedNetsCodec.encode(w, rows, cols, o, ctx());
    const back = hashedNetsCodec.fromTensors(copyTensors(hashedNetsCodec, p), rows, cols, o, 'b');
    expect([...hashedNetsCodec.decode(back)]).toEqual([...hashedNetsCodec.decode(p)]);
    const t = copyTensors(hashedNetsCodec, p);
    t.states = { dtype: 'F16', shape: [601], data: new Uint8Array(1202) };
    expect(codeOf(() => hashedNetsCodec.fromTensors(t, rows, cols, o, 'b'))).toBe(ErrorCodes.SHAPE_MISMATCH);
    const t2 = copyTensors(hashedNetsCodec, p);
    delete t2.states;
    expect(codeOf(() => hashedNetsCodec.fromTensors(t2, rows, cols, o, 'b'))).toBe(ErrorCodes.MISSING_TENSOR);
    const t3 = copyTensors(hashedNetsCodec, p);
    t3.states!.data[1] = 0xfe;
    expect(codeOf(() => hashedNetsCodec.fromTensors(t3, rows, cols, o, 'b'))).toBe(ErrorCodes.NOT_FINITE);
  });
});

describe('hashednets', () => {
  it('state = the mean of its bucket (f32 exact; f16 rounded to nearest); empty → 0', () => {
    const rows = 12;
    const cols = 40;
    const w = new Rng(2).normalArray(rows * cols);
    for (const state of ['f32', 'f16'] as const) {
      const o = hashedNetsCodec.resolveOptions({ bpw: (32 + 200 * (state === 'f32' ? 32 : 16)) / (rows * cols), state });
      const p = hashedNetsCodec.encode(w, rows, cols, o, ctx(9));
      expect(p.states.length).toBe(200);
      const f = hashedNetsFamily(p);
      const sum = new Float64Array(200);
      const cnt = new Float64Array(200);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) (sum[f.index(r, c, 0)] += w[r * cols + c]!), cnt[f.index(r, c, 0)]++;
      const d = hashedNetsCodec.decode(p);
      for (let s = 0; s < 200; s++) {
        const mean = cnt[s]! ? sum[s]! / cnt[s]! : 0;
        const v = state === 'f32' ? p.states[s]! : f16BitsToF32(p.states[s]!);
        expect(Math.abs(v - mean)).toBeLessThanOrEqual(state === 'f32' ? 1e-7 * (1 + Math.abs(mean)) : 1e-3 * Math.abs(mean) + 1e-7);
      }
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
        const v = state === 'f32' ? p.states[f.index(r, c, 0)]! : f16BitsToF32(p.states[f.index(r, c, 0)]!);
        expect(d[r * cols + c]).toBe(v);
      }
      expect([...cnt].filter((x) => x === 0).length).toBeGreaterThan(0); // λ = 2.4: some empty buckets
    }
  });
});
