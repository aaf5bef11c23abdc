import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type ModelConfig, headDim, kvDim, qDim, ropeInverseFrequencies, validateModelConfig } from './config.js';
import { DenseLinear, type Linear, dotRow } from './linear.js';
import { type DecodeCall, type DecodeGlue } from './decode-plan.js';
import { type BiasKind, LINEAR_KINDS, type LinearKind, TensorNames } from './names.js';
import { type ModelWeights, biasKinds, validateModelWeights } from './weights.js';

/**
 * The Llama decoder forward pass in float32, written to match llama2.c's `forward()` step for step
 * (RMSNorm → attention with RoPE and grouped KV heads → residual → RMSNorm → SwiGLU → residual; final norm;
 * classifier). The family's variants are steps the config switches on: q/k/v (and o) biases added after the
 * projections (Qwen2), an RMSNorm over each head of q and k before RoPE (Qwen3), a head width other than
 * dim / nHeads (q is nHeads × headDim wide), and scaled RoPE frequencies (Llama 3.1+). It processes a batch of consecutive positions at once (prefill) or one at a time
 * (generation) against a KV cache; results are identical either way up to float rounding.
 *
 * Linear layers are pluggable (`Linear`), so compressed runtimes reuse this exact pass.
 */

export type LayerLinears = Record<LinearKind, Linear>;

/** Token embedding lookup; compressed runtimes decode one row from their codec's parameters. */
export interface EmbeddingTable {
  /** Write the embedding row of `token` (dim values) into out[offset ..]. */
  lookup(token: number, out: Float32Array, offset: number): void;
  /**
   * Optional: the kernel call that writes row `token` into out[0 .. dim) (the token a perToken argument), for a
   * decode plan (decode-plan.ts); undefined when `out` is not where the kernel can write it directly.
   */
  lookupCall?(out: Float32Array): DecodeCall | undefined;
}

/** A dense float32 embedding matrix [vocab, dim]. */
export class DenseEmbedding implements EmbeddingTable {
  constructor(
    readonly table: Float32Array,
    readonly dim: number,
  ) {}

  lookup(token: number, out: Float32Array, offset: number): void {
    const base = token * this.dim;
    for (let i = 0; i < this.dim; i++) out[offset + i] = this.table[base + i]!;
  }
}

export interface ForwardParts {
  config: ModelConfig;
  embedding: EmbeddingTable;
  attnNorm: Float32Array[]; // L × [dim]
  ffnNorm: Float32Array[]; // L × [dim]
  finalNorm: Float32Array; // [dim]
  layers: LayerLinears[];
  classifier: Linear;
  /** Per layer, the attention biases the config has (qkvBias: q, k, v; oBias: o). */
  attnBias?: Array<Partial<Record<BiasKind, Float32Array>>>;
  /** Per layer, Qwen3's q and k per-head RMSNorm weights [headDim] (config.qkNorm). */
  qNorm?: Float32Array[];
  kNorm?: Float32Array[];
  /**
   * A faster attention (e.g. WebAssembly SIMD) over caches it allocated; absent: the reference JS loops. It
   * must compute what `LlamaForward`'s attention computes (causal, grouped KV heads, scale 1/√headDim).
   */
  attention?: AttentionKernel;
}

/**
 * Attention over the KV cache, pluggable: `allocate` gives the arrays of a KV cache (so a runtime can place them
 * in memory its kernel reads without copies); `attend` runs causal attention for positions start..start+n−1 of
 * one layer — q [n, qDim] (after RoPE), keys/values [capacity, kvDim] of that layer (positions ≤ start+n−1
 * written), out [n, qDim] — exactly as the reference loops do, up to float32 summation order.
 */
export interface AttentionKernel {
  allocate(length: number): Float32Array;
  attend(keys: Float32Array, values: Float32Array, q: Float32Array, out: Float32Array, start: number, n: number): void;
  /**
   * Optional: gate[i] = silu(gate[i]) · up[i] for i < count (SwiGLU, silu(g) = g / (1 + e^−g)), in place —
   * the same values as the reference loop up to float32 rounding of the exponential.
   */
  swiglu?(gate: Float32Array, up: Float32Array, count: number): void;
  /**
   * Optional: the per-layer work between the products in the kernel's own memory. When present, the forward
   * keeps its activations (and the RoPE tables and norm weights) in arrays from `glue.scratch`, so a layer's
   * norms, RoPE, residual adds and KV-cache writes are a few calls with no JS loop and no allocation.
   */
  glue?: ForwardGlue;
}

