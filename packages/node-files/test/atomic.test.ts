import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileAtomic } from '../src/index.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'usk-atomic-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function pattern(bytes: number, salt: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) out[i] = (i * 31 + salt) & 0xff;
  return out;
}

describe('writeFileAtomic', () => {
  it('writes every byte, leaves no temporary file, replaces an existing file', () => {
    const path = join(dir, 'a.usk');
    writeFileAtomic(path, pattern(100_000, 1), { chunkBytes: 4096 });
    expect(new Uint8Array(readFileSync(path))).toEqual(pattern(100_000, 1));
    writeFileAtomic(path, pattern(5000, 2));
    expect(new Uint8Array(readFileSync(path))).toEqual(pattern(5000, 2));
    writeFileAtomic(join(dir, 'empty.usk'), new Uint8Array(0));
    expect(statSync(join(dir, 'empty.usk')).size).toBe(0);
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('an error mid-write removes the temporary file and leaves the old file untouched', () => {
    const path = join(dir, 'b.usk');
    writeFileAtomic(path, pattern(1000, 3));
    expect(() =>
      writeFileAtomic(path, pattern(100_000, 4), {
        chunkBytes: 1000,
        onChunk: (written) => {
          if (written >= 50_000) throw new Error('disk on fire');
        },
      }),
    ).toThrow('disk on fire');
    expect(new Uint8Array(readFileSync(path))).toEqual(pattern(1000, 3));
    expect(readdirSync(dir).filter((f) => f.startsWith('b.usk.tmp-'))).toEqual([]);
  });

  it('typed errors: missing directory, output is a directory, unwritable directory (E_PERMISSION_DENIED)', () => {
    const expectCode = (fn: () => void, code: string, source: string) => {
      try {
        fn();
      } catch (err) {
        expect(err).toBeInstanceOf(UltraSketchError);
        expect((err as UltraSketchError).code).toBe(code);
        expect((err as UltraSketchError).message).toContain(source);
        return;
      }
      throw new Error('expected a throw');
    };
    expectCode(() => writeFileAtomic(join(dir, 'nope', 'x.usk'), new Uint8Array(1)), ErrorCodes.FILE_NOT_FOUND, join(dir, 'nope', 'x.usk'));
    expectCode(() => writeFileAtomic(dir, new Uint8Array(1)), ErrorCodes.BAD_ARGUMENT, dir);
    // A directory where files cannot be created: chmod 500 (as non-root), or /proc (refuses even root).
    let ro = '/proc';
    if (process.getuid?.() !== 0) {
      ro = join(dir, 'ro');
      mkdirSync(ro);
      chmodSync(ro, 0o500);
    }
    try {
      if (existsSync(ro)) expectCode(() => writeFileAtomic(join(ro, 'x.usk'), new Uint8Array(1)), ErrorCodes.PERMISSION_DENIED, join(ro, 'x.usk'));
    } finally {
      if (ro !== '/proc') chmodSync(ro, 0o700);
    }
  });
});

/**
 * A process killed (SIGKILL: no cleanup of any kind) in the middle of writing must leave no file under the
 * final name. The child runs the real writeFileAtomic, compiled from source with esbuild (tsup's), slowed
 * down by its onChunk hook; the parent kills it once the temporary file has grown past a few chunks.
 */
describe('writeFileAtomic in a process killed mid-write', () => {
  let script: string;

  beforeAll(async () => {
    const requireFromTsup = createRequire(createRequire(join(root, 'package.json')).resolve('tsup/package.json'));
    // esbuild is tsup's dependency (not ours): typed loosely here on purpose.
    const esbuild = requireFromTsup('esbuild') as { build(options: Record<string, unknown>): Promise<unknown> };
    const bundle = join(dir, 'atomic.mjs');
    await esbuild.build({
      entryPoints: [join(root, 'packages/node-files/src/atomic.ts')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile: bundle,
      alias: { '@ultrasketch/core': join(root, 'packages/core/src/index.ts') },
      logLevel: 'silent',
    });
    script = join(dir, 'child.mjs');
    writeFileSync(
      script,
      `import { writeFileAtomic } from ${JSON.stringify(bundle)};
const [out, size] = [process.argv[2], Number(process.argv[3])];
const bytes = new Uint8Array(size).fill(0xab);
const sleeper = new Int32Array(new SharedArrayBuffer(4));
writeFileAtomic(out, bytes, { chunkBytes: 64 * 1024, onChunk: () => Atomics.wait(sleeper, 0, 0, 25) });
console.log('finished');
`,
    );
  });

  async function killMidWrite(out: string): Promise<string[]> {
    const child: ChildProcess = spawn(process.execPath, [script, out, String(16 * 1024 * 1024)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    );
    const base = out.slice(out.lastIndexOf('/') + 1);
    // Wait until the temporary file holds a few chunks (the write is well under way), then SIGKILL.
    const deadline = Date.now() + 30_000;
    let partial: string | undefined;
    while (Date.now() < deadline) {
      partial = readdirSync(dir).find((f) => f.startsWith(`${base}.tmp-`) && statSync(join(dir, f)).size >= 4 * 64 * 1024);
      if (partial) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(partial, `the child never started writing (stderr: ${stderr})`).toBeDefined();
    expect(statSync(join(dir, partial!)).size).toBeLessThan(16 * 1024 * 1024);
    child.kill('SIGKILL');
    const { signal } = await exited;
    expect(signal).toBe('SIGKILL');
    expect(stdout).not.toContain('finished');
    return readdirSync(dir).filter((f) => f.startsWith(base));
  }

  it('leaves no OUT.usk (only a temporary file, never under the final name)', async () => {
    const out = join(dir, 'OUT.usk');
    const left = await killMidWrite(out);
    expect(existsSync(out)).toBe(false);
    expect(left.length).toBeGreaterThan(0);
    for (const f of left) expect(f).toMatch(/^OUT\.usk\.tmp-\d+-[0-9a-f]+$/);
  });

  it('leaves an existing OUT.usk exactly as it was', async () => {
    const out = join(dir, 'OLD.usk');
    writeFileSync(out, pattern(777, 9));
    await killMidWrite(out);
    expect(new Uint8Array(readFileSync(out))).toEqual(pattern(777, 9));
  });

  it('the same child, not killed, writes the whole file', async () => {
    const out = join(dir, 'DONE.usk');
    const child = spawn(process.execPath, [script, out, String(256 * 1024)], { stdio: 'pipe' });
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    expect(statSync(out).size).toBe(256 * 1024);
  });
});
