import type { BinaryParams, FloatParams, RtnParams } from '@ultrasketch/baselines';
import { binaryKernel } from './binary.js';
import { floatKernel } from './float.js';
import { type KernelFactory, registerKernel } from './registry.js';
import { hashednetsKernel } from './hashednets.js';
import { littlebitKernel } from './littlebit.js';
import { rtnKernel } from './rtn.js';
import { sketchKernel } from './sketch.js';

export { registerKernel, getKernel, listKernels } from './registry.js';
export type { KernelFactory } from './registry.js';
export { floatKernel, f16ToF32Table } from './float.js';
export { rtnKernel } from './rtn.js';
export { binaryKernel } from './binary.js';
export { sketchKernel } from './sketch.js';
export { hashednetsKernel } from './hashednets.js';
export { littlebitKernel } from './littlebit.js';
export { RowDecodingLinear } from './rowKernel.js';
export { wasmSketchKernel, wasmHashednetsKernel } from './wasm-sketch.js';
export type { WasmKernelOptions } from './wasm-sketch.js';
export { compressedArena, compressedWasmAvailable } from './wasm-common.js';
export { wasmLittlebitKernel } from './wasm-littlebit.js';
export type { WasmLittleBitOptions } from './wasm-littlebit.js';
export { wasmBinaryKernel } from './wasm-binary.js';
export { wasmRtnKernel } from './wasm-rtn.js';

/** Register the kernels of every codec this runtime supports. Explicit and idempotent. */
export function registerAllKernels(): void {
  registerKernel('float', floatKernel as (p: FloatParams) => ReturnType<KernelFactory> as KernelFactory);
  registerKernel('rtn', rtnKernel as (p: RtnParams) => ReturnType<KernelFactory> as KernelFactory);
  registerKernel('binary', binaryKernel as (p: BinaryParams) => ReturnType<KernelFactory> as KernelFactory);
  registerKernel('sketch', sketchKernel as unknown as KernelFactory);
  registerKernel('hashednets', hashednetsKernel as unknown as KernelFactory);
  registerKernel('littlebit', littlebitKernel as unknown as KernelFactory);
}
