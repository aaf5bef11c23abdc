import type { Bundle } from '@ultrasketch/format';
import type { ModelConfig, ModelWeights } from '@ultrasketch/model';
import { type KernelChoice, NodeSession, sessionFromBundle } from '@ultrasketch/runtime-node';
import type { OpenedModel } from './usk.js';

/**
 * Running what `openModel` opened: a float checkpoint through runtime-node's dense kernels (wasm or js), a
 * `.usk` bundle through its codecs' fused kernels (`sessionFromBundle`: weights stay compressed). Nothing here
 * touches Node (runtime-node's kernels are WebAssembly): the browser entry shares it; `openReference` (files)
 * is in usk-files.ts.
 */

/** A reference model for KL / top-1: a checkpoint (weights only; it scores the evaluated model's tokens) or a bundle. */
export type ReferenceModel =
  | { kind: 'checkpoint'; config: ModelConfig; weights: ModelWeights; source: { path: string; format: string; fileBytes: number; sha256: string } }
  | { kind: 'bundle'; config: ModelConfig; bundle: Bundle; source: { path: string; format: 'usk'; fileBytes: number; sha256: string } };

export interface CreateSessionOptions {
  /** Dense kernels for a checkpoint ('auto' default). A bundle always runs its codecs' fused kernels. */
  kernels?: KernelChoice;
  /**
   * KV cache capacity in positions (default: the model's seq_len, capped at DEFAULT_CONTEXT_CAP). The cache
   * takes 2 × nLayers × nKvHeads × headDim × 4 bytes per position: Llama 3.2-1B's 131,072 positions would be
   * 8.6 GB, so callers pass what they need (generate: the steps; eval: the window).
   */
  contextLength?: number;
  /**
   * Threads computing the products (runtime-node splits the rows of large products across worker threads;
   * results are bit-identical to one thread). Default: ULTRASKETCH_THREADS, else 1.
   */
  threads?: number;
  /**
   * With threads: false splits every product above the size threshold instead of timing one thread against the
   * split per product shape (runtime-node's `threadAdaptive`; for measurements: bench/threads-speed.mjs
   * --split-all). Default true.
   */
  threadAdaptive?: boolean;
}

/**
 * The KV cache capacity a session gets when the caller does not say: the model's seq_len, but at most this
 * many positions (a 128k-context model would otherwise reserve gigabytes it never uses).
 */
export const DEFAULT_CONTEXT_CAP = 4096;

/** The KV cache capacity for a model: `wanted` (or seq_len, capped), never more than seq_len. */
export function sessionContextLength(config: ModelConfig, wanted?: number): number {
  return Math.max(1, Math.min(config.seqLen, wanted ?? Math.min(config.seqLen, DEFAULT_CONTEXT_CAP)));
}

/** A CPU session over an opened model or reference. */
export function createSession(model: OpenedModel | ReferenceModel, options: CreateSessionOptions = {}): NodeSession {
  const contextLength = sessionContextLength(model.config, options.contextLength);
  const threads = {
    ...(options.threads === undefined ? {} : { threads: options.threads }),
    ...(options.threadAdaptive === undefined ? {} : { threadAdaptive: options.threadAdaptive }),
  };
  if (model.kind === 'bundle') return sessionFromBundle(model.bundle, { source: model.source.path, contextLength, ...threads });
  return NodeSession.fromWeights(model.weights, { kernels: options.kernels ?? 'auto', contextLength, ...threads });
}

/** What `createSession` runs for a model, in words (reports). */
export function describeRuntime(model: OpenedModel | ReferenceModel, session: NodeSession): string {
  // once it has generated: whether a token ran as one compiled wasm call (runtime-node's decode program)
  const program = session.usesDecodeProgram ? ', tokens as a decode program' : '';
  return model.kind === 'bundle'
    ? `runtime-node, fused codec kernels (weights stay compressed)${program}`
    : `runtime-node, float32, ${session.kernels} kernels${program}`;
}
