import { describe, expect, it } from 'vitest';
import {
  type HashFamily,
  HASH_FAMILIES,
  MixedHashFamily,
  RowRunHashFamily,
  createHashFamily,
  fmix32,
  occupancy,
  reduceRange,
} from '../src/index.js';

const SHAPES: Array<[rows: number, cols: number, width: number]> = [
  [1, 1, 1],
  [1, 37, 5],
  [29, 1, 3],
  [13, 7, 20],
  [5, 130, 64], // rows longer than the ring: 3 runs per row
  [64, 192, 128],
  [7, 9, 1000],
];

describe.each(HASH_FAMILIES)('%s family', (name) => {
  it.each(SHAPES)('rowIndices agrees with index and stays in [0, width) (%i×%i → %i)', (rows, cols, width) => {
    const f = createHashFamily(name, { seed: 42, rows, cols, width, depth: 3 });
    const idx = new Int32Array(cols);
    const fast: number[] = [];
    const slow: number[] = [];
    for (let k = 0; k < 3; k++) {
      for (let r = 0; r < rows; r++) {
        f.rowIndices(r, k, idx);
        fast.push(...idx);
        for (let c = 0; c < cols; c++) slow.push(f.index(r, c, k));
      }
    }
    expect(fast).toEqual(slow);
    expect(Math.min(...slow)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...slow)).toBeLessThan(width);
  });

  it('is a function of (seed, stream, shape) only: same inputs → same indices; other seed or stream → others', () => {
    const cfg = { seed: 7, rows: 40, cols: 50, width: 97, depth: 2 };
    const all = (f: HashFamily) => {
      const out: number[] = [];
      for (let k = 0; k < f.depth; k++) for (let r = 0; r < f.rows; r++) for (let c = 0; c < f.cols; c++) out.push(f.index(r, c, k));
      return out;
    };
    const a = all(createHashFamily(name, cfg));
    expect(all(createHashFamily(name, { ...cfg }))).toEqual(a);
    const differ = (b: number[]) => b.filter((v, i) => v !== a[i]).length / a.length;
    expect(differ(all(createHashFamily(name, { ...cfg, seed: 8 })))).toBeGreaterThan(0.9);
    expect(differ(all(createHashFamily(name, { ...cfg, stream: 1 })))).toBeGreaterThan(0.9);
    // sketch rows are independent hashes
    const k0 = a.slice(0, 2000);
    const k1 = a.slice(2000);
    expect(k0.filter((v, i) => v === k1[i]).length / 2000).toBeLessThan(0.05);
  });

  it('two weights sharing a state in sketch row 0 share one in row 1 only by chance (≈ 1/width)', () => {
    const rows = 256;
    const cols = 192;
    const width = 384;
    const f = createHashFamily(name, { seed: 3, rows, cols, width, depth: 2 });
    const bucket0 = new Map<number, number[]>();
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const s = f.index(r, c, 0);
        let list = bucket0.get(s);
        if (!list) bucket0.set(s, (list = []));
        list.push(f.index(r, c, 1));
      }
    }
    let pairs = 0;
    let both = 0;
    for (const list of bucket0.values()) {
      const counts = new Map<number, number>();
      for (const s1 of list) counts.set(s1, (counts.get(s1) ?? 0) + 1);
      pairs += (list.length * (list.length - 1)) / 2;
      for (const m of counts.values()) both += (m * (m - 1)) / 2;
    }
    const rate = both / pairs;
    expect(rate).toBeGreaterThan(0.7 / width);
    expect(rate).toBeLessThan(1.3 / width);
  });
});

