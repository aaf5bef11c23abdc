import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compress, loadModel, sweep } from '@ultrasketch/pipeline';
import { createSession, openModel } from '@ultrasketch/pipeline/browser';
import { type SketchParams, occupancy, sketchGroups } from '@ultrasketch/sketch-core';
import { type Browser, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireShared } from '../../../test/require-shared.js';

/**
 * The built demo in a real browser: `vite build` into a temp dir, served by a tiny node:http server on 127.0.0.1,
 * driven by Debian's headless Chromium (playwright-core). The page opens the embedded default bundle by itself,
 * generates greedily, and its token ids must equal runtime-node's greedy ids computed here on the same file —
 * on WebGPU (SwiftShader), and on the CPU WebAssembly fallback with WebGPU switched off. Fails (does not skip)
 * when Chromium or its WebGPU adapter is missing; CI installs chromium and libvulkan1 (scripts/test.sh).
 * With ../shared: the float model side by side, the sketch state-occupancy histogram and the Pareto plot of a
 * sweep report, each against the library's own figures. Screenshots go to test-artifacts/ (CI artifacts).
 */
const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const DEMO = join(ROOT, 'apps/demo');
const BUNDLE = join(ROOT, 'models/stories3M-littlebit-0.55.usk');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts');
const PROMPT = 'Once upon a time';
const NEW_TOKENS = 24;
// The float model for the side-by-side test (made into a float .usk bundle here: a page opens bundles only).
const FLOAT_MODEL = join(ROOT, '../shared/models/stories3M/stories3M-q80.bin');
const HAVE_SHARED = requireShared('demo side by side', [FLOAT_MODEL]);
// A small model for the sketch bundle of the occupancy test (compressed here in well under a second).
const SKETCH_MODEL = join(ROOT, '../shared/models/stories260K/stories260K.bin');
const HAVE_SKETCH_MODEL = requireShared('demo state occupancy', [SKETCH_MODEL]);
const EVAL_TEXT = join(ROOT, '../shared/data/tinystories/eval.txt');
const HAVE_SWEEP_INPUTS = requireShared('demo Pareto plot', [SKETCH_MODEL, EVAL_TEXT]);
// The flags runtime-webgpu's in-page test launches with (packages/runtime-webgpu/test/browser.test.ts):
// --enable-unsafe-webgpu gives headless Chromium without a GPU a SwiftShader adapter.
const WEBGPU_FLAGS = ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const NO_WEBGPU_FLAGS = [...WEBGPU_FLAGS.filter((f) => f !== '--enable-unsafe-webgpu'), '--disable-webgpu'];

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.usk': 'application/octet-stream' };

let out: string;
let server: Server;
let base: string;
let expected: number[];
let accounting: { bpwLinears: number; bitsPerParam: number };
let storedPerplexity: number;
const browsers: Browser[] = [];

/** runtime-node's greedy ids for the prompt, with the page's rules (stop ids end the text; steps count the prompt). */
async function referenceTokens(bytes: Uint8Array): Promise<number[]> {
  const model = openModel(bytes, { name: 'reference.usk' });
  const prompt = model.tokenizer.encode(PROMPT, { bos: true, eos: false });
  const session = createSession(model, { contextLength: prompt.length + NEW_TOKENS, threads: 1 });
  const stop = new Set(model.tokenizerInfo.stopIds);
  const ids: number[] = [];
  for await (const step of session.generate(prompt, { steps: prompt.length - 1 + NEW_TOKENS, temperature: 0, stopToken: -1 })) {
    if (step.pos + 1 < prompt.length) continue;
    if (stop.has(step.next)) break;
    ids.push(step.next);
  }
  session.dispose();
  return ids;
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it (apt-get install -y chromium libvulkan1, as scripts/test.sh does) or set CHROMIUM_PATH`);
  }
  out = mkdtempSync(join(tmpdir(), 'ultrasketch-demo-'));
  try {
    execFileSync(process.execPath, [join(DEMO, 'node_modules/vite/bin/vite.js'), 'build', '--outDir', out, '--emptyOutDir', '--logLevel', 'warn'], {
      cwd: DEMO,
      stdio: 'pipe',
      encoding: 'utf8',
    });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`vite build of apps/demo failed:\n${e.stdout ?? ''}\n${e.stderr ?? e.message}`);
  }
  const bytes = new Uint8Array(readFileSync(BUNDLE));
  const opened = openModel(bytes);
  accounting = opened.loaded.accounting;
  storedPerplexity = opened.loaded.quality!.perplexity as number;
  expected = await referenceTokens(bytes);
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const file = normalize(join(out, url.pathname === '/' ? 'index.html' : decodeURIComponent(url.pathname)));
    if (!file.startsWith(out + sep) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/`;
}, 120_000);

