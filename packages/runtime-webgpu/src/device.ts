import { WebGpuError } from './errors.js';

/**
 * The device/adapter layer: one `GpuContext` per device. It requests the limits the runtime needs (the
 * adapter's largest buffer and binding sizes, workgroup memory for resident sketch states), reports what
 * adapter it got, turns device loss and out-of-memory into typed errors (`WebGpuError`), and owns the
 * small helpers every kernel uses to make buffers.
 *
 * Nothing here touches `node:*` or the DOM: the caller passes a `GPU` object — `navigator.gpu` in a browser,
 * `create([])` from the `webgpu` package in Node.
 */

// Spec constants (WebGPU §GPUBufferUsage, §GPUMapMode, §GPUShaderStage), written out so that the runtime does
// not depend on the globals a Node binding may or may not install.
export const BufferUsage = {
  MAP_READ: 0x0001,
  COPY_SRC: 0x0004,
  COPY_DST: 0x0008,
  UNIFORM: 0x0040,
  STORAGE: 0x0080,
} as const;
export const MAP_READ = 0x0001;
export const SHADER_STAGE_COMPUTE = 0x4;

/** What adapter ran: logged by the tests and reported by the benchmark. */
export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** True for a CPU implementation (SwiftShader, WARP, lavapipe): correctness runs only, not GPU speed. */
  software: boolean;
}

/** The limits the runtime works within (the device's, lowered by `maxBindingBytes` when given). */
export interface RuntimeLimits {
  /** Largest storage binding (and buffer) the runtime creates, in bytes. */
  bindingBytes: number;
  /** Workgroup memory per workgroup, in bytes. */
  workgroupBytes: number;
  /** Workgroups per dispatch dimension. */
  workgroupsPerDimension: number;
  storageBuffersPerStage: number;
}

export interface GpuContextOptions {
  powerPreference?: GPUPowerPreference;
  /**
   * Cap every buffer (and binding) this runtime creates at this many bytes, below what the device allows:
   * large weights are split into row blocks that fit. For tests of the splitting, or to leave room.
   */
  maxBindingBytes?: number;
  /** A label for the device (shows in driver messages). */
  label?: string;
}

/** Storage buffers the largest of our kernels binds (the sketch kernel: x, y and six parameter buffers). */
const STORAGE_BUFFERS_NEEDED = 8;

const SOFTWARE = /swiftshader|llvmpipe|lavapipe|warp|software|cpu/i;

export function summarizeAdapter(info: GPUAdapterInfo | undefined, fallback = false): AdapterSummary {
  const s = (v: unknown) => (typeof v === 'string' ? v : '');
  const summary = {
    vendor: s(info?.vendor),
    architecture: s(info?.architecture),
    device: s(info?.device),
    description: s(info?.description),
  };
  const text = `${summary.vendor} ${summary.architecture} ${summary.device} ${summary.description}`;
  return { ...summary, software: fallback || SOFTWARE.test(text) };
}

export function describeAdapter(a: AdapterSummary): string {
  const parts = [a.vendor, a.architecture, a.device, a.description].filter((p) => p !== '');
  return `${parts.join(' / ') || 'unknown adapter'}${a.software ? ' (software: correctness only, not GPU speed)' : ''}`;
}

export class GpuContext {
  readonly device: GPUDevice;
  readonly adapter: AdapterSummary;
  readonly limits: RuntimeLimits;
  /** Set once the device is lost; every later call throws `device-lost`. */
  lostInfo: { reason: string; message: string } | null = null;
  private readonly ownsDevice: boolean;
  private destroyed = false;
  /**
   * The GPU object and adapter the device came from, kept reachable as long as the device is: a Node binding
   * (Dawn's `webgpu` package) may free its instance when the `GPU` object is collected, under a live device.
   */
  private keepAlive: unknown[] = [];

  private constructor(device: GPUDevice, adapter: AdapterSummary, limits: RuntimeLimits, ownsDevice: boolean) {
    this.device = device;
    this.adapter = adapter;
    this.limits = limits;
    this.ownsDevice = ownsDevice;
    void device.lost.then((info) => {
      this.lostInfo = { reason: String(info.reason), message: info.message };
    });
  }

