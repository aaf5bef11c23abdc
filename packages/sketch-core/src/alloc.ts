/**
 * Importance-aware space allocation (docs/methods.md §1, "saliency-driven"), in three steps:
 *
 * 1. Score every input channel j: score_j = s_j · ‖W[:, j]‖², with s_j = E[a_j²] from calibration
 *    (absent → 1 for every channel, i.e. the column energy alone).
 * 2. Partition the channels into G groups: sort by score, descending (ties by ascending channel index);
 *    `count` cuts the sorted list into G runs of equal channel counts (⌊C/G⌋ or ⌈C/G⌉ each), `mass` cuts it
 *    where the cumulative score crosses g/G of the total (every group keeps at least one channel; the top
 *    group may be a single dominant channel). Group 0 holds the highest scores.
 * 3. Split the state budget S among the groups: target_g = n_g (uniform) or n_g^(1−α) · score_g^α
 *    (saliency; α = 0 is uniform, α = 1 is states ∝ the group's score mass), where n_g = rows · |group| is
 *    the number of weights of the group. The targets are scaled by one level λ (found by bisection) and
 *    clamped to [min(d, n_g), n_g]: at least one state per sketch row, and at most one state per weight —
 *    a group that reaches n_g is stored EXACTLY (one state per weight, no hashing). Then each sketch group
 *    rounds down to whole sketch rows (states = d · width, width ≥ 1, d · width < n_g; a group whose rounded
 *    width reaches n_g becomes exact), and the states left over go, d at a time (or what completing an exact
 *    group costs), to the group furthest below its target, until none fits.
 */
export const ALLOC_KINDS = ['uniform', 'saliency'] as const;
export type AllocKind = (typeof ALLOC_KINDS)[number];
export const SPLIT_KINDS = ['count', 'mass'] as const;
export type SplitKind = (typeof SPLIT_KINDS)[number];

/** score_j = saliency_j · Σ_r W[r, j]² (float64). */
export function channelScores(w: Float32Array, rows: number, cols: number, saliency?: Float64Array | null): Float64Array {
  const out = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let j = 0; j < cols; j++) out[j] = out[j]! + w[base + j]! * w[base + j]!;
  }
  if (saliency) for (let j = 0; j < cols; j++) out[j] = out[j]! * saliency[j]!;
  return out;
}

/** groupOf[j] ∈ [0, groups) for every channel; group 0 holds the highest scores. Needs 1 ≤ groups ≤ cols. */
export function partitionChannels(scores: Float64Array, groups: number, split: SplitKind): Uint8Array {
  const C = scores.length;
  if (!Number.isInteger(groups) || groups < 1 || groups > C || groups > 256) {
    throw new RangeError(`partitionChannels: ${groups} groups for ${C} channels (need 1 ≤ groups ≤ min(channels, 256))`);
  }
  const order = Array.from({ length: C }, (_, j) => j).sort((a, b) => scores[b]! - scores[a]! || a - b);
  const groupOf = new Uint8Array(C);
  let total = 0;
  for (let j = 0; j < C; j++) total += scores[j]!;
  if (split === 'count' || !(total > 0)) {
    for (let g = 0; g < groups; g++) {
      const end = Math.floor(((g + 1) * C) / groups);
      for (let i = Math.floor((g * C) / groups); i < end; i++) groupOf[order[i]!] = g;
    }
    return groupOf;
  }
  let g = 0;
  let count = 0;
  let cum = 0;
  for (let i = 0; i < C; i++) {
    // Move on when this group is non-empty and has reached its mass target, or when every later group
    // needs one of the channels that are left.
    while (g < groups - 1 && count > 0 && (cum >= (total * (g + 1)) / groups || C - i <= groups - 1 - g)) {
      g++;
      count = 0;
    }
    groupOf[order[i]!] = g;
    count++;
    cum += scores[order[i]!]!;
  }
  return groupOf;
}

/** The channels of each group, ascending. */
export function groupChannels(groupOf: Uint8Array, groups: number): Int32Array[] {
  const counts = new Int32Array(groups);
  for (let j = 0; j < groupOf.length; j++) counts[groupOf[j]!]!++;
  const out = Array.from({ length: groups }, (_, g) => new Int32Array(counts[g]!));
  const fill = new Int32Array(groups);
  for (let j = 0; j < groupOf.length; j++) {
    const g = groupOf[j]!;
    out[g]![fill[g]!++] = j;
  }
  return out;
}

