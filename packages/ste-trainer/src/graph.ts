import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { LINEAR_KINDS, type LinearKind, type ModelConfig, headDim, kvDim, linearShape, validateModelConfig } from '@ultrasketch/model';
import { type FloatArray, allocFloat32, matmul, transpose } from './matmul.js';
import {
  type AttentionShape,
  addRows,
  attentionBackward,
  attentionForward,
  rmsNormBackward,
  rmsNormForward,
  rope,
  ropeTables,
  swigluBackward,
  swigluForward,
} from './ops.js';
import { type WeightProvider, factorRankOf } from './providers.js';

/**
 * The Llama decoder as a training graph over a batch of `batch` sequences of `seqLen` tokens (n = batch ·
 * seqLen rows), each sequence at positions 0..seqLen−1. The forward pass stores every activation the
 * backward pass needs in buffers allocated once for [batch, seqLen]; backward() runs the hand-derived
 * gradient of each op in reverse. Nothing is allocated per step.
 *
 *   X0 = embed(tokens)                                   (embedding trainable if given a grad)
 *   per layer l:  A = RMSNorm(X_l; attnNorm)             (norm weight trainable if given a grad)
 *                 q, k, v = A Ŵqᵀ, A Ŵkᵀ, A Ŵvᵀ          (weight providers)
 *                 RoPE(q), RoPE(k); O = causal-softmax(q kᵀ/√hs) v   (grouped KV heads)
 *                 M = X_l + O Ŵoᵀ
 *                 F = RMSNorm(M; ffnNorm); H = silu(F Ŵgᵀ) ⊙ (F Ŵuᵀ)
 *                 X_{l+1} = M + H Ŵdᵀ                    (the layer's output "hidden state")
 *   logits = RMSNorm(X_L; finalNorm) Eᵀ                  (classifier trainable if given a grad; E = embedding when tied)
 *
 * Arrays are Float32Array in training; the same code runs on Float64Array for gradient checks.
 */

/** A norm weight: trainable when `grad` is given. */
export interface NormWeight<T extends FloatArray = Float32Array> {
  data: T;
  grad: T | null;
}

/** Views of a packed low-rank [Left | Right] array: `head` is its first r·(rows + cols) values. */
interface Split<T> {
  packed: T;
  head: T;
  left: T;
  right: T;
}

/** Linears per layer: linear index = layer · KINDS + index in LINEAR_KINDS. */
const KINDS = LINEAR_KINDS.length;

export type LayerProviders<T extends FloatArray = Float32Array> = Record<LinearKind, WeightProvider<T>>;

export interface GraphWeights<T extends FloatArray = Float32Array> {
  config: ModelConfig;
  /** Token embedding [vocab, dim] (frozen). */
  embedding: T;
  /** Classifier [vocab, dim] (frozen; the embedding itself for tied models). */
  classifier: T;
  /**
   * ∂L/∂embedding, when the embedding trains (backward ADDS into it). For a tied model give the same array as
   * classifierGrad: the classifier's and the lookup's gradients then sum in it.
   */
  embeddingGrad?: T | null;
  /** ∂L/∂classifier, when the classifier trains (backward ADDS into it). */
  classifierGrad?: T | null;
  attnNorm: NormWeight<T>[];
  ffnNorm: NormWeight<T>[];
  finalNorm: NormWeight<T>;
  layers: LayerProviders<T>[];
}

export interface GraphOptions {
  batch: number;
  seqLen: number;
  /** Float precision of activations: 'f32' (training) or 'f64' (gradient checks). Must match the weights. */
  dtype?: 'f32' | 'f64';
  /** Keep activations for backward (default true). A teacher graph sets false. */
  training?: boolean;
}

interface LayerActs<T> {
  x: T; // X_l, layer input [n, dim]
  r1: T; // [n]
  a: T; // normed attention input [n, dim]
  q: T; // roped [n, dim]
  k: T; // roped [n, kv]
  v: T; // [n, kv]
  probs: T; // [batch, heads, L, L]
  o: T; // attention output [n, dim]
  m: T; // X_l + attention branch [n, dim]
  r2: T; // [n]
  f: T; // normed ffn input [n, dim]
  g: T; // gate pre-activation [n, hidden]
  u: T; // up [n, hidden]
  h: T; // silu(g) ⊙ u [n, hidden]
  sig: T; // σ(g) [n, hidden] (training graphs only: the backward's exponentials)
}

