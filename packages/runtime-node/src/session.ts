import {
  type ForwardHooks,
  type GenerateStep,
  type KVCache,
  LlamaForward,
  type ModelConfig,
  type ModelWeights,
  Sampler,
  generateTokens,
} from '@ultrasketch/model';

export interface SessionOptions {
  /** KV cache capacity in tokens; defaults to the model's seq_len. */
  contextLength?: number;
}

export interface SessionGenerateOptions {
  /** Total positions, prompt included (llama2.c's `steps`). */
  steps: number;
  /** 0 = greedy (argmax). Default 1. */
  temperature?: number;
  /** Nucleus sampling threshold in (0, 1]. Default 0.9. */
  topP?: number;
  seed?: number;
  /** Stop when this token is produced; default BOS (1) as llama2.c does; -1 never stops. */
  stopToken?: number;
}

/**
 * A CPU inference session: one model, one KV cache. `forward` appends tokens to the context and returns
 * logits; `generate` starts a fresh context and streams tokens. Weights are shared, never copied.
 */
export class NodeSession {
  readonly config: ModelConfig;
  private readonly fwd: LlamaForward;
  private readonly cache: KVCache;
  private disposed = false;

  constructor(fwd: LlamaForward, options: SessionOptions = {}) {
    this.fwd = fwd;
    this.config = fwd.config;
    this.cache = fwd.createCache(options.contextLength ?? fwd.config.seqLen);
  }

  static fromWeights(weights: ModelWeights, options: SessionOptions = {}): NodeSession {
    return new NodeSession(LlamaForward.fromWeights(weights), options);
  }

  /** Number of positions currently in the context. */
  get position(): number {
    return this.cache.length;
  }

  get contextLength(): number {
    return this.cache.capacity;
  }

  /**
   * Append `tokens` to the context and return logits ([vocab] for the last position by default,
   * [n, vocab] with logits: 'all'). The array is reused by the next call.
   */
  forward(tokens: ArrayLike<number>, options: { logits?: 'all' | 'last' | 'none'; hooks?: ForwardHooks } = {}): Float32Array {
    this.assertLive();
    return this.fwd.forward(tokens, this.cache, options);
  }

  /** Forget the context. */
  reset(): void {
    this.assertLive();
    this.cache.reset();
  }

  /** Start a fresh context and stream generation steps (see `generateTokens`). */
  generate(prompt: readonly number[], options: SessionGenerateOptions): AsyncGenerator<GenerateStep> {
    this.reset();
    const picker = new Sampler({
      temperature: options.temperature ?? 1,
      topP: options.topP ?? 0.9,
      seed: options.seed ?? 0,
    });
    const steps = Math.min(options.steps, this.cache.capacity);
    return generateTokens((token) => this.forward([token]), prompt, {
      steps,
      picker,
      ...(options.stopToken === undefined ? {} : { stopToken: options.stopToken }),
    });
  }

  dispose(): void {
    this.disposed = true;
  }

  private assertLive(): void {
    if (this.disposed) throw new Error('NodeSession: used after dispose()');
  }
}
