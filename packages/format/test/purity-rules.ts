/**
 * What counts as Node in a source meant to run anywhere (Node, browsers, workers): the line patterns the purity
 * tests of core/format (purity.test.ts here) and of ste-trainer (its purity.test.ts) refuse, and the comment
 * stripping they read sources through. Each test adds its own rules (DOM globals for core and format) and its
 * own import allow-list.
 */
export const NODE_FORBIDDEN: Array<[RegExp, string]> = [
  [/\bfrom\s*['"]node:/, 'imports a node:* module'],
  [/\bimport\s*\(\s*['"]node:/, 'dynamically imports a node:* module'],
  [/\brequire\s*\(/, 'uses CommonJS require'],
  [/\bprocess\s*\./, 'uses the Node global `process`'],
  [/(?<![\w.])Buffer\b/, 'uses the Node global `Buffer`'],
  [/\b__(dirname|filename)\b/, 'uses a CommonJS path global'],
];

/**
 * Remove comments so prose may mention `process.` or `Buffer` freely. Deliberately simple: it assumes
 * no string literal contains `//` or `/*`, which holds for these sources; if one ever did, the effect
 * would be to skip the rest of that line, not to report a false violation.
 */
export function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, (m) => m.replace(/[^\n]/g, ' ')).replace(/\/\/.*$/gm, '');
}
