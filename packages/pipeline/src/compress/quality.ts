/**
 * Stage 6 of `compress` (with `measureQuality`): the bundle's quality measured now, exactly as it will be read —
 * the draft bytes read back and run with the fused kernels — against the float model: perplexity, KL and top-1
 * on the first windows of the evaluation text. A NaN or Inf on either side is an error, never a result.
 */
import type { Bundle } from '@ultrasketch/format';
import type { ModelConfig } from '@ultrasketch/model';
import { NodeSession, sessionFromBundle } from '@ultrasketch/runtime-node';
import { defaultWindow, evaluate } from '../evaluate.js';
import type { LoadedModel } from '../load.js';
import type { MeasureQualityOptions, QualitySection } from '../compress.js';

/** The config a bundle stores (already validated when the bundle was read back). */
function bundleConfigOf(bundle: Bundle): ModelConfig {
  return bundle.config as unknown as ModelConfig;
}

export async function measureQuality(bundle: Bundle, model: LoadedModel, o: MeasureQualityOptions, bundleName?: string): Promise<QualitySection> {
  // The KV caches hold one window, not the model's whole seq_len (gigabytes for a 128k-context model).
  const window = o.window ?? defaultWindow('llama2c-documents', bundleConfigOf(bundle));
  const contextLength = Math.min(window, bundleConfigOf(bundle).seqLen);
  const session = o.makeSession ? o.makeSession(bundle) : sessionFromBundle(bundle, { contextLength });
  const reference = o.reference ?? NodeSession.fromWeights(model.weights, { contextLength });
  // A NaN/Inf in the bundle's (or the float model's) outputs is a NOT_FINITE error naming where, so a
  // broken bundle is never written with a NaN quality section.
  const r = await evaluate({
    session,
    reference,
    tokenizer: model.tokenizer,
    text: o.text,
    textSource: o.textSource ?? '<text>',
    windows: o.windows ?? 8,
    window,
    modelSource: `the compressed bundle${bundleName === undefined ? '' : ` (${bundleName})`}`,
    referenceSource: model.source.path,
  });
  return {
    protocol: r.protocol,
    textSource: o.textSource ?? '<text>',
    window: r.window,
    windows: r.windows,
    predictedTokens: r.predictedTokens,
    meanNll: r.meanNll,
    perplexity: r.perplexity,
    kl: r.kl!,
    top1: r.top1!,
    reference: r.reference!,
  };
}
