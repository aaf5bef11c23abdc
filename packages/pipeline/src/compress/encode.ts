/**
 * Stage 3 of `compress`: encode every 2-D weight of the plan with its codec, in model order, reading each
 * through the tensor pipeline. A refusal the plan could not foresee (e.g. a `mass` split's group sizes) follows
 * the small-matrix policy: with 'keep' the matrix is stored in float f16 and listed as kept dense.
 */
import { type VqOptions, vqEncode } from '@ultrasketch/baselines';
import { ErrorCodes, UltraSketchError, isUltraSketchError } from '@ultrasketch/core';
import type { BundleWeightInput } from '@ultrasketch/format';
import { TensorNames } from '@ultrasketch/model';
import { type WeightAccounting, toWeightAccounting } from '../accounting.js';
import { calibrationTokens } from '../calibrate.js';
import type { CompressOptions } from '../compress.js';
import { weightSeed } from './defaults.js';
import type { CompressInput } from './input.js';
import type { TensorPipeline } from './pipelines.js';
import type { CompressSettings } from './settings.js';
import { type WeightPlan, withCodec } from './weight-plan.js';

export interface EncodedWeights {
  /** Every 2-D weight as the bundle stores it. */
  weights: Map<string, BundleWeightInput>;
  /** The bits each weight really stores. */
  perWeight: Record<string, WeightAccounting>;
  /** The linears the job's codec compressed, in model order. */
  compressedNames: string[];
  /**
   * An rtn/vq/binary-stored embedding or classifier, decoded, when the job finetunes: the student trains with
   * what the bundle will hold. (f16/f32 storage differs from the float model by at most f16 rounding and is not
   * passed.)
   */
  storedDecoded: Map<string, Float32Array>;
}

export function encodeWeights(
  plan: WeightPlan,
  tensors: TensorPipeline,
  settings: CompressSettings,
  options: CompressOptions,
  model: CompressInput,
): EncodedWeights {
  const { seed, smallMatrix } = settings;
  // A vq-stored embedding/classifier fits its codebook to the rows weighted by 1 + how often the calibration
  // text uses each token (docs/results.md §11.1b: at 1.5 bits a value this is the difference between 42 and 25
  // perplexity of the float model on calibration windows). Without calibration text every row weighs the same.
  const embeddingRowWeights =
    options.calibrate !== undefined && (settings.embedding.id === 'vq' || settings.classifier?.id === 'vq')
      ? tokenRowWeights(calibrationTokens(model.tokenizer.tokenizer, options.calibrate.text, Number.MAX_SAFE_INTEGER, options.calibrate.textSource), model.config.vocabSize)
      : undefined;
  const isEmbeddingLike = (name: string) => name === TensorNames.embedding || name === TensorNames.classifier;
  const out: EncodedWeights = { weights: new Map(), perWeight: {}, compressedNames: [], storedDecoded: new Map() };
  const entries = plan.weights;
  for (let i = 0; i < entries.length; i++) {
    const { name, codec: c, options: o, compressed } = entries[i]!;
    const t = tensors.tensor(name);
    const [rows, cols] = t.shape as [number, number];
    const wSeed = weightSeed(seed, name);
    const sal = compressed && settings.saliencyUsed ? tensors.saliency!.get(name) : undefined;
    if (compressed && settings.saliencyUsed && sal === undefined) {
      throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `no calibration statistics for ${name}`, {
        source: 'saliency',
        hint: 'calibrate() the same model (every linear) before compressing',
      });
    }
    let params;
    try {
      params =
        c.id === 'vq' && embeddingRowWeights !== undefined && isEmbeddingLike(name)
          ? vqEncode(t.data, rows, cols, o as VqOptions, name, embeddingRowWeights)
          : c.encode(t.data, rows, cols, o, { name, seed: wSeed, ...(sal ? { saliency: sal } : {}) });
      if (options.finetune !== undefined && isEmbeddingLike(name) && c.id !== 'float') out.storedDecoded.set(name, c.decode(params));
    } catch (err) {
      if (!(compressed && smallMatrix === 'keep' && isUltraSketchError(err, ErrorCodes.INFEASIBLE_BUDGET))) throw err;
      plan.keptDense.push({ name, rows, cols, minBpw: null, reason: err.problem });
      const kf = withCodec(settings.keepFloat);
      entries[i] = { name, ...kf, compressed: false };
      params = kf.codec.encode(t.data, rows, cols, kf.options, { name, seed: wSeed });
      out.weights.set(name, {
        entry: { codec: kf.codec.id, version: kf.codec.version, options: kf.options, seed: wSeed, rows, cols },
        tensors: kf.codec.toTensors(params),
      });
      out.perWeight[name] = toWeightAccounting(kf.codec.id, rows, cols, kf.codec.bits(params));
      options.onProgress?.({ name, index: i, total: entries.length, codec: kf.codec.id });
      continue;
    }
    out.weights.set(name, {
      entry: { codec: c.id, version: c.version, options: o, seed: wSeed, rows, cols },
      tensors: c.toTensors(params),
    });
    out.perWeight[name] = toWeightAccounting(c.id, rows, cols, c.bits(params));
    if (compressed) out.compressedNames.push(name);
    options.onProgress?.({ name, index: i, total: entries.length, codec: c.id });
  }
  tensors.finish();
  return out;
}

/** 1 + the number of times each token id occurs: the row weights of a vq-stored embedding. */
export function tokenRowWeights(tokens: readonly number[], vocabSize: number): Float64Array {
  const w = new Float64Array(vocabSize).fill(1);
  for (const t of tokens) if (t >= 0 && t < vocabSize) w[t]! += 1;
  return w;
}
