import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { allocFloat32 } from './matmul.js';
import type { Param } from './providers.js';

/** AdamW's per-step constants for one update (see AdamW.step). */
export interface AdamWScalars {
  gradScale: number;
  beta1: number;
  beta2: number;
  /** 1 − lr · weightDecay (1 for a parameter without decay) */
  decay: number;
  /** lr / (1 − β1^t) */
  lrOverBc1: number;
  /** 1 / (1 − β2^t) */
  invBc2: number;
  eps: number;
}

/**
 * An AdamW update of one float32 parameter in a faster kernel (the Node entry installs runtime-node's
 * WebAssembly SIMD one: float32 arithmetic, where the loop below computes in float64 and rounds once). It
 * zeroes the gradient; false means it did not take the call and the loop runs.
 */
export type AdamWKernel = (p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, s: AdamWScalars) => boolean;

let adamKernel: AdamWKernel | null = null;

/** Install (or remove, with null) the AdamW kernel; returns the previous one. */
export function setAdamWKernel(k: AdamWKernel | null): AdamWKernel | null {
  const prev = adamKernel;
  adamKernel = k;
  return prev;
}

/** Learning rate at step s: linear warm-up to `lr`, then a cosine decay to lr · minLrRatio at the end. */
export interface ScheduleOptions {
  lr: number;
  /** Total steps of the run (the cosine reaches its end there). */
  steps: number;
  /** Warm-up steps (linear from lr/warmup to lr). */
  warmupSteps: number;
  minLrRatio: number;
}

export function learningRate(step: number, o: ScheduleOptions): number {
  if (step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
  const span = Math.max(1, o.steps - o.warmupSteps);
  const progress = Math.min(1, (step - o.warmupSteps) / span);
  const min = o.lr * o.minLrRatio;
  return min + 0.5 * (o.lr - min) * (1 + Math.cos(Math.PI * progress));
}

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** The moments of one parameter. */
export interface AdamState {
  m: Float32Array;
  v: Float32Array;
}

/**
 * AdamW (Loshchilov & Hutter; PyTorch's update order): p ← p − lr·wd·p (decoupled decay, for params with
 * decay ≠ false); m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²; p ← p − lr · m̂ / (√v̂ + eps) with the
 * bias-corrected m̂, v̂. `gradScale` multiplies every gradient first (global-norm clipping). Gradients are
 * zeroed after the update. Arithmetic in float64, moments stored in float32.
 */
export class AdamW {
  readonly states: AdamState[];

  constructor(
    readonly params: Param[],
    readonly options: AdamWOptions,
  ) {
    const names = new Set<string>();
    for (const p of params) {
      if (names.has(p.name)) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `two trainable parameters are named ${p.name}`);
      names.add(p.name);
    }
    // moments from the float32 allocator: the Node entry keeps them in its kernels' memory (no copies)
    this.states = params.map((p) => ({ m: allocFloat32(p.data.length), v: allocFloat32(p.data.length) }));
  }

  /** Apply update number `t` (1-based, for bias correction). */
  step(t: number, lr: number, gradScale: number): void {
    const { beta1, beta2, eps, weightDecay } = this.options;
    const bc1 = 1 - Math.pow(beta1, t);
    const bc2 = 1 - Math.pow(beta2, t);
    for (let k = 0; k < this.params.length; k++) {
      const p = this.params[k]!;
      const { m, v } = this.states[k]!;
      const data = p.data;
      const grad = p.grad;
      const lrP = lr * (p.lrScale ?? 1);
      const decay = p.decay !== false && weightDecay !== 0 ? 1 - lrP * weightDecay : 1;
      const ak = adamKernel;
      if (ak !== null && data instanceof Float32Array && grad instanceof Float32Array) {
        if (ak(data, grad, m, v, { gradScale, beta1, beta2, decay, lrOverBc1: lrP / bc1, invBc2: 1 / bc2, eps })) continue;
      }
      for (let i = 0; i < data.length; i++) {
        const g = grad[i]! * gradScale;
        const mi = beta1 * m[i]! + (1 - beta1) * g;
        const vi = beta2 * v[i]! + (1 - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        data[i] = data[i]! * decay - (lrP * (m[i]! / bc1)) / (Math.sqrt(v[i]! / bc2) + eps);
      }
      grad.fill(0);
    }
  }
}

/**
 * Σ x² of a float32 array in a faster kernel, accumulated in float64 (the Node entry installs runtime-node's
 * WebAssembly SIMD one: two float64 lanes, so the order of the additions differs from the loop's); NaN means
 * it did not take the call.
 */
export type SumSquaresKernel = (x: Float32Array) => number;

let sumSquaresKernel: SumSquaresKernel | null = null;

/** Install (or remove, with null) the sum-of-squares kernel; returns the previous one. */
export function setSumSquaresKernel(k: SumSquaresKernel | null): SumSquaresKernel | null {
  const prev = sumSquaresKernel;
  sumSquaresKernel = k;
  return prev;
}

/** √(Σ g²) over every parameter's gradient, accumulated in float64. */
export function globalGradNorm(params: Param[]): number {
  let ss = 0;
  for (const p of params) {
    const g = p.grad;
    if (sumSquaresKernel !== null && g instanceof Float32Array) {
      const s = sumSquaresKernel(g);
      if (!Number.isNaN(s)) {
        ss += s;
        continue;
      }
    }
    for (let i = 0; i < g.length; i++) ss += g[i]! * g[i]!;
  }
  return Math.sqrt(ss);
}
