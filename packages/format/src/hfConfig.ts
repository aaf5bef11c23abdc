import { ErrorCodes, UltraSketchError, type ErrorCode } from '@ultrasketch/core';
import { getGgufArray, getGgufNumber, getGgufString, type GgufHeader } from './gguf.js';
import { LIMITS } from './limits.js';

/**
 * One plain description of a Llama-family decoder, from either source people have:
 * - a Hugging Face `config.json` (already parsed: pass the JSON value), via `describeHfConfig`;
 * - GGUF metadata (`llama.*`, `qwen2.*`, `qwen3.*` keys) and tensor names, via `describeGgufModel`.
 *
 * The family: Llama 1/2/3 (with `rope_scaling` type llama3) and SmolLM/SmolLM2 (all `LlamaForCausalLM`),
 * Mistral, Qwen2 (q/k/v bias), Qwen3 (q/k RMSNorm). Anything else is refused with UNSUPPORTED naming what
 * it is, rather than described approximately: a wrong description gives a model that runs and is wrong.
 *
 * RoPE layout: Hugging Face's modeling code rotates the two HALVES of each head (i with i + d/2), and its
 * checkpoints' q/k rows are permuted to match. llama.cpp's converter undoes that permutation for
 * architecture `llama` (its NORM rope rotates adjacent PAIRS 2i, 2i+1, Meta's and llama2.c's order); for
 * `qwen2` and `qwen3` it keeps the rows as they are and rotates halves (its NEOX rope).
 */

export type LlamaFamilyArchitecture = 'LlamaForCausalLM' | 'MistralForCausalLM' | 'Qwen2ForCausalLM' | 'Qwen3ForCausalLM';

export const LLAMA_FAMILY_ARCHITECTURES: readonly LlamaFamilyArchitecture[] = [
  'LlamaForCausalLM',
  'MistralForCausalLM',
  'Qwen2ForCausalLM',
  'Qwen3ForCausalLM',
];

/** Which dimensions RoPE rotates together: 'halves' (i, i + d/2: Hugging Face, NEOX) or 'pairs' (2i, 2i+1: Meta, llama.cpp NORM). */
export type RopeLayout = 'halves' | 'pairs';

/** Llama 3.1's frequency-dependent RoPE scaling (`rope_scaling.rope_type` "llama3"). */
export interface Llama3RopeScaling {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/**
 * llama.cpp's form of the same scaling: its converter precomputes one divisor per rotated frequency and
 * stores them as a tensor (`rope_freqs.weight`, head_dim/2 values) instead of the parameters.
 */
export interface RopeFreqFactors {
  type: 'freq-factors';
  tensor: string;
}

export type RopeScaling = Llama3RopeScaling | RopeFreqFactors;

export interface ModelDescription {
  /** Where the description came from. */
  source: 'hf-config' | 'gguf';
  architecture: LlamaFamilyArchitecture;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  /** Per-head width; q has numHeads × headDim rows (not always hiddenSize: Qwen3 sets it explicitly). */
  headDim: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  ropeLayout: RopeLayout;
  /** The classifier is the token embedding (no separate lm_head / output weight). */
  tieWordEmbeddings: boolean;
  /** Biases of the attention projections: q/k/v (Qwen2 always; Llama/Qwen3 with attention_bias) and o. */
  attentionBias: { qkv: boolean; output: boolean };
  /** RMSNorm over each head of q and k before RoPE (Qwen3). */
  qkNorm: boolean;
  /** Sliding-window attention width (Mistral v0.1: 4096), or null for full attention. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** The weights' dtype as the source states it (torch_dtype / dtype), when it does. */
  dtype: string | null;
  /** Keys the source did not have, whose documented defaults were used (for `inspect`). */
  defaulted: string[];
}

const SUPPORTED_HINT = `supported: ${LLAMA_FAMILY_ARCHITECTURES.join(', ')} (Llama 1/2/3, SmolLM/SmolLM2, Mistral, Qwen2/2.5, Qwen3 dense)`;

function fail(code: ErrorCode, problem: string, source: string, hint?: string): never {
  throw new UltraSketchError(code, problem, { source, hint });
}

// ---------------------------------------------------------------------------------------------- HF config.json

/** transformers' defaults per architecture, for the keys a config.json may leave out. */
const HF_DEFAULTS: Record<LlamaFamilyArchitecture, { maxPositions: number; kvHeads: number | 'heads' }> = {
  LlamaForCausalLM: { maxPositions: 2048, kvHeads: 'heads' },
  MistralForCausalLM: { maxPositions: 4096 * 32, kvHeads: 8 },
  Qwen2ForCausalLM: { maxPositions: 32768, kvHeads: 32 },
  Qwen3ForCausalLM: { maxPositions: 32768, kvHeads: 32 },
};

const MODEL_TYPES: Record<string, LlamaFamilyArchitecture> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** Reads typed fields of one JSON object, recording which were defaulted. */
class Fields {
  readonly defaulted: string[] = [];
  constructor(
    readonly obj: Record<string, unknown>,
    readonly source: string,
    readonly prefix = '',
  ) {}