/** The sizes a pass over the Llama blocks works with (the CPU and WebGPU graphs' forward and backward alike). */
export interface BlockSizes {
  dim: number;
  kv: number;
  hid: number;
  /** Head width. */
  hs: number;
  /** RoPE on interleaved (2i, 2i+1) pairs (llama2.c) rather than on halves. */
  pairs: boolean;
  shape: AttentionShape;
}

/** The block sizes of `c` for `nSeq` sequences of `seqLen` tokens. */
export function blockSizes(c: ModelConfig, nSeq: number, seqLen: number): BlockSizes {
  const hs = headDim(c);
  return {
    dim: c.dim,
    kv: kvDim(c),
    hid: c.hiddenDim,
    hs,
    pairs: c.ropeLayout === 'pairs',
    shape: { batch: nSeq, seqLen, nHeads: c.nHeads, nKvHeads: c.nKvHeads, headSize: hs },
  };
}

export class LlamaGraph<T extends FloatArray = Float32Array> {
  readonly config: ModelConfig;
  readonly batch: number;
  readonly seqLen: number;
  readonly training: boolean;
  /** Logits of the last forward [n, vocab]. */
  readonly logits: T;
  private readonly acts: LayerActs<T>[];
  /** X_L (the last layer's output) [n, dim]. */
  private readonly xLast: T;
  private readonly rf: T;
  private readonly xf: T;
  private readonly cos: Float32Array;
  private readonly sin: Float32Array;
  private readonly alloc: (n: number) => T;
  /** Ŵ of every linear in the current forward (held for backward); [Left | Right] for low-rank ones. */
  private readonly wCur: T[][];
  /** Low-rank r per [layer][kind index] (0: the provider's Ŵ is used; WeightProvider.factorRank). */
  private readonly rank: number[][];
  /** Low-rank linears: T = X · Right [n, r] of the forward, kept for the backward (else empty). */
  private readonly tAct: T[][];
  /** Low-rank views of wCur (Left, Right) and of gradW ([∂L/∂Left | ∂L/∂Right]); rebuilt when wCur changes. */
  private readonly views: Array<Array<Split<T> | null>>;
  private readonly gradViews: Array<Array<Split<T> | null>>;
  /** dT = dY · Left [n, r] (backward scratch, the largest r). */
  private readonly dT: T;
  // backward scratch
  private readonly dX: T;
  private readonly dA: T; // [n, dim]
  private readonly dq: T;
  private readonly dk: T;
  private readonly dv: T;
  private readonly dO: T;
  private readonly dH: T;
  private readonly dG: T;
  private readonly dU: T;
  private readonly gradW: Record<LinearKind, T>;
  private readonly classifierT: T; // Eᵀ [dim, vocab], transposed once (frozen classifier only)
  /**
   * The classifier E [vocab, dim]. Frozen, in a float32 graph: a copy made once, so it lives beside the
   * activations. Trained: weights.classifier itself, which the optimiser updates between steps.
   */
  private readonly classifier: T;
  /** The last forward's token ids (the embedding's gradient scatters into their rows). */
  private readonly tokenIds: Int32Array;
  private nRows = 0;
  /**
   * Profiling hook: when set, called after each op of forward()/backward() with the op's label (the
   * caller attributes the time since its previous call to that label). Null in normal runs: one
   * well-predicted branch per op.
   */
  mark: ((op: string) => void) | null = null;

