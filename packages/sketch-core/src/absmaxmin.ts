import type { HashFamily } from './hash.js';

/**
 * The AbsMaxMin ("underestimate") sketch of UltraSketchLLM (docs/methods.md §1), build and query.
 *
 * Build, for a (sub-)matrix of family.rows × family.cols weights into depth × width states:
 * - every state starts EMPTY (+∞ magnitude);
 * - weights are visited in ROW-MAJOR order of the (sub-)matrix (row 0 col 0, row 0 col 1, …; for a channel
 *   group, its columns in ascending original-column order); for each weight v and each sketch row k, at
 *   s = S[k][h_k(row, col)]: if s is empty or |v| < |s|, S[k][h_k] := v (signed);
 * - TIES (|v| = |s|) keep the FIRST weight stored (strict <), so the result depends on the visiting order
 *   only through ties (the loops run row by row, then sketch row by sketch row, then column by column — each
 *   sketch row is independent, so this is the same as the per-weight order above);
 * - states left empty decode as 0.
 * Query: ŵ = the candidate S[k][h_k(pos)] with the largest |·| over the d rows, sign included; ties in
 * magnitude go to the LOWEST k.
 *
 * Properties (tested): every candidate is the smallest-magnitude weight of its bucket, so |ŵ| ≤ |w|; a
 * weight that is stored in one of its buckets has |ŵ| = |w| (and ŵ = w unless a lower-k candidate of
 * exactly the same magnitude and the opposite sign exists).
 */

/** Build raw float32 states [depth · width] (k-major) of the sub-matrix given by `channels` of `w`. */
export function buildAbsMaxMin(
  w: Float32Array,
  cols: number,
  channels: Int32Array | null,
  family: HashFamily,
): Float32Array {
  const { rows, width, depth } = family;
  const C = family.cols;
  const states = new Float32Array(depth * width).fill(Infinity);
  const idx = new Int32Array(C);
  const row = new Float32Array(C);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    if (channels) for (let c = 0; c < C; c++) row[c] = w[base + channels[c]!]!;
    else row.set(w.subarray(base, base + C));
    for (let k = 0; k < depth; k++) {
      family.rowIndices(r, k, idx);
      const off = k * width;
      for (let c = 0; c < C; c++) {
        const v = row[c]!;
        const at = off + idx[c]!;
        if (Math.abs(v) < Math.abs(states[at]!)) states[at] = v;
      }
    }
  }
  for (let i = 0; i < states.length; i++) if (states[i] === Infinity) states[i] = 0;
  return states;
}

/**
 * Query every weight of row `r` from dequantized candidate values: `value(k, stateIndex)` returns the
 * float32 value of state `stateIndex` of sketch row k. Writes out[c] for c in [0, family.cols).
 */
export function queryAbsMaxMinRow(
  family: HashFamily,
  r: number,
  value: (k: number, i: number) => number,
  out: Float32Array,
  idx: Int32Array = new Int32Array(family.cols),
): void {
  const C = family.cols;
  family.rowIndices(r, 0, idx);
  for (let c = 0; c < C; c++) out[c] = value(0, idx[c]!);
  for (let k = 1; k < family.depth; k++) {
    family.rowIndices(r, k, idx);
    for (let c = 0; c < C; c++) {
      const v = value(k, idx[c]!);
      if (Math.abs(v) > Math.abs(out[c]!)) out[c] = v; // strict: ties keep the lowest k
    }
  }
}
