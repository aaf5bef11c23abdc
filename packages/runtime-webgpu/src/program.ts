import { SHADER_STAGE_COMPUTE } from './device.js';
import { WebGpuError } from './errors.js';

/**
 * GPU programs as data (onnxruntime-web's `ProgramInfo` habit): a program is its WGSL text, the kinds of
 * its bindings, and a cache key naming everything that changes the text. Shapes, strides and offsets are
 * never in the text — they travel in uniform buffers — so one compiled pipeline serves every layer of every
 * model with the same codec variant. Pipelines are compiled with `createComputePipelineAsync` (no stall on
 * the main thread) and cached per device; bind-group layouts are explicit and shared by every program with
 * the same binding signature, so a bind group made once serves both the matrix-vector and the batched
 * variant of a kernel.
 */

/** Binding kinds, in binding order (all in group 0). */
export type BindingKind = 'uniform' | 'read' | 'rw';

export interface GpuProgram {
  /** Short name, for labels and error messages. */
  readonly name: string;
  /** Everything that changes the WGSL (variant constants, codec options that are compiled in); never shapes. */
  readonly cacheKey: string;
  readonly bindings: readonly BindingKind[];
  readonly wgsl: string;
}

/** One recorded dispatch: the program, its bind group, and its grid as a function of the batch. */
export interface Dispatch {
  program: GpuProgram;
  bindGroup: GPUBindGroup;
  /** Workgroups (x, y, z) for a batch of `n` tokens of which `logitRows` get logits; 0 anywhere skips it. */
  grid(n: number, logitRows: number): [number, number, number];
  /** The program to run for this batch when it depends on the batch (matrix-vector vs tiled); default `program`. */
  variant?(n: number, logitRows: number): GpuProgram;
  /** What it computes (weight name, op), for profiles. */
  label?: string;
  /** Every program this dispatch may run (default [program]). */
  programs?: GpuProgram[];
}

const caches = new WeakMap<GPUDevice, PipelineCache>();

export class PipelineCache {
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>();
  private readonly ready = new Map<string, GPUComputePipeline>();

  private constructor(private readonly device: GPUDevice) {}

  static for(device: GPUDevice): PipelineCache {
    let c = caches.get(device);
    if (!c) {
      c = new PipelineCache(device);
      caches.set(device, c);
    }
    return c;
  }

  /** Number of distinct pipelines compiled (or compiling) on this device. */
  get size(): number {
    return this.pipelines.size;
  }

  layout(bindings: readonly BindingKind[]): GPUBindGroupLayout {
    const key = bindings.join(',');
    let l = this.layouts.get(key);
    if (!l) {
      l = this.device.createBindGroupLayout({
        label: `layout(${key})`,
        entries: bindings.map((kind, binding) => ({
          binding,
          visibility: SHADER_STAGE_COMPUTE,
          buffer: { type: kind === 'uniform' ? 'uniform' : kind === 'read' ? 'read-only-storage' : 'storage' },
        })),
      });
      this.layouts.set(key, l);
    }
    return l;
  }

  /** Compile (once per cache key) and return the pipeline. */
  pipeline(program: GpuProgram): Promise<GPUComputePipeline> {
    let p = this.pipelines.get(program.cacheKey);
    if (!p) {
      const layout = this.device.createPipelineLayout({ bindGroupLayouts: [this.layout(program.bindings)] });
      const module = this.device.createShaderModule({ code: program.wgsl, label: program.name });
      p = this.device
        .createComputePipelineAsync({ layout, compute: { module, entryPoint: 'main' }, label: program.name })
        .then(
          (pipeline) => {
            this.ready.set(program.cacheKey, pipeline);
            return pipeline;
          },
          async (cause: unknown) => {
            this.pipelines.delete(program.cacheKey);
            const info = await module.getCompilationInfo().catch(() => null);
            const messages = info?.messages.map((m) => `${m.type} ${m.lineNum}:${m.linePos} ${m.message}`).join('; ') ?? '';
            throw new WebGpuError('validation', `WGSL program ${program.name} failed to compile: ${String(cause)} ${messages}`, { cause });
          },
        );
      this.pipelines.set(program.cacheKey, p);
    }
    return p;
  }

  /** The compiled pipeline, when compilation has finished (call `pipeline()` and await it first). */
  compiled(program: GpuProgram): GPUComputePipeline {
    const p = this.ready.get(program.cacheKey);
    if (!p) throw new Error(`pipeline ${program.name} (${program.cacheKey}) used before it was compiled`);
    return p;
  }

  bindGroup(program: GpuProgram, buffers: readonly GPUBuffer[], label: string): GPUBindGroup {
    if (buffers.length !== program.bindings.length) {
      throw new Error(`${program.name}: ${buffers.length} buffers for ${program.bindings.length} bindings`);
    }
    return this.device.createBindGroup({
      label,
      layout: this.layout(program.bindings),
      entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
  }
}

/**
 * Encode recorded dispatches for one batch of `n` tokens (of which `logitRows` get logits) into a compute pass:
 * for each, the pipeline of the program it runs for this batch (`variant`, else `program`), its bind group and
 * its grid; a dispatch whose grid is empty in any dimension is skipped. Every forward call, kernel run, timing
 * loop and profile encodes through this one function. Returns the programs encoded, in order.
 */
export function encodeDispatches(
  pass: GPUComputePassEncoder,
  cache: PipelineCache,
  dispatches: readonly Dispatch[],
  n: number,
  logitRows: number,
): GpuProgram[] {
  const encoded: GpuProgram[] = [];
  for (const d of dispatches) {
    const [gx, gy, gz] = d.grid(n, logitRows);
    if (gx === 0 || gy === 0 || gz === 0) continue;
    const program = d.variant ? d.variant(n, logitRows) : d.program;
    pass.setPipeline(cache.compiled(program));
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(gx, gy, gz);
    encoded.push(program);
  }
  return encoded;
}

/** Split a count of workgroups over x and y when it exceeds the per-dimension limit. */
export function grid2d(count: number, perDimension: number): [number, number] {
  if (count <= perDimension) return [count, 1];
  const y = Math.ceil(count / perDimension);
  return [Math.ceil(count / y), y];
}
