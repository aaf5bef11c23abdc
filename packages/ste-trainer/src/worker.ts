/**
 * Node worker-thread entry of the data-parallel trainer (see shard.ts). Node-only: spawned by
 * `workerThreads()` in node.ts, never imported by the platform-neutral entry.
 */
import { workerData } from 'node:worker_threads';
import { teacherCacheDir, useWasmGemm } from './node.js';
import { CTRL, type ShardWorkerInit, serveShards } from './shard.js';

// The worker computes with the same kernels as the thread that created it: node.ts passes its choice, and
// useWasmGemm() installs (or removes) the WebAssembly gemm — with fused multiply-adds when this process's
// engine compiles them, as on the trainer's thread — and the exponential/soft-max/KD kernels, one arena per
// thread. (Importing node.js made a choice from the environment already; this one is the trainer's.)
const init = workerData as ShardWorkerInit & { wasmGemm?: boolean };
useWasmGemm(init.wasmGemm === true);
// The trainer's teacher cache, when it gave a description a worker can open (teacherCacheDir's directory).
const spec = init.teacherCache as { dir?: string; maxBytes?: number } | undefined;
// Test hook: a worker that starts and then never serves a job, as a crashed one looks from the trainer's side.
if (process.env.ULTRASKETCH_TEST_STALL_WORKER === '1') {
  const ctrl = new Int32Array(init.control);
  Atomics.store(ctrl, CTRL.READY, 1);
  Atomics.notify(ctrl, CTRL.READY);
} else serveShards(init, spec?.dir ? teacherCacheDir(spec.dir, spec.maxBytes === undefined ? {} : { maxBytes: spec.maxBytes }) : null);