  private has(key: string): boolean {
    return Object.hasOwn(this.obj, key) && this.obj[key] !== null && this.obj[key] !== undefined;
  }

  private badType(key: string, expected: string): never {
    fail(ErrorCodes.BAD_HEADER, `${this.prefix}${key} is ${typeName(this.obj[key])}, expected ${expected}`, this.source, 'config.json must be a transformers config of a Llama-family model');
  }

  /** A positive integer at most `max` (a named limit); `fallback` when absent, or MISSING when none. */
  int(key: string, max: number, fallback?: number): number {
    if (!this.has(key)) {
      if (fallback === undefined) {
        fail(ErrorCodes.BAD_HEADER, `${this.prefix}${key} is missing`, this.source, 'config.json must state it; re-download the model\'s config.json');
      }
      this.defaulted.push(`${this.prefix}${key}`);
      return fallback;
    }
    const v = this.obj[key];
    if (typeof v !== 'number' || !Number.isInteger(v)) this.badType(key, 'an integer');
    if (v < 1 || v > max) fail(ErrorCodes.BAD_DIMENSION, `${this.prefix}${key} is ${v}, outside 1..${max}`, this.source);
    return v;
  }

  /** A finite positive number. */
  positive(key: string, fallback?: number): number {
    if (!this.has(key)) {
      if (fallback === undefined) fail(ErrorCodes.BAD_HEADER, `${this.prefix}${key} is missing`, this.source);
      this.defaulted.push(`${this.prefix}${key}`);
      return fallback;
    }
    const v = this.obj[key];
    if (typeof v !== 'number') this.badType(key, 'a number');
    if (!Number.isFinite(v) || v <= 0) fail(ErrorCodes.BAD_DIMENSION, `${this.prefix}${key} is ${v}, expected a positive number`, this.source);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    if (!this.has(key)) {
      this.defaulted.push(`${this.prefix}${key}`);
      return fallback;
    }
    const v = this.obj[key];
    if (typeof v !== 'boolean') this.badType(key, 'true or false');
    return v;
  }

  string(key: string): string | null {
    if (!this.has(key)) return null;
    const v = this.obj[key];
    if (typeof v !== 'string') this.badType(key, 'a string');
    return v;
  }

  /** A token id (non-negative integer) or null. */
  tokenId(key: string): number | null {
    if (!this.has(key)) return null;
    const v = this.obj[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) this.badType(key, 'a token id (a non-negative integer)');
    return v;
  }

  /** One token id or a list of them (Llama 3 lists several end-of-sequence ids). */
  tokenIds(key: string): number[] {
    if (!this.has(key)) return [];
    const v = this.obj[key];
    if (Array.isArray(v)) {
      if (!v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) this.badType(key, 'token ids');
      return v as number[];
    }
    const one = this.tokenId(key);
    return one === null ? [] : [one];
  }

