import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCodes } from '@ultrasketch/core';
import { describe, expect, it } from 'vitest';
import * as browser from '../src/browser.js';
import { compress, loadBundle, openModel as openModelNode } from '../src/index.js';
import { requireShared } from '../../../test/require-shared.js';

/**
 * The browser entry (`@ultrasketch/pipeline/browser`): nothing it reaches at run time may import node:* or use
 * Node globals (a bundler would fail, or the page would throw), and openModel(bytes) gives what openModel(path)
 * gives for the same bundle. The built entry is checked too, by a real Vite build, in test/packaging.test.ts.
 */
const SRC = fileURLToPath(new URL('../src/', import.meta.url));

const FORBIDDEN: Array<[RegExp, string]> = [
  [/\bfrom\s*['"]node:/, 'imports a node:* module'],
  [/(?<!typeof\s*)\bimport\s*\(\s*['"]node:/, 'dynamically imports a node:* module'],
  [/\bfrom\s*['"](fs|path|crypto|os|url|worker_threads|child_process)['"]/, 'imports a Node built-in'],
  [/\brequire\s*\(/, 'uses CommonJS require'],
  [/(?<![\w.])process\s*\./, 'uses the Node global `process`'],
  [/(?<![\w.])Buffer\b/, 'uses the Node global `Buffer`'],
  [/\b__(dirname|filename)\b/, 'uses a CommonJS path global'],
];
const stripComments = (src: string) =>
  src.replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, ' ')).replace(/\/\/.*$/gm, '');

const PACKAGES = fileURLToPath(new URL('../../', import.meta.url));

/** The source entry of a workspace package specifier ('@ultrasketch/model' → packages/model/src/index.ts). */
function workspaceEntry(spec: string): string | null {
  const m = /^@ultrasketch\/([^/]+)(?:\/(.+))?$/.exec(spec);
  return m ? join(PACKAGES, m[1]!, 'src', `${m[2] ?? 'index'}.ts`) : null;
}

/**
 * Source files reached from `entry` through run-time imports (`import type` and `export type` are erased):
 * relative ones, and with `crossPackages` the other @ultrasketch packages' sources too.
 */
function runtimeGraph(entry: string, crossPackages = false): Map<string, string> {
  const seen = new Map<string, string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    const code = stripComments(readFileSync(file, 'utf8'));
    seen.set(file, code);
    const re = /^\s*(import|export)\s+(type\s+)?[^;]*?from\s*['"]([^'"]+)['"]/gm;
    for (const m of code.matchAll(re)) {
      if (m[2]) continue;
      const spec = m[3]!;
      if (spec.startsWith('.')) visit(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
      else if (crossPackages) {
        const target = workspaceEntry(spec);
        if (target) visit(target);
      }
    }
  };
  visit(entry);
  return seen;
}

/**
 * Lines of `graph` that touch Node; a line that tests `typeof process` first is a guarded use, and type-only
 * imports (`import type`, `typeof import(...)`) are erased from the JavaScript. Template literals
 * are blanked first: a worker's source held in a string (runtime-node's threads) is not code of the page.
 */
function nodeUses(graph: Map<string, string>, root: string): string[] {
  const problems: string[] = [];
  for (const [file, source] of graph) {
    const code = source.replace(/`(?:\\[\s\S]|[^`\\])*`/g, (m) => m.replace(/[^\n]/g, ' '));
    code.split('\n').forEach((line, i) => {
      if (/typeof process\b/.test(line) || /^\s*(import|export)\s+type\b/.test(line)) return; // guarded; erased
      for (const [re, what] of FORBIDDEN) if (re.test(line)) problems.push(`${file.slice(root.length)}:${i + 1}: ${what}`);
    });
  }
  return problems;
}

describe('pipeline browser entry purity', () => {
  it('no file reached from src/browser.ts touches Node', () => {
    const graph = runtimeGraph(join(SRC, 'browser.ts'));
    expect(nodeUses(graph, SRC)).toEqual([]);
    // The walk really follows imports: the bundle reader and the session code are reached, the file readers not.
    const names = [...graph.keys()].map((f) => f.slice(SRC.length));
    expect(names).toEqual(expect.arrayContaining(['browser.ts', 'usk.ts', 'sessions.ts', 'tokenizers.ts', 'accounting.ts']));
    expect(names).not.toContain('load.ts');
    expect(names).not.toContain('usk-files.ts');
  });

  it('nor does any source it reaches in the other @ultrasketch packages (runtime-node, model, format, the codecs)', () => {
    // A page runs these too: a static node:* import breaks the bundler, an unguarded `process.env` throws in the
    // page (test/packaging.test.ts builds and runs the page module without `process`).
    const graph = runtimeGraph(join(SRC, 'browser.ts'), true);
    const reached = new Set([...graph.keys()].map((f) => f.slice(PACKAGES.length).split('/')[0]));
    expect([...reached]).toEqual(expect.arrayContaining(['pipeline', 'runtime-node', 'model', 'format', 'core', 'baselines', 'sketch-core', 'littlebit']));
    expect(nodeUses(graph, PACKAGES)).toEqual([]);
  });

  it('the walk would catch a Node import (the check is not vacuous)', () => {
    // The main entry reaches the file readers, which import node:fs.
    const graph = runtimeGraph(join(SRC, 'index.ts'));
    const offenders = [...graph].filter(([, code]) => FORBIDDEN[0]![0].test(code)).map(([f]) => f.slice(SRC.length));
    expect(offenders).toEqual(expect.arrayContaining(['load.ts', 'usk-files.ts', 'tokenizer-files.ts']));
  });
});

const MODEL = fileURLToPath(new URL('../../../../shared/models/stories260K/stories260K.bin', import.meta.url));
const HAVE_SHARED = requireShared('pipeline browser openModel(bytes)', [MODEL]);

describe.runIf(HAVE_SHARED)('openModel(bytes)', () => {
  it('opens a bundle from bytes: the same config, bit figures and greedy tokens as from the file', async () => {
    const { bytes } = await compress({ model: MODEL, codec: 'rtn', codecOptions: { bits: 4 } });
    const model = browser.openModel(bytes, { name: 'stories260K-rtn4.usk' });
    expect(model.kind).toBe('bundle');
    expect(model.source.path).toBe('stories260K-rtn4.usk');
    expect(model.config.dim).toBe(64);
    const acc = model.loaded.accounting;
    expect(acc.bpwLinears).toBeGreaterThan(4);
    expect(acc.bpwLinears).toBeLessThan(5);
    expect(acc.bitsPerParam).toBeCloseTo((8 * bytes.byteLength) / acc.params, 12);
    // The portable SHA-256 (browser) and node:crypto's (main entry) agree.
    const viaNode = openModelNode(bytes);
    expect(model.source.sha256).toBe(viaNode.source.sha256);
    expect(model.source.sha256).toMatch(/^[0-9a-f]{64}$/);

    const prompt = model.tokenizer.encode('Once upon a time', { bos: true, eos: false });
    const greedy = async (m: typeof model) => {
      const session = browser.createSession(m, { contextLength: 24 });
      const out: number[] = [];
      for await (const step of session.generate(prompt, { steps: 24, temperature: 0, stopToken: -1 })) out.push(step.next);
      return out;
    };
    const fromBytes = await greedy(model);
    expect(fromBytes).toHaveLength(24);
    expect(new Set(fromBytes).size).toBeGreaterThan(1);
    expect(model.tokenizer.decode(fromBytes)).not.toBe('');
    expect(await greedy(viaNode)).toEqual(fromBytes);
  });

  it('refuses bytes that are not a bundle, and a non-Uint8Array, with typed errors and hints', () => {
    const checkpoint = new Uint8Array(readFileSync(MODEL));
    expect(() => browser.openModel(checkpoint)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_MAGIC, hint: expect.stringMatching(/ultrasketch compress/) }));
    expect(() => browser.openModel('model.usk' as unknown as Uint8Array)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_ARGUMENT }));
    expect(() => browser.openModel(new Uint8Array(4))).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_MAGIC }));
  });

  it('loadBundle (files) and openModel (bytes) account the same bundle identically', async () => {
    const { bytes } = await compress({ model: MODEL, codec: 'binary' });
    const a = browser.openModel(bytes).loaded.accounting;
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'usk-browser-'));
    try {
      writeFileSync(join(dir, 'b.usk'), bytes);
      const b = loadBundle(join(dir, 'b.usk')).accounting;
      expect({ ...a }).toEqual({ ...b });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
