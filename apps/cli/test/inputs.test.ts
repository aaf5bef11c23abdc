/**
 * Real models in the formats people have (issue 11, done-when 1), through the BUILT command: the Hugging Face
 * directories and GGUF files of stories260K and stories3M in ../shared/models (written by independent tools and
 * checked by llama.cpp, FORMATS.md there) against llama2.c's own outputs in ../shared/reference.
 *
 * Tolerances (../shared/reference/README.md and FORMATS.md):
 * - F32 (stories260K hf/, both gguf/*-f32.gguf): greedy ids identical; window NLLs within 1e-4 of window_nll.txt.
 * - BF16 (stories3M hf/, hf-sharded/): the weights are rounded to 8-bit mantissas (logits move by up to 0.16), so
 *   greedy ids are compared up to run.c's stop (identical: 172 ids) and each window NLL within 3e-3 (measured: at
 *   most 1.6e-3 over the first 4 windows).
 * - quantized GGUF (stories3M): each type's rounding moves the NLL by a measured amount (first window: Q8_0
 *   +0.0005, Q6_K +0.0075, Q5_K_M +0.072, Q4_K_M +0.058, Q4_0 +0.253); the bound is that measure with headroom,
 *   and the greedy ids must agree with llama2.c's at least as long as FORMATS.md's numpy forward on the same
 *   dequantized weights does.
 * The compress → bundle path stores the weights in float32 (`--codec float --dtype f32 --embeddings f32`), so the
 * bundle must reproduce the same figures as the source it came from.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVAL_TEXT, HAVE_SHARED, REFERENCE, SHARED, cli, ensureBuilt, parseOneObject, parseSafetensorsSpec, readLines } from './helpers.js';

const M = (p: string) => join(SHARED, 'models', p);
const F32 = {
  'stories260K hf': { path: M('stories260K/hf'), model: 'stories260K' as const, format: 'hf' },
  'stories260K gguf f32': { path: M('stories260K/gguf/stories260K-f32.gguf'), model: 'stories260K' as const, format: 'gguf' },
  'stories3M gguf f32': { path: M('stories3M/gguf/stories3M-f32.gguf'), model: 'stories3M' as const, format: 'gguf' },
};

let tmp: string;
beforeAll(() => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'ultrasketch-inputs-'));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const ref = (model: 'stories260K' | 'stories3M') => ({
  greedy: readLines(REFERENCE(model, 'greedy_tokens.txt')).map(Number),
  windowNll: readLines(REFERENCE(model, 'window_nll.txt')).map(Number),
});

function run(args: string[]): Record<string, unknown> {
  const r = cli(args);
  if (r.code !== 0) throw new Error(`ultrasketch ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
  return parseOneObject(r.stdout);
}

const greedy = (path: string, steps: number) =>
  run(['generate', path, '--temperature', '0', '--steps', String(steps), '--json']) as { tokens: number[]; stoppedAt: number | null; model: { format: string } };
const evalWindows = (path: string, windows: number, extra: string[] = []) =>
  run(['eval', path, '--text', EVAL_TEXT, '--windows', String(windows), '--json', ...extra]) as {
    windowNll: number[];
    protocol: string;
    streamTokens: number;
    model: { format: string; tokenizerKind: string };
  };

/** llama2.c's greedy ids up to run.c's stop: the first generated BOS ends the story (stories3M: at index 172). */
function untilStop(ids: number[], steps: number): number[] {
  const stop = ids.indexOf(1, 1);
  return ids.slice(0, Math.min(steps, stop < 0 ? ids.length : stop));
}

function maxAbsDiff(a: number[], b: number[]): number {
  return a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
}

