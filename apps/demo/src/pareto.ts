/**
 * The Pareto plot of a sweep report (the `sweep.json` that `ultrasketch sweep` writes): every measured point as
 * bpwLinears (x, log₂) against perplexity (y, log₁₀: post-training sub-1-bit points reach 1e10), one colour per
 * codec spec, the float model as a dashed line, and the Pareto frontier — the points no other point beats on both
 * bits and perplexity — joined by a line. The report is only read (never fetched: the user opens the file).
 */
import { DemoError } from './backend.js';

/** What the plot reads of a sweep.json row (pipeline's SweepRow; the rest is ignored). */
export interface SweepPoint {
  label: string;
  codec: string;
  status: string;
  bpwTarget: number | null;
  bpwLinears: number | null;
  bitsPerParam: number | null;
  perplexity: number | null;
}

export interface SweepReport {
  command: string;
  model: { path: string };
  rows: SweepPoint[];
}

/** Check the parsed JSON is a sweep report, with a typed error naming what is wrong. */
export function parseSweepReport(text: string, name: string): SweepReport {
  const hint = 'open the sweep.json that `ultrasketch sweep` writes into its --out-dir';
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new DemoError('E_BAD_ARGUMENT', `${name} is not JSON (${err instanceof Error ? err.message : String(err)})`, hint);
  }
  const d = data as Partial<SweepReport> | null;
  if (!d || typeof d !== 'object' || !Array.isArray(d.rows) || typeof d.model !== 'object' || d.model === null) {
    throw new DemoError('E_BAD_ARGUMENT', `${name} is not a sweep report (no rows and model)`, hint);
  }
  for (const [i, r] of d.rows.entries()) {
    const row = r as Partial<SweepPoint> | null;
    if (!row || typeof row.label !== 'string' || typeof row.codec !== 'string' || typeof row.status !== 'string') {
      throw new DemoError('E_BAD_ARGUMENT', `${name}: row ${i} is not a sweep row (label, codec, status)`, hint);
    }
  }
  return { command: String(d.command ?? ''), model: { path: String((d.model as { path?: unknown }).path ?? '') }, rows: d.rows as SweepPoint[] };
}

export const pointName = (p: SweepPoint) => (p.bpwTarget === null ? p.label : `${p.label}@${p.bpwTarget}`);

/** The measured points (not the float row): status ok, finite positive bits and perplexity. */
export function sweepPoints(r: SweepReport): SweepPoint[] {
  return r.rows.filter(
    (p) => p.codec !== 'float32' && p.status === 'ok' && typeof p.bpwLinears === 'number' && p.bpwLinears > 0 && typeof p.perplexity === 'number' && Number.isFinite(p.perplexity) && p.perplexity > 0,
  );
}

/** Points no other point beats on both axes (fewer or equal bits and lower perplexity), by increasing bits. */
export function paretoFrontier(points: SweepPoint[]): SweepPoint[] {
  const sorted = [...points].sort((a, b) => a.bpwLinears! - b.bpwLinears! || a.perplexity! - b.perplexity!);
  const frontier: SweepPoint[] = [];
  let best = Number.POSITIVE_INFINITY;
  for (const p of sorted) {
    if (p.perplexity! < best) {
      frontier.push(p);
      best = p.perplexity!;
    }
  }
  return frontier;
}

const SVG = 'http://www.w3.org/2000/svg';
const COLORS = ['#2f6fde', '#e07b22', '#2a9d5c', '#b03ab5', '#c0392b', '#7a6a00', '#1c8fa8', '#555'];

