import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Rng, UltraSketchError, type ErrorCode } from '@ultrasketch/core';
import { expect } from 'vitest';
import { llama2cShapes, type Llama2cConfig, type Llama2cWeights } from '../src/index.js';
import { requireShared } from '../../../test/require-shared.js';

/** A file under the repository's sibling `shared/` directory (read-only reference material). */
export function sharedPath(rel: string): string {
  return fileURLToPath(new URL(`../../../../shared/${rel}`, import.meta.url));
}

/** True when ../shared is present; suites that need it skip (loudly) otherwise. */
export const HAVE_SHARED = requireShared('format real-model tests', [
  sharedPath('models/stories260K/stories260K.bin'),
  sharedPath('models/stories260K/tok512.bin'),
  sharedPath('models/stories3M/stories3M-q80.bin'),
  sharedPath('models/stories3M/tok4096.bin'),
]);

export function readShared(rel: string): Uint8Array {
  return new Uint8Array(readFileSync(sharedPath(rel)));
}

/**
 * Run `fn`, expect it to throw an UltraSketchError with `code`, whose message names `source` and matches
 * `problem`. Returns the error for further checks.
 */
export function expectRejects(fn: () => unknown, code: ErrorCode, source: string, problem: RegExp): UltraSketchError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected an UltraSketchError to be thrown').toBeInstanceOf(UltraSketchError);
  const err = caught as UltraSketchError;
  expect(err.code, err.message).toBe(code);
  expect(err.source).toBe(source);
  expect(err.message).toContain(source);
  expect(err.message).toMatch(problem);
  return err;
}

/** A tiny but complete llama2.c config: GQA (2 heads, 1 kv head), head size 4, separate classifier. */
export const TINY_CONFIG: Llama2cConfig = {
  dim: 8,
  hiddenDim: 12,
  nLayers: 2,
  nHeads: 2,
  nKvHeads: 1,
  vocabSize: 10,
  seqLen: 4,
  sharedClassifier: false,
};

/** Random weights of the right shapes for `c` (deterministic per seed). */
export function randomWeights(c: Llama2cConfig, seed = 1): Llama2cWeights {
  const rng = new Rng(seed);
  const s = llama2cShapes(c);
  const layers = (n: number) => Array.from({ length: c.nLayers }, () => rng.normalArray(n, 0.5));
  const w: Llama2cWeights = {
    tokenEmbedding: rng.normalArray(s.embedding),
    rmsAtt: layers(s.norm),
    wq: layers(s.wq),
    wk: layers(s.wk),
    wv: layers(s.wv),
    wo: layers(s.wo),
    rmsFfn: layers(s.norm),
    w1: layers(s.w1),
    w2: layers(s.w2),
    w3: layers(s.w3),
    rmsFinal: rng.normalArray(s.norm),
  };
  if (!c.sharedClassifier) w.classifier = rng.normalArray(s.embedding);
  return w;
}

/** A copy of `bytes` whose int32 at `offset` is replaced. */
export function withI32(bytes: Uint8Array, offset: number, value: number): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setInt32(offset, value, true);
  return out;
}

/** A copy of `bytes` whose float32 at `offset` is replaced. */
export function withF32(bytes: Uint8Array, offset: number, value: number): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setFloat32(offset, value, true);
  return out;
}

/** `bytes` followed by `extra`. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