afterAll(async () => {
  for (const b of browsers) await b.close();
  await new Promise((done) => (server ? server.close(done) : done(undefined)));
  if (out) rmSync(out, { recursive: true, force: true });
});

async function launch(args: string[]): Promise<Browser> {
  // playwright gives the browser a fresh temporary profile (--user-data-dir) of its own.
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
  browsers.push(browser);
  return browser;
}

let gpuBrowser: Promise<Browser> | undefined;
/** One browser with WebGPU for every test that wants it (whichever of them runs first launches it). */
function webgpuBrowser(): Promise<Browser> {
  gpuBrowser ??= launch(WEBGPU_FLAGS);
  return gpuBrowser;
}

interface PageRun {
  page: Page;
  state: string;
  status: string;
  error: string;
  tokens: number[];
  compareTokens: number[];
  sameTokens: number | null;
  text: string;
  backend: string | null;
  backendDetail: string;
  fallback: string | null;
  figures: Record<string, number>;
  /** Every URL the page asked for that is not on the demo's own server (must stay empty: offline). */
  foreign: string[];
  /** Requests that failed or got an HTTP error (must stay empty: the build holds everything the page needs). */
  failed: string[];
  logs: string[];
}

/** Open the demo, wait for the default bundle, generate NEW_TOKENS greedily, and read what the page shows. */
async function runDemo(browser: Browser, query = '', beforeGenerate?: (page: Page) => Promise<void>): Promise<PageRun> {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
  const logs: string[] = [];
  const foreign: string[] = [];
  page.on('console', (m) => logs.push(m.text()));
  page.on('pageerror', (e) => logs.push(String(e)));
  const failed: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(base)) foreign.push(r.url());
  });
  page.on('requestfailed', (r) => failed.push(r.url()));
  page.on('response', (r) => {
    if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`);
  });
  await page.goto(base + query);
  await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout: 30_000 }).catch(() => {
    throw new Error(`the demo did not open its default bundle: ${logs.join(' | ')}`);
  });
  if (beforeGenerate) await beforeGenerate(page);
  await page.fill('#tokens', String(NEW_TOKENS));
  await page.fill('#temperature', '0');
  if (!(await page.isDisabled('#generate'))) await page.click('#generate');
  await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 60_000 }).catch(() => {
    throw new Error(`generation did not finish: ${logs.join(' | ')}`);
  });
  const read = await page.evaluate(() => {
    const q = (s: string) => document.querySelector<HTMLElement>(s);
    const figures: Record<string, number> = {};
    for (const el of document.querySelectorAll<HTMLElement>('[data-figure]')) figures[el.dataset.figure!] = Number(el.dataset.value);
    return {
      state: q('#status')!.dataset.state!,
      status: q('#status')!.textContent ?? '',
      error: q('#error')!.hidden ? '' : (q('#error')!.textContent ?? ''),
      tokens: JSON.parse(q('#output')!.dataset.tokens ?? '[]') as number[],
      compareTokens: JSON.parse(q('#compare-output')!.dataset.tokens ?? '[]') as number[],
      sameTokens: q('#agreement')!.hidden ? null : Number(q('#agreement')!.dataset.sameTokens),
      text: q('#output')!.textContent ?? '',
      backend: q('[data-backend]')?.dataset.backend ?? null,
      backendDetail: q('[data-backend]')?.textContent ?? '',
      fallback: q('[data-fallback]')?.textContent ?? null,
      figures,
    };
  });
  return { page, ...read, foreign, failed, logs };
}

function expectBitFigures(run: PageRun): void {
  // Both figures of the bundle's accounting, as the page shows them (and the linears really below one bit).
  expect(run.figures.bpwLinears).toBeCloseTo(accounting.bpwLinears, 10);
  expect(run.figures.bitsPerParam).toBeCloseTo(accounting.bitsPerParam, 10);
  expect(run.figures.bpwLinears).toBeLessThan(1);
  // the quality the bundle stores (its eval perplexity when it was made), as the page shows it
  expect(run.figures.perplexity).toBeCloseTo(storedPerplexity, 10);
  expect(run.figures.tokensPerSecond).toBeGreaterThan(0);
  expect(run.figures.memory).toBeGreaterThan(0);
}

describe('the built demo in headless Chromium', () => {
  it('opens the default bundle, generates runtime-node\'s greedy tokens on WebGPU, shows both bit figures', async () => {
    expect(expected.length).toBe(NEW_TOKENS);
    const run = await runDemo(await webgpuBrowser());
    mkdirSync(ARTIFACTS, { recursive: true });
    await run.page.screenshot({ path: join(ARTIFACTS, 'demo.png'), fullPage: true });
    expect(run.error, `the page failed: ${run.logs.join(' | ')}`).toBe('');
    expect(run.state).toBe('done');
    // No adapter means the page fell back to the CPU: that is a failure here, not a skip.
    expect(run.backend, `the page did not run on WebGPU (${run.fallback ?? 'no reason shown'})`).toBe('webgpu');
    expect(run.fallback).toBeNull();
    expect(run.tokens).toEqual(expected);
    expect(run.text.startsWith(PROMPT)).toBe(true);
    expect(run.text.length).toBeGreaterThan(PROMPT.length + NEW_TOKENS);
    expectBitFigures(run);
    expect(await run.page.locator('#plot svg rect').count()).toBeGreaterThan(0);
    expect(run.foreign).toEqual([]);
    expect(run.failed).toEqual([]);
  }, 90_000);

  it('with WebGPU switched off, the CPU WebAssembly fallback runs and produces the same tokens', async () => {
    const browser = await launch(NO_WEBGPU_FLAGS);
    const run = await runDemo(browser);
    expect(run.error, `the page failed: ${run.logs.join(' | ')}`).toBe('');
    expect(run.backend).toBe('cpu');
    // computed off the page's thread (the worker's bundle is part of the build)
    expect(run.backendDetail).toMatch(/in a Web Worker/);
    expect(run.fallback, 'the page says why it did not use WebGPU').toMatch(/navigator\.gpu|adapter/);
    expect(run.tokens).toEqual(expected);
    expectBitFigures(run);
    expect(run.foreign).toEqual([]);

    // Stop in the middle of a long generation, then generate again: the worker must have stopped (one KV cache),
    // so the second run gives the same greedy tokens again.
    const page = run.page;
    await page.fill('#tokens', '400');
    await page.click('#generate');
    await page.waitForFunction(() => JSON.parse(document.getElementById('output')!.dataset.tokens ?? '[]').length >= 3, undefined, { timeout: 30_000 });
    await page.click('#stop');
    await page.waitForSelector('#status[data-state="done"]', { timeout: 30_000 });
    expect(await page.textContent('#status')).toMatch(/\(stopped\)/);
    const stopped = JSON.parse((await page.getAttribute('#output', 'data-tokens')) ?? '[]') as number[];
    expect(stopped.length).toBeLessThan(400);
    expect(stopped.slice(0, NEW_TOKENS)).toEqual(expected.slice(0, Math.min(stopped.length, NEW_TOKENS)));
    await page.fill('#tokens', String(NEW_TOKENS));
    await page.click('#generate');
    await page.waitForSelector('#status[data-state="done"]', { timeout: 30_000 });
    expect(JSON.parse((await page.getAttribute('#output', 'data-tokens')) ?? '[]')).toEqual(expected);

    // Asking for WebGPU where there is none: a typed error with its hint on the page, not a silent fallback.
    const forced = await runDemo(browser, '?backend=webgpu');
    expect(forced.state).toBe('error');
    expect(forced.error).toMatch(/\[E_UNSUPPORTED\] WebGPU is not available/);
    expect(forced.error).toMatch(/What to do: choose the CPU backend/);
    expect(forced.tokens).toEqual([]);
  }, 90_000);

  it.runIf(HAVE_SHARED)('side by side with the float model (a float bundle): each column generates runtime-node\'s greedy tokens for its bundle', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ultrasketch-demo-float-'));
    try {
      const floatPath = join(dir, 'stories3M-float.usk');
      const { bytes } = await compress({ model: FLOAT_MODEL, codec: 'float', output: floatPath });
      const floatExpected = await referenceTokens(bytes);
      const floatBits = openModel(bytes).loaded.accounting;
      const run = await runDemo(await webgpuBrowser(), '', async (page) => {
        await page.setInputFiles('#compare-file', floatPath);
        await page.waitForSelector('[data-figure="compareBpwLinears"]', { state: 'attached', timeout: 30_000 });
      });
      expect(run.error, `the page failed: ${run.logs.join(' | ')}`).toBe('');
      expect(run.backend).toBe('webgpu');
      expect(run.tokens).toEqual(expected);
      expect(run.compareTokens).toEqual(floatExpected);
      let same = 0;
      while (same < expected.length && expected[same] === floatExpected[same]) same++;
      expect(run.sameTokens).toBe(same);
      expect(run.figures.compareBpwLinears).toBeCloseTo(floatBits.bpwLinears, 10);
      expect(run.figures.compareBitsPerParam).toBeCloseTo(floatBits.bitsPerParam, 10);
      expect(run.figures.compareBpwLinears).toBeGreaterThan(run.figures.bpwLinears!);
      expect(run.figures.compareMemory).toBeGreaterThan(0);
      mkdirSync(ARTIFACTS, { recursive: true });
      await run.page.screenshot({ path: join(ARTIFACTS, 'demo-side-by-side.png'), fullPage: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  it.runIf(HAVE_SKETCH_MODEL)('a float checkpoint from the file picker: a typed error with its hints; then a sketch bundle: the state-occupancy histogram equals sketch-core\'s occupancy() of its first matrix', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ultrasketch-demo-sketch-'));
    try {
      const path = join(dir, 'stories260K-sketch.usk');
      const { bytes } = await compress({ model: SKETCH_MODEL, codec: 'sketch', codecOptions: { bpw: 1, hash: 'mixed' }, output: path });
      const model = openModel(bytes);
      const [name, weight] = [...model.bundle.weights].find(([, w]) => w.entry.codec === 'sketch')!;
      const groups = sketchGroups(weight.params as SketchParams);
      expect(groups.length).toBe(1);
      const family = groups[0]!.family!;
      const stats = occupancy(family);
      const page = await (await webgpuBrowser()).newPage({ viewport: { width: 1100, height: 1000 } });
      const logs: string[] = [];
      page.on('pageerror', (e) => logs.push(String(e)));
      await page.goto(base);
      await page.waitForSelector('#status[data-state="ready"]', { timeout: 30_000 });
      // First a float checkpoint, which is not a bundle: the typed error, its hint and the page's own, no model.
      await page.setInputFiles('#file', SKETCH_MODEL);
      await page.waitForSelector('#status[data-state="error"]', { timeout: 30_000 });
      const error = await page.textContent('#error');
      expect(error).toMatch(/\[E_BAD_MAGIC\] stories260K\.bin: these bytes are not a \.usk bundle/);
      expect(error).toMatch(/What to do: open a bundle made by `ultrasketch compress`/);
      expect(error).toMatch(/In this page: a float model opens here as a float bundle/);
      expect(await page.isDisabled('#generate')).toBe(true);
      await page.setInputFiles('#file', path);
      await page.waitForSelector('#occupancy[data-weight] svg', { state: 'attached', timeout: 30_000 }).catch(() => {
        throw new Error(`no occupancy histogram: ${logs.join(' | ')}`);
      });
      const shown = await page.evaluate(() => ({ ...document.getElementById('occupancy')!.dataset, bars: document.querySelectorAll('#occupancy svg rect').length }));
      expect(shown.weight).toBe(name);
      expect(Number(shown.states)).toBe(family.width * family.depth);
      expect(Number(shown.items)).toBe(stats.items * family.depth);
      expect(Number(shown.empty)).toBeCloseTo(stats.emptyFraction, 12);
      expect(Number(shown.maxLoad)).toBe(stats.maxLoad);
      expect(shown.bars).toBeGreaterThan(1);
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.locator('#occupancy-panel').screenshot({ path: join(ARTIFACTS, 'demo-occupancy.png') });
      await page.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it.runIf(HAVE_SWEEP_INPUTS)('a sweep report: the Pareto plot shows its measured points and frontier; a file that is not one, a typed error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ultrasketch-demo-sweep-'));
    try {
      // A real sweep.json (stories260K, one evaluation window: about 2 s)
      const result = await sweep({
        model: loadModel(SKETCH_MODEL),
        codecs: ['rtn:4', 'rtn:2', 'binary', 'sketch'],
        bpw: [0.5, 1.0],
        evalText: readFileSync(EVAL_TEXT, 'utf8'),
        evalWindows: 1,
        window: 128,
        outDir: dir,
        command: 'demo e2e sweep',
      });
      // One more point, dominated on purpose (more bits than rtn:4 and a worse perplexity): never on the frontier.
      const rtn4 = result.rows.find((r) => r.label === 'rtn:4')!;
      const dominated = { ...rtn4, label: 'dominated', bpwLinears: rtn4.bpwLinears! * 1.5, perplexity: rtn4.perplexity! * 10 };
      const rows = [...result.rows, dominated];
      writeFileSync(join(dir, 'sweep.json'), JSON.stringify({ ...result, rows }));
      const points = rows.filter((r) => r.codec !== 'float32' && r.status === 'ok' && Number.isFinite(r.perplexity ?? Number.NaN));
      // the frontier, independently: a point is on it when every point with fewer or equal bits has a higher perplexity
      const frontier = points
        .filter((p) => points.every((q) => q === p || q.bpwLinears! > p.bpwLinears! || q.perplexity! > p.perplexity!))
        .sort((a, b) => a.bpwLinears! - b.bpwLinears!)
        .map((p) => (p.bpwTarget === null ? p.label : `${p.label}@${p.bpwTarget}`));
      expect(frontier.length).toBeGreaterThan(1);
      expect(frontier).not.toContain('dominated');
      const page = await (await webgpuBrowser()).newPage({ viewport: { width: 1100, height: 1000 } });
      await page.goto(base);
      await page.waitForSelector('#status[data-state="ready"]', { timeout: 30_000 });
      await page.setInputFiles('#sweep-file', join(dir, 'sweep.json'));
      await page.waitForSelector('#pareto[data-frontier] svg', { state: 'attached', timeout: 30_000 });
      const shown = await page.evaluate(() => ({ ...document.getElementById('pareto')!.dataset, dots: document.querySelectorAll('#pareto svg > circle').length }));
      expect(Number(shown.points)).toBe(points.length);
      expect(JSON.parse(shown.frontier!)).toEqual(frontier);
      expect(shown.dots).toBeGreaterThanOrEqual(points.length);
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.locator('#pareto-panel').screenshot({ path: join(ARTIFACTS, 'demo-pareto.png') });

      // A bundle's provenance JSON is JSON but not a sweep report: the page says so, with the hint.
      const notSweep = join(dir, 'not-a-sweep.json');
      writeFileSync(notSweep, JSON.stringify({ tool: 'ultrasketch', rows: 'none' }));
      await page.setInputFiles('#sweep-file', notSweep);
      await page.waitForSelector('#status[data-state="error"]', { timeout: 10_000 });
      const error = await page.textContent('#error');
      expect(error).toMatch(/\[E_BAD_ARGUMENT\] not-a-sweep\.json is not a sweep report/);
      expect(error).toMatch(/What to do: open the sweep\.json that `ultrasketch sweep` writes/);
      await page.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
