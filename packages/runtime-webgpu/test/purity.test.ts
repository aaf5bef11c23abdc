import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * runtime-webgpu runs in browsers: its sources import no `node:*` module, no Node-only package (`webgpu`,
 * `playwright-core` are test/bench tools) and touch no DOM global (the caller passes the GPU object).
 */
const SRC = fileURLToPath(new URL('../src', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

describe('runtime-webgpu sources are environment-neutral', () => {
  // src/node.ts is the separate `./node` entry (the Dawn glue for Node), never imported by the main entry.
  const files = sources(SRC).filter((f) => !f.endsWith(`${join('src', 'node.ts')}`));
  it.each(files.map((f) => [f.slice(SRC.length + 1), f]))('%s', (_name, file) => {
    const text = readFileSync(file, 'utf8');
    const imports = [...text.matchAll(/(?:from|import)\s*\(?\s*['"]([^'"]+)['"]/g)].map((m) => m[1]!);
    expect(imports).not.toContain('./node.js');
    for (const spec of imports) {
      expect(spec.startsWith('.') || spec.startsWith('@ultrasketch/'), `${file} imports ${spec}`).toBe(true);
    }
    // code without comments and string literals (messages may name navigator.gpu)
    const code = text
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/`(?:\\.|[^`\\])*`/g, '``')
      .replace(/'(?:\\.|[^'\\\n])*'/g, "''")
      .replace(/"(?:\\.|[^"\\\n])*"/g, '""')
      .replace(/\/\/.*$/gm, '');
    expect(code).not.toMatch(/\b(window|document|navigator|process|require|Buffer)\s*[.(]/);
  });
});
