import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * `littlebit` must run anywhere (Node, browsers, workers): its sources import only @ultrasketch/core and
 * their own modules — no node:* modules, no Node or DOM globals. (Comments are stripped first.)
 */
const FORBIDDEN: Array<[RegExp, string]> = [
  [/\bimport\s*\(?\s*['"]node:|\bfrom\s*['"]node:/, 'imports a node:* module'],
  [/\brequire\s*\(/, 'uses CommonJS require'],
  [/\bprocess\s*\./, 'uses the Node global `process`'],
  [/(?<![\w.])Buffer\b/, 'uses the Node global `Buffer`'],
  [/\b(window|document|navigator)\s*[.[]/, 'uses a DOM global'],
];

describe('littlebit purity', () => {
  it('src imports only @ultrasketch/core and relative modules, and no platform globals', () => {
    const dir = fileURLToPath(new URL('../src', import.meta.url));
    const problems: string[] = [];
    for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'))) {
      const src = readFileSync(`${dir}/${f}`, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, ' '))
        .replace(/\/\/.*$/gm, '');
      src.split('\n').forEach((line, i) => {
        for (const [re, what] of FORBIDDEN) if (re.test(line)) problems.push(`${f}:${i + 1}: ${what}`);
        for (const m of line.matchAll(/\bfrom\s*['"]([^'"]+)['"]/g)) {
          if (!m[1]!.startsWith('.') && m[1] !== '@ultrasketch/core') problems.push(`${f}:${i + 1}: imports ${m[1]}`);
        }
      });
    }
    expect(problems).toEqual([]);
  });
});
