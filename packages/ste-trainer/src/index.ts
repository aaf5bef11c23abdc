export { matmul, transpose, gemmNTBlocked, setGemmKernel } from './matmul.js';
export type { FloatArray, GemmNT } from './matmul.js';
export {
  rmsNormForward,
  rmsNormBackward,
  ropeTables,
  rope,
  attentionForward,
  attentionBackward,
  swigluForward,
  swigluBackward,
  logitLosses,
  distillLosses,
  setExpKernel,
  setSoftmaxKernel,
  setKdKernel,
  logSoftmaxRows,
  mseLoss,
} from './ops.js';
export type { AttentionShape, DistillLossResult, ExpRowsKernel, KdRowsKernel, LogitLossResult, SoftmaxKernel } from './ops.js';
export { DenseProvider, CodecSteProvider, zerosLike } from './providers.js';
export type { Param, WeightProvider, DenseProviderOptions, CodecSteProviderOptions } from './providers.js';
export { LlamaGraph } from './graph.js';
export type { GraphWeights, GraphOptions, LayerProviders, NormWeight } from './graph.js';
export { AdamW, learningRate, globalGradNorm } from './optim.js';
export type { AdamWOptions, AdamState, ScheduleOptions } from './optim.js';
export { CalibrationBatches, CorpusBatches, TeacherSamples, sampleLogits, stepRng } from './data.js';
export type { BatchSource, TeacherSamplesOptions } from './data.js';
export { makeProviders, registerProviderFactory, getProviderFactory } from './plan.js';
export type { ProviderContext, ProviderFactory, ProviderChoice, MakeProvidersOptions } from './plan.js';
export { Trainer, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, EMBEDDING_LR_SCALE } from './trainer.js';
export type { TrainerOptions, StepResult, TrainProgress, EvalResult, LossWeights, DataSource } from './trainer.js';
export { TeacherCacheViews, teacherCacheKey } from './teacher-cache.js';
export type { TeacherCache } from './teacher-cache.js';
export { shardSizes, serveShards } from './shard.js';
export type { ShardExecutor, ShardExecutorFactory, ShardSetup, ShardResult, ShardWorkerInit } from './shard.js';
export { setMatmulKernel } from './matmul.js';
export type { MatmulKernel } from './matmul.js';
export { SketchStateProvider, HashedNetsStateProvider, registerSketchProviders } from './providers-sketch.js';
export type { SketchStateInit, StateProviderOptions, SketchStateProviderOptions, HashedNetsStateProviderOptions } from './providers-sketch.js';
export { LittleBitProvider, registerLittleBitProviders, smoothSignGrad } from './providers-littlebit.js';
export type { LittleBitProviderOptions } from './providers-littlebit.js';
