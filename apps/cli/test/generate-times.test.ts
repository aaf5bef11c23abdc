import { beforeAll, describe, expect, it } from 'vitest';
import { generationTimes } from '../src/commands/generate.js';
import { HAVE_SHARED, MODELS, cli, ensureBuilt, parseOneObject } from './helpers.js';

/**
 * `generate` reports the first position apart from the steady state (issue 12: the whole-run tokens/s
 * includes one-time costs). The arithmetic is checked on fixed timestamps; the CLI's JSON and stats line are
 * checked for consistency with each other, never against a speed.
 */
describe('generationTimes', () => {
  it('splits the run at the first position', () => {
    // loop starts at 1000 ms, first token at 1300 ms, 11 positions end at 1800 ms
    const t = generationTimes(1000, 1300, 1800, 11);
    expect(t.seconds).toBeCloseTo(0.8, 12);
    expect(t.tokensPerSecond).toBeCloseTo(11 / 0.8, 9);
    expect(t.timeToFirstTokenSeconds).toBeCloseTo(0.3, 12);
    expect(t.steadyTokensPerSecond).toBeCloseTo(10 / 0.5, 9);
  });

  it('one position has no steady state', () => {
    const t = generationTimes(0, 40, 40, 1);
    expect(t.timeToFirstTokenSeconds).toBeCloseTo(0.04, 12);
    expect(t.steadyTokensPerSecond).toBeNull();
  });
});

describe.skipIf(!HAVE_SHARED)('ultrasketch generate: first token and steady state', () => {
  beforeAll(() => ensureBuilt());

  it('--json: the two parts add up to the whole run; the stats line names both', () => {
    const r = cli(['generate', MODELS.stories260K, '--temperature', '0', '--steps', '40', '--json']);
    expect(r.code).toBe(0);
    const out = parseOneObject(r.stdout) as {
      tokens: number[];
      seconds: number;
      tokensPerSecond: number;
      timeToFirstTokenSeconds: number;
      steadyTokensPerSecond: number;
    };
    expect(out.tokens.length).toBe(40);
    expect(out.timeToFirstTokenSeconds).toBeGreaterThanOrEqual(0);
    expect(out.timeToFirstTokenSeconds).toBeLessThanOrEqual(out.seconds);
    expect(Number.isFinite(out.steadyTokensPerSecond) && out.steadyTokensPerSecond > 0).toBe(true);
    const steadySeconds = (out.tokens.length - 1) / out.steadyTokensPerSecond;
    expect(out.timeToFirstTokenSeconds + steadySeconds).toBeCloseTo(out.seconds, 6);
    expect(r.stderr).toMatch(/generate: 40 positions .* tokens\/s; first token [\d.]+ ms, steady state [\d.]+ tokens\/s/);
  });

  it('--steps 1: the steady state is null in the JSON and n/a on stderr', () => {
    const r = cli(['generate', MODELS.stories260K, '--temperature', '0', '--steps', '1', '--json']);
    expect(r.code).toBe(0);
    expect(parseOneObject(r.stdout).steadyTokensPerSecond).toBeNull();
    expect(r.stderr).toContain('steady state n/a (one position)');
  });
});
