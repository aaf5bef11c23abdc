import { type Linear, dotRow } from '@ultrasketch/model';
import {
  MixedHashFamily,
  RowRunHashFamily,
  type SketchGroup,
  type SketchParams,
  sketchGroups,
} from '@ultrasketch/sketch-core';
import { f16ToF32Table } from './float.js';
import { signMeanSketchKernel } from './sketch-signmean.js';

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
 * State formats: f16 states are expanded once per call into 32-bit keys (bits(|v| as f32) | priority | sign,
 * see f16Row and docs/kernels.md), so the abs-max is an integer max and the winner's float comes from its key
 * with three bit operations; rowrun rows of keys are followed by their first runLength keys, so every run is
 * one contiguous slice; int8 through a 256-entry table per stored sketch row (fround(q · scale), the codec's
 * dequantization); f32 directly.
 *
 * With channel groups, the scratch row is laid out group after group (group g's channels in ascending order)
 * and each input vector is permuted into the same order once per call, so the decode writes contiguously.
 */
const KEY_MASK = 0xffffe000 | 0;

/** f16 bits → bits(|v| as float32) | sign(v) (the low 13 bits of a float32 from an f16 are zero). */
let f16Keys: Int32Array | undefined;
function f16KeyTable(): Int32Array {
  if (!f16Keys) {
    const bits = new Int32Array(f16ToF32Table().buffer);
    f16Keys = new Int32Array(65536);
    for (let h = 0; h < 65536; h++) f16Keys[h] = (bits[h]! & 0x7fffffff) | (h >>> 15);
  }
  return f16Keys;
}

class SketchLinear implements Linear {
  readonly outFeatures: number;
  readonly inFeatures: number;
  private readonly groups: SketchGroup[];
  /** Start of each group in the (permuted) scratch row. */
  private readonly starts: Int32Array;
  /** Scratch position → original input channel (null when there is one group). */
  private readonly perm: Int32Array | null;
  private readonly row: Float32Array;
  private readonly idx: Int32Array;
  /** f16: per-call keys of every hashed group (rowrun rows extended by runLength), their layout, an Int32 view of the row. */
  private readonly keys: Int32Array | null = null;
  private readonly keyBase: Int32Array;
  private readonly kStride: Int32Array;
  private readonly rowBits: Int32Array | null = null;
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
    this.idx = new Int32Array(maxC);
    this.keyBase = new Int32Array(this.groups.length);
    this.kStride = new Int32Array(this.groups.length);
    if (p.options.state === 'f16') {
      let total = 0;
      for (const g of this.groups) {
        if (!g.family) continue;
        const stride = g.alloc.width + (g.family instanceof RowRunHashFamily ? g.family.runLength : 0);
        this.keyBase[g.index] = total;
        this.kStride[g.index] = stride;
        total += g.family.depth * stride;
      }
      this.keys = new Int32Array(total);
      this.rowBits = new Int32Array(this.row.buffer);
    }
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
    if (this.keys) this.expandKeys();
    const w = this.row;
    for (let r = 0; r < rows; r++) {
      this.decodeRow(r);
      for (let t = 0; t < n; t++) y[t * rows + r] = dotRow(w, 0, xs, t * cols, cols);
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

  /** Per call, f16 only: every state's key (f16KeyTable | priority), rowrun rows followed by their first L keys. */
  private expandKeys(): void {
    const K = this.keys!;
    const table = f16KeyTable();
    const states = this.p.states as Uint16Array;
    for (const g of this.groups) {
      const fam = g.family;
      if (!fam) continue;
      const width = g.alloc.width;
      const stride = this.kStride[g.index]!;
      const ext = fam instanceof RowRunHashFamily ? fam.runLength : 0;
      for (let k = 0; k < fam.depth; k++) {
        const src = g.stateOffset + k * width;
        const dst = this.keyBase[g.index]! + k * stride;
        const prio = (15 - k) << 1;
        for (let i = 0; i < width; i++) K[dst + i] = table[states[src + i]!]! | prio;
        for (let i = 0; i < ext; i++) K[dst + width + i] = K[dst + i]!;
      }
    }
  }

  /**
   * f16 states through keys (as the wasm kernel, docs/kernels.md): key = bits(|v| as float32) | (15 − k) << 1 |
   * sign, so the abs-max with ties to the lowest k is an integer max — branch-free: m = a − (δ & δ >> 31), δ = a − b
   * (keys are < 2^31, no overflow) — and the winner's float bits are (m & ~0x1fff) | m << 31, written through
   * an Int32 view of the row.
   */
  private f16Row(g: SketchGroup, r: number, start: number): void {
    const K = this.keys!;
    const out = this.rowBits!;
    const C = g.channels.length;
    const fam = g.family!;
    const d = fam.depth;
    const base = this.keyBase[g.index]!;
    const stride = this.kStride[g.index]!;
    if (fam instanceof RowRunHashFamily) {
      const { segments, runLength: L, offsets } = fam;
      const V = fam.rows * segments;
      for (let s = 0; s < segments; s++) {
        const c0 = s * L;
        const c1 = Math.min(c0 + L, C);
        const ob = r * segments + s;
        // p_k + c is the key of column c in sketch row k (contiguous thanks to the ring extension)
        const p0 = base + offsets[ob]! - c0 - start;
        if (d === 1) {
          for (let c = start + c0; c < start + c1; c++) {
            const m = K[p0 + c]!;
            out[c] = (m & KEY_MASK) | (m << 31);
          }
          continue;
        }
        const p1 = base + stride + offsets[V + ob]! - c0 - start;
        if (d === 2) {
          for (let c = start + c0; c < start + c1; c++) {
            const a = K[p0 + c]!;
            const e = a - K[p1 + c]!;
            const m = a - (e & (e >> 31));
            out[c] = (m & KEY_MASK) | (m << 31);
          }
          continue;
        }
        const p2 = base + 2 * stride + offsets[2 * V + ob]! - c0 - start;
        if (d === 3) {
          for (let c = start + c0; c < start + c1; c++) {
            const a = K[p0 + c]!;
            const e = a - K[p1 + c]!;
            const m1 = a - (e & (e >> 31));
            const e2 = m1 - K[p2 + c]!;
            const m = m1 - (e2 & (e2 >> 31));
            out[c] = (m & KEY_MASK) | (m << 31);
          }
          continue;
        }
        // d > 3: running maximum in this.key, then the rest of the rows
        const cur = this.key;
        for (let c = c0; c < c1; c++) {
          const a = K[p0 + start + c]!;
          const e = a - K[p1 + start + c]!;
          const m1 = a - (e & (e >> 31));
          const e2 = m1 - K[p2 + start + c]!;
          cur[c] = m1 - (e2 & (e2 >> 31));
        }
        for (let k = 3; k < d; k++) {
          const pk = base + k * stride + offsets[k * V + ob]! - c0;
          for (let c = c0; c < c1; c++) {
            const a = cur[c]!;
            const e = a - K[pk + c]!;
            cur[c] = a - (e & (e >> 31));
          }
        }
        for (let c = c0; c < c1; c++) {
          const m = cur[c]!;
          out[start + c] = (m & KEY_MASK) | (m << 31);
        }
      }
      return;
    }
    const idx = this.idx;
    const cur = this.key;
    const mixed = fam as MixedHashFamily;
    for (let k = 0; k < d; k++) {
      mixed.rowIndices(r, k, idx);
      const kb = base + k * stride;
      if (k === 0) {
        for (let c = 0; c < C; c++) cur[c] = K[kb + idx[c]!]!;
      } else {
        for (let c = 0; c < C; c++) {
          const a = cur[c]!;
          const e = a - K[kb + idx[c]!]!;
          cur[c] = a - (e & (e >> 31));
        }
      }
    }
    for (let c = 0; c < C; c++) {
      const m = cur[c]!;
      out[start + c] = (m & KEY_MASK) | (m << 31);
    }
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
  if (p.options.query === 'signmean') return signMeanSketchKernel(p);
  return new SketchLinear(p);
}
