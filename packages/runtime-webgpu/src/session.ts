import { type CodecParams, ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import type { Bundle } from '@ultrasketch/format';
import {
  type GenerateStep,
  LINEAR_KINDS,
  type LinearKind,
  type ModelConfig,
  type ModelWeights,
  Sampler,
  TensorNames,
  generateTokens,
  headDim,
  kvDim,
  ropeInverseFrequencies,
  linearShape,
  validateModelConfig,
  validateModelWeights,
} from '@ultrasketch/model';
import { type AdapterSummary, BufferUsage, GpuContext, type GpuContextOptions, MAP_READ } from './device.js';
import { WebGpuError } from './errors.js';
import { type GpuLinear, type KernelBuildContext, PREFILL_TILE, WORKGROUP, defaultLanes, scratchBuffer, setStepBuffer } from './linear.js';
import { ATTENTION, ATTENTION_SERIAL, ATTENTION_SERIAL_VEC4, RMSNORM, RMSNORM_SERIAL, ROPE_KV, SWIGLU } from './ops.js';
import { type Dispatch, type GpuProgram, PipelineCache, encodeDispatches, grid2d } from './program.js';
import { getGpuKernel, registerAllGpuKernels } from './registry.js';

/**
 * A WebGPU inference session: one model's parameters on the GPU (as their codecs store them), one KV cache,
 * the same interface as runtime-node's `NodeSession` except that `forward` is async:
 * `forward(tokens, {logits})`, streaming `generate`, `reset`, `dispose`.
 *
 * A forward call runs its tokens in chunks of at most `maxBatch` (one command buffer each, dispatches recorded
 * once when the session is built — only the Step uniform and the token ids are written per chunk) and reads
 * back only the logits asked for.
 */

export interface WebGpuSessionOptions extends GpuContextOptions {
  /** The WebGPU entry point: `navigator.gpu` in a browser, `create([])` from the `webgpu` package in Node. */
  gpu?: GPU | null;
  /** Share a device with other sessions instead of requesting one (the session then does not destroy it). */
  context?: GpuContext;
  /** KV cache capacity in tokens; defaults to the model's seq_len. */
  contextLength?: number;
  /** Most tokens per GPU pass (prefill chunk); default 128, lowered to fit the binding limit. */
  maxBatch?: number;
  /**
   * Workgroup memory (bytes) the sketch and hashednets kernels may fill with a matrix's states to serve many
   * rows from it; default: what the device allows less what the kernel needs for its reduction ('parallel'
   * shape), 0 = never (the 'serial' shape of software adapters).
   */
  residentStateBytes?: number;
  /** Compile every pipeline and run one token before returning (default true). */
  warmup?: boolean;
  /** Name of the model for messages (a path). */
  source?: string;
  /**
   * Kernel shapes: 'parallel' (hardware GPUs: 8 threads per weight row, workgroup reductions in RMSNorm and
   * attention) or 'serial' (software adapters such as SwiftShader, which run a workgroup barrier as a coroutine
   * switch: one thread per row, per (head, token), no barriers). Default: 'serial' on software adapters.
   */
  kernelShape?: 'parallel' | 'serial';
  /** Threads per row in the linear kernels (a power of two ≤ 64); default 8 ('parallel') or 1 ('serial'). */
  lanes?: number;
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

/** A weight as its codec stores it. */
export interface StoredWeight {
  codec: string;
  params: CodecParams;
}

/** Everything the GPU forward needs, independent of where it came from (dense weights or a bundle). */
export interface GpuModelSpec {
  config: ModelConfig;
  embedding: StoredWeight;
  /** null when the classifier is tied to the embedding. */
  classifier: StoredWeight | null;
  layers: Array<Record<LinearKind, StoredWeight>>;
  attnNorm: Float32Array[];
  ffnNorm: Float32Array[];
  finalNorm: Float32Array;
}

/** GPU memory the session holds, by kind (bytes). */
export interface SessionMemory {
  /** The codecs' parameters (+ the sketch's derived hash offsets): what the model costs on the GPU. */
  parameters: number;
  kvCache: number;
  /** Activations, logits, attention scores, readback. */
  scratch: number;
}

const DEFAULT_MAX_BATCH = 128;

/** Milliseconds from `performance.now()` (browsers, Node), without assuming DOM typings. */
function now(): number {
  const p = (globalThis as { performance?: { now(): number } }).performance;
  return p ? p.now() : Date.now();
}

export class WebGpuSession {
  readonly config: ModelConfig;
  /** Which adapter runs it (vendor, architecture, device, description; `software` for SwiftShader & co). */
  readonly adapter: AdapterSummary;
  readonly runtime = 'webgpu' as const;
  readonly maxBatch: number;
  /** Threads per row of the linear kernels. */
  readonly lanes: number;
  readonly kernelShape: 'parallel' | 'serial';
  readonly gpu: GpuContext;
  private readonly ownsContext: boolean;
  private readonly capacity: number;
  private readonly cache: PipelineCache;
  private readonly buffers: GPUBuffer[] = [];
  private readonly linears: GpuLinear[] = [];
  private dispatches: Dispatch[] = [];
  private step!: GPUBuffer;
  private tokens!: GPUBuffer;
  private logits!: GPUBuffer;
  private staging!: GPUBuffer;
  private length = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;
  private memoryUse: SessionMemory = { parameters: 0, kvCache: 0, scratch: 0 };

  private constructor(
    private readonly spec: GpuModelSpec,
    ctx: GpuContext,
    ownsContext: boolean,
    private readonly options: WebGpuSessionOptions,
  ) {
    this.config = spec.config;
    this.gpu = ctx;
    this.adapter = ctx.adapter;
    this.ownsContext = ownsContext;
    this.cache = PipelineCache.for(ctx.device);
    const c = spec.config;
    const cap = options.contextLength ?? c.seqLen;
    if (!Number.isInteger(cap) || cap < 1 || cap > c.seqLen) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `contextLength ${cap} must be in 1..${c.seqLen} (the model's seq_len)`);
    }
    this.capacity = cap;
    this.kernelShape = options.kernelShape ?? (ctx.adapter.software ? 'serial' : 'parallel');
    if (this.kernelShape !== 'parallel' && this.kernelShape !== 'serial') {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `kernelShape must be 'parallel' or 'serial', got ${String(this.kernelShape)}`);
    }
    this.lanes = options.lanes ?? defaultLanes(this.kernelShape === 'serial');
    const limit = ctx.limits.bindingBytes;
    const wanted = options.maxBatch ?? DEFAULT_MAX_BATCH;
    if (!Number.isInteger(wanted) || wanted < 1) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `maxBatch ${wanted} must be a positive integer`);
    const perToken = Math.max(c.vocabSize, c.nHeads * cap, c.hiddenDim, c.dim) * 4;
    this.maxBatch = Math.min(wanted, Math.floor(limit / perToken));
    if (this.maxBatch < 1) {
      throw new WebGpuError('limits', `one token's logits or attention scores (${perToken} bytes) exceed the binding limit of ${limit}`, {
        hint: 'use a shorter contextLength',
      });
    }
  }

  /** A session over dense float32 weights (every linear through the f32 kernel). */
  static async fromWeights(weights: ModelWeights, options: WebGpuSessionOptions): Promise<WebGpuSession> {
    validateModelWeights(weights, options.source);
    const c = weights.config;
    const dense = (name: string): StoredWeight => {
      const t = weights.tensors.get(name)!;
      return { codec: 'float', params: { rows: t.shape[0]!, cols: t.shape[1]!, options: { dtype: 'f32' }, data: t.data } as CodecParams };
    };
    const spec: GpuModelSpec = {
      config: c,
      embedding: dense(TensorNames.embedding),
      classifier: c.tiedClassifier ? null : dense(TensorNames.classifier),
      layers: Array.from({ length: c.nLayers }, (_, l) => {
        const rec = {} as Record<LinearKind, StoredWeight>;
        for (const kind of LINEAR_KINDS) rec[kind] = dense(TensorNames.linear(l, kind));
        return rec;
      }),
      attnNorm: Array.from({ length: c.nLayers }, (_, l) => weights.tensors.get(TensorNames.attnNorm(l))!.data),
      ffnNorm: Array.from({ length: c.nLayers }, (_, l) => weights.tensors.get(TensorNames.ffnNorm(l))!.data),
      finalNorm: weights.tensors.get(TensorNames.finalNorm)!.data,
    };
    return WebGpuSession.fromSpec(spec, options);
  }

  /** A session over a `.usk` bundle: each weight through its codec's WebGPU kernel. */
  static async fromBundle(bundle: Bundle, options: WebGpuSessionOptions): Promise<WebGpuSession> {
    return WebGpuSession.fromSpec(bundleSpec(bundle, options.source ?? '<bundle>'), options);
  }

  static async fromSpec(spec: GpuModelSpec, options: WebGpuSessionOptions): Promise<WebGpuSession> {
    registerAllGpuKernels();
    validateModelConfig(spec.config, options.source);
    refuseUnsupportedVariants(spec.config, options.source);
    const ctx = options.context ?? (await GpuContext.create(options.gpu, options));
    const owns = options.context === undefined;
    let session: WebGpuSession | undefined;
    try {
      session = new WebGpuSession(spec, ctx, owns, options);
      await ctx.guard('uploading the model', () => session!.build());
      await session.compile();
      if (options.warmup ?? true) await session.warmup();
      return session;
    } catch (err) {
      session?.release();
      if (owns) ctx.destroy();
      throw err;
    }
  }

  /** Number of positions currently in the context. */
  get position(): number {
    return this.length;
  }

  get contextLength(): number {
    return this.capacity;
  }

  /** GPU memory held, by kind. */
  memory(): SessionMemory {
    return { ...this.memoryUse };
  }

  /** Dispatches recorded for one forward chunk (row blocks of split weights add to it). */
  get dispatchCount(): number {
    return this.dispatches.length;
  }

  /** Distinct GPU programs this session runs (one pipeline each; shared with other sessions on the device). */
  programs(): GpuProgram[] {
    const seen = new Map<string, GpuProgram>();
    for (const d of this.dispatches) for (const p of d.programs ?? [d.program]) seen.set(p.cacheKey, p);
    return [...seen.values()];
  }

  /** Compile every pipeline (createComputePipelineAsync), then run one token and a two-token tile without
   * advancing the context, so the first real call pays no compilation or first-dispatch cost. */
  async warmup(): Promise<void> {
    await this.compile();
    const saved = this.length;
    try {
      if (saved + 1 <= this.capacity) await this.serialized(() => this.run([1], 'last'));
      this.length = saved;
      if (saved + 2 <= this.capacity) await this.serialized(() => this.run([1, 1], 'last'));
    } finally {
      this.length = saved;
    }
  }

  /**
   * Append `tokens` to the context and return logits: [vocab] for the last position (default), [n, vocab] with
   * logits 'all', an empty array with 'none'. The array is the caller's (a fresh one each call).
   */
  forward(tokens: ArrayLike<number>, options: { logits?: 'all' | 'last' | 'none' } = {}): Promise<Float32Array> {
    return this.serialized(() => this.run(Array.from(tokens), options.logits ?? 'last'));
  }

  /** Forget the context. */
  reset(): void {
    this.assertLive();
    this.length = 0;
  }

  /** Start a fresh context and stream generation steps (llama2.c's loop, `generateTokens`). */
  generate(prompt: readonly number[], options: SessionGenerateOptions): AsyncGenerator<GenerateStep> {
    this.reset();
    const picker = new Sampler({ temperature: options.temperature ?? 1, topP: options.topP ?? 0.9, seed: options.seed ?? 0 });
    const steps = Math.min(options.steps, this.capacity);
    return generateTokens((token) => this.forward([token]), prompt, {
      steps,
      picker,
      ...(options.stopToken === undefined ? {} : { stopToken: options.stopToken }),
    });
  }

  /** Free every GPU buffer (and the device when the session requested it). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.release();
    if (this.ownsContext) this.gpu.destroy();
  }

  // ---------------------------------------------------------------------------------------------- internals

  private assertLive(): void {
    if (this.disposed) throw new WebGpuError('disposed', 'WebGpuSession: used after dispose()');
    this.gpu.checkLive();
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private release(): void {
    for (const l of this.linears) l.dispose();
    for (const b of this.buffers) b.destroy();
    this.linears.length = 0;
    this.buffers.length = 0;
    this.dispatches = [];
  }

  private own(buf: GPUBuffer, kind: keyof SessionMemory): GPUBuffer {
    this.buffers.push(buf);
    this.memoryUse[kind] += buf.size;
    return buf;
  }

  private scratch(floats: number, label: string): GPUBuffer {
    return this.own(scratchBuffer(this.gpu, floats * 4, label), 'scratch');
  }

  private uniform(words: ArrayLike<number>, label: string): GPUBuffer {
    return this.own(this.gpu.uniform(Uint32Array.from(words), label), 'scratch');
  }

  /** Upload parameters, allocate scratch and cache, record every dispatch of the forward pass. */
  private build(): void {
    const c = this.config;
    const spec = this.spec;
    const g = this.gpu;
    const B = this.maxBatch;
    const dim = c.dim;
    const kv = kvDim(c);
    const hs = headDim(c);
    const hidden = c.hiddenDim;
    const cap = this.capacity;
    const source = this.options.source ?? '<model>';

    this.step = this.own(g.buffer(16, BufferUsage.UNIFORM | BufferUsage.COPY_DST, 'step'), 'scratch');
    this.tokens = this.own(g.buffer(B * 4, BufferUsage.STORAGE | BufferUsage.COPY_DST, 'tokens'), 'scratch');
    // Resident sketch states pay off on GPUs (workgroup memory is on-chip); on a software adapter workgroup
    // memory is ordinary memory, so the 'serial' shape reads states from the storage buffer by default.
    const wgBytes =
      this.options.residentStateBytes ??
      (this.kernelShape === 'serial' ? 0 : Math.max(0, g.limits.workgroupBytes - WORKGROUP * PREFILL_TILE * 4 - 256));
    const build = (name: string): KernelBuildContext => {
      const b: KernelBuildContext = { gpu: g, cache: this.cache, maxBatch: B, residentBytes: wgBytes, name, lanes: this.lanes };
      setStepBuffer(b, this.step);
      return b;
    };
    const kernel = (w: StoredWeight, name: string): GpuLinear => {
      const lin = getGpuKernel(w.codec, source)(w.params, build(name));
      this.linears.push(lin);
      this.memoryUse.parameters += lin.paramBytes;
      return lin;
    };

    // activations
    const x = this.scratch(B * dim, 'x');
    const xb = this.scratch(B * dim, 'xb');
    const q = this.scratch(B * dim, 'q');
    const k = this.scratch(B * kv, 'k');
    const v = this.scratch(B * kv, 'v');
    const att = this.scratch(B * dim, 'att');
    const h1 = this.scratch(B * hidden, 'h1');
    const h3 = this.scratch(B * hidden, 'h3');
    const xf = this.scratch(B * dim, 'xf');
    const scores = this.scratch(B * c.nHeads * cap, 'scores');
    this.logits = this.scratch(B * c.vocabSize, 'logits');
    this.staging = this.own(g.buffer(B * c.vocabSize * 4, BufferUsage.MAP_READ | BufferUsage.COPY_DST, 'logits.staging'), 'scratch');
    const rope = this.own(g.upload(ropeTable(c, cap), 'rope.cos_sin'), 'scratch');

    const d: Dispatch[] = [];
    const add = (program: GpuProgram, buffers: GPUBuffer[], grid: Dispatch['grid'], label: string) =>
      d.push({ program, bindGroup: this.cache.bindGroup(program, buffers, label), grid, label });

    // embedding
    const embedding = kernel(spec.embedding, TensorNames.embedding);
    if (!embedding.gatherable) {
      throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `the embedding's codec ${spec.embedding.codec} cannot serve as an embedding table on WebGPU`, {
        source,
      });
    }
    d.push(...embedding.recordGather({ tokens: this.tokens, y: x, label: 'embedding' }));

    const epsBits = new Uint32Array(new Float32Array([c.normEps]).buffer)[0]!;
    const normU = this.uniform([dim, 0, epsBits, 0], 'norm.rows');
    const finalNormU = this.uniform([dim, 1, epsBits, 0], 'norm.final');
    const ropeU = this.uniform([dim, kv, hs, c.ropeLayout === 'pairs' ? 1 : 0], 'rope');
    const scaleBits = new Uint32Array(new Float32Array([1 / Math.sqrt(hs)]).buffer)[0]!;
    const attU = this.uniform([dim, kv, hs, c.nHeads / c.nKvHeads, cap, c.nHeads, scaleBits, 0], 'attention');
    const gluGroups = Math.ceil((B * hidden) / WORKGROUP);
    const [gluX] = grid2d(gluGroups, g.limits.workgroupsPerDimension);
    const gluU = this.uniform([hidden, gluX, 0, 0], 'swiglu');
    const ropeGroups = Math.ceil(dim / 2 / WORKGROUP);
    const serial = this.kernelShape === 'serial';
    const norm = serial ? RMSNORM_SERIAL : RMSNORM;
    const normGrid = (rows: number): [number, number, number] => [serial ? Math.ceil(rows / WORKGROUP) : rows, 1, 1];
    const attention = serial ? (hs % 4 === 0 ? ATTENTION_SERIAL_VEC4 : ATTENTION_SERIAL) : ATTENTION;
    const attGrid = (n: number): [number, number, number] => (serial ? [Math.ceil((n * c.nHeads) / WORKGROUP), 1, 1] : [c.nHeads, n, 1]);

    for (let l = 0; l < c.nLayers; l++) {
      const lw = spec.layers[l]!;
      const lin = {} as Record<LinearKind, GpuLinear>;
      for (const kind of LINEAR_KINDS) {
        const name = TensorNames.linear(l, kind);
        const [rows, cols] = linearShape(c, kind);
        lin[kind] = kernel(lw[kind], name);
        if (lin[kind].outFeatures !== rows || lin[kind].inFeatures !== cols) {
          throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `weight ${name} is ${lin[kind].outFeatures}×${lin[kind].inFeatures}, the config needs ${rows}×${cols}`, {
            source,
          });
        }
      }
      const attnNorm = this.own(g.upload(spec.attnNorm[l]!, `layer${l}.attn_norm`), 'parameters');
      const ffnNorm = this.own(g.upload(spec.ffnNorm[l]!, `layer${l}.ffn_norm`), 'parameters');
      const kc = this.own(scratchBuffer(g, cap * kv * 4, `layer${l}.kcache`), 'kvCache');
      const vc = this.own(scratchBuffer(g, cap * kv * 4, `layer${l}.vcache`), 'kvCache');
      const L = `layer${l}`;

      add(norm, [this.step, normU, x, attnNorm, xb], normGrid, `${L}.attn_norm`);
      d.push(...lin.q.record({ x: xb, y: q, label: `${L}.q` }));
      d.push(...lin.k.record({ x: xb, y: k, label: `${L}.k` }));
      d.push(...lin.v.record({ x: xb, y: v, label: `${L}.v` }));
      add(ROPE_KV, [this.step, ropeU, q, k, v, kc, vc, rope], (n) => [ropeGroups, n, 1], `${L}.rope_kv`);
      add(attention, [this.step, attU, q, kc, vc, scores, att], attGrid, `${L}.attention`);
      d.push(...lin.o.record({ x: att, y: x, accumulate: true, label: `${L}.o` }));
      add(norm, [this.step, normU, x, ffnNorm, xb], normGrid, `${L}.ffn_norm`);
      d.push(...lin.gate.record({ x: xb, y: h1, label: `${L}.gate` }));
      d.push(...lin.up.record({ x: xb, y: h3, label: `${L}.up` }));
      add(SWIGLU, [this.step, gluU, h1, h3], (n) => {
        const groups = Math.ceil((n * hidden) / WORKGROUP);
        return [Math.min(groups, gluX), Math.ceil(groups / gluX), 1];
      }, `${L}.swiglu`);
      d.push(...lin.down.record({ x: h1, y: x, accumulate: true, label: `${L}.down` }));
    }

    const finalNorm = this.own(g.upload(spec.finalNorm, 'final_norm'), 'parameters');
    add(norm, [this.step, finalNormU, x, finalNorm, xf], (_n, rows) => normGrid(rows), 'final_norm');
    const classifier = spec.classifier ? kernel(spec.classifier, TensorNames.classifier) : embedding;
    if (classifier.outFeatures !== c.vocabSize || classifier.inFeatures !== dim) {
      throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `the classifier is ${classifier.outFeatures}×${classifier.inFeatures}, the config needs ${c.vocabSize}×${dim}`, {
        source,
      });
    }
    d.push(...classifier.record({ x: xf, y: this.logits, logitRows: true, label: 'classifier' }));
    this.dispatches = d;
  }

  private async compile(): Promise<void> {
    await Promise.all(this.programs().map((p) => this.cache.pipeline(p)));
  }

  /**
   * Time every dispatch of one forward call separately (each in its own submission, waited for): where the
   * time goes. Runs `tokens` at the current position without advancing the context. For measurements only.
   */
  async profile(tokens: number[]): Promise<Array<{ label: string; program: string; ms: number }>> {
    return this.serialized(async () => {
      const device = this.gpu.device;
      const m = tokens.length;
      if (m < 1 || m > this.maxBatch || this.length + m > this.capacity) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'profile: bad batch');
      device.queue.writeBuffer(this.step, 0, Uint32Array.of(m, this.length, 1, m - 1));
      device.queue.writeBuffer(this.tokens, 0, Uint32Array.from(tokens));
      const out: Array<{ label: string; program: string; ms: number }> = [];
      for (const d of this.dispatches) {
        const t0 = now();
        const encoder = device.createCommandEncoder();
        const pass = encoder.beginComputePass();
        const [program] = encodeDispatches(pass, this.cache, [d], m, 1);
        pass.end();
        if (!program) continue; // empty grid for this batch: nothing was encoded or submitted
        device.queue.submit([encoder.finish()]);
        await device.queue.onSubmittedWorkDone();
        out.push({ label: d.label ?? program.name, program: program.name, ms: now() - t0 });
      }
      return out;
    });
  }

  private async run(tokens: number[], mode: 'all' | 'last' | 'none'): Promise<Float32Array> {
    this.assertLive();
    const c = this.config;
    const n = tokens.length;
    const start = this.length;
    if (n === 0) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'forward() needs at least one token');
    if (mode !== 'all' && mode !== 'last' && mode !== 'none') {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `logits must be 'all', 'last' or 'none', got ${String(mode)}`);
    }
    if (start + n > this.capacity) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `positions ${start}..${start + n - 1} exceed the KV cache capacity ${this.capacity}`, {
        hint: `the context is limited to ${this.capacity} tokens; reset the session or shorten the input`,
      });
    }
    for (const t of tokens) {
      if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize) {
        throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `token id ${t} is outside 0..${c.vocabSize - 1}`);
      }
    }
    const vocab = c.vocabSize;
    const out = new Float32Array(mode === 'all' ? n * vocab : mode === 'last' ? vocab : 0);
    const B = this.maxBatch;
    const device = this.gpu.device;
    // The context is only extended once the whole call succeeded.
    this.length = start;
    for (let c0 = 0; c0 < n; c0 += B) {
      const m = Math.min(B, n - c0);
      const lastChunk = c0 + m === n;
      const logitRows = mode === 'all' ? m : mode === 'last' && lastChunk ? 1 : 0;
      await this.gpu.guard('running the forward pass', async () => {
        device.queue.writeBuffer(this.step, 0, Uint32Array.of(m, start + c0, logitRows, m - logitRows));
        device.queue.writeBuffer(this.tokens, 0, Uint32Array.from(tokens.slice(c0, c0 + m)));
        const encoder = device.createCommandEncoder({ label: 'forward' });
        const pass = encoder.beginComputePass({ label: 'forward' });
        encodeDispatches(pass, this.cache, this.dispatches, m, logitRows);
        pass.end();
        const bytes = logitRows * vocab * 4;
        if (bytes > 0) encoder.copyBufferToBuffer(this.logits, 0, this.staging, 0, bytes);
        device.queue.submit([encoder.finish()]);
        if (bytes > 0) {
          await this.staging.mapAsync(MAP_READ, 0, bytes);
          const rows = new Float32Array(this.staging.getMappedRange(0, bytes));
          out.set(rows, mode === 'all' ? c0 * vocab : 0);
          this.staging.unmap();
        }
      });
    }
    this.length = start + n;
    return out;
  }
}

