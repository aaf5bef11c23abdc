import type { Linear } from '@ultrasketch/model';
import { type HashedNetsParams, type MixedHashFamily, hashedNetsFamily } from '@ultrasketch/sketch-core';
import { f16ToF32Table } from './float.js';
import { RowDecodingLinear } from './rowKernel.js';

/**
 * `hashednets` kernel: row r of Ŵ is gathered from the shared states through the seed-derived `mixed` hash
 * (one hash evaluation per weight, family.rowIndices), into the row scratch; then the dot products run over
 * it. f16 states convert through the shared f16 table. Nothing beyond the states and one row is held.
 */
class HashedNetsLinear extends RowDecodingLinear {
  private readonly family: MixedHashFamily;
  private readonly idx: Int32Array;
  private readonly table = f16ToF32Table();

  constructor(private readonly p: HashedNetsParams) {
    super(p.rows, p.cols);
    this.family = hashedNetsFamily(p);
    this.idx = new Int32Array(p.cols);
  }

  protected decodeRow(r: number, out: Float32Array): void {
    const idx = this.idx;
    this.family.rowIndices(r, 0, idx);
    const cols = this.inFeatures;
    if (this.p.states instanceof Uint16Array) {
      const s = this.p.states;
      const t = this.table;
      for (let c = 0; c < cols; c++) out[c] = t[s[idx[c]!]!]!;
    } else {
      const s = this.p.states;
      for (let c = 0; c < cols; c++) out[c] = s[idx[c]!]!;
    }
  }
}

export function hashednetsKernel(p: HashedNetsParams): Linear {
  return new HashedNetsLinear(p);
}
