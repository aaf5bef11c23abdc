export { LIMITS } from './limits.js';
export type { Limits } from './limits.js';
export { ByteReader } from './byteReader.js';
export { ByteWriter } from './byteWriter.js';
export {
  LLAMA2C_MAGIC,
  LLAMA2C_V2_HEADER_BYTES,
  llama2cShapes,
  legacyFileBytes,
  v2FileBytes,
  isLlama2cVersioned,
  readLlama2cCheckpoint,
  validateLlama2cConfig,
} from './llama2c.js';
export type { Llama2cConfig, Llama2cWeights, Llama2cLayout, Llama2cCheckpoint } from './llama2c.js';
export { writeLlama2cLegacy, writeLlama2cV2, quantizeQ80 } from './llama2cWriter.js';
export type { Q80Tensor } from './llama2cWriter.js';
export { readLlama2cTokenizer } from './llama2cTokenizer.js';
export type { Llama2cTokenizerFile } from './llama2cTokenizer.js';
export {
  readSafetensors,
  parseSafetensorsHeader,
  writeSafetensors,
  getSafetensorsTensor,
  getSafetensorsFloat32,
  tensorDataToFloat32,
  safetensorsLayout,
} from './safetensors.js';
export type {
  SafetensorsTensor,
  SafetensorsFile,
  SafetensorsLimits,
  SafetensorsTensorInput,
  SafetensorsLayoutEntry,
  SafetensorsHeader,
  SafetensorsTensorInfo,
} from './safetensors.js';
export { crc32, crc32Tag } from './crc32.js';
export { sha256, sha256Hex } from './sha256.js';
export { findDuplicateKey, scanJson } from './strictJson.js';
export type { DuplicateKey, JsonProblem } from './strictJson.js';
export {
  USK_FORMAT,
  USK_FORMAT_VERSION,
  USK_READABLE_VERSIONS,
  USK_TOKENIZER_TENSOR,
  USK_HF_TOKENIZER_TENSOR,
  USK_HF_TOKENIZER_CONFIG_TENSOR,
  USK_TOKENIZER_KINDS,
  tokenizerTensorNames,
  USK_METADATA_CHECKSUM_KEY,
  USK_PACKED_FORMAT_VERSION,
  USK_PACKED_METADATA_TENSOR,
  USK_PACKED_METADATA_KEY,
  USK_TOKENIZER_PACKING_KEY,
  writeBundle,
  storedTokenizerBytes,
  readBundle,
  metadataChecksum,
  metadataChecksumBytes,
} from './bundle.js';
export type {
  Bundle,
  BundleInput,
  BundleIntegrity,
  BundleTokenizer,
  BundleTokenizerKind,
  BundleWeight,
  BundleWeightEntry,
  BundleWeightInput,
  ChecksummedTensor,
  ReadBundleOptions,
  WriteBundleOptions,
} from './bundle.js';
export { inflateRaw } from './inflate.js';
export { llama2cColumns, llama2cFromColumns } from './pack.js';
export { GGUF_LIMITS, GGUF_MAGIC, GGUF_DEFAULT_ALIGNMENT, GGUF_VALUE_TYPES, parseGgufHeader, readGguf, getGgufTensorInfo, getGgufTensorBytes, getGgufFloat32, decodeGgufTensor, decodeGgufRows, getGgufMetadata, getGgufNumber, getGgufString, getGgufArray } from './gguf.js';
export type { GgufLimits, GgufValueType, GgufArrayValues, GgufArray, GgufValue, GgufMetadataEntry, GgufTensorInfo, GgufHeader, GgufHeaderParse, GgufFile } from './gguf.js';
export { ggmlType, ggmlTypeById, ggmlByteLength, dequantizeGgml, DECODABLE_GGML_TYPES } from './ggufQuants.js';
export type { GgmlTypeName, GgmlTypeInfo } from './ggufQuants.js';
export { describeHfConfig, describeGgufModel, LLAMA_FAMILY_ARCHITECTURES } from './hfConfig.js';
export type { ModelDescription, LlamaFamilyArchitecture, RopeLayout, RopeScaling, Llama3RopeScaling, RopeFreqFactors } from './hfConfig.js';
export { parseHfShardIndex, shardNameProblem, MAX_SHARDS } from './hfIndex.js';
export type { HfShardIndex } from './hfIndex.js';
