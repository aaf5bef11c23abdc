import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { LlamaFamilyArchitecture } from '@ultrasketch/format';

/** Llama 3.1's frequency-dependent RoPE scaling (Hugging Face `rope_scaling` with `rope_type: "llama3"`). */
export interface Llama3RopeScalingConfig {
  type: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/**
 * The same scaling as llama.cpp stores it (GGUF tensor `rope_freqs.weight`): one divisor per rotated
 * frequency, headDim/2 of them. Kept as numbers in the config (a bundle stores its config as JSON).
 */
export interface FreqFactorsRopeScalingConfig {
  type: 'freq-factors';
  factors: number[];
}

export type RopeScalingConfig = Llama3RopeScalingConfig | FreqFactorsRopeScalingConfig;

/**
 * Everything the Llama forward pass needs to know about a model, whatever file it came from.
 * `ropeLayout` says which elements RoPE rotates together: llama2.c rotates adjacent pairs (2i, 2i+1);
 * Hugging Face checkpoints rotate (i, i + headDim/2) ("rotate_half"), their q/k weights being permuted to match.
 *
 * The optional fields describe the rest of the Llama family (Llama 3, Mistral, Qwen2, Qwen3, SmolLM). Each is
 * absent in llama2.c configs and in bundles written before they existed, and absent means exactly what those
 * models do (headDim = dim / nHeads, no biases, no q/k norm, unscaled RoPE), so an old config means the same.
 */
export interface ModelConfig {
  architecture: 'llama';
  /** The source's architecture class (config.json `architectures[0]`), for reports; the forward never reads it. */
  sourceArchitecture?: LlamaFamilyArchitecture;
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  /** Longest context the model was trained for (and the KV cache's default capacity). */
  seqLen: number;
  normEps: number;
  ropeTheta: number;
  ropeLayout: 'pairs' | 'halves';
  /** True when the classifier reuses the token-embedding matrix. */
  tiedClassifier: boolean;
  /** Width of one attention head when it is not dim / nHeads (Qwen3: 128 with dim 1024 and 16 heads). */
  headDim?: number;
  /** Biases on the q, k and v projections (Qwen2; Llama with attention_bias). */
  qkvBias?: boolean;
  /** A bias on the output projection o (Llama with attention_bias). */
  oBias?: boolean;
  /** RMSNorm over each head of q and of k, with learned weights [headDim], before RoPE (Qwen3). */
  qkNorm?: boolean;
  /** Frequency scaling of RoPE (Llama 3.1+); absent or null: none. */
  ropeScaling?: RopeScalingConfig | null;
}

export function headDim(c: ModelConfig): number {
  return c.headDim ?? c.dim / c.nHeads;
}

/** Width of q (and of the attention output entering o_proj): nHeads × headDim. */
export function qDim(c: ModelConfig): number {
  return headDim(c) * c.nHeads;
}

export function kvDim(c: ModelConfig): number {
  return headDim(c) * c.nKvHeads;
}

/** Check a config's internal consistency; throws BAD_DIMENSION naming the field. */
export function validateModelConfig(c: ModelConfig, source = '<config>'): void {
  const fail = (problem: string): never => {
    throw new UltraSketchError(ErrorCodes.BAD_DIMENSION, problem, { source, hint: 'the model config is inconsistent' });
  };
  for (const key of ['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'vocabSize', 'seqLen'] as const) {
    const v = c[key];
    if (!Number.isInteger(v) || v <= 0) fail(`${key} = ${v} must be a positive integer`);
  }
  if (c.headDim === undefined) {
    if (c.dim % c.nHeads !== 0) fail(`dim ${c.dim} is not divisible by nHeads ${c.nHeads}`);
  } else if (!Number.isInteger(c.headDim) || c.headDim <= 0) {
    fail(`headDim = ${c.headDim} must be a positive integer`);
  }
  if (headDim(c) % 2 !== 0) fail(`head size ${headDim(c)} must be even for RoPE`);
  if (c.nHeads % c.nKvHeads !== 0) fail(`nKvHeads ${c.nKvHeads} does not divide nHeads ${c.nHeads}`);
  if (!(c.normEps > 0) || !Number.isFinite(c.normEps)) fail(`normEps ${c.normEps} must be positive`);
  if (!(c.ropeTheta > 0) || !Number.isFinite(c.ropeTheta)) fail(`ropeTheta ${c.ropeTheta} must be positive`);
  if (c.ropeLayout !== 'pairs' && c.ropeLayout !== 'halves') fail(`ropeLayout ${String(c.ropeLayout)} is unknown`);
  for (const key of ['qkvBias', 'oBias', 'qkNorm'] as const) {
    const v = c[key];
    if (v !== undefined && typeof v !== 'boolean') fail(`${key} = ${JSON.stringify(v)} must be true or false`);
  }
  const rs = c.ropeScaling;
  if (rs === undefined || rs === null) return;
  const positive = (what: string, v: unknown) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(`ropeScaling.${what} = ${JSON.stringify(v)} must be a positive number`);
  };
  if (rs.type === 'llama3') {
    positive('factor', rs.factor);
    positive('lowFreqFactor', rs.lowFreqFactor);
    positive('highFreqFactor', rs.highFreqFactor);
    positive('originalMaxPositionEmbeddings', rs.originalMaxPositionEmbeddings);
    // The scaling interpolates between the two wavelengths; equal factors would divide by zero.
    if (!(rs.highFreqFactor > rs.lowFreqFactor)) {
      fail(`ropeScaling.highFreqFactor ${rs.highFreqFactor} must exceed lowFreqFactor ${rs.lowFreqFactor}`);
    }
  } else if (rs.type === 'freq-factors') {
    const half = headDim(c) / 2;
    if (!Array.isArray(rs.factors) || rs.factors.length !== half) {
      fail(`ropeScaling.factors has ${Array.isArray(rs.factors) ? rs.factors.length : 'no'} values; RoPE over head size ${headDim(c)} needs ${half}`);
    }
    rs.factors.forEach((v, i) => positive(`factors[${i}]`, v));
  } else {
    fail(`ropeScaling type ${JSON.stringify((rs as { type?: unknown }).type)} is unknown (llama3 or freq-factors)`);
  }
}

/**
 * RoPE's inverse frequency of each rotated pair i < headDim/2, as float32 values.
 * Unscaled: 1 / theta^(2i/headDim), computed in float32 exactly as llama2.c does (the reference runs
 * reproduce llama2.c's logits to 1e-4, and at position 500 a float64 frequency already moves the angle by ~3e-5).
 * llama3 (transformers' `_compute_llama3_parameters`, Llama 3.1 paper): with wavelength w = 2π/f, frequencies
 * whose wavelength is shorter than originalMax/highFreqFactor are kept, longer than originalMax/lowFreqFactor
 * divided by `factor`, and in between blended: s = (originalMax/w − low)/(high − low), f' = (1 − s)·f/factor + s·f.
 * freq-factors (llama.cpp's `rope_freqs`): f' = f / factors[i].
 */
export function ropeInverseFrequencies(c: ModelConfig): Float32Array {
  const hs = headDim(c);
  const half = hs / 2;
  const f = Math.fround;
  const out = new Float32Array(half);
  const rs = c.ropeScaling ?? null;
  for (let i = 0; i < half; i++) {
    const base = f(1 / f(Math.pow(c.ropeTheta, f((2 * i) / hs))));
    if (rs === null) out[i] = base;
    else if (rs.type === 'freq-factors') out[i] = base / rs.factors[i]!;
    else {
      const wavelen = (2 * Math.PI) / base;
      const lowWavelen = rs.originalMaxPositionEmbeddings / rs.lowFreqFactor;
      const highWavelen = rs.originalMaxPositionEmbeddings / rs.highFreqFactor;
      if (wavelen < highWavelen) out[i] = base;
      else if (wavelen > lowWavelen) out[i] = base / rs.factor;
      else {
        const s = (rs.originalMaxPositionEmbeddings / wavelen - rs.lowFreqFactor) / (rs.highFreqFactor - rs.lowFreqFactor);
        out[i] = ((1 - s) * base) / rs.factor + s * base;
      }
    }
  }
  return out;
}