describe.skipIf(!HAVE_SHARED)('F32 Hugging Face and GGUF models reproduce llama2.c (ids identical, NLL within 1e-4)', () => {
  it.each(Object.entries(F32))('%s: generate greedy ids equal greedy_tokens.txt up to run.c\'s stop', (_name, m) => {
    const out = greedy(m.path, 256);
    expect(out.model.format).toBe(m.format);
    const want = untilStop(ref(m.model).greedy, 256);
    expect(out.tokens).toEqual(want);
    // stories3M's story ends with a generated BOS (a stop id), stories260K's 256 positions do not reach one.
    expect(out.stoppedAt).toBe(want.length < 256 ? 1 : null);
  });

  it.each(Object.entries(F32))('%s: eval, the first 16 window NLLs within 1e-4 of window_nll.txt', (_name, m) => {
    const out = evalWindows(m.path, 16);
    expect(out.protocol).toBe('llama2c-documents');
    expect(out.windowNll).toHaveLength(16);
    expect(maxAbsDiff(out.windowNll, ref(m.model).windowNll)).toBeLessThanOrEqual(1e-4);
  });

  it('the HF tokenizer.json and the GGUF vocabulary tokenize eval.txt into the very stream llama2.c does (same token count, same NLLs)', () => {
    // 144,501 tokens: ../shared/reference/README.md (llama2.c's tokenizer on all 1,700 documents).
    expect(evalWindows(F32['stories260K hf'].path, 1).streamTokens).toBe(144_501);
    expect(evalWindows(F32['stories260K gguf f32'].path, 1).streamTokens).toBe(144_501);
    expect(evalWindows(F32['stories260K hf'].path, 1).model.tokenizerKind).toBe('hf-json');
    expect(evalWindows(F32['stories260K gguf f32'].path, 1).model.tokenizerKind).toBe('gguf-llama');
  });
});

describe.skipIf(!HAVE_SHARED)('BF16 and sharded Hugging Face directories (stories3M): within what BF16 rounding allows', () => {
  it.each([['hf', M('stories3M/hf')], ['hf-sharded', M('stories3M/hf-sharded')]])('%s: greedy ids identical up to the stop; 4 window NLLs within 3e-3', (format, path) => {
    const out = greedy(path, 256);
    expect(out.model.format).toBe(format);
    expect(out.tokens).toEqual(untilStop(ref('stories3M').greedy, 256));
    const nll = evalWindows(path, 4).windowNll;
    expect(maxAbsDiff(nll, ref('stories3M').windowNll)).toBeLessThanOrEqual(3e-3);
  });

  it('the sharded directory is the same model: its NLLs equal the single-file directory\'s exactly', () => {
    expect(evalWindows(M('stories3M/hf-sharded'), 2).windowNll).toEqual(evalWindows(M('stories3M/hf'), 2).windowNll);
  });
});

describe.skipIf(!HAVE_SHARED)('quantized GGUF files (stories3M): NLL within each type\'s measured rounding, greedy prefix', () => {
  // [file, first-window NLL excess bound, greedy ids that must agree (FORMATS.md: numpy forward on the same weights)]
  const cases: Array<[string, number, number]> = [
    ['stories3M-q8_0.gguf', 0.002, 27],
    ['stories3M-q6_k.gguf', 0.015, 21],
    ['stories3M-q5_k_m.gguf', 0.1, 21],
    ['stories3M-q4_k_m.gguf', 0.1, 18],
    ['stories3M-q4_0.gguf', 0.35, 18],
  ];
  it.each(cases)('%s: first window NLL within %f of llama2.c\'s, the first %i greedy ids equal', (file, bound, prefix) => {
    const path = M(`stories3M/gguf/${file}`);
    const nll = evalWindows(path, 1).windowNll[0]!;
    expect(Number.isFinite(nll)).toBe(true);
    expect(Math.abs(nll - ref('stories3M').windowNll[0]!)).toBeLessThanOrEqual(bound);
    const out = greedy(path, prefix);
    expect(out.tokens).toEqual(ref('stories3M').greedy.slice(0, prefix));
  });
});