/**
 * Per-layer glue over arrays that all live in the kernel's memory (from `scratch` or `allocate`): the same values
 * as the reference loops up to float32 rounding (they compute in float64 and round on store).
 */
export interface ForwardGlue {
  /** A zeroed array in the kernel's memory (activations, tables, norm weights; not counted as KV cache). */
  scratch(length: number): Float32Array;
  /**
   * If `add` is given, x += add first (n rows of dim; stored); then out[t] = weight ⊙ x[xRow + t] / √(mean(x²) + eps)
   * for t < n.
   */
  rmsNorm(out: Float32Array, x: Float32Array, xRow: number, add: Float32Array | undefined, weight: Float32Array, n: number, dim: number, eps: number): void;
  /**
   * RoPE: n rows of rowLen values of src (heads of headDim), row t rotated for position start + t, written to
   * dst rows dstRow + t (dst may be src). cos/sin: [positions, headDim/2] tables; pairs: llama2.c's adjacent
   * pairs, else halves.
   */
  rope(src: Float32Array, dst: Float32Array, dstRow: number, cos: Float32Array, sin: Float32Array, n: number, rowLen: number, headDim: number, start: number, pairs: boolean): void;
  /** x += y for count values (count a multiple of 4). */
  add(x: Float32Array, y: Float32Array, count: number): void;
  /** dst rows dstRow.. = the first n rows of src (rowLen values each). */
  copyRows(src: Float32Array, dst: Float32Array, dstRow: number, n: number, rowLen: number): void;
  /**
   * Optional: the same methods' calls for one token on one thread, for a decode plan (`LlamaForward.decodePlan`);
   * undefined while they cannot be described that way (a thread pool splits them).
   */
  readonly decode?: DecodeGlue | undefined;
}

/**
 * The parts a config's variants need (biases, q/k norms), checked present with the right lengths: a runtime
 * that built its parts without them would otherwise run and compute another model's numbers.
 */
export function checkVariantParts(parts: ForwardParts, source = '<model>'): void {
  const c = parts.config;
  const need = (v: Float32Array | undefined, len: number, name: string) => {
    if (!v || v.length !== len) {
      throw new UltraSketchError(ErrorCodes.MISSING_TENSOR, `${name} (${len} values) is missing from the forward's parts`, {
        source,
        hint: 'the model config asks for it; the weights or the runtime that built the forward lack it',
      });
    }
  };
  for (let l = 0; l < c.nLayers; l++) {
    for (const kind of biasKinds(c)) {
      need(parts.attnBias?.[l]?.[kind], kind === 'o' ? c.dim : kind === 'q' ? qDim(c) : kvDim(c), TensorNames.bias(l, kind));
    }
    if (c.qkNorm) {
      need(parts.qNorm?.[l], headDim(c), TensorNames.qNorm(l));
      need(parts.kNorm?.[l], headDim(c), TensorNames.kNorm(l));
    }
  }
}

/** Observers of intermediate activations (calibration, distillation). They must not modify the arrays. */
export interface ForwardHooks {
  /** The input rows X [n, in] entering a linear layer, named canonically (e.g. model.layers.0.self_attn.q_proj.weight). */
  onLinearInput?(name: string, x: Float32Array, n: number, inFeatures: number): void;
  /** The residual stream [n, dim] after decoder layer `layer`. */
  onLayerOutput?(layer: number, x: Float32Array, n: number): void;
}

export interface ForwardOptions {
  /** Which positions get logits: all n (evaluation), only the last (generation), or none. Default 'last'. */
  logits?: 'all' | 'last' | 'none';
  hooks?: ForwardHooks;
}

/** Keys and values of every layer for positions 0..capacity-1. */
export class KVCache {
  readonly keys: Float32Array[];
  readonly values: Float32Array[];
  /** Number of positions written so far. */
  length = 0;
  /** The attention kernel whose memory holds the arrays (undefined: plain JS arrays). */
  readonly kernel: AttentionKernel | undefined;

  constructor(
    readonly config: ModelConfig,
    readonly capacity: number,
    kernel?: AttentionKernel,
  ) {
    const size = capacity * kvDim(config);
    const alloc = kernel ? (n: number) => kernel.allocate(n) : (n: number) => new Float32Array(n);
    this.keys = Array.from({ length: config.nLayers }, () => alloc(size));
    this.values = Array.from({ length: config.nLayers }, () => alloc(size));
    this.kernel = kernel;
  }

