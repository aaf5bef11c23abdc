import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { LINEAR_KINDS, type LinearKind, type ModelConfig, type ModelWeights, TensorNames, headDim, kvDim, linearShape, validateModelConfig } from '@ultrasketch/model';
import { blockSizes } from '../graph.js';
import type { GpuTensor, GpuTrainContext } from './context.js';
import {
  type GpuRopeTables,
  addInto,
  attentionBackward,
  attentionForward,
  gatherRows,
  matmul,
  rmsNormBackward,
  rmsNormForward,
  rope,
  swigluBackward,
  swigluForward,
  uploadRopeTables,
} from './ops.js';
import type { GpuParam } from './optim.js';

/**
 * The CPU LlamaGraph (graph.ts) on WebGPU: the same forward (embedding, per layer RMSNorm → q, k, v → RoPE →
 * causal GQA attention → o + residual → RMSNorm → SwiGLU → down + residual; final RMSNorm, classifier) and the
 * same hand-derived backward, op for op, with every activation, weight and gradient in GPU tensors. Nothing
 * comes back unless the caller reads it.
 *
 * Linears come from `GpuWeightProvider`s — the GPU counterpart of the CPU `WeightProvider`: `weight()` is Ŵ
 * for this step's forward, `backward(gradW)` takes ∂L/∂Ŵ. A provider may instead expose `gradAccumulator()`,
 * a tensor that ∂L/∂Ŵ is ADDED into by the product itself (the dense provider's gradient: no scratch, no
 * extra pass). Only the dense provider exists so far; the codec providers (LittleBit SmoothSign, sketch
 * scatter-add, binary STE) are issue 15's next step.
 */
export interface GpuWeightProvider {
  readonly name: string;
  readonly rows: number;
  readonly cols: number;
  readonly trainable: boolean;
  weight(): GpuTensor;
  /** ∂L/∂Ŵ ([rows, cols], a scratch the graph reuses) → the provider's parameter gradients (linear in gradW). */
  backward(gradW: GpuTensor): void;
  /** When present, the graph adds ∂L/∂Ŵ straight into this tensor and does not call backward(). */
  gradAccumulator?(): GpuTensor;
  parameters(): GpuParam[];
  /** Non-parameter state a checkpoint must keep (named as the CPU provider's `buffers()`). */
  buffers?(): Record<string, GpuTensor>;
  /** After the optimizer step `step` (1-based count of completed steps), e.g. an STE rebuild. */
  afterStep?(step: number): void;
}

/** A dense linear on the GPU: frozen, or trainable with its gradient accumulated in place. */
export class GpuDenseProvider implements GpuWeightProvider {
  readonly trainable: boolean;
  private readonly data: GpuTensor;
  private readonly grad: GpuTensor | null;

  constructor(
    readonly ctx: GpuTrainContext,
    readonly name: string,
    readonly rows: number,
    readonly cols: number,
    weight: Float32Array | GpuTensor,
    trainable: boolean,
    readonly decay = true,
  ) {
    const len = rows * cols;
    if (weight.length !== len) throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `${name}: ${weight.length} values for ${rows}×${cols}`);
    this.data = weight instanceof Float32Array ? ctx.upload(weight, name) : weight;
    this.trainable = trainable;
    this.grad = trainable ? ctx.tensor(len, `${name}.grad`) : null;
  }

  weight(): GpuTensor {
    return this.data;
  }

  backward(gradW: GpuTensor): void {
    if (this.grad) addInto(this.ctx, gradW, this.grad, this.rows * this.cols);
  }

  gradAccumulator(): GpuTensor {
    if (!this.grad) throw new UltraSketchError(ErrorCodes.UNSUPPORTED, `${this.name} is frozen: it has no gradient`);
    return this.grad;
  }

  parameters(): GpuParam[] {
    return this.grad ? [{ name: this.name, data: this.data, grad: this.grad, decay: this.decay }] : [];
  }
}

