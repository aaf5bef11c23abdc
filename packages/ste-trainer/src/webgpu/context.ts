import { ErrorCodes, UltraSketchError } from '@ultrasketch/core';
import {
  BufferUsage,
  type Dispatch,
  type GpuContext,
  type GpuProgram,
  PipelineCache,
  encodeDispatches,
  grid2d,
} from '@ultrasketch/runtime-webgpu';
import { type ReductionLanes, type TrainingPrograms, trainingPrograms } from './programs.js';

/**
 * The training side of a WebGPU device: tensors (float32 storage buffers that stay on the GPU), and an
 * executor that encodes op dispatches into one command encoder until something must come back (`read`) or the
 * caller `flush`es. It reuses runtime-webgpu's device layer (`GpuContext`: limits, typed errors, device loss)
 * and its program machinery (`GpuProgram` as data, the per-device `PipelineCache`, `encodeDispatches`) — the
 * training ops are more programs, not a second pipeline system.
 *
 * Per-dispatch uniforms (shapes, strides, scalars) and bind groups are cached by content: a training step
 * issues the same dispatches with the same shapes every time, so after the first step nothing is allocated per
 * dispatch. Errors: commands are submitted only by `flush`/`read`, inside `GpuContext.guard`'s out-of-memory and
 * validation error scopes, so what the device rejects becomes runtime-webgpu's typed `WebGpuError`.
 */

/** A float32 (or u32, for token ids) array living in a GPU storage buffer. */
export interface GpuTensor {
  readonly buffer: GPUBuffer;
  /** Elements (4 bytes each). */
  readonly length: number;
  readonly label: string;
  /** Unique per context: the bind-group cache's key. */
  readonly id: number;
}

const TENSOR_USAGE = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;
const WORKGROUP_LIMIT_FALLBACK = 65535;

export class GpuTrainContext {
  readonly cache: PipelineCache;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private nextId = 1;
  private readonly uniforms = new Map<string, GPUBuffer>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly scratch = new Map<string, GpuTensor>();
  private readonly owned = new Set<GpuTensor>();
  private disposed = false;
  /** Dispatches encoded since the context was made (for tests and profiles). */
  dispatchCount = 0;

  /** The programs this context dispatches (the reduction programs in its `lanes` shape). */
  readonly programs: TrainingPrograms;

  private constructor(
    readonly gpu: GpuContext,
    /** Invocations per row of the reduction programs (see programs.ts `ReductionLanes`). */
    readonly lanes: ReductionLanes,
  ) {
    this.cache = PipelineCache.for(gpu.device);
    this.programs = trainingPrograms(lanes);
  }

