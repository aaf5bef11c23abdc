import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '@ultrasketch/core';
import { describeGgufModel, describeHfConfig, readGguf, type ModelDescription } from '../src/index.js';
import { expectRejects, readShared, sharedPath } from './helpers.js';
import { G, T, arr, f32, f32Data, kv, simpleGguf, str, u32, u64 } from './ggufBytes.js';
import { requireShared } from '../../../test/require-shared.js';

/**
 * Model descriptions from Hugging Face config.json files and from GGUF metadata: the real fixtures, the
 * published configs of one model of each supported architecture (values as their config.json files state
 * them), and the configs that must be refused.
 */

const SRC = 'config.json';
const HAVE = requireShared('format model-description tests', [
  sharedPath('models/stories260K/hf/config.json'),
  sharedPath('models/stories3M/hf/config.json'),
  sharedPath('models/stories260K/gguf/stories260K-f32.gguf'),
  sharedPath('models/stories3M/gguf/stories3M-q4_k_m.gguf'),
]);
const json = (rel: string): unknown => JSON.parse(readFileSync(sharedPath(rel), 'utf8'));

// Published config.json values (only the keys that matter here).
const LLAMA_3_2_1B = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  bos_token_id: 128000,
  eos_token_id: 128001,
  head_dim: 64,
  hidden_act: 'silu',
  hidden_size: 2048,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  vocab_size: 128256,
};
const LLAMA_2_7B = {
  architectures: ['LlamaForCausalLM'],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 4096,
  intermediate_size: 11008,
  max_position_embeddings: 4096,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 32,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  tie_word_embeddings: false,
  torch_dtype: 'float16',
  vocab_size: 32000,
};
const SMOLLM2_135M = {
  architectures: ['LlamaForCausalLM'],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 576,
  intermediate_size: 1536,
  max_position_embeddings: 8192,
  model_type: 'llama',
  num_attention_heads: 9,
  num_hidden_layers: 30,
  num_key_value_heads: 3,
  rms_norm_eps: 1e-5,
  rope_theta: 100000,
  tie_word_embeddings: true,
  vocab_size: 49152,
};
const MISTRAL_7B = {
  architectures: ['MistralForCausalLM'],
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 4096,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: 'mistral',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  sliding_window: 4096,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  vocab_size: 32000,
};
const QWEN2_5_0_5B = {
  architectures: ['Qwen2ForCausalLM'],
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_act: 'silu',
  hidden_size: 896,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 24,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  use_sliding_window: false,
  vocab_size: 151936,
};
const QWEN3_0_6B = {
  architectures: ['Qwen3ForCausalLM'],
  attention_bias: false,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: 'silu',
  hidden_size: 1024,
  intermediate_size: 3072,
  max_position_embeddings: 40960,
  max_window_layers: 28,
  model_type: 'qwen3',
  num_attention_heads: 16,
  num_hidden_layers: 28,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  use_sliding_window: false,
  vocab_size: 151936,
};

/** The fields two descriptions of the same model from different sources must share. */
function shape(d: ModelDescription) {
  const { source: _s, ropeLayout: _r, dtype: _d, defaulted: _f, rmsNormEps: _e, ...rest } = d;
  return rest;
}

