import { registerAll as registerBaselines } from '@ultrasketch/baselines';
import { Rng, getCodec } from '@ultrasketch/core';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { registerAll as registerLittleBit } from '@ultrasketch/littlebit';
import { modelFromLlama2c } from '@ultrasketch/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GpuContext, LinearRunner, WebGpuSession, isWebGpuError } from '../src/index.js';
import { gpuContext, maxAbsDiff, readShared } from './gpu.js';

/**
 * Buffers larger than the binding limit are split into row blocks and stay correct. The device's real limits are
 * large (1 GiB on SwiftShader), so the tests lower the runtime's limit (`maxBindingBytes`) until everything splits:
 * row blocks then start mid-word in the packed streams (rtn 3-bit, binary, LittleBit signs) and at odd halves (f16).
 * Results must equal the unsplit ones bit for bit: every row is computed by the same code in the same order.
 */
let whole: GpuContext;
let small: GpuContext;
beforeAll(async () => {
  registerBaselines();
  registerLittleBit();
  whole = await gpuContext();
  small = await gpuContext({ maxBindingBytes: 512 });
});
afterAll(() => {
  whole?.destroy();
  small?.destroy();
});

describe('row blocks under a 512-byte binding limit', () => {
  it.each([
    ['float f32', 'float', { dtype: 'f32' }],
    ['float f16', 'float', { dtype: 'f16' }],
    ['rtn 3-bit g5', 'rtn', { bits: 3, groupSize: 5 }],
    ['rtn 4-bit per row', 'rtn', { bits: 4, groupSize: 0 }],
    ['binary', 'binary', {}],
    ['littlebit rank 30 residual', 'littlebit', { rank: 30 }],
  ] as const)('%s 97×37 splits and equals the unsplit kernel', async (_l, id, raw) => {
    const codec = getCodec(id);
    const rng = new Rng(41);
    const params = codec.encode(rng.normalArray(97 * 37), 97, 37, codec.resolveOptions(raw), { name: 't', seed: 1 });
    const a = await LinearRunner.create(whole, id, params, { maxBatch: 1 });
    const b = await LinearRunner.create(small, id, params, { maxBatch: 1 });
    try {
      expect(b.dispatchCount).toBeGreaterThan(a.dispatchCount);
      for (let i = 0; i < 2; i++) {
        const x = rng.normalArray(37);
        expect(Array.from(await b.run(x, 1))).toEqual(Array.from(await a.run(x, 1)));
      }
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('a single row larger than the limit is refused with a typed error', async () => {
    const codec = getCodec('float');
    const params = codec.encode(new Float32Array(2 * 126), 2, 126, codec.resolveOptions({ dtype: 'f32' }), { name: 'wide', seed: 1 });
    const err = await LinearRunner.create(small, 'float', params, { maxBatch: 1 }).catch((e: unknown) => e);
    expect(isWebGpuError(err, 'limits')).toBe(true);
    expect(String((err as Error).message)).toMatch(/one row needs 504 bytes/);
  });
});

describe('a whole model under a lowered binding limit', () => {
  const file = 'models/stories260K/stories260K.bin';
  const model = modelFromLlama2c(readLlama2cCheckpoint(readShared(file), file));
  const tokens = readShared('reference/stories260K/greedy_tokens.txt').toString().trim().split('\n').map(Number).slice(0, 48);

  it('stories260K with every weight, the logits and the KV cache under 8 KiB: same logits as unsplit', async () => {
    const limited = await gpuContext({ maxBindingBytes: 8192 });
    const a = await WebGpuSession.fromWeights(model, { context: whole, contextLength: 64 });
    const b = await WebGpuSession.fromWeights(model, { context: limited, contextLength: 64 });
    try {
      // 512×64 f32 embedding = 128 KiB → 17 blocks (used by the lookup and, tied, by the classifier); 172×64 linears split too.
      expect(b.dispatchCount).toBeGreaterThan(a.dispatchCount + 30);
      expect(b.maxBatch).toBeLessThan(a.maxBatch);
      const pa = await a.forward(tokens, { logits: 'all' });
      const pb = await b.forward(tokens, { logits: 'all' });
      expect(maxAbsDiff(pa, pb)).toBe(0);
      for (const t of [5, 9, 2]) expect(Array.from(await b.forward([t]))).toEqual(Array.from(await a.forward([t])));
    } finally {
      a.dispose();
      b.dispose();
      limited.destroy();
    }
  });

  it('a KV cache larger than the limit is refused with a typed error that says what to do', async () => {
    const limited = await gpuContext({ maxBindingBytes: 8192 });
    const err = await WebGpuSession.fromWeights(model, { context: limited }).catch((e: unknown) => e);
    limited.destroy();
    expect(isWebGpuError(err, 'limits')).toBe(true);
    expect((err as { hint?: string }).hint).toMatch(/contextLength/);
  });
});
