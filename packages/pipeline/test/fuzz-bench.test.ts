import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { requireShared } from '../../../test/require-shared.js';

/**
 * bench/fuzz.mjs itself (it runs the BUILT packages, like the other bench scripts; `pnpm test` builds first):
 * - its watchdog, crash and allocation accounting, checked on its synthetic self-test readers, whose hangs,
 *   crashes and over-allocations are known exactly;
 * - a run is a function of its seed: the same cases give the same counts, and a range split in two with
 *   --start gives the same totals as one run (so an interrupted run can be finished and still agree).
 */

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const FUZZ = join(ROOT, 'bench/fuzz.mjs');
const BUILT = ['core', 'format', 'model', 'pipeline'].every((p) => existsSync(join(ROOT, 'packages', p, 'dist/index.js')));
if (!BUILT) {
  if (process.env.CI) throw new Error('bench/fuzz.mjs tests: the packages are not built (run pnpm build)');
  console.warn('\n*** SKIPPING bench/fuzz.mjs tests: the packages are not built (run pnpm build) ***\n');
}
const HAVE_SHARED = requireShared('bench/fuzz.mjs tests', [fileURLToPath(new URL('../../../../shared/models/stories260K/tok512.bin', import.meta.url))]);

const dir = mkdtempSync(join(tmpdir(), 'fuzz-bench-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fuzz(name: string, args: string[]): { status: number | null; report: any; stderr: string } {
  const json = join(dir, `${name}.json`);
  const r = spawnSync(process.execPath, [FUZZ, ...args, '--json', json, '--out', join(dir, name)], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, report: existsSync(json) ? JSON.parse(readFileSync(json, 'utf8')) : null, stderr: r.stderr };
}

/** The counts of a reader's run, without what depends on the machine (times). */
function counts(stats: any) {
  const { maxMs: _ms, maxExternalRatio: _e, allocCases, ...rest } = stats;
  return { ...rest, allocCases: allocCases.map((a: any) => a.index) };
}

describe.runIf(BUILT)('bench/fuzz.mjs', () => {
  it('reports the self-test readers exactly: hangs (watchdog), crashes with a saved reproducer, allocation violations; exit 1', () => {
    const { status, report, stderr } = fuzz('self', ['--self-test', '--cases', '11', '--hang-ms', '700']);
    expect(status, stderr).toBe(1);
    const hang = report.readers['selftest-hang'].stats;
    // cases 3 and 10 block forever: each is ended by the watchdog, re-run alone, and counted once
    expect(hang.hangCases.map((h: any) => h.index)).toEqual([3, 10]);
    expect([hang.hangs, hang.ok, hang.cases]).toEqual([2, 9, 11]);
    const faults = report.readers['selftest-faults'].stats;
    // crashes on cases 1 and 6; cases 2 and 7 read but keep 64 MiB too much (still counted as reads)
    expect([faults.crashes, faults.alloc, faults.ok]).toEqual([2, 2, 9]);
    expect(faults.allocCases.map((a: any) => a.index)).toEqual([2, 7]);
    expect(Object.values(faults.crashKeys).map((c: any) => c.first)).toEqual([1]);
    const saved = JSON.parse(readFileSync(report.readers['selftest-faults'].reproducers[0], 'utf8'));
    expect([saved.reader, saved.index, saved.error.name]).toEqual(['selftest-faults', 1, 'TypeError']);
  });
});

describe.runIf(BUILT && HAVE_SHARED)('bench/fuzz.mjs on a real reader', () => {
  it('gives the same counts for the same seed, and for the same range split in two with --start', () => {
    const whole = fuzz('whole', ['--readers', 'tokenizer', '--cases', '40', '--seed', '7']);
    expect(whole.status, whole.stderr).toBe(0);
    const a = fuzz('first', ['--readers', 'tokenizer', '--cases', '25', '--seed', '7']);
    const b = fuzz('second', ['--readers', 'tokenizer', '--start', '25', '--cases', '15', '--seed', '7']);
    const w = counts(whole.report.readers.tokenizer.stats);
    const x = counts(a.report.readers.tokenizer.stats);
    const y = counts(b.report.readers.tokenizer.stats);
    expect(w.cases).toBe(40);
    expect(x.cases + y.cases).toBe(40);
    expect(x.ok + y.ok).toBe(w.ok);
    const typed: Record<string, number> = { ...x.typed };
    for (const [code, n] of Object.entries(y.typed as Record<string, number>)) typed[code] = (typed[code] ?? 0) + n;
    expect(typed).toEqual(w.typed);
    // and a second run of the same range is identical
    const again = fuzz('again', ['--readers', 'tokenizer', '--cases', '25', '--seed', '7']);
    expect(counts(again.report.readers.tokenizer.stats)).toEqual(x);
    expect(readdirSync(join(dir, 'whole'))).toEqual([]); // no crash, no reproducer
  });
});
