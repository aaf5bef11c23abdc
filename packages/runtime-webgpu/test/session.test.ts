import { ErrorCodes, isUltraSketchError } from '@ultrasketch/core';
import { readLlama2cCheckpoint } from '@ultrasketch/format';
import { modelFromLlama2c, parameterCount } from '@ultrasketch/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BufferUsage, GpuContext, PipelineCache, WebGpuSession, gpuFailureCode, gpuScopeError, isWebGpuError } from '../src/index.js';
import { gpuContext, readShared } from './gpu.js';

/** The session API around the kernels: streaming generation, logits modes, serialization, warmup, typed errors. */
const file = 'models/stories260K/stories260K.bin';
const model = modelFromLlama2c(readLlama2cCheckpoint(readShared(file), file));
const golden = readShared('reference/stories260K/greedy_tokens.txt').toString().trim().split('\n').map(Number);

let ctx: GpuContext;
let session: WebGpuSession;
beforeAll(async () => {
  ctx = await gpuContext();
  session = await WebGpuSession.fromWeights(model, { context: ctx });
});
afterAll(() => {
  session?.dispose();
  ctx?.destroy();
});

describe('WebGpuSession', () => {
  it('reports the adapter it runs on (SwiftShader is flagged as software)', () => {
    expect(session.adapter.vendor.length + session.adapter.architecture.length).toBeGreaterThan(0);
    if (/swiftshader/i.test(session.adapter.architecture)) {
      expect(session.adapter.software).toBe(true);
      expect(session.kernelShape).toBe('serial');
    }
  });

  it('compiles every pipeline before it returns (warmup)', () => {
    const cache = PipelineCache.for(ctx.device);
    const programs = session.programs();
    expect(programs.length).toBeGreaterThan(5);
    for (const p of programs) expect(() => cache.compiled(p)).not.toThrow();
  });

  it('holds the parameters as stored (f32 here: 4 bytes per parameter, the tied classifier once)', () => {
    const m = session.memory();
    const params = parameterCount(model.config);
    expect(m.parameters).toBeGreaterThanOrEqual(4 * params);
    expect(m.parameters).toBeLessThan(4 * params + 4096);
    expect(m.kvCache).toBe(2 * model.config.nLayers * model.config.seqLen * 32 * 4);
  });

  it('streams greedy generation (generate) as llama2.c does', async () => {
    const steps: number[] = [];
    for await (const s of session.generate([1], { steps: 40, temperature: 0 })) steps.push(s.token);
    expect(steps).toEqual(golden.slice(0, 40));
    expect(session.position).toBe(40);
  });

  it("logits 'none', 'last' and 'all'; the context advances by the tokens fed", async () => {
    session.reset();
    expect((await session.forward(golden.slice(0, 5), { logits: 'none' })).length).toBe(0);
    expect(session.position).toBe(5);
    const last = await session.forward(golden.slice(5, 8));
    expect(last.length).toBe(model.config.vocabSize);
    session.reset();
    const all = await session.forward(golden.slice(0, 8), { logits: 'all' });
    expect(all.length).toBe(8 * model.config.vocabSize);
    expect(Array.from(all.subarray(7 * model.config.vocabSize))).toEqual(Array.from(last));
  });

  it('calls made without awaiting run in order', async () => {
    session.reset();
    const [a, b] = await Promise.all([session.forward([1]), session.forward([golden[1]!])]);
    session.reset();
    const a2 = await session.forward([1]);
    const b2 = await session.forward([golden[1]!]);
    expect(Array.from(a)).toEqual(Array.from(a2));
    expect(Array.from(b)).toEqual(Array.from(b2));
  });

  it('a prompt longer than the batch runs in chunks and equals one position at a time', async () => {
    const chunked = await WebGpuSession.fromWeights(model, { context: ctx, maxBatch: 16, contextLength: 64 });
    try {
      const all = await chunked.forward(golden.slice(0, 50), { logits: 'all' });
      session.reset();
      const ref = await session.forward(golden.slice(0, 50), { logits: 'all' });
      let worst = 0;
      for (let i = 0; i < all.length; i++) worst = Math.max(worst, Math.abs(all[i]! - ref[i]!));
      expect(worst).toBeLessThan(1e-5);
    } finally {
      chunked.dispose();
    }
  });

  it('rejects bad tokens and positions beyond the context with BAD_ARGUMENT, leaving the context as it was', async () => {
    session.reset();
    await session.forward([1, 2]);
    await expect(session.forward([model.config.vocabSize])).rejects.toMatchObject({ code: ErrorCodes.BAD_ARGUMENT });
    await expect(session.forward([1.5])).rejects.toMatchObject({ code: ErrorCodes.BAD_ARGUMENT });
    await expect(session.forward([])).rejects.toMatchObject({ code: ErrorCodes.BAD_ARGUMENT });
    await expect(session.forward(new Array(model.config.seqLen).fill(1))).rejects.toMatchObject({ code: ErrorCodes.BAD_ARGUMENT });
    expect(session.position).toBe(2);
  });
});

