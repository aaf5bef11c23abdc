import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { registerAll as registerBaselines } from '@ultrasketch/baselines';
import { Rng, getCodec } from '@ultrasketch/core';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { worstOutputError } from '../../runtime-node/test/oracle.js';

/**
 * The package works in a real page: headless Chromium (Debian's, with its SwiftShader WebGPU) loads the
 * package's BUILT ESM bundle (dist/, and its workspace dependencies' dist/ through an import map — no CDN, no
 * bundler) from a tiny HTTP server on 127.0.0.1, runs one kernel (rtn 4-bit, 33×130, a 3-token batch) on
 * navigator.gpu, and the numbers are checked here against the codec's decode() oracle.
 * Fails (does not skip) when Chromium or its WebGPU adapter is missing; CI installs chromium (scripts/test.sh).
 */
const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const PACKAGES = ['runtime-webgpu', 'core', 'format', 'model', 'baselines', 'littlebit', 'sketch-core'];

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Build the package and its workspace dependencies when a dist/ is missing or older than its sources. */
function ensureBuilt(): void {
  const stale = PACKAGES.some((p) => {
    const out = join(ROOT, 'packages', p, 'dist/index.js');
    return !existsSync(out) || newest(join(ROOT, 'packages', p, 'src')) > statSync(out).mtimeMs;
  });
  if (!stale) return;
  try {
    execFileSync('pnpm', ['--filter', '@ultrasketch/runtime-webgpu...', 'run', 'build'], { cwd: ROOT, stdio: 'pipe', encoding: 'utf8' });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`building @ultrasketch/runtime-webgpu failed:\n${e.stdout ?? ''}\n${e.stderr ?? e.message}`);
  }
}

const PAGE = /* html */ `<!doctype html>
<html><head><meta charset="utf-8">
<script type="importmap">${JSON.stringify({
  imports: {
    ...Object.fromEntries(PACKAGES.map((p) => [`@ultrasketch/${p}`, `/packages/${p}/dist/index.js`])),
    // model's tokenizer.json support: the real package's browser build, served from this checkout (no CDN).
    '@huggingface/tokenizers': '/packages/model/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs',
  },
})}</script>
</head><body>
<script type="module">
  import { GpuContext, LinearRunner, describeAdapter } from '@ultrasketch/runtime-webgpu';
  window.runKernel = async (params, x, n) => {
    const ctx = await GpuContext.create(navigator.gpu);
    const p = { ...params, codes: Uint8Array.from(params.codes), scales: Uint16Array.from(params.scales), offsets: Uint16Array.from(params.offsets) };
    const runner = await LinearRunner.create(ctx, 'rtn', p, { maxBatch: n });
    const y = await runner.run(Float32Array.from(x), n);
    runner.dispose();
    const adapter = describeAdapter(ctx.adapter);
    ctx.destroy();
    return { y: Array.from(y), adapter };
  };
  window.ready = true;
</script></body></html>`;

const TYPES: Record<string, string> = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.map': 'application/json', '.html': 'text/html' };

let server: Server;
let base: string;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it (apt-get install -y chromium, as scripts/test.sh does) or set CHROMIUM_PATH`);
  }
  ensureBuilt();
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
      return;
    }
    const file = normalize(join(ROOT, decodeURIComponent(url.pathname)));
    const allowed =
      PACKAGES.some((p) => file.startsWith(join(ROOT, 'packages', p, 'dist') + sep)) ||
      file.startsWith(join(ROOT, 'packages/model/node_modules/@huggingface/tokenizers/dist') + sep);
    if (!allowed || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/`;
  // playwright gives the browser a fresh temporary profile (--user-data-dir) of its own.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--enable-unsafe-webgpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((done) => (server ? server.close(done) : done(undefined)));
});

describe('in headless Chromium', () => {
  it('the built package runs an rtn kernel on navigator.gpu and gets the oracle’s numbers', async () => {
    registerBaselines();
    const codec = getCodec('rtn');
    const [rows, cols, n] = [33, 130, 3];
    const rng = new Rng(7);
    const params = codec.encode(rng.normalArray(rows * cols), rows, cols, codec.resolveOptions({ bits: 4, groupSize: 32 }), { name: 'page', seed: 1 });
    const x = rng.normalArray(n * cols);
    const page = await browser.newPage();
    const logs: string[] = [];
    page.on('console', (m) => logs.push(m.text()));
    page.on('pageerror', (e) => logs.push(String(e)));
    await page.goto(base);
    await page.waitForFunction('window.ready === true', undefined, { timeout: 30_000 }).catch(() => {
      throw new Error(`the page did not load the package: ${logs.join(' | ')}`);
    });
    const hasGpu = await page.evaluate('Boolean(navigator.gpu)');
    expect(hasGpu, 'navigator.gpu in the page (Chromium needs --enable-unsafe-webgpu)').toBe(true);
    const json = {
      rows,
      cols,
      options: params.options,
      codes: Array.from(params.codes as Uint8Array),
      scales: Array.from(params.scales as Uint16Array),
      offsets: Array.from(params.offsets as Uint16Array),
    };
    const result = (await page.evaluate(
      ([p, xs, nn]) => (window as unknown as { runKernel(a: unknown, b: number[], c: number): Promise<unknown> }).runKernel(p, xs, nn),
      [json, Array.from(x), n] as const,
    )) as { y: number[]; adapter: string };
    console.log(`[browser] ${await browser.version()}: ${result.adapter}`);
    const dense = codec.decode(params);
    const worst = worstOutputError(dense, rows, cols, x, result.y, n);
    expect(result.y.length).toBe(n * rows);
    expect(worst).toBeLessThanOrEqual(1e-5);
    await page.close();
  }, 120_000);
});
