/**
 * Tiny Hugging Face model directories written for tests: a config.json with the keys transformers writes, a
 * model.safetensors written by the format package's writer, and a byte-level BPE tokenizer.json (GPT-2's
 * byte-to-character table, no merges) — the layout of a real Qwen2 / Llama 3 download, at a size a test can run.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors } from '@ultrasketch/format';
import type { ModelConfig, ModelWeights } from '@ultrasketch/model';

/** GPT-2's byte → printable character table (bytes_to_unicode, openai/gpt-2 encoder.py). */
export function byteLevelAlphabet(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  return out;
}

export interface ByteTokenizerOptions {
  /** A BOS token added after the 256 bytes (Llama 3 style); none: no BOS (Qwen style). */
  bos?: string;
  eos: string;
}

/**
 * A byte-level BPE tokenizer.json: ids 0..255 are the bytes (id = byte value), then the special tokens (EOS, then
 * BOS when given), matched whole. Returns the JSON, its tokenizer_config.json and the special ids.
 */
export function byteLevelTokenizer(o: ByteTokenizerOptions): { json: unknown; config: unknown; eosId: number; bosId: number | null; size: number } {
  const alphabet = byteLevelAlphabet();
  const vocab: Record<string, number> = {};
  alphabet.forEach((c, b) => (vocab[c] = b));
  const specials = [o.eos, ...(o.bos ? [o.bos] : [])];
  specials.forEach((t, i) => (vocab[t] = 256 + i));
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((t, i) => ({ id: 256 + i, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
  };
  const config = { tokenizer_class: 'PreTrainedTokenizerFast', bos_token: o.bos ?? null, eos_token: o.eos, model_max_length: 32 };
  return { json, config, eosId: 256, bosId: o.bos ? 257 : null, size: 256 + specials.length };
}

/** transformers' config.json for a Llama-family ModelConfig. */
export function hfConfigJson(c: ModelConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const arch = c.sourceArchitecture ?? 'LlamaForCausalLM';
  const modelType = { LlamaForCausalLM: 'llama', MistralForCausalLM: 'mistral', Qwen2ForCausalLM: 'qwen2', Qwen3ForCausalLM: 'qwen3' }[arch];
  const out: Record<string, unknown> = {
    architectures: [arch],
    model_type: modelType,
    hidden_size: c.dim,
    intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers,
    num_attention_heads: c.nHeads,
    num_key_value_heads: c.nKvHeads,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.seqLen,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    hidden_act: 'silu',
    tie_word_embeddings: c.tiedClassifier,
    torch_dtype: 'float32',
    ...extra,
  };
  if (c.headDim !== undefined) out.head_dim = c.headDim;
  if (arch === 'LlamaForCausalLM') out.attention_bias = c.qkvBias === true;
  if (arch === 'Qwen3ForCausalLM') out.attention_bias = false;
  if (c.ropeScaling?.type === 'llama3') {
    const r = c.ropeScaling;
    out.rope_scaling = { rope_type: 'llama3', factor: r.factor, low_freq_factor: r.lowFreqFactor, high_freq_factor: r.highFreqFactor, original_max_position_embeddings: r.originalMaxPositionEmbeddings };
  }
  return out;
}

/** Write `weights` (canonical names = Hugging Face names) as an HF directory with the given tokenizer. */
export function writeHfDirectory(
  dir: string,
  weights: ModelWeights,
  tokenizer: ReturnType<typeof byteLevelTokenizer>,
  options: { dtype?: 'F32' | 'BF16'; configExtra?: Record<string, unknown> } = {},
): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify(hfConfigJson(weights.config, { eos_token_id: tokenizer.eosId, ...(tokenizer.bosId === null ? {} : { bos_token_id: tokenizer.bosId }), ...options.configExtra }), null, 2),
  );
  const dtype = options.dtype ?? 'F32';
  const tensors = [...weights.tensors].map(([name, t]) => ({ name, dtype, shape: t.shape, data: dtype === 'F32' ? t.data : toBf16(t.data) }));
  writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(tensors, { format: 'pt' }));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer.json));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizer.config));
}

/** float32 → bfloat16 bits, round to nearest even (the top 16 bits of the float32). */
export function toBf16(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = u[i]!;
    out[i] = (v + 0x7fff + ((v >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** bfloat16 bits → float32 values (what a reader must get back from a BF16 file). */
export function fromBf16(b: Uint16Array): Float32Array {
  const out = new Float32Array(b.length);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < b.length; i++) u[i] = b[i]! << 16;
  return out;
}
