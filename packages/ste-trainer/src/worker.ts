/**
 * Node worker-thread entry of the data-parallel trainer (see shard.ts). Node-only: spawned by
 * `workerThreads()` in node.ts, never imported by the platform-neutral entry.
 */
import { workerData } from 'node:worker_threads';
import { type ShardWorkerInit, serveShards } from './shard.js';

serveShards(workerData as ShardWorkerInit);