/**
 * The Llama-family variants this runtime's WGSL programs do not compute (yet): biases on the attention
 * projections, Qwen3's per-head q/k norm, and a head width other than dim / nHeads (the q and attention buffers
 * and programs assume q is dim wide). Refused with UNSUPPORTED naming the feature, before any GPU work, rather
 * than run as another model. RoPE scaling is supported: it only changes the CPU-computed cos/sin table.
 */
export function refuseUnsupportedVariants(c: ModelConfig, source?: string): void {
  const features: string[] = [];
  if (c.qkvBias) features.push('q/k/v projection biases (qkvBias, Qwen2)');
  if (c.oBias) features.push('an output projection bias (oBias)');
  if (c.qkNorm) features.push('per-head q/k RMSNorm (qkNorm, Qwen3)');
  if (c.headDim !== undefined && c.headDim * c.nHeads !== c.dim) features.push(`headDim ${c.headDim} ≠ dim / nHeads (${c.dim} / ${c.nHeads})`);
  if (features.length === 0) return;
  throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `the WebGPU runtime does not implement ${features.join(', ')}`, {
    ...(source === undefined ? {} : { source }),
    hint: 'run this model with the CPU runtime (runtime-node), which implements every Llama-family variant',
  });
}

/**
 * cos/sin of every (position, frequency) pair, interleaved, computed as the reference forward does (f32 angles,
 * frequencies from the model package's `ropeInverseFrequencies`, so llama3 scaling and rope_freqs apply here too).
 */
