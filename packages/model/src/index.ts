export { headDim, kvDim, qDim, validateModelConfig, ropeInverseFrequencies } from './config.js';
export type { ModelConfig, RopeScalingConfig, Llama3RopeScalingConfig, FreqFactorsRopeScalingConfig } from './config.js';
export { LINEAR_KINDS, TensorNames, parseLinearName } from './names.js';
export type { LinearKind, BiasKind } from './names.js';
export {
  configFromDescription,
  safetensorsSource,
  ggufSource,
  ggufFileSource,
  ggufTensorName,
  sourceTensorName,
  checkSourceAgainstConfig,
  loadTensor,
  loadLayer,
  loadModelWeights,
} from './load.js';
export type { ConfigFromDescriptionOptions, TensorNaming, TensorSource } from './load.js';
export {
  linearShape,
  layerTensors,
  biasKinds,
  biasLength,
  expectedTensors,
  parameterCount,
  validateModelWeights,
  modelFromLlama2c,
} from './weights.js';
export type { Tensor, ModelWeights } from './weights.js';
export { DenseLinear, denseMatVec, denseMatMul, dotRow } from './linear.js';
export type { Linear } from './linear.js';
export { KVCache, LlamaForward, DenseEmbedding, denseForwardParts, checkVariantParts, rmsNormRows } from './forward.js';
export type { AttentionKernel, DenseLinearFactory, ForwardGlue, EmbeddingTable, ForwardParts, ForwardHooks, ForwardOptions, LayerLinears } from './forward.js';
export { generateTokens } from './generate.js';
export type { TokenPicker, GenerateOptions, GenerateStep } from './generate.js';
export { Tokenizer, StreamDecoder } from './tokenizer.js';
export type { EncodeOptions, DecodeOptions, TextTokenizer, TokenStreamDecoder, TokenizerKind } from './tokenizer.js';
export { HfTokenizer } from './hfTokenizer.js';
export type { HfTokenizerOptions } from './hfTokenizer.js';
export { tokenizerFromGguf, ggufGpt2TokenizerJson } from './ggufTokenizer.js';
export { Sampler, argmax } from './sampling.js';
export type { SamplerOptions } from './sampling.js';
export { atPos, decodeArgValue, runDecodePlan } from './decode-plan.js';
export type { DecodeArg, DecodeCall, DecodeGlue } from './decode-plan.js';
