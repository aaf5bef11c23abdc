export { NodeSession, WASM_FALLBACK_WARNING } from './session.js';
export type { SessionOptions, SessionGenerateOptions, SessionMemory, FromWeightsOptions, KernelChoice } from './session.js';
export { WasmArena, wasmSimdSupported, WASM_PAGE_BYTES } from './wasm/arena.js';
export type { WasmArenaOptions } from './wasm/arena.js';
export { WasmDenseLinear, wasmForwardParts } from './wasm/linear.js';
export { WasmAttention } from './wasm/attention.js';
export type { WasmForwardParts, WasmPartsOptions } from './wasm/linear.js';
export { DEFAULT_TILE_PLAN, GemmKernels, emitGemmModule, emitTile } from './wasm/gemm.js';
export type { TilePlan, TileKernel } from './wasm/gemm.js';
export { FunctionBuilder, ModuleBuilder, writeSleb, writeUleb } from './wasm/emitter.js';
export type { MemoryImport, ValTypeName } from './wasm/emitter.js';
export {
  registerAllKernels,
  registerKernel,
  getKernel,
  listKernels,
  floatKernel,
  rtnKernel,
  binaryKernel,
  sketchKernel,
  hashednetsKernel,
  littlebitKernel,
  f16ToF32Table,
  RowDecodingLinear,
  wasmSketchKernel,
  wasmHashednetsKernel,
  compressedArena,
  compressedWasmAvailable,
  arenaModules,
  wasmLittlebitKernel,
  wasmBinaryKernel,
  wasmRtnKernel,
  wasmFloatKernel,
} from './kernels/index.js';
export type { KernelBuildOptions, KernelFactory, WasmKernelOptions, WasmLittleBitOptions, WasmFloatOptions } from './kernels/index.js';
export { bundleForwardParts, bundleConfig, bundleWeightBytes, sessionFromBundle } from './kernels/bundleParts.js';
export { ThreadPool, DEFAULT_MIN_WORK_NS, WAIT_SLICE_MS, resolveThreads, splitRows } from './threads.js';
export type { ThreadPoolOptions, RowBody, RowCall } from './threads.js';
export { WasmTrainerGemm, createTrainerGemm } from './wasm/trainer-gemm.js';
export type { WasmTrainerGemmOptions } from './wasm/trainer-gemm.js';
export { WasmTrainerExp, createTrainerExp } from './wasm/trainer-exp.js';
export { TrainerMemory } from './wasm/trainer-memory.js';
export { WasmTrainerOps, createTrainerOps } from './wasm/trainer-ops.js';
export type { AdamWScalars } from './wasm/trainer-ops.js';
export type { TrainerMemoryOptions } from './wasm/trainer-memory.js';
export { FmaGemmKernels, enableRelaxedSimd, DEFAULT_FMA_PLAN } from './wasm/trainer-gemm-fma.js';
export type { FmaTilePlan } from './wasm/trainer-gemm-fma.js';
export { compileDecodeProgram } from './wasm/decode-program.js';
export type { DecodeProgram } from './wasm/decode-program.js';
