/**
 * `--runtime webgpu` on the BUILT command: greedy tokens and one window's NLL of stories260K match the
 * llama2.c references. nodeGpu() falls back to SwiftShader by itself when no GPU adapter is found; a machine
 * with neither makes these tests FAIL (the command exits non-zero), never skip.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { EVAL_TEXT, HAVE_SHARED, MODELS, REFERENCE, cli, ensureBuilt, parseOneObject, readLines } from './helpers.js';

beforeAll(() => {
  ensureBuilt();
});

describe.skipIf(!HAVE_SHARED)('ultrasketch --runtime webgpu', () => {
  it('generate: greedy tokens equal the llama2.c reference', () => {
    const r = cli(['generate', MODELS.stories260K, '--runtime', 'webgpu', '--temperature', '0', '--steps', '64', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/webgpu adapter: /);
    const out = parseOneObject(r.stdout);
    const expected = readLines(REFERENCE('stories260K', 'greedy_tokens.txt')).slice(0, 64).map(Number);
    expect(out.tokens).toEqual(expected);
    expect(out.runtime).toBe('webgpu');
    expect(out.kernels).toBe('webgpu');
  }, 60_000);

  it('eval: one window\'s mean NLL matches the reference within 1e-4', () => {
    const r = cli(['eval', MODELS.stories260K, '--text', EVAL_TEXT, '--runtime', 'webgpu', '--windows', '1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/webgpu adapter: /);
    const out = parseOneObject(r.stdout);
    const expected = Number(readLines(REFERENCE('stories260K', 'window_nll.txt'))[0]!.trim().split(/\s+/)[0]);
    expect(out.windows).toBe(1);
    expect(Math.abs((out.meanNll as number) - expected)).toBeLessThan(1e-4);
    expect(String(out.runtime)).toMatch(/^runtime-webgpu/);
  }, 60_000);

  it('--kernels is noted as ignored with --runtime webgpu; an unknown runtime is a usage error', () => {
    const bad = cli(['generate', MODELS.stories260K, '--runtime', 'cuda', '--temperature', '0', '--steps', '4']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--runtime must be one of node, webgpu/);
    const r = cli(['generate', MODELS.stories260K, '--runtime', 'webgpu', '--kernels', 'js', '--temperature', '0', '--steps', '4', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/--kernels js applies to --runtime node; ignored with --runtime webgpu/);
  }, 60_000);
});
