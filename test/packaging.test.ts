/**
 * What a user gets from npm, tested from the packed tarballs (docs/architecture.md, "Packages and releases"):
 * every package is packed with `pnpm pack` (scripts/pack-all.mjs, as `pnpm release:dry` does) and installed
 * with npm into a scratch project (registry dependencies such as @huggingface/tokenizers come from the registry,
 * or npm's cache). Then:
 *  - each tarball holds README, LICENSE, ESM + CJS builds and both kinds of declarations, no workspace: ranges;
 *  - publint --strict and attw (node16 from ESM and from CJS, bundler) pass on each tarball;
 *  - a Node ESM script and a CommonJS one compress stories260K through the public API and generate from it;
 *  - `npx ultrasketch --help` runs from the installed CLI, and `--runtime webgpu` without the optional `webgpu`
 *    peer fails with the typed error that names `npm install webgpu`;
 *  - TypeScript consumers compile with skipLibCheck: false (node16 ESM and CJS, bundler);
 *  - a Vite page importing @ultrasketch/pipeline/browser and @ultrasketch/runtime-webgpu builds with nothing
 *    of Node left in it;
 *  - `changeset version` writes CHANGELOGs and bumps every package together.
 */
import { type SpawnSyncReturns, execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireShared } from './require-shared.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const SHARED = resolve(ROOT, '../shared');
const MODEL_DIR = join(SHARED, 'models/stories260K');
const HAVE_SHARED = requireShared('packaging', [join(MODEL_DIR, 'stories260K.bin')]);
const BIN = (name: string) => join(ROOT, 'node_modules/.bin', name);
const PACKAGE_DIRS = [...readdirSync(join(ROOT, 'packages')).map((d) => join('packages', d)), join('apps', 'cli')];

function run(cmd: string, args: string[], cwd: string, timeout = 120_000): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout, env: { ...process.env, npm_config_update_notifier: 'false' } });
}
const show = (r: SpawnSyncReturns<string>) => `exit ${r.status} ${r.signal ?? ''}\n${r.stdout}\n${r.stderr}`;

let work: string;
let scratch: string;
let tarballs: Record<string, string>;

beforeAll(() => {
  const missing = PACKAGE_DIRS.filter((d) => !existsSync(join(ROOT, d, 'dist')));
  if (missing.length > 0) throw new Error(`not built: ${missing.join(', ')} (run \`pnpm build\` first; \`pnpm test\` does)`);
  work = mkdtempSync(join(tmpdir(), 'ultrasketch-packaging-'));
  const packed = JSON.parse(execFileSync(process.execPath, [join(ROOT, 'scripts/pack-all.mjs'), join(work, 'packs'), '--json'], { encoding: 'utf8' })) as {
    tarballs: Record<string, string>;
  };
  tarballs = packed.tarballs;
  scratch = join(work, 'scratch');
  mkdirSync(scratch);
  const dependencies = Object.fromEntries(Object.entries(tarballs).map(([name, file]) => [name, `file:${file}`]));
  writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module', dependencies }, null, 2));
  const r = run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], scratch, 300_000);
  if (r.status !== 0) throw new Error(`npm install of the tarballs failed: ${show(r)}`);
  if (HAVE_SHARED) symlinkSync(MODEL_DIR, join(scratch, 'stories260K'), 'dir'); // the examples' model
}, 360_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('tarballs', () => {
  it('every package is packed, with README, LICENSE, both builds and both declarations, and no workspace: ranges', () => {
    expect(Object.keys(tarballs).sort()).toEqual(
      PACKAGE_DIRS.map((d) => (JSON.parse(readFileSync(join(ROOT, d, 'package.json'), 'utf8')) as { name: string }).name).sort(),
    );
    for (const [name, file] of Object.entries(tarballs)) {
      const files = execFileSync('tar', ['tzf', file], { encoding: 'utf8' }).split('\n');
      expect(files, name).toEqual(expect.arrayContaining(['package/README.md', 'package/LICENSE', 'package/package.json']));
      expect(files.filter((f) => f.startsWith('package/src/') || f.startsWith('package/test/')), name).toEqual([]);
      if (name !== '@ultrasketch/cli') {
        expect(files, name).toEqual(expect.arrayContaining(['package/dist/index.js', 'package/dist/index.cjs', 'package/dist/index.d.ts', 'package/dist/index.d.cts']));
      }
      const pkg = readFileSync(join(scratch, 'node_modules', name, 'package.json'), 'utf8');
      expect(pkg, name).not.toMatch(/workspace:/);
    }
  });

  it('publint --strict and attw (node16 ESM and CJS, bundler) pass for every tarball', () => {
    const failures: string[] = [];
    for (const [name, file] of Object.entries(tarballs)) {
      const lint = run(BIN('publint'), ['--strict', file], work);
      if (lint.status !== 0 || !/All good/.test(lint.stdout)) failures.push(`publint ${name}: ${show(lint)}`);
      const types = run(BIN('attw'), [file, '--profile', 'node16', '--format', 'ascii'], work);
      if (types.status !== 0) failures.push(`attw ${name}: ${show(types)}`);
    }
    expect(failures).toEqual([]);
  }, 240_000);
});