describe.skipIf(!HAVE)('model descriptions of the fixtures', () => {
  it('stories260K hf/config.json: GQA 8/4, head_dim 8, tied, halves', () => {
    const d = describeHfConfig(json('models/stories260K/hf/config.json'), SRC);
    expect(d).toEqual({
      source: 'hf-config',
      architecture: 'LlamaForCausalLM',
      hiddenSize: 64,
      intermediateSize: 172,
      numLayers: 5,
      numHeads: 8,
      numKvHeads: 4,
      headDim: 8,
      vocabSize: 512,
      maxPositionEmbeddings: 512,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      ropeScaling: null,
      ropeLayout: 'halves',
      tieWordEmbeddings: true,
      attentionBias: { qkv: false, output: false },
      qkNorm: false,
      slidingWindow: null,
      bosTokenId: 1,
      eosTokenIds: [2],
      dtype: 'float32',
      defaulted: [],
    });
  });

  it.each([
    ['stories260K', 'models/stories260K/hf/config.json', 'models/stories260K/gguf/stories260K-f32.gguf'],
    ['stories3M', 'models/stories3M/hf/config.json', 'models/stories3M/gguf/stories3M-q4_k_m.gguf'],
  ])('%s: the GGUF describes the same model as config.json, with pairs RoPE (llama) and the eps as float32', (_name, cfg, file) => {
    const hf = describeHfConfig(json(cfg), SRC);
    const g = describeGgufModel(readGguf(readShared(file), file), file);
    expect(shape(g)).toEqual(shape(hf));
    expect(g.source).toBe('gguf');
    expect(hf.ropeLayout).toBe('halves');
    expect(g.ropeLayout).toBe('pairs');
    expect(g.rmsNormEps).toBe(Math.fround(1e-5));
    expect(hf.rmsNormEps).toBe(1e-5);
    expect(g.tieWordEmbeddings).toBe(true); // no output.weight
    // llama.vocab_size is present in these files; nothing but the default rope/key lengths was assumed.
    expect(g.defaulted).toEqual(['llama.attention.key_length', 'llama.attention.value_length']);
  });

  it('stories3M hf and hf-sharded share one config; BF16 is stated', () => {
    const a = describeHfConfig(json('models/stories3M/hf/config.json'), SRC);
    expect(describeHfConfig(json('models/stories3M/hf-sharded/config.json'), SRC)).toEqual(a);
    expect(a).toMatchObject({ hiddenSize: 192, intermediateSize: 512, numLayers: 6, numHeads: 6, numKvHeads: 2, headDim: 32, vocabSize: 4096, dtype: 'bfloat16' });
  });
});

