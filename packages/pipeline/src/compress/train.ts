/**
 * Stage 4 of `compress` (with `finetune` options): train the compressed linears through their codec against the
 * float model (docs/ste-trainer.md) and store the trained parameters in place of the post-training ones. The
 * bundle gains a `training` section (the recipe and its cost); trained RMSNorm weights replace the model's.
 */
import { getCodec } from '@ultrasketch/core';
import { TensorNames } from '@ultrasketch/model';
import { toWeightAccounting } from '../accounting.js';
import { type TrainingSection, finetune } from '../finetune.js';
import type { LoadedModel } from '../load.js';
import type { CompressOptions } from '../compress.js';
import { weightSeed } from './defaults.js';
import type { EncodedWeights } from './encode.js';
import type { CompressInput } from './input.js';
import type { TensorPipeline } from './pipelines.js';
import type { CompressSettings } from './settings.js';

export interface Trained {
  training: TrainingSection;
  /** Trained RMSNorm weights by name (empty when the recipe does not train them). */
  norms: Map<string, Float32Array>;
}

/** Updates `encoded` in place (weights and their accounting); null when there is nothing to train. */
export async function trainWeights(
  encoded: EncodedWeights,
  /** The float model in memory (a streamed one is read when first asked for: only when there is training to do). */
  teacher: () => LoadedModel,
  tensors: TensorPipeline,
  settings: CompressSettings,
  options: CompressOptions,
  model: CompressInput,
): Promise<Trained | null> {
  if (!options.finetune || encoded.compressedNames.length === 0) return null;
  const { seed } = settings;
  const linears = new Map(
    encoded.compressedNames.map((name) => {
      const planned = options.bpwPlan?.[name];
      return [name, { seed: weightSeed(seed, name), ...(planned === undefined ? {} : { codecOptions: { ...(options.codecOptions ?? {}), bpw: planned } }) }];
    }),
  );
  const stored = encoded.storedDecoded;
  const ft = await finetune({
    teacher: teacher().weights,
    tokenizer: model.tokenizer.tokenizer,
    codecId: settings.codec.id,
    codecOptions: options.codecOptions ?? {},
    linears,
    ...(settings.saliencyUsed ? { saliency: tensors.saliency! } : {}),
    seed,
    options: options.finetune,
    ...(stored.has(TensorNames.embedding)
      ? {
          storedEmbedding: {
            embedding: stored.get(TensorNames.embedding)!,
            ...(stored.has(TensorNames.classifier) ? { classifier: stored.get(TensorNames.classifier)! } : {}),
            storage: settings.embeddings,
          },
        }
      : {}),
  });
  for (const [name, { codecId, params }] of ft.params) {
    const c = getCodec(codecId);
    const entry = encoded.weights.get(name)!.entry;
    const o = codecId === entry.codec ? entry.options : c.resolveOptions({});
    encoded.weights.set(name, {
      entry: { ...entry, codec: c.id, version: c.version, options: o },
      tensors: c.toTensors(params as never),
    });
    encoded.perWeight[name] = toWeightAccounting(c.id, entry.rows, entry.cols, c.bits(params as never));
  }
  // A trained embedding / classifier is stored as before (float, checked by resolveSettings), from its trained values.
  for (const [name, data] of ft.embeddings) {
    const { entry } = encoded.weights.get(name)!;
    const c = getCodec(entry.codec);
    const params = c.encode(data, entry.rows, entry.cols, entry.options, { name, seed: entry.seed });
    encoded.weights.set(name, { entry, tensors: c.toTensors(params) });
    encoded.perWeight[name] = toWeightAccounting(c.id, entry.rows, entry.cols, c.bits(params));
  }
  return { training: ft.section, norms: ft.norms };
}
