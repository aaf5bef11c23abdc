/**
 * Running an opened bundle: on WebGPU (runtime-webgpu's fused codec kernels) when the page has an adapter, else
 * on the CPU (runtime-node's WebAssembly kernels, reached through the pipeline's browser entry). Both sessions
 * generate the same `GenerateStep` stream, so the page does not care which one it got.
 */
import { type OpenedBundle, createSession } from '@ultrasketch/pipeline/browser';
import { WebGpuSession, describeAdapter } from '@ultrasketch/runtime-webgpu';

export type BackendChoice = 'auto' | 'webgpu' | 'cpu';

export interface GenerateStepLike {
  pos: number;
  next: number;
}

/** What the page needs of a session, whichever runtime it is. */
export interface RunningSession {
  backend: 'webgpu' | 'cpu';
  /** In words: the adapter for WebGPU, the kernels for the CPU. */
  detail: string;
  /** Why the CPU ran in auto mode (no navigator.gpu, no adapter, the GPU session failed); undefined otherwise. */
  fallbackReason: string | undefined;
  contextLength: number;
  /** Bytes held by the runtime, by purpose. */
  memory(): { total: number; parts: Record<string, number> };
  generate(prompt: number[], options: { steps: number; temperature: number; seed: number }): AsyncGenerator<GenerateStepLike>;
  dispose(): void;
}

/** A failure the page shows with its hint (the workspace's typed errors carry `code` and `hint`; so do these). */
export class DemoError extends Error {
  override readonly name = 'DemoError';
  constructor(
    readonly code: string,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** Why WebGPU cannot run here, or undefined when an adapter exists. */
export async function webGpuUnavailable(): Promise<string | undefined> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) return 'navigator.gpu is missing: this browser has no WebGPU, or it is switched off';
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return 'navigator.gpu.requestAdapter() found no adapter (no GPU driver usable by the browser)';
  } catch (err) {
    return `navigator.gpu.requestAdapter() failed: ${err instanceof Error ? err.message : String(err)}`;
  }
  return undefined;
}

function cpuSession(model: OpenedBundle, contextLength: number, fallbackReason: string | undefined): RunningSession {
  // One thread: worker threads are runtime-node's Node-only path; the page runs the WebAssembly kernels inline.
  const session = createSession(model, { contextLength, threads: 1 });
  return {
    backend: 'cpu',
    detail: `WebAssembly SIMD kernels (runtime-node, ${session.kernels}), one thread`,
    fallbackReason,
    contextLength,
    memory() {
      const m = session.memory();
      return {
        total: m.weightsBytes + m.kvCacheBytes + m.scratchBytes,
        parts: { weights: m.weightsBytes, 'KV cache': m.kvCacheBytes, scratch: m.scratchBytes },
      };
    },
    async *generate(prompt, options) {
      for await (const step of session.generate(prompt, { ...options, stopToken: -1 })) {
        yield step;
        // The CPU kernels run on the page's thread: hand it back between tokens so the text streams and the Stop
        // button stays clickable.
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    },
    dispose: () => session.dispose(),
  };
}

async function gpuSession(model: OpenedBundle, contextLength: number): Promise<RunningSession> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  const session = await WebGpuSession.fromBundle(model.bundle, { gpu, contextLength, source: model.source.path });
  return {
    backend: 'webgpu',
    detail: describeAdapter(session.adapter),
    fallbackReason: undefined,
    contextLength,
    memory() {
      const m = session.memory();
      return { total: m.parameters + m.kvCache + m.scratch, parts: { parameters: m.parameters, 'KV cache': m.kvCache, scratch: m.scratch } };
    },
    generate: (prompt, options) => session.generate(prompt, { ...options, stopToken: -1 }),
    dispose: () => session.dispose(),
  };
}

/**
 * A session for the chosen backend. 'auto' takes WebGPU when an adapter exists and falls back to the CPU (with
 * the reason, shown on the page) when there is none or the GPU session cannot be built; 'webgpu' fails instead.
 */
export async function startSession(model: OpenedBundle, choice: BackendChoice, contextLength: number): Promise<RunningSession> {
  if (choice === 'cpu') return cpuSession(model, contextLength, undefined);
  const missing = await webGpuUnavailable();
  if (missing !== undefined) {
    if (choice === 'webgpu') {
      throw new DemoError('E_UNSUPPORTED', `WebGPU is not available: ${missing}`, 'choose the CPU backend, or a browser with WebGPU (Chrome/Edge 113+, or --enable-unsafe-webgpu)');
    }
    return cpuSession(model, contextLength, missing);
  }
  try {
    return await gpuSession(model, contextLength);
  } catch (err) {
    if (choice === 'webgpu') throw err;
    return cpuSession(model, contextLength, `the WebGPU session failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}
