import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { ErrorCodes } from '@ultrasketch/core';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { modelFromLlama2c } from '@ultrasketch/model';
import { NodeSession, bundleWeightBytes, resolveThreads, sessionFromBundle } from '@ultrasketch/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compress, loadBundleFromBytes } from '../src/index.js';
import { requireShared } from '../../../test/require-shared.js';

/**
 * runtime-node's worker threads on real stories3M bundles: a product's rows are split across threads (forced
 * here with threadMinWorkNs: 0 and threadAdaptive: false, so every product is split), and the logits must be BIT-identical to one
 * thread — each row is computed by exactly one thread with the same kernel calls. And the memory report: the
 * weights a session holds are the bundle's stored tensors (within 10%), not a decoded copy.
 */
const shared = (p: string) => fileURLToPath(new URL(`../../../../shared/${p}`, import.meta.url));
const MODEL = shared('models/stories3M/stories3M-q80.bin');
const HAVE_SHARED = requireShared('runtime-node threads tests', [MODEL]);

const CODECS = [
  { name: 'littlebit 0.55', codec: 'littlebit', codecOptions: { bpw: 0.55 } },
  { name: 'binary', codec: 'binary', codecOptions: {} },
  { name: 'sketch 0.5', codec: 'sketch', codecOptions: { bpw: 0.5 } },
  // the CLI's default sketch (`--codec sketch`): signmean, int8 states, 8 channel groups — issue 12: its int8
  // states stay int8 in memory (widened per call into scratch), not a float32 copy (1.38× the bundle before)
  {
    name: 'sketch signmean int8 g8 0.5 (CLI default)',
    codec: 'sketch',
    codecOptions: { bpw: 0.5, query: 'signmean', rows: 1, state: 'int8', groups: 8, alloc: 'saliency' },
  },
  { name: 'hashednets 0.5', codec: 'hashednets', codecOptions: { bpw: 0.5 } },
  { name: 'rtn 4', codec: 'rtn', codecOptions: { bits: 4 } },
  // the float codec (f16 linears, read as stored by wasmFloatKernel): with it every registered codec is covered
  { name: 'float f16', codec: 'float', codecOptions: { dtype: 'f16' } },
];

// token ids of a fixed pseudo-text (every id < 4096)
const TOKENS = Array.from({ length: 40 }, (_, i) => 1 + ((i * 2654435761) >>> 20));

/** Prefill (logits of every position) then 12 single-token steps; every logit of every call, concatenated. */
function run(session: NodeSession): Float32Array {
  const out: Float32Array[] = [session.forward(TOKENS, { logits: 'all' }).slice()];
  for (let i = 0; i < 12; i++) out.push(session.forward([TOKENS[i]!]).slice());
  const all = new Float32Array(out.reduce((n, a) => n + a.length, 0));
  let o = 0;
  for (const a of out) {
    all.set(a, o);
    o += a.length;
  }
  for (const v of all) if (!Number.isFinite(v)) throw new Error('a logit is not finite');
  return all;
}

const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

describe.runIf(HAVE_SHARED)('threads: bit-identical logits on stories3M bundles', () => {
  const bundles = new Map<string, Uint8Array>();
  beforeAll(async () => {
    for (const c of CODECS) {
      bundles.set(c.name, (await compress({ model: MODEL, codec: c.codec, codecOptions: c.codecOptions, smallMatrix: 'keep', seed: 0 })).bytes);
    }
  }, 600_000);

  it.each(CODECS)('$name: 2 and 3 threads give the logits of 1 thread, bit for bit', ({ name }) => {
    const bundle = loadBundleFromBytes(bundles.get(name)!, name).bundle;
    const one = sessionFromBundle(bundle, { threads: 1 });
    const ref = run(one);
    expect(one.threads).toBe(1);
    for (const threads of [2, 3]) {
      const many = sessionFromBundle(bundle, { threads, threadMinWorkNs: 0, threadAdaptive: false });
      try {
        expect(many.threads).toBe(threads);
        const got = run(many);
        expect(many.threadStats.split).toBeGreaterThan(0); // the products really were split
        expect(Buffer.from(bits(got).buffer).equals(Buffer.from(bits(ref).buffer))).toBe(true);
      } finally {
        many.dispose();
      }
    }
  });

  it.each(CODECS)('$name: one-token steps run as a decode program (one wasm call), bit for bit the forward’s own calls', ({ name }) => {
    const bundle = loadBundleFromBytes(bundles.get(name)!, name).bundle;
    const program = sessionFromBundle(bundle, { threads: 1 });
    const plain = sessionFromBundle(bundle, { threads: 1, decodeProgram: false });
    const a = run(program);
    expect(program.usesDecodeProgram).toBe(true);
    expect(program.stepStats.program).toBe(12);
    expect(plain.usesDecodeProgram).toBe(false);
    expect(Buffer.from(bits(a).buffer).equals(Buffer.from(bits(run(plain)).buffer))).toBe(true);
  });

  it.each(CODECS)('$name: the weights held are the bundle tensor bytes (±10%)', ({ name }) => {
    const bundle = loadBundleFromBytes(bundles.get(name)!, name).bundle;
    const tensorBytes = bundleWeightBytes(bundle);
    const session = sessionFromBundle(bundle, { threads: 1 });
    run(session);
    const m = session.memory();
    expect(m.weightsBytes).toBe(m.wasmWeightsBytes + m.jsWeightsBytes);
    expect(m.weightsBytes / tensorBytes).toBeGreaterThan(0.9);
    expect(m.weightsBytes / tensorBytes).toBeLessThan(1.1);
    // the KV cache of seq_len positions: 2 × layers × positions × kv_dim floats
    expect(m.kvCacheBytes).toBe(2 * 6 * 512 * 64 * 4);
    expect(m.scratchBytes).toBeGreaterThan(0);
  });

  afterAll(() => bundles.clear());
});

