/**
 * Node worker-thread entry of the data-parallel trainer (see shard.ts). Node-only: spawned by
 * `workerThreads()` in node.ts, never imported by the platform-neutral entry.
 */
import { setFlagsFromString } from 'node:v8';
import { workerData } from 'node:worker_threads';
import { createTrainerExp, createTrainerGemm } from '@ultrasketch/runtime-node';
import { setMatmulKernel } from './matmul.js';
import { setExpKernel, setKdKernel, setSoftmaxKernel } from './ops.js';
import { type ShardWorkerInit, serveShards } from './shard.js';

// The worker computes with the same kernels as the thread that created it (node.ts passes its choice): the
// WebAssembly SIMD gemm (with fused multiply-adds when the trainer's thread uses them), one arena per thread.
const choice = workerData as { wasmGemm?: boolean; wasmFma?: boolean };
if (choice.wasmGemm) {
  const gemm = createTrainerGemm({ fma: choice.wasmFma === true, setFlags: setFlagsFromString });
  if (gemm) setMatmulKernel(gemm.matmul);
  const exp = createTrainerExp();
  if (exp) {
    setExpKernel(exp.expRows);
    setSoftmaxKernel({ causal: exp.softmaxCausal, backward: exp.softmaxBackward });
    setKdKernel(exp.kdRows);
  }
}
serveShards(workerData as ShardWorkerInit);
