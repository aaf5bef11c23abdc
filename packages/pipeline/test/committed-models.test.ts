import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createSession, openModel, readQualitySection, readTrainingSection } from '../src/index.js';

/**
 * The bundles committed in models/ (models/README.md): each loads with its checksums verified, its bit figures are
 * what its bytes give, its stored quality and training are complete, and it runs. The whole-file one is issue 14's
 * point below one bit per parameter with every tensor, the tokenizer and the header counted.
 */
const MODELS = (name: string) => fileURLToPath(new URL(`../../../models/${name}`, import.meta.url));

describe('the committed models', () => {
  for (const [name, maxBitsPerParam, maxBpwLinears] of [
    ['stories3M-littlebit-0.55.usk', 5, 0.55],
    ['stories3M-littlebit-0.65-wholefile.usk', 1, 0.65],
  ] as const) {
    it(`${name}: bits from its bytes, stored quality and training complete, runs`, () => {
      const path = MODELS(name);
      const model = openModel(path);
      if (model.kind !== 'bundle') throw new Error(`${name} did not open as a bundle`);
      const loaded = model.loaded;
      const acc = loaded.accounting;
      expect(acc.fileBytes).toBe(statSync(path).size);
      expect(acc.bitsPerParam).toBeCloseTo((8 * acc.fileBytes) / acc.params, 10);
      expect(acc.bitsPerParam).toBeLessThanOrEqual(maxBitsPerParam);
      expect(acc.bpwLinears).toBeLessThanOrEqual(maxBpwLinears);
      const q = readQualitySection(loaded.quality)!;
      expect(q.windows).toBe(64);
      expect(q.perplexity / q.referencePerplexity).toBeLessThan(4);
      const t = readTrainingSection(loaded.training)!;
      expect(t.recipe.name).toBe('long');
      expect(t.steps).toBe(t.recipe.steps);
      const session = createSession(model, { contextLength: 16 });
      const logits = session.forward(model.tokenizer.encode('Once upon a time', { bos: true, eos: false }));
      expect(logits.length).toBe(loaded.config.vocabSize);
      expect(logits.every(Number.isFinite)).toBe(true);
    });
  }
});