describe.runIf(HAVE_SHARED)('installed from the tarballs', () => {
  it('Node (ESM): compress stories260K with sketch, open the bundle, generate', () => {
    writeFileSync(
      join(scratch, 'esm.mjs'),
      `import { compress, createSession, openModel } from '@ultrasketch/pipeline';
const { bytes, report } = await compress({ model: 'stories260K/stories260K.bin', codec: 'sketch', codecOptions: { bpw: 0.75 }, output: 'model.usk' });
const model = openModel('model.usk');
const session = createSession(model, { contextLength: 24 });
const next = [];
for await (const s of session.generate(model.tokenizer.encode('Once upon a time', { bos: true, eos: false }), { steps: 24, temperature: 0, stopToken: -1 })) next.push(s.next);
console.log(JSON.stringify({ bpwLinears: report.bpwLinears, fileBytes: bytes.byteLength, kind: model.kind, next, text: model.tokenizer.decode(next) }));
`,
    );
    const r = run(process.execPath, ['esm.mjs'], scratch);
    expect(r.status, show(r)).toBe(0);
    const out = JSON.parse(r.stdout) as { bpwLinears: number; fileBytes: number; kind: string; next: number[]; text: string };
    expect(out.kind).toBe('bundle');
    expect(out.bpwLinears).toBeGreaterThan(0.5);
    expect(out.bpwLinears).toBeLessThanOrEqual(0.75);
    expect(out.fileBytes).toBe(readFileSync(join(scratch, 'model.usk')).byteLength);
    expect(out.next).toHaveLength(24);
    expect(out.text.length).toBeGreaterThan(0);
  });

  it('Node (CommonJS): require() of every entry and subpath; compress and generate', () => {
    writeFileSync(
      join(scratch, 'cjs.cjs'),
      `const { compress, openModel, createSession } = require('@ultrasketch/pipeline');
const entries = ['@ultrasketch/core', '@ultrasketch/format', '@ultrasketch/model', '@ultrasketch/baselines', '@ultrasketch/littlebit',
  '@ultrasketch/sketch-core', '@ultrasketch/saliency', '@ultrasketch/runtime-node', '@ultrasketch/runtime-webgpu', '@ultrasketch/runtime-webgpu/node',
  '@ultrasketch/pipeline/browser', '@ultrasketch/ste-trainer', '@ultrasketch/ste-trainer/node', '@ultrasketch/ste-trainer/webgpu'];
const sizes = entries.map((e) => Object.keys(require(e)).length);
compress({ model: 'stories260K/stories260K.bin', codec: 'rtn', codecOptions: { bits: 4 } }).then(async ({ bytes }) => {
  const model = openModel(bytes);
  const session = createSession(model, { contextLength: 8 });
  const next = [];
  for await (const s of session.generate(model.tokenizer.encode('Once', { bos: true, eos: false }), { steps: 8, temperature: 0, stopToken: -1 })) next.push(s.next);
  console.log(JSON.stringify({ sizes, next }));
});
`,
    );
    const r = run(process.execPath, ['cjs.cjs'], scratch);
    expect(r.status, show(r)).toBe(0);
    const out = JSON.parse(r.stdout) as { sizes: number[]; next: number[] };
    expect(out.sizes.every((n) => n > 0)).toBe(true);
    expect(out.next).toHaveLength(8);
  });

  it('CommonJS: ste-trainer/node finds its worker beside the CJS build (workerThreads trains a step)', () => {
    // The CJS build shims import.meta.url to locate worker.js; a wrong path would only show when a worker starts.
    writeFileSync(
      join(scratch, 'workers.cjs'),
      `const { registerBaselineCodecs } = require('@ultrasketch/baselines');
const { loadModel } = require('@ultrasketch/pipeline');
const { Trainer, makeProviders } = require('@ultrasketch/ste-trainer');
const { workerThreads } = require('@ultrasketch/ste-trainer/node');
registerBaselineCodecs();
const { weights, tokenizer } = loadModel('stories260K/stories260K.bin');
const calibTokens = Int32Array.from(tokenizer.encode('Once upon a time there was a little girl. She liked to play outside. '.repeat(4), { bos: true, eos: false }));
const providers = makeProviders(weights, () => ({ kind: 'ste', options: { codec: 'binary' } }));
const trainer = new Trainer({ teacher: weights, providers, calibTokens, batch: 2, seqLen: 16, steps: 1, lr: 1e-3, parallel: workerThreads(2) });
console.log(JSON.stringify({ loss: trainer.step().loss }));
trainer.dispose();
`,
    );
    // A worker that cannot start shows as a hang (the trainer waits for it), hence the short limit.
    const r = run(process.execPath, ['workers.cjs'], scratch, 60_000);
    expect(r.status, show(r)).toBe(0);
    expect(Number.isFinite((JSON.parse(r.stdout) as { loss: number }).loss)).toBe(true);
  });

  it('npx ultrasketch --help; --runtime webgpu without the optional webgpu peer names the install command', () => {
    expect(existsSync(join(scratch, 'node_modules/webgpu'))).toBe(false); // an optional peer is not installed
    const help = run('npx', ['--no-install', 'ultrasketch', '--help'], scratch);
    expect(help.status, show(help)).toBe(0);
    expect(help.stdout).toMatch(/Usage: ultrasketch <command>/);
    const byName = run('npx', ['--no-install', '@ultrasketch/cli', '--version'], scratch); // the package name, as the docs say
    expect(byName.status, show(byName)).toBe(0);
    expect(byName.stdout.trim()).toBe((JSON.parse(readFileSync(join(ROOT, 'apps/cli/package.json'), 'utf8')) as { version: string }).version);
    const gpu = run('npx', ['--no-install', 'ultrasketch', 'generate', 'stories260K/stories260K.bin', '--runtime', 'webgpu', '--steps', '4'], scratch);
    expect(gpu.status, show(gpu)).not.toBe(0);
    expect(gpu.stderr).toMatch(/E_UNSUPPORTED/);
    expect(gpu.stderr).toMatch(/'webgpu' package .* is not installed/);
    expect(gpu.stderr).toMatch(/npm install webgpu/);
    const cpu = run('npx', ['--no-install', 'ultrasketch', 'generate', 'stories260K/stories260K.bin', '--steps', '8', '--temperature', '0'], scratch);
    expect(cpu.status, show(cpu)).toBe(0);
  });
});

