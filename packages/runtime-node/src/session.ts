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
import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { wasmSimdSupported } from './wasm/arena.js';
import { type WasmPartsOptions, wasmForwardParts } from './wasm/linear.js';

/**
 * Which kernels compute the linear layers:
 * - 'wasm': WebAssembly SIMD (f32x4) kernels over weights copied once into a wasm memory (fast);
 * - 'js': the model package's reference `DenseLinear` (plain JS loops over the caller's arrays, no copy);
 * - 'auto' (default): 'wasm' when the engine validates the SIMD module, else 'js' with a warning.
 */
export type KernelChoice = 'wasm' | 'js' | 'auto';

/** The `process.emitWarning` code used when 'auto' falls back to the JS kernels. */
export const WASM_FALLBACK_WARNING = 'ULTRASKETCH_WASM_SIMD_UNAVAILABLE';

export interface SessionOptions {
  /** KV cache capacity in tokens; defaults to the model's seq_len. */
  contextLength?: number;
}

export interface FromWeightsOptions extends SessionOptions {
  /** Kernel implementation for the linear layers; default 'auto'. */
  kernels?: KernelChoice;
  /** Options for the wasm arenas (only with wasm kernels). */
  wasm?: WasmPartsOptions;
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
  /** The kernels in use: 'wasm' or 'js' ('custom' when built from a caller's LlamaForward). */
  readonly kernels: 'wasm' | 'js' | 'custom';
  private readonly fwd: LlamaForward;
  private readonly cache: KVCache;
  private disposed = false;

  constructor(fwd: LlamaForward, options: SessionOptions & { kernels?: 'wasm' | 'js' | 'custom' } = {}) {
    this.fwd = fwd;
    this.kernels = options.kernels ?? 'custom';
    this.config = fwd.config;
    this.cache = fwd.createCache(options.contextLength ?? fwd.config.seqLen);
  }

  /**
   * A session over dense float32 weights. With wasm kernels the linear weights are copied once into wasm
   * memory (the caller's arrays are not referenced for them afterwards); with 'js' they are shared, not copied.
   */
  static fromWeights(weights: ModelWeights, options: FromWeightsOptions = {}): NodeSession {
    const choice = options.kernels ?? 'auto';
    if (choice !== 'wasm' && choice !== 'js' && choice !== 'auto') {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `kernels must be 'wasm', 'js' or 'auto', got '${String(choice)}'`);
    }
    let kernels: 'wasm' | 'js' = choice === 'js' ? 'js' : 'wasm';
    if (kernels === 'wasm' && !wasmSimdSupported()) {
      if (choice === 'wasm') {
        throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'this JavaScript engine does not support WebAssembly SIMD', {
          hint: "use kernels: 'js' (or 'auto' to fall back automatically)",
        });
      }
      process.emitWarning('WebAssembly SIMD is unavailable; using the slower JS kernels', {
        type: 'UltraSketchWarning',
        code: WASM_FALLBACK_WARNING,
      });
      kernels = 'js';
    }
    const fwd =
      kernels === 'wasm' ? new LlamaForward(wasmForwardParts(weights, options.wasm)) : LlamaForward.fromWeights(weights);
    return new NodeSession(fwd, { ...options, kernels });
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
