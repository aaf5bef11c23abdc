import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import {
  type GgufFile,
  type GgufHeader,
  type GgufTensorInfo,
  type ModelDescription,
  type SafetensorsTensor,
  decodeGgufTensor,
  tensorDataToFloat32,
} from '@ultrasketch/format';
import { type ModelConfig, headDim, validateModelConfig } from './config.js';
import { type BiasKind, TensorNames } from './names.js';
import { type ModelWeights, type Tensor, biasKinds, expectedTensors, layerTensors, validateModelWeights } from './weights.js';

/**
 * Real checkpoints in: a `ModelConfig` from a model description (Hugging Face config.json or GGUF metadata,
 * described by the format package), and weights under canonical names from a `TensorSource`, one tensor at a
 * time. Nothing here touches files: a source is a header plus a way to get one tensor's bytes, so a streaming
 * compressor can load, use and drop one layer at a time (`layerTensors`, `loadTensor`), and the browser can use
 * the same code over fetched bytes.
 */

// ---------------------------------------------------------------------------------------------- config

export interface ConfigFromDescriptionOptions {
  /**
   * Reads one tensor of the source by its own name, widened to float32. Needed only for GGUF files that store
   * Llama 3's RoPE scaling as frequency divisors (`rope_freqs.weight`): the config keeps the divisors.
   */
  readTensor?: (name: string) => Float32Array;
  source?: string;
}

/**
 * The forward's config of a described model. Fields that only describe what every llama2.c model already does
 * (head width dim / nHeads, no biases, no q/k norm, no scaling) are left out, so such a config is the same
 * object a llama2.c checkpoint gives. Mistral's sliding window: attention over the last `slidingWindow` positions
 * equals full attention while the context is no longer than the window, so the context is capped at the window
 * and the forward stays exact.
 */
export function configFromDescription(desc: ModelDescription, options: ConfigFromDescriptionOptions = {}): ModelConfig {
  const source = options.source ?? (desc.source === 'gguf' ? '<gguf>' : 'config.json');
  const seqLen = desc.slidingWindow === null ? desc.maxPositionEmbeddings : Math.min(desc.maxPositionEmbeddings, desc.slidingWindow);
  const config: ModelConfig = {
    architecture: 'llama',
    sourceArchitecture: desc.architecture,
    dim: desc.hiddenSize,
    hiddenDim: desc.intermediateSize,
    nLayers: desc.numLayers,
    nHeads: desc.numHeads,
    nKvHeads: desc.numKvHeads,
    vocabSize: desc.vocabSize,
    seqLen,
    normEps: desc.rmsNormEps,
    ropeTheta: desc.ropeTheta,
    ropeLayout: desc.ropeLayout,
    tiedClassifier: desc.tieWordEmbeddings,
  };
  if (desc.headDim * desc.numHeads !== desc.hiddenSize) config.headDim = desc.headDim;
  if (desc.attentionBias.qkv) config.qkvBias = true;
  if (desc.attentionBias.output) config.oBias = true;
  if (desc.qkNorm) config.qkNorm = true;
  const rs = desc.ropeScaling;
  if (rs?.type === 'llama3') {
    config.ropeScaling = {
      type: 'llama3',
      factor: rs.factor,
      lowFreqFactor: rs.lowFreqFactor,
      highFreqFactor: rs.highFreqFactor,
      originalMaxPositionEmbeddings: rs.originalMaxPositionEmbeddings,
    };
  } else if (rs?.type === 'freq-factors') {
    if (!options.readTensor) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `the RoPE scaling is stored in tensor ${rs.tensor}, and no readTensor was given`, {
        source,
        hint: 'pass options.readTensor so the frequency factors can be read',
      });
    }
    const values = options.readTensor(rs.tensor);
    const half = desc.headDim / 2;
    if (values.length !== half) {
      throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `tensor ${rs.tensor} has ${values.length} values; RoPE over head size ${desc.headDim} needs ${half}`, {
        source,
        hint: 'the GGUF is inconsistent; re-convert the model',
      });
    }
    for (let i = 0; i < half; i++) {
      if (!(values[i]! > 0) || !Number.isFinite(values[i]!)) {
        throw new UltraSketchError(ErrorCodes.NOT_FINITE, `tensor ${rs.tensor}[${i}] = ${values[i]} is not a positive finite frequency divisor`, { source });
      }
    }
    config.ropeScaling = { type: 'freq-factors', factors: Array.from(values) };
  }
  validateModelConfig(config, source);
  return config;
}

