import { type CodecParams, ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { BinaryParams, FloatParams, RtnParams, VqParams } from '@ultrasketch/baselines';
import type { LittleBitParams } from '@ultrasketch/littlebit';
import type { HashedNetsParams, SketchParams } from '@ultrasketch/sketch-core';
import { binaryKernel, floatKernel, rtnKernel } from './kernels/baselines.js';
import { littlebitKernel } from './kernels/littlebit.js';
import { hashednetsKernel, sketchKernel } from './kernels/sketch.js';
import { vqKernel } from './kernels/vq.js';
import type { GpuLinear, KernelBuildContext } from './linear.js';

/**
 * WebGPU kernel registry: one factory per codec id, turning the codec's stored parameters into a `GpuLinear`
 * that computes from those parameters. Like the codec registry it lives on globalThis under a Symbol.for key
 * (two copies of this package share it) and registration is explicit and idempotent.
 */
export type GpuKernelFactory = (params: CodecParams, build: KernelBuildContext) => GpuLinear;

const KEY = Symbol.for('@ultrasketch/runtime-webgpu/kernel-registry/v1');

function registry(): Map<string, GpuKernelFactory> {
  const g = globalThis as unknown as Record<symbol, Map<string, GpuKernelFactory> | undefined>;
  return (g[KEY] ??= new Map());
}

export function registerGpuKernel(codecId: string, factory: GpuKernelFactory): void {
  if (!registry().has(codecId)) registry().set(codecId, factory);
}

export function getGpuKernel(codecId: string, source?: string): GpuKernelFactory {
  const k = registry().get(codecId);
  if (!k) {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `runtime-webgpu has no kernel for codec "${codecId}"`, {
      ...(source === undefined ? {} : { source }),
      hint: 'call registerAllGpuKernels() from @ultrasketch/runtime-webgpu, or upgrade UltraSketch',
    });
  }
  return k;
}

export function listGpuKernels(): string[] {
  return [...registry().keys()].sort();
}

/** Register the WebGPU kernels of every codec this runtime supports. Explicit and idempotent. */
export function registerAllGpuKernels(): void {
  registerGpuKernel('float', (p, b) => floatKernel(p as FloatParams, b));
  registerGpuKernel('rtn', (p, b) => rtnKernel(p as RtnParams, b));
  registerGpuKernel('binary', (p, b) => binaryKernel(p as BinaryParams, b));
  registerGpuKernel('sketch', (p, b) => sketchKernel(p as SketchParams, b));
  registerGpuKernel('hashednets', (p, b) => hashednetsKernel(p as HashedNetsParams, b));
  registerGpuKernel('littlebit', (p, b) => littlebitKernel(p as LittleBitParams, b));
  // vq: the embedding/classifier form of compress --embeddings vqK (4-value sub-vectors).
  registerGpuKernel('vq', (p, b) => vqKernel(p as VqParams, b));
}
