import { readFileSync } from 'node:fs';
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { describeGgufModel, describeHfConfig, readGguf, readSafetensors, type ModelDescription } from '@ultrasketch/format';
import { describe, expect, it } from 'vitest';
import {
  type TensorSource,
  configFromDescription,
  ggufFileSource,
  ggufTensorName,
  layerTensors,
  loadLayer,
  loadModelWeights,
  safetensorsSource,
} from '../src/index.js';
import { bytes, caught, shared } from './helpers.js';

/** Loading real checkpoints against configs that do not describe them: typed errors naming the tensor and the field. */

const HF = 'models/stories260K/hf';
const hfConfig = JSON.parse(readFileSync(shared(`${HF}/config.json`), 'utf8')) as Record<string, unknown>;
const hfFile = readSafetensors(bytes(`${HF}/model.safetensors`));
const GGUF = 'models/stories260K/gguf/stories260K-f32.gguf';
const ggufFile = readGguf(bytes(GGUF));

function hfLoad(edit: Record<string, unknown>, src: TensorSource = safetensorsSource(hfFile.tensors, HF)) {
  return loadModelWeights(configFromDescription(describeHfConfig({ ...hfConfig, ...edit })), src);
}

/** A source with some tensors hidden or added (tests only: the real sources come from files). */
function edited(src: TensorSource, hide: string[], add: Record<string, { shape: number[]; data: Float32Array }> = {}): TensorSource {
  return {
    naming: src.naming,
    source: src.source,
    names: () => [...[...src.names()].filter((n) => !hide.includes(n)), ...Object.keys(add)],
    shape: (n) => (hide.includes(n) ? undefined : (add[n]?.shape ?? src.shape(n))),
    read: (n) => add[n]?.data ?? src.read(n),
  };
}

