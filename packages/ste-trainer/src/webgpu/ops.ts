import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { type AttentionShape, type DistillLossResult, ropeTables } from '../ops.js';
import type { GpuTensor, GpuTrainContext } from './context.js';
import { DISTILL_STATS, MM_TILE, MM_WORDS, PARTIAL_BLOCK, ROW_WG } from './programs.js';

/**
 * The CPU trainer's ops (ops.ts, matmul.ts) on WebGPU, with the same signatures in GPU tensors: each call
 * encodes its dispatches into the context's pending commands (nothing waits); results are read with
 * `ctx.read`. Same conventions as the CPU ops: row-major tensors, `n` rows of batch × positions, backward
 * functions that ADD into input gradients where the CPU ones do (rmsNormBackward's dx and dw), and overwrite
 * where they overwrite (attention's dq/dk/dv, SwiGLU's dg/du).
 */

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);
/** The bit pattern of x as an f32 (uniform words carry f32 scalars this way). */
export function f32Bits(x: number): number {
  F32[0] = x;
  return U32[0]!;
}

function shapeError(what: string): never {
  throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, what, { hint: 'the GPU tensors are smaller than the shapes passed to the op' });
}

function need(t: GpuTensor, elements: number, op: string, role: string): void {
  if (t.length < elements) shapeError(`${op}: ${role} ${t.label} has ${t.length} elements, needs ${elements}`);
}

