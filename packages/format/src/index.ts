export { LIMITS } from './limits.js';
export { ByteReader } from './byteReader.js';
export {
  LLAMA2C_MAGIC,
  LLAMA2C_V2_HEADER_BYTES,
  llama2cShapes,
  legacyFileBytes,
  v2FileBytes,
  isLlama2cVersioned,
  readLlama2cCheckpoint,
} from './llama2c.js';
export type { Llama2cConfig, Llama2cWeights, Llama2cLayout, Llama2cCheckpoint } from './llama2c.js';
export { readLlama2cTokenizer } from './llama2cTokenizer.js';
export type { Llama2cTokenizerFile } from './llama2cTokenizer.js';
