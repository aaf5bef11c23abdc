export { WebGpuSession, bundleSpec, ropeTable, refuseUnsupportedVariants } from './session.js';
export type {
  WebGpuSessionOptions,
  SessionGenerateOptions,
  SessionMemory,
  GpuModelSpec,
  StoredWeight,
} from './session.js';
export { GpuContext, BufferUsage, describeAdapter, gpuScopeError, summarizeAdapter } from './device.js';
export type { AdapterSummary, GpuContextOptions, RuntimeLimits } from './device.js';
export { WebGpuError, gpuFailureCode, isWebGpuError } from './errors.js';
export type { GpuFailure } from './errors.js';
export { PipelineCache, encodeDispatches, grid2d } from './program.js';
export type { BindingKind, Dispatch, GpuProgram } from './program.js';
export {
  BlockedLinear,
  PREFILL_TILE,
  WORKGROUP,
  gatherProgram,
  linearProgram,
  planRowBlocks,
  setStepBuffer,
  sliceBits,
  sliceHalves,
} from './linear.js';
export type { GatherIO, GpuLinear, KernelBuildContext, LinearIO, RowBlock, WeightCode } from './linear.js';
export { ATTENTION, ATTENTION_SERIAL, ATTENTION_SERIAL_VEC4, RMSNORM, RMSNORM_SERIAL, ROPE_KV, SWIGLU } from './ops.js';
export { getGpuKernel, listGpuKernels, registerAllGpuKernels, registerGpuKernel } from './registry.js';
export type { GpuKernelFactory } from './registry.js';
export { F16_CODE, F32_CODE, F32_VEC4_CODE, binaryKernel, floatKernel, rtnCode, rtnKernel, signsCode } from './kernels/baselines.js';
export { littlebitKernel } from './kernels/littlebit.js';
export { hashednetsKernel, sketchKernel } from './kernels/sketch.js';
export { LinearRunner } from './runner.js';
export type { LinearRunnerOptions } from './runner.js';
export { residentCapacity, sketchCode, sketchLayout } from './kernels/sketch.js';
export type { SketchVariant } from './kernels/sketch.js';
export { defaultLanes, blockByteLimit } from './linear.js';
export { bindingDecls, bindingKinds, readBinding, rwBinding, uniformBinding } from './wgsl.js';
export type { WgslBinding } from './wgsl.js';
