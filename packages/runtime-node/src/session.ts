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
import { arenaModules } from './kernels/wasm-common.js';
import { FasterOf, ThreadPool, resolveThreads } from './threads.js';
import { type WasmArena, wasmSimdSupported } from './wasm/arena.js';
import { WasmAttention } from './wasm/attention.js';
import { type WasmPartsOptions, wasmForwardParts } from './wasm/linear.js';
import { type DecodeProgram, compileDecodeProgram } from './wasm/decode-program.js';

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
  /**
   * Threads computing the products (the calling thread included): rows of every large enough product are
   * split across worker threads over shared wasm memory; results are bit-identical to one thread. Default:
   * the environment's ULTRASKETCH_THREADS, else 1. Only wasm kernels use threads.
   */
  threads?: number;
  /** Products estimated below this many ns run on one thread (default DEFAULT_MIN_WORK_NS, threads.ts). */
  threadMinWorkNs?: number;
  /**
   * true (default): per product shape the pool times one thread against the split and keeps the faster
   * (ThreadPool.rows); false: split every product above threadMinWorkNs (tests, measurements).
   */
  threadAdaptive?: boolean;
  /**
   * true (default): a one-token step runs as a compiled decode program — the whole forward in one wasm call on
   * this thread (wasm/decode-program.ts) — when every part of the model can be described that way; same logits.
   * With threads > 1, tokens are timed through the program and through the forward with split products, and the
   * faster way kept. false: always the forward's own calls (tests compare the two).
   */
  decodeProgram?: boolean;
}

/** Bytes a session holds, by purpose (`NodeSession.memory()`). */
export interface SessionMemory {
  /** Weights as the kernels read them (wasm arenas, less their scratch) plus weight vectors/tables kept in JS. */
  weightsBytes: number;
  /** The part of weightsBytes in wasm memory. */
  wasmWeightsBytes: number;
  /** The part of weightsBytes in JS arrays (norm weights, biases, an untied float embedding table). */
  jsWeightsBytes: number;
  /** Keys and values of every layer for the cache's capacity. */
  kvCacheBytes: number;
  /** The wasm arenas' per-call scratch regions (inputs, outputs, tables), sized by the largest product so far. */
  scratchBytes: number;
  /** What the wasm memories have reserved in all (weights + scratch + growth headroom). */
  wasmReservedBytes: number;
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
  /** Threads that compute the products (1: the calling thread only). */
  readonly threads: number;
  private readonly fwd: LlamaForward;
  private readonly cache: KVCache;
  private readonly arenas: WasmArena[];
  private readonly jsWeightsBytes: number;
  private readonly pool: ThreadPool | undefined;
  private disposed = false;
  /**
   * The compiled decode plan and the logits it writes: undefined until the first one-token step asks for it; null
   * when the forward has no plan (a part without decode calls, a thread pool) or the option turned it off.
   */
  private program: { run: DecodeProgram; logits: Float32Array } | null | undefined;
  /** With a thread pool: a generated token through the program (first) or the pooled forward (second). */
  private readonly stepChoice = new FasterOf(0.05, 8);
  private programSteps = 0;
  private pooledSteps = 0;

  /**
   * `arenas`: the wasm arenas holding the forward's weights (for the memory report, and, when they are shared
   * memories, for worker threads); `jsWeightsBytes`: weight arrays the forward reads from JS.
   */
  constructor(
    fwd: LlamaForward,
    options: SessionOptions & { kernels?: 'wasm' | 'js' | 'custom'; arenas?: WasmArena[]; jsWeightsBytes?: number } = {},
  ) {
    this.fwd = fwd;
    this.kernels = options.kernels ?? 'custom';
    this.config = fwd.config;
    this.cache = fwd.createCache(options.contextLength ?? fwd.config.seqLen);
    this.arenas = options.arenas ?? [];
    this.jsWeightsBytes = options.jsWeightsBytes ?? normBytes(fwd.config);
    const threads = resolveThreads(options.threads);
    const shared = this.arenas.length > 0 && this.arenas.every((a) => a.shared);
    if (threads > 1 && shared) {
      // the attention kernel's memory too: its heads are split like a product's rows
      const att = fwd.parts.attention instanceof WasmAttention ? fwd.parts.attention : undefined;
      this.pool = new ThreadPool(
        [...this.arenas.map((arena) => ({ arena, modules: arenaModules(arena) })), ...(att ? [{ arena: att, modules: att.modules }] : [])],
        {
          threads,
          ...(options.threadMinWorkNs === undefined ? {} : { minWorkNs: options.threadMinWorkNs }),
          ...(options.threadAdaptive === undefined ? {} : { adaptive: options.threadAdaptive }),
        },
      );
    }
    this.threads = this.pool ? threads : 1;
    if (options.decodeProgram === false) this.program = null;
    // a session dropped without dispose() still stops its workers once it is garbage-collected
    if (this.pool) poolFinalizer?.register(this, this.pool, this);
  }

  /** Products split across threads and run on one thread so far (both 0 without a thread pool). */
  get threadStats(): { split: number; single: number } {
    return { split: this.pool?.splitCount ?? 0, single: this.pool?.singleCount ?? 0 };
  }

