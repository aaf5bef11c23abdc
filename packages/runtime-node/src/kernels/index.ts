import type { BinaryParams, FloatParams, RtnParams, VqParams } from '@ultrasketch/baselines';
import type { LittleBitParams } from '@ultrasketch/littlebit';
import type { HashedNetsParams, SketchParams } from '@ultrasketch/sketch-core';
import { type KernelBuildOptions, type KernelFactory, registerKernel } from './registry.js';
import { wasmBinaryKernel } from './wasm-binary.js';
import { wasmFloatKernel } from './wasm-float.js';
import { wasmLittlebitKernel } from './wasm-littlebit.js';
import { wasmRtnKernel } from './wasm-rtn.js';
import { wasmVqKernel } from './wasm-vq.js';
import { wasmHashednetsKernel, wasmSketchKernel } from './wasm-sketch.js';

export { registerKernel, getKernel, listKernels } from './registry.js';
export type { KernelBuildOptions, KernelFactory } from './registry.js';
export { floatKernel, f16ToF32Table } from './float.js';
export { rtnKernel } from './rtn.js';
export { binaryKernel } from './binary.js';
export { sketchKernel } from './sketch.js';
export { hashednetsKernel } from './hashednets.js';
export { littlebitKernel } from './littlebit.js';
export { RowDecodingLinear } from './rowKernel.js';
export { vqKernel } from './vq.js';
export { wasmSketchKernel, wasmHashednetsKernel } from './wasm-sketch.js';
export type { WasmKernelOptions } from './wasm-sketch.js';
export { arenaModules, compressedArena, compressedWasmAvailable } from './wasm-common.js';
export { wasmLittlebitKernel } from './wasm-littlebit.js';
export type { WasmLittleBitOptions } from './wasm-littlebit.js';
export { wasmBinaryKernel } from './wasm-binary.js';
export { wasmRtnKernel } from './wasm-rtn.js';
export { wasmFloatKernel } from './wasm-float.js';
export { wasmVqKernel } from './wasm-vq.js';
export type { WasmFloatOptions } from './wasm-float.js';

/**
 * Register the kernels of every codec this runtime supports. Explicit and idempotent. The compressed codecs
 * get their WebAssembly SIMD kernels (docs/kernels.md), and so does `float` (the f16 embedding/classifier is
 * read as stored, wasm-float.ts); they fall back to the JS kernels (still exported: floatKernel, rtnKernel,
 * binaryKernel, sketchKernel, hashednetsKernel, littlebitKernel, vqKernel) where wasm SIMD is unavailable or
 * for formats they do not cover (3-bit rtn, int8/f32 sketch states, f32 hashednets states).
 */
export function registerAllKernels(): void {
  registerKernel('float', ((p: FloatParams, o?: KernelBuildOptions) => wasmFloatKernel(p, o ?? {})) as unknown as KernelFactory);
  registerKernel('rtn', ((p: RtnParams, o?: KernelBuildOptions) => wasmRtnKernel(p, o ?? {})) as unknown as KernelFactory);
  registerKernel('binary', ((p: BinaryParams, o?: KernelBuildOptions) => wasmBinaryKernel(p, o ?? {})) as unknown as KernelFactory);
  registerKernel('sketch', ((p: SketchParams, o?: KernelBuildOptions) => wasmSketchKernel(p, o ?? {})) as unknown as KernelFactory);
  registerKernel('hashednets', ((p: HashedNetsParams, o?: KernelBuildOptions) => wasmHashednetsKernel(p, o ?? {})) as unknown as KernelFactory);
  registerKernel('littlebit', ((p: LittleBitParams, o?: KernelBuildOptions) => wasmLittlebitKernel(p, o ?? {})) as unknown as KernelFactory);
  // vq (an embedding/classifier form, §11.1b of docs/results.md): codebook-dot tables and lookups in wasm
  // (wasm-vq.ts; the JS vqKernel where wasm SIMD is unavailable)
  registerKernel('vq', ((p: VqParams, o?: KernelBuildOptions) => wasmVqKernel(p, o ?? {})) as unknown as KernelFactory);
}
