/**
 * Per-layer bits as an inline SVG bar chart (no plotting library: a few dozen bars do not pay for one). Each
 * group is one transformer layer; each bar in it one open bundle: the stored bits of that layer's linears ÷
 * their weights, from the bundle's accounting.
 */
import { type BundleAccounting, weightRole } from '@ultrasketch/pipeline/browser';

export interface LayerBits {
  layer: number;
  bits: number;
  weights: number;
}

export interface PlotSeries {
  name: string;
  rows: LayerBits[];
}

/**
 * Group the linears by layer index (`layers.3.attention.wq` → layer 3). Every linear counts, compressed or kept in
 * float, so a float bundle next to a compressed one shows its 16 bits.
 */
export function layerBits(a: BundleAccounting): LayerBits[] {
  const layers = new Map<number, LayerBits>();
  for (const [name, w] of Object.entries(a.weights)) {
    const match = /(?:^|\.)(\d+)\./.exec(name);
    if (weightRole(name) !== 'linear' || !match) continue;
    const layer = Number(match[1]);
    const row = layers.get(layer) ?? { layer, bits: 0, weights: 0 };
    row.bits += w.bits;
    row.weights += w.weights;
    layers.set(layer, row);
  }
  return [...layers.values()].sort((x, y) => x.layer - y.layer);
}

const SVG = 'http://www.w3.org/2000/svg';
const COLORS = ['#2f6fde', '#e07b22'];

function el(name: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

export function renderLayerPlot(target: HTMLElement, series: PlotSeries[]): void {
  target.replaceChildren();
  const layers = [...new Set(series.flatMap((s) => s.rows.map((r) => r.layer)))].sort((a, b) => a - b);
  if (layers.length === 0) {
    target.textContent = 'No per-layer linears found in this bundle.';
    return;
  }
  const width = 900;
  const bar = 16;
  const group = series.length * (bar + 2) + 8;
  const labelWidth = 70;
  const legend = series.length > 1 ? 20 : 0;
  const height = legend + layers.length * group + 22;
  const bpws = series.flatMap((s) => s.rows.map((r) => r.bits / r.weights));
  const max = Math.max(1, ...bpws);
  const scale = (width - labelWidth - 90) / max;
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img', 'aria-label': 'bits per weight by layer' });
  if (series.length > 1) {
    series.forEach((s, i) => {
      svg.append(el('rect', { x: labelWidth + i * 300, y: 2, width: 12, height: 12, fill: COLORS[i % COLORS.length]! }));
      svg.append(el('text', { x: labelWidth + i * 300 + 18, y: 12 }, s.name));
    });
  }
  // the 1-bit line: what "sub-1-bit" is measured against
  const one = labelWidth + scale;
  svg.append(el('line', { x1: one, x2: one, y1: legend, y2: height - 18, stroke: '#c0392b', 'stroke-dasharray': '4 3' }));
  svg.append(el('text', { x: one + 4, y: height - 4 }, '1 bit'));
  layers.forEach((layer, li) => {
    const y0 = legend + li * group;
    svg.append(el('text', { x: 0, y: y0 + 12 }, `layer ${layer}`));
    series.forEach((s, si) => {
      const row = s.rows.find((r) => r.layer === layer);
      if (!row) return;
      const bpw = row.bits / row.weights;
      const y = y0 + si * (bar + 2);
      svg.append(el('rect', { x: labelWidth, y, width: Math.max(1, bpw * scale), height: bar, fill: COLORS[si % COLORS.length]!, rx: 2 }));
      svg.append(el('text', { x: labelWidth + bpw * scale + 6, y: y + 12 }, `${bpw.toFixed(3)} bpw`));
    });
  });
  target.append(svg);
}