  /** Forget all positions (the memory is reused). */
  reset(): void {
    this.length = 0;
  }
}

/** Makes the `Linear` for a dense float32 matrix W [rows, cols] (the reference kernel by default). */
export type DenseLinearFactory = (weight: Float32Array, rows: number, cols: number) => Linear;

/**
 * Build the forward pass over dense float32 weights. Runtimes with their own dense kernel (WebAssembly)
 * pass a factory; everything else — names, norms, the embedding, the tied classifier — is shared.
 */
export function denseForwardParts(
  weights: ModelWeights,
  makeLinear: DenseLinearFactory = (w, rows, cols) => new DenseLinear(w, rows, cols),
): ForwardParts {
  validateModelWeights(weights);
  const c = weights.config;
  const get = (name: string) => weights.tensors.get(name)!;
  const dense = (name: string) => {
    const t = get(name);
    return makeLinear(t.data, t.shape[0]!, t.shape[1]!);
  };
  const layers: LayerLinears[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    const linears = {} as LayerLinears;
    for (const kind of LINEAR_KINDS) linears[kind] = dense(TensorNames.linear(l, kind));
    layers.push(linears);
  }
  const embedding = get(TensorNames.embedding).data;
  const kinds = biasKinds(c);
  return {
    config: c,
    ...(kinds.length > 0
      ? {
          attnBias: Array.from({ length: c.nLayers }, (_, l) =>
            Object.fromEntries(kinds.map((kind) => [kind, get(TensorNames.bias(l, kind)).data])),
          ),
        }
      : {}),
    ...(c.qkNorm
      ? {
          qNorm: Array.from({ length: c.nLayers }, (_, l) => get(TensorNames.qNorm(l)).data),
          kNorm: Array.from({ length: c.nLayers }, (_, l) => get(TensorNames.kNorm(l)).data),
        }
      : {}),
    embedding: new DenseEmbedding(embedding, c.dim),
    attnNorm: Array.from({ length: c.nLayers }, (_, l) => get(TensorNames.attnNorm(l)).data),
    ffnNorm: Array.from({ length: c.nLayers }, (_, l) => get(TensorNames.ffnNorm(l)).data),
    finalNorm: get(TensorNames.finalNorm).data,
    layers,
    classifier: c.tiedClassifier ? makeLinear(embedding, c.vocabSize, c.dim) : dense(TensorNames.classifier),
  };
}

/** Scratch buffers sized for a batch of up to `rows` positions; grown on demand, never per token. */
class Scratch {
  rows = 0;
  x: Float32Array = new Float32Array(0); // residual stream [n, dim]
  xb: Float32Array = new Float32Array(0); // normed input [n, dim]
  q: Float32Array = new Float32Array(0); // [n, qDim]
  k: Float32Array = new Float32Array(0); // [n, kvDim]
  v: Float32Array = new Float32Array(0); // [n, kvDim]
  att: Float32Array = new Float32Array(0); // attention output [n, qDim]
  proj: Float32Array = new Float32Array(0); // output of o_proj / down_proj [n, dim]
  h1: Float32Array = new Float32Array(0); // [n, hidden]
  h3: Float32Array = new Float32Array(0); // [n, hidden]
  scores = new Float64Array(0); // [seqLen] attention scores of one head
  headAcc = new Float64Array(0); // [headDim] weighted sum of values of one head

  /** Where the activations live: the glue's memory when there is one (never freed: grown rarely, reused). */
  constructor(private readonly glue?: ForwardGlue) {}

  ensure(c: ModelConfig, n: number, capacity: number): void {
    if (this.scores.length < capacity) this.scores = new Float64Array(capacity);
    if (this.headAcc.length !== headDim(c)) this.headAcc = new Float64Array(headDim(c));
    if (n <= this.rows) return;
    const kv = kvDim(c);
    // grow geometrically in the glue's never-freeing memory, so prefills of growing lengths do not pile up copies
    const rows = this.glue ? Math.max(n, Math.min(2 * this.rows, c.seqLen)) : n;
    const alloc = this.glue ? (len: number) => this.glue!.scratch(len) : (len: number) => new Float32Array(len);
    this.rows = rows;
    this.x = alloc(rows * c.dim);
    this.xb = alloc(rows * c.dim);
    this.q = alloc(rows * qDim(c));
    this.k = alloc(rows * kv);
    this.v = alloc(rows * kv);
    this.att = alloc(rows * qDim(c));
    this.proj = alloc(rows * c.dim);
    this.h1 = alloc(rows * c.hiddenDim);
    this.h3 = alloc(rows * c.hiddenDim);
  }
}

