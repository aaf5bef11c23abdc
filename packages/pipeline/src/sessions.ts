import type { Bundle } from '@ultrasketch/format';
import type { ModelConfig, ModelWeights } from '@ultrasketch/model';
import { type KernelChoice, NodeSession, sessionFromBundle } from '@ultrasketch/runtime-node';
import { loadCheckpointWeights } from './load.js';
import { looksLikeSafetensors } from './sniff.js';
import { type LoadBundleOptions, type OpenedModel, loadBundle } from './usk.js';

/**
 * Running what `openModel` opened: a float checkpoint through runtime-node's dense kernels (wasm or js), a
 * `.usk` bundle through its codecs' fused kernels (`sessionFromBundle`: weights stay compressed).
 */

/** A reference model for KL / top-1: a checkpoint (weights only; it scores the evaluated model's tokens) or a bundle. */
export type ReferenceModel =
  | { kind: 'checkpoint'; config: ModelConfig; weights: ModelWeights; source: { path: string; format: string; fileBytes: number; sha256: string } }
  | { kind: 'bundle'; config: ModelConfig; bundle: Bundle; source: { path: string; format: 'usk'; fileBytes: number; sha256: string } };

/** Open a reference model by content: a `.usk` bundle or a llama2.c checkpoint (no tokenizer needed). */
export function openReference(path: string, options: LoadBundleOptions = {}): ReferenceModel {
  if (looksLikeSafetensors(path)) {
    const loaded = loadBundle(path, options);
    return { kind: 'bundle', config: loaded.config, bundle: loaded.bundle, source: loaded.source };
  }
  const { weights, source } = loadCheckpointWeights(path);
  return { kind: 'checkpoint', config: weights.config, weights, source };
}

export interface CreateSessionOptions {
  /** Dense kernels for a checkpoint ('auto' default). A bundle always runs its codecs' fused kernels. */
  kernels?: KernelChoice;
}

/** A CPU session over an opened model or reference. */
export function createSession(model: OpenedModel | ReferenceModel, options: CreateSessionOptions = {}): NodeSession {
  if (model.kind === 'bundle') return sessionFromBundle(model.bundle, { source: model.source.path });
  return NodeSession.fromWeights(model.weights, { kernels: options.kernels ?? 'auto' });
}

/** What `createSession` runs for a model, in words (reports). */
export function describeRuntime(model: OpenedModel | ReferenceModel, session: NodeSession): string {
  return model.kind === 'bundle'
    ? 'runtime-node, fused codec kernels (weights stay compressed)'
    : `runtime-node, float32, ${session.kernels} kernels`;
}