describe('mixed family occupancy matches random hashing', () => {
  // n items into m bins: E[empty fraction] = (1 − 1/m)^n ≈ e^(−n/m); the standard deviation of the empty
  // fraction is ≈ sqrt(e^(−λ)(1 − (1 + λ)e^(−λ)) / m) — about 0.005 here, so 0.015 is three of them.
  it.each([
    [0.5, 64, 32, 4096],
    [1, 64, 64, 4096],
    [2, 128, 64, 4096],
    [4, 128, 128, 4096],
  ])('λ = %f: empty fraction ≈ e^(−λ), load mean and variance ≈ λ', (lambda, rows, cols, width) => {
    for (const seed of [1, 2, 3]) {
      const s = occupancy(new MixedHashFamily({ seed, rows, cols, width, depth: 3 }));
      expect(s.meanLoad).toBeCloseTo(lambda, 10);
      expect(Math.abs(s.emptyFraction - Math.exp(-lambda))).toBeLessThan(0.015);
      expect(Math.abs(s.loadVariance / lambda - 1)).toBeLessThan(0.1);
    }
  });
});

describe('rowrun family structure', () => {
  it('runs are contiguous cyclic slices and never collide with themselves', () => {
    for (const [rows, cols, width] of SHAPES) {
      const f = new RowRunHashFamily({ seed: 5, rows, cols, width, depth: 3 });
      expect(f.runLength).toBeLessThanOrEqual(width);
      expect(f.segments).toBe(Math.ceil(cols / width));
      for (let k = 0; k < 3; k++) {
        for (let r = 0; r < rows; r++) {
          for (let s = 0; s < f.segments; s++) {
            const c0 = s * f.runLength;
            const c1 = Math.min(c0 + f.runLength, cols);
            const seen = new Set<number>();
            for (let c = c0; c < c1; c++) {
              expect(f.index(r, c, k)).toBe((f.offset(r, s, k) + c - c0) % width);
              seen.add(f.index(r, c, k));
            }
            expect(seen.size).toBe(c1 - c0);
          }
        }
      }
    }
  });

  it('stratified offsets give near-constant loads (mean load ≥ 1: no empty states, max load ≤ ⌈mean⌉ + 1)', () => {
    for (const [rows, cols, width] of [
      [192, 192, 384],
      [64, 192, 128],
      [512, 192, 1024],
      [100, 100, 5000],
      [300, 500, 77], // 7 runs per row of unequal length
      [64, 512, 100],
    ] as const) {
      const s = occupancy(new RowRunHashFamily({ seed: 9, rows, cols, width, depth: 3 }));
      expect(s.emptyFraction).toBe(0);
      expect(s.maxLoad).toBeLessThanOrEqual(Math.ceil(s.meanLoad) + 1);
      expect(s.loadVariance).toBeLessThan(1); // Poisson: variance = mean (here 2 … 1948)
      // uniform random offsets: loads are binomial, far more spread
      const u = occupancy(new RowRunHashFamily({ seed: 9, rows, cols, width, depth: 3 }, { stratified: false }));
      expect(u.loadVariance).toBeGreaterThan(s.loadVariance);
    }
  });

  it('at mean load 1 it leaves ~1/6 of the states empty (jitter), against e^(−1) ≈ 0.37 for random hashing', () => {
    const s = occupancy(new RowRunHashFamily({ seed: 1, rows: 100, cols: 100, width: 10000, depth: 3 }));
    expect(s.emptyFraction).toBeGreaterThan(1 / 6 - 0.02);
    expect(s.emptyFraction).toBeLessThan(1 / 6 + 0.02);
  });
});

describe('helpers', () => {
  it('reduceRange is ⌊h·w / 2^32⌋ exactly', () => {
    let h = 12345;
    for (let i = 0; i < 2000; i++) {
      h = fmix32(h + i);
      for (const w of [1, 2, 3, 1000, 65537, 2 ** 31 - 1]) {
        expect(reduceRange(h, w)).toBe(Number((BigInt(h) * BigInt(w)) >> 32n));
      }
    }
    expect(reduceRange(0xffffffff, 7)).toBe(6);
  });

  it('rejects invalid configurations', () => {
    expect(() => new MixedHashFamily({ seed: -1, rows: 1, cols: 1, width: 1, depth: 1 })).toThrow(/seed/);
    expect(() => createHashFamily('rowrun', { seed: 0, rows: 1, cols: 1, width: 0, depth: 1 })).toThrow();
    expect(() => createHashFamily('nope' as never, { seed: 0, rows: 1, cols: 1, width: 1, depth: 1 })).toThrow(/unknown hash family/);
  });
});