/**
 * The steps of a decoder layer on the glue path (`LlamaForward.glueLayers`), each over the forward's activation
 * arrays: run now by the forward, or described as kernel calls by a decode plan.
 */
interface GlueSteps {
  /** out = norm(x) with `weight`; x += add first when given (stored). */
  norm(out: Float32Array, x: Float32Array, add: Float32Array | undefined, weight: Float32Array): void;
  linear(layer: number, kind: LinearKind, lin: Linear, input: Float32Array, output: Float32Array): void;
  /** The biases of q/k/v and Qwen3's q/k norms, where the model has them. */
  afterQkv(layer: number): void;
  /** RoPE of src into dst: in place (q) or into the cache's rows at the new positions (k). */
  rope(src: Float32Array, dst: Float32Array, toCache: boolean): void;
  /** src's rows into the cache rows at the new positions (v). */
  cacheRows(src: Float32Array, dst: Float32Array): void;
  attend(keys: Float32Array, values: Float32Array, q: Float32Array, out: Float32Array): void;
  /** The o projection's bias, where the model has one. */
  afterO(layer: number): void;
  swiglu(gate: Float32Array, up: Float32Array): void;
  add(x: Float32Array, y: Float32Array): void;
  layerDone(layer: number, x: Float32Array): void;
}

export class LlamaForward {
  readonly config: ModelConfig;
  private readonly scratch: Scratch;
  /** The attention kernel's glue, and the norm weights copied into its memory (attn, ffn per layer; final). */
  private readonly glue: ForwardGlue | undefined;
  private readonly glueNorms: { attn: Float32Array[]; ffn: Float32Array[]; final: Float32Array } | undefined;
  /** cos/sin [positions, headDim/2], grown to the largest cache used (a 128k-context model needs few of them). */
  private ropeCos: Float32Array = new Float32Array(0);
  private ropeSin: Float32Array = new Float32Array(0);
  private ropePositions = 0;
  private readonly invFreq: Float32Array;
  private logitsBuf: Float32Array = new Float32Array(0);

  constructor(readonly parts: ForwardParts) {
    this.config = parts.config;
    validateModelConfig(this.config);
    checkVariantParts(parts);
    this.invFreq = ropeInverseFrequencies(this.config);
    this.glue = parts.attention?.glue;
    this.scratch = new Scratch(this.glue);
    const glue = this.glue;
    if (glue) {
      const copy = (w: Float32Array) => {
        const g = glue.scratch(w.length);
        g.set(w);
        return g;
      };
      this.glueNorms = { attn: parts.attnNorm.map(copy), ffn: parts.ffnNorm.map(copy), final: copy(parts.finalNorm) };
    }
  }

  static fromWeights(weights: ModelWeights): LlamaForward {
    return new LlamaForward(denseForwardParts(weights));
  }

  createCache(capacity = this.config.seqLen): KVCache {
    if (!Number.isInteger(capacity) || capacity <= 0 || capacity > this.config.seqLen) {
      throw new UltraSketchError(
        ErrorCodes.BAD_ARGUMENT,
        `KV cache capacity ${capacity} must be in 1..${this.config.seqLen} (the model's seq_len)`,
      );
    }
    return new KVCache(this.config, capacity, this.parts.attention);
  }

  /**
   * Run `tokens` at positions cache.length, cache.length+1, ... and append them to the cache.
   * Returns logits: [n, vocab] for 'all', [vocab] for 'last' (the default), an empty array for 'none'.
   * The returned array is reused by the next call; copy it to keep it.
   */
  forward(tokens: ArrayLike<number>, cache: KVCache, options: ForwardOptions = {}): Float32Array {
    const c = this.config;
    const n = tokens.length;
    const start = cache.length;
    if (n === 0) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'forward() needs at least one token');
    if (start + n > cache.capacity) {
      throw new UltraSketchError(
        ErrorCodes.BAD_ARGUMENT,
        `positions ${start}..${start + n - 1} exceed the KV cache capacity ${cache.capacity}`,
        { hint: `the context is limited to ${cache.capacity} tokens; reset the session or shorten the input` },
      );
    }
    const hooks = options.hooks;
    const s = this.scratch;
    s.ensure(c, n, cache.capacity);
    this.ensureRope(cache.capacity);
    const dim = c.dim;
    const qd = qDim(c);
    const hs = headDim(c);
    const kv = kvDim(c);
    const hidden = c.hiddenDim;
    const { x, xb, q, k, v, att, proj, h1, h3 } = s;

