import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';

/**
 * Everything the Llama forward pass needs to know about a model, whatever file it came from.
 * `ropeLayout` says which elements RoPE rotates together: llama2.c rotates adjacent pairs (2i, 2i+1);
 * Hugging Face checkpoints rotate (i, i + headDim/2) ("rotate_half"), their q/k weights being permuted to match.
 */
export interface ModelConfig {
  architecture: 'llama';
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
}

export function headDim(c: ModelConfig): number {
  return c.dim / c.nHeads;
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
  if (c.dim % c.nHeads !== 0) fail(`dim ${c.dim} is not divisible by nHeads ${c.nHeads}`);
  if (headDim(c) % 2 !== 0) fail(`head size ${headDim(c)} must be even for RoPE`);
  if (c.nHeads % c.nKvHeads !== 0) fail(`nKvHeads ${c.nKvHeads} does not divide nHeads ${c.nHeads}`);
  if (!(c.normEps > 0) || !Number.isFinite(c.normEps)) fail(`normEps ${c.normEps} must be positive`);
  if (!(c.ropeTheta > 0) || !Number.isFinite(c.ropeTheta)) fail(`ropeTheta ${c.ropeTheta} must be positive`);
  if (c.ropeLayout !== 'pairs' && c.ropeLayout !== 'halves') fail(`ropeLayout ${String(c.ropeLayout)} is unknown`);
}
