/**
 * Reading what a bundle says about itself: the `quality` section (perplexity, KL and top-1 measured against the
 * float model when the bundle was made) and the `training` section (the recipe and what it cost). Every reader of
 * those figures (`ultrasketch inspect`, the demo page, bench/pareto.mjs) goes through here, so they agree on what
 * a complete section is.
 *
 * A bundle is a file from anywhere: these sections are plain JSON that no checksum proves we wrote. Each field is
 * checked for its type and for being finite; a section missing a figure that readers show, or holding one that is
 * not a finite number, reads as absent (null) rather than as a partial or NaN figure. Nothing here imports Node:
 * the browser entry exports it.
 */

/** The quality figures a bundle stores (compress --eval-windows), checked. */
export interface StoredQuality {
  /** Perplexity of the compressed model on `windows` windows of `textSource`. */
  perplexity: number;
  /** Mean KL(float ‖ compressed) per predicted token, nats. */
  kl: number;
  /** Fraction of positions where both models' most likely next token agree. */
  top1: number;
  windows: number;
  /** The evaluation text as the compress command named it (a path). */
  textSource: string;
  /** The float model's perplexity on the same windows, measured in the same run. */
  referencePerplexity: number;
}

/** The training figures a finetuned bundle stores, checked. */
export interface StoredTraining {
  /** Steps run and tokens trained on (a run stopped early has fewer steps than its schedule). */
  steps: number;
  tokens: number;
  recipe: {
    /** The named recipe (compress --recipe), or null when the options were given one by one. */
    name: string | null;
    /** The schedule's length in steps. */
    steps: number;
    batch: number;
    seq: number;
    lr: number;
    loss: string;
    data: string;
  };
  /** The student against the float model on held-out teacher windows (never trained on), when measured. */
  holdout: { windows: number; kl: number; top1: number } | null;
}

type Json = Record<string, unknown>;

const record = (v: unknown): Json | null => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : null);
const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const count = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** The bundle's quality section (`loaded.quality`), or null when it is absent or incomplete. */
export function readQualitySection(section: unknown): StoredQuality | null {
  const q = record(section);
  const ref = record(q?.reference);
  if (!q || !ref) return null;
  const { perplexity, kl, top1, windows, textSource } = q;
  const referencePerplexity = ref.perplexity;
  if (!finite(perplexity) || !(perplexity > 0) || !finite(referencePerplexity) || !(referencePerplexity > 0)) return null;
  if (!finite(kl) || !finite(top1) || !count(windows) || windows === 0 || typeof textSource !== 'string') return null;
  return { perplexity, kl, top1, windows, textSource, referencePerplexity };
}

/** The bundle's training section (`loaded.training`), or null when it is absent or incomplete. */
export function readTrainingSection(section: unknown): StoredTraining | null {
  const t = record(section);
  const cost = record(t?.cost);
  const r = record(t?.recipe);
  if (!t || !cost || !r) return null;
  if (!count(cost.steps) || !count(cost.tokens)) return null;
  if (!count(r.steps) || !count(r.batch) || !count(r.seq) || !finite(r.lr) || typeof r.loss !== 'string' || typeof r.data !== 'string') return null;
  if (r.name !== undefined && typeof r.name !== 'string') return null;
  const h = record(t.holdout);
  const holdout = h && count(h.windows) && finite(h.kl) && finite(h.top1) ? { windows: h.windows, kl: h.kl, top1: h.top1 } : null;
  return {
    steps: cost.steps,
    tokens: cost.tokens,
    recipe: { name: r.name ?? null, steps: r.steps, batch: r.batch, seq: r.seq, lr: r.lr, loss: r.loss, data: r.data },
    holdout,
  };
}
