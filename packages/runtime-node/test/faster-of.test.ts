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

  it('switches when rechecks find the other way faster now (the ratio is smoothed: not on one sample)', () => {
    // the second way is slower until call 300 (window 37), then faster. The recheck at window 32 still confirms
    // (interval → 64); at 96 both of the recheck's pairs find the second way at half the first's time, which moves
    // the smoothed log ratio from ln 1.6 to about −0.04 (not yet past ln 0.95) and keeps the next recheck 32
    // windows on; its first pair (127, 128) takes the ratio past: the second way from window 128 on.
    const windows = 700;
    const ways = simulate(0.05, 8, windows * 8, (way, call) => (way === 'first' ? 1 : call < 300 ? 1.6 : 0.5));
    const at = (k: number) => 8 * k;
    expect(count(ways, 'second', at(6), at(128)) / 8).toBe(2); // the rechecks at 32 and 96
    for (const k of [32, 96]) expect(count(ways, 'second', at(k), at(k + 1)), `recheck at window ${k}`).toBe(8);
    // from window 128 the second way, the first now rechecked: at 160, then backing off as each confirms (224, 352, 608)
    for (const k of [160, 224, 352, 608]) expect(count(ways, 'first', at(k), at(k + 1)), `recheck at window ${k}`).toBe(8);
    expect(count(ways, 'first', at(128), at(windows))).toBe(4 * 8);
  });

  it('one slow early sample of the faster way costs a few rechecks, not thousands of windows', () => {
    // the second way is always 2× faster, but its first counted window (window 3) was 10× slow (a worker
    // descheduled): the exploration's three pairs leave the ratio at ln 10 → ln 10 → 1.55, the first way is chosen
    const ways = simulate(0.05, 8, 400 * 8, (way, call) => (way === 'first' ? 1 : call >= 24 && call < 32 ? 10 : 0.5));
    const flip = Array.from({ length: 400 }, (_, k) => ways[8 * k]).findIndex((w, k) => k > 6 && w === 'second' && ways[8 * k + 8] === 'second');
    // each recheck's two pairs (ln 0.5 each) bring it down: past ln 0.95 after the third, at window 66 (comparing
    // each way's own smoothed time and doubling the interval while those had not crossed, it took until window 6,112)
    expect(flip).toBe(66);
    expect(count(ways, 'first', 8 * 67)).toBe(2 * 8); // rechecks of the first way at 128 and 256, backing off
  });

  it('a machine whose speed drifts (both ways alike) does not flip the choice', () => {
    // spells of 37 windows at 1× and 2.5× the time, the second way always 20% slower than the first: every pair of
    // adjacent windows sees that, whatever spell it falls in (a pair straddling a boundary is the only outlier)
    const spell = (call: number) => (Math.floor(call / 8 / 37) % 2 === 0 ? 1 : 2.5);
    const ways = simulate(0.05, 8, 3000 * 8, (way, call) => spell(call) * (way === 'first' ? 1 : 1.2));
    const secondWindows = count(ways, 'second', 48) / 8;
    expect(secondWindows).toBeLessThan(16); // rechecks only: 32, 96, 224, … of 2,994 windows
    expect(count(ways, 'first', ways.length - 8 * 400)).toBeGreaterThan(8 * 399 - 8 * 2);
  });
});