describe('model descriptions of published configs, one per architecture', () => {
  it('Llama 3.2 1B: llama3 rope scaling, GQA 32/8, explicit head_dim, tied', () => {
    const d = describeHfConfig(LLAMA_3_2_1B, SRC);
    expect(d).toMatchObject({
      architecture: 'LlamaForCausalLM',
      hiddenSize: 2048,
      intermediateSize: 8192,
      numLayers: 16,
      numHeads: 32,
      numKvHeads: 8,
      headDim: 64,
      vocabSize: 128256,
      maxPositionEmbeddings: 131072,
      ropeTheta: 500000,
      ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
      tieWordEmbeddings: true,
      attentionBias: { qkv: false, output: false },
      bosTokenId: 128000,
      eosTokenIds: [128001],
      defaulted: [],
    });
  });

  it('Llama 3.2 1B in the transformers 5 form (rope_parameters) describes the same model', () => {
    const { rope_scaling: scaling, rope_theta: theta, ...rest } = LLAMA_3_2_1B;
    const v5 = { ...rest, rope_parameters: { ...scaling, rope_theta: theta } };
    expect(describeHfConfig(v5, SRC)).toEqual(describeHfConfig(LLAMA_3_2_1B, SRC));
    const plain = { ...rest, rope_parameters: { rope_type: 'default', rope_theta: 250000 } };
    expect(describeHfConfig(plain, SRC)).toMatchObject({ ropeTheta: 250000, ropeScaling: null });
  });

  it('Llama 2 7B: no rope_theta (default 10000, noted), MHA, untied', () => {
    const d = describeHfConfig(LLAMA_2_7B, SRC);
    expect(d).toMatchObject({ numHeads: 32, numKvHeads: 32, headDim: 128, ropeTheta: 10000, ropeScaling: null, tieWordEmbeddings: false });
    expect(d.defaulted).toEqual(['head_dim', 'mlp_bias', 'attention_bias', 'rope_theta']);
  });

  it('SmolLM2 135M is LlamaForCausalLM: 9 heads / 3 kv heads, head_dim 64 derived', () => {
    const d = describeHfConfig(SMOLLM2_135M, SRC);
    expect(d).toMatchObject({ architecture: 'LlamaForCausalLM', numHeads: 9, numKvHeads: 3, headDim: 64, ropeTheta: 100000, tieWordEmbeddings: true });
    expect(d.defaulted).toEqual(['head_dim', 'mlp_bias', 'attention_bias']);
  });

  it('Mistral 7B v0.1: sliding window 4096 recorded, no attention bias', () => {
    const d = describeHfConfig(MISTRAL_7B, SRC);
    expect(d).toMatchObject({ architecture: 'MistralForCausalLM', numKvHeads: 8, headDim: 128, slidingWindow: 4096, attentionBias: { qkv: false, output: false }, tieWordEmbeddings: false });
    expect(describeHfConfig({ ...MISTRAL_7B, sliding_window: null }, SRC).slidingWindow).toBeNull();
  });

  it('Qwen2.5 0.5B: q/k/v bias without being told, no o bias, sliding window off', () => {
    const d = describeHfConfig(QWEN2_5_0_5B, SRC);
    expect(d).toMatchObject({
      architecture: 'Qwen2ForCausalLM',
      numHeads: 14,
      numKvHeads: 2,
      headDim: 64,
      ropeTheta: 1e6,
      rmsNormEps: 1e-6,
      attentionBias: { qkv: true, output: false },
      qkNorm: false,
      slidingWindow: null,
      ropeLayout: 'halves',
    });
    // attention_bias is not a Qwen2 key: a stray false does not remove the bias.
    expect(describeHfConfig({ ...QWEN2_5_0_5B, attention_bias: false }, SRC).attentionBias).toEqual({ qkv: true, output: false });
  });

  it('Qwen3 0.6B: q/k norm, explicit head_dim 128 ≠ hidden/heads, no bias unless attention_bias', () => {
    const d = describeHfConfig(QWEN3_0_6B, SRC);
    expect(d).toMatchObject({ architecture: 'Qwen3ForCausalLM', hiddenSize: 1024, numHeads: 16, headDim: 128, qkNorm: true, attentionBias: { qkv: false, output: false }, eosTokenIds: [151645] });
    expect(describeHfConfig({ ...QWEN3_0_6B, attention_bias: true }, SRC).attentionBias).toEqual({ qkv: true, output: true });
  });

  it('a config with model_type but no architectures list is read by model_type; defaults are transformers\' per architecture', () => {
    const { architectures: _a, ...rest } = MISTRAL_7B;
    expect(describeHfConfig(rest, SRC).architecture).toBe('MistralForCausalLM');
    const minimal = { model_type: 'qwen2', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 100 };
    const d = describeHfConfig(minimal, SRC);
    expect(d).toMatchObject({ maxPositionEmbeddings: 32768, rmsNormEps: 1e-6, ropeTheta: 10000, tieWordEmbeddings: false, eosTokenIds: [], bosTokenId: null, dtype: null });
    expect(d.defaulted).toEqual(['max_position_embeddings', 'rms_norm_eps', 'head_dim', 'hidden_act', 'rope_theta', 'use_sliding_window', 'tie_word_embeddings']);
    // Llama's default kv heads are the query heads (MHA).
    const { num_key_value_heads: _k, ...noKv } = minimal;
    expect(describeHfConfig({ ...noKv, model_type: 'llama' }, SRC).numKvHeads).toBe(4);
  });

  it('eos_token_id may be a list (Llama 3.1 instruct)', () => {
    expect(describeHfConfig({ ...LLAMA_3_2_1B, eos_token_id: [128001, 128008, 128009] }, SRC).eosTokenIds).toEqual([128001, 128008, 128009]);
  });
});