describe('TypeScript consumers (skipLibCheck: false)', () => {
  const tsc = (project: string) => run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', project], scratch);
  beforeAll(() => {
    mkdirSync(join(scratch, 'node_modules/@types'), { recursive: true });
    if (!existsSync(join(scratch, 'node_modules/@types/node'))) symlinkSync(join(ROOT, 'node_modules/@types/node'), join(scratch, 'node_modules/@types/node'), 'dir');
    const esm = `import { ErrorCodes, getCodec } from '@ultrasketch/core';
import { registerBaselineCodecs } from '@ultrasketch/baselines';
import { registerSketchCodecs } from '@ultrasketch/sketch-core';
import { registerLittleBitCodec } from '@ultrasketch/littlebit';
import { readBundle } from '@ultrasketch/format';
import { Tokenizer } from '@ultrasketch/model';
import { collectSaliency } from '@ultrasketch/saliency';
import { NodeSession } from '@ultrasketch/runtime-node';
import { compress, openModel, type OpenedBundle } from '@ultrasketch/pipeline';
import * as browser from '@ultrasketch/pipeline/browser';
import { Trainer } from '@ultrasketch/ste-trainer';
import { workerThreads } from '@ultrasketch/ste-trainer/node';
export const all = [ErrorCodes, getCodec, registerBaselineCodecs, registerSketchCodecs, registerLittleBitCodec, readBundle, Tokenizer, collectSaliency, NodeSession, compress, openModel, browser.openModel, Trainer, workerThreads];
export const bits = (m: OpenedBundle): number => m.loaded.accounting.bpwLinears;
`;
    writeFileSync(join(scratch, 'consumer.mts'), esm);
    writeFileSync(
      join(scratch, 'consumer.cts'),
      `import core = require('@ultrasketch/core');
import pipeline = require('@ultrasketch/pipeline');
import browser = require('@ultrasketch/pipeline/browser');
import trainerNode = require('@ultrasketch/ste-trainer/node');
export const all = [core.ErrorCodes, pipeline.compress, browser.openModel, trainerNode.workerThreads];
`,
    );
    // WebGPU's types (@webgpu/types) augment the DOM library: its consumers compile with lib dom.
    writeFileSync(
      join(scratch, 'gpu.mts'),
      `import { WebGpuSession } from '@ultrasketch/runtime-webgpu';
import { nodeGpu } from '@ultrasketch/runtime-webgpu/node';
import * as trainerGpu from '@ultrasketch/ste-trainer/webgpu';
export const trainer = trainerGpu;
export async function open(bundle: Parameters<typeof WebGpuSession.fromBundle>[0]): Promise<WebGpuSession> {
  const gpu: GPU = await nodeGpu();
  const adapter: GPUAdapter | null = await gpu.requestAdapter();
  if (!adapter) throw new Error('no adapter');
  return WebGpuSession.fromBundle(bundle, { gpu });
}
`,
    );
    writeFileSync(
      join(scratch, 'page.ts'),
      `import { createSession, openModel } from '@ultrasketch/pipeline/browser';
import { WebGpuSession } from '@ultrasketch/runtime-webgpu';
export async function run(bytes: Uint8Array): Promise<number> {
  const model = openModel(bytes);
  const session = navigator.gpu ? await WebGpuSession.fromBundle(model.bundle, { gpu: navigator.gpu }) : createSession(model);
  return model.loaded.accounting.bitsPerParam + session.position;
}
`,
    );
    const base = { target: 'es2022', strict: true, noEmit: true, skipLibCheck: false };
    const config = (compilerOptions: object, files: string[]) => JSON.stringify({ compilerOptions: { ...base, ...compilerOptions }, files });
    writeFileSync(join(scratch, 'tsconfig.node16.json'), config({ module: 'node16', moduleResolution: 'node16', lib: ['es2023'], types: ['node'] }, ['consumer.mts', 'consumer.cts']));
    writeFileSync(join(scratch, 'tsconfig.gpu.json'), config({ module: 'node16', moduleResolution: 'node16', lib: ['es2023', 'dom'], types: ['node'] }, ['gpu.mts']));
    writeFileSync(join(scratch, 'tsconfig.bundler.json'), config({ module: 'esnext', moduleResolution: 'bundler', lib: ['es2023', 'dom'], types: [] }, ['page.ts']));
  });

  it('node16 (ESM and CommonJS), without DOM types', () => {
    const r = tsc('tsconfig.node16.json');
    expect(r.status, show(r)).toBe(0);
  }, 60_000);

  it('runtime-webgpu in Node: its .d.ts bring @webgpu/types (GPUDevice resolves without the consumer adding it)', () => {
    const r = tsc('tsconfig.gpu.json');
    expect(r.status, show(r)).toBe(0);
  }, 60_000);

  it('bundler resolution, a browser page', () => {
    const r = tsc('tsconfig.bundler.json');
    expect(r.status, show(r)).toBe(0);
  }, 60_000);
});

