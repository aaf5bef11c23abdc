import { type CodecParams, ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import { BufferUsage, type GpuContext, MAP_READ } from './device.js';
import { type GpuLinear, type KernelBuildContext, PREFILL_TILE, WORKGROUP, defaultLanes, scratchBuffer, setStepBuffer } from './linear.js';
import { type Dispatch, PipelineCache, encodeDispatches } from './program.js';
import { getGpuKernel, registerAllGpuKernels } from './registry.js';

/**
 * One codec kernel on its own, outside a model: upload a weight's stored parameters, run y = Ŵ x for batches of
 * up to `maxBatch` vectors, read y back — what the kernel tests (against the codec's decode() oracle) and the
 * kernel benchmark use. `time()` measures GPU throughput by queueing many dispatches between two waits.
 */
export interface LinearRunnerOptions {
  maxBatch?: number;
  lanes?: number;
  /** Workgroup memory for resident sketch states (bytes); default what the device allows less the reduction's. */
  residentBytes?: number;
  /** Add into y (initialised to `initial`) instead of overwriting it. */
  accumulate?: boolean;
}

export class LinearRunner {
  readonly linear: GpuLinear;
  readonly maxBatch: number;
  private readonly step: GPUBuffer;
  private readonly x: GPUBuffer;
  private readonly y: GPUBuffer;
  private readonly staging: GPUBuffer;
  private readonly dispatches: Dispatch[];
  private readonly cache: PipelineCache;

  private constructor(
    readonly gpu: GpuContext,
    codecId: string,
    params: CodecParams,
    private readonly options: LinearRunnerOptions,
  ) {
    registerAllGpuKernels();
    this.cache = PipelineCache.for(gpu.device);
    this.maxBatch = options.maxBatch ?? 16;
    const lanes = options.lanes ?? defaultLanes(gpu.adapter.software);
    this.step = gpu.buffer(16, BufferUsage.UNIFORM | BufferUsage.COPY_DST, 'runner.step');
    const b: KernelBuildContext = {
      gpu,
      cache: this.cache,
      maxBatch: this.maxBatch,
      residentBytes: options.residentBytes ?? Math.max(0, gpu.limits.workgroupBytes - WORKGROUP * PREFILL_TILE * 4 - 256),
      name: `runner.${codecId}`,
      lanes,
    };
    setStepBuffer(b, this.step);
    this.linear = getGpuKernel(codecId)(params, b);
    this.x = scratchBuffer(gpu, this.maxBatch * this.linear.inFeatures * 4, 'runner.x');
    this.y = scratchBuffer(gpu, this.maxBatch * this.linear.outFeatures * 4, 'runner.y');
    this.staging = gpu.buffer(this.maxBatch * this.linear.outFeatures * 4, BufferUsage.MAP_READ | BufferUsage.COPY_DST, 'runner.staging');
    this.dispatches = this.linear.record({ x: this.x, y: this.y, accumulate: options.accumulate ?? false, label: 'runner' });
  }

  /** Dispatches per application (one per row block, more for multi-stage codecs). */
  get dispatchCount(): number {
    return this.dispatches.length;
  }

  static async create(gpu: GpuContext, codecId: string, params: CodecParams, options: LinearRunnerOptions = {}): Promise<LinearRunner> {
    const r = await gpu.guard('uploading a weight', () => new LinearRunner(gpu, codecId, params, options));
    await Promise.all(r.dispatches.flatMap((d) => d.programs ?? [d.program]).map((p) => r.cache.pipeline(p)));
    return r;
  }

  /** y = Ŵ x for n vectors (x is [n, in]); with `accumulate`, y starts as `initial` ([n, out]). */
  async run(x: Float32Array, n: number, initial?: Float32Array): Promise<Float32Array> {
    const { inFeatures: cols, outFeatures: rows } = this.linear;
    if (n < 1 || n > this.maxBatch || x.length < n * cols) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `run: bad batch ${n}`);
    const d = this.gpu.device;
    return this.gpu.guard('running a kernel', async () => {
      d.queue.writeBuffer(this.step, 0, Uint32Array.of(n, 0, n, 0));
      d.queue.writeBuffer(this.x, 0, x, 0, n * cols);
      if (initial) d.queue.writeBuffer(this.y, 0, initial, 0, n * rows);
      const enc = d.createCommandEncoder();
      this.encode(enc, n, 1);
      enc.copyBufferToBuffer(this.y, 0, this.staging, 0, n * rows * 4);
      d.queue.submit([enc.finish()]);
      await this.staging.mapAsync(MAP_READ, 0, n * rows * 4);
      const out = new Float32Array(this.staging.getMappedRange(0, n * rows * 4).slice(0));
      this.staging.unmap();
      return out;
    });
  }

  /** Milliseconds per application to a batch of n vectors: `reps` applications queued, timed between two waits. */
  async time(n: number, reps: number, now: () => number): Promise<number> {
    const d = this.gpu.device;
    d.queue.writeBuffer(this.step, 0, Uint32Array.of(n, 0, n, 0));
    await d.queue.onSubmittedWorkDone();
    const t0 = now();
    const enc = d.createCommandEncoder();
    this.encode(enc, n, reps);
    d.queue.submit([enc.finish()]);
    await d.queue.onSubmittedWorkDone();
    return (now() - t0) / reps;
  }

  private encode(enc: GPUCommandEncoder, n: number, reps: number): void {
    const pass = enc.beginComputePass();
    for (let r = 0; r < reps; r++) encodeDispatches(pass, this.cache, this.dispatches, n, n);
    pass.end();
  }

  dispose(): void {
    this.linear.dispose();
    for (const b of [this.step, this.x, this.y, this.staging]) b.destroy();
  }
}
