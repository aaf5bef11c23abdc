/**
 * Helpers for tests that spawn the BUILT command (`node apps/cli/dist/cli.js`), the way a user runs it.
 *
 * `ensureBuilt()` builds the CLI and the packages it depends on when dist/ is missing or older than the
 * sources (`pnpm test` builds first, so there it does nothing); a failed build fails the suite with the
 * build's output.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
export const CLI = join(ROOT, 'apps/cli/dist/cli.js');
export const SHARED = resolve(ROOT, '../shared');
export const MODELS = {
  stories260K: join(SHARED, 'models/stories260K/stories260K.bin'),
  stories3M: join(SHARED, 'models/stories3M/stories3M-q80.bin'),
};
export const TOKENIZERS = {
  stories260K: join(SHARED, 'models/stories260K/tok512.bin'),
  stories3M: join(SHARED, 'models/stories3M/tok4096.bin'),
};
export const EVAL_TEXT = join(SHARED, 'data/tinystories/eval.txt');
export const CALIB_TEXT = join(SHARED, 'data/tinystories/calib.txt');
export const REFERENCE = (model: keyof typeof MODELS, file: string) => join(SHARED, 'reference', model, file);

/** `../shared` holds the real models; CI always has it. */
export const HAVE_SHARED = existsSync(MODELS.stories260K) && existsSync(MODELS.stories3M);
if (!HAVE_SHARED) {
  const message = `../shared (the real models and references) is not at ${SHARED}`;
  if (process.env.CI) throw new Error(`${message}: CI must have it`);
  console.warn(`\n*** SKIPPING the CLI tests that need real models: ${message} ***\n`);
}

/** Newest modification time (ms) of any file under `dir`, recursively. */
function newestMtime(dir: string): number {
  let newest = 0;
  if (!existsSync(dir)) return newest;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

function isStale(pkgDir: string, output: string): boolean {
  const out = join(pkgDir, output);
  if (!existsSync(out)) return true;
  const built = statSync(out).mtimeMs;
  return (
    newestMtime(join(pkgDir, 'src')) > built ||
    ['package.json', 'tsup.config.ts'].some((f) => existsSync(join(pkgDir, f)) && statSync(join(pkgDir, f)).mtimeMs > built)
  );
}

/** The workspace packages the CLI depends on, transitively (directories under packages/). */
function cliDependencies(): string[] {
  const seen = new Set<string>();
  const visit = (pkgJson: string) => {
    const deps = (JSON.parse(readFileSync(pkgJson, 'utf8')) as { dependencies?: Record<string, string> }).dependencies ?? {};
    for (const name of Object.keys(deps)) {
      const m = /^@ultrasketch\/(.+)$/.exec(name);
      const dir = m ? join(ROOT, 'packages', m[1]!) : undefined;
      if (dir && !seen.has(dir) && existsSync(join(dir, 'package.json'))) {
        seen.add(dir);
        visit(join(dir, 'package.json'));
      }
    }
  };
  visit(join(ROOT, 'apps/cli/package.json'));
  return [...seen];
}

export function ensureBuilt(): void {
  const stale = isStale(join(ROOT, 'apps/cli'), 'dist/cli.js') || cliDependencies().some((p) => isStale(p, 'dist/index.js'));
  if (!stale) return;
  try {
    execFileSync('pnpm', ['--filter', '@ultrasketch/cli...', 'run', 'build'], { cwd: ROOT, stdio: 'pipe', encoding: 'utf8' });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`building the CLI failed (pnpm --filter @ultrasketch/cli... run build):\n${e.stdout ?? ''}\n${e.stderr ?? e.message}`);
  }
  if (!existsSync(CLI)) throw new Error(`the build finished but ${CLI} is missing`);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `ultrasketch <args>` and collect its exit code and output. */
export function cli(args: string[], env: Record<string, string> = {}): RunResult {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, ULTRASKETCH_DEBUG: '', ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Parse stdout as exactly one JSON object (JSON.parse rejects anything after it but whitespace). */
export function parseOneObject(stdout: string): Record<string, unknown> {
  const value: unknown = JSON.parse(stdout);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(`stdout is JSON but not one object: ${stdout.slice(0, 200)}`);
  }
  return value as Record<string, unknown>;
}

export function readLines(file: string): string[] {
  return readFileSync(file, 'utf8').trim().split('\n');
}

/**
 * An independent safetensors parser, written from the spec (https://github.com/huggingface/safetensors): an
 * 8-byte little-endian u64 N, N bytes of JSON {name: {dtype, shape, data_offsets: [b, e]}, "__metadata__":
 * {str: str}}, then the data area (offsets relative to byte 8 + N). Used to recompute bundle figures.
 */
export function parseSafetensorsSpec(bytes: Uint8Array): {
  tensors: Map<string, { dtype: string; shape: number[]; bytes: number }>;
  metadata: Record<string, string>;
  headerBytes: number;
} {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n))) as Record<string, any>;
  const tensors = new Map<string, { dtype: string; shape: number[]; bytes: number }>();
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    tensors.set(name, { dtype: v.dtype, shape: v.shape, bytes: v.data_offsets[1] - v.data_offsets[0] });
  }
  return { tensors, metadata: header.__metadata__ ?? {}, headerBytes: n };
}

/** The SVG well-formedness check the pipeline's sweep tests use (one copy: packages/pipeline/test/xml.ts). */
export { checkXml } from '../../../packages/pipeline/test/xml.js';
