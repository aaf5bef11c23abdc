import { readFileSync } from 'node:fs';
import { compress, loadBundleFromBytes, loadModel } from '@ultrasketch/pipeline';
import { sessionFromBundle } from '@ultrasketch/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GpuContext, WebGpuSession } from '../src/index.js';
import { argmax, gpuContext, maxAbsDiff, shared } from './gpu.js';

/**
 * The whole-file embedding form (compress --embeddings vqK, docs/results.md §11.1b) on WebGPU: a packed
 * (format 3) stories260K bundle with binary linears and a vq6 embedding (gather for the lookup, the same code
 * for the tied classifier) gives runtime-node's greedy tokens and logits within 1e-3 relative.
 */
const STEPS = 32;

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await gpuContext();
});
afterAll(() => ctx?.destroy());

describe('vq embedding on WebGPU', () => {
  it('a packed binary + vq6 bundle: WebGPU and runtime-node agree', async () => {
    const model = loadModel(shared('models/stories260K/stories260K.bin').pathname);
    const calib = readFileSync(shared('data/tinystories/calib.txt'), 'utf8');
    const { bytes } = await compress({ model, codec: 'binary', embeddings: 'vq6', pack: true, calibrate: { text: calib, textSource: 'calib.txt' } });
    const { bundle } = loadBundleFromBytes(bytes, '<vq6>');
    expect(bundle.formatVersion).toBe(3);
    expect(bundle.weights.get('model.embed_tokens.weight')!.entry.codec).toBe('vq');
    const cpu = sessionFromBundle(bundle);
    const gpu = await WebGpuSession.fromBundle(bundle, { context: ctx, contextLength: STEPS });
    try {
      const tokensCpu = [1];
      const tokensGpu = [1];
      let worst = 0;
      for (let pos = 0; pos < STEPS; pos++) {
        const a = cpu.forward([tokensCpu[pos]!]);
        const b = await gpu.forward([tokensGpu[pos]!]);
        let scale = 0;
        for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(a[i]!));
        if (tokensCpu[pos] === tokensGpu[pos]) worst = Math.max(worst, maxAbsDiff(a, b) / (scale || 1));
        tokensCpu.push(argmax(a));
        tokensGpu.push(argmax(b));
      }
      expect(tokensGpu).toEqual(tokensCpu);
      expect(worst).toBeLessThanOrEqual(1e-3);
    } finally {
      gpu.dispose();
      cpu.dispose();
    }
  }, 120_000);
});
