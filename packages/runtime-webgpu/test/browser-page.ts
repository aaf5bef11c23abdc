import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, type Page, chromium } from 'playwright-core';

/**
 * The harness of the tests that run built packages in a real page (this package's browser.test.ts and
 * ste-trainer's webgpu-browser.test.ts): headless Chromium (Debian's, with its SwiftShader WebGPU) loads a
 * test page from a tiny HTTP server on 127.0.0.1 that serves only the packages' dist/ folders (and model's
 * @huggingface/tokenizers browser build): no CDN, no bundler. The tests fail (never skip) when Chromium or its
 * WebGPU adapter is missing; CI installs chromium (scripts/test.sh).
 */
export const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The newest modification time of any file below `dir` (a dist/ older than this is stale). */
export function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

export function requireChromium(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it (apt-get install -y chromium, as scripts/test.sh does) or set CHROMIUM_PATH`);
  }
}

/**
 * A test page: an import map that resolves `@ultrasketch/<p>` for each of `packages` to its dist/index.js,
 * `imports` (more entries), and model's @huggingface/tokenizers to its browser build (all of which hostPage
 * serves), then `script` as the page's module script (it sets `window.ready = true` when loaded).
 */
export function testPage(packages: string[], script: string, imports: Record<string, string> = {}): string {
  const importMap = {
    imports: {
      ...Object.fromEntries(packages.map((p) => [`@ultrasketch/${p}`, `/packages/${p}/dist/index.js`])),
      ...imports,
      // model's tokenizer.json support: the real package's browser build, served from this checkout (no CDN).
      '@huggingface/tokenizers': '/packages/model/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs',
    },
  };
  return `<!doctype html>
<html><head><meta charset="utf-8">
<script type="importmap">${JSON.stringify(importMap)}</script>
</head><body>
<script type="module">${script}</script></body></html>`;
}

const TYPES: Record<string, string> = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.map': 'application/json', '.html': 'text/html' };

export interface PageHost {
  /** The page's address, http://127.0.0.1:PORT/ */
  base: string;
  browser: Browser;
  /** Closes the browser, then the server. */
  close(): Promise<void>;
}

/**
 * Serves `html` at /, the dist/ folders of `packages` (names under packages/), and `files` (a URL path → a
 * file on disk, served as bytes), then launches headless Chromium with WebGPU on.
 */
export async function hostPage(html: string, packages: string[], files: Record<string, string> = {}): Promise<PageHost> {
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(html);
      return;
    }
    const served = files[url.pathname];
    if (served !== undefined) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(readFileSync(served));
      return;
    }
    const file = normalize(join(ROOT, decodeURIComponent(url.pathname)));
    const allowed =
      packages.some((p) => file.startsWith(join(ROOT, 'packages', p, 'dist') + sep)) ||
      file.startsWith(join(ROOT, 'packages/model/node_modules/@huggingface/tokenizers/dist') + sep);
    if (!allowed || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  const closeServer = () => new Promise((done) => server.close(done));
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/`;
  let browser: Browser;
  try {
    // playwright gives the browser a fresh temporary profile (--user-data-dir) of its own.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  } catch (err) {
    await closeServer();
    throw err;
  }
  return {
    base,
    browser,
    async close() {
      await browser.close();
      await closeServer();
    },
  };
}

/**
 * A new page at the host's address, once its module script has set `window.ready` (within `timeout` ms); its
 * console and page errors collect in `logs`, for the failure messages. `what` names what the page loads.
 */
export async function openPage(host: PageHost, what: string, timeout: number): Promise<{ page: Page; logs: string[] }> {
  const page = await host.browser.newPage();
  const logs: string[] = [];
  page.on('console', (m) => logs.push(m.text()));
  page.on('pageerror', (e) => logs.push(String(e)));
  await page.goto(host.base);
  await page.waitForFunction('window.ready === true', undefined, { timeout }).catch(() => {
    throw new Error(`the page did not load ${what}: ${logs.join(' | ')}`);
  });
  return { page, logs };
}
