/**
 * `ultrasketch bench` on the BUILT command, with the real stories260K checkpoint (and a bundle compressed from it
 * here): prefill / generate tokens/s as ratios to a float baseline run in the same process, on runtime-node and
 * on runtime-webgpu. The webgpu cases run on whatever adapter Dawn finds (nodeGpu() falls back to SwiftShader);
 * a machine with none makes them FAIL (the command exits non-zero), never skip.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HAVE_SHARED, MODELS, cli, ensureBuilt, parseOneObject } from './helpers.js';

const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
// As scripts/test.sh does; the command's nodeGpu() would also find SwiftShader on its own.
const GPU_ENV: Record<string, string> = process.env.VK_ICD_FILENAMES ? {} : { VK_ICD_FILENAMES: SWIFTSHADER_ICD };

let tmp: string;
let bundle: string;
beforeAll(() => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'ultrasketch-bench-'));
  bundle = join(tmp, 'rtn8.usk');
  if (HAVE_SHARED) {
    const r = cli(['compress', MODELS.stories260K, '--codec', 'rtn', '--bits', '8', '-o', bundle, '-q']);
    if (r.code !== 0) throw new Error(`compress failed: ${r.stderr}`);
  }
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const FAST = ['--tokens', '3', '--runs', '2', '--warmup', '1', '--prompt', 'Once upon a time there was a cat.'];

type Speed = { tokensPerSecond: number; samples: number[] };
type Report = {
  model: { path: string; kind: string; codecs?: string[] };
  baseline: { kind: string; path: string; description: string };
  runtime: string;
  kernels: { model: string; baseline: string };
  device: { cpu: string; cores: number; node: string; adapter: null | { vendor: string; architecture: string; software: boolean } };
  correctnessOnly: boolean;
  note: string | null;
  settings: { tokens: number; promptTokens: number; runs: number; warmup: number };
  results: { model: { prefill: Speed; generate: Speed }; baseline: { prefill: Speed; generate: Speed } };
  ratio: { prefill: number; generate: number };
};

/** The numbers a report must have, whatever the runtime: positive, finite, consistent with each other. */
function checkNumbers(out: Report, runs: number): void {
  for (const who of ['model', 'baseline'] as const) {
    for (const what of ['prefill', 'generate'] as const) {
      const s = out.results[who][what];
      expect(s.samples).toHaveLength(runs);
      for (const v of s.samples) {
        expect(Number.isFinite(v)).toBe(true);
        expect(v).toBeGreaterThan(0);
      }
      const sorted = [...s.samples].sort((a, b) => a - b);
      expect(s.tokensPerSecond).toBeGreaterThanOrEqual(sorted[0]!);
      expect(s.tokensPerSecond).toBeLessThanOrEqual(sorted[sorted.length - 1]!);
    }
  }
  for (const what of ['prefill', 'generate'] as const) {
    expect(Number.isFinite(out.ratio[what])).toBe(true);
    expect(out.ratio[what]).toBeGreaterThan(0);
    expect(out.ratio[what]).toBeCloseTo(out.results.model[what].tokensPerSecond / out.results.baseline[what].tokensPerSecond, 10);
  }
}

