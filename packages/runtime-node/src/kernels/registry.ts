import { type CodecParams, ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { Linear } from '@ultrasketch/model';
import type { WasmArena } from '../wasm/arena.js';

/**
 * Kernel registry: one fused linear kernel per codec id. A kernel factory turns a codec's stored
 * parameters into a `Linear` that computes y = Ŵ x FROM THOSE PARAMETERS (decoding on the fly, at most one
 * row at a time) — never by expanding Ŵ to a dense matrix, so the memory held for weights tracks the bundle.
 * Like the codec registry it lives on globalThis and registration is explicit and idempotent.
 */
export type KernelFactory = (params: CodecParams, options?: KernelBuildOptions) => Linear;

/** Where a kernel keeps its parameters: `arena` (e.g. a session's own, shared with its worker threads). */
export interface KernelBuildOptions {
  arena?: WasmArena;
}

const KEY = Symbol.for('@ultrasketch/runtime-node/kernel-registry/v1');

function registry(): Map<string, KernelFactory> {
  const g = globalThis as unknown as Record<symbol, Map<string, KernelFactory> | undefined>;
  return (g[KEY] ??= new Map());
}

export function registerKernel(codecId: string, factory: KernelFactory): void {
  if (!registry().has(codecId)) registry().set(codecId, factory);
}

export function getKernel(codecId: string, source?: string): KernelFactory {
  const k = registry().get(codecId);
  if (!k) {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `runtime-node has no kernel for codec "${codecId}"`, {
      ...(source === undefined ? {} : { source }),
      hint: 'call registerAllKernels() from @ultrasketch/runtime-node, or upgrade UltraSketch',
    });
  }
  return k;
}

export function listKernels(): string[] {
  return [...registry().keys()].sort();
}