function distinct(op: string, out: GpuTensor, ...inputs: GpuTensor[]): void {
  for (const i of inputs) {
    if (i === out) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `${op}: the output ${out.label} is also an input`, {
        hint: 'WebGPU cannot bind one buffer as both read-only and writable in a dispatch: pass a separate output tensor',
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------- matmul

/** How a matmul operand is addressed (elements): X[off + zo + r·row + c·col], zo = (z/zInner)·outer + ((z%zInner)/group)·inner. */
export interface MatmulOperand {
  off?: number;
  row: number;
  col: number;
  outer?: number;
  inner?: number;
  group?: number;
}

export interface StridedMatmul {
  m: number;
  n: number;
  k: number;
  /** Independent products (default 1): z = 0..batch−1. */
  batch?: number;
  /** z splits as (z / zInner, z % zInner) for the operands' outer and inner strides (default 1). */
  zInner?: number;
  accumulate?: boolean;
  a: MatmulOperand;
  b: MatmulOperand;
  c: MatmulOperand;
}

function lastIndex(o: MatmulOperand, rows: number, cols: number, batch: number, zInner: number): number {
  const zMax = batch - 1;
  const outer = Math.floor(zMax / zInner) * (o.outer ?? 0);
  // the largest inner offset over z (inner index (z % zInner) / group is at most (min(zMax, zInner − 1)) / group)
  const inner = Math.floor(Math.min(zMax, zInner - 1) / (o.group ?? 1)) * (o.inner ?? 0);
  return (o.off ?? 0) + outer + inner + (rows - 1) * o.row + (cols - 1) * o.col;
}

/**
 * C[i, j] (+)= Σ_p op(A)[i, p] op(B)[p, j] with every operand addressed by strides (see MatmulOperand): the
 * tiled workgroup-memory kernel behind every product of the graph, attention's batched ones included.
 */
export function matmulStrided(ctx: GpuTrainContext, A: GpuTensor, B: GpuTensor, C: GpuTensor, s: StridedMatmul): void {
  const batch = s.batch ?? 1;
  const zInner = s.zInner ?? 1;
  const { m, n, k } = s;
  if (![m, n, k, batch, zInner].every((v) => Number.isInteger(v) && v >= 0) || zInner < 1) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `matmul: bad shape m ${m} n ${n} k ${k} batch ${batch} zInner ${zInner}`);
  }
  distinct('matmul', C, A, B);
  if (m === 0 || n === 0 || batch === 0) return;
  if (k === 0) {
    if (!s.accumulate) shapeError('matmul: k = 0 without accumulate leaves C undefined; zero it instead');
    return;
  }
  if (lastIndex(s.a, m, k, batch, zInner) >= A.length) shapeError(`matmul: A ${A.length} elements are too few for ${m}×${k} (batch ${batch})`);
  if (lastIndex(s.b, k, n, batch, zInner) >= B.length) shapeError(`matmul: B ${B.length} elements are too few for ${k}×${n} (batch ${batch})`);
  if (lastIndex(s.c, m, n, batch, zInner) >= C.length) shapeError(`matmul: C ${C.length} elements are too few for ${m}×${n} (batch ${batch})`);
  const w = new Uint32Array(MM_WORDS);
  w.set([m, n, k, s.accumulate ? 1 : 0, zInner]);
  const put = (at: number, o: MatmulOperand) => w.set([o.off ?? 0, o.row, o.col, o.outer ?? 0, o.inner ?? 0, o.group ?? 1], at);
  put(8, s.a);
  put(16, s.b);
  put(24, s.c);
  ctx.dispatch(ctx.programs.matmul, w, [A, B, C], [Math.ceil(n / MM_TILE), Math.ceil(m / MM_TILE), batch]);
}

/**
 * The CPU `matmul`'s contract: C[m, n] = op(A)[m, k] · op(B)[k, n] (+ C when accumulate), op(A) = A stored
 * [m, k] or (transA) Aᵀ with A stored [k, m]; op(B) = B stored [k, n] or (transB) Bᵀ with B stored [n, k].
 */
export function matmul(
  ctx: GpuTrainContext,
  A: GpuTensor,
  B: GpuTensor,
  C: GpuTensor,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  accumulate = false,
): void {
  matmulStrided(ctx, A, B, C, {
    m,
    n,
    k,
    accumulate,
    a: transA ? { row: 1, col: m } : { row: k, col: 1 },
    b: transB ? { row: 1, col: k } : { row: n, col: 1 },
    c: { row: n, col: 1 },
  });
}

// --------------------------------------------------------------------------------------------- RMSNorm

/** y = w ⊙ x · r, r[t] = 1/√(mean(x[t]²) + eps) saved in r (the CPU rmsNormForward). */
export function rmsNormForward(ctx: GpuTrainContext, x: GpuTensor, w: GpuTensor, y: GpuTensor, r: GpuTensor, n: number, dim: number, eps: number): void {
  need(x, n * dim, 'rmsNormForward', 'x');
  need(w, dim, 'rmsNormForward', 'w');
  need(y, n * dim, 'rmsNormForward', 'y');
  need(r, n, 'rmsNormForward', 'r');
  distinct('rmsNormForward', y, x, w);
  distinct('rmsNormForward', r, x, w, y);
  const { grid, gridX } = rowGrid(ctx, n);
  ctx.dispatch(ctx.programs.rmsnormFwd, Uint32Array.of(n, dim, gridX, f32Bits(eps)), [x, w, y, r], grid);
}

/**
 * Backward of rmsNormForward (the CPU rmsNormBackward): dx += r·(w ⊙ dy) − x·r³/dim·Σ dy⊙w⊙x (or = with
 * `accumulate` false); dw (when given) += Σ_t dy[t] ⊙ x[t]·r[t]. Two dispatches: rows, then columns.
 */
export function rmsNormBackward(
  ctx: GpuTrainContext,
  dy: GpuTensor,
  x: GpuTensor,
  w: GpuTensor,
  r: GpuTensor,
  dx: GpuTensor,
  dw: GpuTensor | null,
  n: number,
  dim: number,
  accumulate = true,
): void {
  for (const [t, len, role] of [[dy, n * dim, 'dy'], [x, n * dim, 'x'], [w, dim, 'w'], [r, n, 'r'], [dx, n * dim, 'dx']] as const) need(t, len, 'rmsNormBackward', role);
  distinct('rmsNormBackward', dx, dy, x, w, r);
  const { grid, gridX } = rowGrid(ctx, n);
  ctx.dispatch(ctx.programs.rmsnormBwdX, Uint32Array.of(n, dim, gridX, accumulate ? 1 : 0), [dy, x, w, r, dx], grid);
  if (dw) {
    need(dw, dim, 'rmsNormBackward', 'dw');
    distinct('rmsNormBackward', dw, dy, x, r, dx);
    const c = rowGrid(ctx, dim);
    ctx.dispatch(ctx.programs.rmsnormBwdW, Uint32Array.of(n, dim, c.gridX, 0), [dy, x, r, dw], c.grid);
  }
}

function rowGrid(ctx: GpuTrainContext, rows: number) {
  return ctx.grid1d(rows, 1);
}

// ------------------------------------------------------------------------------------------------ RoPE

/** The cos/sin tables on the GPU (computed by the CPU trainer's ropeTables: the same float32 values). */
export interface GpuRopeTables {
  cos: GpuTensor;
  sin: GpuTensor;
  seqLen: number;
  headSize: number;
}

export function uploadRopeTables(ctx: GpuTrainContext, seqLen: number, headSize: number, theta: number): GpuRopeTables {
  const [cos, sin] = ropeTables(seqLen, headSize, theta);
  return { cos: ctx.upload(cos, 'rope.cos'), sin: ctx.upload(sin, 'rope.sin'), seqLen, headSize };
}

/** Rotate every head of every row in place (the CPU `rope`; `inverse` is its backward). */
export function rope(
  ctx: GpuTrainContext,
  vec: GpuTensor,
  tables: GpuRopeTables,
  n: number,
  width: number,
  seqLen: number,
  headSize: number,
  pairs: boolean,
  inverse: boolean,
): void {
  if (headSize % 2 !== 0 || width % headSize !== 0) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `rope: width ${width} is not whole heads of an even size ${headSize}`);
  if (tables.headSize !== headSize || tables.seqLen < seqLen) shapeError(`rope: tables for ${tables.seqLen} positions × head ${tables.headSize}, need ${seqLen} × ${headSize}`);
  need(vec, n * width, 'rope', 'vec');
  const { grid, gridX } = ctx.grid1d((n * width) / 2, ROW_WG);
  ctx.dispatch(
    ctx.programs.rope,
    Uint32Array.of(n, width, seqLen, headSize, pairs ? 1 : 0, gridX, f32Bits(inverse ? -1 : 1), 0),
    [tables.cos, tables.sin, vec],
    grid,
  );
}

