/**
 * The sketch state-occupancy histogram: how many weights each stored state serves. A sketch (and a HashedNets)
 * matrix stores `width` states per sketch row and hashes every weight of its channel group to one of them, so a
 * state's load is the number of weights sharing it. The histogram pools the loads of every sketch row and group
 * of one matrix, rebuilt from the bundle's own seed and layout with the codec's hash families (nothing is
 * stored for it), next to what random hashing would give (a Poisson law per group, λ = weights ÷ width): the
 * `rowrun` family's near-constant loads against `mixed`'s Poisson spread (docs/sketch.md, "Measured occupancy").
 */
import type { OpenedBundle } from '@ultrasketch/pipeline/browser';
import { type HashFamily, type HashedNetsParams, type SketchParams, hashedNetsFamily, sketchGroups } from '@ultrasketch/sketch-core';

export interface Occupancy {
  weight: string;
  codec: string;
  hash: string;
  /** histogram[l] = states holding exactly l weights (pooled over sketch rows and groups). */
  histogram: number[];
  /** Random hashing's expectation for each load (sum of each group's Poisson law). */
  poisson: number[];
  /** Stored states counted (width × depth over the hashed groups) and the weight slots they serve. */
  states: number;
  items: number;
  emptyFraction: number;
  maxLoad: number;
  /** Channel groups stored exactly (one state per weight, no hashing): not in the histogram. */
  exactGroups: number;
}

/** The names of a bundle's matrices that have sketch states (codec sketch or hashednets). */
export function sketchWeights(model: OpenedBundle): string[] {
  return [...model.bundle.weights].filter(([, w]) => w.entry.codec === 'sketch' || w.entry.codec === 'hashednets').map(([name]) => name);
}

function families(codec: string, params: unknown): { families: HashFamily[]; exact: number } {
  if (codec === 'hashednets') return { families: [hashedNetsFamily(params as HashedNetsParams)], exact: 0 };
  const groups = sketchGroups(params as SketchParams);
  return { families: groups.flatMap((g) => (g.family ? [g.family] : [])), exact: groups.filter((g) => !g.family).length };
}

function poissonInto(out: number[], lambda: number, bins: number): void {
  // p(l) = e^−λ λ^l / l!, by recurrence; enough terms to cover the plotted range
  let p = Math.exp(-lambda);
  for (let l = 0; l < out.length; l++) {
    out[l]! += bins * p;
    p *= lambda / (l + 1);
  }
}

export function stateOccupancy(model: OpenedBundle, weight: string): Occupancy {
  const w = model.bundle.weights.get(weight);
  if (!w) throw new Error(`no weight ${weight} in the bundle`);
  const { families: fams, exact } = families(w.entry.codec, w.params);
  const counts: number[] = [];
  let states = 0;
  let items = 0;
  let empty = 0;
  for (const f of fams) {
    const load = new Int32Array(f.width);
    const idx = new Int32Array(f.cols);
    for (let k = 0; k < f.depth; k++) {
      load.fill(0);
      for (let r = 0; r < f.rows; r++) {
        f.rowIndices(r, k, idx);
        for (let c = 0; c < f.cols; c++) load[idx[c]!]!++;
      }
      for (let s = 0; s < f.width; s++) {
        const l = load[s]!;
        counts[l] = (counts[l] ?? 0) + 1;
        if (l === 0) empty++;
      }
      states += f.width;
      items += f.rows * f.cols;
    }
  }
  const histogram = Array.from({ length: counts.length }, (_, l) => counts[l] ?? 0);
  // random hashing's range reaches past the measured one (rowrun's loads are nearly constant): cover both
  const lambdaMax = Math.max(0, ...fams.map((f) => (f.rows * f.cols) / f.width));
  const poisson = new Array<number>(Math.max(histogram.length, Math.ceil(lambdaMax + 6 * Math.sqrt(lambdaMax) + 2))).fill(0);
  for (const f of fams) for (let k = 0; k < f.depth; k++) poissonInto(poisson, (f.rows * f.cols) / f.width, f.width);
  const options = (w.params as { options?: { hash?: string } }).options;
  return {
    weight,
    codec: w.entry.codec,
    hash: w.entry.codec === 'hashednets' ? 'mixed' : (options?.hash ?? '?'),
    histogram,
    poisson,
    states,
    items,
    emptyFraction: states > 0 ? empty / states : 0,
    maxLoad: histogram.length - 1,
    exactGroups: exact,
  };
}

const SVG = 'http://www.w3.org/2000/svg';

function el(name: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Bars: states per load; dots: random hashing's expectation. */
export function renderOccupancy(target: HTMLElement, o: Occupancy): void {
  target.replaceChildren();
  Object.assign(target.dataset, {
    weight: o.weight,
    states: String(o.states),
    items: String(o.items),
    empty: String(o.emptyFraction),
    maxLoad: String(o.maxLoad),
  });
  const caption = document.createElement('p');
  caption.className = 'note';
  const lambda = o.states > 0 ? o.items / o.states : 0;
  caption.textContent =
    `${o.weight} (${o.codec}, ${o.hash} hashing): ${o.items.toLocaleString()} weight slots over ${o.states.toLocaleString()} states, ` +
    `mean load ${lambda.toFixed(2)}, max ${o.maxLoad}, empty ${(100 * o.emptyFraction).toFixed(2)} %` +
    (o.exactGroups ? `; ${o.exactGroups} group(s) stored exactly, not shown` : '') +
    '. Bars: states with that many weights; dots: random (Poisson) hashing.';
  target.append(caption);
  if (o.states === 0) return;
  const width = 900;
  const height = 220;
  const left = 50;
  const bottom = 24;
  const top = 8;
  const count = (l: number) => o.histogram[l] ?? 0;
  // loads with (nearly) no states, measured or expected, are trimmed from both ends of the view
  let n = Math.max(o.histogram.length, o.poisson.length, 1);
  while (n > 1 && count(n - 1) === 0 && (o.poisson[n - 1] ?? 0) < 0.5) n--;
  let lo = 0;
  while (lo < n - 1 && count(lo) === 0 && (o.poisson[lo] ?? 0) < 0.5) lo++;
  const span = n - lo;
  const barW = (width - left - 10) / span;
  const max = Math.max(1, ...o.histogram, ...o.poisson);
  const y = (v: number) => top + (height - top - bottom) * (1 - v / max);
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img', 'aria-label': 'states per load' });
  svg.append(el('text', { x: 0, y: top + 10 }, String(max)));
  svg.append(el('text', { x: 0, y: height - bottom }, '0'));
  for (let l = lo; l < n; l++) {
    const x = left + (l - lo) * barW;
    const v = count(l);
    const expected = o.poisson[l] ?? 0;
    if (v > 0) svg.append(el('rect', { x, y: y(v), width: Math.max(1, barW - 1), height: y(0) - y(v), fill: '#2f6fde' }));
    if (expected >= 0.5) svg.append(el('circle', { cx: x + barW / 2, cy: y(expected), r: 2.5, fill: '#e07b22' }));
  }
  const ticks = Math.min(span, 10);
  for (let t = 0; t <= ticks; t++) {
    const l = lo + Math.round((t * (span - 1)) / Math.max(ticks, 1));
    svg.append(el('text', { x: left + (l - lo) * barW, y: height - 6 }, String(l)));
  }
  target.append(svg);
}
