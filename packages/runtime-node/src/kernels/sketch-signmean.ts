import type { Linear } from '@ultrasketch/model';
import { f16BitsToF32 } from '@ultrasketch/core';
import { RowRunHashFamily, type SketchParams, dequantizeStates, sketchCodec, sketchGroups } from '@ultrasketch/sketch-core';
import { RowDecodingLinear } from './rowKernel.js';
import { compressedWasmAvailable, withArena, checkApplyShape } from './wasm-common.js';
import { type RawRunGroup, type WasmKernelOptions, WasmSketchLinear } from './wasm-sketch.js';

/**
 * Kernels of the sketch codec's `signmean` query (sketch-core signmean.ts, docs/sketch.md §10):
 * ŵ(r, c) = (1/d) Σ_k ξ_k(c) · S_k[h_k(r, c)], with column signs ξ derived from the seed.
 *
 * Because the sign depends on the column only, y_r = Σ_k Σ_c S_k[h_k(r, c)] · (ξ_k(c)/d · x_c): each input is
 * scaled once per call, and under `rowrun` each run of a row is then a plain contiguous dot product of float32
 * states with the scaled inputs — no per-weight decode, no abs-max, and the states (a few % of a dense f32
 * matrix's bytes) stay in cache. Every (group, sketch row) pair becomes one "raw run group" (states of that
 * sketch row as float32 with a wrap-around copy of its first run, the run offsets of that sketch row, the
 * scaled signs of its channels); an exact group is a raw run group of one run per row. The WebAssembly SIMD
 * kernel (wasm-sketch.ts, `raw` rowrun) and the JS kernel below both run over these. For the wasm kernel,
 * int8 states stay int8 (`keepInt8`): it widens each ring per call into scratch (issue 12: the weights held
 * must track the bundle's bytes; a float32 ring is 4× the stored states).
 * `mixed`-hash signmean sketches decode row by row through the codec (correct, not fast).
 */

/**
 * The raw run groups of a signmean sketch with rowrun (or exact) groups; null if a group hashes with `mixed`.
 * keepInt8: int8 states are given as `q8` (the stored bytes and their sketch row's scale) instead of a ring.
 */
export function signMeanRunGroups(p: SketchParams, keepInt8 = false): RawRunGroup[] | null {
  const int8 = keepInt8 && p.options.state === 'int8' ? (p.states as Int8Array) : null;
  const values = int8 ? null : dequantizeStates(p);
  // int8: the states [begin, begin + count) of the sketch row whose scale is scales[scaleAt], then `wrap` again
  const q8 = (begin: number, count: number, scaleAt: number, wrap: number) => ({
    states: int8!.subarray(begin, begin + count),
    scale: f16BitsToF32(p.scales![scaleAt]!),
    wrap,
  });
  const out: RawRunGroup[] = [];
  for (const g of sketchGroups(p)) {
    const C = g.channels.length;
    if (!g.family) {
      out.push({
        channels: g.channels,
        ...(int8 ? { q8: q8(g.stateOffset, p.rows * C, g.scaleOffset, 0) } : { ring: values!.slice(g.stateOffset, g.stateOffset + p.rows * C) }),
        offsets: Int32Array.from({ length: p.rows }, (_, r) => r * C),
        L: C,
        segs: 1,
        scale: new Float32Array(C).fill(1),
      });
      continue;
    }
    if (!(g.family instanceof RowRunHashFamily)) return null;
    const fam = g.family;
    const d = fam.depth;
    const width = g.alloc.width;
    const V = p.rows * fam.segments;
    for (let k = 0; k < d; k++) {
      const begin = g.stateOffset + k * width;
      const xi = g.signs![k]!;
      let ring: Float32Array | undefined;
      if (!int8) {
        ring = new Float32Array(width + fam.runLength);
        ring.set(values!.subarray(begin, begin + width));
        // the ring's start again, so a run that wraps is one contiguous slice
        for (let i = 0; i < fam.runLength; i++) ring[width + i] = ring[i % width]!;
      }
      out.push({
        channels: g.channels,
        ...(ring ? { ring } : { q8: q8(begin, width, g.scaleOffset + k, fam.runLength) }),
        offsets: fam.offsets.slice(k * V, (k + 1) * V),
        L: fam.runLength,
        segs: fam.segments,
        scale: Float32Array.from(xi, (v) => v / d),
      });
    }
  }
  return out;
}

/** JS kernel over raw run groups: per call the inputs are scaled into each group's order, then runs are dots. */
class RunGroupsLinear implements Linear {
  private readonly xs: Float32Array[];

  constructor(
    readonly outFeatures: number,
    readonly inFeatures: number,
    private readonly groups: RawRunGroup[],
  ) {
    this.xs = groups.map((g) => new Float32Array(g.channels.length));
  }

  apply(x: Float32Array, y: Float32Array, n: number): void {
    const rows = this.outFeatures;
    const cols = this.inFeatures;
    checkApplyShape('sketch signmean', x, y, n, rows, cols);
    y.fill(0, 0, n * rows);
    for (let t = 0; t < n; t++) {
      const xo = t * cols;
      const yo = t * rows;
      for (let gi = 0; gi < this.groups.length; gi++) {
        const g = this.groups[gi]!;
        const xs = this.xs[gi]!;
        const C = xs.length;
        for (let c = 0; c < C; c++) xs[c] = g.scale[c]! * x[xo + g.channels[c]!]!;
        const { offsets, L, segs } = g;
        const ring = g.ring!; // built by signMeanRunGroups(p) (float32 rings)
        for (let r = 0; r < rows; r++) {
          let acc = 0;
          for (let s = 0; s < segs; s++) {
            const c0 = s * L;
            const len = Math.min(L, C - c0);
            const o = offsets[r * segs + s]! - c0;
            for (let c = c0; c < c0 + len; c++) acc += ring[o + c]! * xs[c]!;
          }
          y[yo + r] = y[yo + r]! + acc;
        }
      }
    }
  }
}

/** Row-by-row decode through the codec (signmean with `mixed` hashing). */
class DecodeRowsLinear extends RowDecodingLinear {
  constructor(private readonly p: SketchParams) {
    super(p.rows, p.cols);
  }

  protected decodeRow(r: number, out: Float32Array): void {
    sketchCodec.decodeRows(this.p, r, 1, out);
  }
}

/** The JS signmean kernel (run groups; mixed hashing decodes rows through the codec). */
export function signMeanSketchKernel(p: SketchParams): Linear {
  const groups = signMeanRunGroups(p);
  return groups ? new RunGroupsLinear(p.rows, p.cols, groups) : new DecodeRowsLinear(p);
}

/**
 * The WebAssembly SIMD signmean kernel (any state format: f16/f32 states are held as float32 rings, int8 states
 * as stored and widened per call); JS where unavailable.
 */
export function wasmSignMeanSketchKernel(p: SketchParams, options: WasmKernelOptions = {}): Linear {
  const groups = compressedWasmAvailable() ? signMeanRunGroups(p, true) : null;
  if (!groups) return signMeanSketchKernel(p);
  return withArena(options.arena, (arena) => WasmSketchLinear.raw(arena, p.rows, p.cols, groups, options.tiling));
}
