import { existsSync, readFileSync } from 'node:fs';
import { create } from 'webgpu';
import { GpuContext, type GpuContextOptions, describeAdapter } from '../src/index.js';

/**
 * Node glue for the real-adapter tests: a `GPU` object from the `webgpu` package (Dawn). On a machine without a
 * GPU, Dawn needs a Vulkan driver: SwiftShader from Debian's chromium package (../shared/docs/toolchain.md).
 * scripts/test.sh exports VK_ICD_FILENAMES; when it is unset and SwiftShader is installed, it is set here (the
 * Vulkan loader reads it when Dawn creates its instance, after this module runs).
 *
 * These tests FAIL — they never skip — when no adapter is found, and log the adapter they ran on.
 */
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;

let gpu: GPU | undefined;
export function nodeGpu(): GPU {
  gpu ??= create([]) as GPU;
  return gpu;
}

let logged = false;
/** A device context on the real adapter; throws (failing the test) when there is none. */
export async function gpuContext(options: GpuContextOptions = {}): Promise<GpuContext> {
  const ctx = await GpuContext.create(nodeGpu(), options).catch((err: Error) => {
    throw new Error(
      `no WebGPU adapter: ${err.message}. The WebGPU suite needs one: install Debian's chromium (SwiftShader) and run with VK_ICD_FILENAMES=${SWIFTSHADER_ICD}`,
    );
  });
  if (!logged) {
    logged = true;
    console.log(`[webgpu] adapter: ${describeAdapter(ctx.adapter)}; binding limit ${ctx.limits.bindingBytes} bytes, workgroup memory ${ctx.limits.workgroupBytes} bytes`);
  }
  return ctx;
}

export const shared = (p: string) => new URL(`../../../../shared/${p}`, import.meta.url);
export const readShared = (p: string) => readFileSync(shared(p));

export function argmax(a: Float32Array, offset = 0, n = a.length - offset): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[offset + i]! > a[offset + best]!) best = i;
  return best;
}

export function maxAbsDiff(a: Float32Array, b: Float32Array, n = Math.min(a.length, b.length)): number {
  let m = 0;
  for (let i = 0; i < n; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** A session that maps a token (at the next position) to its logits: runtime-node's (sync) or WebGPU's (async). */
interface Forwarder {
  forward(tokens: number[]): Float32Array | Promise<Float32Array>;
}

/**
 * Greedy decoding from BOS (token 1) for `steps` positions on both sessions, each fed its own argmax. `worst` is
 * the largest max |logit difference| / max |cpu logit| over the positions where both were fed the same token.
 */
export async function greedyBoth(cpu: Forwarder, gpu: Forwarder, steps: number): Promise<{ tokensCpu: number[]; tokensGpu: number[]; worst: number }> {
  const tokensCpu = [1];
  const tokensGpu = [1];
  let worst = 0;
  for (let pos = 0; pos < steps; pos++) {
    const a = await cpu.forward([tokensCpu[pos]!]);
    const b = await gpu.forward([tokensGpu[pos]!]);
    let scale = 0;
    for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(a[i]!));
    if (tokensCpu[pos] === tokensGpu[pos]) worst = Math.max(worst, maxAbsDiff(a, b) / (scale || 1));
    tokensCpu.push(argmax(a));
    tokensGpu.push(argmax(b));
  }
  return { tokensCpu, tokensGpu, worst };
}
