#!/usr/bin/env node
/**
 * How much each embedding storage costs the float model by itself (docs/results.md §11.1b): stories3M with only
 * its embedding (tied with the classifier) stored as compress would store it, everything else float, scored
 * against the float model on windows of the CALIBRATION text (this measurement chooses a storage, so it must not
 * touch eval.txt). vq storages are fitted with and without the calibration token counts as row weights.
 *
 *   node bench/embedding-probe.mjs [--windows N] [--window W] [STORAGE ...]    (run `pnpm build` first)
 *
 * STORAGE: compress --embeddings values (default rtn4 rtn2 vq6 vq7 vq8 binary). Prints one JSON line each.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { ROOT, dist, fail, log, printHelp, requireBuilt } from './lib.mjs';

const { values: a, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    model: { type: 'string', default: resolve(ROOT, '../shared/models/stories3M/stories3M-q80.bin') },
    calib: { type: 'string', default: resolve(ROOT, '../shared/data/tinystories/calib.txt') },
    windows: { type: 'string', default: '16' },
    window: { type: 'string', default: '256' },
    help: { type: 'boolean', default: false },
  },
});
if (a.help) printHelp(import.meta.url);
requireBuilt(['pipeline', 'baselines', 'core', 'runtime-node']);
const { loadModel, evaluate, registerAllCodecs, embeddingCodec, calibrationTokens } = await import(dist('pipeline'));
const { vqEncode } = await import(dist('baselines'));
const { getCodec } = await import(dist('core'));
const { NodeSession } = await import(dist('runtime-node'));
registerAllCodecs();
const windows = Number(a.windows);
const window = Number(a.window);
if (!(windows >= 1) || !(window >= 2)) fail('--windows and --window must be positive integers');

const m = loadModel(a.model);
const text = readFileSync(a.calib, 'utf8');
const W = m.weights;
const NAME = 'model.embed_tokens.weight';
const E = W.tensors.get(NAME);
const [rows, cols] = E.shape;
// The row weights compress uses (compress.ts tokenRowWeights): 1 + each token's count in the whole calibration text.
const counts = new Float64Array(rows).fill(1);
for (const t of calibrationTokens(m.tokenizer, text, Number.MAX_SAFE_INTEGER, a.calib)) counts[t] += 1;
const ref = NodeSession.fromWeights(W, { kernels: 'auto', contextLength: window });
log(`embedding-probe: ${a.model}, ${windows} windows of ${window} tokens of ${a.calib}; load ${loadavg().map((v) => v.toFixed(2)).join(' ')}`);

const storages = positionals.length > 0 ? positionals : ['rtn4', 'rtn2', 'vq6', 'vq7', 'vq8', 'binary'];
for (const storage of storages) {
  const { id, options } = embeddingCodec(storage);
  const c = getCodec(id);
  const o = c.resolveOptions(options);
  for (const weighted of id === 'vq' ? [false, true] : [false]) {
    const p = weighted ? vqEncode(E.data, rows, cols, o, NAME, counts) : c.encode(E.data, rows, cols, o, { name: NAME, seed: 0 });
    const d = c.decode(p);
    const tensors = new Map(W.tensors);
    tensors.set(NAME, { ...E, data: d });
    const s = NodeSession.fromWeights({ config: W.config, tensors }, { kernels: 'auto', contextLength: window });
    const r = await evaluate({ session: s, tokenizer: m.tokenizer, text, textSource: a.calib, window, windows, reference: ref });
    let err = 0;
    let norm = 0;
    for (let i = 0; i < d.length; i++) {
      err += (d[i] - E.data[i]) ** 2;
      norm += E.data[i] ** 2;
    }
    const bits = c.bits(p).total;
    console.log(JSON.stringify({ storage, rowWeights: weighted ? 'calibration token counts' : 'uniform', bitsPerValue: +(bits / (rows * cols)).toFixed(4), bytes: bits / 8, relativeError: +(err / norm).toFixed(4), perplexity: +r.perplexity.toFixed(3), kl: +r.kl.toFixed(4), floatPerplexity: +r.reference.perplexity.toFixed(3) }));
  }
}