describe.skipIf(!HAVE_SHARED)('compress → bundle from HF and GGUF (float32 storage reproduces the source)', () => {
  const bundleOf = (name: string, path: string) => {
    const out = join(tmp, `${name}.usk`);
    const r = cli(['compress', path, '--codec', 'float', '--dtype', 'f32', '--embeddings', 'f32', '-o', out, '--json']);
    if (r.code !== 0) throw new Error(r.stderr);
    return { out, report: parseOneObject(r.stdout) as { provenance: { sourceFormat: string; sourceSha256: string } } };
  };

  it.each(Object.entries(F32))('%s: the bundle generates llama2.c\'s greedy ids and its window NLLs are within 1e-4', (name, m) => {
    const { out, report } = bundleOf(name.replace(/\s+/g, '-'), m.path);
    expect(report.provenance.sourceFormat).toBe(m.format);
    expect(greedy(out, 256).tokens).toEqual(untilStop(ref(m.model).greedy, 256));
    const windows = m.model === 'stories3M' ? 4 : 16;
    expect(maxAbsDiff(evalWindows(out, windows).windowNll, ref(m.model).windowNll)).toBeLessThanOrEqual(1e-4);
  });

  it('the bundle embeds the tokenizer the source had: tokenizer.json (hf-json) from HF, the GGUF vocabulary (gguf-llama) from GGUF', () => {
    const hf = parseSafetensorsSpec(new Uint8Array(readFileSync(bundleOf('tok-hf', F32['stories260K hf'].path).out)));
    const hfTok = JSON.parse(hf.metadata.tokenizer!) as Record<string, unknown>;
    expect(hfTok).toEqual({ kind: 'hf-json', tensor: 'tokenizer.json', configTensor: 'tokenizer_config.json', bosId: 1, eosIds: [2], origin: 'tokenizer.json' });
    // The stored bytes are the directory's own files.
    expect(hf.tensors.get('tokenizer.json')!.bytes).toBe(readFileSync(M('stories260K/hf/tokenizer.json')).byteLength);
    expect(hf.tensors.get('tokenizer_config.json')!.bytes).toBe(readFileSync(M('stories260K/hf/tokenizer_config.json')).byteLength);
    expect(hf.tensors.has('tokenizer.llama2c')).toBe(false);

    const gg = parseSafetensorsSpec(new Uint8Array(readFileSync(bundleOf('tok-gguf', F32['stories260K gguf f32'].path).out)));
    expect(JSON.parse(gg.metadata.tokenizer!)).toEqual({ kind: 'gguf-llama', tensor: 'tokenizer.llama2c', bosId: 1, eosIds: [2] });

    // A llama2.c checkpoint's bundle keeps the entry every earlier build wrote, key for key.
    const l2c = join(tmp, 'l2c.usk');
    expect(cli(['compress', M('stories260K/stories260K.bin'), '--codec', 'rtn', '--bits', '8', '-o', l2c]).code).toBe(0);
    expect(parseSafetensorsSpec(new Uint8Array(readFileSync(l2c))).metadata.tokenizer).toBe('{"kind":"llama2c","tensor":"tokenizer.llama2c"}');
  });

  it('inspect of each bundle names its tokenizer kind', () => {
    const out = bundleOf('inspect-hf', M('stories3M/hf-sharded')).out;
    const ins = run(['inspect', out, '--json']) as { tokenizer: { kind: string }; tensors: Array<{ name: string; role: string }> };
    expect(ins.tokenizer.kind).toBe('hf-json');
    expect(ins.tensors.filter((t) => t.role === 'tokenizer').map((t) => t.name)).toEqual(['tokenizer.json', 'tokenizer_config.json']);
  });
});