// ---------------------------------------------------------------------------------------------- sources

/** How a source names its tensors: Hugging Face's names (our canonical ones) or llama.cpp's GGUF names. */
export type TensorNaming = 'hf' | 'gguf';

/**
 * Where weights come from, one tensor at a time. `shape` answers from the header (nothing decoded), so every
 * shape can be checked against the config before any data is read; `read` decodes one tensor to float32.
 */
export interface TensorSource {
  readonly naming: TensorNaming;
  /** Names the file (or directory) in errors. */
  readonly source: string;
  /** Every tensor name the source holds, in its own naming. */
  names(): Iterable<string>;
  /** A tensor's shape, outermost first (row-major: [rows, cols]); undefined when the source has no such tensor. */
  shape(name: string): readonly number[] | undefined;
  /** A tensor's values as a new float32 array (the caller owns it). MISSING_TENSOR when absent. */
  read(name: string): Float32Array;
}

/**
 * A source over safetensors tensors: one file's `tensors` map, or any object with the same two methods (a
 * sharded checkpoint resolves each name to its shard through the index and reads that shard's tensor).
 * BF16, F16 and F32 (and F64) widen exactly to float32 (F64 rounds); other dtypes are BAD_DTYPE naming the tensor.
 */
export function safetensorsSource(
  tensors: { keys(): Iterable<string>; get(name: string): SafetensorsTensor | undefined },
  source = '<safetensors>',
): TensorSource {
  return {
    naming: 'hf',
    source,
    names: () => tensors.keys(),
    shape: (name) => tensors.get(name)?.shape,
    read: (name) => {
      const t = tensors.get(name);
      if (!t) throw missingInSource(name, source);
      return tensorDataToFloat32(t, `${source}: ${name}`);
    },
  };
}

/**
 * A source over a GGUF header and a way to get one tensor's bytes (`info.byteLength` bytes at
 * `info.fileOffset`): a streaming reader reads just those; `ggufFileSource` slices a whole-file read.
 * Every type the format package decodes (F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) widens to float32.
 */
export function ggufSource(header: GgufHeader, bytesOf: (info: GgufTensorInfo) => Uint8Array, source = '<gguf>'): TensorSource {
  return {
    naming: 'gguf',
    source,
    names: () => header.tensors.keys(),
    shape: (name) => header.tensors.get(name)?.shape,
    read: (name) => {
      const info = header.tensors.get(name);
      if (!info) throw missingInSource(name, source);
      return decodeGgufTensor(info, bytesOf(info), `${source}: ${name}`);
    },
  };
}

/** `ggufSource` over a GGUF file read whole (`readGguf`). */
export function ggufFileSource(file: GgufFile, source = '<gguf>'): TensorSource {
  return ggufSource(file, (t) => file.bytes.subarray(t.fileOffset, t.fileOffset + t.byteLength), source);
}

function missingInSource(name: string, source: string): UltraSketchError {
  return new UltraSketchError(ErrorCodes.MISSING_TENSOR, `tensor ${name} is missing`, {
    source,
    hint: 'the checkpoint is incomplete (a shard or tensor is missing) or is not a model of the architecture its config names',
  });
}

// ---------------------------------------------------------------------------------------------- names

const GGUF_LAYER_SUFFIX: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm.weight',
  'post_attention_layernorm.weight': 'ffn_norm.weight',
  'self_attn.q_proj.weight': 'attn_q.weight',
  'self_attn.k_proj.weight': 'attn_k.weight',
  'self_attn.v_proj.weight': 'attn_v.weight',
  'self_attn.o_proj.weight': 'attn_output.weight',
  'self_attn.q_proj.bias': 'attn_q.bias',
  'self_attn.k_proj.bias': 'attn_k.bias',
  'self_attn.v_proj.bias': 'attn_v.bias',
  'self_attn.o_proj.bias': 'attn_output.bias',
  'self_attn.q_norm.weight': 'attn_q_norm.weight',
  'self_attn.k_norm.weight': 'attn_k_norm.weight',
  'mlp.gate_proj.weight': 'ffn_gate.weight',
  'mlp.up_proj.weight': 'ffn_up.weight',
  'mlp.down_proj.weight': 'ffn_down.weight',
};