  /**
   * Wrap a device context and compile every training program once (a fixed set; shapes are uniforms).
   * `lanes`: 64 (workgroup-tree reductions) on hardware adapters, 1 (no barriers) on software ones by default.
   */
  static async create(gpu: GpuContext, options: { lanes?: ReductionLanes } = {}): Promise<GpuTrainContext> {
    const lanes = options.lanes ?? (gpu.adapter.software ? 1 : 64);
    if (lanes !== 1 && lanes !== 64) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `lanes ${String(lanes)}: 1 or 64`);
    const ctx = new GpuTrainContext(gpu, lanes);
    await gpu.guard('compiling the training programs', () => Promise.all(Object.values(ctx.programs).map((p) => ctx.cache.pipeline(p))));
    return ctx;
  }

  get workgroupsPerDimension(): number {
    return this.gpu.limits.workgroupsPerDimension || WORKGROUP_LIMIT_FALLBACK;
  }

  /** A zero-filled tensor of `length` 4-byte elements. */
  tensor(length: number, label: string): GpuTensor {
    this.live();
    if (!Number.isInteger(length) || length < 0) {
      throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, `tensor ${label}: length ${length} must be a non-negative integer`);
    }
    // buffer() refuses (typed, with a hint) sizes above the binding limit; new buffers are zero-initialised.
    const t: GpuTensor = { buffer: this.gpu.buffer(length * 4, TENSOR_USAGE, label), length, label, id: this.nextId++ };
    this.owned.add(t);
    return t;
  }

  /** A tensor holding `data` (Float32Array, or Uint32Array/Int32Array for ids). */
  upload(data: Float32Array | Uint32Array | Int32Array, label: string): GpuTensor {
    const t = this.tensor(data.length, label);
    this.write(t, data);
    return t;
  }

  /** Overwrite a tensor's first `data.length` elements (queued in order with the dispatches). */
  write(t: GpuTensor, data: Float32Array | Uint32Array | Int32Array, offset = 0): void {
    this.live();
    if (offset + data.length > t.length) {
      throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `write: ${data.length} values at ${offset} into ${t.label} of ${t.length}`);
    }
    // queue.writeBuffer would run before every command still being encoded (it is ordered with submissions,
    // not with our encoder), so the data goes through a staging buffer and a copy encoded in order.
    if (data.length === 0) return;
    const staging = this.gpu.device.createBuffer({ size: data.byteLength, usage: BufferUsage.COPY_SRC, mappedAtCreation: true, label: `write.${t.label}` });
    new Uint8Array(staging.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    staging.unmap();
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(staging, 0, t.buffer, offset * 4, data.byteLength);
    this.transient.push(staging);
  }

  /** A grow-only scratch tensor of at least `length` elements, shared by every op that asks for `key`. */
  scratchTensor(key: string, length: number): GpuTensor {
    const have = this.scratch.get(key);
    if (have && have.length >= length) return have;
    if (have) this.free(have);
    const t = this.tensor(length, `scratch.${key}`);
    this.scratch.set(key, t);
    return t;
  }

  /** Destroy a tensor (and forget the bind groups that used it). */
  free(t: GpuTensor): void {
    if (!this.owned.delete(t)) return;
    for (const key of [...this.bindGroups.keys()]) if (key.split('|')[1]!.split(',').includes(String(t.id))) this.bindGroups.delete(key);
    // commands already encoded may use it: destroy it after they are submitted
    this.transient.push(t.buffer);
  }

  /** Set `count` elements from `offset` to zero. */
  zero(t: GpuTensor, offset = 0, count = t.length - offset): void {
    if (count <= 0) return;
    this.endPass();
    this.commandEncoder().clearBuffer(t.buffer, offset * 4, count * 4);
  }

  /** dst[dstOffset..+count] = src[srcOffset..+count]. */
  copy(src: GpuTensor, dst: GpuTensor, count = Math.min(src.length, dst.length), srcOffset = 0, dstOffset = 0): void {
    if (count <= 0) return;
    if (srcOffset + count > src.length || dstOffset + count > dst.length) {
      throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `copy: ${count} values from ${src.label} to ${dst.label} out of range`);
    }
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src.buffer, srcOffset * 4, dst.buffer, dstOffset * 4, count * 4);
  }

  /**
   * Encode one dispatch of `program` with the uniform words and the tensors bound in order after the uniform
   * (binding 0). `grid` in workgroups; an empty grid encodes nothing.
   */
  dispatch(program: GpuProgram, words: Uint32Array, tensors: readonly GpuTensor[], grid: [number, number, number]): void {
    this.live();
    if (grid[0] === 0 || grid[1] === 0 || grid[2] === 0) return;
    const limit = this.workgroupsPerDimension;
    if (grid.some((g) => g > limit)) {
      throw new UltraSketchError(ErrorCodes.LIMIT_EXCEEDED, `${program.name}: grid ${grid.join('×')} exceeds ${limit} workgroups per dimension`, {
        hint: 'use a smaller batch or sequence length',
      });
    }
    const uniform = this.uniformFor(words);
    const key = `${program.bindings.join(',')}|${tensors.map((t) => t.id).join(',')}|${uniformKey(words)}`;
    let bindGroup = this.bindGroups.get(key);
    if (!bindGroup) {
      bindGroup = this.cache.bindGroup(program, [uniform, ...tensors.map((t) => t.buffer)], program.name);
      this.bindGroups.set(key, bindGroup);
    }
    const d: Dispatch = { program, bindGroup, grid: () => grid };
    encodeDispatches(this.computePass(), this.cache, [d], 0, 0);
    this.dispatchCount++;
  }

  /** A 1-D grid of `threads` invocations in workgroups of `size`, split over x and y within the limit. */
  grid1d(threads: number, size: number): { grid: [number, number, number]; gridX: number } {
    const groups = Math.ceil(threads / size);
    const [x, y] = grid2d(Math.max(groups, 0), this.workgroupsPerDimension);
    return { grid: [groups === 0 ? 0 : x, groups === 0 ? 0 : y, 1], gridX: x };
  }

  /** Submit what was encoded (inside the error scopes) and wait until the GPU has run it. */
  async flush(): Promise<void> {
    await this.gpu.guard('running training ops', async () => {
      this.submit();
      await this.gpu.device.queue.onSubmittedWorkDone();
    });
  }

  /** Run everything encoded so far and read `count` elements of `t` from `offset` back. */
  async read(t: GpuTensor, offset = 0, count = t.length - offset): Promise<Float32Array> {
    const bytes = await this.readBytes(t, offset, count);
    return new Float32Array(bytes);
  }

  /** As `read`, as u32 values. */
  async readU32(t: GpuTensor, offset = 0, count = t.length - offset): Promise<Uint32Array> {
    return new Uint32Array(await this.readBytes(t, offset, count));
  }

  private async readBytes(t: GpuTensor, offset: number, count: number): Promise<ArrayBuffer> {
    this.live();
    if (offset < 0 || count < 0 || offset + count > t.length) {
      throw new UltraSketchError(ErrorCodes.SHAPE_MISMATCH, `read: ${count} values at ${offset} of ${t.label} (${t.length})`);
    }
    const bytes = Math.max(4, count * 4);
    const staging = this.gpu.buffer(bytes, BufferUsage.MAP_READ | BufferUsage.COPY_DST, `read.${t.label}`);
    try {
      return await this.gpu.guard(`reading ${t.label}`, async () => {
        this.endPass();
        if (count > 0) this.commandEncoder().copyBufferToBuffer(t.buffer, offset * 4, staging, 0, count * 4);
        this.submit();
        await staging.mapAsync(0x0001, 0, bytes);
        const out = staging.getMappedRange(0, bytes).slice(0, count * 4);
        staging.unmap();
        return out;
      });
    } finally {
      staging.destroy();
    }
  }

  /** Free every tensor this context made and its cached uniforms. The GpuContext stays the caller's. */
  dispose(): void {
    if (this.disposed) return;
    this.encoder = null;
    this.pass = null;
    for (const b of this.transient) b.destroy();
    this.transient = [];
    for (const t of this.owned) t.buffer.destroy();
    for (const u of this.uniforms.values()) u.destroy();
    this.owned.clear();
    this.uniforms.clear();
    this.bindGroups.clear();
    this.scratch.clear();
    this.disposed = true;
  }

  private live(): void {
    if (this.disposed) throw new UltraSketchError(ErrorCodes.BAD_ARGUMENT, 'the WebGPU training context was used after dispose()');
    this.gpu.checkLive();
  }

  private uniformFor(words: Uint32Array): GPUBuffer {
    const key = uniformKey(words);
    let u = this.uniforms.get(key);
    if (!u) {
      u = this.gpu.uniform(words, 'train.uniform');
      this.uniforms.set(key, u);
    }
    return u;
  }

  private commandEncoder(): GPUCommandEncoder {
    if (!this.encoder) {
      // Encoding errors surface at finish(), which runs inside guard() (flush/read): typed errors there.
      this.encoder = this.gpu.device.createCommandEncoder({ label: 'train' });
    }
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) this.pass = this.commandEncoder().beginComputePass({ label: 'train' });
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  /** Finish and submit the pending encoder (called inside guard(), whose scopes catch what it rejects). */
  private submit(): void {
    if (this.encoder) {
      this.endPass();
      const enc = this.encoder;
      this.encoder = null;
      this.gpu.device.queue.submit([enc.finish()]);
    }
    for (const b of this.transient) b.destroy(); // destroy() waits for submitted work that uses the buffer
    this.transient = [];
  }

  private transient: GPUBuffer[] = [];
}

function uniformKey(words: Uint32Array): string {
  return Array.prototype.join.call(words, ',');
}
