import { readFileSync } from 'node:fs';
import { compress, loadBundleFromBytes, loadModel } from '@ultrasketch/pipeline';
import { sessionFromBundle } from '@ultrasketch/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GpuContext, WebGpuSession } from '../src/index.js';
import { gpuContext, greedyBoth, shared } from './gpu.js';

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
      const { tokensCpu, tokensGpu, worst } = await greedyBoth(cpu, gpu, STEPS);
      expect(tokensGpu).toEqual(tokensCpu);
      expect(worst).toBeLessThanOrEqual(1e-3);
    } finally {
      gpu.dispose();
      cpu.dispose();
    }
  }, 120_000);
});
