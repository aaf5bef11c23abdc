/**
 * TEST-ONLY crash points for the kill -9 test (apps/cli/test/kill-resume.test.ts, issue 18). When the
 * environment variable ULTRASKETCH_TEST_KILL is set, the process sends itself SIGKILL — no cleanup, no
 * handler runs, exactly like `kill -9` — at a chosen moment that an outside kill could only hit by luck:
 *
 * - `step:N`        right after training step N (before that step's checkpoint, if any);
 * - `checkpoint:N`  in the middle of writing the checkpoint of step N (its temporary file half written);
 * - `bundle`        in the middle of writing the output bundle (its temporary file half written).
 *
 * Unset (always, outside that test) it does nothing. An unparseable value is an error rather than a silently
 * ignored crash point, so a test cannot pass by not crashing.
 */
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';

export const TEST_KILL_VARIABLE = 'ULTRASKETCH_TEST_KILL';

export type TestKillPoint = { at: 'step'; step: number } | { at: 'checkpoint'; step: number } | { at: 'bundle' };

/** The crash point the environment asks for, or null (the normal case). */
export function testKillPoint(env: Record<string, string | undefined> = process.env): TestKillPoint | null {
  const v = env[TEST_KILL_VARIABLE];
  if (v === undefined || v === '') return null;
  if (v === 'bundle') return { at: 'bundle' };
  const m = /^(step|checkpoint):([1-9]\d*)$/.exec(v);
  if (!m) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `${TEST_KILL_VARIABLE}=${v} is not step:N, checkpoint:N or bundle`, {
      source: TEST_KILL_VARIABLE,
      hint: 'unset it: it exists only for the kill -9 test',
    });
  }
  return { at: m[1] as 'step' | 'checkpoint', step: Number(m[2]) };
}

/** SIGKILL this process now. */
export function killSelf(): never {
  process.kill(process.pid, 'SIGKILL');
  // Not reached on POSIX (a signal sent to oneself is delivered before kill() returns); never carry on as if alive.
  throw new Error('SIGKILL did not stop the process');
}

/** Write options that kill the process once part (not all) of the file is written: chunks of `total`/4. */
export function killMidWrite(total: number): { chunkBytes: number; onChunk(written: number, total: number): void } {
  return {
    chunkBytes: Math.max(1, Math.ceil(total / 4)),
    onChunk(written, all) {
      if (written < all) killSelf();
    },
  };
}
