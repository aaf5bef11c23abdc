/**
 * WGSL shared by the kernels: the per-pass `Step` uniform (what changes from one forward call to the next),
 * the per-dispatch `Lin` uniform of the linear kernels, and readers for packed data (f16 pairs, k-bit codes at
 * any bit position). Readers are generated per buffer name because WGSL functions cannot take a storage
 * buffer as a parameter without the unrestricted-pointer extension, which not every browser has.
 */

import type { BindingKind } from './program.js';

/** Written once per forward chunk: n tokens at positions start.., logits for logitRows rows from logitFirst. */
export const STEP_STRUCT = /* wgsl */ `
struct Step {
  n: u32,
  start: u32,
  logitRows: u32,
  logitFirst: u32,
};`;

/**
 * Per linear dispatch (static, made when the session is built): the block's shape and where it reads and
 * writes, plus eight codec-specific words (c0, c1) — bit offsets, group sizes, ... Flags: bit 0 = add into
 * y (fused residual), bit 1 = the token count is step.logitRows (the classifier) instead of step.n.
 */
export const LIN_STRUCT = /* wgsl */ `
struct Lin {
  rows: u32,
  cols: u32,
  rowBase: u32,
  yStride: u32,
  xStride: u32,
  xOff: u32,
  flags: u32,
  gridX: u32,
  c0: vec4<u32>,
  c1: vec4<u32>,
};`;

export const LIN_WORDS = 16;

/** Lin uniform words. */
export function linWords(f: {
  rows: number;
  cols: number;
  rowBase: number;
  yStride: number;
  xStride: number;
  xOff: number;
  flags: number;
  gridX: number;
  c?: readonly number[];
}): Uint32Array {
  const w = new Uint32Array(LIN_WORDS);
  w.set([f.rows, f.cols, f.rowBase, f.yStride, f.xStride, f.xOff, f.flags, f.gridX]);
  (f.c ?? []).forEach((v, i) => {
    w[8 + i] = v >>> 0;
  });
  return w;
}

export const FLAG_ACCUMULATE = 1;
export const FLAG_LOGIT_ROWS = 2;

/** f32 of the f16 at half-index i of a u32 buffer (two halves per word, low half first). */
export function f16Reader(buffer: string): string {
  return /* wgsl */ `
fn f16_${buffer}(i: u32) -> f32 {
  return unpack2x16float(${buffer}[i >> 1u] >> ((i & 1u) << 4u)).x;
}`;
}

/** The k ≤ 32 bits starting at bit position `bit` of a u32 buffer (LSB-first stream), any alignment. */
export function bitsReader(buffer: string): string {
  return /* wgsl */ `
fn bits_${buffer}(bit: u32, k: u32) -> u32 {
  let w = bit >> 5u;
  let s = bit & 31u;
  var v = ${buffer}[w] >> s;
  if (s != 0u && s + k > 32u) {
    v = v | (${buffer}[w + 1u] << (32u - s));
  }
  return select(v & ((1u << k) - 1u), v, k >= 32u);
}`;
}

/** Storage binding declarations, from binding `first` on. */
export function storageDecls(first: number, buffers: ReadonlyArray<{ name: string; type?: string; access?: 'read' | 'read_write' }>): string {
  return buffers
    .map((b, i) => `@group(0) @binding(${first + i}) var<storage, ${b.access ?? 'read'}> ${b.name}: array<${b.type ?? 'u32'}>;`)
    .join('\n');
}

/**
 * One binding of a program, listed once: `bindingDecls` writes its declaration and `bindingKinds` the kind the
 * pipeline layout needs, so a program's WGSL declarations and its `GpuProgram.bindings` cannot disagree.
 */
export interface WgslBinding {
  readonly kind: BindingKind;
  readonly name: string;
  /** The WGSL type: a struct name for a uniform, `array<…>` for storage. */
  readonly type: string;
}

/** A uniform binding `name` of the struct `struct`. */
export const uniformBinding = (name: string, struct: string): WgslBinding => ({ kind: 'uniform', name, type: struct });
/** A read-only storage array `name` of `element`s. */
export const readBinding = (name: string, element = 'f32'): WgslBinding => ({ kind: 'read', name, type: `array<${element}>` });
/** A read-write storage array `name` of `element`s. */
export const rwBinding = (name: string, element = 'f32'): WgslBinding => ({ kind: 'rw', name, type: `array<${element}>` });

const ADDRESS_SPACE: Record<BindingKind, string> = { uniform: 'uniform', read: 'storage, read', rw: 'storage, read_write' };

/** The declarations of a program's bindings, one line each: the i-th entry is `@group(0) @binding(i)`. */
export function bindingDecls(bindings: readonly WgslBinding[]): string {
  return bindings.map((b, i) => `@group(0) @binding(${i}) var<${ADDRESS_SPACE[b.kind]}> ${b.name}: ${b.type};`).join('\n');
}

/** The binding kinds of a program (its `GpuProgram.bindings`), in binding order. */
export function bindingKinds(bindings: readonly WgslBinding[]): BindingKind[] {
  return bindings.map((b) => b.kind);
}