describe('a Vite page from the tarballs', () => {
  it('imports the browser entry and runtime-webgpu and builds, with nothing of Node externalized', () => {
    const page = join(scratch, 'page');
    mkdirSync(page, { recursive: true });
    writeFileSync(join(page, 'index.html'), '<!doctype html><html><body><input type="file" id="f"><pre id="out"></pre><script type="module" src="./main.ts"></script></body></html>\n');
    writeFileSync(
      join(page, 'main.ts'),
      `import { createSession, openModel } from '@ultrasketch/pipeline/browser';
import { WebGpuSession } from '@ultrasketch/runtime-webgpu';
const out = document.getElementById('out')!;
document.getElementById('f')!.addEventListener('change', async (ev) => {
  const file = (ev.target as HTMLInputElement).files![0]!;
  const model = openModel(new Uint8Array(await file.arrayBuffer()), { name: file.name });
  const adapter = await navigator.gpu?.requestAdapter();
  const session = adapter ? await WebGpuSession.fromBundle(model.bundle, { gpu: navigator.gpu }) : createSession(model);
  const next: number[] = [];
  for await (const s of session.generate(model.tokenizer.encode('Once upon a time', { bos: true, eos: false }), { steps: 32, temperature: 0 })) next.push(s.next);
  out.textContent = model.loaded.accounting.bpwLinears.toFixed(3) + ' bpw: ' + model.tokenizer.decode(next);
});
`,
    );
    const r = run(process.execPath, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'warn'], page, 180_000);
    expect(r.status, show(r)).toBe(0);
    // Vite replaces a Node built-in it meets with an empty `__vite-browser-external` stub and a warning (a named
    // import from one fails the build, as above); either way the page would break at run time.
    expect(r.stdout + r.stderr).not.toMatch(/externalized for browser compatibility/);
    const assets = join(page, 'dist/assets');
    const js = readdirSync(assets).filter((f) => f.endsWith('.js'));
    expect(js.length).toBeGreaterThan(0);
    const code = js.map((f) => readFileSync(join(assets, f), 'utf8')).join('\n');
    expect(/__vite-browser-external/.test(code), 'a Node built-in was stubbed out in the page').toBe(false);
    expect(/ultrasketch\.usk/.test(code), 'the bundle reader is not in the page').toBe(true);
  }, 240_000);
});

