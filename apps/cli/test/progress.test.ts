import { describe, expect, it } from 'vitest';
import { Progress, formatDuration } from '../src/progress.js';

/** A fake stderr that records writes, and a clock the test moves by hand. */
function setup(tty: boolean, extra: Partial<ConstructorParameters<typeof Progress>[0]> = {}) {
  const writes: string[] = [];
  let now = 0;
  const stream = { write: (s: string) => (writes.push(s), true), isTTY: tty, columns: 100 };
  const p = new Progress({ label: 'eval', total: 1000, unit: 'tok', stream, now: () => now, ...extra });
  return { p, writes, advance: (ms: number) => (now += ms) };
}

describe('Progress', () => {
  it('log mode: nothing for a run shorter than ~2 s', () => {
    const { p, writes, advance } = setup(false);
    for (let i = 1; i <= 10; i++) {
      advance(150);
      p.update(i * 100);
    }
    p.finish();
    expect(writes).toEqual([]);
  });

  it('log mode: plain lines at most every ~2 s, with rate, ETA and elapsed, and a last line', () => {
    const { p, writes, advance } = setup(false);
    for (let i = 1; i <= 10; i++) {
      advance(500);
      p.update(i * 100, `window ${i}/10`);
    }
    p.finish();
    // updates at 0.5 s .. 5 s: drawn at 2.0 s and 4.0 s, then the final state at finish.
    expect(writes).toHaveLength(3);
    expect(writes.every((w) => w.endsWith('\n') && !w.includes('\r'))).toBe(true);
    expect(writes[0]).toBe('eval: window 4/10, 400/1,000 tok, 200 tok/s, ETA 0:03, elapsed 0:02\n');
    expect(writes[2]).toContain('1,000/1,000 tok');
    expect(writes[2]).toContain('ETA 0:00');
  });

  it('slow units read as seconds per unit, not "0 steps/s"', () => {
    const { p, writes, advance } = setup(false, { label: 'finetune', total: 10, unit: 'steps' });
    for (let i = 1; i <= 2; i++) {
      advance(8000);
      p.update(i, 'loss 3.2');
    }
    expect(writes[0]).toBe('finetune: loss 3.2, 1/10 steps, 8.0 s/step, ETA 1:12, elapsed 0:08\n');
  });

  it('fromFirstUpdate: a resumed run is timed from its first step here, not from the steps another process trained', () => {
    // A checkpoint at step 6,000 of 20,000; setup takes 3 minutes (the bit plan), then a step every 0.25 s.
    const { p, writes, advance } = setup(false, { label: 'finetune', total: 20_000, unit: 'steps', fromFirstUpdate: true });
    advance(180_000);
    for (let step = 6_001; step <= 6_041; step++) {
      p.update(step);
      advance(250);
    }
    // Counted from construction this would read 6,040 steps in 3:10 (32 steps/s, ETA 7:19); the steps trained here
    // are 40 in 10 s: 4 steps/s, 13,959 left → ETA 58:10.
    expect(writes.at(-1)).toBe('finetune: 6,041/20,000 steps, 4 steps/s, ETA 58:10, elapsed 0:10\n');
  });

  it('log mode: no duplicate last line when the final state was already printed', () => {
    const { p, writes, advance } = setup(false);
    advance(2500);
    p.update(1000);
    p.finish();
    expect(writes).toHaveLength(1);
  });

  it('terminal mode: redraws one line in place with a bar, then ends it with a newline', () => {
    const { p, writes, advance } = setup(true);
    for (let i = 1; i <= 10; i++) {
      advance(200);
      p.update(i * 100);
    }
    p.finish();
    expect(writes.length).toBeGreaterThan(3);
    const draws = writes.slice(0, -1);
    expect(draws.every((w) => w.startsWith('\r') && w.endsWith('\x1b[K') && !w.includes('\n'))).toBe(true);
    expect(draws.at(-1)).toContain('100%');
    expect(draws.at(-1)).toMatch(/eval \[█+\]/);
    expect(draws.at(-1)).toContain('tok/s');
    expect(draws.at(-1)).toContain('ETA');
    expect(draws.at(-1)).toContain('elapsed');
    expect(writes.at(-1)).toBe('\n');
  });

  it('quiet: never writes', () => {
    const { p, writes, advance } = setup(true, { quiet: true });
    advance(5000);
    p.update(500);
    p.finish();
    expect(writes).toEqual([]);
  });

  it('clear() removes a terminal line before an error is printed', () => {
    const { p, writes, advance } = setup(true);
    advance(1000);
    p.update(100);
    p.clear();
    expect(writes.at(-1)).toBe('\r\x1b[K');
    p.finish();
    expect(writes.at(-1)).toBe('\r\x1b[K');
  });

  it('formats durations', () => {
    expect(formatDuration(7)).toBe('0:07');
    expect(formatDuration(754)).toBe('12:34');
    expect(formatDuration(3723)).toBe('1:02:03');
    expect(formatDuration(Infinity)).toBe('?');
  });
});