  /** Request an adapter and a device with the limits the runtime needs. */
  static async create(gpu: GPU | undefined | null, options: GpuContextOptions = {}): Promise<GpuContext> {
    if (!gpu || typeof gpu.requestAdapter !== 'function') {
      throw new WebGpuError('no-webgpu', 'no WebGPU implementation was given (the `gpu` option is missing)', {
        hint: "pass navigator.gpu in a browser, or create([]) from the 'webgpu' package in Node",
      });
    }
    const adapter = await gpu.requestAdapter(options.powerPreference ? { powerPreference: options.powerPreference } : {});
    if (!adapter) {
      throw new WebGpuError('no-adapter', 'requestAdapter() found no WebGPU adapter', {
        hint: 'no GPU driver is available; in Node on a machine without a GPU install a Vulkan driver such as SwiftShader (docs/webgpu.md)',
      });
    }
    const al = adapter.limits;
    if (al.maxStorageBuffersPerShaderStage < STORAGE_BUFFERS_NEEDED) {
      throw new WebGpuError(
        'limits',
        `the adapter allows ${al.maxStorageBuffersPerShaderStage} storage buffers per shader stage; the runtime needs ${STORAGE_BUFFERS_NEEDED}`,
      );
    }
    const requiredLimits: Record<string, number> = {
      maxStorageBufferBindingSize: al.maxStorageBufferBindingSize,
      maxBufferSize: al.maxBufferSize,
      maxStorageBuffersPerShaderStage: STORAGE_BUFFERS_NEEDED,
      maxComputeWorkgroupStorageSize: al.maxComputeWorkgroupStorageSize,
    };
    let device: GPUDevice;
    try {
      device = await adapter.requestDevice({ requiredLimits, ...(options.label ? { label: options.label } : {}) });
    } catch (cause) {
      throw new WebGpuError('limits', `requestDevice() refused the limits ${JSON.stringify(requiredLimits)}`, { cause });
    }
    const info = (adapter as GPUAdapter & { info?: GPUAdapterInfo }).info;
    const fallback = Boolean((adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter);
    const ctx = new GpuContext(device, summarizeAdapter(info, fallback), limitsOf(device, options), true);
    ctx.keepAlive = [gpu, adapter];
    return ctx;
  }

  /** Wrap a device the caller already has (it stays the caller's: dispose() does not destroy it). */
  static fromDevice(device: GPUDevice, options: GpuContextOptions & { adapter?: AdapterSummary } = {}): GpuContext {
    return new GpuContext(device, options.adapter ?? summarizeAdapter(undefined), limitsOf(device, options), false);
  }

  /** Throw `device-lost` (or `disposed`) when the device can no longer be used. */
  checkLive(): void {
    if (this.destroyed) throw new WebGpuError('disposed', 'the session was used after dispose()');
    if (this.lostInfo) {
      throw new WebGpuError('device-lost', `the GPU device was lost (${this.lostInfo.reason}): ${this.lostInfo.message}`, {
        hint: 'create a new session; if it keeps happening, the model may be too large for this GPU',
      });
    }
  }

  /** A buffer of `size` bytes (rounded up to 4), refused with `limits` above the binding limit. */
  buffer(size: number, usage: number, label: string): GPUBuffer {
    this.checkLive();
    const bytes = Math.max(4, align4(size));
    if (bytes > this.limits.bindingBytes && (usage & BufferUsage.MAP_READ) === 0) {
      throw new WebGpuError('limits', `buffer ${label} needs ${bytes} bytes, above the binding limit of ${this.limits.bindingBytes}`, {
        hint: 'use a shorter context (contextLength) or a smaller batch (maxBatch)',
      });
    }
    return this.device.createBuffer({ size: bytes, usage, label });
  }

  /**
   * A storage buffer holding `data`'s bytes, padded with zeros to a whole number of 32-bit words plus one
   * more word (packed-bit readers may read one word past the last bit they need).
   */
  upload(data: ArrayBufferView, label: string, usage: number = BufferUsage.STORAGE): GPUBuffer {
    this.checkLive();
    const src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const bytes = align4(src.byteLength) + 4;
    if (bytes > this.limits.bindingBytes) {
      throw new WebGpuError('limits', `${label} needs ${bytes} bytes, above the binding limit of ${this.limits.bindingBytes}`);
    }
    const buf = this.device.createBuffer({ size: bytes, usage, label, mappedAtCreation: true });
    new Uint8Array(buf.getMappedRange()).set(src);
    buf.unmap();
    return buf;
  }

  /** A uniform buffer with these 32-bit words (u32 bit patterns). */
  uniform(words: Uint32Array, label: string): GPUBuffer {
    const buf = this.device.createBuffer({ size: Math.max(16, align16(words.byteLength)), usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST, label, mappedAtCreation: true });
    new Uint32Array(buf.getMappedRange()).set(words);
    buf.unmap();
    return buf;
  }

  /**
   * Run `fn` (which encodes and submits GPU work or allocates) inside out-of-memory and validation error
   * scopes, and turn what they catch into typed errors. `after` runs before the scopes are popped (e.g. a
   * mapAsync), so its own failure is reported as the device's when the device is lost.
   */
  async guard<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
    this.checkLive();
    const d = this.device;
    d.pushErrorScope('out-of-memory');
    d.pushErrorScope('validation');
    let result: T;
    let thrown: unknown = null;
    try {
      result = await fn();
    } catch (err) {
      thrown = err;
    }
    const validation = await d.popErrorScope().catch(() => null);
    const oom = await d.popErrorScope().catch(() => null);
    if (oom) throw gpuScopeError('out-of-memory', oom, what);
    if (this.lostInfo) this.checkLive();
    if (validation) throw gpuScopeError('validation', validation, what);
    if (thrown !== null) {
      if (this.lostInfo) this.checkLive();
      throw thrown;
    }
    return result!;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    if (this.ownsDevice) this.device.destroy();
    this.keepAlive = [];
  }
}