describe('configs that disagree with the tensors', () => {
  it('the unedited config loads', () => {
    expect(hfLoad({}).tensors.size).toBe(47);
  });

  it('num_key_value_heads 8 (file has 4): SHAPE_MISMATCH naming k_proj and nKvHeads', () => {
    const err = caught(() => hfLoad({ num_key_value_heads: 8 }));
    expect(err.code).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(err.problem).toContain('model.layers.0.self_attn.k_proj.weight');
    expect(err.problem).toContain('nKvHeads');
  });

  it('intermediate_size 100: SHAPE_MISMATCH naming gate_proj and hiddenDim', () => {
    const err = caught(() => hfLoad({ intermediate_size: 100 }));
    expect(err.code).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(err.problem).toMatch(/gate_proj\.weight is \[172, 64\].*hiddenDim is 100/);
  });

  it('head_dim 16 with 8 heads (q would be 128 wide): SHAPE_MISMATCH naming q_proj and nHeads × headDim', () => {
    const err = caught(() => hfLoad({ head_dim: 16 }));
    expect(err.code).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(err.problem).toMatch(/q_proj\.weight.*nHeads × headDim/);
  });

  it('num_hidden_layers 4 (file has 5): a layer the config does not have is refused, naming the tensor and nLayers', () => {
    const err = caught(() => hfLoad({ num_hidden_layers: 4 }));
    expect(err.code).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(err.problem).toMatch(/model\.layers\.4\..* nLayers is 4/);
  });

  it('num_hidden_layers 6: MISSING_TENSOR naming the first tensor of layer 5', () => {
    const err = caught(() => hfLoad({ num_hidden_layers: 6 }));
    expect(err.code).toBe(ErrorCodes.MISSING_TENSOR);
    expect(err.problem).toContain('model.layers.5.input_layernorm.weight');
  });

  it('tie_word_embeddings false: MISSING_TENSOR lm_head.weight', () => {
    const err = caught(() => hfLoad({ tie_word_embeddings: false }));
    expect(err.code).toBe(ErrorCodes.MISSING_TENSOR);
    expect(err.problem).toContain('lm_head.weight');
  });

  it('a Qwen2 config (q/k/v biases) over Llama weights: MISSING_TENSOR q_proj.bias', () => {
    const err = caught(() => hfLoad({ architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' }));
    expect(err.code).toBe(ErrorCodes.MISSING_TENSOR);
    expect(err.problem).toContain('model.layers.0.self_attn.q_proj.bias');
  });

  it('biases or q/k norms in the file that the config lacks are refused, naming the tensor and the field', () => {
    const bias = { 'model.layers.3.self_attn.k_proj.bias': { shape: [32], data: new Float32Array(32) } };
    let err = caught(() => hfLoad({}, edited(safetensorsSource(hfFile.tensors, HF), [], bias)));
    expect(err.code).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(err.problem).toMatch(/k_proj\.bias.*qkvBias is false/);
    const norm = { 'model.layers.0.self_attn.q_norm.weight': { shape: [8], data: new Float32Array(8) } };
    err = caught(() => hfLoad({}, edited(safetensorsSource(hfFile.tensors, HF), [], norm)));
    expect(err.problem).toMatch(/q_norm\.weight.*qkNorm is false/);
  });

  it('a stored lm_head next to a tied classifier is ignored (transformers ties it)', () => {
    const e = hfFile.tensors.get('model.embed_tokens.weight')!;
    const lm = { 'lm_head.weight': { shape: [512, 64], data: new Float32Array(512 * 64) } };
    const w = hfLoad({}, edited(safetensorsSource(hfFile.tensors, HF), [], lm));
    expect(w.tensors.has('lm_head.weight')).toBe(false);
    expect(e.shape).toEqual([512, 64]);
  });

  it('a NaN weight: NOT_FINITE naming the tensor', () => {
    const src = safetensorsSource(hfFile.tensors, HF);
    const bad = src.read('model.layers.1.mlp.up_proj.weight');
    bad[7] = Number.NaN;
    const err = caught(() => hfLoad({}, edited(src, [], { 'model.layers.1.mlp.up_proj.weight': { shape: [172, 64], data: bad } })));
    expect(err.code).toBe(ErrorCodes.NOT_FINITE);
    expect(err.problem).toContain('model.layers.1.mlp.up_proj.weight');
  });
});

describe('GGUF names', () => {
  const src = ggufFileSource(ggufFile, GGUF);
  const config = configFromDescription(describeGgufModel(ggufFile));

  it('maps canonical names to llama.cpp names', () => {
    expect(ggufTensorName('model.embed_tokens.weight')).toBe('token_embd.weight');
    expect(ggufTensorName('lm_head.weight')).toBe('output.weight');
    expect(ggufTensorName('model.norm.weight')).toBe('output_norm.weight');
    expect(ggufTensorName('model.layers.3.self_attn.o_proj.weight')).toBe('blk.3.attn_output.weight');
    expect(ggufTensorName('model.layers.0.self_attn.q_proj.bias')).toBe('blk.0.attn_q.bias');
    expect(ggufTensorName('model.layers.2.self_attn.k_norm.weight')).toBe('blk.2.attn_k_norm.weight');
    expect(ggufTensorName('model.layers.1.post_attention_layernorm.weight')).toBe('blk.1.ffn_norm.weight');
    expect(() => ggufTensorName('model.layers.1.mlp.experts.0.weight')).toThrow(UltraSketchError);
  });

  it('a missing GGUF tensor: MISSING_TENSOR naming its GGUF and canonical names', () => {
    const err = caught(() => loadModelWeights(config, edited(src, ['blk.2.ffn_up.weight'])));
    expect(err.code).toBe(ErrorCodes.MISSING_TENSOR);
    expect(err.problem).toContain('blk.2.ffn_up.weight (model.layers.2.mlp.up_proj.weight)');
  });

  it('loadLayer gives one layer, the same tensors loadModelWeights gives', () => {
    const all = loadModelWeights(config, src);
    const layer = loadLayer(config, src, 3);
    expect([...layer.keys()]).toEqual(layerTensors(config, 3).map(([n]) => n));
    for (const [name, t] of layer) expect(t.data).toEqual(all.tensors.get(name)!.data);
  });
});

describe('configFromDescription', () => {
  const desc = describeHfConfig(hfConfig);

  it('a llama2.c-like description gives no optional fields beyond the source architecture', () => {
    const c = configFromDescription(desc);
    expect(Object.keys(c).sort()).toEqual(
      ['architecture', 'dim', 'hiddenDim', 'nHeads', 'nKvHeads', 'nLayers', 'normEps', 'ropeLayout', 'ropeTheta', 'seqLen', 'sourceArchitecture', 'tiedClassifier', 'vocabSize'].sort(),
    );
  });

  it('GGUF rope_freqs: the divisors are read into the config; without a reader it is a BAD_ARGUMENT', () => {
    const d: ModelDescription = { ...desc, ropeScaling: { type: 'freq-factors', tensor: 'rope_freqs.weight' } };
    expect(caught(() => configFromDescription(d)).code).toBe(ErrorCodes.BAD_ARGUMENT);
    const c = configFromDescription(d, { readTensor: () => Float32Array.of(1, 2, 4, 8) });
    expect(c.ropeScaling).toEqual({ type: 'freq-factors', factors: [1, 2, 4, 8] });
    expect(caught(() => configFromDescription(d, { readTensor: () => Float32Array.of(1, 2) })).code).toBe(ErrorCodes.SHAPE_MISMATCH);
    expect(caught(() => configFromDescription(d, { readTensor: () => Float32Array.of(1, 0, 4, 8) })).code).toBe(ErrorCodes.NOT_FINITE);
  });

  it("Mistral's sliding window caps the context, where full attention is still exact", () => {
    const c = configFromDescription({ ...desc, architecture: 'MistralForCausalLM', maxPositionEmbeddings: 32768, slidingWindow: 4096 });
    expect(c.seqLen).toBe(4096);
  });

  it('Qwen3-shaped description: headDim, qkNorm, llama3 scaling carried over', () => {
    const c = configFromDescription({
      ...desc,
      architecture: 'Qwen3ForCausalLM',
      hiddenSize: 64,
      numHeads: 2,
      numKvHeads: 1,
      headDim: 16,
      qkNorm: true,
      attentionBias: { qkv: true, output: false },
      ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
    });
    expect(c).toMatchObject({ headDim: 16, qkNorm: true, qkvBias: true, ropeScaling: { type: 'llama3', factor: 32 } });
    expect(c.oBias).toBeUndefined();
  });
});