describe.skipIf(!HAVE_SHARED)('inspect describes HF directories and GGUF files from their headers', () => {
  it('an HF directory: architecture, config, dtypes, parameters, tokenizer kind, files, SHA-256', () => {
    const ins = run(['inspect', M('stories3M/hf'), '--json']) as Record<string, any>;
    expect(ins.kind).toBe('model');
    expect(ins.format).toBe('hf');
    expect(ins.architecture).toBe('LlamaForCausalLM');
    expect(ins.config).toMatchObject({ dim: 192, hiddenDim: 512, nLayers: 6, nHeads: 6, nKvHeads: 2, vocabSize: 4096, ropeLayout: 'halves', tiedClassifier: true });
    expect(ins.parameters).toBe(3_148_224); // stories3M's model card
    expect(ins.dtypes).toEqual({ BF16: 56 });
    expect(ins.tokenizer).toMatchObject({ kind: 'hf-json', vocabSize: 4096, bosId: 1, eosId: 2 });
    // A single weight file: the SHA-256 is that file's (FORMATS.md lists it).
    expect(ins.sha256).toBe('1609e9ff1d31208e730b23f247587ad9c97fbf093d3cfc401534122a18b069e4');
    expect(ins.tensors).toHaveLength(56);
  });

  it('a sharded directory: the SHA-256 is that of the sorted "hash  name" lines of its shards (FORMATS.md hashes)', async () => {
    const ins = run(['inspect', M('stories3M/hf-sharded'), '--json']) as Record<string, any>;
    expect(ins.format).toBe('hf-sharded');
    const { createHash } = await import('node:crypto');
    const lines =
      'f00ba824059e41e09bd55cddd57f6ecf7c5b1f6d9938765404ba16da0a5ef65b  model-00001-of-00002.safetensors\n' +
      'a2b2b44a86d1fc57adbcaf513326282037e07b25ffda98b59f738e833eb046b3  model-00002-of-00002.safetensors\n';
    expect(ins.sha256).toBe(createHash('sha256').update(lines).digest('hex'));
  });

  it('a GGUF file: GGUF types per tensor, the embedded vocabulary', () => {
    const ins = run(['inspect', M('stories3M/gguf/stories3M-q4_k_m.gguf'), '--json']) as Record<string, any>;
    expect(ins.format).toBe('gguf');
    expect(ins.config).toMatchObject({ dim: 192, nLayers: 6, ropeLayout: 'pairs' });
    // FORMATS.md: Q5_0 ×34, Q4_K ×4, Q8_0 ×3, Q6_K ×2, F32 ×13.
    expect(ins.dtypes).toEqual({ F32: 13, Q8_0: 3, Q5_0: 34, Q4_K: 4, Q6_K: 2 });
    expect(ins.tokenizer.kind).toBe('gguf-llama');
    expect(ins.sha256).toBe('0e114abd42ece60e0347dda57d88a0a0297038219b5a548d93f00e5c6d7a7cb1');
  });

  it('a .safetensors file with its config.json beside it is the model of that directory', () => {
    const ins = run(['inspect', M('stories260K/hf/model.safetensors'), '--json']) as Record<string, any>;
    expect(ins.kind).toBe('model');
    expect(ins.config.dim).toBe(64);
    const g = greedy(M('stories260K/hf/model.safetensors'), 32);
    expect(g.tokens).toEqual(ref('stories260K').greedy.slice(0, 32));
  });
});

describe.skipIf(!HAVE_SHARED)('eval protocols are named in every report', () => {
  it('wikitext: the text tokenized once, windows of 2048 capped at seq_len 512, first token of each window not scored', () => {
    const out = evalWindows(M('stories260K/hf'), 2, ['--protocol', 'wikitext']) as unknown as Record<string, any>;
    expect(out.protocol).toBe('wikitext');
    expect(out.window).toBe(512);
    expect(out.firstScored).toBe(0);
    expect(out.predictedTokens).toBe(2 * 511);
    // The file as it is, tokenized once: one BOS, the blank lines between stories tokenized as text, so not the
    // documents protocol's stream (144,501 tokens) and not its figures.
    expect(out.streamTokens).not.toBe(144_501);
    const documents = evalWindows(M('stories260K/hf'), 2);
    expect(out.windowNll[0]).not.toBe(documents.windowNll[0]);
    const text = cli(['eval', M('stories260K/hf'), '--text', EVAL_TEXT, '--windows', '1', '--protocol', 'wikitext']);
    expect(text.stdout).toContain('protocol wikitext');
  });

  it('llamacpp: chunks of 512, the second half scored (255 predictions per chunk)', () => {
    const out = evalWindows(M('stories260K/gguf/stories260K-f32.gguf'), 2, ['--protocol', 'llamacpp']) as unknown as Record<string, any>;
    expect(out.protocol).toBe('llamacpp');
    expect(out.window).toBe(512);
    expect(out.firstScored).toBe(256);
    expect(out.predictedTokens).toBe(2 * 255);
    expect(out.windowNll.every((x: number) => Number.isFinite(x) && x > 0)).toBe(true);
  });
});
