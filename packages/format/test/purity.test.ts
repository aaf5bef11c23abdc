import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { NODE_FORBIDDEN, stripComments } from './purity-rules.js';

/**
 * `core` and `format` must run anywhere (Node, browsers, workers): no `node:*` imports, no CommonJS
 * `require`, no Node globals (process, Buffer, __dirname) and no DOM globals (window, document, ...).
 * They may import only each other as the design allows (format → core) and their own relative modules.
 * This test reads their sources and fails on any of those, naming the file and line.
 */

const PACKAGES = [
  { name: 'core', allowedPackages: [] as string[] },
  { name: 'format', allowedPackages: ['@ultrasketch/core'] },
];

const FORBIDDEN: Array<[RegExp, string]> = [
  ...NODE_FORBIDDEN,
  [/\b(window|document|navigator|localStorage|sessionStorage|location)\s*[.[]/, 'uses a DOM global'],
  [/\bglobalThis\s*\.\s*(window|document|navigator|process|Buffer|require)\b/, 'reaches a platform global through globalThis'],
];

/** Every violation in one source text, as "line N: what (the code)". */
function findImpurities(src: string, allowedPackages: readonly string[]): string[] {
  const problems: string[] = [];
  stripComments(src)
    .split('\n')
    .forEach((line, i) => {
      for (const [pattern, what] of FORBIDDEN) {
        if (pattern.test(line)) problems.push(`line ${i + 1}: ${what}: ${line.trim()}`);
      }
      for (const m of line.matchAll(/\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(?\s*['"]([^'"]+)['"]/g)) {
        const spec = m[1] ?? m[2]!;
        if (!spec.startsWith('.') && !allowedPackages.includes(spec) && !spec.startsWith('node:')) {
          problems.push(`line ${i + 1}: imports ${spec}, which this package may not depend on`);
        }
      }
    });
  return problems;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.(ts|js|mjs|cjs)$/.test(f))
    .map((f) => `${dir}/${f}`);
}

describe('platform purity of core and format', () => {
  it('the checker catches what it should, and ignores comments', () => {
    const bad = [
      "import { readFileSync } from 'node:fs';",
      "const fs = require('fs');",
      'const b = Buffer.from(x);',
      'const d = document.createElement("a");',
      'const w = globalThis.document;',
      'const e = process.env.HOME;',
      "const m = await import('node:path');",
      "import { thing } from 'lodash';",
    ];
    for (const line of bad) expect(findImpurities(line, []), line).not.toEqual([]);
    const fine = [
      '// process.env and Buffer and require( in a comment',
      '/* window.document */ const a = new ArrayBuffer(8);',
      'const buf = new SharedArrayBuffer(4); const x = view.buffer;',
      "import { ErrorCodes } from '@ultrasketch/core';",
      "import { LIMITS } from './limits.js';",
    ];
    for (const line of fine) expect(findImpurities(line, ['@ultrasketch/core']), line).toEqual([]);
  });

  for (const pkg of PACKAGES) {
    it(`packages/${pkg.name}/src imports no node:*, no DOM, no Node globals`, () => {
      const dir = fileURLToPath(new URL(`../../${pkg.name}/src`, import.meta.url));
      const files = sourceFiles(dir);
      expect(files.length).toBeGreaterThan(0);
      const problems = files.flatMap((f) =>
        findImpurities(readFileSync(f, 'utf8'), pkg.allowedPackages).map((p) => `${f.slice(dir.length + 1)} ${p}`),
      );
      expect(problems).toEqual([]);
    });
  }
});