export interface GroupDemand {
  /** Weights in the group (rows · channels). */
  weights: number;
  /** Sum of the group's channel scores. */
  score: number;
}

/** A group's storage: `depth` sketch rows of `width` states, or exact (depth 1, width = weights). */
export interface GroupAllocation {
  states: number;
  exact: boolean;
  width: number;
  depth: number;
}

/** The fewest states a group of n weights can have: one state per sketch row, or exact if that is fewer. */
export function minGroupStates(weights: number, depth: number): number {
  return Math.min(depth, weights);
}

/** Interpret a stored per-group state count; null when it is not a valid allocation for the group. */
export function groupAllocationOf(states: number, weights: number, depth: number): GroupAllocation | null {
  if (states === weights) return { states, exact: true, width: weights, depth: 1 };
  if (!Number.isInteger(states) || states < depth || states % depth !== 0 || states >= weights) return null;
  return { states, exact: false, width: states / depth, depth };
}

/** The unrounded per-group targets (before clamping and scaling). */
export function allocationTargets(groups: GroupDemand[], kind: AllocKind, alpha: number): Float64Array {
  const t = new Float64Array(groups.length);
  const totalScore = groups.reduce((a, g) => a + g.score, 0);
  for (let g = 0; g < groups.length; g++) {
    const { weights, score } = groups[g]!;
    t[g] = kind === 'uniform' || alpha === 0 || !(totalScore > 0) ? weights : weights ** (1 - alpha) * score ** alpha;
  }
  return t;
}

/**
 * Split `totalStates` among the groups (see the file comment). Requires totalStates ≥ Σ minGroupStates;
 * the result sums to at most totalStates, and to within one increment of it unless every group is exact.
 */
export function allocateStates(
  totalStates: number,
  groups: GroupDemand[],
  depth: number,
  kind: AllocKind,
  alpha: number,
): GroupAllocation[] {
  const G = groups.length;
  const lo = groups.map((g) => minGroupStates(g.weights, depth));
  const hi = groups.map((g) => g.weights);
  const minTotal = lo.reduce((a, b) => a + b, 0);
  if (totalStates < minTotal) throw new RangeError(`allocateStates: ${totalStates} states < the minimum ${minTotal}`);
  const t = allocationTargets(groups, kind, alpha);
  const at = (lambda: number) => t.map((tg, g) => Math.min(hi[g]!, Math.max(lo[g]!, lambda * tg)));
  const sum = (a: Float64Array) => a.reduce((x, y) => x + y, 0);
  // λ at which every group with a positive target reaches its cap.
  let lambdaHi = 0;
  for (let g = 0; g < G; g++) if (t[g]! > 0) lambdaHi = Math.max(lambdaHi, hi[g]! / t[g]!);
  let target: Float64Array;
  if (sum(at(lambdaHi)) <= totalStates) {
    target = at(lambdaHi);
  } else {
    let a = 0;
    let b = lambdaHi;
    for (let i = 0; i < 200 && b - a > a * 1e-15; i++) {
      const m = (a + b) / 2;
      if (sum(at(m)) <= totalStates) a = m;
      else b = m;
    }
    target = at(a);
  }
  const plan: GroupAllocation[] = groups.map((g, i) => {
    const n = g.weights;
    const width = Math.max(1, Math.floor(target[i]! / depth));
    if (target[i]! >= n || depth * width >= n) return { states: n, exact: true, width: n, depth: 1 };
    return { states: depth * width, exact: false, width, depth };
  });
  let left = totalStates - plan.reduce((a, p) => a + p.states, 0);
  if (left < 0) throw new Error(`allocateStates: internal error, plan exceeds the budget by ${-left} states`);
  for (;;) {
    let best = -1;
    let bestDeficit = -Infinity;
    for (let g = 0; g < G; g++) {
      const p = plan[g]!;
      if (p.exact) continue;
      const cost = depth * (p.width + 1) >= groups[g]!.weights ? groups[g]!.weights - p.states : depth;
      const deficit = target[g]! - p.states;
      if (cost <= left && deficit > bestDeficit) {
        best = g;
        bestDeficit = deficit;
      }
    }
    if (best < 0) break;
    const p = plan[best]!;
    const n = groups[best]!.weights;
    if (depth * (p.width + 1) >= n) {
      left -= n - p.states;
      plan[best] = { states: n, exact: true, width: n, depth: 1 };
    } else {
      left -= depth;
      plan[best] = { states: p.states + depth, exact: false, width: p.width + 1, depth };
    }
  }
  return plan;
}
