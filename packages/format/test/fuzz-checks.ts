import { UltraSketchError } from '@ultrasketch/core';
import { expect } from 'vitest';
// The fuzzing engine and the reader table are plain ESM shared with bench/fuzz.mjs (which runs them 10^5 times).
import { checkPlan, fc } from '../../../bench/fuzz/lib.mjs';
import { ALLOCATION_SLACK_BYTES } from '../../../bench/fuzz/readers.mjs';

/**
 * The two checks every fuzz test file runs on one reader of the table (this package's fuzz-readers.test.ts,
 * pipeline's fuzz-bundle.test.ts and fuzz-hf.test.ts): the unmutated seeds read, and fast-check's mutations of
 * them read or fail typed.
 */
export const isTyped = (e: unknown) => e instanceof UltraSketchError;

/** Every seed, unmutated (plan options `opts`), reads with no problem and ends in a value. */
export function expectSeedsRead(reader: any, seeds: any[], opts: Record<string, unknown> = {}): void {
  for (let i = 0; i < seeds.length; i++) {
    const { outcome, problems } = checkPlan(reader, seeds, { seed: i, struct: [], bytes: [], opts }, { isTyped, slack: ALLOCATION_SLACK_BYTES });
    expect(problems).toEqual([]);
    expect(outcome.kind, `${seeds[i].label}: ${outcome.message}`).toBe('ok');
  }
}

/**
 * `numRuns` mutated cases at the FIXED `seed`: each must end in a value or an UltraSketchError, within the
 * allocation bound, the same way twice (any problem fails the property, and fast-check shrinks it). Returns how
 * many cases ended each way ('ok', 'crash', or the typed error's code), for the caller's reach checks.
 */
export function outcomeKinds(reader: any, seeds: any[], seed: number, numRuns: number): Map<string, number> {
  const kinds = new Map<string, number>();
  fc.assert(
    fc.property(reader.arbitrary(seeds), (plan: unknown) => {
      const { outcome, problems } = checkPlan(reader, seeds, plan, { isTyped, slack: ALLOCATION_SLACK_BYTES });
      if (problems.length) throw new Error(problems.join('\n'));
      const kind = outcome.kind === 'typed' ? outcome.code : outcome.kind;
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }),
    { seed, numRuns },
  );
  return kinds;
}