// ---------------------------------------------------------------------------------------------- SwiGLU

/** h = silu(g) ⊙ u, σ(g) saved in sig (the CPU swigluForward with `sig`). */
export function swigluForward(ctx: GpuTrainContext, g: GpuTensor, u: GpuTensor, h: GpuTensor, sig: GpuTensor, count: number): void {
  for (const [t, role] of [[g, 'g'], [u, 'u'], [h, 'h'], [sig, 'sig']] as const) need(t, count, 'swigluForward', role);
  distinct('swigluForward', h, g, u);
  distinct('swigluForward', sig, g, u, h);
  const { grid, gridX } = ctx.grid1d(count, ROW_WG);
  ctx.dispatch(ctx.programs.swigluFwd, Uint32Array.of(count, gridX, 0, 0), [g, u, h, sig], grid);
}

/** dg = dh ⊙ u ⊙ σ(1 + g(1 − σ)); du = dh ⊙ silu(g) (overwrites; the CPU swigluBackward). */
export function swigluBackward(
  ctx: GpuTrainContext,
  dh: GpuTensor,
  g: GpuTensor,
  u: GpuTensor,
  sig: GpuTensor,
  dg: GpuTensor,
  du: GpuTensor,
  count: number,
): void {
  for (const [t, role] of [[dh, 'dh'], [g, 'g'], [u, 'u'], [sig, 'sig'], [dg, 'dg'], [du, 'du']] as const) need(t, count, 'swigluBackward', role);
  distinct('swigluBackward', dg, dh, g, u, sig);
  distinct('swigluBackward', du, dh, g, u, sig, dg);
  const { grid, gridX } = ctx.grid1d(count, ROW_WG);
  ctx.dispatch(ctx.programs.swigluBwd, Uint32Array.of(count, gridX, 0, 0), [dh, g, u, sig, dg, du], grid);
}

/** y += x over `count` elements (residual adds). */
export function addInto(ctx: GpuTrainContext, x: GpuTensor, y: GpuTensor, count: number): void {
  need(x, count, 'addInto', 'x');
  need(y, count, 'addInto', 'y');
  distinct('addInto', y, x);
  const { grid, gridX } = ctx.grid1d(count, ROW_WG);
  ctx.dispatch(ctx.programs.add, Uint32Array.of(count, gridX, 0, 0), [x, y], grid);
}