  constructor(
    readonly weights: GraphWeights<T>,
    options: GraphOptions,
  ) {
    const c = weights.config;
    validateModelConfig(c);
    const { batch, seqLen } = options;
    if (!Number.isInteger(batch) || batch < 1 || !Number.isInteger(seqLen) || seqLen < 1 || seqLen > c.seqLen) {
      throw new UltraSketchError(
        ErrorCodes.BAD_ARGUMENT,
        `batch ${batch} × seqLen ${seqLen}: both must be positive integers and seqLen ≤ the model's ${c.seqLen}`,
      );
    }
    this.config = c;
    this.batch = batch;
    this.seqLen = seqLen;
    this.training = options.training ?? true;
    const f64 = (options.dtype ?? 'f32') === 'f64';
    // float32 buffers come from the installed allocator (Node: the wasm kernels' memory, used in place)
    this.alloc = (len: number) => (f64 ? new Float64Array(len) : allocFloat32(len)) as T;
    checkWeights(weights, f64);
    const n = batch * seqLen;
    const dim = c.dim;
    const kv = kvDim(c);
    const hid = c.hiddenDim;
    const A = this.alloc;
    const mk = (): LayerActs<T> => ({
      x: A(n * dim),
      r1: A(n),
      a: A(n * dim),
      q: A(n * dim),
      k: A(n * kv),
      v: A(n * kv),
      probs: A(batch * c.nHeads * seqLen * seqLen),
      o: A(n * dim),
      m: A(n * dim),
      r2: A(n),
      f: A(n * dim),
      g: A(n * hid),
      u: A(n * hid),
      h: A(n * hid),
      sig: A(this.training ? n * hid : 0),
    });
    if (this.training) {
      this.acts = Array.from({ length: c.nLayers }, mk);
    } else {
      // Inference: one set of activations reused by every layer; only the layer inputs are kept.
      const shared = mk();
      this.acts = Array.from({ length: c.nLayers }, () => ({ ...shared, x: A(n * dim) }));
    }
    this.xLast = A(n * dim);
    this.rf = A(n);
    this.xf = A(n * dim);
    this.logits = A(n * c.vocabSize);
    [this.cos, this.sin] = ropeTables(seqLen, headDim(c), c.ropeTheta);
    this.wCur = Array.from({ length: c.nLayers }, () => new Array<T>(LINEAR_KINDS.length));
    const t = this.training;
    this.rank = weights.layers.map((lp) => LINEAR_KINDS.map((kind) => factorRankOf(lp[kind])));
    let maxRank = 0;
    this.tAct = this.rank.map((rs) =>
      rs.map((r) => {
        maxRank = Math.max(maxRank, r);
        return A(n * r);
      }),
    );
    this.views = this.rank.map((rs) => rs.map(() => null));
    this.gradViews = this.rank.map((rs) => rs.map(() => null));
    this.dT = A(t ? n * maxRank : 0);
    this.dX = A(t ? n * dim : 0);
    this.dA = A(t ? n * dim : 0);
    this.dq = A(t ? n * dim : 0);
    this.dk = A(t ? n * kv : 0);
    this.dv = A(t ? n * kv : 0);
    this.dO = A(t ? n * dim : 0);
    this.dH = A(t ? n * hid : 0);
    this.dG = A(t ? n * hid : 0);
    this.dU = A(t ? n * hid : 0);
    this.gradW = {} as Record<LinearKind, T>;
    for (const kind of LINEAR_KINDS) {
      const [r, cc] = linearShape(c, kind);
      this.gradW[kind] = A(t ? r * cc : 0);
    }
    const trainsClassifier = (weights.classifierGrad ?? null) !== null;
    if (f64 || trainsClassifier) this.classifier = weights.classifier;
    else {
      this.classifier = A(c.vocabSize * dim);
      this.classifier.set(weights.classifier);
    }
    this.classifierT = A(t && !trainsClassifier ? c.vocabSize * dim : 0);
    if (t && !trainsClassifier) transpose(weights.classifier, this.classifierT, c.vocabSize, dim);
    this.tokenIds = new Int32Array(t && weights.embeddingGrad ? n : 0);
    const trainsE = (g: T | null | undefined, what: string) => {
      if (g && (!t || g.length !== c.vocabSize * dim)) {
        throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `${what} needs a training graph and vocab × dim values (has ${g.length})`);
      }
    };
    trainsE(weights.embeddingGrad, 'embeddingGrad');
    trainsE(weights.classifierGrad, 'classifierGrad');
    if (c.tiedClassifier && (weights.embeddingGrad ?? null) !== (weights.classifierGrad ?? null)) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'a tied classifier trains with its embedding: give embeddingGrad and classifierGrad as one array');
    }
  }

  /** Rows of the last forward (nSeq · seqLen). */
  get rows(): number {
    return this.nRows;
  }

  /** The output of decoder layer l (X_{l+1}) from the last forward, [rows, dim]. */
  hidden(layer: number): T {
    return layer + 1 < this.config.nLayers ? this.acts[layer + 1]!.x : this.xLast;
  }

  /**
   * Run the forward pass over `nSeq` ≤ batch sequences of seqLen tokens (tokens[s·seqLen + t]).
   * Fills `logits` for the first nSeq·seqLen rows.
   */
  /**
   * Ask every provider for this step's Ŵ now (forward() with `preloaded` then uses them): the data-parallel
   * trainer publishes the same Ŵ to its workers, and a provider's weight() — a decode, a sign product — runs
   * once per step instead of twice.
   */
  loadWeights(): void {
    for (let l = 0; l < this.config.nLayers; l++) this.loadLayer(l);
  }

  /** This step's Ŵ (or packed low-rank factors) of every linear of layer l. */
  private loadLayer(l: number): void {
    const prov = this.weights.layers[l]!;
    const W = this.wCur[l]!;
    const rank = this.rank[l]!;
    for (let i = 0; i < KINDS; i++) {
      const p = prov[LINEAR_KINDS[i]!];
      W[i] = rank[i]! > 0 ? p.factors!() : p.weight();
    }
  }

  /** Left [rows, r] and Right [cols, r] views of a packed [Left | Right] array (cached per array). */
  private split(cache: Array<Split<T> | null>, i: number, packed: T, rows: number, cols: number, r: number): Split<T> {
    let v = cache[i];
    if (!v || v.packed !== packed) {
      const len = (rows + cols) * r;
      v = {
        packed,
        head: packed.length === len ? packed : (packed.subarray(0, len) as T),
        left: packed.subarray(0, rows * r) as T,
        right: packed.subarray(rows * r, len) as T,
      };
      cache[i] = v;
    }
    return v;
  }

  /** Y [n, rows] = X Ŵᵀ for linear i of layer l (X [n, cols]); low-rank: (X · Right) · Leftᵀ. */
  private linearForward(l: number, i: number, x: T, y: T, n: number, rows: number, cols: number): void {
    const W = this.wCur[l]![i]!;
    const r = this.rank[l]![i]!;
    if (r === 0) {
      matmul(x, W, y, n, rows, cols, false, true);
      return;
    }
    const { left, right } = this.split(this.views[l]!, i, W, rows, cols, r);
    const t = this.tAct[l]![i]!;
    matmul(x, right, t, n, r, cols, false, false); // T = X · Right [n, r]
    matmul(t, left, y, n, rows, r, false, true); // Y = T · Leftᵀ
  }

  /**
   * The backward of linear i of layer l (dY [n, rows], its input X [n, cols]): dX (+)= dY Ŵ when dX is given
   * (accumulate: add), and the provider's gradient (∂L/∂Ŵ = dYᵀ X; low-rank: ∂L/∂Left = dYᵀ T, ∂L/∂Right =
   * Xᵀ (dY · Left)). For a Ŵ linear the same products, in the same order, as before the low-rank form.
   */
  private linearBackward(l: number, i: number, dY: T, x: T, dX: T | null, accumulate: boolean, n: number): void {
    const p = this.weights.layers[l]![LINEAR_KINDS[i]!];
    const { rows, cols } = p;
    const W = this.wCur[l]![i]!;
    const r = this.rank[l]![i]!;
    const buf = this.gradW[LINEAR_KINDS[i]!];
    if (r === 0) {
      if (dX) {
        matmul(dY, W, dX, n, cols, rows, false, false, accumulate);
        this.mark?.('bwd.linear dX');
      }
      this.linearGrad(l * KINDS + i, p, dY, x, n, buf);
      return;
    }
    const { left, right } = this.split(this.views[l]!, i, W, rows, cols, r);
    const dT = this.dT;
    matmul(dY, left, dT, n, r, rows, false, false); // dT = dY · Left [n, r]
    if (dX) matmul(dT, right, dX, n, cols, r, false, true, accumulate); // dX (+)= dT · Rightᵀ
    this.mark?.('bwd.linear dX');
    if (!p.trainable) return;
    const g = this.split(this.gradViews[l]!, i, buf, rows, cols, r);
    matmul(dY, this.tAct[l]![i]!, g.left, rows, r, n, true, false); // ∂L/∂Left = dYᵀ T
    matmul(x, dT, g.right, cols, r, n, true, false); // ∂L/∂Right = Xᵀ dT
    this.mark?.('bwd.linear dW');
    this.providerGrad(l * KINDS + i, p, g.head, true);
  }

  /** Ŵ of linear `kind` of `layer` as loaded by the last forward() or loadWeights() ([Left | Right] when low-rank). */
  currentWeight(layer: number, kindIndex: number): T {
    return this.wCur[layer]![kindIndex]!;
  }

  forward(tokens: ArrayLike<number>, nSeq = this.batch, preloaded = false): void {
    const c = this.config;
    const L = this.seqLen;
    if (!Number.isInteger(nSeq) || nSeq < 1 || nSeq > this.batch || tokens.length < nSeq * L) {
      throw new UltraSketchError(
        ErrorCodes.BAD_ARGUMENT,
        `forward: ${tokens.length} tokens for ${nSeq} sequences of ${L} (graph batch ${this.batch})`,
      );
    }
    const n = nSeq * L;
    this.nRows = n;
    const { dim, kv, hid, hs, pairs, shape } = blockSizes(c, nSeq, L);
    const x0 = this.acts[0]!.x;
    const emb = this.weights.embedding;
    const ids = this.tokenIds;
    for (let t = 0; t < n; t++) {
      const tok = tokens[t]!;
      if (!Number.isInteger(tok) || tok < 0 || tok >= c.vocabSize) {
        throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `token id ${tok} is outside 0..${c.vocabSize - 1}`);
      }
      x0.set(emb.subarray(tok * dim, (tok + 1) * dim), t * dim);
      if (ids.length > 0) ids[t] = tok;
    }
    const mark = this.mark;
    mark?.('fwd.embed');
    for (let l = 0; l < c.nLayers; l++) {
      const s = this.acts[l]!;
      if (!preloaded) this.loadLayer(l);
      const next = l + 1 < c.nLayers ? this.acts[l + 1]!.x : this.xLast;
      mark?.('fwd.provider weight()');

      rmsNormForward(s.x, this.weights.attnNorm[l]!.data, s.a, s.r1, n, dim, c.normEps);
      mark?.('fwd.rmsnorm');
      this.linearForward(l, 0, s.a, s.q, n, dim, dim);
      this.linearForward(l, 1, s.a, s.k, n, kv, dim);
      this.linearForward(l, 2, s.a, s.v, n, kv, dim);
      mark?.('fwd.linear qkv');
      rope(s.q, n, dim, L, hs, this.cos, this.sin, pairs, false);
      rope(s.k, n, kv, L, hs, this.cos, this.sin, pairs, false);
      mark?.('fwd.rope');
      attentionForward(s.q, s.k, s.v, s.probs, s.o, shape);
      mark?.('fwd.attention');
      this.linearForward(l, 3, s.o, s.m, n, dim, dim);
      mark?.('fwd.linear o');
      addRows(s.x, s.m, s.m, n * dim); // a small function of its own: V8 optimises it better than this loop inline
      mark?.('fwd.residual');

      rmsNormForward(s.m, this.weights.ffnNorm[l]!.data, s.f, s.r2, n, dim, c.normEps);
      mark?.('fwd.rmsnorm');
      this.linearForward(l, 4, s.f, s.g, n, hid, dim);
      this.linearForward(l, 5, s.f, s.u, n, hid, dim);
      mark?.('fwd.linear gate/up');
      swigluForward(s.g, s.u, s.h, n * hid, this.training ? s.sig : null);
      mark?.('fwd.swiglu');
      this.linearForward(l, 6, s.h, next, n, dim, hid);
      mark?.('fwd.linear down');
      addRows(s.m, next, next, n * dim);
      mark?.('fwd.residual');
    }
    rmsNormForward(this.xLast, this.weights.finalNorm.data, this.xf, this.rf, n, dim, c.normEps);
    mark?.('fwd.rmsnorm');
    matmul(this.xf, this.classifier, this.logits, n, c.vocabSize, dim, false, true);
    mark?.('fwd.classifier');
  }

  /**
   * Backward pass of the last forward. `dLogits` [rows, vocab] is ∂L/∂logits. `onLayerOutputGrad(l, dX)`
   * may add ∂L/∂X_{l+1} terms (hidden-state losses) into dX, which holds the gradient at layer l's output
   * when called. Gradients of the linears go to their providers (`backward(gradW)`); norm gradients are
   * ADDED into the norms' grad arrays.
   */
  backward(dLogits: T, onLayerOutputGrad?: (layer: number, dX: T) => void): void {
    if (!this.training) throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'backward() on a graph built with training: false');
    const c = this.config;
    const n = this.nRows;
    const L = this.seqLen;
    const { dim, kv, hid, hs, pairs, shape } = blockSizes(c, n / L, L);
    const { dX, dA, dq, dk, dv, dO, dH, dG, dU } = this;
    const w = this.weights;
    const mark = this.mark;
    // classifier: dXf = dLogits · E (and ∂L/∂E += dLogitsᵀ · Xf when it trains). A frozen E was transposed once;
    // a trained one changes every step, and the product's kernel lays it out itself.
    if (w.classifierGrad) matmul(dLogits, this.classifier, dA, n, dim, c.vocabSize, false, false);
    else matmul(dLogits, this.classifierT, dA, n, dim, c.vocabSize, false, true);
    mark?.('bwd.classifier dX');
    if (w.classifierGrad) {
      matmul(dLogits, this.xf, w.classifierGrad, c.vocabSize, dim, n, true, false, true);
      mark?.('bwd.classifier dW');
    }
    dX.fill(0, 0, n * dim);
    rmsNormBackward(dA, this.xLast, w.finalNorm.data, this.rf, dX, w.finalNorm.grad, n, dim);
    mark?.('bwd.rmsnorm');

    for (let l = c.nLayers - 1; l >= 0; l--) {
      const s = this.acts[l]!;
      onLayerOutputGrad?.(l, dX);
      mark?.('bwd.hidden MSE');

      // --- FFN: X_{l+1} = M + H Ŵdᵀ
      this.linearBackward(l, 6, dX, s.h, dH, false, n);
      swigluBackward(dH, s.g, s.u, dG, dU, n * hid, s.sig);
      mark?.('bwd.swiglu');
      this.linearBackward(l, 4, dG, s.f, dA, false, n);
      this.linearBackward(l, 5, dU, s.f, dA, true, n);
      rmsNormBackward(dA, s.m, w.ffnNorm[l]!.data, s.r2, dX, w.ffnNorm[l]!.grad, n, dim); // dX is now ∂L/∂M
      mark?.('bwd.rmsnorm');

      // --- attention: M = X_l + O Ŵoᵀ
      this.linearBackward(l, 3, dX, s.o, dO, false, n);
      attentionBackward(dO, s.q, s.k, s.v, s.probs, dq, dk, dv, shape);
      mark?.('bwd.attention');
      rope(dq, n, dim, L, hs, this.cos, this.sin, pairs, true);
      rope(dk, n, kv, L, hs, this.cos, this.sin, pairs, true);
      mark?.('bwd.rope');
      // The gradient below layer 0 reaches only the embedding: skip it unless the norm or the embedding trains.
      const below = l > 0 || w.attnNorm[0]!.grad !== null || (w.embeddingGrad ?? null) !== null;
      this.linearBackward(l, 0, dq, s.a, below ? dA : null, false, n);
      this.linearBackward(l, 1, dk, s.a, below ? dA : null, true, n);
      this.linearBackward(l, 2, dv, s.a, below ? dA : null, true, n);
      if (below) {
        rmsNormBackward(dA, s.x, w.attnNorm[l]!.data, s.r1, dX, w.attnNorm[l]!.grad, n, dim); // ∂L/∂X_l
        mark?.('bwd.rmsnorm');
      }
    }
    const gE = w.embeddingGrad;
    if (gE) {
      // X0 rows are embedding rows: each position's ∂L/∂X0 adds into its token's row, in position order.
      const ids = this.tokenIds;
      for (let t = 0; t < n; t++) {
        const row = ids[t]! * dim;
        const src = t * dim;
        for (let j = 0; j < dim; j++) gE[row + j]! += dX[src + j]!;
      }
      mark?.('bwd.embedding');
    }
  }

  /**
   * Called with (linear index = layer·KINDS + kind index, ∂L/∂Ŵ of this graph's rows) before the provider's
   * backward: the data-parallel trainer adds the workers' ∂L/∂Ŵ of the same linear here, so a provider's
   * backward runs once per step on the sum (it is linear in gradW) instead of once per shard.
   */
  beforeProviderBackward: ((linear: number, gradW: T) => void) | null = null;

  /** ∂L/∂Ŵ = dYᵀ X, handed to the provider (skipped for frozen providers). */
  private linearGrad(linear: number, p: WeightProvider<T>, dY: T, x: T, n: number, buf: T): void {
    if (!p.trainable) return;
    const target = p.gradTarget?.() ?? null;
    if (target !== null) {
      // added straight into the provider's gradient, then the workers' parts: onto the zeroed gradient the
      // same values as gradW = own + workers' followed by grad += gradW (0 + x = x), without that scratch and pass
      matmul(dY, x, target, p.rows, p.cols, n, true, false, true);
      this.mark?.('bwd.linear dW');
      if (this.beforeProviderBackward) {
        this.beforeProviderBackward(linear, target);
        this.mark?.('bwd.add worker ∂L/∂Ŵ');
      }
      return;
    }
    matmul(dY, x, buf, p.rows, p.cols, n, true, false);
    this.mark?.('bwd.linear dW');
    this.providerGrad(linear, p, buf, false);
  }

  /**
   * The workers' part of a linear's gradient (beforeProviderBackward: ∂L/∂Ŵ, or packed [∂L/∂Left | ∂L/∂Right]
   * for a low-rank linear), then the provider's backward.
   */
  private providerGrad(linear: number, p: WeightProvider<T>, buf: T, lowRank: boolean): void {
    if (this.beforeProviderBackward) {
      this.beforeProviderBackward(linear, buf);
      this.mark?.('bwd.add worker ∂L/∂Ŵ');
    }
    if (lowRank) p.backwardFactors!(buf);
    else p.backward(buf);
    this.mark?.('bwd.provider backward()');
  }
}