  raw(key: string): unknown {
    return this.has(key) ? this.obj[key] : undefined;
  }
}

/** The architecture a config names: `architectures[0]`, or its `model_type` when the list is absent. */
function hfArchitecture(config: Record<string, unknown>, source: string): LlamaFamilyArchitecture {
  const list = config.architectures;
  if (list !== undefined && list !== null) {
    if (!Array.isArray(list) || list.length === 0 || typeof list[0] !== 'string') {
      fail(ErrorCodes.BAD_HEADER, `architectures is ${typeName(list)}${Array.isArray(list) ? ' without a class name' : ''}, expected a list of class names`, source);
    }
    const name = list[0] as string;
    if ((LLAMA_FAMILY_ARCHITECTURES as readonly string[]).includes(name)) return name as LlamaFamilyArchitecture;
    fail(ErrorCodes.UNSUPPORTED, `architecture ${name} is not supported`, source, SUPPORTED_HINT);
  }
  const modelType = config.model_type;
  if (typeof modelType !== 'string') {
    fail(ErrorCodes.BAD_HEADER, 'config.json names no architecture (no "architectures" list and no "model_type")', source, 'use the config.json that came with the model');
  }
  const arch = MODEL_TYPES[modelType];
  if (!arch) fail(ErrorCodes.UNSUPPORTED, `model_type ${modelType} is not supported`, source, SUPPORTED_HINT);
  return arch;
}

/**
 * Describe a Hugging Face `config.json` (the parsed JSON value). Missing optional keys take transformers'
 * defaults for the architecture (listed in `defaulted`); missing required ones (sizes, layers, heads,
 * vocabulary) and ill-typed ones are BAD_HEADER; architectures, activations, RoPE scalings and options
 * outside what the forward implements are UNSUPPORTED, naming them.
 */
export function describeHfConfig(config: unknown, source = 'config.json'): ModelDescription {
  if (!isObject(config)) fail(ErrorCodes.BAD_HEADER, `config is ${typeName(config)}, expected a JSON object`, source);
  const architecture = hfArchitecture(config, source);
  const f = new Fields(config, source);
  const defaults = HF_DEFAULTS[architecture];

  const hiddenSize = f.int('hidden_size', LIMITS.maxModelDim);
  const intermediateSize = f.int('intermediate_size', LIMITS.maxModelDim);
  const numLayers = f.int('num_hidden_layers', LIMITS.maxLayers);
  const numHeads = f.int('num_attention_heads', LIMITS.maxHeads);
  const numKvHeads = f.int('num_key_value_heads', LIMITS.maxHeads, defaults.kvHeads === 'heads' ? numHeads : defaults.kvHeads);
  const vocabSize = f.int('vocab_size', LIMITS.maxVocab);
  const maxPositionEmbeddings = f.int('max_position_embeddings', LIMITS.maxSeqLen, defaults.maxPositions);
  const rmsNormEps = f.positive('rms_norm_eps', 1e-6);
  if ((config.head_dim === undefined || config.head_dim === null) && hiddenSize % numHeads !== 0) {
    fail(ErrorCodes.BAD_DIMENSION, `hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}, and head_dim is not given`, source);
  }
  const headDim = f.int('head_dim', LIMITS.maxModelDim, hiddenSize / numHeads);

  const act = f.string('hidden_act') ?? f.string('hidden_activation');
  if (act === null) f.defaulted.push('hidden_act');
  else if (act !== 'silu' && act !== 'swish') {
    fail(ErrorCodes.UNSUPPORTED, `hidden_act ${act} is not supported (the family's MLP is SwiGLU: silu)`, source, SUPPORTED_HINT);
  }
  if (architecture === 'LlamaForCausalLM' && f.bool('mlp_bias', false)) {
    fail(ErrorCodes.UNSUPPORTED, 'mlp_bias true is not supported (biases on the MLP projections)', source, 'no released Llama uses it; check the config');
  }
  const partial = f.raw('partial_rotary_factor');
  if (partial !== undefined && partial !== 1) {
    fail(ErrorCodes.UNSUPPORTED, `partial_rotary_factor ${JSON.stringify(partial)} is not supported (RoPE over the whole head only)`, source);
  }

  // attention_bias: Llama and Qwen3 put it on q, k, v and o; Qwen2 always has q/k/v bias and no o bias.
  let attentionBias = { qkv: false, output: false };
  if (architecture === 'Qwen2ForCausalLM') attentionBias = { qkv: true, output: false };
  else if (architecture !== 'MistralForCausalLM') {
    const b = f.bool('attention_bias', false);
    attentionBias = { qkv: b, output: b };
  }

  const { ropeTheta, ropeScaling } = hfRope(config, f, source);
  const slidingWindow = hfSlidingWindow(architecture, f, source);
  const tieWordEmbeddings = f.bool('tie_word_embeddings', false);

  const desc: ModelDescription = {
    source: 'hf-config',
    architecture,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    maxPositionEmbeddings,
    rmsNormEps,
    ropeTheta,
    ropeScaling,
    ropeLayout: 'halves',
    tieWordEmbeddings,
    attentionBias,
    qkNorm: architecture === 'Qwen3ForCausalLM',
    slidingWindow,
    bosTokenId: f.tokenId('bos_token_id'),
    eosTokenIds: f.tokenIds('eos_token_id'),
    dtype: f.string('torch_dtype') ?? f.string('dtype'),
    defaulted: f.defaulted,
  };
  checkHeads(desc, source);
  return desc;
}

/**
 * RoPE base and scaling. transformers ≤ 4.x configs have `rope_theta` and `rope_scaling`; newer ones may
 * carry both in `rope_parameters` ({rope_type, rope_theta, ...}). A scaling of type "default" (or none) is
 * no scaling; "llama3" is read in full; every other type (linear, dynamic, yarn, longrope, ...) is refused.
 */
function hfRope(config: Record<string, unknown>, f: Fields, source: string): { ropeTheta: number; ropeScaling: Llama3RopeScaling | null } {
  const params = config.rope_parameters;
  let scaling: unknown = config.rope_scaling;
  let ropeTheta: number;
  if (isObject(params)) {
    const pf = new Fields(params, source, 'rope_parameters.');
    ropeTheta = Object.hasOwn(params, 'rope_theta') ? pf.positive('rope_theta') : f.positive('rope_theta', 10000);
    if (scaling === undefined || scaling === null) scaling = params;
  } else {
    if (params !== undefined && params !== null) fail(ErrorCodes.BAD_HEADER, `rope_parameters is ${typeName(params)}, expected an object`, source);
    ropeTheta = f.positive('rope_theta', 10000);
  }
  if (scaling === undefined || scaling === null) return { ropeTheta, ropeScaling: null };
  const key = isObject(params) && scaling === params ? 'rope_parameters' : 'rope_scaling';
  if (!isObject(scaling)) fail(ErrorCodes.BAD_HEADER, `${key} is ${typeName(scaling)}, expected an object or null`, source);
  // Older configs name the type "type", newer ones "rope_type".
  const type = scaling.rope_type ?? scaling.type;
  if (type === undefined || type === 'default') return { ropeTheta, ropeScaling: null };
  if (type !== 'llama3') {
    fail(
      ErrorCodes.UNSUPPORTED,
      `${key} type ${JSON.stringify(type)} is not supported (only llama3 scaling, or none)`,
      source,
      'linear, dynamic, yarn and longrope scalings change the positions the model was trained on; they are not implemented',
    );
  }
  const s = new Fields(scaling, source, `${key}.`);
  const factor = s.positive('factor');
  const lowFreqFactor = s.positive('low_freq_factor');
  const highFreqFactor = s.positive('high_freq_factor');
  const originalMaxPositionEmbeddings = s.int('original_max_position_embeddings', LIMITS.maxSeqLen);
  if (!(highFreqFactor > lowFreqFactor)) {
    fail(ErrorCodes.BAD_HEADER, `${key}.high_freq_factor ${highFreqFactor} must exceed low_freq_factor ${lowFreqFactor}`, source, 'the llama3 scaling interpolates between them; check the config');
  }
  return { ropeTheta, ropeScaling: { type: 'llama3', factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings } };
}

/**
 * Mistral's `sliding_window` (a number, or null for full attention) is recorded. Qwen2/Qwen3 use one only
 * when `use_sliding_window` is true, and then on only some layers (`max_window_layers`): refused.
 */
function hfSlidingWindow(architecture: LlamaFamilyArchitecture, f: Fields, source: string): number | null {
  if (architecture === 'MistralForCausalLM') {
    return f.raw('sliding_window') === undefined ? null : f.int('sliding_window', LIMITS.maxSeqLen);
  }
  if ((architecture === 'Qwen2ForCausalLM' || architecture === 'Qwen3ForCausalLM') && f.bool('use_sliding_window', false)) {
    fail(ErrorCodes.UNSUPPORTED, 'use_sliding_window true is not supported (sliding-window attention on some layers)', source, 'the released Qwen2/Qwen3 configs set it false');
  }
  return null;
}

function checkHeads(d: ModelDescription, source: string): void {
  if (d.numHeads % d.numKvHeads !== 0) {
    fail(ErrorCodes.BAD_DIMENSION, `${d.numHeads} attention heads are not a multiple of ${d.numKvHeads} key/value heads`, source, 'grouped-query attention shares each key/value head among a whole number of query heads');
  }
  if (d.headDim % 2 !== 0) fail(ErrorCodes.BAD_DIMENSION, `head dimension ${d.headDim} is odd; RoPE rotates dimensions in pairs`, source);
}

// ---------------------------------------------------------------------------------------------- GGUF metadata

const GGUF_ARCHITECTURES: Record<string, { architecture: LlamaFamilyArchitecture; ropeLayout: RopeLayout }> = {
  // llama.cpp converts Llama, SmolLM and Mistral (7B) checkpoints all to `llama`, with q/k in pairs order.
  llama: { architecture: 'LlamaForCausalLM', ropeLayout: 'pairs' },
  qwen2: { architecture: 'Qwen2ForCausalLM', ropeLayout: 'halves' },
  qwen3: { architecture: 'Qwen3ForCausalLM', ropeLayout: 'halves' },
};

/** llama.cpp's default RoPE base when `{arch}.rope.freq_base` is absent. */
const GGUF_DEFAULT_ROPE_BASE = 10000;
const ROPE_FREQS_TENSOR = 'rope_freqs.weight';

/**
 * Describe a GGUF model from its header: `general.architecture` picks the key prefix; sizes come from
 * `{arch}.embedding_length`, `block_count`, `feed_forward_length`, `attention.head_count(_kv)`,
 * `attention.key_length`, `rope.freq_base`, `rope.dimension_count`, `attention.layer_norm_rms_epsilon`,
 * `context_length`; the vocabulary from `{arch}.vocab_size`, else the length of `tokenizer.ggml.tokens`,
 * else the rows of `token_embd.weight`. GGUF has no key for a tied classifier or attention biases: they are
 * read from which tensors exist (no `output.weight`: tied; `blk.0.attn_q.bias`: q/k/v bias).
 */
export function describeGgufModel(header: GgufHeader, source = '<gguf>'): ModelDescription {
  const archName = getGgufString(header, 'general.architecture', source);
  if (archName === undefined) fail(ErrorCodes.BAD_HEADER, 'general.architecture is missing', source, 'every GGUF model names its architecture; re-convert the model');
  const arch = GGUF_ARCHITECTURES[archName];
  if (!arch) fail(ErrorCodes.UNSUPPORTED, `GGUF architecture ${archName} is not supported`, source, `supported GGUF architectures: ${Object.keys(GGUF_ARCHITECTURES).join(', ')}`);
  const defaulted: string[] = [];
  const key = (k: string) => `${archName}.${k}`;
  const num = (k: string, fallback?: number): number => {
    const e = header.metadata.get(key(k));
    if (e?.type === 'array') {
      fail(ErrorCodes.UNSUPPORTED, `${key(k)} is a per-layer array; only models whose layers are all alike are supported`, source);
    }
    const v = getGgufNumber(header, key(k), source);
    if (v !== undefined) return v;
    if (fallback === undefined) fail(ErrorCodes.BAD_HEADER, `${key(k)} is missing`, source, 'the GGUF lacks a key llama.cpp needs; re-convert the model');
    defaulted.push(key(k));
    return fallback;
  };
  const int = (k: string, max: number, fallback?: number): number => {
    const v = num(k, fallback);
    if (!Number.isInteger(v) || v < 1 || v > max) fail(ErrorCodes.BAD_DIMENSION, `${key(k)} is ${v}, outside 1..${max}`, source);
    return v;
  };
  const positive = (k: string, fallback?: number): number => {
    const v = num(k, fallback);
    if (!Number.isFinite(v) || v <= 0) fail(ErrorCodes.BAD_DIMENSION, `${key(k)} is ${v}, expected a positive number`, source);
    return v;
  };

  const hiddenSize = int('embedding_length', LIMITS.maxModelDim);
  const numLayers = int('block_count', LIMITS.maxLayers);
  const intermediateSize = int('feed_forward_length', LIMITS.maxModelDim);
  const numHeads = int('attention.head_count', LIMITS.maxHeads);
  const numKvHeads = int('attention.head_count_kv', LIMITS.maxHeads, numHeads);
  const hasKeyLength = header.metadata.has(key('attention.key_length'));
  if (!hasKeyLength && hiddenSize % numHeads !== 0) {
    fail(ErrorCodes.BAD_DIMENSION, `${key('embedding_length')} ${hiddenSize} is not divisible by ${key('attention.head_count')} ${numHeads}`, source);
  }
  const headDim = int('attention.key_length', LIMITS.maxModelDim, hiddenSize / numHeads);
  const valueLength = int('attention.value_length', LIMITS.maxModelDim, headDim);
  if (valueLength !== headDim) {
    fail(ErrorCodes.UNSUPPORTED, `key and value heads differ in width (${headDim} vs ${valueLength})`, source);
  }
  const ropeDims = int('rope.dimension_count', LIMITS.maxModelDim, headDim);
  if (ropeDims !== headDim) {
    fail(ErrorCodes.UNSUPPORTED, `RoPE over ${ropeDims} of ${headDim} head dimensions (partial rotary) is not supported`, source);
  }
  const ropeTheta = positive('rope.freq_base', GGUF_DEFAULT_ROPE_BASE);
  const rmsNormEps = positive('attention.layer_norm_rms_epsilon');
  const maxPositionEmbeddings = int('context_length', LIMITS.maxSeqLen);

  const scalingType = getGgufString(header, key('rope.scaling.type'), source);
  if (scalingType !== undefined && scalingType !== 'none') {
    fail(ErrorCodes.UNSUPPORTED, `${key('rope.scaling.type')} ${JSON.stringify(scalingType)} is not supported`, source, 'only unscaled RoPE and llama3 frequency factors (rope_freqs.weight) are implemented');
  }
  const ropeScaling: RopeScaling | null = header.tensors.has(ROPE_FREQS_TENSOR) ? { type: 'freq-factors', tensor: ROPE_FREQS_TENSOR } : null;

  let vocabSize: number;
  if (header.metadata.has(key('vocab_size'))) {
    vocabSize = int('vocab_size', LIMITS.maxVocab);
  } else {
    // llama.cpp's own converters leave vocab_size out and let the token list define it.
    const tokens = getGgufArray(header, 'tokenizer.ggml.tokens', source);
    const embd = header.tensors.get('token_embd.weight');
    if (tokens) vocabSize = tokens.values.length;
    else if (embd && embd.dims.length === 2) vocabSize = embd.dims[1]!;
    else {
      fail(ErrorCodes.BAD_HEADER, `the vocabulary size is unknown: no ${key('vocab_size')}, no tokenizer.ggml.tokens and no 2-D token_embd.weight`, source);
    }
    defaulted.push(key('vocab_size'));
  }
  if (vocabSize < 1 || vocabSize > LIMITS.maxVocab) fail(ErrorCodes.BAD_DIMENSION, `vocabulary size ${vocabSize} is outside 1..${LIMITS.maxVocab}`, source);

  const tokenId = (k: string): number | null => {
    const v = getGgufNumber(header, k, source);
    if (v === undefined) return null;
    if (!Number.isInteger(v) || v < 0) fail(ErrorCodes.BAD_HEADER, `${k} is ${v}, expected a token id`, source);
    return v;
  };
  const eos = tokenId('tokenizer.ggml.eos_token_id');

  const desc: ModelDescription = {
    source: 'gguf',
    architecture: arch.architecture,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize,
    maxPositionEmbeddings,
    rmsNormEps,
    ropeTheta,
    ropeScaling,
    ropeLayout: arch.ropeLayout,
    tieWordEmbeddings: !header.tensors.has('output.weight'),
    attentionBias: { qkv: header.tensors.has('blk.0.attn_q.bias'), output: header.tensors.has('blk.0.attn_output.bias') },
    qkNorm: archName === 'qwen3',
    slidingWindow: null,
    bosTokenId: tokenId('tokenizer.ggml.bos_token_id'),
    eosTokenIds: eos === null ? [] : [eos],
    dtype: null,
    defaulted,
  };
  checkHeads(desc, source);
  return desc;
}
