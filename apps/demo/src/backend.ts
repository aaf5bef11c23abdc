/**
 * Running an opened bundle: on WebGPU (runtime-webgpu's fused codec kernels) when the page has an adapter, else
 * on the CPU (runtime-node's WebAssembly kernels, reached through the pipeline's browser entry). Both sessions
 * generate the same `GenerateStep` stream, so the page does not care which one it got.
 */
import { type OpenedBundle, createSession, describeRuntime } from '@ultrasketch/pipeline/browser';
import { WebGpuSession, describeAdapter } from '@ultrasketch/runtime-webgpu';
import type { CpuMemory, WorkerError, WorkerIn, WorkerOut } from './cpu-worker.js';

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

/** A worker's error as an Error carrying the typed fields (code, hint, problem, source) the page shows. */
function workerError(e: WorkerError): Error {
  return Object.assign(new Error(e.message), e);
}

function cpuMemory(m: CpuMemory): { total: number; parts: Record<string, number> } {
  return { total: m.weightsBytes + m.kvCacheBytes + m.scratchBytes, parts: { weights: m.weightsBytes, 'KV cache': m.kvCacheBytes, scratch: m.scratchBytes } };
}

/**
 * The CPU session in a Web Worker (src/cpu-worker.ts): every token is computed off the page's thread. The worker
 * opens its own copy of the bundle; generation steps come back as messages.
 */
async function workerCpuSession(bytes: Uint8Array, name: string, contextLength: number, fallbackReason: string | undefined): Promise<RunningSession> {
  const worker = new Worker(new URL('./cpu-worker.ts', import.meta.url), { type: 'module', name: 'ultrasketch-cpu' });
  const send = (m: WorkerIn, transfer: Transferable[] = []) => worker.postMessage(m, transfer);
  let listener: (m: WorkerOut) => void = () => {};
  worker.onmessage = (ev: MessageEvent<WorkerOut>) => listener(ev.data);
  worker.onerror = (ev) => {
    ev.preventDefault();
    listener({ type: 'error', error: { message: `the CPU worker failed: ${ev.message || 'it could not be started'}` } });
  };
  let memory: CpuMemory;
  let kernels: string;
  try {
    const copy = bytes.slice(); // the page keeps its own bytes; this copy is moved, not cloned, into the worker
    const ready = await new Promise<Extract<WorkerOut, { type: 'ready' }>>((resolve, reject) => {
      listener = (m) => (m.type === 'ready' ? resolve(m) : m.type === 'error' ? reject(workerError(m.error)) : undefined);
      send({ type: 'open', bytes: copy.buffer, name, contextLength }, [copy.buffer]);
    });
    memory = ready.memory;
    kernels = ready.kernels;
  } catch (err) {
    worker.terminate();
    throw err;
  }
  let nextId = 0;
  return {
    backend: 'cpu',
    detail: `${kernels}, WebAssembly, one thread, in a Web Worker`,
    fallbackReason,
    contextLength,
    memory: () => cpuMemory(memory),
    async *generate(prompt, options) {
      const id = ++nextId;
      const queue: WorkerOut[] = [];
      let wake: (() => void) | undefined;
      listener = (m) => {
        queue.push(m);
        wake?.();
      };
      const take = async (): Promise<WorkerOut> => {
        while (queue.length === 0) await new Promise<void>((resolve) => (wake = resolve));
        return queue.shift()!;
      };
      let ended = false;
      send({ type: 'generate', id, prompt, ...options });
      try {
        for (;;) {
          const m = await take();
          if (m.type === 'error') {
            ended = true;
            throw workerError(m.error);
          }
          if (m.type === 'ready' || m.id !== id) continue; // the tail of an earlier, stopped generation
          if (m.type === 'end') {
            ended = true;
            memory = m.memory;
            return;
          }
          if (m.type === 'step') yield { pos: m.pos, next: m.next };
        }
      } finally {
        // The page stopped reading (a stop id, Stop): stop the worker and wait for its end, so the next
        // generation never runs while this one still does (they share one KV cache).
        if (!ended) {
          send({ type: 'stop' });
          for (;;) {
            const m = await take();
            if (m.type === 'error' || (m.type === 'end' && m.id === id)) break;
          }
        }
      }
    },
    dispose: () => worker.terminate(),
  };
}

/** The CPU session on the page's thread (where Web Workers are missing). */
function cpuSession(model: OpenedBundle, contextLength: number, fallbackReason: string | undefined): RunningSession {
  const session = createSession(model, { contextLength, threads: 1 });
  return {
    backend: 'cpu',
    detail: `${describeRuntime(model, session)}, WebAssembly, one thread, on the page's thread`,
    fallbackReason,
    contextLength,
    memory: () => cpuMemory(session.memory()),
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
export async function startSession(model: OpenedBundle, bytes: Uint8Array, choice: BackendChoice, contextLength: number): Promise<RunningSession> {
  const cpu = async (reason: string | undefined): Promise<RunningSession> => {
    if (typeof Worker === 'undefined') return cpuSession(model, contextLength, reason);
    try {
      return await workerCpuSession(bytes, model.source.path, contextLength, reason);
    } catch (err) {
      // A typed error is about the model (the page opened the same bytes, so hardly ever): show it. Anything
      // else means the worker itself could not run (a browser without module workers): run on the page.
      if ((err as { code?: unknown }).code !== undefined) throw err;
      console.warn('the CPU worker could not start; running on the page thread instead:', err);
      return cpuSession(model, contextLength, reason);
    }
  };
  if (choice === 'cpu') return cpu(undefined);
  const missing = await webGpuUnavailable();
  if (missing !== undefined) {
    if (choice === 'webgpu') {
      throw new DemoError('E_UNSUPPORTED', `WebGPU is not available: ${missing}`, 'choose the CPU backend, or a browser with WebGPU (Chrome/Edge 113+, or --enable-unsafe-webgpu)');
    }
    return cpu(missing);
  }
  try {
    return await gpuSession(model, contextLength);
  } catch (err) {
    if (choice === 'webgpu') throw err;
    return cpu(`the WebGPU session failed: ${err instanceof Error ? err.message : String(err)}`);
  }
}
