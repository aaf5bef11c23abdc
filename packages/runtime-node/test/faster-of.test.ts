import { describe, expect, it } from 'vitest';
import { FasterOf } from '../src/threads.js';

/**
 * FasterOf, the policy that picks between two ways of the same work (the pool per product shape: one thread or
 * split; a session per generated token: the decode program or the pooled forward), on a fake clock: each way
 * advances it by the cost the case gives, so every decision is deterministic.
 */
function simulate(margin: number, window: number, calls: number, cost: (way: 'first' | 'second', call: number) => number): Array<'first' | 'second'> {
  let clock = 0;
  const policy = new FasterOf(margin, window, () => clock);
  const ways: Array<'first' | 'second'> = [];
  for (let c = 0; c < calls; c++) {
    const way = policy.run(
      () => ((clock += cost('first', c)), 'first' as const),
      () => ((clock += cost('second', c)), 'second' as const),
    );
    ways.push(way);
  }
  return ways;
}

const count = (ways: string[], way: string, from = 0, to = ways.length) => ways.slice(from, to).filter((w) => w === way).length;

describe('FasterOf', () => {
  it('alternates whole windows (the first of each way a warm-up), then keeps the faster way', () => {
    // windows of 8: first, second (the warm-ups), first, second, first, second
    const ways = simulate(0.05, 8, 48 + 80, (way) => (way === 'first' ? 1 : 1.5));
    for (let k = 0; k < 6; k++) expect(count(ways, k % 2 === 0 ? 'first' : 'second', 8 * k, 8 * k + 8), `window ${k}`).toBe(8);
    // then the faster (first) every call until the first recheck
    expect(count(ways, 'first', 48)).toBe(80);
  });

  it('rechecks the slower way one window at a time, backing off while the answer holds', () => {
    const windows = 256;
    const calls = windows * 8;
    const ways = simulate(0.05, 8, calls, (way) => (way === 'first' ? 1 : 1.6));
    // the slower way ran: its warm-up and two exploration windows, and rechecks at windows 32, 96 and 224
    // (intervals 32, 64, 128: each recheck that confirms the answer doubles the next interval)
    expect(count(ways, 'second')).toBe(3 * 8 + 3 * 8);
    const at = (k: number) => 8 * k; // first call of window k
    for (const k of [32, 96, 224]) expect(count(ways, 'second', at(k), at(k + 1)), `window ${k}`).toBe(8);
  });

  it('takes the second way only when it is faster by more than the margin', () => {
    const within = simulate(0.05, 8, 48 + 64, (way) => (way === 'first' ? 1 : 0.97));
    expect(count(within, 'second', 48)).toBe(0);
    const beyond = simulate(0.05, 8, 48 + 64, (way) => (way === 'first' ? 1 : 0.9));
    expect(count(beyond, 'second', 48)).toBe(64);
    // with no margin (the pool's per-shape policy, windows of one call), whichever is faster
    const noMargin = simulate(0, 1, 6 + 20, (way) => (way === 'first' ? 1 : 0.99));
    expect(count(noMargin, 'second', 6)).toBe(20);
  });

  it('does not count a warm-up: slow first calls of either way do not decide', () => {
    // each way's first window is 100× its usual cost (code compiled on first use and not yet optimized, a
    // worker woken from sleep)
    const ways = simulate(0.05, 8, 48 + 40, (way, call) => (call < 16 ? 100 : way === 'first' ? 1.5 : 1));
    expect(count(ways, 'second', 48)).toBe(40);
  });

  it('switches when rechecks find the other way faster now (the estimates are smoothed: not on one sample)', () => {
    // the second way is slower until call 300, then faster; rechecks at windows 32, 96, 224, 480, … each move its
    // smoothed estimate a quarter of the way (1.6 → 1.325 → 1.119 → 0.964 → 0.848 < 0.95): the fourth flips it
    const windows = 1100;
    const calls = windows * 8;
    const ways = simulate(0.05, 8, calls, (way, call) => (way === 'first' ? 1 : call < 300 ? 1.6 : 0.5));
    const at = (k: number) => 8 * k;
    expect(count(ways, 'second', at(40), at(96))).toBe(0);
    expect(count(ways, 'second', at(97), at(224))).toBe(0);
    expect(count(ways, 'second', at(481), at(992))).toBe(0);
    // the fourth recheck after the change (window 992) flips it: the second way from then on, and the first is
    // now the one rechecked (window 1024: the interval back to 32, then 64: window 1088)
    expect(count(ways, 'second', at(992), at(1024))).toBe(at(1024) - at(992));
    expect(count(ways, 'first', at(1024), at(1025))).toBe(8);
    expect(count(ways, 'second', at(1025), at(1088))).toBe(at(1088) - at(1025));
    expect(count(ways, 'first', at(1088), at(1089))).toBe(8);
  });
});