    for (let t = 0; t < n; t++) {
      const token = tokens[t]!;
      if (!Number.isInteger(token) || token < 0 || token >= c.vocabSize) {
        throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `token id ${token} is outside 0..${c.vocabSize - 1}`);
      }
      this.parts.embedding.lookup(token, x, t * dim);
    }

    // the kernel's glue when this cache lives in its memory: a layer is a few wasm calls between the products
    const glue = cache.kernel !== undefined && cache.kernel === this.parts.attention ? this.glue : undefined;
    if (glue) this.forwardLayersGlue(glue, cache, start, n, hooks);
    else for (let l = 0; l < c.nLayers; l++) {
      const lin = this.parts.layers[l]!;
      rmsNormRows(xb, x, this.parts.attnNorm[l]!, n, dim, c.normEps);
      this.linear(l, 'q', lin.q, xb, q, n, hooks);
      this.linear(l, 'k', lin.k, xb, k, n, hooks);
      this.linear(l, 'v', lin.v, xb, v, n, hooks);
      const bias = this.parts.attnBias?.[l];
      if (bias?.q) addBiasRows(q, bias.q, n);
      if (bias?.k) addBiasRows(k, bias.k, n);
      if (bias?.v) addBiasRows(v, bias.v, n);
      if (c.qkNorm) {
        // Qwen3: each head of q and k is RMS-normalised over its headDim values (weights shared by the heads).
        rmsNormRows(q, q, this.parts.qNorm![l]!, n * c.nHeads, hs, c.normEps);
        rmsNormRows(k, k, this.parts.kNorm![l]!, n * c.nKvHeads, hs, c.normEps);
      }
      for (let t = 0; t < n; t++) {
        const pos = start + t;
        this.rope(q, t * qd, qd, pos);
        this.rope(k, t * kv, kv, pos);
      }
      cache.keys[l]!.set(k.subarray(0, n * kv), start * kv);
      cache.values[l]!.set(v.subarray(0, n * kv), start * kv);
      // the parts' kernel when this cache lives in its memory; the reference loops otherwise
      if (cache.kernel !== undefined && cache.kernel === this.parts.attention) {
        cache.kernel.attend(cache.keys[l]!, cache.values[l]!, q, att, start, n);
      } else this.attention(l, cache, q, att, start, n);
      this.linear(l, 'o', lin.o, att, proj, n, hooks);
      if (bias?.o) addBiasRows(proj, bias.o, n);
      for (let i = 0; i < n * dim; i++) x[i] = x[i]! + proj[i]!;

      rmsNormRows(xb, x, this.parts.ffnNorm[l]!, n, dim, c.normEps);
      this.linear(l, 'gate', lin.gate, xb, h1, n, hooks);
      this.linear(l, 'up', lin.up, xb, h3, n, hooks);
      const fast = this.parts.attention;
      if (fast?.swiglu) fast.swiglu(h1, h3, n * hidden);
      else {
        for (let i = 0; i < n * hidden; i++) {
          const g = h1[i]!;
          // SwiGLU: silu(gate) * up, silu(g) = g * sigmoid(g)
          h1[i] = (g / (1 + Math.exp(-g))) * h3[i]!;
        }
      }
      this.linear(l, 'down', lin.down, h1, proj, n, hooks);
      for (let i = 0; i < n * dim; i++) x[i] = x[i]! + proj[i]!;
      hooks?.onLayerOutput?.(l, x, n);
    }
    cache.length = start + n;

    const mode = options.logits ?? 'last';
    if (mode === 'none') return new Float32Array(0);
    const rows = mode === 'all' ? n : 1;
    const firstRow = n - rows;
    if (glue) glue.rmsNorm(xb, x, firstRow, undefined, this.glueNorms!.final, rows, dim, c.normEps);
    else rmsNormRows(xb, x.subarray(firstRow * dim), this.parts.finalNorm, rows, dim, c.normEps);
    // in the glue's memory when there is one: a classifier over that memory writes the logits in place (a
    // 512-token window's logits are 8 MB at a 4096 vocabulary, copied on the calling thread otherwise)
    if (this.logitsBuf.length < rows * c.vocabSize) this.logitsBuf = glue ? glue.scratch(rows * c.vocabSize) : new Float32Array(rows * c.vocabSize);
    const logits = this.logitsBuf.subarray(0, rows * c.vocabSize);
    hooks?.onLinearInput?.(TensorNames.classifier, xb, rows, dim);
    this.parts.classifier.apply(xb, logits, rows);
    return logits;
  }

  /**
   * The decoder layers with the kernel's glue: the same steps as the loop in `forward`, the norms, RoPE, residual
   * adds and cache writes in the kernel's memory (k is rotated straight into the cache; the norm before the FFN
   * is fused with the residual add before it). The steps are run now, for n positions from `start`.
   */
  private forwardLayersGlue(glue: ForwardGlue, cache: KVCache, start: number, n: number, hooks: ForwardHooks | undefined): void {
    const c = this.config;
    const parts = this.parts;
    const { q, k, v, proj } = this.scratch;
    const hs = headDim(c);
    const eps = c.normEps;
    const pairs = c.ropeLayout === 'pairs';
    const fast = parts.attention!;
    this.glueLayers(cache, {
      norm: (out, x, add, weight) => glue.rmsNorm(out, x, 0, add, weight, n, c.dim, eps),
      linear: (l, kind, lin, input, output) => this.linear(l, kind, lin, input, output, n, hooks),
      afterQkv: (l) => {
        const bias = parts.attnBias?.[l];
        if (bias?.q) addBiasRows(q, bias.q, n);
        if (bias?.k) addBiasRows(k, bias.k, n);
        if (bias?.v) addBiasRows(v, bias.v, n);
        if (c.qkNorm) {
          rmsNormRows(q, q, parts.qNorm![l]!, n * c.nHeads, hs, eps);
          rmsNormRows(k, k, parts.kNorm![l]!, n * c.nKvHeads, hs, eps);
        }
      },
      rope: (src, dst, toCache) => glue.rope(src, dst, toCache ? start : 0, this.ropeCos, this.ropeSin, n, src === q ? qDim(c) : kvDim(c), hs, start, pairs),
      cacheRows: (src, dst) => glue.copyRows(src, dst, start, n, kvDim(c)),
      attend: (keys, values, qIn, out) => fast.attend(keys, values, qIn, out, start, n),
      afterO: (l) => {
        const bias = parts.attnBias?.[l]?.o;
        if (bias) addBiasRows(proj, bias, n);
      },
      swiglu: (gate, up) => fast.swiglu!(gate, up, n * c.hiddenDim),
      add: (x, y) => glue.add(x, y, n * c.dim),
      layerDone: (l, x) => hooks?.onLayerOutput?.(l, x, n),
    });
  }

  /**
   * The decoder layers on the glue path, written once: `forwardLayersGlue` runs these steps, `decodePlan` describes
   * them as kernel calls — so a decode program makes exactly the forward's calls, in its order.
   */
  private glueLayers(cache: KVCache, steps: GlueSteps): void {
    const c = this.config;
    const norms = this.glueNorms!;
    const { x, xb, q, k, v, att, proj, h1, h3 } = this.scratch;
    for (let l = 0; l < c.nLayers; l++) {
      const lin = this.parts.layers[l]!;
      steps.norm(xb, x, undefined, norms.attn[l]!);
      steps.linear(l, 'q', lin.q, xb, q);
      steps.linear(l, 'k', lin.k, xb, k);
      steps.linear(l, 'v', lin.v, xb, v);
      steps.afterQkv(l);
      steps.rope(q, q, false);
      steps.rope(k, cache.keys[l]!, true);
      steps.cacheRows(v, cache.values[l]!);
      steps.attend(cache.keys[l]!, cache.values[l]!, q, att);
      steps.linear(l, 'o', lin.o, att, proj);
      steps.afterO(l);
      steps.norm(xb, x, proj, norms.ffn[l]!); // x += proj, then the norm
      steps.linear(l, 'gate', lin.gate, xb, h1);
      steps.linear(l, 'up', lin.up, xb, h3);
      steps.swiglu(h1, h3);
      steps.linear(l, 'down', lin.down, h1, proj);
      steps.add(x, proj);
      steps.layerDone(l, x);
    }
  }

  /**
   * One generated token's forward as a decode plan (decode-plan.ts): the calls `forward([token], cache)` makes
   * through the glue path — the embedding row, `glueLayers`, the final norm, the classifier — with the same
   * arguments, the position and token left symbolic. `logits` is where the classifier writes. undefined when some
   * part cannot be described as kernel calls (no glue, a cache outside the kernel's memory, biases or q/k norms,
   * a linear or embedding without decode calls).
   */
  decodePlan(cache: KVCache): { calls: DecodeCall[]; logits: Float32Array } | undefined {
    const c = this.config;
    const glue = this.glue;
    const ops = glue?.decode;
    const parts = this.parts;
    if (!glue || !ops || cache.kernel === undefined || cache.kernel !== parts.attention) return undefined;
    if (c.qkNorm || parts.attnBias?.some((b) => b && Object.keys(b).length > 0)) return undefined;
    const s = this.scratch;
    s.ensure(c, 1, cache.capacity);
    this.ensureRope(cache.capacity);
    if (this.logitsBuf.length < c.vocabSize) this.logitsBuf = glue.scratch(c.vocabSize);
    const logits = this.logitsBuf.subarray(0, c.vocabSize);
    const { x, xb, q } = s;
    const dim = c.dim;
    const hs = headDim(c);
    const eps = c.normEps;
    const pairs = c.ropeLayout === 'pairs';
    const calls: DecodeCall[] = [];
    let complete = true; // false once a part has no decode calls: then there is no plan
    const push = (more: DecodeCall | DecodeCall[] | undefined): void => {
      if (!more) complete = false;
      else if (Array.isArray(more)) calls.push(...more);
      else calls.push(more);
    };
    const none = () => {};
    push(parts.embedding.lookupCall?.(x.subarray(0, dim)));
    this.glueLayers(cache, {
      norm: (out, xIn, add, weight) => push(ops.rmsNorm(out, xIn, add, weight, dim, eps)),
      linear: (_l, _kind, lin, input, output) => push(lin.decodeCalls?.(input, output)),
      afterQkv: none, // (no biases or q/k norms: checked above)
      rope: (src, dst, toCache) => push(ops.rope(src, dst, toCache, this.ropeCos, this.ropeSin, src === q ? qDim(c) : kvDim(c), hs, pairs)),
      cacheRows: (src, dst) => push(ops.copyRowToPos(src, dst, kvDim(c))),
      attend: (keys, values, qIn, out) => push(ops.attend(keys, values, qIn, out, cache.capacity)),
      afterO: none,
      swiglu: (gate, up) => push(ops.swiglu(gate, up, c.hiddenDim)),
      add: (xIn, y) => push(ops.add(xIn, y, dim)),
      layerDone: none,
    });
    push(ops.rmsNorm(xb, x, undefined, this.glueNorms!.final, dim, eps));
    push(parts.classifier.decodeCalls?.(xb, logits));
    return complete ? { calls, logits } : undefined;
  }

  private linear(
    layer: number,
    kind: LinearKind,
    lin: Linear,
    input: Float32Array,
    output: Float32Array,
    n: number,
    hooks: ForwardHooks | undefined,
  ): void {
    hooks?.onLinearInput?.(TensorNames.linear(layer, kind), input, n, lin.inFeatures);
    lin.apply(input, output, n);
  }

  /**
   * cos/sin of every (position, frequency) pair for positions 0..positions-1, computed the way llama2.c computes
   * them, in float32 (angle = pos · frequency rounded to float32), because at position 500 a float64 angle
   * already differs from llama2.c's by ~3e-5 radians. Frequencies come from `ropeInverseFrequencies` (scaled
   * for Llama 3.1+).
   */
  private ensureRope(positions: number): void {
    if (positions <= this.ropePositions) return;
    const half = this.invFreq.length;
    // in the glue's memory when there is one (its rope reads them there)
    const alloc = this.glue ? (len: number) => this.glue!.scratch(len) : (len: number) => new Float32Array(len);
    const cos = alloc(positions * half);
    const sin = alloc(positions * half);
    const f = Math.fround;
    for (let i = 0; i < half; i++) {
      const freq = this.invFreq[i]!;
      for (let pos = 0; pos < positions; pos++) {
        const angle = f(pos * freq);
        cos[pos * half + i] = Math.cos(angle);
        sin[pos * half + i] = Math.sin(angle);
      }
    }
    this.ropeCos = cos;
    this.ropeSin = sin;
    this.ropePositions = positions;
  }

  /** Rotate every head of vec[offset .. offset+len) for position pos, in the config's RoPE layout. */
  private rope(vec: Float32Array, offset: number, len: number, pos: number): void {
    const hs = headDim(this.config);
    const half = hs / 2;
    const cos = this.ropeCos;
    const sin = this.ropeSin;
    const row = pos * half;
    const pairs = this.config.ropeLayout === 'pairs';
    for (let h = offset; h < offset + len; h += hs) {
      for (let i = 0; i < half; i++) {
        const a = pairs ? h + 2 * i : h + i;
        const b = pairs ? a + 1 : a + half;
        const fc = cos[row + i]!;
        const fs = sin[row + i]!;
        const v0 = vec[a]!;
        const v1 = vec[b]!;
        vec[a] = v0 * fc - v1 * fs;
        vec[b] = v0 * fs + v1 * fc;
      }
    }
  }

  /**
   * Causal multi-head attention with grouped KV heads for the n new positions. The hot loops are the
   * q·k dot products and the weighted sum of values; both run over head-size vectors, unrolled by four,
   * and the weighted sum accumulates in a float64 scratch row that is written to `out` once.
   */
  private attention(layer: number, cache: KVCache, q: Float32Array, out: Float32Array, start: number, n: number): void {
    const c = this.config;
    const hs = headDim(c);
    const qd = qDim(c);
    const kv = kvDim(c);
    const kvMul = c.nHeads / c.nKvHeads;
    const keys = cache.keys[layer]!;
    const values = cache.values[layer]!;
    const scores = this.scratch.scores;
    const acc = this.scratch.headAcc;
    const scale = 1 / Math.sqrt(hs);
    const hs4 = hs - (hs % 4);
    for (let t = 0; t < n; t++) {
      const pos = start + t;
      for (let h = 0; h < c.nHeads; h++) {
        const qo = t * qd + h * hs;
        const kvo = Math.floor(h / kvMul) * hs;
        let max = -Infinity;
        for (let p = 0; p <= pos; p++) {
          const sc = dotRow(q, qo, keys, p * kv + kvo, hs) * scale;
          scores[p] = sc;
          if (sc > max) max = sc;
        }
        let sum = 0;
        for (let p = 0; p <= pos; p++) {
          const e = Math.exp(scores[p]! - max);
          scores[p] = e;
          sum += e;
        }
        acc.fill(0);
        for (let p = 0; p <= pos; p++) {
          const a = scores[p]!;
          const vo = p * kv + kvo;
          let i = 0;
          for (; i < hs4; i += 4) {
            acc[i] = acc[i]! + a * values[vo + i]!;
            acc[i + 1] = acc[i + 1]! + a * values[vo + i + 1]!;
            acc[i + 2] = acc[i + 2]! + a * values[vo + i + 2]!;
            acc[i + 3] = acc[i + 3]! + a * values[vo + i + 3]!;
          }
          for (; i < hs; i++) acc[i] = acc[i]! + a * values[vo + i]!;
        }
        const inv = 1 / sum;
        const oo = t * qd + h * hs;
        for (let i = 0; i < hs; i++) out[oo + i] = acc[i]! * inv;
      }
    }
  }
}

/** out[t] = w ⊙ x[t] / sqrt(mean(x[t]²) + eps), row by row (llama2.c's rmsnorm). */
export function rmsNormRows(
  out: Float32Array,
  x: Float32Array,
  weight: Float32Array,
  n: number,
  dim: number,
  eps: number,
): void {
  for (let t = 0; t < n; t++) {
    const o = t * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[o + i]! * x[o + i]!;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) out[o + i] = weight[i]! * (inv * x[o + i]!);
  }
}

/** y[t] += bias for each of the n rows of y (row length = bias length). */
function addBiasRows(y: Float32Array, bias: Float32Array, n: number): void {
  const w = bias.length;
  for (let t = 0; t < n; t++) {
    const o = t * w;
    for (let i = 0; i < w; i++) y[o + i] = y[o + i]! + bias[i]!;
  }
}