describe('typed GPU errors', () => {
  it('no GPU object: no-webgpu', async () => {
    const err = await WebGpuSession.fromWeights(model, { gpu: undefined }).catch((e: unknown) => e);
    expect(isWebGpuError(err, 'no-webgpu')).toBe(true);
    expect(isUltraSketchError(err, ErrorCodes.UNSUPPORTED)).toBe(true);
  });

  it('no adapter: no-adapter, with a hint', async () => {
    const gpu = { requestAdapter: async () => null } as unknown as GPU;
    const err = await GpuContext.create(gpu).catch((e: unknown) => e);
    expect(isWebGpuError(err, 'no-adapter')).toBe(true);
    expect((err as { hint: string }).hint).toMatch(/SwiftShader/);
  });

  it('an out-of-memory error scope becomes out-of-memory (E_OUT_OF_MEMORY)', async () => {
    const scopes: string[] = [];
    const device = {
      limits: { maxStorageBufferBindingSize: 1 << 20, maxBufferSize: 1 << 20, maxComputeWorkgroupStorageSize: 16384, maxComputeWorkgroupsPerDimension: 65535, maxStorageBuffersPerShaderStage: 8 },
      lost: new Promise(() => {}),
      pushErrorScope: (f: string) => scopes.push(f),
      popErrorScope: async () => (scopes.pop() === 'out-of-memory' ? { message: 'Out of memory allocating 9 GB' } : null),
    } as unknown as GPUDevice;
    const stub = GpuContext.fromDevice(device);
    const err = await stub.guard('allocating', () => 1).catch((e: unknown) => e);
    expect(isWebGpuError(err, 'out-of-memory')).toBe(true);
    expect(isUltraSketchError(err, ErrorCodes.OUT_OF_MEMORY)).toBe(true);
    expect((err as { code: string }).code).toBe('E_OUT_OF_MEMORY');
    expect(String((err as Error).message)).toMatch(/ran out of memory while allocating/);
  });

  it('gpuScopeError maps a GPUOutOfMemoryError to OUT_OF_MEMORY whichever scope caught it, anything else to validation', () => {
    class GPUOutOfMemoryError {
      constructor(readonly message: string) {}
    }
    class GPUValidationError {
      constructor(readonly message: string) {}
    }
    const oom = gpuScopeError('validation', new GPUOutOfMemoryError('allocation of 8 GiB failed'), 'uploading');
    expect(oom.failure).toBe('out-of-memory');
    expect(oom.code).toBe(ErrorCodes.OUT_OF_MEMORY);
    expect(oom.hint).toMatch(/contextLength/);
    const scoped = gpuScopeError('out-of-memory', { message: 'no memory' }, 'running');
    expect(scoped.code).toBe(ErrorCodes.OUT_OF_MEMORY);
    const bad = gpuScopeError('validation', new GPUValidationError('bad binding'), 'running');
    expect(bad.failure).toBe('validation');
    expect(bad.code).toBe(ErrorCodes.UNSUPPORTED);
    expect(gpuFailureCode('device-lost')).toBe('E_DEVICE_LOST');
    expect(gpuFailureCode('out-of-memory')).toBe('E_OUT_OF_MEMORY');
  });

  it('on the real device, an error of the validation scope is not reported as out-of-memory', async () => {
    // A buffer above maxBufferSize is a validation error (Dawn checks the limit before allocating): guard()
    // must tell the two scopes apart on a real device, not only on a stub.
    const own = await gpuContext();
    try {
      const err = await own
        .guard('allocating a huge buffer', () => own.device.createBuffer({ size: 2 ** 40, usage: BufferUsage.STORAGE }))
        .catch((e: unknown) => e);
      expect(isWebGpuError(err, 'validation')).toBe(true);
      expect(isUltraSketchError(err, ErrorCodes.OUT_OF_MEMORY)).toBe(false);
      // the device is still usable afterwards
      await expect(own.guard('a small buffer', () => own.buffer(64, BufferUsage.STORAGE, 'small'))).resolves.toBeDefined();
    } finally {
      own.destroy();
    }
  });

  it('a lost device: device-lost on the next call', async () => {
    const own = await gpuContext();
    const s = await WebGpuSession.fromWeights(model, { context: own, contextLength: 16, warmup: false });
    own.device.destroy(); // lost from outside the session (as when a driver resets)
    await own.device.lost;
    const err = await s.forward([1]).catch((e: unknown) => e);
    expect(isWebGpuError(err, 'device-lost')).toBe(true);
    expect(isUltraSketchError(err, ErrorCodes.DEVICE_LOST)).toBe(true);
    expect((err as { code: string }).code).toBe('E_DEVICE_LOST');
    s.dispose();
  });

  it('a destroyed device: the context refuses the next allocation and upload with DEVICE_LOST', async () => {
    const own = await gpuContext();
    own.device.destroy();
    const info = await own.device.lost;
    expect(info.reason).toBe('destroyed');
    await Promise.resolve(); // the context's own handler of device.lost runs after ours
    expect(() => own.buffer(64, BufferUsage.STORAGE, 'after-loss')).toThrow(expect.objectContaining({ code: ErrorCodes.DEVICE_LOST }));
    expect(() => own.upload(new Float32Array(4), 'after-loss')).toThrow(expect.objectContaining({ code: ErrorCodes.DEVICE_LOST, failure: 'device-lost' }));
    await expect(own.guard('anything', () => 1)).rejects.toMatchObject({ code: ErrorCodes.DEVICE_LOST });
    own.destroy();
  });

  it('the ./node entry gives a GPU object with an adapter', async () => {
    const { nodeGpu } = await import('../src/node.js');
    const gpu = await nodeGpu();
    const adapter = await gpu.requestAdapter();
    expect(adapter).not.toBeNull();
  });

  it('used after dispose(): disposed', async () => {
    const s = await WebGpuSession.fromWeights(model, { gpu: (await import('./gpu.js')).nodeGpu(), contextLength: 16, warmup: false });
    s.dispose();
    await expect(s.forward([1])).rejects.toSatisfy((e: unknown) => isWebGpuError(e, 'disposed'));
    expect(() => s.reset()).toThrow(/dispose/);
  });
});
