import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readSafetensors } from '@ultrasketch/format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * A run killed (SIGKILL) or interrupted (SIGINT) and started again ends with exactly the state of an
 * uninterrupted run. The child processes use the BUILT package (built here when stale).
 */
const PKG = fileURLToPath(new URL('..', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/train-child.mjs', import.meta.url));
let dir = '';

beforeAll(() => {
  const newest = Math.max(...readdirSync(`${PKG}src`).map((f) => statSync(`${PKG}src/${f}`).mtimeMs));
  if (!existsSync(`${PKG}dist/node.js`) || statSync(`${PKG}dist/node.js`).mtimeMs < newest) {
    execFileSync('npx', ['tsup'], { cwd: PKG, stdio: 'ignore' });
  }
  dir = mkdtempSync(join(tmpdir(), 'ste-resume-'));
}, 300_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function runChild(path: string, every: number, sleepMs: number, threads: number, stopAt?: { step: number; signal: NodeJS.Signals }) {
  return new Promise<{ out: string; code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, [CHILD, path, String(every), String(sleepMs), String(threads)], { cwd: PKG });
    let out = '';
    let sent = false;
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      // stopAt.step 0: at the first step this process completes
      if (stopAt && !sent && (stopAt.step === 0 ? /step \d+\n/.test(out) : out.includes(`step ${stopAt.step}\n`))) {
        sent = true;
        child.kill(stopAt.signal);
      }
    });
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ out, code, signal }));
  });
}

/** The tensors of a checkpoint (parameters, moments, buffers) and its step. */
function content(path: string) {
  const f = readSafetensors(readFileSync(path));
  return { step: f.metadata.step, tensors: [...f.tensors].map(([k, t]) => [k, Buffer.from(t.data).toString('base64')]) };
}

describe('kill and resume', () => {
  for (const threads of [1, 2]) {
    it(`${threads} thread(s): SIGKILL mid-run, then SIGINT, then run to the end — same final state as straight through`, async () => {
      const straight = join(dir, `straight-${threads}.ckpt`);
      const r0 = await runChild(straight, 4, 0, threads);
      expect(r0.out).toContain('done false null');

      const killed = join(dir, `killed-${threads}.ckpt`);
      const r1 = await runChild(killed, 4, 40, threads, { step: 6, signal: 'SIGKILL' });
      expect(r1.signal).toBe('SIGKILL');
      expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
      // the last periodic checkpoint (step 4, or 8 if the kill arrived late) survived intact
      const killedAt = Number(readSafetensors(readFileSync(killed)).metadata.step);
      expect([4, 8]).toContain(killedAt);

      const r2 = await runChild(killed, 4, 40, threads, { step: 0, signal: 'SIGINT' });
      expect(r2.out).toContain(`done true ${killedAt}`); // saved on SIGINT, then exited cleanly
      expect(r2.code).toBe(0);
      const stoppedAt = Number(readSafetensors(readFileSync(killed)).metadata.step);
      expect(stoppedAt).toBeGreaterThan(killedAt);
      expect(stoppedAt).toBeLessThan(12);

      const r3 = await runChild(killed, 4, 0, threads);
      expect(r3.out).toContain(`done false ${stoppedAt}`);
      expect(content(killed)).toEqual(content(straight));
    }, 120_000);
  }
});
