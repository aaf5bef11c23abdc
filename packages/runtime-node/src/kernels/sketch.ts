import type { Linear } from '@ultrasketch/model';
import {
  MixedHashFamily,
  RowRunHashFamily,
  type SketchGroup,
  type SketchParams,
  sketchGroups,
} from '@ultrasketch/sketch-core';
import { f16ToF32Table } from './float.js';

/**
 * `sketch` kernel (AbsMaxMin, docs/sketch.md): y = Ŵ x computed from the stored states and the seed-derived
 * hash family — never a dense Ŵ. Per output row, the row of Ŵ is decoded into ONE scratch row (cols floats):
 * for every channel group and every sketch row k, the row's candidates are read and the largest-magnitude
 * candidate is kept (strict >, so ties keep the lowest k, as in the codec's query); then the scratch row is
 * dotted with each of the n inputs. The states of a row's decode are a few KB and stay in cache.
 *
 * - `rowrun` groups read each run of consecutive columns from ONE contiguous (cyclic) slice of states per
 *   sketch row: d · segments sequential copies/compares per row, no hashing per weight.
 * - `mixed` groups evaluate the hash per weight (family.rowIndices) and gather.
 * - exact groups copy their row of states.
 * State formats: f16 candidates are compared on their bit patterns (|·| order = (bits & 0x7fff) order for the
 * finite values fromTensors admits) and converted once per weight through the f16 table; int8 through a
 * 256-entry table per stored sketch row (fround(q · scale), the codec's dequantization); f32 directly.
 *
 * With channel groups, the scratch row is laid out group after group (group g's channels in ascending order)
 * and each input vector is permuted into the same order once per call, so the decode writes contiguously.
 */
class SketchLinear implements Linear {
  readonly outFeatures: number;
  readonly inFeatures: number;
  private readonly groups: SketchGroup[];
  /** Start of each group in the (permuted) scratch row. */
  private readonly starts: Int32Array;
  /** Scratch position → original input channel (null when there is one group). */
  private readonly perm: Int32Array | null;
  private readonly row: Float32Array;
  private readonly bits: Uint16Array;
  private readonly idx: Int32Array;
  private xp: Float32Array;
  private readonly f16 = f16ToF32Table();
  /** int8: 256 dequantized values per stored sketch row, at (row · 256 + q + 128), and their |·| keys. */
  private readonly int8Table: Float32Array | null = null;
  private readonly int8Keys: Int32Array | null = null;
  /** f32: the states' bit patterns (a view, no copy). */
  private readonly f32Keys: Int32Array | null = null;
  /** Winning candidate code and its magnitude key per weight (int8 / f32 paths). */
  private readonly win: Int32Array;
  private readonly key: Int32Array;

  constructor(private readonly p: SketchParams) {
    this.outFeatures = p.rows;
    this.inFeatures = p.cols;
    this.groups = sketchGroups(p);
    this.starts = new Int32Array(this.groups.length);
    let at = 0;
    for (const g of this.groups) {
      this.starts[g.index] = at;
      at += g.channels.length;
    }
    this.perm = this.groups.length > 1 ? Int32Array.from(this.groups.flatMap((g) => [...g.channels])) : null;
    this.row = new Float32Array(p.cols);
    const maxC = Math.max(...this.groups.map((g) => g.channels.length));
    this.bits = new Uint16Array(maxC);
    this.idx = new Int32Array(maxC);
    this.win = new Int32Array(maxC);
    this.key = new Int32Array(maxC);
    this.xp = new Float32Array(0);
    if (p.options.state === 'int8') {
      const scales = p.scales!;
      const t = new Float32Array(scales.length * 256);
      for (let s = 0; s < scales.length; s++) {
        const scale = this.f16[scales[s]!]!;
        for (let q = -128; q < 128; q++) t[s * 256 + q + 128] = Math.fround(q * scale);
      }
      this.int8Table = t;
      // |value| as float32 bits: integer order = magnitude order
      this.int8Keys = new Int32Array(Float32Array.from(t, Math.abs).buffer);
    } else if (p.options.state === 'f32') {
      const st = p.states as Float32Array;
      this.f32Keys = new Int32Array(st.buffer, st.byteOffset, st.length);
    }
  }

