/**
 * `--runtime node|webgpu` for `generate` and `eval`: the option's table entry and the session it opens. `node`
 * is runtime-node (CPU: dense wasm/js kernels for checkpoints, fused codec kernels for bundles); `webgpu` is
 * runtime-webgpu through Dawn (the `webgpu` package), falling back to SwiftShader when no GPU adapter is found.
 */
import { type OpenedModel, type ReferenceModel, createSession, describeRuntime, sessionContextLength } from '@ultrasketch/pipeline';
import { type KernelChoice, type NodeSession, type SessionMemory, bundleWeightBytes, resolveThreads } from '@ultrasketch/runtime-node';
import { WebGpuSession, describeAdapter } from '@ultrasketch/runtime-webgpu';
// The Node entry (Dawn) is loaded only when --runtime webgpu is asked for: `node` runs never load the native
// module, and the root vitest config (which aliases only the packages' main entries) can import the commands.
type NodeGpu = typeof import('@ultrasketch/runtime-webgpu/node').nodeGpu;
const loadNodeGpu = async (): ReturnType<NodeGpu> => (await import('@ultrasketch/runtime-webgpu/node')).nodeGpu();
import type { CommandIO, OptionSpec } from './command.js';
import { note, warn } from './io.js';

export type RuntimeChoice = 'node' | 'webgpu';

export const RUNTIME_OPTION: OptionSpec = {
  name: 'runtime',
  kind: 'string',
  valueName: 'R',
  default: 'node',
  choices: ['node', 'webgpu'],
  description:
    'where the model runs: node (CPU, runtime-node) or webgpu (runtime-webgpu through Dawn; SwiftShader when no GPU adapter is found). --kernels is ignored with webgpu',
};

/**
 * `--kernels auto|wasm|js` for the commands that run a float checkpoint on the CPU (`generate`, `eval`, `bench`,
 * `sweep`); each says in `description` what the choice applies to there.
 */
export function kernelsOption(description: string): OptionSpec {
  return { name: 'kernels', kind: 'string', valueName: 'K', default: 'auto', choices: ['auto', 'wasm', 'js'], description };
}

/** The description of --kernels where it picks the linear layers' kernels of a checkpoint (generate, eval). */
export const KERNELS_FOR_CHECKPOINT =
  'CPU kernels for the linear layers of a checkpoint: wasm (WebAssembly SIMD), js (the reference JS loops), auto (wasm when available); --runtime node only';

/**
 * `--threads N` for `generate`, `bench` and `eval` (runtime node): the rows of large products are split across
 * N threads over shared wasm memory, bit-identical to one thread. Default: ULTRASKETCH_THREADS, else 1.
 */
export const THREADS_OPTION: OptionSpec = {
  name: 'threads',
  kind: 'int',
  valueName: 'N',
  min: 1,
  max: 256,
  defaultText: 'ULTRASKETCH_THREADS, else 1',
  description:
    'CPU threads for the products of --runtime node (rows split across worker threads; results identical to one thread; small products stay on one thread)',
};

/** The thread count of a command: --threads, else ULTRASKETCH_THREADS, else 1 (a bad environment value is a typed error). */
export function threadsOption(value: unknown): number {
  return resolveThreads(value === undefined ? undefined : (value as number));
}

export type RunSession = { runtime: 'node'; session: NodeSession } | { runtime: 'webgpu'; session: WebGpuSession };

/** Open a session for `model` on the chosen runtime; with webgpu the GPU is found once and shared by the calls. */
export class SessionFactory {
  private gpu: ReturnType<NodeGpu> | undefined;
  private announced = false;

  constructor(
    readonly runtime: RuntimeChoice,
    private readonly kernels: KernelChoice,
    private readonly io: CommandIO,
    private readonly quiet: boolean,
    /** Threads of runtime-node sessions (THREADS_OPTION). */
    readonly threads = 1,
  ) {}

  /** With webgpu, say that --kernels (when given) does not apply. */
  kernelsIgnoredNote(given: ReadonlySet<string> | undefined): void {
    if (this.runtime === 'webgpu' && given?.has('kernels')) {
      note(this.io, this.quiet, `--kernels ${this.kernels} applies to --runtime node; ignored with --runtime webgpu`);
    }
  }

  /**
   * `contextLength`: the KV cache's capacity in positions — what the command needs (generate: its steps; eval: the
   * window), so a 128k-context model does not reserve gigabytes of cache it never uses. Default: seq_len, capped
   * at 4096 positions (DEFAULT_CONTEXT_CAP).
   */
  async open(model: OpenedModel | ReferenceModel, contextLength?: number): Promise<RunSession> {
    const cap = sessionContextLength(model.config, contextLength);
    if (this.runtime === 'node') return { runtime: 'node', session: createSession(model, { kernels: this.kernels, contextLength: cap, threads: this.threads }) };
    this.gpu ??= loadNodeGpu();
    const gpu = await this.gpu;
    const session =
      model.kind === 'bundle'
        ? await WebGpuSession.fromBundle(model.bundle, { gpu, source: model.source.path, contextLength: cap })
        : await WebGpuSession.fromWeights(model.weights, { gpu, source: model.source.path, contextLength: cap });
    if (!this.announced) {
      this.announced = true;
      note(this.io, this.quiet, `webgpu adapter: ${describeAdapter(session.adapter)}`);
      if (session.adapter.software) warn(this.io, 'software adapter (SwiftShader): correctness only, not GPU speed');
    }
    return { runtime: 'webgpu', session };
  }
}

/** What a session runs, in words (reports). */
export function describeRunSession(model: OpenedModel | ReferenceModel, s: RunSession): string {
  if (s.runtime === 'node') return describeRuntime(model, s.session);
  return `runtime-webgpu, ${model.kind === 'bundle' ? 'fused codec kernels (weights stay compressed)' : 'float32'}, ${describeAdapter(s.session.adapter)}`;
}

/** The kernels named in reports: 'fused' for a bundle, the CPU kernels on node, 'webgpu' on webgpu. */
export function kernelsLabel(model: OpenedModel, s: RunSession): string {
  if (model.kind === 'bundle') return 'fused';
  return s.runtime === 'node' ? s.session.kernels : 'webgpu';
}

/** What a session holds in memory, next to the model file's size (reports; null on webgpu). */
export type MemoryReport = SessionMemory & {
  /** The model file's size in bytes. */
  fileBytes: number;
  /** A bundle's stored weight tensors (codec parameters), in bytes; null for a float checkpoint. */
  bundleTensorBytes: number | null;
  /** Threads the session computes its products with. */
  threads: number;
  /** Products the session split across threads / ran on one thread (the adaptive policy's choices). */
  productsSplit: number;
  productsSingle: number;
};

export function memoryReport(model: OpenedModel | ReferenceModel, s: RunSession): MemoryReport | null {
  if (s.runtime !== 'node') return null;
  return {
    ...s.session.memory(),
    fileBytes: model.source.fileBytes,
    bundleTensorBytes: model.kind === 'bundle' ? bundleWeightBytes(model.bundle) : null,
    threads: s.session.threads,
    productsSplit: s.session.threadStats.split,
    productsSingle: s.session.threadStats.single,
  };
}
