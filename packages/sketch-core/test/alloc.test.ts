import { Rng, packCodes, unpackCodes } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import {
  type GroupDemand,
  allocateStates,
  channelScores,
  groupAllocationOf,
  groupChannels,
  groupMapBits,
  minGroupStates,
  partitionChannels,
  sketchCodec,
  sketchGroups,
} from '../src/index.js';
import { copyTensors, realMatrix } from './helpers.js';

const rng = new Rng(17);
const heavyScores = (n: number) => Float64Array.from({ length: n }, () => Math.exp(3 * rng.normal()));

describe('channel scores and partitions', () => {
  it('score_j = s_j · ‖W[:, j]‖²', () => {
    const w = Float32Array.from([1, 2, 3, 4, 5, 6]); // 2×3
    expect([...channelScores(w, 2, 3)]).toEqual([17, 29, 45]);
    expect([...channelScores(w, 2, 3, Float64Array.from([2, 0, 1]))]).toEqual([34, 0, 45]);
  });

  it('count split: G groups of ⌊C/G⌋ or ⌈C/G⌉ channels, group 0 holds the highest scores', () => {
    const scores = heavyScores(103);
    for (const G of [1, 2, 3, 7, 103]) {
      const groupOf = partitionChannels(scores, G, 'count');
      const groups = groupChannels(groupOf, G);
      for (const ch of groups) expect([Math.floor(103 / G), Math.ceil(103 / G)]).toContain(ch.length);
      for (let g = 1; g < G; g++) {
        const minPrev = Math.min(...[...groups[g - 1]!].map((j) => scores[j]!));
        const maxThis = Math.max(...[...groups[g]!].map((j) => scores[j]!));
        expect(minPrev).toBeGreaterThanOrEqual(maxThis);
      }
      for (const ch of groups) for (let i = 1; i < ch.length; i++) expect(ch[i]!).toBeGreaterThan(ch[i - 1]!);
    }
  });

  it('mass split: groups of about equal score mass, every group non-empty', () => {
    const scores = heavyScores(200);
    const total = scores.reduce((a, b) => a + b, 0);
    for (const G of [2, 4, 8]) {
      const groups = groupChannels(partitionChannels(scores, G, 'mass'), G);
      for (const ch of groups) expect(ch.length).toBeGreaterThan(0);
      // the top group is the smallest in channels (heavy-tailed scores)
      expect(groups[0]!.length).toBeLessThan(groups[G - 1]!.length);
      // group g ends as soon as the cumulative mass of groups 0..g reaches (g + 1)/G of the total
      let cum = 0;
      for (let g = 0; g < G - 1; g++) {
        const masses = [...groups[g]!].map((j) => scores[j]!).sort((a, b) => a - b);
        const mass = masses.reduce((a, b) => a + b, 0);
        expect(cum + mass).toBeGreaterThanOrEqual((total * (g + 1)) / G);
        // its last (smallest) channel was still needed — unless an earlier dominant channel overshot this
        // target too, and the group holds just the one channel every group must have
        if (masses.length > 1) expect(cum + mass - masses[0]!).toBeLessThan((total * (g + 1)) / G);
        cum += mass;
      }
    }
    // degenerate scores (all zero) fall back to the count split
    expect([...partitionChannels(new Float64Array(6), 3, 'mass')]).toEqual([...partitionChannels(new Float64Array(6), 3, 'count')]);
    // as many groups as channels: one channel each
    expect(new Set(partitionChannels(heavyScores(5), 5, 'mass')).size).toBe(5);
  });
});

