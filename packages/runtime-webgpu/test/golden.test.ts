import { readFileSync } from 'node:fs';
import { readLlama2cCheckpoint, readLlama2cTokenizer } from '@ultrasketch/format';
import { type ModelWeights, Tokenizer, modelFromLlama2c } from '@ultrasketch/model';
import { evaluate } from '@ultrasketch/pipeline';
import { NodeSession } from '@ultrasketch/runtime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GpuContext, WebGpuSession } from '../src/index.js';
import { argmax, gpuContext, maxAbsDiff, readShared, shared } from './gpu.js';

/**
 * The golden suite, ONE suite run against every runtime with named tolerances per runtime: llama2.c's own
 * outputs on stories260K and stories3M (../shared/reference). The WebGPU runtime runs on the real adapter
 * (SwiftShader in CI: a CPU Vulkan) and the suite fails when there is none.
 *
 * What is checked, per model and runtime:
 * - greedy decoding from BOS, one position at a time, reproduces greedy_tokens.txt (all 256 positions);
 * - the logits of positions 0..63 of that run are within `logits` of greedy_logits.f32 (max abs difference);
 * - a batched prefill of those 64 positions (logits 'all') gives the same logits within `logits`;
 * - `pipeline.evaluate` over the first windows of the evaluation text is within `nll` of llama2.c's mean NLL of
 *   the same windows (window_nll.txt). Windows: 16 for stories260K; for stories3M 2 on WebGPU — SwiftShader
 *   runs a 512-token stories3M window in ~15 s of CPU, so 16 would take minutes on a 2-core CI machine — and 16 on
 *   runtime-node.
 */

interface Session {
  reset(): void;
  forward(tokens: ArrayLike<number>, options?: { logits?: 'all' | 'last' | 'none' }): Float32Array | Promise<Float32Array>;
  readonly config: ModelWeights['config'];
  dispose(): void;
}

interface RuntimeUnderTest {
  name: string;
  /** Max abs logit difference to llama2.c, and |mean NLL − llama2.c's| over the evaluated windows. */
  tolerance: { logits: number; nll: number };
  /** Evaluation windows per model (see the file comment). */
  windows: Record<string, number>;
  open(weights: ModelWeights): Promise<Session>;
}

let ctx: GpuContext;
const RUNTIMES: RuntimeUnderTest[] = [
  {
    name: 'runtime-node (wasm)',
    tolerance: { logits: 1e-4, nll: 1e-4 },
    windows: { stories260K: 16, stories3M: 16 },
    open: async (w) => NodeSession.fromWeights(w, { kernels: 'wasm' }),
  },
  {
    name: 'runtime-webgpu',
    // f32 accumulation on the GPU (the CPU runtime accumulates in f64): measured ≤ 3e-5 on both models.
    tolerance: { logits: 1e-4, nll: 1e-3 },
    windows: { stories260K: 16, stories3M: 2 },
    open: async (w) => WebGpuSession.fromWeights(w, { context: ctx }),
  },
];

const MODELS = [
  { name: 'stories260K', file: 'models/stories260K/stories260K.bin', tokenizer: 'models/stories260K/tok512.bin' },
  { name: 'stories3M', file: 'models/stories3M/stories3M-q80.bin', tokenizer: 'models/stories3M/tok4096.bin' },
];

beforeAll(async () => {
  ctx = await gpuContext();
});
afterAll(() => ctx?.destroy());

describe.each(MODELS)('$name', ({ name, file, tokenizer }) => {
  const weights = modelFromLlama2c(readLlama2cCheckpoint(readShared(file), file));
  const tok = Tokenizer.fromLlama2c(readLlama2cTokenizer(readShared(tokenizer), weights.config.vocabSize, tokenizer));
  const golden = readShared(`reference/${name}/greedy_tokens.txt`).toString().trim().split('\n').map(Number);
  const goldenLogits = new Float32Array(new Uint8Array(readShared(`reference/${name}/greedy_logits.f32`)).buffer);
  const windowNll = readShared(`reference/${name}/window_nll.txt`).toString().trim().split('\n').map(Number);
  const vocab = weights.config.vocabSize;
  const text = readFileSync(shared('data/tinystories/eval.txt'), 'utf8');

  describe.each(RUNTIMES)('$name', (rt) => {
    let session: Session;
    beforeAll(async () => {
      session = await rt.open(weights);
    });
    afterAll(() => session?.dispose());

    it(`greedy tokens for ${golden.length} positions, logits of positions 0..63`, async () => {
      session.reset();
      const fed = [1];
      let worst = 0;
      for (let pos = 0; pos < golden.length; pos++) {
        const logits = await session.forward([fed[pos]!]);
        if (pos < 64) worst = Math.max(worst, maxAbsDiff(logits, goldenLogits.subarray(pos * vocab, (pos + 1) * vocab)));
        if (pos + 1 < golden.length) fed.push(argmax(logits));
      }
      console.log(`[golden] ${name} ${rt.name}: max |logit − llama2.c| over positions 0..63 = ${worst.toExponential(2)}`);
      expect(fed).toEqual(golden);
      expect(worst).toBeLessThanOrEqual(rt.tolerance.logits);
    });

    it('a batched prefill of 64 positions gives the golden logits', async () => {
      session.reset();
      const all = await session.forward(golden.slice(0, 64), { logits: 'all' });
      expect(maxAbsDiff(all, goldenLogits, 64 * vocab)).toBeLessThanOrEqual(rt.tolerance.logits);
    });

    it('evaluate() matches llama2.c’s mean NLL on the first windows', async () => {
      const windows = rt.windows[name]!;
      const r = await evaluate({ session: session as never, tokenizer: tok, text, windows });
      const reference = windowNll.slice(0, windows).reduce((a, b) => a + b, 0) / windows;
      console.log(`[golden] ${name} ${rt.name}: ${windows} windows, mean NLL ${r.meanNll.toFixed(6)} vs llama2.c ${reference.toFixed(6)}`);
      if (windows === 16) expect(reference).toBeCloseTo(name === 'stories260K' ? 1.435212 : 1.72409, 5);
      expect(Math.abs(r.meanNll - reference)).toBeLessThanOrEqual(rt.tolerance.nll);
      r.windowNll.forEach((v, i) => expect(Math.abs(v - windowNll[i]!), `window ${i}`).toBeLessThanOrEqual(rt.tolerance.nll));
    });
  });
});
