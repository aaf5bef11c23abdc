import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { NODE_FORBIDDEN, stripComments } from '../../format/test/purity-rules.js';

/**
 * The trainer runs anywhere (Node, browsers, workers) except its Node-only entry src/node.ts: no other
 * source may import node:* modules or use Node globals, and it may import only the packages it declares.
 */
const SRC = fileURLToPath(new URL('../src/', import.meta.url));
const NODE_ONLY = new Set(['node.ts', 'worker.ts']);
const ALLOWED = [
  '@ultrasketch/core',
  '@ultrasketch/format',
  '@ultrasketch/model',
  '@ultrasketch/baselines',
  '@ultrasketch/sketch-core',
  '@ultrasketch/littlebit',
  '@ultrasketch/runtime-webgpu', // src/webgpu/ (the WebGPU training ops) reuses its device and program machinery
];

describe('ste-trainer purity', () => {
  it('only src/node.ts touches Node; imports stay within the declared packages', () => {
    const problems: string[] = [];
    for (const f of readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'))) {
      if (NODE_ONLY.has(f)) continue;
      stripComments(readFileSync(SRC + f, 'utf8'))
        .split('\n')
        .forEach((line, i) => {
          for (const [re, what] of NODE_FORBIDDEN) if (re.test(line)) problems.push(`${f}:${i + 1}: ${what}`);
          for (const m of line.matchAll(/\bfrom\s*['"]([^'"]+)['"]/g)) {
            const spec = m[1]!;
            if (!spec.startsWith('.') && !ALLOWED.includes(spec)) problems.push(`${f}:${i + 1}: imports ${spec}`);
          }
        });
    }
    expect(problems).toEqual([]);
  });

  it('the index does not re-export the node entry', () => {
    expect(readFileSync(SRC + 'index.ts', 'utf8')).not.toMatch(/node\.js/);
  });
});