describe('allocation plans', () => {
  const demands = (weights: number[], scores: number[]): GroupDemand[] => weights.map((w, i) => ({ weights: w, score: scores[i]! }));
  const check = (S: number, ds: GroupDemand[], depth: number, kind: 'uniform' | 'saliency', alpha: number) => {
    const plan = allocateStates(S, ds, depth, kind, alpha);
    const used = plan.reduce((a, p) => a + p.states, 0);
    expect(used).toBeLessThanOrEqual(S);
    plan.forEach((p, g) => {
      const n = ds[g]!.weights;
      expect(p.states).toBeLessThanOrEqual(n); // cap: one state per weight
      expect(p.states).toBeGreaterThanOrEqual(minGroupStates(n, depth));
      expect(groupAllocationOf(p.states, n, depth)).toEqual(p);
    });
    // what is left cannot buy another sketch row's state for anyone, nor complete an exact group
    const left = S - used;
    for (let g = 0; g < plan.length; g++) {
      const p = plan[g]!;
      if (!p.exact) expect(Math.min(depth, ds[g]!.weights - p.states)).toBeGreaterThan(left);
    }
    return plan;
  };

  it('sums to the budget (within one increment) and respects floors and caps', () => {
    for (let t = 0; t < 300; t++) {
      const G = 1 + rng.int(8);
      const depth = 1 + rng.int(4);
      const ds = demands(
        Array.from({ length: G }, () => 1 + rng.int(3000)),
        Array.from({ length: G }, () => (rng.next() < 0.1 ? 0 : Math.exp(2 * rng.normal()))),
      );
      const min = ds.reduce((a, d) => a + minGroupStates(d.weights, depth), 0);
      const all = ds.reduce((a, d) => a + d.weights, 0);
      const S = min + rng.int(all + 100);
      check(S, ds, depth, rng.next() < 0.5 ? 'uniform' : 'saliency', [0, 0.5, 1, 2][rng.int(4)]!);
    }
  });

  it('uniform (and α = 0) gives states ∝ weights; α > 0 moves states to high-score groups', () => {
    const ds = demands([1000, 1000, 2000], [100, 10, 1]);
    const u = check(600, ds, 3, 'uniform', 1);
    expect(u.map((p) => p.states)).toEqual([150, 150, 300]);
    expect(check(600, ds, 3, 'saliency', 0).map((p) => p.states)).toEqual([150, 150, 300]);
    const a1 = check(600, ds, 3, 'saliency', 1).map((p) => p.states);
    const a2 = check(600, ds, 3, 'saliency', 2).map((p) => p.states);
    expect(a1[0]! / a1[1]!).toBeCloseTo(10, 0); // ∝ score
    expect(a2[0]!).toBeGreaterThan(a1[0]!);
    expect(a2[2]!).toBe(3); // the floor: one state per sketch row
  });

  it('caps a group at one state per weight (exact) and gives the surplus to the others', () => {
    const ds = demands([100, 1000], [1000, 1]);
    const plan = check(600, ds, 3, 'saliency', 1);
    expect(plan[0]).toEqual({ states: 100, exact: true, width: 100, depth: 1 });
    expect(plan[1]!.states).toBe(498); // 500 states left, in whole sketch rows of 3
    // everything exact when the budget covers all weights
    expect(check(5000, ds, 3, 'uniform', 1).every((p) => p.exact)).toBe(true);
    // a group smaller than d is exact at its minimum
    expect(check(3, demands([2], [1]), 3, 'uniform', 1)[0]).toEqual({ states: 2, exact: true, width: 2, depth: 1 });
    expect(() => allocateStates(5, demands([100, 100], [1, 1]), 3, 'uniform', 1)).toThrow(/minimum/);
  });
});

describe('the channel→group map in the codec', () => {
  it('is stored packed at ⌈log2 G⌉ bits per channel, counted, and round-trips', () => {
    const [w, rows, cols] = realMatrix(1, 'up'); // 512×192
    const saliency = Float64Array.from({ length: cols }, (_, j) => 1 + (j % 13));
    for (const G of [2, 3, 4, 5, 16]) {
      const o = sketchCodec.resolveOptions({ bpw: 0.75, groups: G, alloc: 'saliency', alpha: 1 });
      const p = sketchCodec.encode(w, rows, cols, o, { name: 'up', seed: 1, saliency });
      const t = sketchCodec.toTensors(p);
      const bitsPer = groupMapBits(G);
      expect(bitsPer).toBe(Math.ceil(Math.log2(G)));
      expect(t.groupMap!.data.byteLength).toBe(Math.ceil((cols * bitsPer) / 8));
      expect(sketchCodec.bits(p).components.groupMap).toBe(8 * Math.ceil((cols * bitsPer) / 8));
      expect([...unpackCodes(t.groupMap!.data, cols, bitsPer)]).toEqual([...p.groupOf!]);
      expect([...t.groupMap!.data]).toEqual([...packCodes(p.groupOf!, bitsPer)]);
      const back = sketchCodec.fromTensors(copyTensors(sketchCodec, p), rows, cols, o, 'x.usk');
      expect([...back.groupOf!]).toEqual([...p.groupOf!]);
      expect(sketchGroups(back).map((g) => [...g.channels])).toEqual(sketchGroups(p).map((g) => [...g.channels]));
      expect([...sketchCodec.decode(back)]).toEqual([...sketchCodec.decode(p)]);
    }
  });

  it('G = 1 stores no map and no per-group counts', () => {
    const [w, rows, cols] = realMatrix(0, 'k');
    const p = sketchCodec.encode(w, rows, cols, sketchCodec.resolveOptions({ bpw: 0.5 }), { name: 'k', seed: 1 });
    expect(Object.keys(sketchCodec.toTensors(p)).sort()).toEqual(['seed', 'states']);
  });

  it('saliency allocation gives the high-score channel groups more states per weight', () => {
    const [w, rows, cols] = realMatrix(2, 'gate');
    const saliency = Float64Array.from({ length: cols }, () => Math.exp(2 * rng.normal()));
    const o = sketchCodec.resolveOptions({ bpw: 1, groups: 4, alloc: 'saliency', alpha: 1 });
    const p = sketchCodec.encode(w, rows, cols, o, { name: 'gate', seed: 1, saliency });
    const perWeight = sketchGroups(p).map((g) => g.alloc.states / g.weights);
    for (let g = 1; g < 4; g++) expect(perWeight[g - 1]!).toBeGreaterThanOrEqual(perWeight[g]!);
    expect(perWeight[0]!).toBeGreaterThan(2 * perWeight[3]!);
  });
});
