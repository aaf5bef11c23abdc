import type { BinaryParams } from '@ultrasketch/baselines';
import type { Linear } from '@ultrasketch/model';
import { f16ArrayToF32 } from './float.js';

/**
 * `binary` kernel: y_r = s_r · (Σ_j x_j − 2 · Σ_{j: bit_rj = 1} x_j), additions only.
 *
 * When rows start on byte boundaries (cols % 8 == 0), it uses subset-sum tables: for every byte column b
 * of the input, T_b[m] = Σ_{bit i set in m} x[8b + i] for all 256 byte values m (built with 256 additions per
 * byte column, T[m] = T[m without its lowest bit] + x[lowest bit]). Each row then costs ONE table lookup and
 * one addition per 8 weights. Other shapes walk the bits one by one.
 */
class BinaryLinear implements Linear {
  readonly outFeatures: number;
  readonly inFeatures: number;
  private readonly scales: Float32Array;
  private readonly table: Float64Array;

  constructor(private readonly p: BinaryParams) {
    this.outFeatures = p.rows;
    this.inFeatures = p.cols;
    this.scales = f16ArrayToF32(p.scales);
    this.table = new Float64Array(p.cols % 8 === 0 ? (p.cols / 8) * 256 : 0);
  }

  apply(x: Float32Array, y: Float32Array, n: number): void {
    for (let t = 0; t < n; t++) {
      const xo = t * this.inFeatures;
      if (this.table.length > 0) this.applyTable(x, xo, y, t * this.outFeatures);
      else this.applyBits(x, xo, y, t * this.outFeatures);
    }
  }

  private applyTable(x: Float32Array, xo: number, y: Float32Array, yo: number): void {
    const cols = this.inFeatures;
    const byteCols = cols / 8;
    const T = this.table;
    let total = 0;
    for (let b = 0; b < byteCols; b++) {
      const base = b * 256;
      T[base] = 0;
      for (let m = 1; m < 256; m++) {
        const low = 31 - Math.clz32(m & -m); // index of the lowest set bit
        T[base + m] = T[base + (m & (m - 1))]! + x[xo + 8 * b + low]!;
      }
      total += T[base + 255]!;
    }
    const signs = this.p.signs;
    for (let r = 0; r < this.outFeatures; r++) {
      let neg = 0;
      const rowByte = r * byteCols;
      for (let b = 0; b < byteCols; b++) neg += T[b * 256 + signs[rowByte + b]!]!;
      y[yo + r] = this.scales[r]! * (total - 2 * neg);
    }
  }

  private applyBits(x: Float32Array, xo: number, y: Float32Array, yo: number): void {
    const cols = this.inFeatures;
    const signs = this.p.signs;
    let total = 0;
    for (let j = 0; j < cols; j++) total += x[xo + j]!;
    for (let r = 0; r < this.outFeatures; r++) {
      let neg = 0;
      let i = r * cols;
      for (let j = 0; j < cols; j++, i++) if ((signs[i >>> 3]! >>> (i & 7)) & 1) neg += x[xo + j]!;
      y[yo + r] = this.scales[r]! * (total - 2 * neg);
    }
  }
}

export function binaryKernel(p: BinaryParams): Linear {
  return new BinaryLinear(p);
}