export function ropeTable(c: ModelConfig, positions: number): Float32Array {
  const hs = headDim(c);
  const half = hs / 2;
  const out = new Float32Array(positions * half * 2);
  const f = Math.fround;
  const freqs = ropeInverseFrequencies(c);
  for (let i = 0; i < half; i++) {
    const freq = freqs[i]!;
    for (let pos = 0; pos < positions; pos++) {
      const angle = f(pos * freq);
      out[2 * (pos * half + i)] = Math.cos(angle);
      out[2 * (pos * half + i) + 1] = Math.sin(angle);
    }
  }
  return out;
}

/** The model of a bundle as stored weights, with every shape checked against its config. */
export function bundleSpec(bundle: Bundle, source: string): GpuModelSpec {
  const c = bundle.config as unknown as ModelConfig;
  if (c.architecture !== 'llama') {
    throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `model architecture ${JSON.stringify(c.architecture)} is not supported`, { source });
  }
  validateModelConfig(c, source);
  const weight = (name: string, rows: number, cols: number): StoredWeight => {
    const w = bundle.weights.get(name);
    if (!w) throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `weight ${name} is missing`, { source });
    if (w.entry.rows !== rows || w.entry.cols !== cols) {
      throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `weight ${name} is ${w.entry.rows}×${w.entry.cols}, the model config needs ${rows}×${cols}`, {
        source,
      });
    }
    return { codec: w.entry.codec, params: w.params };
  };
  const vector = (name: string) => {
    const v = bundle.vectors.get(name);
    if (!v || v.length !== c.dim) throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `vector ${name} of length ${c.dim} is missing`, { source });
    return v;
  };
  return {
    config: c,
    embedding: weight(TensorNames.embedding, c.vocabSize, c.dim),
    classifier: c.tiedClassifier ? null : weight(TensorNames.classifier, c.vocabSize, c.dim),
    layers: Array.from({ length: c.nLayers }, (_, l) => {
      const rec = {} as Record<LinearKind, StoredWeight>;
      for (const kind of LINEAR_KINDS) {
        const [rows, cols] = linearShape(c, kind);
        rec[kind] = weight(TensorNames.linear(l, kind), rows, cols);
      }
      return rec;
    }),
    attnNorm: Array.from({ length: c.nLayers }, (_, l) => vector(TensorNames.attnNorm(l))),
    ffnNorm: Array.from({ length: c.nLayers }, (_, l) => vector(TensorNames.ffnNorm(l))),
    finalNorm: vector(TensorNames.finalNorm),
  };
}
