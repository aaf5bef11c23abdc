/**
 * Per-layer bits as an inline SVG bar chart (no plotting library: a dozen bars do not pay for one). Each bar is
 * one transformer layer: the stored bits of its compressed linears ÷ their weights, from the bundle's accounting.
 */
import type { BundleAccounting } from '@ultrasketch/pipeline/browser';

export interface LayerBits {
  label: string;
  bits: number;
  weights: number;
}

/** Group the compressed linears by layer index (`layers.3.attention.wq` → layer 3). */
export function layerBits(a: BundleAccounting): LayerBits[] {
  const layers = new Map<number, LayerBits>();
  for (const name of a.compressedLinears) {
    const w = a.weights[name];
    const match = /(?:^|\.)(\d+)\./.exec(name);
    if (!w || !match) continue;
    const index = Number(match[1]);
    const row = layers.get(index) ?? { label: `layer ${index}`, bits: 0, weights: 0 };
    row.bits += w.bits;
    row.weights += w.weights;
    layers.set(index, row);
  }
  return [...layers.entries()].sort((x, y) => x[0] - y[0]).map(([, row]) => row);
}

const SVG = 'http://www.w3.org/2000/svg';

function el(name: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

export function renderLayerPlot(target: HTMLElement, rows: LayerBits[]): void {
  target.replaceChildren();
  if (rows.length === 0) {
    target.textContent = 'No compressed linears in this bundle (a float bundle).';
    return;
  }
  const width = 900;
  const barHeight = 18;
  const labelWidth = 70;
  const height = rows.length * (barHeight + 6) + 24;
  const max = Math.max(1, ...rows.map((r) => r.bits / r.weights));
  const scale = (width - labelWidth - 80) / max;
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img', 'aria-label': 'bits per weight by layer' });
  // the 1-bit line: what "sub-1-bit" is measured against
  const one = labelWidth + scale;
  svg.append(el('line', { x1: one, x2: one, y1: 0, y2: height - 18, stroke: '#c0392b', 'stroke-dasharray': '4 3' }));
  svg.append(el('text', { x: one + 4, y: height - 4 }, '1 bit'));
  rows.forEach((r, i) => {
    const bpw = r.bits / r.weights;
    const y = i * (barHeight + 6);
    svg.append(el('text', { x: 0, y: y + 13 }, r.label));
    svg.append(el('rect', { x: labelWidth, y, width: Math.max(1, bpw * scale), height: barHeight, fill: '#2f6fde', rx: 2 }));
    svg.append(el('text', { x: labelWidth + bpw * scale + 6, y: y + 13 }, `${bpw.toFixed(3)} bpw`));
  });
  target.append(svg);
}
