/**
 * How the tensors reach the encoder, and how calibration statistics are gathered on the way: two pipelines,
 * chosen by the input.
 *
 * - `in-memory` (a llama2.c checkpoint, a `LoadedModel`): every tensor is already in memory; statistics are
 *   given by the caller or measured now over the whole model (`calibrate()`).
 * - `layer-sequential` (HF, GGUF: a streamed source): one decoder layer is read when its first tensor is asked
 *   for (every tensor's header shape checked against the config first), calibrated on the activations the
 *   previous layers produced, encoded, and dropped when the next layer is read — memory holds one layer.
 *
 * Either way the encoder sees the same tensors in the same order and the codec the same statistics.
 */
import { type ModelConfig, type Tensor, TensorNames, checkSourceAgainstConfig, expectedTensors, loadLayer, loadTensor } from '@ultrasketch/model';
import {
  type CalibrationInfo,
  DEFAULT_CALIB_TOKENS,
  LayerwiseCalibrator,
  calibrate,
  calibrationTokens,
  defaultCalibrationWindow,
  textSha256,
} from '../calibrate.js';
import type { LoadedModel } from '../load.js';
import type { CompressOptions } from '../compress.js';
import type { CompressInput } from './input.js';
import type { CompressSettings } from './settings.js';

export interface TensorPipeline {
  readonly name: 'in-memory' | 'layer-sequential';
  /** E[a_j²] per input channel by linear name when the codec uses it (the layer-sequential one fills it layer by layer). */
  readonly saliency: ReadonlyMap<string, Float64Array> | undefined;
  /** Where the statistics came from (stored in provenance when they were used). */
  readonly calibration: CalibrationInfo | undefined;
  /** A tensor of the model by name (2-D weights in model order; the norms when the bundle is assembled). */
  tensor(name: string): Tensor;
  /** A 1-D tensor (an RMSNorm weight). */
  vector(name: string): Float32Array;
  /** Every 2-D weight has been read: drop the last layer, finish the statistics. */
  finish(): void;
}

export function openTensorPipeline(model: CompressInput, settings: CompressSettings, options: CompressOptions): TensorPipeline {
  return model.weights ? inMemoryPipeline(model, settings, options) : layerSequentialPipeline(model, settings, options);
}

function inMemoryPipeline(model: CompressInput, settings: CompressSettings, options: CompressOptions): TensorPipeline {
  const weights = model.weights!;
  let saliency = options.saliency;
  let calibration = options.calibration;
  const cal = options.calibrate;
  if (settings.saliencyUsed && cal) {
    const c = calibrate({
      model: { weights, tokenizer: model.tokenizer.tokenizer } as LoadedModel,
      text: cal.text,
      ...(cal.textSource === undefined ? {} : { textSource: cal.textSource }),
      ...(cal.maxTokens === undefined ? {} : { maxTokens: cal.maxTokens }),
      ...(cal.window === undefined ? {} : { window: cal.window }),
    });
    saliency = c.stats.meanSquare;
    calibration = c.info;
  }
  return {
    name: 'in-memory',
    saliency,
    calibration,
    tensor: (name) => weights.tensors.get(name)!,
    vector: (name) => weights.tensors.get(name)!.data,
    finish: () => {},
  };
}

function layerSequentialPipeline(model: CompressInput, settings: CompressSettings, options: CompressOptions): TensorPipeline {
  const config: ModelConfig = model.config;
  const src = model.stream!;
  let saliency = options.saliency;
  let calibration = options.calibration;
  let layerwise: LayerwiseCalibrator | undefined;
  const streamedSaliency = new Map<string, Float64Array>();
  const cal = options.calibrate;
  if (settings.saliencyUsed && cal) {
    const tokens = calibrationTokens(model.tokenizer.tokenizer, cal.text, cal.maxTokens ?? DEFAULT_CALIB_TOKENS, cal.textSource);
    layerwise = new LayerwiseCalibrator(config, tokens, cal.window ?? defaultCalibrationWindow(config));
    saliency = streamedSaliency;
    calibration = { textSource: cal.textSource ?? '<calibration text>', textSha256: textSha256(cal.text), tokens: layerwise.tokens, window: layerwise.window, forward: layerwise.forward };
  }

  checkSourceAgainstConfig(config, src.tensors);
  const shapes = new Map(expectedTensors(config));
  const vectorsRead = new Map<string, Float32Array>();
  let layerCache: { layer: number; tensors: Map<string, Tensor> } | null = null;
  const tensor = (name: string): Tensor => {
    const m = /^model\.layers\.(\d+)\./.exec(name);
    if (!m) {
      const t = loadTensor(config, src.tensors, name, shapes.get(name)!);
      // the calibrator runs the layers on the embedding's rows
      if (layerwise && name === TensorNames.embedding) layerwise.embed(t.data);
      return t;
    }
    const layer = Number(m[1]);
    if (layerCache?.layer !== layer) {
      layerCache = null; // drop the previous layer before reading the next
      const tensors = loadLayer(config, src.tensors, layer);
      for (const [n, t] of tensors) if (t.shape.length === 1) vectorsRead.set(n, t.data);
      if (layerwise) for (const [n, v] of layerwise.layer(layer, tensors)) streamedSaliency.set(n, v);
      layerCache = { layer, tensors };
      options.calibrate?.onProgress?.({ layersDone: layer + 1, layersTotal: config.nLayers });
    }
    return layerCache.tensors.get(name)!;
  };
  return {
    name: 'layer-sequential',
    saliency,
    calibration,
    tensor,
    vector: (name) => vectorsRead.get(name) ?? tensor(name).data,
    finish: () => {
      layerCache = null;
      layerwise?.finish();
    },
  };
}