describe('configs that are refused, naming what and why', () => {
  it.each([
    'GemmaForCausalLM',
    'MixtralForCausalLM',
    'Qwen3MoeForCausalLM',
    'Phi3ForCausalLM',
    'LlavaForConditionalGeneration',
  ])('architecture %s is UNSUPPORTED', (name) => {
    const err = expectRejects(() => describeHfConfig({ ...LLAMA_2_7B, architectures: [name] }, SRC), ErrorCodes.UNSUPPORTED, SRC, new RegExp(`architecture ${name} is not supported`));
    expect(err.hint).toMatch(/LlamaForCausalLM.*Qwen3ForCausalLM/);
  });

  it('a model_type outside the family (no architectures list) is UNSUPPORTED', () => {
    expectRejects(() => describeHfConfig({ model_type: 'gpt2', n_embd: 768 }, SRC), ErrorCodes.UNSUPPORTED, SRC, /model_type gpt2 is not supported/);
  });

  it.each([
    ['linear', { type: 'linear', factor: 2 }],
    ['dynamic', { rope_type: 'dynamic', factor: 2 }],
    ['yarn', { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32768 }],
    ['longrope', { rope_type: 'longrope', long_factor: [1], short_factor: [1] }],
  ])('rope_scaling type %s is UNSUPPORTED, naming it', (type, scaling) => {
    expectRejects(() => describeHfConfig({ ...QWEN2_5_0_5B, rope_scaling: scaling }, SRC), ErrorCodes.UNSUPPORTED, SRC, new RegExp(`rope_scaling type "${type}" is not supported`));
  });

  it.each([
    ['gelu_pytorch_tanh', { hidden_act: 'gelu_pytorch_tanh' }, /hidden_act gelu_pytorch_tanh is not supported/],
    ['mlp_bias', { mlp_bias: true }, /mlp_bias true is not supported/],
    ['partial rotary', { partial_rotary_factor: 0.5 }, /partial_rotary_factor 0.5 is not supported/],
  ])('%s is UNSUPPORTED', (_label, extra, problem) => {
    expectRejects(() => describeHfConfig({ ...LLAMA_2_7B, ...extra }, SRC), ErrorCodes.UNSUPPORTED, SRC, problem);
  });

  it('Qwen2 with use_sliding_window true is UNSUPPORTED', () => {
    expectRejects(() => describeHfConfig({ ...QWEN2_5_0_5B, use_sliding_window: true }, SRC), ErrorCodes.UNSUPPORTED, SRC, /use_sliding_window true/);
  });

  it.each([
    ['not an object', [1, 2], ErrorCodes.BAD_HEADER, /config is an array, expected a JSON object/],
    ['hidden_size missing', { ...LLAMA_2_7B, hidden_size: undefined }, ErrorCodes.BAD_HEADER, /hidden_size is missing/],
    ['vocab_size null', { ...LLAMA_2_7B, vocab_size: null }, ErrorCodes.BAD_HEADER, /vocab_size is missing/],
    ['hidden_size a string', { ...LLAMA_2_7B, hidden_size: '4096' }, ErrorCodes.BAD_HEADER, /hidden_size is a string, expected an integer/],
    ['num_hidden_layers fractional', { ...LLAMA_2_7B, num_hidden_layers: 31.5 }, ErrorCodes.BAD_HEADER, /num_hidden_layers is a number, expected an integer/],
    ['num_attention_heads 0', { ...LLAMA_2_7B, num_attention_heads: 0 }, ErrorCodes.BAD_DIMENSION, /num_attention_heads is 0, outside 1\.\./],
    ['hidden_size beyond the limit', { ...LLAMA_2_7B, hidden_size: 2 ** 40 }, ErrorCodes.BAD_DIMENSION, /hidden_size is 1099511627776, outside/],
    ['rms_norm_eps negative', { ...LLAMA_2_7B, rms_norm_eps: -1 }, ErrorCodes.BAD_DIMENSION, /rms_norm_eps is -1, expected a positive number/],
    ['heads not a multiple of kv heads', { ...LLAMA_2_7B, num_key_value_heads: 5 }, ErrorCodes.BAD_DIMENSION, /32 attention heads are not a multiple of 5 key\/value heads/],
    ['hidden not divisible by heads, no head_dim', { ...LLAMA_2_7B, hidden_size: 4097 }, ErrorCodes.BAD_DIMENSION, /hidden_size 4097 is not divisible by num_attention_heads 32/],
    ['an odd head_dim', { ...LLAMA_2_7B, head_dim: 127 }, ErrorCodes.BAD_DIMENSION, /head dimension 127 is odd/],
    ['architectures empty', { ...LLAMA_2_7B, architectures: [] }, ErrorCodes.BAD_HEADER, /architectures is an array without a class name/],
    ['no architecture at all', { hidden_size: 8 }, ErrorCodes.BAD_HEADER, /names no architecture/],
    ['tie_word_embeddings a string', { ...LLAMA_2_7B, tie_word_embeddings: 'yes' }, ErrorCodes.BAD_HEADER, /tie_word_embeddings is a string, expected true or false/],
    ['rope_scaling a string', { ...LLAMA_2_7B, rope_scaling: 'llama3' }, ErrorCodes.BAD_HEADER, /rope_scaling is a string, expected an object or null/],
    ['llama3 scaling without high_freq_factor', { ...LLAMA_3_2_1B, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, original_max_position_embeddings: 8192 } }, ErrorCodes.BAD_HEADER, /rope_scaling.high_freq_factor is missing/],
    ['llama3 scaling with low ≥ high', { ...LLAMA_3_2_1B, rope_scaling: { ...LLAMA_3_2_1B.rope_scaling, low_freq_factor: 4 } }, ErrorCodes.BAD_HEADER, /high_freq_factor 4 must exceed low_freq_factor 4/],
    ['eos_token_id a list with a string', { ...LLAMA_2_7B, eos_token_id: [2, 'x'] }, ErrorCodes.BAD_HEADER, /eos_token_id is an array, expected token ids/],
  ])('%s is refused', (_label, config, code, problem) => {
    expectRejects(() => describeHfConfig(config, SRC), code, SRC, problem);
  });
});

