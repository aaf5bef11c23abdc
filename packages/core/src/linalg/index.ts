/**
 * Dense linear algebra for the codecs (pure TypeScript, float64 accumulation): products without explicit
 * transposes, Householder QR, an exact one-sided Jacobi SVD (the test oracle), a randomized truncated SVD
 * for big matrices, and the leading singular pair by power iteration.
 */
export { matrix, matrixFrom, identity, transpose, slice, frobeniusNorm, norm2, matmul, matmulTN, matmulNT, matvec, matvecT } from './matrix.js';
export type { Matrix, MatrixLike } from './matrix.js';
export { qr } from './qr.js';
export type { QR } from './qr.js';
export { svd } from './svd.js';
export type { SVD } from './svd.js';
export { truncatedSvd, truncate, leadingSingularPair, TSVD_DEFAULTS } from './tsvd.js';
export type { TruncatedSvdOptions } from './tsvd.js';
