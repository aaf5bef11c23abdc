/**
 * Node worker-thread entry of the data-parallel trainer (see shard.ts). Node-only: spawned by
 * `workerThreads()` in node.ts, never imported by the platform-neutral entry.
 */
import { workerData } from 'node:worker_threads';
import { createTrainerExp, createTrainerGemm } from '@ultrasketch/runtime-node';
import { setMatmulKernel } from './matmul.js';
import { setExpKernel } from './ops.js';
import { type ShardWorkerInit, serveShards } from './shard.js';

// The worker computes with the same kernel as the thread that created it (node.ts passes its choice): the
// WebAssembly SIMD gemm, one arena per thread, when it is on there and validates here.
if ((workerData as { wasmGemm?: boolean }).wasmGemm) {
  const gemm = createTrainerGemm();
  if (gemm) setMatmulKernel(gemm.matmul);
  const exp = createTrainerExp();
  if (exp) setExpKernel(exp.expRows);
}
serveShards(workerData as ShardWorkerInit);
