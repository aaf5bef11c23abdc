export { ErrorCodes, UltraSketchError, isUltraSketchError, fromSystemError, describeValue } from './errors.js';
export type { ErrorCode, UltraSketchErrorOptions, FileAction } from './errors.js';
export {
  f32ToF16Bits,
  f16BitsToF32,
  f32ToBf16Bits,
  bf16BitsToF32,
  f32ArrayToF16,
  f16ArrayToF32,
  f32ArrayToBf16,
  bf16ArrayToF32,
  DTYPE_BYTES,
  isDType,
} from './dtypes.js';
export type { DType } from './dtypes.js';
export { Rng } from './rng.js';
export {
  registerCodec,
  getCodec,
  listCodecs,
  f16Tensor,
  f16BitsTensor,
  u8Tensor,
  f16BitsOf,
  f16ValuesOf,
  expectStored,
  storedBits,
  badOption,
} from './codec.js';
export type { Codec, CodecContext, CodecParams, StoredTensor, BitCount } from './codec.js';
export { packCodes, readCode, unpackCodes, packedBytes } from './bits.js';
export {
  matrix,
  matrixFrom,
  identity,
  transpose,
  slice,
  frobeniusNorm,
  norm2,
  matmul,
  matmulTN,
  matmulNT,
  matvec,
  matvecT,
  qr,
  svd,
  truncatedSvd,
  truncate,
  leadingSingularPair,
  TSVD_DEFAULTS,
} from './linalg/index.js';
export type { Matrix, MatrixLike, QR, SVD, TruncatedSvdOptions } from './linalg/index.js';
