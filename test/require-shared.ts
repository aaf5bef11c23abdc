/**
 * The one rule for suites that read `../shared` (real models, text, llama2.c references): when it is absent
 * the suite says so LOUDLY and skips, for an outside user with only this repository; under CI (`CI` set) it
 * FAILS instead, because CI always provides `../shared` and a silent skip there would hide every real check.
 */
import { existsSync } from 'node:fs';

/** True when every path exists; otherwise warns (or throws under CI) naming the suite and the missing paths. */
export function requireShared(suite: string, paths: readonly string[]): boolean {
  const missing = paths.filter((p) => !existsSync(p));
  if (missing.length === 0) return true;
  const message = `${suite}: ../shared is incomplete here (missing ${missing.join(', ')})`;
  if (process.env.CI) throw new Error(`${message}; CI must have ../shared next to the repository`);
  console.warn(`\n*** SKIPPING ${message} ***\n`);
  return false;
}
