#!/usr/bin/env node
// Pack every publishable workspace package with `pnpm pack` (which turns workspace:* ranges into the real
// versions, as `changeset publish` does) into one folder. `pnpm release:dry` runs it after a build; the
// packaging test (test/packaging.test.ts) installs the tarballs it makes into a scratch project.
//   node scripts/pack-all.mjs [DIR] [--json]     DIR defaults to a new temporary folder
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));
const args = process.argv.slice(2);
const json = args.includes('--json');
const dirArg = args.find((a) => !a.startsWith('--'));
const dest = dirArg ? resolve(dirArg) : mkdtempSync(join(tmpdir(), 'ultrasketch-pack-'));

const dirs = [...readdirSync(join(root, 'packages')).map((d) => join('packages', d)), join('apps', 'cli')];
const tarballs = {};
for (const dir of dirs) {
  const pkgFile = join(root, dir, 'package.json');
  if (!existsSync(pkgFile)) continue;
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8'));
  if (pkg.private) continue;
  if (!existsSync(join(root, dir, 'dist'))) {
    console.error(`pack-all: ${dir}/dist is missing; run \`pnpm build\` first`);
    process.exit(1);
  }
  const out = execFileSync('pnpm', ['pack', '--pack-destination', dest], { cwd: join(root, dir), encoding: 'utf8' });
  // pnpm prints the file list, then the tarball's path on the last line.
  const file = out.trim().split('\n').pop().trim();
  tarballs[pkg.name] = resolve(join(root, dir), file);
  if (!json) console.log(`${pkg.name}\t${tarballs[pkg.name]}`);
}
if (json) console.log(JSON.stringify({ dir: dest, tarballs }, null, 2));
else console.log(`packed ${Object.keys(tarballs).length} packages into ${dest}`);