export interface GpuNormWeight {
  name: string;
  data: GpuTensor;
  /** Trainable when given (∂L/∂w is ADDED here). */
  grad: GpuTensor | null;
}

export interface GpuGraphWeights {
  config: ModelConfig;
  embedding: GpuTensor;
  /** The embedding itself when tied. */
  classifier: GpuTensor;
  attnNorm: GpuNormWeight[];
  ffnNorm: GpuNormWeight[];
  finalNorm: GpuNormWeight;
  layers: Array<Record<LinearKind, GpuWeightProvider>>;
}

/**
 * Upload a model as graph weights: every linear a `GpuDenseProvider` (trainable or frozen), norms trainable when
 * `trainNorms`. The teacher is `{trainable: false, trainNorms: false}`; tensors of a frozen upload may be shared.
 */
export function uploadDenseWeights(
  ctx: GpuTrainContext,
  m: ModelWeights,
  o: {
    trainable: boolean;
    trainNorms: boolean;
    label?: string;
    /** A provider for a linear (by canonical name) instead of the dense one; undefined keeps the dense one. */
    provider?: (name: string, rows: number, cols: number, weight: Float32Array) => GpuWeightProvider | undefined;
  },
): GpuGraphWeights {
  const c = m.config;
  validateModelConfig(c);
  const tag = o.label ? `${o.label}.` : '';
  const get = (name: string): Float32Array => {
    const t = m.tensors.get(name);
    if (!t) throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `the model has no tensor ${name}`);
    return t.data;
  };
  const norm = (name: string): GpuNormWeight => ({
    name,
    data: ctx.upload(get(name), `${tag}${name}`),
    grad: o.trainNorms ? ctx.tensor(c.dim, `${tag}${name}.grad`) : null,
  });
  const embedding = ctx.upload(get(TensorNames.embedding), `${tag}embedding`);
  return {
    config: c,
    embedding,
    classifier: c.tiedClassifier ? embedding : ctx.upload(get(TensorNames.classifier), `${tag}classifier`),
    attnNorm: Array.from({ length: c.nLayers }, (_, l) => norm(TensorNames.attnNorm(l))),
    ffnNorm: Array.from({ length: c.nLayers }, (_, l) => norm(TensorNames.ffnNorm(l))),
    finalNorm: norm(TensorNames.finalNorm),
    layers: Array.from({ length: c.nLayers }, (_, l) => {
      const lp = {} as Record<LinearKind, GpuWeightProvider>;
      for (const kind of LINEAR_KINDS) {
        const [rows, cols] = linearShape(c, kind);
        const name = TensorNames.linear(l, kind);
        lp[kind] = o.provider?.(name, rows, cols, get(name)) ?? new GpuDenseProvider(ctx, `${tag}${name}`, rows, cols, get(name), o.trainable);
      }
      return lp;
    }),
  };
}

/** Every trainable parameter of graph weights: linears' (in layer, LINEAR_KINDS order), then norms (decay off). */
export function graphParameters(w: GpuGraphWeights): GpuParam[] {
  const out: GpuParam[] = [];
  for (const layer of w.layers) for (const kind of LINEAR_KINDS) out.push(...layer[kind].parameters());
  for (const nw of [...w.attnNorm, ...w.ffnNorm, w.finalNorm]) if (nw.grad) out.push({ name: nw.name, data: nw.data, grad: nw.grad, decay: false });
  return out;
}

interface Acts {
  x: GpuTensor;
  r1: GpuTensor;
  a: GpuTensor;
  q: GpuTensor;
  k: GpuTensor;
  v: GpuTensor;
  probs: GpuTensor;
  o: GpuTensor;
  m: GpuTensor;
  r2: GpuTensor;
  f: GpuTensor;
  g: GpuTensor;
  u: GpuTensor;
  h: GpuTensor;
  sig: GpuTensor;
}

export interface GpuGraphOptions {
  batch: number;
  seqLen: number;
  /** Keep activations for backward (default true); a teacher sets false (one set of layer buffers, inputs kept). */
  training?: boolean;
  label?: string;
}

