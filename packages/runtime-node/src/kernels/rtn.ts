import { type RtnParams, rtnGroupLength } from '@ultrasketch/baselines';
import type { Linear } from '@ultrasketch/model';
import { f16ArrayToF32 } from './float.js';
import { RowDecodingLinear } from './rowKernel.js';

/**
 * `rtn` kernel: a row's k-bit codes are read straight from the packed bitstream and turned into
 * offset + code · scale of their group, into the row scratch; then the dot products run over it.
 * Codes are read through a 16-bit window at their bit position, which handles k = 3 and rows that start
 * mid-byte without a special case.
 */
class RtnLinear extends RowDecodingLinear {
  private readonly groupLength: number;
  private readonly groupsPerRow: number;
  private readonly scales: Float32Array;
  private readonly offsets: Float32Array;

  constructor(private readonly p: RtnParams) {
    super(p.rows, p.cols);
    this.groupLength = rtnGroupLength(p.options, p.cols);
    this.groupsPerRow = Math.ceil(p.cols / this.groupLength);
    // Scales and offsets are tiny (2 per group); converting them once keeps the inner loop to a table-free
    // multiply-add. They are counted in the stored bits as f16 and decode to exactly these values.
    this.scales = f16ArrayToF32(p.scales);
    this.offsets = f16ArrayToF32(p.offsets);
  }

  protected decodeRow(r: number, out: Float32Array): void {
    const { codes } = this.p;
    const k = this.p.options.bits;
    const mask = (1 << k) - 1;
    const cols = this.inFeatures;
    const G = this.groupLength;
    let bit = r * cols * k;
    const last = codes.length - 1;
    for (let g = 0; g < this.groupsPerRow; g++) {
      const scale = this.scales[r * this.groupsPerRow + g]!;
      const offset = this.offsets[r * this.groupsPerRow + g]!;
      const end = Math.min((g + 1) * G, cols);
      for (let j = g * G; j < end; j++, bit += k) {
        const byte = bit >>> 3;
        const window = codes[byte]! | (byte < last ? codes[byte + 1]! << 8 : 0);
        out[j] = offset + ((window >>> (bit & 7)) & mask) * scale;
      }
    }
  }
}

export function rtnKernel(p: RtnParams): Linear {
  return new RtnLinear(p);
}
