import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { Llama2cCheckpoint } from '@ultrasketch/format';
import { type ModelConfig, headDim, kvDim, qDim, validateModelConfig } from './config.js';
import { type BiasKind, LINEAR_KINDS, type LinearKind, TensorNames } from './names.js';

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
      return [qDim(c), c.dim];
    case 'o':
      return [c.dim, qDim(c)];
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

/** The biases a config has, in a stable order: q, k, v (qkvBias), then o (oBias). */
export function biasKinds(c: ModelConfig): BiasKind[] {
  const out: BiasKind[] = c.qkvBias ? ['q', 'k', 'v'] : [];
  if (c.oBias) out.push('o');
  return out;
}

/** Length of each bias: the output width of its projection. */
export function biasLength(c: ModelConfig, kind: BiasKind): number {
  return linearShape(c, kind)[0];
}

/**
 * The tensors of decoder layer `layer`, with their shapes, in a stable order: the attention norm, the seven
 * linears, then (when the config has them) the attention biases and q/k norms, then the FFN norm. A llama2.c
 * config lists exactly what it always did. Streaming loaders take a model one layer at a time through this.
 */
export function layerTensors(c: ModelConfig, layer: number): Array<[string, number[]]> {
  const out: Array<[string, number[]]> = [[TensorNames.attnNorm(layer), [c.dim]]];
  for (const kind of LINEAR_KINDS) out.push([TensorNames.linear(layer, kind), linearShape(c, kind)]);
  for (const kind of biasKinds(c)) out.push([TensorNames.bias(layer, kind), [biasLength(c, kind)]]);
  if (c.qkNorm) {
    out.push([TensorNames.qNorm(layer), [headDim(c)]]);
    out.push([TensorNames.kNorm(layer), [headDim(c)]]);
  }
  out.push([TensorNames.ffnNorm(layer), [c.dim]]);
  return out;
}

/** Every tensor a Llama model with this config must have, with its shape, in a stable order. */
export function expectedTensors(c: ModelConfig): Array<[string, number[]]> {
  const out: Array<[string, number[]]> = [[TensorNames.embedding, [c.vocabSize, c.dim]]];
  for (let l = 0; l < c.nLayers; l++) out.push(...layerTensors(c, l));
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
