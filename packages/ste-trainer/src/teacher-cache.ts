import { crc32 } from '@ultrasketch/format';
import type { ModelConfig } from '@ultrasketch/model';
import type { LlamaGraph } from './graph.js';

/** Storage for teacher outputs per window (see TrainerOptions.teacherCache). */
export interface TeacherCache {
  /**
   * Fill `logits` [seqLen, vocab] and `hidden[l]` [seqLen, dim] with the entry for `model` and these input
   * tokens and return true, or return false (nothing stored, or stored for other tokens or shapes).
   */
  get(model: string, tokens: Int32Array, logits: Float32Array, hidden: Float32Array[]): boolean;
  /** Keep them (a bounded cache may decline). */
  put(model: string, tokens: Int32Array, logits: Float32Array, hidden: Float32Array[]): void;
  /**
   * How a worker thread opens the same cache: a structured-cloneable description its platform's worker entry
   * understands (node: `{ dir, maxBytes }`). Without it, worker shards compute their teacher.
   */
  readonly workerSpec?: unknown;
}

/**
 * The cache's name for a teacher at a window length: the shapes and a CRC-32 over every tensor's name and
 * CRC-32 (so another teacher, or the same at another seqLen, is another entry).
 */
export function teacherCacheKey(config: ModelConfig, seqLen: number, tensors: Iterable<[string, Float32Array]>): string {
  const parts = [...tensors]
    .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))
    .map(([name, d]) => `${name}:${crc32(new Uint8Array(d.buffer, d.byteOffset, d.byteLength))}`);
  const crc = crc32(new TextEncoder().encode(parts.join('\n')));
  const c = config;
  return `${c.dim}x${c.hiddenDim}x${c.nLayers}x${c.nHeads}x${c.nKvHeads}x${c.vocabSize}-L${seqLen}-${crc.toString(16).padStart(8, '0')}`;
}

/**
 * A teacher graph's per-sequence views (input tokens, logits, every layer's hidden state), allocated once,
 * and the read/write of a step's sequences through a TeacherCache.
 */
export class TeacherCacheViews {
  private readonly views: Array<{ tokens: Int32Array; logits: Float32Array; hidden: Float32Array[] }> = [];
  hits = 0;
  misses = 0;

  constructor(
    private readonly cache: TeacherCache,
    private readonly key: string,
    graph: LlamaGraph,
    maxSeqs: number,
  ) {
    const c = graph.config;
    const L = graph.seqLen;
    for (let b = 0; b < maxSeqs; b++) {
      this.views.push({
        tokens: new Int32Array(L),
        logits: graph.logits.subarray(b * L * c.vocabSize, (b + 1) * L * c.vocabSize),
        hidden: Array.from({ length: c.nLayers }, (_, l) => graph.hidden(l).subarray(b * L * c.dim, (b + 1) * L * c.dim)),
      });
    }
  }

  /**
   * Fill the graph's outputs for `count` sequences of `inputs` ([count, L]) from the cache: true when every
   * one hit. On false the caller runs the forward, then write().
   */
  read(inputs: Int32Array, count: number): boolean {
    const L = this.views[0]!.tokens.length;
    // Every window's tokens first: write() keys the entries by them after a miss.
    for (let b = 0; b < count; b++) {
      const v = this.views[b]!;
      for (let t = 0; t < L; t++) v.tokens[t] = inputs[b * L + t]!;
    }
    for (let b = 0; b < count; b++) {
      const v = this.views[b]!;
      if (!this.cache.get(this.key, v.tokens, v.logits, v.hidden)) {
        this.misses += count - b;
        return false; // the forward computes all of them (a partial hit saves nothing in one batched forward)
      }
    }
    this.hits += count;
    return true;
  }

  /** Offer the graph's outputs of `count` sequences (after a forward) to the cache. */
  write(count: number): void {
    for (let b = 0; b < count; b++) {
      const v = this.views[b]!;
      this.cache.put(this.key, v.tokens, v.logits, v.hidden);
    }
  }
}
