/**
 * Leftovers of killed runs. Every atomic write of the tool — a bundle, a sweep's files, a teacher corpus and a
 * training checkpoint alike — is the one `writeFileAtomic` of @ultrasketch/node-files, which names its
 * temporary file with `temporaryPathFor` (ste-trainer/node re-exports it as `temporaryCheckpointPath`): it goes
 * to `${path}.tmp-<pid>-<12 hex digits>` in the same directory first and is renamed over `path` when complete.
 * A process killed (kill -9, power loss) before the rename leaves that file behind; nothing else ever removes it.
 * `removeStaleTemporaries(path)` removes exactly those files for one output name whose writer process is gone,
 * so a run started (or resumed) with the same output cleans up after the one that died, and never touches a
 * concurrent run's file in progress or anything it did not write.
 */
import { type Dirent, readdirSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fromSystemError } from '@ultrasketch/core';

/** `${name}.tmp-<pid>-<12 hex>`: the pid of the writer, or null when `file` is not a temporary of `name`. */
export function temporaryWriterPid(file: string, name: string): number | null {
  if (!file.startsWith(`${name}.tmp-`)) return null;
  const m = /^(\d{1,10})-[0-9a-f]{12}$/.exec(file.slice(name.length + 5));
  if (!m) return null;
  const pid = Number(m[1]);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}

/**
 * Whether process `pid` exists. `kill(pid, 0)` sends nothing, it only checks: ESRCH means no such process,
 * EPERM means it exists but belongs to another user (so it may be writing: leave its file alone).
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException)?.code === 'EPERM';
  }
}

/**
 * Remove the temporary files that writes of `path` left behind in killed processes: names
 * `${basename(path)}.tmp-<pid>-<12 hex>` (regular files) in `dirname(path)` whose pid is not a live process. This process's
 * own pid counts as dead: every write here is synchronous, so while this runs no write of ours is in flight,
 * and a file with our pid is from an earlier process that had the same pid. Returns the paths removed (none
 * when the directory does not exist). Other files — other names, other patterns, live writers — are kept.
 */
export function removeStaleTemporaries(path: string, isAlive: (pid: number) => boolean = processAlive): string[] {
  const dir = dirname(path);
  const name = basename(path);
  let entries: Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw fromSystemError(err, dir, 'list');
  }
  const removed: string[] = [];
  for (const entry of entries) {
    // Our writers only ever create regular files: anything else with such a name is not ours.
    if (!entry.isFile()) continue;
    const file = entry.name;
    const pid = temporaryWriterPid(file, name);
    if (pid === null || (pid !== process.pid && isAlive(pid))) continue;
    const p = join(dir, file);
    try {
      rmSync(p, { force: true });
    } catch (err) {
      throw fromSystemError(err, p, 'remove');
    }
    removed.push(p);
  }
  return removed;
}