/** x[t] = embedding[tokens[t]] for n tokens (u32 ids). */
export function gatherRows(ctx: GpuTrainContext, tokens: GpuTensor, embedding: GpuTensor, x: GpuTensor, n: number, dim: number): void {
  need(tokens, n, 'gatherRows', 'tokens');
  need(x, n * dim, 'gatherRows', 'x');
  distinct('gatherRows', x, tokens, embedding);
  const { grid, gridX } = ctx.grid1d(n * dim, ROW_WG);
  ctx.dispatch(ctx.programs.gather, Uint32Array.of(n, dim, gridX, 0), [tokens, embedding, x], grid);
}

// ------------------------------------------------------------------------------------------- attention

function attentionDims(s: AttentionShape) {
  const { batch, seqLen: L, nHeads, nKvHeads, headSize: hs } = s;
  if (![batch, L, nHeads, nKvHeads, hs].every((v) => Number.isInteger(v) && v > 0) || nHeads % nKvHeads !== 0) {
    throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `attention: bad shape ${JSON.stringify(s)}`, { hint: 'nHeads must be a multiple of nKvHeads' });
  }
  return { batch, L, nH: nHeads, nKv: nKvHeads, hs, dim: nHeads * hs, kv: nKvHeads * hs, G: nHeads / nKvHeads, scale: 1 / Math.sqrt(hs) };
}

/** Operand addressing of attention's tensors for z = (sequence, head) (zInner = nHeads). */
function attnLayouts(d: ReturnType<typeof attentionDims>) {
  const { L, nH, hs, dim, kv, G } = d;
  return {
    /** q-like [n, dim]: rows are positions of head h. */
    q: { row: dim, col: 1, outer: L * dim, inner: hs, group: 1 },
    /** k-like [n, kv] for query head h: the KV head h / G. */
    kv: { row: kv, col: 1, outer: L * kv, inner: hs, group: G },
    /** k-like transposed: op[p, j] = K[j, p]. */
    kvT: { row: 1, col: kv, outer: L * kv, inner: hs, group: G },
    /** probabilities [batch, nHeads, L, L]. */
    p: { row: L, col: 1, outer: nH * L * L, inner: L * L, group: 1 },
  };
}

/**
 * Causal softmax attention with grouped KV heads (the CPU attentionForward): S = Q Kᵀ per (sequence, head),
 * written straight into `probs` [batch, nHeads, L, L], then the causal soft-max in place, then O = P V.
 * Three dispatches; the upper triangle is computed and discarded as on the CPU.
 */
export function attentionForward(ctx: GpuTrainContext, q: GpuTensor, k: GpuTensor, v: GpuTensor, probs: GpuTensor, out: GpuTensor, s: AttentionShape): void {
  const d = attentionDims(s);
  const { batch, L, nH, hs, scale } = d;
  const lay = attnLayouts(d);
  const z = batch * nH;
  need(probs, z * L * L, 'attentionForward', 'probs');
  matmulStrided(ctx, q, k, probs, { m: L, n: L, k: hs, batch: z, zInner: nH, a: lay.q, b: lay.kvT, c: lay.p });
  const { grid, gridX } = rowGrid(ctx, z * L);
  ctx.dispatch(ctx.programs.softmaxCausal, Uint32Array.of(z * L, L, gridX, f32Bits(scale)), [probs], grid);
  matmulStrided(ctx, probs, v, out, { m: L, n: hs, k: L, batch: z, zInner: nH, a: lay.p, b: lay.kv, c: lay.q });
}

/**
 * Backward of attentionForward (the CPU attentionBackward): dP = dO Vᵀ; dS = scale·P ⊙ (dP − rowsum(P ⊙ dP));
 * dQ = dS K; dK = Σ_heads of the group dSᵀ Q; dV = Σ_heads Pᵀ dO (the group's heads added by accumulating
 * dispatches, one per head of a group). dq, dk, dv are overwritten. dP lives in a scratch tensor of the context.
 */
