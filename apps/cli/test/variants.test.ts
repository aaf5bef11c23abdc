/**
 * The Llama family's architecture variants without real weights on this machine (issue 11, done-when 3), as real
 * Hugging Face directories a user would have: tiny random-weight Qwen2 (q/k/v bias, GQA, untied), Qwen3 (q/k
 * norm, head_dim ≠ dim/heads; stored BF16), Llama 3 (llama3 RoPE scaling, MQA) and Llama with attention_bias
 * (q/k/v/o bias, head_dim 12) — the model package's variant models (packages/model/test/variant-models.ts) with a
 * vocabulary padded past the tokenizer's (as Qwen pads), written with the format package's safetensors writer
 * and a byte-level tokenizer.json. Through the BUILT command:
 * - `generate` greedy ids are the argmax of an independent float64 forward written from the published formulas
 *   (packages/model/test/independent-forward.ts) at every generated position (positions whose top two logits
 *   are within 1e-3 of each other are not decisive and skipped);
 * - `compress` → `generate` works for each (float f32 storage gives the very same ids; rtn 8 runs);
 * - finetuning refuses each (the trainer's graph is plain Llama), naming the feature.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ModelWeights } from '@ultrasketch/model';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { independentForward } from '../../../packages/model/test/independent-forward.js';
import { type Variant, VARIANTS, independentModel, randomWeights } from '../../../packages/model/test/variant-models.js';
import { byteLevelTokenizer, fromBf16, toBf16, writeHfDirectory } from './hf-fixtures.js';
import { cli, ensureBuilt, parseOneObject } from './helpers.js';

let tmp: string;
beforeAll(() => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'ultrasketch-variants-'));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** The tokenizer has 257–258 ids; the model's embedding has 272 rows (padding, as Qwen's). */
const VOCAB = 272;

interface Case {
  variant: Variant;
  bf16: boolean;
  /** The feature finetuning must name when it refuses. */
  refusal: RegExp;
}

const byName = (prefix: string) => VARIANTS.find((v) => v.name.startsWith(prefix))!;
const CASES: Array<[string, Case]> = [
  ['Qwen2', { variant: byName('Qwen2'), bf16: false, refusal: /q\/k\/v projection biases/ }],
  ['Qwen3', { variant: byName('Qwen3'), bf16: true, refusal: /per-head q\/k RMSNorm.*head width of 16/ }],
  ['Llama 3', { variant: byName('Llama 3'), bf16: false, refusal: /RoPE scaling \(llama3\)/ }],
  ['Llama attention_bias', { variant: byName('Llama (attention_bias'), bf16: false, refusal: /q\/k\/v projection biases.*output projection bias.*head width of 12/ }],
];

function padded(v: Variant): Variant {
  return { ...v, config: { ...v.config, vocabSize: VOCAB }, spec: { ...v.spec, vocab: VOCAB } };
}

/** Write the case's directory; returns it and the weights as the reader must see them (BF16-rounded when stored so). */
function writeCase(name: string, c: Case): { dir: string; weights: ModelWeights; variant: Variant } {
  const variant = padded(c.variant);
  const weights = randomWeights(variant, 12);
  const qwen = variant.config.sourceArchitecture?.startsWith('Qwen');
  const tok = byteLevelTokenizer(qwen ? { eos: '<|endoftext|>' } : { eos: '<|end_of_text|>', bos: '<|begin_of_text|>' });
  const dir = join(tmp, name.replace(/\W+/g, '-'));
  writeHfDirectory(dir, weights, tok, { dtype: c.bf16 ? 'BF16' : 'F32' });
  if (c.bf16) for (const t of weights.tensors.values()) t.data = fromBf16(toBf16(t.data));
  return { dir, weights, variant };
}

function generate(path: string): { tokens: number[]; stoppedAt: number | null; stopIds: number[] } {
  const r = cli(['generate', path, '--prompt', 'Hi', '--temperature', '0', '--steps', '20', '--json']);
  if (r.code !== 0) throw new Error(`generate ${path}: exit ${r.code}\n${r.stderr}`);
  return parseOneObject(r.stdout) as { tokens: number[]; stoppedAt: number | null; stopIds: number[] };
}

function argmaxDecisive(row: number[]): number | null {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  const second = Math.max(...row.filter((_, i) => i !== best));
  return row[best]! - second < 1e-3 ? null : best;
}

describe.each(CASES)('%s as a Hugging Face directory', (name, c) => {
  let made: ReturnType<typeof writeCase>;
  let fromDir: ReturnType<typeof generate>;
  beforeAll(() => {
    made = writeCase(name, c);
    fromDir = generate(made.dir);
  });

  it('generate: each greedy id is the argmax of the independent float64 forward', () => {
    const promptLen = made.variant.config.sourceArchitecture?.startsWith('Qwen') ? 2 : 3; // "Hi" (+ BOS for Llama)
    const ids = fromDir.tokens;
    expect(ids.length).toBeGreaterThan(promptLen);
    const logits = independentForward(independentModel(made.variant, made.weights), ids);
    let checked = 0;
    for (let t = promptLen - 1; t < ids.length; t++) {
      const want = argmaxDecisive(logits[t]!);
      if (want === null) continue;
      // The last position's choice is the stop id when generation stopped, else the next fed token.
      const got = t + 1 < ids.length ? ids[t + 1] : fromDir.stoppedAt;
      if (got === null || got === undefined) continue;
      expect(got, `position ${t}`).toBe(want);
      checked++;
    }
    expect(checked).toBeGreaterThan(3);
  });

  it('compress (float f32) → generate gives the same ids; rtn 8 → generate runs', () => {
    const f32 = join(made.dir, '..', `${name.replace(/\W+/g, '-')}-f32.usk`);
    const r = cli(['compress', made.dir, '--codec', 'float', '--dtype', 'f32', '--embeddings', 'f32', '-o', f32, '-q']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(generate(f32).tokens).toEqual(fromDir.tokens);

    const rtn = join(made.dir, '..', `${name.replace(/\W+/g, '-')}-rtn8.usk`);
    const q = cli(['compress', made.dir, '--codec', 'rtn', '--bits', '8', '-o', rtn, '--json']);
    expect(q.code).toBe(0);
    const report = parseOneObject(q.stdout) as { provenance: { sourceFormat: string }; bpwLinears: number };
    expect(report.provenance.sourceFormat).toBe('hf');
    const g = generate(rtn);
    expect(g.tokens.length).toBeGreaterThan(3);
    expect(g.stopIds).toEqual(fromDir.stopIds);
  });

  it('finetuning is refused with E_UNSUPPORTED naming the feature, before anything is written', () => {
    const out = join(made.dir, '..', `${name.replace(/\W+/g, '-')}-ft.usk`);
    const r = cli(['compress', made.dir, '--codec', 'rtn', '--bits', '4', '--finetune-steps', '1', '-o', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error \[E_UNSUPPORTED\]/m);
    expect(r.stderr).toMatch(c.refusal);
  });
});
