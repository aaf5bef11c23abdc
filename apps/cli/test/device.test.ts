import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, HAVE_SHARED, MODELS, ROOT, cli, ensureBuilt, parseOneObject } from './helpers.js';

/**
 * `compress --finetune-steps N --device webgpu` through the built command (issue 15): Dawn through
 * runtime-webgpu's nodeGpu(), SwiftShader here (no GPU). Like the other WebGPU suites these FAIL without an
 * adapter (apt-get install -y chromium libvulkan1); the no-adapter case is made on purpose below by pointing
 * the Vulkan loader at a driver manifest that does not exist.
 */
const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
const GPU_ENV = process.env.VK_ICD_FILENAMES ? {} : existsSync(SWIFTSHADER_ICD) ? { VK_ICD_FILENAMES: SWIFTSHADER_ICD } : {};

let tmp = '';
beforeAll(() => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'ultrasketch-device-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const M = MODELS.stories260K;
const base = ['compress', M, '--codec', 'binary', '--batch', '1', '--seq', '16', '--lr', '0.001'];

describe.skipIf(!HAVE_SHARED)('compress --device', () => {
  it('--device webgpu trains on the adapter and records the device and adapter in the bundle', () => {
    const out = join(tmp, 'gpu.usk');
    const r = cli([...base, '--finetune-steps', '2', '--device', 'webgpu', '-o', out, '--json'], GPU_ENV);
    expect(r.code, r.stderr).toBe(0);
    const report = parseOneObject(r.stdout) as { training: { recipe: Record<string, unknown>; cost: Record<string, unknown> } };
    expect(report.training.recipe).toMatchObject({ steps: 2, device: 'webgpu', gemm: 'wgsl', threads: 1 });
    expect(report.training.cost).toMatchObject({ steps: 2, tokens: 32, adapter: expect.stringMatching(/\S/) });
    expect(r.stderr).toMatch(/finetune: 2 steps \(WebGPU\)/);
  });

  it('no adapter: a typed error naming --device, what is missing and --device cpu; no output file', () => {
    const out = join(tmp, 'none.usk');
    const r = cli([...base, '--finetune-steps', '1', '--device', 'webgpu', '-o', out], { VK_ICD_FILENAMES: join(tmp, 'no-such-icd.json') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--device: cannot train on WebGPU: requestAdapter\(\) found no WebGPU adapter/);
    expect(r.stderr).toMatch(/--device cpu/);
    expect(existsSync(out)).toBe(false);
  });

  it('flag checks: --device needs --finetune-steps; --threads 2 with webgpu names --threads; an unknown device is refused', () => {
    const out = join(tmp, 'flags.usk');
    const a = cli([...base.slice(0, 4), '--device', 'webgpu', '-o', out]);
    expect(a.code).not.toBe(0);
    expect(a.stderr).toMatch(/--device need\(s\) --finetune-steps/);
    const b = cli([...base, '--finetune-steps', '1', '--device', 'webgpu', '--threads', '2', '-o', out], GPU_ENV);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/--threads: 2 threads: worker threads are a CPU trainer feature/);
    const c = cli([...base, '--finetune-steps', '1', '--device', 'tpu', '-o', out]);
    expect(c.code).not.toBe(0);
    expect(c.stderr).toMatch(/tpu/);
    expect(existsSync(out)).toBe(false);
  });

  it('Ctrl-C during a WebGPU run saves the checkpoint; --resume --device cpu finishes it', async () => {
    const ck = join(tmp, 'ck');
    const out = join(tmp, 'resumed.usk');
    const steps = 40;
    const args = [CLI, ...base, '--finetune-steps', String(steps), '--device', 'webgpu', '--checkpoint-dir', ck, '--checkpoint-every', '1', '-o', out];
    const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...GPU_ENV, ULTRASKETCH_DEBUG: '' } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // interrupt once the first checkpoint exists (a few steps in)
    const t0 = Date.now();
    while (!existsSync(join(ck, 'finetune.ckpt')) && Date.now() - t0 < 90_000) await new Promise((r) => setTimeout(r, 100));
    expect(existsSync(join(ck, 'finetune.ckpt')), stderr).toBe(true);
    child.kill('SIGINT');
    const code = await exited;
    expect(code, stderr).toBe(1);
    const m = /finetuning interrupted after step (\d+) of 40; the checkpoint is saved/.exec(stderr);
    expect(m, stderr).not.toBeNull();
    expect(Number(m![1])).toBeLessThan(steps);
    expect(existsSync(out)).toBe(false);
    const r = cli([...base, '--finetune-steps', String(steps), '--device', 'cpu', '--checkpoint-dir', ck, '--resume', '-o', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = parseOneObject(r.stdout) as { training: { recipe: Record<string, unknown>; cost: Record<string, unknown> } };
    expect(report.training.recipe).toMatchObject({ device: 'cpu', steps });
    expect(report.training.cost).toMatchObject({ steps, tokens: steps * 16 });
  }, 180_000);
});
