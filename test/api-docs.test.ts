/**
 * The API reference (`pnpm docs:api`: TypeDoc over every package's entries, from the doc comments; typedoc.json)
 * builds without errors and has a page per package, the pipeline's browser entry included. Written to a
 * temporary folder here; `pnpm docs:api` writes docs/api/ (not committed).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

describe('API reference (TypeDoc)', () => {
  it('builds with no errors, one module page per package and per subpath entry', () => {
    const out = mkdtempSync(join(tmpdir(), 'ultrasketch-api-'));
    try {
      const r = spawnSync(join(ROOT, 'node_modules/.bin/typedoc'), ['--out', out, '--logLevel', 'Warn'], { cwd: ROOT, encoding: 'utf8', timeout: 180_000 });
      expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stdout + r.stderr).not.toMatch(/\[error\]/);
      const modules = readdirSync(join(out, 'modules'));
      for (const d of readdirSync(join(ROOT, 'packages'))) {
        const { name } = JSON.parse(readFileSync(join(ROOT, 'packages', d, 'package.json'), 'utf8')) as { name: string };
        const slug = name.replace('@', '_').replace('/', '_');
        expect(modules.some((m) => m.startsWith(slug)), `${name} has no page`).toBe(true);
      }
      expect(modules).toContain('_ultrasketch_pipeline.browser.html');
      // Built from the comments: the browser openModel's doc comment is on its page.
      const page = join(out, 'functions/_ultrasketch_pipeline.browser.openModel.html');
      expect(existsSync(page)).toBe(true);
      expect(readFileSync(page, 'utf8')).toMatch(/bundle from its bytes/);
      expect(existsSync(join(out, 'index.html'))).toBe(true);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 200_000);
});
