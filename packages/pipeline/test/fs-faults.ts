/**
 * Real file-system faults for tests (shared by the pipeline and CLI tests): a full disk and a read-only file
 * system as small tmpfs mounts (needs root with mount rights, as in CI's container), and a file this process
 * cannot read (chmod 000 as a normal user; as root, whom chmod does not stop, a /proc/sys file that even root
 * may only write). Each returns undefined when the fault cannot be made here; the caller then skips that case
 * loudly, never silently.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const IS_ROOT = process.getuid?.() === 0;

/** Print why a fault case does not run here, so a skip is never silent. */
export function loudSkip(what: string, why: string): void {
  console.warn(`\n*** SKIPPING ${what}: ${why} ***\n`);
}

/** Mount a tmpfs with `options` (e.g. "size=64k" or "ro") at a new directory `dir`; undefined when not allowed. */
export function mountTmpfs(dir: string, options: string): { dir: string; unmount(): void } | undefined {
  if (!IS_ROOT) return undefined;
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'pipe' });
  } catch {
    return undefined;
  }
  return {
    dir,
    unmount: () => {
      try {
        execFileSync('umount', [dir], { stdio: 'pipe' });
      } catch {
        // already unmounted
      }
    },
  };
}

/**
 * A regular file whose open for reading fails with EACCES for this process: `dir`/unreadable.bin with mode
 * 000 for a normal user; for root, /proc/sys/vm/compact_memory (mode 0200: procfs gives root the owner's bits,
 * so root may write it but not read it). Undefined when neither works here.
 */
export function unreadableFile(dir: string): string | undefined {
  const candidate = IS_ROOT ? '/proc/sys/vm/compact_memory' : join(dir, 'unreadable.bin');
  if (!IS_ROOT) {
    writeFileSync(candidate, 'secret');
    chmodSync(candidate, 0o000);
  }
  if (!existsSync(candidate)) return undefined;
  try {
    closeSync(openSync(candidate, 'r'));
    return undefined; // readable after all: no permission fault to test with
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EACCES' ? candidate : undefined;
  }
}