  apply(x: Float32Array, y: Float32Array, n: number): void {
    const rows = this.outFeatures;
    const cols = this.inFeatures;
    let xs = x;
    if (this.perm) {
      if (this.xp.length < n * cols) this.xp = new Float32Array(n * cols);
      xs = this.xp;
      const perm = this.perm;
      for (let t = 0; t < n; t++) {
        const o = t * cols;
        for (let i = 0; i < cols; i++) xs[o + i] = x[o + perm[i]!]!;
      }
    }
    const w = this.row;
    const cols4 = cols - (cols % 4);
    for (let r = 0; r < rows; r++) {
      this.decodeRow(r);
      for (let t = 0; t < n; t++) {
        const xo = t * cols;
        let a0 = 0;
        let a1 = 0;
        let a2 = 0;
        let a3 = 0;
        let j = 0;
        for (; j < cols4; j += 4) {
          a0 += w[j]! * xs[xo + j]!;
          a1 += w[j + 1]! * xs[xo + j + 1]!;
          a2 += w[j + 2]! * xs[xo + j + 2]!;
          a3 += w[j + 3]! * xs[xo + j + 3]!;
        }
        for (; j < cols; j++) a0 += w[j]! * xs[xo + j]!;
        y[t * rows + r] = a0 + a1 + a2 + a3;
      }
    }
  }

  /** Row r of Ŵ, in scratch order, into this.row. */
  private decodeRow(r: number): void {
    for (const g of this.groups) {
      const start = this.starts[g.index]!;
      if (!g.family) this.exactRow(g, r, start);
      else if (this.p.options.state === 'f16') this.f16Row(g, r, start);
      else this.floatRow(g, r, start);
    }
  }

  private exactRow(g: SketchGroup, r: number, start: number): void {
    const C = g.channels.length;
    const from = g.stateOffset + r * C;
    const out = this.row;
    const { states } = this.p;
    if (this.p.options.state === 'f16') {
      const t = this.f16;
      for (let c = 0; c < C; c++) out[start + c] = t[states[from + c]!]!;
    } else if (this.int8Table) {
      const t = this.int8Table;
      const base = g.scaleOffset * 256 + 128;
      for (let c = 0; c < C; c++) out[start + c] = t[base + states[from + c]!]!;
    } else {
      for (let c = 0; c < C; c++) out[start + c] = states[from + c]!;
    }
  }

  /** f16 states: abs-max on bit patterns into this.bits, one table conversion per weight at the end. */
  private f16Row(g: SketchGroup, r: number, start: number): void {
    const states = this.p.states as Uint16Array;
    const bits = this.bits;
    const C = g.channels.length;
    const width = g.alloc.width;
    const fam = g.family!;
    const d = fam.depth;
    if (fam instanceof RowRunHashFamily) {
      const { segments, runLength: L, offsets } = fam;
      for (let k = 0; k < d; k++) {
        const sb = g.stateOffset + k * width;
        const ob = (k * fam.rows + r) * segments;
        for (let s = 0; s < segments; s++) {
          const o = offsets[ob + s]!;
          const c0 = s * L;
          const c1 = Math.min(c0 + L, C);
          const split = Math.min(c1, c0 + (width - o));
          // [c0, split) reads states sb + o + (c − c0); [split, c1) wraps to sb + (c − split).
          const d0 = sb + o - c0;
          const d1 = sb - split;
          if (k === 0) {
            for (let c = c0; c < split; c++) bits[c] = states[d0 + c]!;
            for (let c = split; c < c1; c++) bits[c] = states[d1 + c]!;
          } else {
            // Branchless abs-max on the bit patterns: which candidate wins is a coin flip on real weights, and a
            // mispredicted branch per weight costs more than the whole decode. take = −1 when |h| > |cur|.
            for (let c = c0; c < split; c++) {
              const h = states[d0 + c]!;
              const cur = bits[c]!;
              const take = ((cur & 0x7fff) - (h & 0x7fff)) >> 31;
              bits[c] = (h & take) | (cur & ~take);
            }
            for (let c = split; c < c1; c++) {
              const h = states[d1 + c]!;
              const cur = bits[c]!;
              const take = ((cur & 0x7fff) - (h & 0x7fff)) >> 31;
              bits[c] = (h & take) | (cur & ~take);
            }
          }
        }
      }
    } else {
      const idx = this.idx;
      const mixed = fam as MixedHashFamily;
      for (let k = 0; k < d; k++) {
        mixed.rowIndices(r, k, idx);
        const sb = g.stateOffset + k * width;
        if (k === 0) {
          for (let c = 0; c < C; c++) bits[c] = states[sb + idx[c]!]!;
        } else {
          for (let c = 0; c < C; c++) {
            const h = states[sb + idx[c]!]!;
            const cur = bits[c]!;
            const take = ((cur & 0x7fff) - (h & 0x7fff)) >> 31;
            bits[c] = (h & take) | (cur & ~take);
          }
        }
      }
    }
    const t = this.f16;
    const out = this.row;
    for (let c = 0; c < C; c++) out[start + c] = t[bits[c]!]!;
  }