  /** Bytes held for weights, the KV cache and scratch (see SessionMemory). */
  memory(): SessionMemory {
    let wasmWeights = 0;
    let scratch = 0;
    let reserved = 0;
    for (const a of this.arenas) {
      // what the arena lent the attention kernel (KV cache, activations) is not weights: counted below
      wasmWeights += a.weightBytes;
      scratch += a.scratchBytesUsed + a.retiredScratchBytes;
      reserved += a.bytesReserved;
    }
    // the attention kernel's scratch (q, out, scores, the forward's activations) and memory (unless it is an
    // arena's, counted above); its KV cache is counted below
    const att = this.fwd.parts.attention;
    if (att instanceof WasmAttention) {
      scratch += att.scratchSize;
      if (!att.arena) reserved += att.reservedBytes;
    }
    const kv = this.cache.keys.reduce((n, k) => n + k.byteLength, 0) + this.cache.values.reduce((n, v) => n + v.byteLength, 0);
    return {
      weightsBytes: wasmWeights + this.jsWeightsBytes,
      wasmWeightsBytes: wasmWeights,
      jsWeightsBytes: this.jsWeightsBytes,
      kvCacheBytes: kv,
      scratchBytes: scratch,
      wasmReservedBytes: reserved,
    };
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
      // (A browser page has no process: the fallback is then silent, and `kernels` says which ran.)
      const warning = { type: 'UltraSketchWarning', code: WASM_FALLBACK_WARNING };
      if (typeof process !== 'undefined') process.emitWarning('WebAssembly SIMD is unavailable; using the slower JS kernels', warning);
      kernels = 'js';
    }
    if (kernels === 'js') {
      // the caller's arrays, shared: all of them are the session's weights
      let bytes = 0;
      for (const t of weights.tensors.values()) bytes += t.data.byteLength;
      return new NodeSession(LlamaForward.fromWeights(weights), { ...options, kernels, jsWeightsBytes: bytes });
    }
    // wasm: the linears live once, in the arena (a tied classifier is also the embedding table); a shared arena
    // (always, unless the caller asks otherwise with one thread): threads split its products, and the attention
    // kernel keeps the forward's activations in it, so the products read and write them in place
    const threads = resolveThreads(options.threads);
    const arenaOptions = { shared: true, ...options.wasm?.arena, ...(threads > 1 ? { shared: true } : {}) };
    const parts = wasmForwardParts(weights, { ...options.wasm, arena: arenaOptions });
    const fwd = new LlamaForward(parts);
    const c = weights.config;
    const jsWeightsBytes = normBytes(c) + (c.tiedClassifier ? 0 : c.vocabSize * c.dim * 4);
    return new NodeSession(fwd, { ...options, threads, kernels, arenas: parts.arenas, jsWeightsBytes });
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
    if (tokens.length === 1 && this.program !== null && !options.hooks && options.logits !== 'none') {
      // one token: the compiled decode program when there is one (an invalid token or a full context goes
      // through the forward below, which names the problem)
      const program = this.program ?? (this.program = this.compileProgram());
      const token = tokens[0]!;
      const pos = this.cache.length;
      if (program && Number.isInteger(token) && token >= 0 && token < this.config.vocabSize && pos < this.cache.capacity) {
        if (!this.pool) return this.programStep(program, pos, token);
        // with a thread pool, a token is timed both ways — the program on this thread, the forward with its
        // products split — and the faster kept (same logits either way): a small model's token is faster as one
        // call, a large model's products gain from the second core
        return this.stepChoice.run(
          () => this.programStep(program, pos, token),
          () => {
            this.pooledSteps++;
            return this.fwd.forward(tokens, this.cache, options);
          },
        );
      }
    }
    const pool = this.pool;
    if (!pool || tokens.length < 2) return this.fwd.forward(tokens, this.cache, options);
    // a prefill: its split products come back to back, so the workers spin between them instead of sleeping
    pool.batch(true);
    try {
      return this.fwd.forward(tokens, this.cache, options);
    } finally {
      pool.batch(false);
    }
  }

  /** Generated tokens (one-token steps) run through the decode program and through the pooled forward, so far. */
  get stepStats(): { program: number; pooled: number } {
    return { program: this.programSteps, pooled: this.pooledSteps };
  }

  /** Whether one-token steps can run as a compiled decode program (false until the first step has tried to build it). */
  get usesDecodeProgram(): boolean {
    return !!this.program;
  }

  /** One token at position `pos` through the compiled decode program; its logits. */
  private programStep(program: { run: DecodeProgram; logits: Float32Array }, pos: number, token: number): Float32Array {
    this.programSteps++;
    program.run(pos, token);
    this.cache.length = pos + 1;
    return program.logits;
  }

  private compileProgram(): { run: DecodeProgram; logits: Float32Array } | null {
    const plan = this.fwd.decodePlan(this.cache);
    return plan ? { run: compileDecodeProgram(plan.calls), logits: plan.logits } : null;
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

  /** Stop the worker threads (if any); the session cannot be used afterwards. */
  dispose(): void {
    this.disposed = true;
    if (this.pool) {
      poolFinalizer?.unregister(this);
      this.pool.dispose();
    }
  }

  private assertLive(): void {
    if (this.disposed) throw new Error('NodeSession: used after dispose()');
  }
}

const poolFinalizer =
  typeof FinalizationRegistry === 'function' ? new FinalizationRegistry<ThreadPool>((pool) => pool.dispose()) : undefined;

/** Bytes of the norm weights the forward reads from JS (attention/FFN norms per layer, the final norm). */
function normBytes(c: ModelConfig): number {
  return (2 * c.nLayers + 1) * c.dim * 4;
}
