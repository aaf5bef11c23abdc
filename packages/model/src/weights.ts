import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { Llama2cCheckpoint } from '@ultrasketch/format';
import { type ModelConfig, kvDim, validateModelConfig } from './config.js';
import { LINEAR_KINDS, type LinearKind, TensorNames } from './names.js';

/** A dense float32 tensor, row-major. */
export interface Tensor {
  shape: number[];
  data: Float32Array;
}

/** A model's config and its float tensors under canonical (Hugging Face) names. */
export interface ModelWeights {
  config: ModelConfig;
  tensors: Map<string, Tensor>;
}

/** [out, in] of each linear kind. */
export function linearShape(c: ModelConfig, kind: LinearKind): [number, number] {
  switch (kind) {
    case 'q':
    case 'o':
      return [c.dim, c.dim];
    case 'k':
    case 'v':
      return [kvDim(c), c.dim];
    case 'gate':
    case 'up':
      return [c.hiddenDim, c.dim];
    case 'down':
      return [c.dim, c.hiddenDim];
  }
}

/** Every tensor a Llama model with this config must have, with its shape, in a stable order. */
export function expectedTensors(c: ModelConfig): Array<[string, number[]]> {
  const out: Array<[string, number[]]> = [[TensorNames.embedding, [c.vocabSize, c.dim]]];
  for (let l = 0; l < c.nLayers; l++) {
    out.push([TensorNames.attnNorm(l), [c.dim]]);
    for (const kind of LINEAR_KINDS) out.push([TensorNames.linear(l, kind), linearShape(c, kind)]);
    out.push([TensorNames.ffnNorm(l), [c.dim]]);
  }
  out.push([TensorNames.finalNorm, [c.dim]]);
  if (!c.tiedClassifier) out.push([TensorNames.classifier, [c.vocabSize, c.dim]]);
  return out;
}

/** Total parameter count (a tied classifier is counted once). */
export function parameterCount(c: ModelConfig): number {
  return expectedTensors(c).reduce((sum, [, shape]) => sum + shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * Check that every expected tensor is present with the right shape and only finite values.
 * NaN or Inf weights would silently poison every output; we refuse them at load time.
 */
export function validateModelWeights(w: ModelWeights, source = '<model>'): void {
  validateModelConfig(w.config, source);
  for (const [name, shape] of expectedTensors(w.config)) {
    const t = w.tensors.get(name);
    if (!t) {
      throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `tensor ${name} is missing`, {
        source,
        hint: 'the checkpoint is incomplete or not a Llama-family model',
      });
    }
    const numel = shape.reduce((a, b) => a * b, 1);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]) || t.data.length !== numel) {
      throw new UltraSketchError(
        ErrorCodes.SHAPE_MISMATCH,
        `tensor ${name} has shape [${t.shape}] (${t.data.length} values), expected [${shape}]`,
        { source, hint: 'the checkpoint does not match its config' },
      );
    }
    const bad = firstNonFinite(t.data);
    if (bad >= 0) {
      throw new UltraSketchError(
        ErrorCodes.NOT_FINITE,
        `tensor ${name} has a non-finite value (${t.data[bad]}) at index ${bad}`,
        { source, hint: 'the checkpoint is corrupt or was saved after a diverged training run' },
      );
    }
  }
}

function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) {
    // x - x is NaN exactly when x is NaN or ±Inf; cheaper than Number.isFinite in a hot loop.
    if (a[i]! - a[i]! !== 0) return i;
  }
  return -1;
}

/** Map a llama2.c checkpoint (either layout) to canonical names. llama2.c models use pair-wise RoPE. */
export function modelFromLlama2c(ckpt: Llama2cCheckpoint, source = '<checkpoint>'): ModelWeights {
  const c = ckpt.config;
  const config: ModelConfig = {
    architecture: 'llama',
    dim: c.dim,
    hiddenDim: c.hiddenDim,
    nLayers: c.nLayers,
    nHeads: c.nHeads,
    nKvHeads: c.nKvHeads,
    vocabSize: c.vocabSize,
    seqLen: c.seqLen,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeLayout: 'pairs',
    tiedClassifier: c.sharedClassifier,
  };
  const w = ckpt.weights;
  const tensors = new Map<string, Tensor>();
  const put = (name: string, shape: number[], data: Float32Array) => tensors.set(name, { shape, data });
  put(TensorNames.embedding, [c.vocabSize, c.dim], w.tokenEmbedding);
  const byKind: Record<LinearKind, Float32Array[]> = {
    q: w.wq,
    k: w.wk,
    v: w.wv,
    o: w.wo,
    gate: w.w1,
    up: w.w3,
    down: w.w2,
  };
  for (let l = 0; l < c.nLayers; l++) {
    put(TensorNames.attnNorm(l), [c.dim], w.rmsAtt[l]!);
    put(TensorNames.ffnNorm(l), [c.dim], w.rmsFfn[l]!);
    for (const kind of LINEAR_KINDS) put(TensorNames.linear(l, kind), linearShape(config, kind), byKind[kind][l]!);
  }
  put(TensorNames.finalNorm, [c.dim], w.rmsFinal);
  if (w.classifier) put(TensorNames.classifier, [c.vocabSize, c.dim], w.classifier);
  const weights = { config, tensors };
  validateModelWeights(weights, source);
  return weights;
}