const GGUF_GLOBAL: Record<string, string> = {
  [TensorNames.embedding]: 'token_embd.weight',
  [TensorNames.finalNorm]: 'output_norm.weight',
  [TensorNames.classifier]: 'output.weight',
};

/** llama.cpp's GGUF name of a canonical tensor (`model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight`). */
export function ggufTensorName(canonical: string): string {
  const global = GGUF_GLOBAL[canonical];
  if (global) return global;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(canonical);
  const suffix = m ? GGUF_LAYER_SUFFIX[m[2]!] : undefined;
  if (!m || !suffix) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `${canonical} is not a canonical Llama-family tensor name`);
  return `blk.${m[1]}.${suffix}`;
}

/** The name of a canonical tensor in a source's own naming. */
export function sourceTensorName(naming: TensorNaming, canonical: string): string {
  return naming === 'gguf' ? ggufTensorName(canonical) : canonical;
}

// ---------------------------------------------------------------------------------------------- loading

/** The config fields each dimension of a tensor's expected shape comes from, for messages. */
function shapeFields(c: ModelConfig, canonical: string): string[] {
  const q = `nHeads × headDim = ${c.nHeads} × ${headDim(c)}`;
  const kv = `nKvHeads × headDim = ${c.nKvHeads} × ${headDim(c)}`;
  if (canonical === TensorNames.embedding || canonical === TensorNames.classifier) return ['vocabSize', 'dim'];
  const suffix = /^model\.layers\.\d+\.(.+)$/.exec(canonical)?.[1] ?? '';
  switch (suffix) {
    case 'self_attn.q_proj.weight':
      return [q, 'dim'];
    case 'self_attn.k_proj.weight':
    case 'self_attn.v_proj.weight':
      return [kv, 'dim'];
    case 'self_attn.o_proj.weight':
      return ['dim', q];
    case 'mlp.gate_proj.weight':
    case 'mlp.up_proj.weight':
      return ['hiddenDim', 'dim'];
    case 'mlp.down_proj.weight':
      return ['dim', 'hiddenDim'];
    case 'self_attn.q_proj.bias':
      return [q];
    case 'self_attn.k_proj.bias':
    case 'self_attn.v_proj.bias':
      return [kv];
    case 'self_attn.q_norm.weight':
    case 'self_attn.k_norm.weight':
      return ['headDim'];
    default:
      return ['dim'];
  }
}

/** SHAPE_MISMATCH unless the source's tensor has the shape the config needs; MISSING_TENSOR when absent. */
function checkShape(c: ModelConfig, src: TensorSource, canonical: string, expected: readonly number[]): string {
  const name = sourceTensorName(src.naming, canonical);
  const shape = src.shape(name);
  const label = name === canonical ? name : `${name} (${canonical})`;
  if (!shape) {
    throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `tensor ${label} is missing`, {
      source: src.source,
      hint: 'the checkpoint is incomplete (a shard or tensor is missing) or does not match its config',
    });
  }
  if (shape.length !== expected.length || shape.some((d, i) => d !== expected[i])) {
    const fields = shapeFields(c, canonical);
    const differing =
      shape.length === expected.length
        ? expected
            .map((d, i) => (shape[i] === d ? '' : `dimension ${i} is ${shape[i]}, the config's ${fields[i]} is ${d}`))
            .filter((s) => s)
            .join('; ')
        : `it has ${shape.length} dimensions, the config needs ${expected.length}`;
    throw new UltraSketchError(
      ErrorCodes.SHAPE_MISMATCH,
      `tensor ${label} is [${shape.join(', ')}], the config needs [${expected.join(', ')}] = [${fields.join(', ')}]: ${differing}`,
      { source: src.source, hint: 'the config does not describe these weights: use the config that came with the checkpoint' },
    );
  }
  return name;
}