export function attentionBackward(
  ctx: GpuTrainContext,
  dout: GpuTensor,
  q: GpuTensor,
  k: GpuTensor,
  v: GpuTensor,
  probs: GpuTensor,
  dq: GpuTensor,
  dk: GpuTensor,
  dv: GpuTensor,
  s: AttentionShape,
): void {
  const d = attentionDims(s);
  const { batch, L, nH, nKv, hs, dim, kv, G, scale } = d;
  const lay = attnLayouts(d);
  const z = batch * nH;
  need(probs, z * L * L, 'attentionBackward', 'probs');
  distinct('attentionBackward', dq, dout, q, k, v, probs);
  distinct('attentionBackward', dk, dout, q, k, v, probs, dq);
  distinct('attentionBackward', dv, dout, q, k, v, probs, dq, dk);
  const dP = ctx.scratchTensor('attention.dP', z * L * L);
  matmulStrided(ctx, dout, v, dP, { m: L, n: L, k: hs, batch: z, zInner: nH, a: lay.q, b: lay.kvT, c: lay.p });
  const { grid, gridX } = rowGrid(ctx, z * L);
  ctx.dispatch(ctx.programs.softmaxBwd, Uint32Array.of(z * L, L, gridX, f32Bits(scale)), [probs, dP], grid);
  matmulStrided(ctx, dP, k, dq, { m: L, n: hs, k: L, batch: z, zInner: nH, a: lay.p, b: lay.kv, c: lay.q });
  // dK, dV per (sequence, KV head): z = b·nKv + g; head j of the group is query head g·G + j.
  const zk = batch * nKv;
  const kvOut = { row: kv, col: 1, outer: L * kv, inner: hs, group: 1 };
  for (let j = 0; j < G; j++) {
    const pT = { off: j * L * L, row: 1, col: L, outer: nH * L * L, inner: G * L * L, group: 1 };
    const qj = { off: j * hs, row: dim, col: 1, outer: L * dim, inner: G * hs, group: 1 };
    const acc = j > 0;
    matmulStrided(ctx, dP, q, dk, { m: L, n: hs, k: L, batch: zk, zInner: nKv, accumulate: acc, a: pT, b: qj, c: kvOut });
    matmulStrided(ctx, probs, dout, dv, { m: L, n: hs, k: L, batch: zk, zInner: nKv, accumulate: acc, a: pT, b: qj, c: kvOut });
  }
}

// ---------------------------------------------------------------------------------------------- losses

/** A loss whose figures are still on the GPU: `read()` runs what was encoded and brings them back. */
export interface PendingLoss<T> {
  read(): Promise<T>;
}

/** The distillation loss in flight: its per-row figures' tensor, and how to turn them into the result. */
export interface PendingDistill extends PendingLoss<DistillLossResult> {
  /** n · DISTILL_STATS floats: per row KL, CE, top-1 agreement, Σz, Σx. */
  readonly stats: GpuTensor;
  /** The result from the stats' values (read by the caller, e.g. together with other figures). */
  summarize(values: ArrayLike<number>): DistillLossResult;
}

export interface GpuDistillOptions {
  /** Where the per-row statistics go (n · 5 floats); default a context scratch (read it before the next call). */
  stats?: GpuTensor;
}

/**
 * The CPU distillLosses on the GPU: per row, KL(teacher ‖ student), CE on `targets` (u32), top-1 agreement and
 * (when dLogits is given) dz = (wKl (p_s − p_t) + wCe (p_s − onehot(y))) / denom. `teacherLogits` null: CE
 * only (wKl must be 0). The row figures come back with `read()` and are averaged there in float64.
 */
