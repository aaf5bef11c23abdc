/**
 * The code examples of docs/use-from-code.md and of every package README are run, as written, against the
 * BUILT packages (dist/, what a user installs): each ```ts / ```js block is stripped of its types (TypeScript's
 * transpileModule), written into a scratch folder whose node_modules/@ultrasketch/* point at the workspace
 * packages, and run with node; it must exit 0. A block right after `<!-- no-run: why -->` is skipped (it needs a
 * browser or a GPU; the packaging test builds a browser page instead). The scratch folder holds `stories260K/`
 * and `tinystories/` from ../shared, which the examples name.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireShared } from './require-shared.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const SHARED = resolve(ROOT, '../shared');
const HAVE_SHARED = requireShared('docs examples', [join(SHARED, 'models/stories260K/stories260K.bin'), join(SHARED, 'data/tinystories/eval.txt')]);

const PACKAGE_DIRS = [...readdirSync(join(ROOT, 'packages')).map((d) => join('packages', d)), join('apps', 'cli')];
const DOCS = ['docs/use-from-code.md', ...PACKAGE_DIRS.map((d) => join(d, 'README.md'))];

export interface Example {
  file: string;
  line: number;
  lang: 'ts' | 'js';
  code: string;
  skip: string | null;
}

/** The ```ts and ```js blocks of a Markdown file, with the line each starts on and its no-run reason. */
export function examples(file: string, markdown: string): Example[] {
  const out: Example[] = [];
  const re = /(?:<!--\s*no-run:\s*([^>]*?)\s*-->\s*\n)?^```(ts|js)\n([\s\S]*?)^```$/gm;
  for (const m of markdown.matchAll(re)) {
    out.push({ file, line: markdown.slice(0, m.index).split('\n').length, lang: m[2] as 'ts' | 'js', code: m[3]!, skip: m[1] ?? null });
  }
  return out;
}

describe('examples() finds the blocks', () => {
  it('ts and js blocks, their lines, the no-run marker; sh blocks are not code to run', () => {
    const md = 'x\n```ts\nconst a = 1;\n```\n```sh\nls\n```\n<!-- no-run: needs a GPU -->\n```js\nb();\n```\n';
    expect(examples('a.md', md)).toEqual([
      { file: 'a.md', line: 2, lang: 'ts', code: 'const a = 1;\n', skip: null },
      { file: 'a.md', line: 8, lang: 'js', code: 'b();\n', skip: 'needs a GPU' },
    ]);
  });
});

const all = DOCS.filter((f) => existsSync(join(ROOT, f))).flatMap((f) => examples(f, readFileSync(join(ROOT, f), 'utf8')));

describe.runIf(HAVE_SHARED)('documentation examples run against the built packages', () => {
  let dir: string;
  beforeAll(() => {
    const missing = PACKAGE_DIRS.filter((d) => !d.startsWith('apps') && !existsSync(join(ROOT, d, 'dist/index.js')));
    if (missing.length > 0) throw new Error(`not built: ${missing.join(', ')} (run \`pnpm build\` first; \`pnpm test\` does)`);
    dir = mkdtempSync(join(tmpdir(), 'ultrasketch-docs-'));
    mkdirSync(join(dir, 'node_modules/@ultrasketch'), { recursive: true });
    for (const d of PACKAGE_DIRS) {
      const { name } = JSON.parse(readFileSync(join(ROOT, d, 'package.json'), 'utf8')) as { name: string };
      symlinkSync(join(ROOT, d), join(dir, 'node_modules', name), 'dir');
    }
    symlinkSync(join(SHARED, 'models/stories260K'), join(dir, 'stories260K'), 'dir');
    symlinkSync(join(SHARED, 'data/tinystories'), join(dir, 'tinystories'), 'dir');
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'docs-examples', private: true, type: 'module' }));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('every documented package has a runnable example, and docs/use-from-code.md has several', () => {
    const run = all.filter((e) => e.skip === null);
    expect(run.filter((e) => e.file === 'docs/use-from-code.md').length).toBeGreaterThanOrEqual(4);
    const withRunnable = new Set(run.map((e) => e.file));
    for (const d of PACKAGE_DIRS) {
      if (d === join('apps', 'cli') || d === join('packages', 'runtime-webgpu')) continue; // a shell session; a GPU
      expect(withRunnable.has(join(d, 'README.md')), `${d}/README.md has no runnable example`).toBe(true);
    }
  });

  it('the TypeScript examples type-check (strict, against the built .d.ts, skipLibCheck false)', () => {
    // Types are part of what a reader copies: a block that runs but does not compile (a number[] where an
    // Int32Array is typed) would still mislead. `dom` is in lib for the browser and WebGPU examples.
    mkdirSync(join(dir, 'node_modules/@types'), { recursive: true });
    if (!existsSync(join(dir, 'node_modules/@types/node'))) symlinkSync(join(ROOT, 'node_modules/@types/node'), join(dir, 'node_modules/@types/node'), 'dir');
    const files = all.filter((e) => e.lang === 'ts').map((e, i) => {
      const f = join(dir, `typed-${i}.mts`);
      writeFileSync(f, e.code);
      return { f, e };
    });
    const program = ts.createProgram(
      files.map((x) => x.f),
      {
        module: ts.ModuleKind.NodeNext,
        moduleResolution: ts.ModuleResolutionKind.NodeNext,
        target: ts.ScriptTarget.ES2022,
        lib: ['lib.es2023.d.ts', 'lib.dom.d.ts'],
        strict: true,
        noEmit: true,
        skipLibCheck: false,
        types: ['node'],
      },
    );
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const where = d.file ? files.find((x) => x.f === d.file!.fileName) : undefined;
      const pos = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : undefined;
      const at = where ? `${where.e.file}:${where.e.line + 1 + (pos?.line ?? 0)}` : (d.file?.fileName ?? '');
      return `${at}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
    expect(problems).toEqual([]);
  });

  for (const [i, e] of all.entries()) {
    it.skipIf(e.skip !== null)(`${e.file}:${e.line} (${e.lang})`, () => {
      const isCjs = /\brequire\(/.test(e.code) && !/^\s*import\s/m.test(e.code);
      const js =
        e.lang === 'ts'
          ? ts.transpileModule(e.code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText
          : e.code;
      const file = join(dir, `example-${i}.${isCjs ? 'cjs' : 'mjs'}`);
      writeFileSync(file, js);
      const r = spawnSync(process.execPath, [file], { cwd: dir, encoding: 'utf8', timeout: 90_000 });
      expect(r.status, `${e.file}:${e.line} exited ${r.status} (${r.signal ?? ''}):\n${r.stderr}\n${r.stdout}`).toBe(0);
      expect(r.stdout.trim(), `${e.file}:${e.line} printed nothing`).not.toBe('');
    });
  }
});
