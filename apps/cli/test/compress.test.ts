/**
 * `compress`, `sweep`, and bundles in `inspect` / `eval` / `generate`, as a user runs them: the built
 * dist/cli.js, spawned, on stories260K with small budgets (1 evaluation window).
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CALIB_TEXT,
  EVAL_TEXT,
  HAVE_SHARED,
  MODELS,
  REFERENCE,
  TOKENIZERS,
  checkXml,
  cli,
  ensureBuilt,
  parseOneObject,
  parseSafetensorsSpec,
  readLines,
} from './helpers.js';

const M = MODELS.stories260K;
let tmp: string;
beforeAll(() => {
  ensureBuilt();
  tmp = mkdtempSync(join(tmpdir(), 'ultrasketch-compress-'));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

interface Report {
  output: string;
  fileBytes: number;
  bitsPerParam: number;
  bpwLinears: number;
  bpwSelectedLinears: number;
  params: number;
  keptDense: Array<{ name: string; rows: number; cols: number; minBpw: number | null; reason: string }>;
  codec: { id: string; options: Record<string, unknown> };
  saliencyUsed: boolean;
  quality: { perplexity: number; kl: number; top1: number; windows: number } | null;
  provenance: { command: string; calibration?: { tokens: number; textSource: string } };
  accounting: { compressedLinears: string[] };
}

function compress(args: string[]): { report: Report; stderr: string } {
  const r = cli(['compress', M, ...args, '--json']);
  if (r.code !== 0) throw new Error(`compress ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return { report: parseOneObject(r.stdout) as unknown as Report, stderr: r.stderr };
}

/** bpwLinears, bitsPerParam, fileBytes, params recomputed from our own parse of the file (methods.md §4). */
function recompute(file: string) {
  const bytes = readFileSync(file);
  const { tensors, metadata } = parseSafetensorsSpec(bytes);
  expect(metadata.format).toBe('ultrasketch.usk');
  const config = JSON.parse(metadata.model_config!) as Record<string, any>;
  const entries = JSON.parse(metadata.weights!) as Record<string, { rows: number; cols: number }>;
  const compressed = (JSON.parse(metadata.accounting!) as { compressedLinears: string[] }).compressedLinears;
  let bits = 0;
  let weights = 0;
  for (const name of compressed) {
    weights += entries[name]!.rows * entries[name]!.cols;
    for (const [t, info] of tensors) if (t.startsWith(`${name}.`) && !t.slice(name.length + 1).includes('.')) bits += 8 * info.bytes;
  }
  const kv = (config.dim / config.nHeads) * config.nKvHeads;
  const perLayer = 2 * config.dim + 2 * config.dim * config.dim + 2 * kv * config.dim + 3 * config.dim * config.hiddenDim;
  const params = config.vocabSize * config.dim * (config.tiedClassifier ? 1 : 2) + config.nLayers * perLayer + config.dim;
  const fileBytes = statSync(file).size;
  return { bpwLinears: bits / weights, bitsPerParam: (8 * fileBytes) / params, fileBytes, params };
}

const CASES: Array<[string, string[]]> = [
  ['rtn8', ['--codec', 'rtn', '--bits', '8']],
  ['rtn2', ['--codec', 'rtn', '--bits', '2', '--group-size', '32']],
  ['binary', ['--codec', 'binary', '--embeddings', 'rtn4']],
  ['float', ['--codec', 'float']],
  ['sketch', ['--codec', 'sketch', '--bpw', '0.5']],
  ['sketch-paper', ['--codec', 'sketch', '--query', 'absmaxmin', '--bpw', '0.5']],
  ['sketch-saliency', ['--codec', 'sketch', '--bpw', '1.0', '--groups', '4', '--alloc', 'saliency:0.5', '--hash', 'mixed', '--state', 'int8', '--calib-tokens', '256']],
  ['hashednets', ['--codec', 'hashednets', '--bpw', '0.5']],
  ['littlebit', ['--codec', 'littlebit', '--bpw', '0.9', '--no-residual']],
  ['littlebit-rank', ['--codec', 'littlebit', '--rank', '2', '--layers', 'gate,up,down']],
];