// ---------------------------------------------------------------------------------------------- GGUF metadata

const F = 'model.gguf';
type Kvs = Uint8Array[];
/** The metadata of a tiny model of architecture `arch` (dims 8, 2 layers, 4 heads / 2 kv heads). */
function archKvs(arch: string, extra: Kvs = [], omit: string[] = []): Kvs {
  const base: Array<[string, Uint8Array]> = [
    ['general.architecture', kv('general.architecture', T.string, str(arch))],
    [`${arch}.embedding_length`, kv(`${arch}.embedding_length`, T.u32, u32(8))],
    [`${arch}.block_count`, kv(`${arch}.block_count`, T.u32, u32(2))],
    [`${arch}.feed_forward_length`, kv(`${arch}.feed_forward_length`, T.u32, u32(16))],
    [`${arch}.attention.head_count`, kv(`${arch}.attention.head_count`, T.u32, u32(4))],
    [`${arch}.attention.head_count_kv`, kv(`${arch}.attention.head_count_kv`, T.u32, u32(2))],
    [`${arch}.attention.layer_norm_rms_epsilon`, kv(`${arch}.attention.layer_norm_rms_epsilon`, T.f32, f32(1e-6))],
    [`${arch}.context_length`, kv(`${arch}.context_length`, T.u32, u32(128))],
    [`${arch}.rope.freq_base`, kv(`${arch}.rope.freq_base`, T.f32, f32(1e6))],
    ['tokenizer.ggml.tokens', kv('tokenizer.ggml.tokens', T.array, arr(T.string, 3, str('a'), str('b'), str('c')))],
    ['tokenizer.ggml.eos_token_id', kv('tokenizer.ggml.eos_token_id', T.u32, u32(2))],
  ];
  return [...base.filter(([k]) => !omit.includes(k)).map(([, v]) => v), ...extra];
}
const t = (name: string, dims: number[]) => ({ name, dims, type: G.F32, data: f32Data(new Array<number>(dims.reduce((a, b) => a * b, 1)).fill(0)) });
const ggufModel = (kvs: Kvs, tensors = [t('token_embd.weight', [8, 3])]) => readGguf(simpleGguf(tensors, kvs), F);

