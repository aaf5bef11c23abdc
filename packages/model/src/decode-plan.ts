/**
 * A decode plan: one generated token's forward pass as a flat list of kernel calls with fixed addresses — what a
 * runtime can compile into one program (runtime-node's `compileDecodeProgram`: one WebAssembly function that
 * makes every call itself), so a token costs one call from JS instead of ~15 per layer, each with its checks and
 * argument marshalling. The calls are the very ones the forward makes for that token, with the same arguments, so
 * the logits are the same bits.
 *
 * Only two things change from one token to the next: the position (RoPE's row, the KV cache row written, how many
 * positions attention reads) and the token id (the embedding row read). An argument is therefore a constant or
 * `base + perPos · pos + perToken · token`, in 32-bit integer arithmetic (byte addresses, wasm32).
 */

/** A call's argument: a constant, or base + perPos·pos + perToken·token (an i32; wraps like a wasm32 address). */
export type DecodeArg = number | { readonly base: number; readonly perPos?: number; readonly perToken?: number };

/** One kernel call of a decode plan. */
export interface DecodeCall {
  /** The kernel's function (a WebAssembly export, so a compiled program can call it directly). */
  readonly fn: (...args: number[]) => unknown;
  /** The function's parameter types, in order (its arguments are converted to them). */
  readonly params: readonly ('i32' | 'f32')[];
  readonly args: readonly DecodeArg[];
}

/** An argument that is `base + perPos · pos`. */
export const atPos = (base: number, perPos: number): DecodeArg => ({ base, perPos });

/** The value of `arg` at (pos, token), as the compiled program computes it (i32 wrap-around for i32 params). */
export function decodeArgValue(arg: DecodeArg, pos: number, token: number): number {
  if (typeof arg === 'number') return arg;
  return (arg.base + (arg.perPos ?? 0) * pos + (arg.perToken ?? 0) * token) | 0;
}

/**
 * Run a plan's calls from JS (what a compiled program does, one call at a time): the reference the program is
 * tested against, and the fallback where a program cannot be compiled.
 */
export function runDecodePlan(calls: readonly DecodeCall[], pos: number, token: number): void {
  for (const c of calls) c.fn(...c.args.map((a, i) => (c.params[i] === 'i32' ? decodeArgValue(a, pos, token) : (a as number))));
}

/**
 * The glue's one-token calls (`ForwardGlue.decode`): each describes the call the corresponding ForwardGlue method
 * makes for n = 1 on one thread, with the position left symbolic where the method takes `start`/`dstRow`;
 * undefined where that method would not make a plain kernel call (e.g. an array outside the kernel's memory).
 */
export interface DecodeGlue {
  /** rmsNorm(out, x, 0, add, weight, 1, dim, eps). */
  rmsNorm(out: Float32Array, x: Float32Array, add: Float32Array | undefined, weight: Float32Array, dim: number, eps: number): DecodeCall | undefined;
  /** rope(src, dst, toRowPos ? pos : 0, cos, sin, 1, rowLen, headDim, pos, pairs). */
  rope(src: Float32Array, dst: Float32Array, toRowPos: boolean, cos: Float32Array, sin: Float32Array, rowLen: number, headDim: number, pairs: boolean): DecodeCall | undefined;
  /** copyRows(src, dst, pos, 1, rowLen). */
  copyRowToPos(src: Float32Array, dst: Float32Array, rowLen: number): DecodeCall | undefined;
  /** attend(keys, values, q, out, pos, 1) for a cache of `capacity` positions. */
  attend(keys: Float32Array, values: Float32Array, q: Float32Array, out: Float32Array, capacity: number): DecodeCall | undefined;
  /** swiglu(gate, up, count). */
  swiglu(gate: Float32Array, up: Float32Array, count: number): DecodeCall | undefined;
  /** add(x, y, count). */
  add(x: Float32Array, y: Float32Array, count: number): DecodeCall | undefined;
}