describe.skipIf(!HAVE_SHARED)('compress → inspect → eval → generate, every codec (stories260K)', () => {
  const reports = new Map<string, Report>();
  const file = (key: string) => join(tmp, `${key}.usk`);
  beforeAll(() => {
    // quality on one window of 128 tokens keeps the suite fast; eval below uses the same window
    for (const [key, args] of CASES) reports.set(key, compress([...args, '-o', file(key), '--eval-windows', '1', '--eval-window', '128']).report);
  });

  it.each(CASES)('%s: the report, the file, and inspect --json totals = the real size = an independent recomputation', (key) => {
    const report = reports.get(key)!;
    const ins = parseOneObject(cli(['inspect', file(key), '--json']).stdout) as {
      kind: string;
      totals: { bpwLinears: number; bitsPerParam: number; fileBytes: number; params: number; keptDense: string[] };
      tensors: Array<{ name: string; codec: string; shape: number[]; bits: number; bpw: number | null; compressed: boolean }>;
    };
    const mine = recompute(file(key));
    expect(ins.kind).toBe('usk-bundle');
    expect(ins.totals.fileBytes).toBe(statSync(file(key)).size);
    expect(report.fileBytes).toBe(ins.totals.fileBytes);
    expect(ins.totals.params).toBe(260_032);
    expect(ins.totals.params).toBe(mine.params);
    expect(ins.totals.bpwLinears).toBeCloseTo(mine.bpwLinears, 12);
    expect(ins.totals.bitsPerParam).toBeCloseTo(mine.bitsPerParam, 12);
    expect(report.bpwLinears).toBeCloseTo(mine.bpwLinears, 12);
    expect(report.bitsPerParam).toBeCloseTo(mine.bitsPerParam, 12);
    expect(ins.totals.keptDense).toEqual([]);
    // every compressed linear row has the codec, its shape and bits; bpw = bits / weights
    const rows = ins.tensors.filter((t) => t.compressed);
    expect(rows.length).toBe(report.accounting.compressedLinears.length);
    for (const t of rows) {
      expect(t.codec).toBe(report.codec.id);
      expect(t.bpw).toBeCloseTo(t.bits / (t.shape[0]! * t.shape[1]!), 12);
    }
    // targets are budgets: never exceeded
    const target = report.codec.options.bpw;
    if (typeof target === 'number') expect(report.bpwLinears).toBeLessThanOrEqual(target);
    // quality measured at compression time is stored and reported
    expect(report.quality!.windows).toBe(1);
    expect(report.quality!.kl).toBeGreaterThanOrEqual(0);
  });

  it.each(CASES)('%s: eval (against the float checkpoint) and generate run the bundle', (key) => {
    const e = cli(['eval', file(key), '--text', EVAL_TEXT, '--windows', '1', '--window', '128', '--reference', M, '--json']);
    expect(e.stderr).not.toContain('error');
    expect(e.code).toBe(0);
    const out = parseOneObject(e.stdout) as {
      perplexity: number;
      kl: number;
      top1: number;
      model: { kind: string; tokenizer: string };
      bundle: { bpwLinears: number };
      reference: { perplexity: number; kind: string };
    };
    expect(out.model).toMatchObject({ kind: 'bundle', tokenizer: 'embedded' });
    expect(out.reference.kind).toBe('checkpoint');
    expect(out.bundle.bpwLinears).toBeCloseTo(reports.get(key)!.bpwLinears, 12);
    // the same code measured the same thing at compression time
    expect(out.perplexity).toBeCloseTo(reports.get(key)!.quality!.perplexity, 6);
    expect(out.kl).toBeCloseTo(reports.get(key)!.quality!.kl, 6);
    expect(out.top1).toBeGreaterThanOrEqual(0);
    expect(out.top1).toBeLessThanOrEqual(1);
    const g = cli(['generate', file(key), '--temperature', '0', '--steps', '16', '--json']);
    expect(g.code).toBe(0);
    const gen = parseOneObject(g.stdout) as { tokens: number[]; kernels: string };
    expect(gen.tokens[0]).toBe(1);
    expect(gen.kernels).toBe('fused');
  });

  it('float and rtn 8 are close to the float model; the sub-1-bit codecs are far (post-training)', () => {
    const ref = parseOneObject(cli(['eval', M, '--text', EVAL_TEXT, '--windows', '1', '--window', '128', '--json']).stdout) as { perplexity: number };
    expect(reports.get('float')!.quality!.perplexity).toBeCloseTo(ref.perplexity, 2);
    expect(reports.get('rtn8')!.quality!.top1).toBeGreaterThan(0.95);
    expect(reports.get('sketch')!.quality!.perplexity).toBeGreaterThan(ref.perplexity);
  });

  it('rtn 8: greedy tokens from the bundle match llama2.c greedy_tokens.txt for 64 positions', () => {
    const r = cli(['generate', file('rtn8'), '--temperature', '0', '--steps', '64', '--json']);
    expect(r.code).toBe(0);
    const out = parseOneObject(r.stdout) as { tokens: number[] };
    expect(out.tokens).toEqual(readLines(REFERENCE('stories260K', 'greedy_tokens.txt')).slice(0, 64).map(Number));
  });

  it('the sketch with channel groups calibrated on calib.txt (recorded in provenance); the paper\'s did not', () => {
    const s = reports.get('sketch-saliency')!;
    expect(s.saliencyUsed).toBe(true);
    expect(s.provenance.calibration).toMatchObject({ tokens: 256, textSource: CALIB_TEXT });
    expect(reports.get('sketch-paper')!.saliencyUsed).toBe(false);
    expect(reports.get('sketch-paper')!.provenance.calibration).toBeUndefined();
    expect(s.provenance.command).toContain('--groups 4');
  });

  it('a bare --codec sketch is the measured best variant (signmean, d 1, int8, 8 saliency groups); --query absmaxmin is the paper\'s', () => {
    const best = reports.get('sketch')!;
    expect(best.codec.options).toMatchObject({ query: 'signmean', rows: 1, state: 'int8', groups: 8 });
    expect(JSON.stringify(best.codec.options.alloc)).toContain('saliency');
    expect(best.saliencyUsed).toBe(true);
    expect(best.provenance.calibration).toMatchObject({ textSource: CALIB_TEXT });
    const paper = reports.get('sketch-paper')!;
    expect(paper.codec.options).toMatchObject({ rows: 3, state: 'f16', groups: 1 });
    expect(paper.codec.options.query ?? 'absmaxmin').toBe('absmaxmin');
    // the same stored bits on the linears, different weights
    expect(best.bpwLinears).toBeLessThanOrEqual(0.5);
    expect(paper.bpwLinears).toBeLessThanOrEqual(0.5);
  });

  it('a given sketch flag wins over the default variant; sweep applies the same defaults', () => {
    const r = compress(['--codec', 'sketch', '--bpw', '0.5', '--groups', '1', '--eval-windows', '0', '-o', join(tmp, 'sketch-g1.usk')]).report;
    expect(r.codec.options).toMatchObject({ query: 'signmean', rows: 1, state: 'int8', groups: 1 });
    expect(r.saliencyUsed).toBe(false);
    const out = join(tmp, 'sweep-sketch');
    const sw = cli(['sweep', M, '--codecs', 'sketch,sketch:query=absmaxmin', '--bpw', '0.5', '--eval-windows', '1', '--eval-window', '64', '--out-dir', out, '--json']);
    expect(sw.code, sw.stderr).toBe(0);
    const rows = (parseOneObject(sw.stdout) as { rows: Array<{ label: string; options: Record<string, unknown> }> }).rows;
    expect(rows.find((x) => x.label === 'sketch')!.options).toMatchObject({ query: 'signmean', rows: 1, state: 'int8', groups: 8 });
    expect(rows.find((x) => x.label === 'sketch:query=absmaxmin')!.options).toMatchObject({ rows: 3, state: 'f16', groups: 1 });
  });

  it('a bundle as --reference, and the human inspect table', () => {
    const e = cli(['eval', M, '--text', EVAL_TEXT, '--windows', '1', '--window', '64', '--reference', file('rtn8'), '--json']);
    expect(e.code).toBe(0);
    expect((parseOneObject(e.stdout) as { reference: { kind: string } }).reference.kind).toBe('bundle');
    const h = cli(['inspect', file('sketch')]);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/bpwLinears\s+0\.\d{4}/);
    expect(h.stdout).toMatch(/integrity\s+metadata and tensor table: SHA-256 verified; tensor data: CRC-32 verified/);
    expect(h.stdout).toMatch(/bitsPerParam\s+\d+\.\d{4} \(8 × [\d,]+ file bytes ÷ 260,032 parameters\)/);
    expect(h.stdout).toContain('model.layers.0.self_attn.q_proj.weight *');
    expect(h.stdout).toMatch(/model\.layers\.0\.self_attn\.o_proj\.weight\s+float/);
  });

  it('--tokenizer with a bundle is a typed error (generate and eval)', () => {
    const g = cli(['generate', file('rtn8'), '--tokenizer', TOKENIZERS.stories260K, '--steps', '4']);
    expect(g.code).toBe(1);
    expect(g.stderr).toMatch(/^error \[E_BAD_ARGUMENT\]: --tokenizer: a bundle carries its own tokenizer/);
    const e = cli(['eval', file('rtn8'), '--tokenizer', TOKENIZERS.stories260K, '--text', EVAL_TEXT, '--windows', '1', '--window', '64']);
    expect(e.code).toBe(1);
    expect(e.stderr).toContain('E_BAD_ARGUMENT');
  });

  it('compress refuses a bundle as input', () => {
    const r = cli(['compress', file('rtn8'), '--codec', 'rtn', '-o', join(tmp, 'again.usk')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('E_UNSUPPORTED');
  });
});

describe.skipIf(!HAVE_SHARED)('compress: refusals and policies', () => {
  it('refuses to calibrate on eval.txt, on the --eval-text file, and on a copy of the evaluation text', () => {
    const out = join(tmp, 'refused.usk');
    const sketch = ['compress', M, '--codec', 'sketch', '--bpw', '1', '--groups', '4', '-o', out];
    const onEval = cli([...sketch, '--calib', EVAL_TEXT]);
    expect(onEval.code).toBe(1);
    expect(onEval.stderr).toMatch(/^error \[E_BAD_ARGUMENT\]: .*refusing to calibrate on the evaluation text: the calibration file is eval\.txt/);
    const mine = join(tmp, 'mytext.txt');
    copyFileSync(CALIB_TEXT, mine);
    const same = cli([...sketch, '--calib', mine, '--eval-text', mine, '--eval-windows', '1']);
    expect(same.code).toBe(1);
    expect(same.stderr).toContain('it is the same file as the evaluation text');
    const held = join(tmp, 'held.txt');
    copyFileSync(EVAL_TEXT, held);
    const copy = cli([...sketch, '--calib', held]);
    expect(copy.code).toBe(1);
    expect(copy.stderr).toContain('it has exactly the same content as the evaluation text');
    // even when the codec would not use it
    const rtn = cli(['compress', M, '--codec', 'rtn', '--calib', EVAL_TEXT, '-o', out]);
    expect(rtn.code).toBe(1);
    expect(rtn.stderr).toContain('refusing to calibrate');
    expect(existsSync(out)).toBe(false);
  });

  it.each([
    [['--codec', 'sketch', '--query', 'absmaxmin', '--bpw', '0.001'], 'the smallest feasible target is'],
    [['--codec', 'hashednets', '--bpw', '0.00001'], 'the smallest feasible target is'],
    [['--codec', 'littlebit', '--bpw', '1.2'], 'the smallest target every compressed linear meets is 1.6094 bpw'],
  ])('an infeasible budget %j: E_INFEASIBLE_BUDGET with the smallest feasible bpw, nothing written', (args, message) => {
    const out = join(tmp, 'infeasible.usk');
    const r = cli(['compress', M, ...args, '-o', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error \[E_INFEASIBLE_BUDGET\]/);
    expect(r.stderr).toContain(message);
    expect(existsSync(out)).toBe(false);
  });

  it('--small-matrix keep: the too-small matrices are stored dense, listed in the report, the warning and inspect', () => {
    const out = join(tmp, 'keep.usk');
    const { report, stderr } = compress(['--codec', 'littlebit', '--bpw', '1.2', '--small-matrix', 'keep', '-o', out]);
    const kv = [0, 1, 2, 3, 4].flatMap((l) => [`model.layers.${l}.self_attn.k_proj.weight`, `model.layers.${l}.self_attn.v_proj.weight`]);
    expect(report.keptDense.map((k) => k.name)).toEqual(kv);
    expect(report.keptDense[0]).toMatchObject({ rows: 32, cols: 64 });
    expect(report.bpwLinears).toBeLessThanOrEqual(1.2);
    expect(report.bpwSelectedLinears).toBeGreaterThan(report.bpwLinears);
    expect(report.accounting.compressedLinears).toHaveLength(25);
    expect(stderr).toContain('warning: 10 linear(s) too small for the target were kept dense');
    expect(stderr).toContain('k_proj 32×64 (needs ≥ 1.6094 bpw) in layers 0, 1, 2, 3, 4');
    const ins = parseOneObject(cli(['inspect', out, '--json']).stdout) as { totals: { keptDense: string[]; bpwSelectedLinears: number } };
    expect(ins.totals.keptDense).toEqual(kv);
    expect(ins.totals.bpwSelectedLinears).toBeCloseTo(report.bpwSelectedLinears, 12);
    expect(cli(['inspect', out]).stdout).toContain('kept dense');
  });

  it.each([
    [['--codec', 'rtn', '--rows', '3'], '--rows applies to --codec sketch, not rtn'],
    [['--codec', 'binary', '--bpw', '0.5'], '--bpw applies to --codec sketch or hashednets or littlebit'],
    [['--codec', 'littlebit', '--residual', '--no-residual'], 'give --residual or --no-residual, not both'],
    [['--codec', 'nosuch'], '--codec must be one of rtn, binary, float, sketch, hashednets, littlebit'],
    [['--codec', 'rtn'], '--output OUT.usk is required'],
  ])('usage error %j: exit 2', (args, message) => {
    const needsOut = !message.includes('--output');
    const r = cli(['compress', M, ...args, ...(needsOut ? ['-o', join(tmp, 'u.usk')] : [])]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });

  it('a codec option out of range is the codec\'s typed error (exit 1)', () => {
    const r = cli(['compress', M, '--codec', 'rtn', '--bits', '5', '-o', join(tmp, 'u.usk')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('E_BAD_ARGUMENT');
  });

  it.each([
    ['sketch with saliency groups', ['--codec', 'sketch', '--bpw', '0.75', '--groups', '3', '--alloc', 'saliency', '--calib-tokens', '300']],
    ['littlebit', ['--codec', 'littlebit', '--bpw', '1.2', '--small-matrix', 'keep']],
  ])('deterministic (%s): the same command twice gives byte-identical files', (_name, args) => {
    const out = join(tmp, 'det.usk');
    const first = cli(['compress', M, ...args, '-o', out, '-q']);
    expect(first.code).toBe(0);
    const a = readFileSync(out);
    rmSync(out);
    const second = cli(['compress', M, ...args, '-o', out, '-q']);
    expect(second.code).toBe(0);
    expect(Buffer.compare(a, readFileSync(out))).toBe(0);
  });

  it('--quiet: nothing on stderr, only the summary on stdout', () => {
    const r = cli(['compress', M, '--codec', 'rtn', '--bits', '4', '-o', join(tmp, 'q.usk'), '--quiet']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^bundle {2}/);
  });
});

describe.skipIf(!HAVE_SHARED)('sweep', () => {
  it('a tiny grid: sweep.json (a row per point, float first, skipped points with the reason) and a well-formed sweep.svg', () => {
    const dir = join(tmp, 'sweep');
    const r = cli([
      'sweep',
      M,
      '--codecs',
      'rtn:4,binary,hashednets,littlebit',
      '--bpw',
      '0.5,1.0',
      '--eval-windows',
      '1',
      '--eval-window',
      '128',
      '--out-dir',
      dir,
      '--keep-bundles',
      '--json',
    ]);
    expect(r.stderr).not.toMatch(/^error/m);
    expect(r.code).toBe(0);
    const out = parseOneObject(r.stdout) as {
      rows: Array<{ label: string; codec: string; status: string; reason?: string; bpwTarget: number | null; bpwLinears: number | null; perplexity: number | null; command: string; kl: number | null; top1: number | null }>;
      files: { json: string; svg: string };
    };
    const json = JSON.parse(readFileSync(join(dir, 'sweep.json'), 'utf8')) as typeof out;
    expect(json.rows).toEqual(out.rows);
    expect(out.rows.map((x) => `${x.label}@${x.bpwTarget}:${x.status}`)).toEqual([
      'float32@null:ok',
      'rtn:4@null:ok',
      'binary@null:ok',
      'hashednets@0.5:ok',
      'hashednets@1:ok',
      'littlebit@0.5:skipped',
      'littlebit@1:skipped',
    ]);
    expect(out.rows[0]!.kl).toBeLessThan(1e-9);
    expect(out.rows[5]!.reason).toContain('the smallest target every compressed linear meets');
    expect(r.stderr).toContain('sweep [5/6] littlebit @ 0.5 bpw: skipped');

    const svg = readFileSync(join(dir, 'sweep.svg'), 'utf8');
    const { elements, texts } = checkXml(svg);
    expect(elements[0]).toBe('svg');
    expect(elements.filter((e) => e === 'polyline')).toHaveLength(3);
    const all = texts.join(' | ');
    expect(all).toContain('bits per weight of the compressed linears (bpwLinears)');
    expect(all).toContain('perplexity (log scale)');
    expect(all).toMatch(/float32 \(\d+\.\d\d\)/);
    for (const label of ['rtn:4', 'binary', 'hashednets']) expect(all).toContain(label);

    // a row's command reproduces it: the same figures, and byte for byte the bundle the sweep kept
    const rtnRow = out.rows[1]! as (typeof out.rows)[number] & { bundle: string };
    const kept = readFileSync(rtnRow.bundle);
    const words = rtnRow.command.split(' ');
    expect(words.slice(0, 2)).toEqual(['ultrasketch', 'compress']);
    const again = cli(words.slice(1));
    expect(Buffer.compare(kept, readFileSync(rtnRow.bundle))).toBe(0);
    expect(again.code).toBe(0);
    const rep = parseOneObject(again.stdout) as { quality: { perplexity: number; kl: number }; bpwLinears: number };
    expect(rep.quality.perplexity).toBeCloseTo(rtnRow.perplexity!, 9);
    expect(rep.quality.kl).toBeCloseTo(rtnRow.kl!, 9);
    expect(rep.bpwLinears).toBeCloseTo(rtnRow.bpwLinears!, 12);
  });

  it('--markdown prints a table for docs/results.md; --json with --markdown is a usage error', () => {
    const dir = join(tmp, 'sweep-md');
    const r = cli(['sweep', M, '--codecs', 'binary', '--eval-windows', '1', '--eval-window', '64', '--out-dir', dir, '--markdown', '-q']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('| # | codec | target bpw | bpwLinears | bitsPerParam | perplexity | mean NLL | KL | top-1 | seconds |');
    expect(r.stdout).toMatch(/\| 0 \| float32 \|/);
    expect(r.stdout).toMatch(/\| 1 \| binary \| — \| 1\.2119 \|/);
    expect(r.stdout).toContain('`ultrasketch compress ');
    expect(existsSync(join(dir, 'sweep.svg'))).toBe(true);
    const both = cli(['sweep', M, '--json', '--markdown']);
    expect(both.code).toBe(2);
    const flag = cli(['sweep', M, '--codecs', 'rtn:2,binary', '--rows', '3']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('--rows applies to --codec sketch');
  });
});