/**
 * The typed error for a `GPUError` caught by an error scope: `out-of-memory` (E_OUT_OF_MEMORY) for the
 * out-of-memory scope or any `GPUOutOfMemoryError`, `validation` otherwise. `what` says what was being done.
 */
export function gpuScopeError(scope: 'out-of-memory' | 'validation', error: { message: string }, what: string): WebGpuError {
  const kind = (error as { constructor?: { name?: string } }).constructor?.name;
  if (scope === 'out-of-memory' || kind === 'GPUOutOfMemoryError') {
    return new WebGpuError('out-of-memory', `the GPU ran out of memory while ${what}: ${error.message}`, {
      hint: 'use a shorter context (contextLength), a smaller batch (maxBatch), or a smaller model',
    });
  }
  return new WebGpuError('validation', `the GPU rejected a command while ${what}: ${error.message}`, {
    hint: 'this is a bug in @ultrasketch/runtime-webgpu; please report it with the adapter it ran on',
  });
}

function limitsOf(device: GPUDevice, options: GpuContextOptions): RuntimeLimits {
  const l = device.limits;
  let binding = Math.min(l.maxStorageBufferBindingSize, l.maxBufferSize);
  if (options.maxBindingBytes !== undefined) {
    const cap = options.maxBindingBytes;
    if (!Number.isInteger(cap) || cap < 256) {
      throw new WebGpuError('limits', `maxBindingBytes ${cap} must be an integer ≥ 256`);
    }
    binding = Math.min(binding, cap);
  }
  return {
    bindingBytes: binding - (binding % 4),
    workgroupBytes: l.maxComputeWorkgroupStorageSize,
    workgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    storageBuffersPerStage: l.maxStorageBuffersPerShaderStage,
  };
}

export function align4(n: number): number {
  return Math.ceil(n / 4) * 4;
}

function align16(n: number): number {
  return Math.ceil(n / 16) * 16;
}
