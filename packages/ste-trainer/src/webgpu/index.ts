/**
 * `@ultrasketch/ste-trainer/webgpu`: the trainer's ops as WGSL programs (issue 15). Browser-safe: imports only
 * workspace packages (runtime-webgpu's device and program machinery) and relative files, never node:*.
 * Pass a runtime-webgpu `GpuContext` (navigator.gpu in a browser, `nodeGpu()` from
 * `@ultrasketch/runtime-webgpu/node` in Node) to `GpuTrainContext.create`.
 */
export { GpuTrainContext } from './context.js';
export type { GpuTensor } from './context.js';
export {
  addInto,
  attentionBackward,
  attentionForward,
  distillLosses,
  f32Bits,
  gatherRows,
  matmul,
  matmulStrided,
  mseLoss,
  partialCount,
  rmsNormBackward,
  rmsNormForward,
  rope,
  sumSquares,
  swigluBackward,
  swigluForward,
  uploadRopeTables,
} from './ops.js';
export type { GpuDistillOptions, GpuMseOptions, GpuRopeTables, MatmulOperand, PendingDistill, PendingLoss, StridedMatmul } from './ops.js';
export { GpuDenseProvider, GpuLlamaGraph, graphParameters, uploadDenseWeights } from './graph.js';
export type { GpuGraphOptions, GpuGraphWeights, GpuNormWeight, GpuWeightProvider } from './graph.js';
export { GpuAdamW } from './optim.js';
export { GpuLittleBitProvider } from './providers-littlebit.js';
export { GPU_STE_CODECS, GpuCodecSteProvider } from './providers-ste.js';
export { GpuKdTrainer, gpuProviderFor } from './trainer.js';
export type { GpuKdTrainerOptions } from './trainer.js';
export type { GpuParam } from './optim.js';
export { PARTIAL_BLOCK, trainingPrograms } from './programs.js';
export type { ReductionLanes, TrainingPrograms } from './programs.js';
export { GpuTrainer } from './device-trainer.js';
export { GpuStatePickProvider } from './providers-sketch.js';