describe.skipIf(!HAVE_SHARED)('ultrasketch bench', () => {
  it('--runtime node, a checkpoint: the same weights are the baseline; one JSON object with the ratio', () => {
    const r = cli(['bench', MODELS.stories260K, ...FAST, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = parseOneObject(r.stdout) as unknown as Report;
    expect(out.runtime).toBe('node');
    expect(out.model).toMatchObject({ path: MODELS.stories260K, kind: 'checkpoint' });
    expect(out.baseline).toMatchObject({ kind: 'same-weights', path: MODELS.stories260K });
    expect(out.kernels.baseline).toMatch(/^(wasm|js)$/);
    expect(out.device.adapter).toBeNull();
    expect(out.device.cores).toBeGreaterThan(0);
    expect(out.correctnessOnly).toBe(false);
    expect(out.note).toBeNull();
    // BOS + "Once upon a time there was a cat." with stories260K's 512-token vocabulary
    expect(out.settings).toMatchObject({ tokens: 3, runs: 2, warmup: 1 });
    expect(out.settings.promptTokens).toBeGreaterThan(5);
    checkNumbers(out, 2);
    expect(r.stderr).toMatch(/bench: /); // progress and notes on stderr, never on stdout
  }, 60_000);

  it('--runtime node, a bundle: the decoded bundle by default, the float checkpoint with --baseline', () => {
    const dec = cli(['bench', bundle, ...FAST, '--json']);
    expect(dec.code, dec.stderr).toBe(0);
    const a = parseOneObject(dec.stdout) as unknown as Report;
    expect(a.model).toMatchObject({ kind: 'bundle', codecs: ['rtn'] });
    expect(a.baseline).toMatchObject({ kind: 'decoded-bundle', path: bundle });
    expect(a.kernels.model).toBe('fused');
    // generated tokens ran as one wasm call each (runtime-node's decode program), and the report says so
    expect((a as unknown as { runtimeDescription: { model: string } }).runtimeDescription.model).toMatch(/decode program/);
    checkNumbers(a, 2);

    const ck = cli(['bench', bundle, ...FAST, '--baseline', MODELS.stories260K, '--json']);
    expect(ck.code, ck.stderr).toBe(0);
    const b = parseOneObject(ck.stdout) as unknown as Report;
    expect(b.baseline).toMatchObject({ kind: 'checkpoint', path: MODELS.stories260K });
    checkNumbers(b, 2);
  }, 90_000);

  it('the human table names both figures as ratios', () => {
    const r = cli(['bench', MODELS.stories260K, '--tokens', '2', '--runs', '1', '--warmup', '0', '-q']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^prefill \d+ tok +[\d.]+ tok\/s vs [\d.]+ tok\/s {2}ratio [\d.]+×$/m);
    expect(r.stdout).toMatch(/^generate 2 tok +[\d.]+ tok\/s vs [\d.]+ tok\/s {2}ratio [\d.]+×$/m);
    expect(r.stderr).toBe(''); // -q: no progress, no notes
  }, 60_000);

  it('--runtime webgpu: adapter info in the report; a software adapter is flagged correctness-only', () => {
    const r = cli(['bench', bundle, ...FAST, '--runtime', 'webgpu', '--json'], GPU_ENV);
    // No adapter at all: the command fails (E_UNSUPPORTED no-adapter) and so does this test.
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/webgpu adapter: /);
    const out = parseOneObject(r.stdout) as unknown as Report;
    expect(out.runtime).toBe('webgpu');
    expect(out.kernels).toEqual({ model: 'fused', baseline: 'webgpu-f32' });
    expect(out.device.adapter).not.toBeNull();
    const adapter = out.device.adapter!;
    console.log(`[bench] webgpu adapter: ${adapter.vendor} / ${adapter.architecture} (software: ${adapter.software})`);
    expect(out.correctnessOnly).toBe(adapter.software);
    if (/swiftshader/i.test(adapter.architecture)) {
      expect(adapter.software).toBe(true);
      expect(out.note).toMatch(/correctness-grade numbers, not GPU speed/);
      expect(r.stderr).toMatch(/correctness-grade numbers/);
    }
    checkNumbers(out, 2);
  }, 120_000);

  it('--runtime webgpu, the text report says correctness-grade on a software adapter', () => {
    const r = cli(['bench', MODELS.stories260K, '--runtime', 'webgpu', '--tokens', '2', '--runs', '1', '--warmup', '0'], GPU_ENV);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^device +webgpu adapter /m);
    if (/software/.test(r.stderr)) expect(r.stdout).toMatch(/^NOTE +.*correctness-grade numbers, not GPU speed/m);
  }, 120_000);

  it('bad flags: usage errors (exit 2); impossible values: typed errors (exit 1)', () => {
    const runs0 = cli(['bench', MODELS.stories260K, '--runs', '0']);
    expect(runs0.code).toBe(2);
    expect(runs0.stderr).toMatch(/--runs must be an integer ≥ 1, got '0'/);
    const rt = cli(['bench', MODELS.stories260K, '--runtime', 'cuda']);
    expect(rt.code).toBe(2);
    expect(rt.stderr).toMatch(/--runtime must be one of node, webgpu/);
    const typo = cli(['bench', MODELS.stories260K, '--token', '3']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/did you mean --tokens\?/);

    const tooMany = cli(['bench', MODELS.stories260K, '--tokens', '100000']);
    expect(tooMany.code).toBe(1);
    expect(tooMany.stderr).toMatch(/^error \[E_BAD_ARGUMENT\]: --tokens: --tokens 100000 is more than the model's seq_len 512/m);
    // a baseline of another model (stories3M for a stories260K bundle) is refused before anything runs
    const other = cli(['bench', bundle, '--baseline', MODELS.stories3M, '--tokens', '2']);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/^error \[E_SHAPE_MISMATCH\]: .*the baseline's config differs from the model's: dim/m);
    expect(other.stdout).toBe('');
  }, 60_000);

  it('a missing model or baseline file: E_FILE_NOT_FOUND, exit 1, no stack trace', () => {
    const missing = cli(['bench', join(tmp, 'nope.bin')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error \[E_FILE_NOT_FOUND\]: .*nope\.bin/m);
    expect(missing.stderr).not.toMatch(/^\s+at .+/m);
    const base = cli(['bench', bundle, '--baseline', join(tmp, 'float.bin'), '--tokens', '2']);
    expect(base.code).toBe(1);
    expect(base.stderr).toMatch(/^error \[E_FILE_NOT_FOUND\]: .*float\.bin/m);
  }, 60_000);
});