/**
 * Check the config against the source's header, before any tensor is decoded: every tensor the config needs is
 * there with its shape, and the source holds no weights the config would silently ignore (layers past nLayers,
 * biases or q/k norms the config does not have), each refused naming the tensor and the config field.
 * A stored lm_head next to a tied classifier is allowed and ignored (transformers ties it to the embedding).
 */
export function checkSourceAgainstConfig(config: ModelConfig, src: TensorSource): void {
  validateModelConfig(config, src.source);
  for (const [name, shape] of expectedTensors(config)) checkShape(config, src, name, shape);
  const layerPattern = src.naming === 'gguf' ? /^blk\.(\d+)\./ : /^model\.layers\.(\d+)\./;
  for (const name of src.names()) {
    const m = layerPattern.exec(name);
    if (m && Number(m[1]) >= config.nLayers) {
      throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `tensor ${name} belongs to layer ${m[1]}, but the config's nLayers is ${config.nLayers}`, {
        source: src.source,
        hint: 'the config does not describe these weights: use the config that came with the checkpoint',
      });
    }
  }
  const unexpected = (canonical: string, field: string, value: boolean) => {
    const name = sourceTensorName(src.naming, canonical);
    if (src.shape(name) !== undefined) {
      throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `tensor ${name} is in the checkpoint, but the config's ${field} is ${value}: the model would run without it`, {
        source: src.source,
        hint: 'the config does not describe these weights: use the config that came with the checkpoint',
      });
    }
  };
  const has = new Set<BiasKind>(biasKinds(config));
  for (let l = 0; l < config.nLayers; l++) {
    for (const kind of ['q', 'k', 'v', 'o'] as const) {
      if (!has.has(kind)) unexpected(TensorNames.bias(l, kind), kind === 'o' ? 'oBias' : 'qkvBias', false);
    }
    if (!config.qkNorm) {
      unexpected(TensorNames.qNorm(l), 'qkNorm', false);
      unexpected(TensorNames.kNorm(l), 'qkNorm', false);
    }
  }
}

/**
 * One tensor under its canonical name: looked up in the source's naming, its shape checked against `expected`
 * (SHAPE_MISMATCH naming the tensor and the config fields), decoded, and refused when a value is not finite.
 */
export function loadTensor(config: ModelConfig, src: TensorSource, canonical: string, expected: readonly number[]): Tensor {
  const name = checkShape(config, src, canonical, expected);
  const data = src.read(name);
  const numel = expected.reduce((a, b) => a * b, 1);
  if (data.length !== numel) {
    throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `tensor ${name} decoded to ${data.length} values, its shape [${expected.join(', ')}] has ${numel}`, {
      source: src.source,
    });
  }
  for (let i = 0; i < data.length; i++) {
    // x - x is NaN exactly when x is NaN or ±Inf.
    if (data[i]! - data[i]! !== 0) {
      throw new UltraSketchError(ErrorCodes.NOT_FINITE, `tensor ${name} has a non-finite value (${data[i]}) at index ${i}`, {
        source: src.source,
        hint: 'the checkpoint is corrupt or was saved after a diverged training run',
      });
    }
  }
  return { shape: [...expected], data };
}

/** The tensors of one decoder layer, canonically named (for a compressor that streams layer by layer). */
export function loadLayer(config: ModelConfig, src: TensorSource, layer: number): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [name, shape] of layerTensors(config, layer)) out.set(name, loadTensor(config, src, name, shape));
  return out;
}

/**
 * A whole model: the header checked against the config first (`checkSourceAgainstConfig`), then every tensor
 * decoded one at a time into canonical names. A tied classifier reuses the embedding (a stored lm_head is not read).
 */
export function loadModelWeights(config: ModelConfig, src: TensorSource): ModelWeights {
  checkSourceAgainstConfig(config, src);
  const tensors = new Map<string, Tensor>();
  for (const [name, shape] of expectedTensors(config)) tensors.set(name, loadTensor(config, src, name, shape));
  const weights = { config, tensors };
  validateModelWeights(weights, src.source);
  return weights;
}
