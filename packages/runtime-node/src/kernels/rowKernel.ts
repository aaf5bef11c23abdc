import type { Linear } from '@ultrasketch/model';

/**
 * The shared shape of our CPU kernels for codecs whose rows decode cheaply: for each output row, decode
 * that ONE row of Ŵ into a small scratch buffer (cols floats, reused), then take its dot product with every
 * input vector of the batch. A batch of n vectors pays the decode once per row, not n times; memory beyond
 * the stored parameters is a single row.
 */
export abstract class RowDecodingLinear implements Linear {
  private readonly row: Float32Array;

  constructor(
    readonly outFeatures: number,
    readonly inFeatures: number,
  ) {
    this.row = new Float32Array(inFeatures);
  }

  /** Write row r of Ŵ into `out` (length inFeatures). */
  protected abstract decodeRow(r: number, out: Float32Array): void;

  apply(x: Float32Array, y: Float32Array, n: number): void {
    const rows = this.outFeatures;
    const cols = this.inFeatures;
    const w = this.row;
    const cols4 = cols - (cols % 4);
    for (let r = 0; r < rows; r++) {
      this.decodeRow(r, w);
      for (let t = 0; t < n; t++) {
        const xo = t * cols;
        let a0 = 0;
        let a1 = 0;
        let a2 = 0;
        let a3 = 0;
        let j = 0;
        for (; j < cols4; j += 4) {
          a0 += w[j]! * x[xo + j]!;
          a1 += w[j + 1]! * x[xo + j + 1]!;
          a2 += w[j + 2]! * x[xo + j + 2]!;
          a3 += w[j + 3]! * x[xo + j + 3]!;
        }
        for (; j < cols; j++) a0 += w[j]! * x[xo + j]!;
        y[t * rows + r] = a0 + a1 + a2 + a3;
      }
    }
  }
}