export class GpuLlamaGraph {
  readonly config: ModelConfig;
  readonly batch: number;
  readonly seqLen: number;
  readonly training: boolean;
  /** Logits of the last forward [rows, vocab]. */
  readonly logits: GpuTensor;
  private readonly acts: Acts[];
  private readonly xLast: GpuTensor;
  private readonly rf: GpuTensor;
  private readonly xf: GpuTensor;
  private readonly tokens: GpuTensor;
  private readonly tables: GpuRopeTables;
  private readonly d: Record<'dX' | 'dA' | 'dq' | 'dk' | 'dv' | 'dO' | 'dH' | 'dG' | 'dU' | 'gradW', GpuTensor>;
  private nRows = 0;
  /** Ŵ of every linear as the last forward asked for it (once per step: a codec provider builds it on the GPU). */
  private readonly wCur: Array<Record<LinearKind, GpuTensor>>;

  constructor(
    readonly ctx: GpuTrainContext,
    readonly weights: GpuGraphWeights,
    options: GpuGraphOptions,
  ) {
    const c = weights.config;
    validateModelConfig(c);
    const { batch, seqLen } = options;
    if (!Number.isInteger(batch) || batch < 1 || !Number.isInteger(seqLen) || seqLen < 1 || seqLen > c.seqLen) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `batch ${batch} × seqLen ${seqLen}: both must be positive integers and seqLen ≤ the model's ${c.seqLen}`);
    }
    this.config = c;
    this.batch = batch;
    this.seqLen = seqLen;
    this.training = options.training ?? true;
    const tag = options.label ?? (this.training ? 'student' : 'teacher');
    const n = batch * seqLen;
    const dim = c.dim;
    const kv = kvDim(c);
    const hid = c.hiddenDim;
    const T = (len: number, name: string) => ctx.tensor(len, `${tag}.${name}`);
    const mk = (l: number | 'shared'): Acts => ({
      x: T(n * dim, `x${l}`),
      r1: T(n, `r1.${l}`),
      a: T(n * dim, `a${l}`),
      q: T(n * dim, `q${l}`),
      k: T(n * kv, `k${l}`),
      v: T(n * kv, `v${l}`),
      probs: T(batch * c.nHeads * seqLen * seqLen, `probs${l}`),
      o: T(n * dim, `o${l}`),
      m: T(n * dim, `m${l}`),
      r2: T(n, `r2.${l}`),
      f: T(n * dim, `f${l}`),
      g: T(n * hid, `g${l}`),
      u: T(n * hid, `u${l}`),
      h: T(n * hid, `h${l}`),
      sig: T(n * hid, `sig${l}`),
    });
    if (this.training) this.acts = Array.from({ length: c.nLayers }, (_, l) => mk(l));
    else {
      const shared = mk('shared');
      this.acts = Array.from({ length: c.nLayers }, (_, l) => ({ ...shared, x: T(n * dim, `x${l}`) }));
    }
    this.xLast = T(n * dim, 'xLast');
    this.rf = T(n, 'rf');
    this.xf = T(n * dim, 'xf');
    this.logits = T(n * c.vocabSize, 'logits');
    this.tokens = T(n, 'tokens');
    this.tables = uploadRopeTables(ctx, seqLen, headDim(c), c.ropeTheta);
    this.wCur = Array.from({ length: c.nLayers }, () => ({}) as Record<LinearKind, GpuTensor>);
    const t = this.training ? 1 : 0;
    let maxW = 0;
    for (const kind of LINEAR_KINDS) {
      const [r, cc] = linearShape(c, kind);
      maxW = Math.max(maxW, r * cc);
    }
    this.d = {
      dX: T(t * n * dim, 'dX'),
      dA: T(t * n * dim, 'dA'),
      dq: T(t * n * dim, 'dq'),
      dk: T(t * n * kv, 'dk'),
      dv: T(t * n * kv, 'dv'),
      dO: T(t * n * dim, 'dO'),
      dH: T(t * n * hid, 'dH'),
      dG: T(t * n * hid, 'dG'),
      dU: T(t * n * hid, 'dU'),
      gradW: T(t * maxW, 'gradW'),
    };
  }

  /** Rows of the last forward. */
  get rows(): number {
    return this.nRows;
  }

  /** The output of decoder layer l (X_{l+1}) from the last forward, [rows, dim]. */
  hidden(layer: number): GpuTensor {
    return layer + 1 < this.config.nLayers ? this.acts[layer + 1]!.x : this.xLast;
  }

  /** Forward over nSeq ≤ batch sequences of seqLen tokens (ids checked here, uploaded as u32). */
  forward(tokens: ArrayLike<number>, nSeq = this.batch): void {
    const c = this.config;
    const L = this.seqLen;
    if (!Number.isInteger(nSeq) || nSeq < 1 || nSeq > this.batch || tokens.length < nSeq * L) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `forward: ${tokens.length} tokens for ${nSeq} sequences of ${L} (graph batch ${this.batch})`);
    }
    const n = nSeq * L;
    const ids = new Uint32Array(n);
    for (let t = 0; t < n; t++) {
      const tok = tokens[t]!;
      if (!Number.isInteger(tok) || tok < 0 || tok >= c.vocabSize) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `token id ${tok} is outside 0..${c.vocabSize - 1}`);
      ids[t] = tok;
    }
    this.nRows = n;
    const ctx = this.ctx;
    const w = this.weights;
    const { dim, kv, hid, hs, pairs, shape } = blockSizes(c, nSeq, L);
    ctx.write(this.tokens, ids);
    gatherRows(ctx, this.tokens, w.embedding, this.acts[0]!.x, n, dim);
    for (let l = 0; l < c.nLayers; l++) {
      const s = this.acts[l]!;
      const W = this.wCur[l]!;
      for (const kind of LINEAR_KINDS) W[kind] = w.layers[l]![kind].weight(); // once per step, kept for backward
      const next = this.hidden(l);
      rmsNormForward(ctx, s.x, w.attnNorm[l]!.data, s.a, s.r1, n, dim, c.normEps);
      matmul(ctx, s.a, W.q, s.q, n, dim, dim, false, true);
      matmul(ctx, s.a, W.k, s.k, n, kv, dim, false, true);
      matmul(ctx, s.a, W.v, s.v, n, kv, dim, false, true);
      rope(ctx, s.q, this.tables, n, dim, L, hs, pairs, false);
      rope(ctx, s.k, this.tables, n, kv, L, hs, pairs, false);
      attentionForward(ctx, s.q, s.k, s.v, s.probs, s.o, shape);
      matmul(ctx, s.o, W.o, s.m, n, dim, dim, false, true);
      addInto(ctx, s.x, s.m, n * dim); // M = X + O Ŵoᵀ
      rmsNormForward(ctx, s.m, w.ffnNorm[l]!.data, s.f, s.r2, n, dim, c.normEps);
      matmul(ctx, s.f, W.gate, s.g, n, hid, dim, false, true);
      matmul(ctx, s.f, W.up, s.u, n, hid, dim, false, true);
      swigluForward(ctx, s.g, s.u, s.h, s.sig, n * hid);
      matmul(ctx, s.h, W.down, next, n, dim, hid, false, true);
      addInto(ctx, s.m, next, n * dim); // X' = M + H Ŵdᵀ
    }
    rmsNormForward(ctx, this.xLast, w.finalNorm.data, this.xf, this.rf, n, dim, c.normEps);
    matmul(ctx, this.xf, w.classifier, this.logits, n, c.vocabSize, dim, false, true);
  }

  /**
   * Backward of the last forward (the CPU LlamaGraph.backward, op for op). `onLayerOutputGrad(l, dX)` may add
   * ∂L/∂X_{l+1} terms (hidden-state losses) into dX. Linear gradients go to the providers; norm gradients are
   * ADDED into the norms' grads.
   */
  backward(dLogits: GpuTensor, onLayerOutputGrad?: (layer: number, dX: GpuTensor) => void): void {
    if (!this.training) throw new UltraSketchError(ErrorCodes.UNSUPPORTED, 'backward() on a graph built with training: false');
    const c = this.config;
    const ctx = this.ctx;
    const n = this.nRows;
    const L = this.seqLen;
    const { dim, kv, hid, hs, pairs, shape } = blockSizes(c, n / L, L);
    const { dX, dA, dq, dk, dv, dO, dH, dG, dU } = this.d;
    const w = this.weights;
    matmul(ctx, dLogits, w.classifier, dA, n, dim, c.vocabSize, false, false); // classifier (frozen): dXf = dZ E
    ctx.zero(dX, 0, n * dim);
    rmsNormBackward(ctx, dA, this.xLast, w.finalNorm.data, this.rf, dX, w.finalNorm.grad, n, dim);
    for (let l = c.nLayers - 1; l >= 0; l--) {
      const s = this.acts[l]!;
      const prov = w.layers[l]!;
      const W = this.wCur[l]!;
      onLayerOutputGrad?.(l, dX);
      // FFN: X_{l+1} = M + H Ŵdᵀ
      matmul(ctx, dX, W.down, dH, n, hid, dim, false, false);
      this.linearGrad(prov.down, dX, s.h, n);
      swigluBackward(ctx, dH, s.g, s.u, s.sig, dG, dU, n * hid);
      matmul(ctx, dG, W.gate, dA, n, dim, hid, false, false);
      matmul(ctx, dU, W.up, dA, n, dim, hid, false, false, true);
      this.linearGrad(prov.gate, dG, s.f, n);
      this.linearGrad(prov.up, dU, s.f, n);
      rmsNormBackward(ctx, dA, s.m, w.ffnNorm[l]!.data, s.r2, dX, w.ffnNorm[l]!.grad, n, dim); // dX = ∂L/∂M
      // attention: M = X_l + O Ŵoᵀ
      matmul(ctx, dX, W.o, dO, n, dim, dim, false, false);
      this.linearGrad(prov.o, dX, s.o, n);
      attentionBackward(ctx, dO, s.q, s.k, s.v, s.probs, dq, dk, dv, shape);
      rope(ctx, dq, this.tables, n, dim, L, hs, pairs, true);
      rope(ctx, dk, this.tables, n, kv, L, hs, pairs, true);
      this.linearGrad(prov.q, dq, s.a, n);
      this.linearGrad(prov.k, dk, s.a, n);
      this.linearGrad(prov.v, dv, s.a, n);
      // below layer 0 the gradient reaches only the frozen embedding: skipped unless the norm trains
      if (l > 0 || w.attnNorm[0]!.grad) {
        matmul(ctx, dq, W.q, dA, n, dim, dim, false, false);
        matmul(ctx, dk, W.k, dA, n, dim, kv, false, false, true);
        matmul(ctx, dv, W.v, dA, n, dim, kv, false, false, true);
        rmsNormBackward(ctx, dA, s.x, w.attnNorm[l]!.data, s.r1, dX, w.attnNorm[l]!.grad, n, dim); // ∂L/∂X_l
      }
    }
  }

  /** ∂L/∂Ŵ = dYᵀ X: added into the provider's accumulator, or computed into a scratch and handed to backward(). */
  private linearGrad(p: GpuWeightProvider, dY: GpuTensor, x: GpuTensor, n: number): void {
    if (!p.trainable) return;
    const acc = p.gradAccumulator?.();
    if (acc) {
      matmul(this.ctx, dY, x, acc, p.rows, p.cols, n, true, false, true);
      return;
    }
    matmul(this.ctx, dY, x, this.d.gradW, p.rows, p.cols, n, true, false);
    p.backward(this.d.gradW);
  }
}
