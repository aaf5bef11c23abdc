import type { VqParams } from '@ultrasketch/baselines';
import type { Linear } from '@ultrasketch/model';
import { f16ArrayToF32 } from './float.js';

/**
 * `vq` kernel (the embedding/classifier form of docs/results.md §11.1b). y[r] = Σ_s ⟨codebook[code(r, s)], x_s⟩,
 * where x_s is the s-th sub-vector of x: for each input vector the kernel first takes the dot product of every
 * codebook entry with every sub-vector (2^bits × cols/dim small dots), then each output row is a sum of cols/dim
 * table lookups — a quarter of the work of decoding the row and multiplying it out, for 4-value sub-vectors.
 * The codes stay packed as stored; nothing the size of the matrix is expanded.
 */
class VqLinear implements Linear {
  readonly outFeatures: number;
  readonly inFeatures: number;
  private readonly codebook: Float32Array;
  private readonly table: Float32Array;
  private readonly perRow: number;
  private readonly entries: number;

  constructor(private readonly p: VqParams) {
    this.outFeatures = p.rows;
    this.inFeatures = p.cols;
    this.codebook = f16ArrayToF32(p.codebook);
    this.perRow = p.cols / p.options.dim;
    this.entries = 1 << p.options.bits;
    this.table = new Float32Array(this.perRow * this.entries);
  }

  apply(x: Float32Array, y: Float32Array, n: number): void {
    const { rows, cols } = this.p;
    const d = this.p.options.dim;
    const k = this.p.options.bits;
    const mask = (1 << k) - 1;
    const codes = this.p.codes;
    const last = codes.length - 1;
    const K = this.entries;
    const S = this.perRow;
    const T = this.table;
    const cb = this.codebook;
    for (let b = 0; b < n; b++) {
      const xo = b * cols;
      // T[s·K + e] = ⟨codebook[e], x_s⟩
      for (let s = 0; s < S; s++) {
        for (let e = 0; e < K; e++) {
          let acc = 0;
          for (let t = 0; t < d; t++) acc += cb[e * d + t]! * x[xo + s * d + t]!;
          T[s * K + e] = acc;
        }
      }
      let bit = 0;
      for (let r = 0; r < rows; r++) {
        let acc = 0;
        for (let s = 0; s < S; s++, bit += k) {
          const byte = bit >>> 3;
          const window = codes[byte]! | ((byte < last ? codes[byte + 1]! : 0) << 8);
          acc += T[s * K + ((window >>> (bit & 7)) & mask)]!;
        }
        y[b * rows + r] = acc;
      }
    }
  }
}

export function vqKernel(p: VqParams): Linear {
  return new VqLinear(p);
}