describe.runIf(HAVE_SHARED)('threads: the float checkpoint', () => {
  const weights = modelFromLlama2c(readLlama2cCheckpoint(readFileSync(MODEL), MODEL));

  it('one-token steps run as a decode program, bit for bit the forward’s own calls (dense f32 kernels)', () => {
    const program = NodeSession.fromWeights(weights, { kernels: 'wasm', threads: 1 });
    const plain = NodeSession.fromWeights(weights, { kernels: 'wasm', threads: 1, decodeProgram: false });
    const a = run(program);
    expect(program.stepStats.program).toBe(12);
    expect(Buffer.from(bits(a).buffer).equals(Buffer.from(bits(run(plain)).buffer))).toBe(true);
  });

  it('2 threads give the logits of 1 thread, bit for bit (dense f32 kernels)', () => {
    const one = NodeSession.fromWeights(weights, { kernels: 'wasm', threads: 1 });
    const two = NodeSession.fromWeights(weights, { kernels: 'wasm', threads: 2, threadMinWorkNs: 0, threadAdaptive: false });
    try {
      const a = run(one);
      const b = run(two);
      expect(two.threadStats.split).toBeGreaterThan(0);
      expect(Buffer.from(bits(a).buffer).equals(Buffer.from(bits(b).buffer))).toBe(true);
    } finally {
      two.dispose();
    }
  });

  it('the adaptive policy (the default) mixes split and single-thread calls of a product, same bits', () => {
    const one = NodeSession.fromWeights(weights, { kernels: 'wasm', threads: 1 });
    const two = NodeSession.fromWeights(weights, { kernels: 'wasm', threads: 2, threadMinWorkNs: 0 });
    try {
      const a = run(one);
      const b = run(two);
      // the first calls of every product shape alternate between the two ways (then the faster is kept)
      expect(two.threadStats.split).toBeGreaterThan(0);
      expect(two.threadStats.single).toBeGreaterThan(0);
      expect(Buffer.from(bits(a).buffer).equals(Buffer.from(bits(b).buffer))).toBe(true);
    } finally {
      two.dispose();
    }
  });

  it('holds its weights once: the linears and the tied classifier/embedding in wasm memory, nothing else', () => {
    const session = NodeSession.fromWeights(weights, { kernels: 'wasm' });
    let floatBytes = 0;
    for (const t of weights.tensors.values()) floatBytes += t.data.byteLength;
    const m = session.memory();
    // every tensor once (the tied embedding is the classifier's copy), plus 16-byte alignment per tensor
    expect(m.weightsBytes).toBeGreaterThanOrEqual(floatBytes);
    expect(m.weightsBytes).toBeLessThan(floatBytes * 1.01);
  });

  it('a bad thread count is a typed error naming its source', () => {
    expect(() => resolveThreads(0)).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_ARGUMENT }));
    expect(() => resolveThreads(undefined, { ULTRASKETCH_THREADS: 'two' })).toThrow(
      expect.objectContaining({ code: ErrorCodes.BAD_ARGUMENT, source: 'ULTRASKETCH_THREADS' }),
    );
    expect(resolveThreads(undefined, { ULTRASKETCH_THREADS: '2' })).toBe(2);
    expect(resolveThreads(3, { ULTRASKETCH_THREADS: '2' })).toBe(3);
    expect(resolveThreads(undefined, {})).toBe(1);
  });
});
