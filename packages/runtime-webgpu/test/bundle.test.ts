import { compress, loadBundleFromBytes, loadModel } from '@ultrasketch/pipeline';
import { sessionFromBundle } from '@ultrasketch/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GpuContext, WebGpuSession } from '../src/index.js';
import { gpuContext, greedyBoth, shared } from './gpu.js';

/**
 * Compressed bundles (made here with pipeline.compress) run on WebGPU exactly as on runtime-node: greedy decoding
 * from BOS for 64 positions gives the same tokens, and the logits of every position agree within 1e-3 relative
 * to their scale (max |logit|): both runtimes compute from the same stored parameters, in f32 (GPU) and
 * f64-accumulated f32 (CPU).
 *
 * Every codec that has landed, over all the linears its method compresses by default; the embedding as f16
 * (float kernel) or rtn4/rtn8 (the rtn kernel serves the embedding lookup and, tied, the classifier).
 */
const STEPS = 64;
const LOGIT_TOL = 1e-3;

type Case = {
  label: string;
  model: 'stories260K' | 'stories3M';
  codec: string;
  codecOptions?: Record<string, unknown>;
  embeddings?: 'f16' | 'f32' | 'rtn2' | 'rtn3' | 'rtn4' | 'rtn8';
  /** The hardware-GPU kernel shape (8 threads per row, workgroup reductions, resident sketch states) instead of the adapter's default. */
  kernelShape?: 'parallel';
};
const CASES: Case[] = [
  { label: 'float f16', model: 'stories260K', codec: 'float', codecOptions: { dtype: 'f16' } },
  { label: 'rtn 4-bit g64, rtn8 embedding', model: 'stories260K', codec: 'rtn', codecOptions: { bits: 4, groupSize: 64 }, embeddings: 'rtn8' },
  { label: 'rtn 3-bit g32', model: 'stories260K', codec: 'rtn', codecOptions: { bits: 3, groupSize: 32 } },
  { label: 'binary, rtn4 embedding', model: 'stories260K', codec: 'binary', embeddings: 'rtn4' },
  { label: 'binary, rtn2 embedding', model: 'stories260K', codec: 'binary', embeddings: 'rtn2' },
  { label: 'sketch 0.8 bpw (f16, rowrun)', model: 'stories260K', codec: 'sketch', codecOptions: { bpw: 0.8 } },
  { label: 'sketch 1 bpw (int8, mixed, 4 groups)', model: 'stories260K', codec: 'sketch', codecOptions: { bpw: 1, state: 'int8', hash: 'mixed', groups: 4 } },
  { label: 'hashednets 1 bpw', model: 'stories260K', codec: 'hashednets', codecOptions: { bpw: 1 } },
  { label: 'littlebit 2 bpw (residual)', model: 'stories260K', codec: 'littlebit', codecOptions: { bpw: 2 } },
  { label: 'rtn 4-bit g64', model: 'stories3M', codec: 'rtn', codecOptions: { bits: 4, groupSize: 64 } },
  { label: 'littlebit 0.55 bpw', model: 'stories3M', codec: 'littlebit', codecOptions: { bpw: 0.55, residual: false } },
  // The 'parallel' shape (what hardware GPUs get) end to end: workgroup-reduced RMSNorm and attention, 8 threads
  // per weight row, sketch states resident in workgroup memory.
  { label: 'sketch 0.8 bpw, parallel kernel shape', model: 'stories260K', codec: 'sketch', codecOptions: { bpw: 0.8 }, kernelShape: 'parallel' },
  { label: 'rtn 4-bit g64, parallel kernel shape', model: 'stories260K', codec: 'rtn', codecOptions: { bits: 4, groupSize: 64 }, kernelShape: 'parallel' },
];

const FILES = { stories260K: 'models/stories260K/stories260K.bin', stories3M: 'models/stories3M/stories3M-q80.bin' };

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await gpuContext();
});
afterAll(() => ctx?.destroy());

const models = new Map<string, ReturnType<typeof loadModel>>();
const model = (name: keyof typeof FILES) => {
  if (!models.has(name)) models.set(name, loadModel(shared(FILES[name]).pathname));
  return models.get(name)!;
};

describe.each(CASES)('$label bundle on $model', (c) => {
  it(`WebGPU and runtime-node generate the same ${STEPS} greedy tokens`, async () => {
    const { bytes } = await compress({ model: model(c.model), codec: c.codec, codecOptions: c.codecOptions ?? {}, embeddings: c.embeddings ?? 'f16' });
    const { bundle } = loadBundleFromBytes(bytes, `<${c.label}>`);
    const cpu = sessionFromBundle(bundle);
    const gpu = await WebGpuSession.fromBundle(bundle, { context: ctx, contextLength: STEPS, ...(c.kernelShape ? { kernelShape: c.kernelShape } : {}) });
    if (c.kernelShape === 'parallel') {
      expect(gpu.lanes).toBe(8);
      expect(gpu.programs().map((p) => p.name)).toEqual(expect.arrayContaining(['attention', 'rmsnorm']));
      if (c.codec === 'sketch') expect(gpu.programs().some((p) => p.name.includes('-res'))).toBe(true);
    }
    try {
      const { tokensCpu, tokensGpu, worst } = await greedyBoth(cpu, gpu, STEPS);
      console.log(`[bundle] ${c.label} (${c.model}): max relative logit difference ${worst.toExponential(2)}, GPU parameter bytes ${gpu.memory().parameters}`);
      expect(tokensGpu).toEqual(tokensCpu);
      expect(worst).toBeLessThanOrEqual(LOGIT_TOL);
    } finally {
      gpu.dispose();
      cpu.dispose();
    }
  });
});
