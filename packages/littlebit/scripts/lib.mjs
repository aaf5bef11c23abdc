/**
 * Shared setup of the stories3M measurement scripts (measure-init.mjs, measure-residual.mjs): where the built
 * packages are, the common options, stories3M with calibration statistics, and the error measures.
 * Not a script of its own.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const SHARED = join(ROOT, '../shared');
/** The built entry of packages/<p> (build it first). */
export const dist = (p) => join(ROOT, 'packages', p, 'dist', 'index.js');

/**
 * The command line: --bpw (default `bpwDefault`), --layers, --calib-tokens, --json, and the script's own `extra`
 * options. Returns parseArgs' values, and --bpw and --layers as number arrays.
 */
export function parseMeasureArgs(bpwDefault, extra = {}) {
  const { values } = parseArgs({
    options: {
      bpw: { type: 'string', default: bpwDefault },
      layers: { type: 'string', default: '0,1,2,3,4,5' },
      ...extra,
      'calib-tokens': { type: 'string', default: '4096' },
      json: { type: 'string' },
    },
  });
  return { values, bpws: values.bpw.split(',').map(Number), layers: values.layers.split(',').map(Number) };
}

/**
 * stories3M (the q80 checkpoint, as a float model) and saliency statistics of that model on the first
 * `calibTokens` tokens of calib.txt (documents separated by blank lines, each with BOS).
 */
export async function loadStories3MCalibrated(calibTokens) {
  const { readLlama2cCheckpoint, readLlama2cTokenizer } = await import(dist('format'));
  const { modelFromLlama2c, LlamaForward, Tokenizer } = await import(dist('model'));
  const { collectSaliency } = await import(dist('saliency'));
  const ckpt = readLlama2cCheckpoint(readFileSync(join(SHARED, 'models/stories3M/stories3M-q80.bin')));
  const model = modelFromLlama2c(ckpt);
  const tok = Tokenizer.fromLlama2c(readLlama2cTokenizer(readFileSync(join(SHARED, 'models/stories3M/tok4096.bin')), model.config.vocabSize));
  const docs = readFileSync(join(SHARED, 'data/tinystories/calib.txt'), 'utf8')
    .split('\n\n')
    .map((d) => d.replace(/^[ \n]+|[ \n]+$/g, ''))
    .filter((d) => d.length > 0);
  const tokens = [];
  for (const d of docs) {
    tokens.push(...tok.encode(d, { bos: true, eos: false }));
    if (tokens.length >= calibTokens) break;
  }
  const stats = collectSaliency({ forward: LlamaForward.fromWeights(model), tokens, maxTokens: calibTokens });
  return { model, stats };
}

/** One zeroed error accumulator per method: squared sums e2, n2, a2, an2 (see addErrors), rank, skipped. */
export const errorCells = (methods) => Object.fromEntries(methods.map((m) => [m, { e2: 0, n2: 0, a2: 0, an2: 0, rank: null, skipped: false }]));

/**
 * Adds into `into` the squared errors of `dense` as an approximation of w (rows×cols, row-major):
 * e2 = Σ(w − dense)², n2 = Σw², and a2, an2 the same with column j weighted by s2[j] (E[a_j²]). Returns `into`.
 */
export function addErrors(into, w, dense, s2, rows, cols) {
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const x = w[i * cols + j];
      const d = x - dense[i * cols + j];
      into.e2 += d * d;
      into.n2 += x * x;
      into.a2 += d * d * s2[j];
      into.an2 += x * x * s2[j];
    }
  }
  return into;
}

/** The relative error of a cell: √(e2/n2) for key 'F' (Frobenius), √(a2/an2) for 'A' (activation-weighted); null when skipped or empty. */
export const relErr = (c, key) => (c.skipped || c.n2 === 0 ? null : Math.sqrt(key === 'F' ? c.e2 / c.n2 : c.a2 / c.an2));
/** Four decimals, '—' for null. */
export const f4 = (x) => (x === null ? '—' : x.toFixed(4));

/**
 * Adds a kind's cells into the total cells when every method was feasible for it, so that the total's columns
 * compare like with like. Returns whether it did.
 */
export function addIfAllFeasible(total, cell, methods) {
  if (!methods.every((m) => !cell[m].skipped)) return false;
  for (const m of methods) for (const k of ['e2', 'n2', 'a2', 'an2']) total[m][k] += cell[m][k];
  return true;
}
