/**
 * The CPU fallback in a Web Worker: runtime-node's WebAssembly kernels (through the pipeline's browser entry)
 * compute every token off the page's thread, so the page stays responsive however slow the model is on the CPU.
 * The worker opens its own copy of the bundle from the bytes the page sends (the page keeps its copy for the
 * figures and plots) and streams each generation step back.
 *
 * Messages in: open {bytes, name, contextLength} | generate {id, prompt, steps, temperature, seed} | stop.
 * Messages out: ready {kernels (in words), memory} | step {id, pos, next} | end {id, memory} | error {id?, error}.
 */
import { createSession, describeRuntime, openModel } from '@ultrasketch/pipeline/browser';

type Session = ReturnType<typeof createSession>;

export type WorkerIn =
  | { type: 'open'; bytes: ArrayBuffer; name: string; contextLength: number }
  | { type: 'generate'; id: number; prompt: number[]; steps: number; temperature: number; seed: number }
  | { type: 'stop' };

export interface CpuMemory {
  weightsBytes: number;
  kvCacheBytes: number;
  scratchBytes: number;
}

export interface WorkerError {
  message: string;
  code?: string;
  hint?: string;
  problem?: string;
  source?: string;
}

export type WorkerOut =
  | { type: 'ready'; kernels: string; memory: CpuMemory }
  | { type: 'step'; id: number; pos: number; next: number }
  | { type: 'end'; id: number; memory: CpuMemory }
  | { type: 'error'; id?: number; error: WorkerError };

const post = (message: WorkerOut) => (self as unknown as { postMessage(m: WorkerOut): void }).postMessage(message);

/** The typed errors' fields survive postMessage only as plain data. */
function plain(err: unknown): WorkerError {
  const e = err as { message?: string; code?: string; hint?: string; problem?: string; source?: string };
  const out: WorkerError = { message: e.message ?? String(err) };
  for (const k of ['code', 'hint', 'problem', 'source'] as const) if (typeof e[k] === 'string') out[k] = e[k];
  return out;
}

function memory(session: Session): CpuMemory {
  const m = session.memory();
  return { weightsBytes: m.weightsBytes, kvCacheBytes: m.kvCacheBytes, scratchBytes: m.scratchBytes };
}

let session: Session | undefined;
let stop = false;

async function generate(id: number, prompt: number[], steps: number, temperature: number, seed: number): Promise<void> {
  stop = false;
  for await (const step of session!.generate(prompt, { steps, temperature, seed, stopToken: -1 })) {
    post({ type: 'step', id, pos: step.pos, next: step.next });
    // a macrotask between tokens lets a 'stop' message in
    await new Promise((resolve) => setTimeout(resolve, 0));
    if (stop) break;
  }
  post({ type: 'end', id, memory: memory(session!) });
}

self.addEventListener('message', (ev: MessageEvent<WorkerIn>) => {
  const msg = ev.data;
  if (msg.type === 'stop') {
    stop = true;
    return;
  }
  if (msg.type === 'open') {
    try {
      session?.dispose();
      const model = openModel(new Uint8Array(msg.bytes), { name: msg.name });
      // One kernel thread: runtime-node's worker threads are its Node-only path.
      session = createSession(model, { contextLength: msg.contextLength, threads: 1 });
      post({ type: 'ready', kernels: describeRuntime(model, session), memory: memory(session) });
    } catch (err) {
      post({ type: 'error', error: plain(err) });
    }
    return;
  }
  generate(msg.id, msg.prompt, msg.steps, msg.temperature, msg.seed).catch((err: unknown) => post({ type: 'error', id: msg.id, error: plain(err) }));
});