function checkWeights<T extends FloatArray>(w: GraphWeights<T>, f64: boolean): void {
  const c = w.config;
  const fail = (what: string): never => {
    throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, what, { hint: 'the graph weights do not match the config' });
  };
  const isRight = (a: FloatArray) => (f64 ? a instanceof Float64Array : a instanceof Float32Array);
  const check = (name: string, a: FloatArray, len: number) => {
    if (!isRight(a)) fail(`${name} is a ${a.constructor.name}, expected ${f64 ? 'Float64Array' : 'Float32Array'}`);
    if (a.length !== len) fail(`${name} has ${a.length} values, expected ${len}`);
  };
  check('embedding', w.embedding, c.vocabSize * c.dim);
  check('classifier', w.classifier, c.vocabSize * c.dim);
  if (w.attnNorm.length !== c.nLayers || w.ffnNorm.length !== c.nLayers || w.layers.length !== c.nLayers) {
    fail(`expected ${c.nLayers} layers of norms and linears`);
  }
  const norm = (name: string, nw: NormWeight<T>) => {
    check(name, nw.data, c.dim);
    if (nw.grad) check(`${name} grad`, nw.grad, c.dim);
  };
  norm('finalNorm', w.finalNorm);
  for (let l = 0; l < c.nLayers; l++) {
    norm(`attnNorm[${l}]`, w.attnNorm[l]!);
    norm(`ffnNorm[${l}]`, w.ffnNorm[l]!);
    for (const kind of LINEAR_KINDS) {
      const p = w.layers[l]![kind];
      const [r, cc] = linearShape(c, kind);
      if (!p) fail(`layer ${l} has no ${kind} provider`);
      if (p.rows !== r || p.cols !== cc) fail(`provider ${p.name} is ${p.rows}×${p.cols}, layer ${l} ${kind} needs ${r}×${cc}`);
    }
  }
}