describe('model descriptions from GGUF metadata', () => {
  it('qwen2: halves (NEOX), q/k/v bias from the tensors, vocabulary from the token list, tied when no output.weight', () => {
    const g = ggufModel(archKvs('qwen2'), [t('token_embd.weight', [8, 3]), t('blk.0.attn_q.bias', [8])]);
    const d = describeGgufModel(g, F);
    expect(d).toMatchObject({
      source: 'gguf',
      architecture: 'Qwen2ForCausalLM',
      hiddenSize: 8,
      intermediateSize: 16,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 2,
      vocabSize: 3,
      maxPositionEmbeddings: 128,
      ropeTheta: 1e6,
      rmsNormEps: Math.fround(1e-6),
      ropeLayout: 'halves',
      attentionBias: { qkv: true, output: false },
      qkNorm: false,
      tieWordEmbeddings: true,
      eosTokenIds: [2],
      bosTokenId: null,
    });
    expect(d.defaulted).toContain('qwen2.vocab_size');
  });

  it('qwen3: q/k norm, explicit key_length, an output.weight means untied', () => {
    const kvs = archKvs('qwen3', [kv('qwen3.attention.key_length', T.u32, u32(4)), kv('qwen3.attention.value_length', T.u32, u32(4))]);
    const d = describeGgufModel(ggufModel(kvs, [t('token_embd.weight', [8, 3]), t('output.weight', [8, 3])]), F);
    expect(d).toMatchObject({ architecture: 'Qwen3ForCausalLM', headDim: 4, qkNorm: true, ropeLayout: 'halves', tieWordEmbeddings: false, attentionBias: { qkv: false, output: false } });
  });

  it('llama: pairs layout; rope_freqs.weight is llama3 scaling in llama.cpp\'s form; defaults for head_count_kv and freq_base', () => {
    const kvs = archKvs('llama', [], ['llama.attention.head_count_kv', 'llama.rope.freq_base']);
    const d = describeGgufModel(ggufModel(kvs, [t('token_embd.weight', [8, 3]), t('rope_freqs.weight', [1])]), F);
    expect(d).toMatchObject({ architecture: 'LlamaForCausalLM', ropeLayout: 'pairs', numKvHeads: 4, ropeTheta: 10000, ropeScaling: { type: 'freq-factors', tensor: 'rope_freqs.weight' } });
    expect(d.defaulted).toEqual(expect.arrayContaining(['llama.attention.head_count_kv', 'llama.rope.freq_base']));
  });

  it('the vocabulary comes from llama.vocab_size first, then the token list, then token_embd.weight', () => {
    const withSize = archKvs('llama', [kv('llama.vocab_size', T.u64, u64(5))]);
    expect(describeGgufModel(ggufModel(withSize), F).vocabSize).toBe(5);
    const noTokens = archKvs('llama', [], ['tokenizer.ggml.tokens']);
    expect(describeGgufModel(ggufModel(noTokens, [t('token_embd.weight', [8, 7])]), F).vocabSize).toBe(7);
    expectRejects(() => describeGgufModel(ggufModel(noTokens, [t('other', [1])]), F), ErrorCodes.BAD_HEADER, F, /the vocabulary size is unknown/);
  });

  it.each([
    ['an architecture outside the family (gemma)', archKvs('gemma'), ErrorCodes.UNSUPPORTED, /GGUF architecture gemma is not supported/],
    ['a MoE architecture (qwen3moe)', archKvs('qwen3moe'), ErrorCodes.UNSUPPORTED, /GGUF architecture qwen3moe is not supported/],
    ['no general.architecture', archKvs('llama', [], ['general.architecture']), ErrorCodes.BAD_HEADER, /general.architecture is missing/],
    ['no embedding_length', archKvs('llama', [], ['llama.embedding_length']), ErrorCodes.BAD_HEADER, /llama.embedding_length is missing/],
    ['no rms epsilon', archKvs('llama', [], ['llama.attention.layer_norm_rms_epsilon']), ErrorCodes.BAD_HEADER, /layer_norm_rms_epsilon is missing/],
    ['per-layer head counts', [...archKvs('llama', [], ['llama.attention.head_count_kv']), kv('llama.attention.head_count_kv', T.array, arr(T.u32, 2, u32(2), u32(1)))], ErrorCodes.UNSUPPORTED, /head_count_kv is a per-layer array/],
    ['partial rotary', archKvs('llama', [kv('llama.rope.dimension_count', T.u32, u32(1))]), ErrorCodes.UNSUPPORTED, /RoPE over 1 of 2 head dimensions/],
    ['linear rope scaling', archKvs('llama', [kv('llama.rope.scaling.type', T.string, str('linear'))]), ErrorCodes.UNSUPPORTED, /llama.rope.scaling.type "linear" is not supported/],
    ['a string where a count belongs', [...archKvs('llama', [], ['llama.block_count']), kv('llama.block_count', T.string, str('2'))], ErrorCodes.BAD_HEADER, /llama.block_count is a string, expected a number/],
    ['a zero block count', [...archKvs('llama', [], ['llama.block_count']), kv('llama.block_count', T.u32, u32(0))], ErrorCodes.BAD_DIMENSION, /llama.block_count is 0, outside 1\.\./],
    ['heads not a multiple of kv heads', [...archKvs('llama', [], ['llama.attention.head_count_kv']), kv('llama.attention.head_count_kv', T.u32, u32(3))], ErrorCodes.BAD_DIMENSION, /4 attention heads are not a multiple of 3/],
  ])('%s is refused', (_label, kvs, code, problem) => {
    expectRejects(() => describeGgufModel(ggufModel(kvs), F), code, F, problem);
  });
});