export function distillLosses(
  ctx: GpuTrainContext,
  logits: GpuTensor,
  teacherLogits: GpuTensor | null,
  targets: GpuTensor,
  n: number,
  vocab: number,
  wKl: number,
  wCe: number,
  dLogits: GpuTensor | null,
  denom = n,
  options: GpuDistillOptions = {},
): PendingDistill {
  need(logits, n * vocab, 'distillLosses', 'logits');
  need(targets, n, 'distillLosses', 'targets');
  if (teacherLogits) need(teacherLogits, n * vocab, 'distillLosses', 'teacher logits');
  else if (wKl !== 0) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'distillLosses: a KL weight without teacher logits', { hint: 'pass the teacher logits, or wKl 0' });
  if (dLogits) {
    need(dLogits, n * vocab, 'distillLosses', 'dLogits');
    distinct('distillLosses', dLogits, logits, targets, ...(teacherLogits ? [teacherLogits] : []));
  }
  const stats = options.stats ?? ctx.scratchTensor('distill.stats', n * DISTILL_STATS);
  need(stats, n * DISTILL_STATS, 'distillLosses', 'stats');
  const dz = dLogits ?? ctx.scratchTensor('distill.nodz', 1);
  const flags = (teacherLogits ? 1 : 0) | (dLogits ? 2 : 0);
  const { grid, gridX } = rowGrid(ctx, n);
  ctx.dispatch(
    ctx.programs.distill,
    Uint32Array.of(n, vocab, gridX, flags, f32Bits(wKl / denom), f32Bits(wCe / denom), 0, 0),
    [logits, teacherLogits ?? logits, targets, dz, stats],
    grid,
  );
  const summarize = (st: ArrayLike<number>): DistillLossResult => {
    let kl = 0;
    let ce = 0;
    let agree = 0;
    let studentFinite = true;
    let teacherFinite = true;
    for (let t = 0; t < n; t++) {
      const o = t * DISTILL_STATS;
      kl += st[o]!;
      ce += st[o + 1]!;
      agree += st[o + 2]!;
      if (!Number.isFinite(st[o + 3]!)) studentFinite = false;
      if (!Number.isFinite(st[o + 4]!)) teacherFinite = false;
    }
    const t = teacherLogits !== null;
    return { kl: t ? kl / n : NaN, ce: ce / n, top1: t ? agree / n : NaN, studentFinite, teacherFinite };
  };
  return { stats, summarize, read: async () => summarize(await ctx.read(stats, 0, n * DISTILL_STATS)) };
}

export interface GpuMseOptions {
  /** Where the partial sums go, from `offset` (⌈count/1024⌉ floats); default a context scratch. */
  partial?: GpuTensor;
  offset?: number;
}

/** Partial sums a reduction over `count` elements writes. */
export function partialCount(count: number): number {
  return Math.ceil(count / PARTIAL_BLOCK);
}

/**
 * The CPU mseLoss: mean squared error between x and target, and (dx given) dx += weight·2(x − target)/denom.
 * `read()` sums the workgroups' partial sums in float64.
 */
export function mseLoss(
  ctx: GpuTrainContext,
  x: GpuTensor,
  target: GpuTensor,
  count: number,
  weight: number,
  dx: GpuTensor | null,
  denom = count,
  options: GpuMseOptions = {},
): PendingLoss<number> {
  need(x, count, 'mseLoss', 'x');
  need(target, count, 'mseLoss', 'target');
  if (dx) {
    need(dx, count, 'mseLoss', 'dx');
    distinct('mseLoss', dx, x, target);
  }
  const parts = partialCount(count);
  const off = options.offset ?? 0;
  const partial = options.partial ?? ctx.scratchTensor('mse.partial', parts);
  need(partial, off + parts, 'mseLoss', 'partial');
  const { grid, gridX } = ctx.grid1d(count, PARTIAL_BLOCK);
  ctx.dispatch(
    ctx.programs.mse,
    Uint32Array.of(count, gridX, dx ? 1 : 0, off, f32Bits((2 * weight) / denom), 0, 0, 0),
    [x, target, dx ?? ctx.scratchTensor('mse.nodx', 1), partial],
    grid,
  );
  return {
    read: async () => {
      const p = await ctx.read(partial, off, parts);
      let s = 0;
      for (let i = 0; i < parts; i++) s += p[i]!;
      return s / count;
    },
  };
}

/** Σ g² of `count` elements into partial[offset..offset + partialCount(count)). */
export function sumSquares(ctx: GpuTrainContext, g: GpuTensor, count: number, partial: GpuTensor, offset: number): void {
  need(g, count, 'sumSquares', 'g');
  need(partial, offset + partialCount(count), 'sumSquares', 'partial');
  distinct('sumSquares', partial, g);
  const { grid, gridX } = ctx.grid1d(count, PARTIAL_BLOCK);
  ctx.dispatch(ctx.programs.sumsq, Uint32Array.of(count, gridX, offset, 0), [g, partial], grid);
}