  /**
   * int8 and f32 states, branchless like the f16 path: each candidate has a CODE (int8: its entry in the
   * dequantization table; f32: its state index) and an integer magnitude KEY (the float32 bit pattern of its
   * |value|, which orders like |value| for finite floats). The winning code per weight is kept in this.win,
   * its key in this.key; the values are fetched once at the end.
   */
  private floatRow(g: SketchGroup, r: number, start: number): void {
    const C = g.channels.length;
    const width = g.alloc.width;
    const fam = g.family!;
    const d = fam.depth;
    const int8 = this.int8Table !== null;
    const rowRun = fam instanceof RowRunHashFamily ? fam : null;
    const win = this.win;
    const key = this.key;
    for (let k = 0; k < d; k++) {
      const sb = g.stateOffset + k * width;
      const tb = (g.scaleOffset + k) * 256 + 128;
      if (rowRun) {
        const { segments, runLength: L, offsets } = rowRun;
        const ob = (k * rowRun.rows + r) * segments;
        for (let s = 0; s < segments; s++) {
          const o = offsets[ob + s]!;
          const c0 = s * L;
          const c1 = Math.min(c0 + L, C);
          const split = Math.min(c1, c0 + (width - o));
          if (int8) {
            this.runInt8(tb, sb + o - c0, c0, split, k === 0);
            this.runInt8(tb, sb - split, split, c1, k === 0);
          } else {
            this.runF32(sb + o - c0, c0, split, k === 0);
            this.runF32(sb - split, split, c1, k === 0);
          }
        }
      } else {
        const idx = this.idx;
        (fam as MixedHashFamily).rowIndices(r, k, idx);
        const states = this.p.states;
        const keys = int8 ? this.int8Keys! : this.f32Keys!;
        for (let c = 0; c < C; c++) {
          const code = int8 ? tb + states[sb + idx[c]!]! : sb + idx[c]!;
          const kk = int8 ? keys[code]! : keys[code]! & 0x7fffffff;
          if (k === 0) {
            win[c] = code;
            key[c] = kk;
          } else {
            const cur = key[c]!;
            const take = (cur - kk) >> 31;
            win[c] = (code & take) | (win[c]! & ~take);
            key[c] = (kk & take) | (cur & ~take);
          }
        }
      }
    }
    const out = this.row;
    if (int8) {
      const t = this.int8Table!;
      for (let c = 0; c < C; c++) out[start + c] = t[win[c]!]!;
    } else {
      const states = this.p.states as Float32Array;
      for (let c = 0; c < C; c++) out[start + c] = states[win[c]!]!;
    }
  }

  /** int8 run: candidate of weight c is table entry tb + states[delta + c], for c in [c0, c1). */
  private runInt8(tb: number, delta: number, c0: number, c1: number, first: boolean): void {
    const states = this.p.states as Int8Array;
    const keys = this.int8Keys!;
    const win = this.win;
    const key = this.key;
    if (first) {
      for (let c = c0; c < c1; c++) {
        const code = tb + states[delta + c]!;
        win[c] = code;
        key[c] = keys[code]!;
      }
      return;
    }
    for (let c = c0; c < c1; c++) {
      const code = tb + states[delta + c]!;
      const kk = keys[code]!;
      const cur = key[c]!;
      const take = (cur - kk) >> 31;
      win[c] = (code & take) | (win[c]! & ~take);
      key[c] = (kk & take) | (cur & ~take);
    }
  }

  /** f32 run: candidate of weight c is state delta + c, for c in [c0, c1). */
  private runF32(delta: number, c0: number, c1: number, first: boolean): void {
    const bitsOf = this.f32Keys!;
    const win = this.win;
    const key = this.key;
    if (first) {
      for (let c = c0; c < c1; c++) {
        win[c] = delta + c;
        key[c] = bitsOf[delta + c]! & 0x7fffffff;
      }
      return;
    }
    for (let c = c0; c < c1; c++) {
      const code = delta + c;
      const kk = bitsOf[code]! & 0x7fffffff;
      const cur = key[c]!;
      const take = (cur - kk) >> 31;
      win[c] = (code & take) | (win[c]! & ~take);
      key[c] = (kk & take) | (cur & ~take);
    }
  }
}

export function sketchKernel(p: SketchParams): Linear {
  return new SketchLinear(p);
}
