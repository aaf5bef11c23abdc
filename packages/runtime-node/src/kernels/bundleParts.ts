import { type CodecParams, ErrorCodes, UltraSketchError, getCodec } from '@ultrasketch/core';
import type { Bundle } from '@ultrasketch/format';
import {
  type EmbeddingTable,
  type ForwardParts,
  LINEAR_KINDS,
  type LayerLinears,
  LlamaForward,
  type ModelConfig,
  TensorNames,
  biasKinds,
  biasLength,
  headDim,
  linearShape,
  validateModelConfig,
} from '@ultrasketch/model';
import { NodeSession, type SessionOptions } from '../session.js';
import { resolveThreads } from '../threads.js';
import { WasmArena } from '../wasm/arena.js';
import { WasmAttention } from '../wasm/attention.js';
import { compressedWasmAvailable } from './wasm-common.js';
import { registerAllKernels } from './index.js';
import { type KernelBuildOptions, getKernel } from './registry.js';
import { asEmbeddingTable } from './wasm-float.js';
import { asVqEmbeddingTable } from './wasm-vq.js';

/** Embedding rows decoded one at a time from the codec's parameters (never the whole table). */
class CodecEmbedding implements EmbeddingTable {
  private readonly codec;

  constructor(
    codecId: string,
    private readonly params: CodecParams,
  ) {
    this.codec = getCodec(codecId);
  }

  lookup(token: number, out: Float32Array, offset: number): void {
    this.codec.decodeRows(this.params, token, 1, out.subarray(offset, offset + this.params.cols));
  }
}

/** The model config stored in a bundle, checked before anything is built from it. */
export function bundleConfig(bundle: Bundle, source = '<bundle>'): ModelConfig {
  const c = bundle.config as unknown as ModelConfig;
  if (c.architecture !== 'llama') {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `model architecture ${JSON.stringify(c.architecture)} is not supported`, {
      source,
    });
  }
  validateModelConfig(c, source);
  return c;
}

/**
 * Build the forward pass of a bundle: one fused kernel per linear (by its codec), the embedding decoded per
 * token, the classifier through the embedding's kernel when tied. Shapes are checked against the config.
 */
export function bundleForwardParts(bundle: Bundle, source = '<bundle>', options: KernelBuildOptions = {}): ForwardParts {
  registerAllKernels();
  const config = bundleConfig(bundle, source);
  const weight = (name: string, rows: number, cols: number) => {
    const w = bundle.weights.get(name);
    if (!w) throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `weight ${name} is missing`, { source });
    if (w.entry.rows !== rows || w.entry.cols !== cols) {
      throw new UltraSketchError(
        ErrorCodes.SHAPE_MISMATCH,
        `weight ${name} is ${w.entry.rows}×${w.entry.cols}, the model config needs ${rows}×${cols}`,
        { source },
      );
    }
    return w;
  };
  const vector = (name: string, length = config.dim) => {
    const v = bundle.vectors.get(name);
    if (!v || v.length !== length) {
      throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `vector ${name} of length ${length} is missing`, { source });
    }
    return v;
  };
  const kernel = (name: string, rows: number, cols: number) => {
    const w = weight(name, rows, cols);
    return getKernel(w.entry.codec, source)(w.params, options);
  };

  const layers: LayerLinears[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    const linears = {} as LayerLinears;
    for (const kind of LINEAR_KINDS) {
      const [rows, cols] = linearShape(config, kind);
      linears[kind] = kernel(TensorNames.linear(l, kind), rows, cols);
    }
    layers.push(linears);
  }
  const emb = weight(TensorNames.embedding, config.vocabSize, config.dim);
  const classifier = config.tiedClassifier
    ? getKernel(emb.entry.codec, source)(emb.params, options)
    : kernel(TensorNames.classifier, config.vocabSize, config.dim);
  // A tied f16 or vq table in wasm serves the token lookups too (rows decoded in wasm, one copy for both uses).
  const embedding =
    (config.tiedClassifier ? (asEmbeddingTable(classifier) ?? asVqEmbeddingTable(classifier)) : undefined) ?? new CodecEmbedding(emb.entry.codec, emb.params);
  // The family's variants keep their small vectors (biases, Qwen3's q/k norm weights) as F32 vectors.
  const kinds = biasKinds(config);
  return {
    config,
    ...(kinds.length > 0
      ? {
          attnBias: Array.from({ length: config.nLayers }, (_, l) =>
            Object.fromEntries(kinds.map((kind) => [kind, vector(TensorNames.bias(l, kind), biasLength(config, kind))])),
          ),
        }
      : {}),
    ...(config.qkNorm
      ? {
          qNorm: Array.from({ length: config.nLayers }, (_, l) => vector(TensorNames.qNorm(l), headDim(config))),
          kNorm: Array.from({ length: config.nLayers }, (_, l) => vector(TensorNames.kNorm(l), headDim(config))),
        }
      : {}),
    embedding,
    attnNorm: Array.from({ length: config.nLayers }, (_, l) => vector(TensorNames.attnNorm(l))),
    ffnNorm: Array.from({ length: config.nLayers }, (_, l) => vector(TensorNames.ffnNorm(l))),
    finalNorm: vector(TensorNames.finalNorm),
    layers,
    classifier,
  };
}

/** Bytes of a bundle's stored weight tensors (codec parameters of the linears, embedding and classifier). */
export function bundleWeightBytes(bundle: Bundle): number {
  let total = 0;
  for (const [name, t] of bundle.file.tensors) {
    for (const w of bundle.weights.keys()) {
      if (name.startsWith(w) && (name.length === w.length || name[w.length] === '.' || name[w.length] === ':' || name[w.length] === '/')) {
        total += t.data.byteLength;
        break;
      }
    }
  }
  return total;
}

/**
 * A CPU session running a bundle with its codecs' fused kernels. The kernels keep their parameters in the
 * session's own (shared) wasm arena, with its worker threads when `threads` > 1, so the session's memory
 * report counts exactly its weights; the bundle object is not referenced by the session afterwards.
 */
export function sessionFromBundle(bundle: Bundle, options: SessionOptions & { source?: string; attention?: boolean } = {}): NodeSession {
  const threads = resolveThreads(options.threads);
  const arena = compressedWasmAvailable()
    ? new WasmArena({ shared: true, initialBytes: bundleWeightBytes(bundle) + (1 << 20) })
    : undefined;
  const parts = bundleForwardParts(bundle, options.source, arena ? { arena } : {});
  // attention over a KV cache in wasm memory (SIMD), when wasm is there and the head width allows
  // (over the session's arena: the forward's activations and logits then live in the memory the kernels read,
  // and kernels that check `arena.holds` read/write them in place — issue 12, fifth slice)
  if (arena && options.attention !== false && WasmAttention.supports(parts.config)) parts.attention = new WasmAttention(parts.config, arena);
  return new NodeSession(new LlamaForward(parts), { ...options, threads, arenas: arena ? [arena] : [] });
}