describe.runIf(HAVE_SHARED)('the browser entry as Vite bundles it, run', () => {
  it('a Vite library build of a page module opens a bundle from bytes and generates the Node entry\'s tokens', () => {
    // Without a browser here, the module Vite builds for the page (browser resolution, everything inlined) is
    // run in Node, with Node's process object hidden, on a real bundle: the same greedy tokens and bit figure as
    // the Node entry.
    const lib = join(scratch, 'pagelib');
    mkdirSync(lib, { recursive: true });
    writeFileSync(
      join(lib, 'run.ts'),
      `import { createSession, openModel } from '@ultrasketch/pipeline/browser';
export async function run(bytes: Uint8Array): Promise<{ bpwLinears: number; next: number[] }> {
  const model = openModel(bytes, { name: 'page.usk' });
  const session = createSession(model, { contextLength: 24 });
  const next: number[] = [];
  for await (const s of session.generate(model.tokenizer.encode('Once upon a time', { bos: true, eos: false }), { steps: 24, temperature: 0, stopToken: -1 })) next.push(s.next);
  return { bpwLinears: model.loaded.accounting.bpwLinears, next };
}
`,
    );
    writeFileSync(join(lib, 'vite.config.mjs'), "export default { build: { lib: { entry: 'run.ts', formats: ['es'], fileName: 'run' }, outDir: 'dist' } };\n");
    const build = run(process.execPath, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'warn'], lib, 180_000);
    expect(build.status, show(build)).toBe(0);
    expect(readFileSync(join(lib, 'dist/run.js'), 'utf8')).not.toMatch(/from\s*["'](node:)?(fs|path|crypto|worker_threads)["']/);
    writeFileSync(
      join(scratch, 'pagelib.mjs'),
      `import { compress, createSession, openModel } from '@ultrasketch/pipeline';
const { bytes } = await compress({ model: 'stories260K/stories260K.bin', codec: 'rtn', codecOptions: { bits: 4 } });
// A page has no \`process\`: Node's is hidden while the page module loads and runs (an unguarded
// process.env in the page's code then throws here as it would in a browser).
const nodeProcess = globalThis.process;
globalThis.process = undefined;
let page;
try {
  const { run } = await import('./pagelib/dist/run.js');
  page = await run(bytes);
} finally {
  globalThis.process = nodeProcess;
}
const model = openModel(bytes);
const session = createSession(model, { contextLength: 24 });
const next = [];
for await (const s of session.generate(model.tokenizer.encode('Once upon a time', { bos: true, eos: false }), { steps: 24, temperature: 0, stopToken: -1 })) next.push(s.next);
console.log(JSON.stringify({ page, node: { bpwLinears: model.loaded.accounting.bpwLinears, next } }));
`,
    );
    const r = run(process.execPath, ['pagelib.mjs'], scratch);
    expect(r.status, show(r)).toBe(0);
    const out = JSON.parse(r.stdout) as { page: { bpwLinears: number; next: number[] }; node: { bpwLinears: number; next: number[] } };
    expect(out.page.next).toHaveLength(24);
    expect(new Set(out.page.next).size).toBeGreaterThan(3);
    expect(out.page).toEqual(out.node);
  }, 240_000);
});

describe('changeset version', () => {
  it('writes a CHANGELOG per package and bumps every package to one version', () => {
    // A copy of what changesets reads (the workspace's package.json files and .changeset/), so the real tree is
    // never versioned by a test; a changeset of its own so the check does not depend on pending ones.
    const copy = join(work, 'changesets');
    mkdirSync(copy);
    for (const f of ['package.json', 'pnpm-workspace.yaml']) cpSync(join(ROOT, f), join(copy, f));
    cpSync(join(ROOT, '.changeset'), join(copy, '.changeset'), { recursive: true });
    for (const d of PACKAGE_DIRS) {
      mkdirSync(join(copy, d), { recursive: true });
      cpSync(join(ROOT, d, 'package.json'), join(copy, d, 'package.json'));
    }
    writeFileSync(join(copy, '.changeset/packaging-test.md'), '---\n"@ultrasketch/core": patch\n---\n\nA change described for the packaging test.\n');
    const before = (JSON.parse(readFileSync(join(ROOT, 'packages/core/package.json'), 'utf8')) as { version: string }).version;
    const r = run(process.execPath, [join(ROOT, 'node_modules/@changesets/cli/bin.js'), 'version'], copy);
    expect(r.status, show(r)).toBe(0);
    const versions = PACKAGE_DIRS.map((d) => (JSON.parse(readFileSync(join(copy, d, 'package.json'), 'utf8')) as { version: string }).version);
    expect(new Set(versions).size).toBe(1); // one fixed group
    expect(versions[0]).not.toBe(before);
    const changelog = readFileSync(join(copy, 'packages/core/CHANGELOG.md'), 'utf8');
    expect(changelog).toContain(`## ${versions[0]}`);
    expect(changelog).toContain('A change described for the packaging test.');
    expect(readdirSync(join(copy, '.changeset')).filter((f) => f.endsWith('.md') && f !== 'README.md')).toEqual([]);
  }, 60_000);
});
