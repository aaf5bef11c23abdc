#!/usr/bin/env node
// After `changeset version`: the pipeline's PIPELINE_VERSION (written into every bundle's provenance) must equal
// its package.json version (a test checks it); this writes it, so a release never ships a stale constant.
import { readFileSync, writeFileSync } from 'node:fs';

const root = new URL('../', import.meta.url);
const { version } = JSON.parse(readFileSync(new URL('packages/pipeline/package.json', root), 'utf8'));
const file = new URL('packages/pipeline/src/version.ts', root);
const src = readFileSync(file, 'utf8');
const next = src.replace(/export const PIPELINE_VERSION = '[^']*';/, `export const PIPELINE_VERSION = '${version}';`);
if (!next.includes(`'${version}'`)) {
  console.error('sync-versions: PIPELINE_VERSION not found in packages/pipeline/src/version.ts; update the pattern here');
  process.exit(1);
}
writeFileSync(file, next);
console.log(`sync-versions: PIPELINE_VERSION = ${version}`);
