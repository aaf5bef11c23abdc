import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadBundle, readQualitySection, readTrainingSection } from '../src/index.js';

/** The quality and training sections as every reader sees them (stored-sections.ts). */
const DEFAULT_BUNDLE = fileURLToPath(new URL('../../../models/stories3M-littlebit-0.55.usk', import.meta.url));

describe('stored quality and training sections', () => {
  const loaded = loadBundle(DEFAULT_BUNDLE, { verifyChecksums: false });

  it('reads the embedded default bundle: the figures its sections hold, typed', () => {
    const q = readQualitySection(loaded.quality);
    const raw = loaded.quality as { perplexity: number; kl: number; top1: number; windows: number; textSource: string; reference: { perplexity: number } };
    expect(q).toEqual({
      perplexity: raw.perplexity,
      kl: raw.kl,
      top1: raw.top1,
      windows: raw.windows,
      textSource: raw.textSource,
      referencePerplexity: raw.reference.perplexity,
    });
    // The figures themselves (docs/results.md §11.2): 64 windows of eval.txt, 2.2x the float model.
    expect(q!.windows).toBe(64);
    expect(q!.textSource).toMatch(/eval\.txt$/);
    expect(q!.perplexity / q!.referencePerplexity).toBeGreaterThan(2);
    expect(q!.perplexity / q!.referencePerplexity).toBeLessThan(4);

    const t = readTrainingSection(loaded.training);
    expect(t).not.toBeNull();
    expect(t!.recipe.name).toBe('long');
    expect(t!.tokens).toBe(t!.steps * t!.recipe.batch * t!.recipe.seq);
    expect(t!.steps).toBe(t!.recipe.steps);
    expect(t!.holdout!.windows).toBeGreaterThan(0);
    expect(Number.isFinite(t!.holdout!.kl)).toBe(true);
  });

  it('a section missing a figure, or holding a non-number, reads as absent, never as a partial figure', () => {
    const q = loaded.quality as Record<string, unknown>;
    expect(readQualitySection(null)).toBeNull();
    expect(readQualitySection([q])).toBeNull();
    expect(readQualitySection({ ...q, perplexity: undefined })).toBeNull();
    expect(readQualitySection({ ...q, perplexity: '33.2' })).toBeNull();
    expect(readQualitySection({ ...q, perplexity: -1 })).toBeNull();
    expect(readQualitySection({ ...q, kl: Number.NaN })).toBeNull();
    expect(readQualitySection({ ...q, windows: 1.5 })).toBeNull();
    expect(readQualitySection({ ...q, reference: { perplexity: 0 } })).toBeNull();
    expect(readQualitySection({ ...q, reference: null })).toBeNull();

    const t = loaded.training as Record<string, unknown>;
    const recipe = t.recipe as Record<string, unknown>;
    expect(readTrainingSection(undefined)).toBeNull();
    expect(readTrainingSection({ ...t, cost: { steps: 3 } })).toBeNull();
    expect(readTrainingSection({ ...t, recipe: { ...recipe, lr: Number.POSITIVE_INFINITY } })).toBeNull();
    expect(readTrainingSection({ ...t, recipe: { ...recipe, name: 7 } })).toBeNull();
    // A recipe given flag by flag has no name; a run without teacher samples has no held-out figure.
    const { name: _name, ...unnamed } = recipe;
    const bare = readTrainingSection({ ...t, recipe: unnamed, holdout: undefined });
    expect(bare!.recipe.name).toBeNull();
    expect(bare!.holdout).toBeNull();
  });
});