function el(name: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

export function renderPareto(target: HTMLElement, report: SweepReport, name: string): void {
  target.replaceChildren();
  const points = sweepPoints(report);
  const frontier = paretoFrontier(points);
  const float = report.rows.find((p) => p.codec === 'float32' && typeof p.perplexity === 'number' && p.perplexity > 0);
  target.dataset.points = String(points.length);
  target.dataset.frontier = JSON.stringify(frontier.map(pointName));
  const caption = document.createElement('p');
  caption.className = 'note';
  const left = report.rows.filter((p) => p.codec !== 'float32' && !points.includes(p)).map((p) => `${pointName(p)} (${p.status})`);
  caption.textContent =
    `${name}: ${report.model.path}, ${points.length} points; frontier: ${frontier.map(pointName).join(', ') || 'none'}` +
    (left.length ? `; not plotted: ${left.join(', ')}` : '') +
    '.';
  target.append(caption);
  if (points.length === 0) return;

  const W = 900;
  const H = 380;
  const m = { left: 70, right: 170, top: 12, bottom: 44 };
  const xs = points.map((p) => Math.log2(p.bpwLinears!));
  const ys = points.map((p) => Math.log10(p.perplexity!));
  if (float) ys.push(Math.log10(float.perplexity!));
  const xLo = Math.floor(Math.min(...xs));
  const xHi = Math.max(xLo + 1, Math.ceil(Math.max(...xs)));
  const yLo = Math.floor(Math.min(...ys));
  const yHi = Math.max(yLo + 1, Math.ceil(Math.max(...ys)));
  const X = (bpw: number) => m.left + ((Math.log2(bpw) - xLo) / (xHi - xLo)) * (W - m.left - m.right);
  const Y = (ppl: number) => m.top + (1 - (Math.log10(ppl) - yLo) / (yHi - yLo)) * (H - m.top - m.bottom);
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', 'aria-label': 'perplexity against bits per weight' });
  // axes: powers of two on x, decades on y (at most ~10 labels each)
  for (let e = xLo; e <= xHi; e++) {
    const x = X(2 ** e);
    svg.append(el('line', { x1: x, x2: x, y1: m.top, y2: H - m.bottom, stroke: '#e3e6ec' }));
    svg.append(el('text', { x: x - 8, y: H - m.bottom + 16 }, String(2 ** e)));
  }
  const yStep = Math.max(1, Math.ceil((yHi - yLo) / 10));
  for (let e = yLo; e <= yHi; e += yStep) {
    const y = Y(10 ** e);
    svg.append(el('line', { x1: m.left, x2: W - m.right, y1: y, y2: y, stroke: '#e3e6ec' }));
    svg.append(el('text', { x: 8, y: y + 4 }, e <= 3 ? String(10 ** e) : `1e${e}`));
  }
  svg.append(el('text', { x: m.left, y: H - 6 }, 'bpwLinears (bits per linear weight, log scale)'));
  if (float) {
    const y = Y(float.perplexity!);
    svg.append(el('line', { x1: m.left, x2: W - m.right, y1: y, y2: y, stroke: '#555', 'stroke-dasharray': '5 4' }));
    svg.append(el('text', { x: W - m.right + 6, y: y + 4 }, `float ${float.perplexity!.toFixed(2)}`));
  }
  // the 1-bit line
  if (xLo <= 0 && xHi >= 0) svg.append(el('line', { x1: X(1), x2: X(1), y1: m.top, y2: H - m.bottom, stroke: '#c0392b', 'stroke-dasharray': '4 3' }));
  svg.append(el('polyline', { points: frontier.map((p) => `${X(p.bpwLinears!)},${Y(p.perplexity!)}`).join(' '), fill: 'none', stroke: '#1d2330', 'stroke-width': 1.5 }));
  const specs = [...new Set(points.map((p) => p.label))];
  specs.forEach((spec, i) => {
    const color = COLORS[i % COLORS.length]!;
    svg.append(el('circle', { cx: W - m.right + 12, cy: m.top + 40 + i * 18, r: 5, fill: color }));
    svg.append(el('text', { x: W - m.right + 22, y: m.top + 44 + i * 18 }, spec));
    for (const p of points.filter((q) => q.label === spec)) {
      const dot = el('circle', { cx: X(p.bpwLinears!), cy: Y(p.perplexity!), r: frontier.includes(p) ? 6 : 4, fill: color, stroke: frontier.includes(p) ? '#1d2330' : 'none' });
      dot.append(el('title', {}, `${pointName(p)}: ${p.bpwLinears!.toFixed(3)} bpwLinears, ${p.bitsPerParam?.toFixed(3) ?? '?'} bitsPerParam, perplexity ${p.perplexity!.toPrecision(4)}`));
      svg.append(dot);
    }
  });
  svg.append(el('text', { x: W - m.right + 6, y: m.top + 20 }, 'perplexity (log)'));
  target.append(svg);
}
