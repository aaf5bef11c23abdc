import { ErrorCodes, Rng } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import { columnSigns, dequantizeStates, sketchCodec, sketchGroups } from '../src/index.js';
import { codeOf, copyTensors, realMatrix } from './helpers.js';

/** The sketch codec's `query: signmean` (issue 16; docs/sketch.md §10). */
const ctx = (seed = 1) => ({ name: 'test', seed });
const normal = (n: number, seed: number) => new Rng(seed).normalArray(n);

describe('signmean options', () => {
  it('query defaults to absmaxmin and is then left out of the resolved options (default bundles unchanged)', () => {
    const o = sketchCodec.resolveOptions({ bpw: 1 });
    expect('query' in o).toBe(false);
    expect(sketchCodec.resolveOptions({ bpw: 1, query: 'absmaxmin' })).toEqual(o);
    expect(sketchCodec.resolveOptions({ bpw: 1, query: 'signmean' }).query).toBe('signmean');
  });

  it('an unknown query is a typed error naming the allowed values', () => {
    expect(codeOf(() => sketchCodec.resolveOptions({ bpw: 1, query: 'median' }))).toBe(ErrorCodes.BAD_ARGUMENT);
    expect(() => sketchCodec.resolveOptions({ bpw: 1, query: 'median' })).toThrow(/absmaxmin.*signmean|signmean.*absmaxmin/);
  });
});

describe('signmean build and query', () => {
  it('column signs are ±1, seed/stream/k dependent, about half negative', () => {
    const a = columnSigns(1, 0, 0, 4000);
    expect(a.every((v) => v === 1 || v === -1)).toBe(true);
    const neg = a.filter((v) => v < 0).length / a.length;
    expect(Math.abs(neg - 0.5)).toBeLessThan(0.04);
    expect(columnSigns(2, 0, 0, 4000)).not.toEqual(a);
    expect(columnSigns(1, 1, 0, 4000)).not.toEqual(a);
    expect(columnSigns(1, 0, 1, 4000)).not.toEqual(a);
    expect(columnSigns(1, 0, 0, 4000)).toEqual(a);
  });

  it('f32 states are the signed bucket means and the decode is (1/d) Σ_k ξ_k(c) S_k[h_k] (any family, groups)', () => {
    for (const raw of [
      { bpw: 4, rows: 1, state: 'f32' },
      { bpw: 8, rows: 3, state: 'f32' },
      { bpw: 8, rows: 2, state: 'f32', hash: 'mixed', groups: 3 },
    ]) {
      const [rows, cols] = [23, 61];
      const w = normal(rows * cols, 3);
      const o = sketchCodec.resolveOptions({ ...raw, query: 'signmean' });
      const p = sketchCodec.encode(w, rows, cols, o, ctx(5));
      const S = dequantizeStates(p);
      const sums = new Float64Array(S.length);
      const counts = new Float64Array(S.length);
      const expectW = new Float64Array(rows * cols);
      for (const g of sketchGroups(p)) {
        expect(g.family).not.toBeNull();
        const d = g.family!.depth;
        for (let r = 0; r < rows; r++) {
          for (let k = 0; k < d; k++) {
            for (let c = 0; c < g.channels.length; c++) {
              const s = g.stateOffset + k * g.alloc.width + g.family!.index(r, c, k);
              sums[s] = sums[s]! + g.signs![k]![c]! * w[r * cols + g.channels[c]!]!;
              counts[s] = counts[s]! + 1;
            }
          }
        }
        for (let i = 0; i < S.length; i++) if (counts[i]! > 0) expect(S[i]).toBeCloseTo(sums[i]! / counts[i]!, 5);
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < g.channels.length; c++) {
            let acc = 0;
            for (let k = 0; k < d; k++) acc += g.signs![k]![c]! * S[g.stateOffset + k * g.alloc.width + g.family!.index(r, c, k)]!;
            expectW[r * cols + g.channels[c]!] = acc / d;
          }
        }
        sums.fill(0);
        counts.fill(0);
      }
      const W = sketchCodec.decode(p);
      for (let i = 0; i < W.length; i++) expect(W[i]).toBeCloseTo(expectW[i]!, 6);
    }
  });

  it('the decode is linear in the states: scaling every f32 state by 2 doubles ŵ', () => {
    const [rows, cols] = [17, 40];
    const p = sketchCodec.encode(normal(rows * cols, 9), rows, cols, sketchCodec.resolveOptions({ bpw: 8, rows: 3, state: 'f32', query: 'signmean' }), ctx());
    const W = sketchCodec.decode(p);
    const W2 = sketchCodec.decode({ ...p, states: Float32Array.from(p.states as Float32Array, (v) => 2 * v) });
    for (let i = 0; i < W.length; i++) expect(W2[i]).toBeCloseTo(2 * W[i]!, 6);
  });

  it('same stored tensors and bits as the AbsMaxMin sketch with the same options; round trip keeps the decode', () => {
    const [w, rows, cols] = realMatrix(0, 'q');
    for (const raw of [{ bpw: 0.5 }, { bpw: 0.5, rows: 1, state: 'int8' }, { bpw: 1, groups: 4 }]) {
      const a = sketchCodec.encode(w, rows, cols, sketchCodec.resolveOptions(raw), ctx());
      const o = sketchCodec.resolveOptions({ ...raw, query: 'signmean' });
      const b = sketchCodec.encode(w, rows, cols, o, ctx());
      expect(sketchCodec.bits(b)).toEqual(sketchCodec.bits(a));
      const ta = sketchCodec.toTensors(a);
      const tb = sketchCodec.toTensors(b);
      expect(Object.keys(tb).sort()).toEqual(Object.keys(ta).sort());
      for (const k of Object.keys(ta)) expect(tb[k]!.shape).toEqual(ta[k]!.shape);
      const back = sketchCodec.fromTensors(copyTensors(sketchCodec, b), rows, cols, o, 'rt');
      expect(sketchCodec.decode(back)).toEqual(sketchCodec.decode(b));
    }
  });

  it('after compression it keeps far more of W than AbsMaxMin (cos(Ŵ, W) > 0.1 vs ≈ 0 on a stories3M matrix)', () => {
    const [w, rows, cols] = realMatrix(3, 'up');
    const cos = (a: Float32Array) => {
      let d = 0, aa = 0, ww = 0;
      for (let i = 0; i < w.length; i++) {
        d += a[i]! * w[i]!;
        aa += a[i]! * a[i]!;
        ww += w[i]! * w[i]!;
      }
      return d / Math.sqrt(aa * ww);
    };
    const amm = sketchCodec.decode(sketchCodec.encode(w, rows, cols, sketchCodec.resolveOptions({ bpw: 0.5 }), ctx()));
    const sm = sketchCodec.decode(sketchCodec.encode(w, rows, cols, sketchCodec.resolveOptions({ bpw: 0.5, rows: 1, query: 'signmean' }), ctx()));
    expect(Math.abs(cos(amm))).toBeLessThan(0.05);
    expect(cos(sm)).toBeGreaterThan(0.1);
  });
});
