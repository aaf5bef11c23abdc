import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { registerAll as registerBaselines } from '@ultrasketch/baselines';
import { Rng, getCodec } from '@ultrasketch/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { worstOutputError } from '../../runtime-node/test/oracle.js';
import { type PageHost, ROOT, hostPage, newest, openPage, requireChromium, testPage } from './browser-page.js';

/**
 * The package works in a real page: headless Chromium (Debian's, with its SwiftShader WebGPU) loads the
 * package's BUILT ESM bundle (dist/, and its workspace dependencies' dist/ through an import map — no CDN, no
 * bundler) from a tiny HTTP server on 127.0.0.1, runs one kernel (rtn 4-bit, 33×130, a 3-token batch) on
 * navigator.gpu, and the numbers are checked here against the codec's decode() oracle.
 * Fails (does not skip) when Chromium or its WebGPU adapter is missing; CI installs chromium (scripts/test.sh).
 * The server and the browser: browser-page.ts.
 */
const PACKAGES = ['runtime-webgpu', 'core', 'format', 'model', 'baselines', 'littlebit', 'sketch-core'];

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

const PAGE = testPage(
  PACKAGES,
  /* js */ `
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
`,
);

let host: PageHost;

beforeAll(async () => {
  requireChromium();
  ensureBuilt();
  host = await hostPage(PAGE, PACKAGES);
}, 120_000);

afterAll(async () => {
  await host?.close();
});

describe('in headless Chromium', () => {
  it('the built package runs an rtn kernel on navigator.gpu and gets the oracle’s numbers', async () => {
    registerBaselines();
    const codec = getCodec('rtn');
    const [rows, cols, n] = [33, 130, 3];
    const rng = new Rng(7);
    const params = codec.encode(rng.normalArray(rows * cols), rows, cols, codec.resolveOptions({ bits: 4, groupSize: 32 }), { name: 'page', seed: 1 });
    const x = rng.normalArray(n * cols);
    const { page } = await openPage(host, 'the package', 30_000);
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
    console.log(`[browser] ${await host.browser.version()}: ${result.adapter}`);
    const dense = codec.decode(params);
    const worst = worstOutputError(dense, rows, cols, x, result.y, n);
    expect(result.y.length).toBe(n * rows);
    expect(worst).toBeLessThanOrEqual(1e-5);
    await page.close();
  }, 120_000);
});
