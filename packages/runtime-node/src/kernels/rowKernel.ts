import { type Linear, dotRow } from '@ultrasketch/model';

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
    for (let r = 0; r < rows; r++) {
      this.decodeRow(r, w);
      for (let t = 0; t < n; t++) y[t * rows + r] = dotRow(w, 0, x, t * cols, cols);
    }
  }
}
